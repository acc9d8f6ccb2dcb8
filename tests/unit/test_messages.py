import pytest

from searchjobs.notifications.messages import MAX_SMS_LENGTH, mask_link, mask_links_in, result_message

TOKEN = "Ab3dEfGh1jKlMnOpQrStUvWxYz0123456789-_AbCdE"  # 43 chars, like secrets.token_urlsafe(32)
LINK = "https://example.com/r/" + TOKEN


def test_token_fixture_is_realistic():
    assert len(TOKEN) == 43


def test_result_message_text():
    assert result_message(LINK) == f"Your search results are ready: {LINK}"


def test_result_message_is_ascii_single_segment():
    body = result_message(LINK)
    assert body.isascii()
    assert len(body) <= MAX_SMS_LENGTH


def test_result_message_accepts_exactly_160():
    prefix_len = len(result_message("x")) - 1
    link = "https://e.com/r/" + "a" * (MAX_SMS_LENGTH - prefix_len - len("https://e.com/r/"))
    assert len(result_message(link)) == MAX_SMS_LENGTH


def test_result_message_too_long():
    with pytest.raises(ValueError, match="160"):
        result_message("https://example.com/r/" + "a" * 200)


def test_result_message_counts_gsm_extension_chars_twice():
    prefix_len = len(result_message("x")) - 1
    fits_if_single = "https://e.com/~" + "a" * (MAX_SMS_LENGTH - prefix_len - len("https://e.com/~"))
    with pytest.raises(ValueError):
        result_message(fits_if_single)


@pytest.mark.parametrize(
    "link",
    [
        "",
        "https://example.com/r/é",
        "https://example.com/r/`x",
        "https://example.com/r/a b",
        "https://e.com/r/a\n",
    ],
)
def test_result_message_rejects_unsafe_links(link):
    with pytest.raises(ValueError):
        result_message(link)


def test_mask_link_keeps_first_four_token_chars():
    masked = mask_link(LINK)
    assert masked == "https://example.com/r/Ab3d••••"
    assert TOKEN[4:10] not in masked


def test_mask_link_hides_query_and_unknown_shapes():
    assert mask_link(LINK + "?x=1") == "https://example.com/r/Ab3d••••"
    assert mask_link("https://example.com/results/secret") == "https://example.com/••••"
    assert mask_link("not a link") == "••••"
    assert mask_link(None) == "••••"


def test_mask_links_in_text():
    assert (
        mask_links_in(result_message(LINK)) == "Your search results are ready: https://example.com/r/Ab3d••••"
    )
