import pytest

from searchjobs.errors import SearchJobsError
from searchjobs.notifications.phone import InvalidPhoneNumber, mask, normalize


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("06 12 34 56 78", "33", "+33612345678"),
        ("06 12 34 56 78", "+33", "+33612345678"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("06 12 34 56 78", "fr", "+33612345678"),
        ("0033 6 12 34 56 78", "FR", "+33612345678"),
        ("+33612345678", None, "+33612345678"),
        ("+33 6 12 34 56 78", "44", "+33612345678"),  # an explicit + wins over country_code
        ("07400 123456", "44", "+447400123456"),
        ("07400 123456", "GB", "+447400123456"),
        ("+447400123456", None, "+447400123456"),
        ("(201) 555-0123", "1", "+12015550123"),  # US numbers are FIXED_LINE_OR_MOBILE
        ("201-555-0123", "US", "+12015550123"),
        ("+1 201 555 0123", None, "+12015550123"),
    ],
)
def test_normalize_valid(raw, country, expected):
    assert normalize(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("", "33"),
        ("   ", "33"),
        ("07 12 34 56 78", "33"),  # not an allocated French range
        ("12345", "33"),
        ("not a number", "33"),
        ("+999123456789", None),
        ("06 12 34 56 78", "999"),
        ("06 12 34 56 78", "XX"),
        ("+3361234\x005678", None),
        ("+33 6 12 34 56 78" + " " * 20, None),  # longer than 32 characters
    ],
)
def test_normalize_invalid(raw, country):
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize(raw, country)
    assert info.value.code == "invalid_phone_number"
    assert isinstance(info.value, SearchJobsError)


@pytest.mark.parametrize("raw", ["06 12 34 56 78", "0033 6 12 34 56 78", "612345678"])
def test_a_national_number_without_a_country_asks_for_the_country(raw):
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize(raw, None)
    assert info.value.code == "phone_country_required"
    assert "country" in info.value.message


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("01 23 45 67 89", "FR"),  # French fixed line
        ("020 7946 0000", "GB"),  # London fixed line
        ("0800 123 456", "GB"),  # toll free
        ("08 00 12 34 56", "FR"),  # toll free
    ],
)
def test_normalize_rejects_numbers_that_cannot_receive_sms(raw, country):
    with pytest.raises(InvalidPhoneNumber, match="cannot receive"):
        normalize(raw, country)


def test_invalid_phone_number_message_does_not_echo_the_number():
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize("01 23 45 67 89", "FR")
    assert "23" not in str(info.value)


@pytest.mark.parametrize(
    ("e164", "expected"),
    [
        ("+33612345678", "+33 6•• •• •• 78"),
        ("+447400123456", "+44 7••• ••••56"),
        ("+12015550123", "+1 2••-•••-••23"),
    ],
)
def test_mask(e164, expected):
    assert mask(e164) == expected


@pytest.mark.parametrize("value", ["", "garbage", "+", "+999123456789", "0612345678", None, 33612345678])
def test_mask_never_raises_and_hides_digits(value):
    masked = mask(value)
    assert isinstance(masked, str) and masked
    digits = "".join(ch for ch in masked if ch.isdigit())
    assert len(digits) <= 2
