"""TwilioSender driving the real twilio client against FakeTwilio over loopback HTTP."""

import io
import logging
import socket
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NameResolutionError, ProtocolError

from searchjobs import links
from searchjobs.errors import ConfigError
from searchjobs.notifications.base import (
    LINK_UNREADABLE,
    CredentialsRejectedError,
    PermanentSendError,
    RetryableSendError,
    Sender,
    SendError,
    UnknownOutcomeError,
)
from searchjobs.notifications.console import ConsoleSender
from searchjobs.notifications.messages import body_sha256, token_sha256
from searchjobs.notifications.twilio import TwilioSender, _classify_send_error
from tests.fake_twilio import FakeTwilio

pytestmark = pytest.mark.timeout(30)

TO = "+33612345678"
FROM = "+15005550006"
BODY = "Your search results are ready: https://example.com/r/Ab3dEfGh1jKlMnOpQrStUvWxYz0123456789-_AbCdE"
BODY_SHA = body_sha256(BODY)
TEST_TIMEOUT = 0.5


@pytest.fixture
def fake():
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def sender(fake):
    return TwilioSender(
        fake.account_sid, fake.auth_token, from_number=FROM, api_base_url=fake.base_url, timeout=TEST_TIMEOUT
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_implements_sender_protocol(sender):
    assert isinstance(sender, Sender)
    assert isinstance(ConsoleSender(), Sender)
    assert sender.name == "twilio"


def test_send_ok_records_one_message(fake, sender):
    sent = sender.send(TO, BODY, status_callback="https://example.com/hooks/sms")
    assert sent.sid.startswith("SM") and len(sent.sid) == 34
    assert sent.status == "queued"
    assert (sent.to, sent.body) == (TO, BODY)
    assert sent.date_created is not None and sent.date_created.tzinfo is not None
    [stored] = fake.messages
    assert stored["sid"] == sent.sid
    assert stored["from"] == FROM
    assert stored["status_callback"] == "https://example.com/hooks/sms"
    assert fake.messages_to(TO) == [stored]


def test_send_with_messaging_service(fake):
    sender = TwilioSender(
        fake.account_sid, fake.auth_token, messaging_service_sid="MG" + "1" * 32, api_base_url=fake.base_url
    )
    sender.send(TO, BODY)
    [stored] = fake.messages
    assert stored["messaging_service_sid"] == "MG" + "1" * 32
    assert stored["from"] is None


def test_rate_limited_is_retryable(fake, sender):
    fake.script(("error", 429, 20429))
    with pytest.raises(RetryableSendError) as info:
        sender.send(TO, BODY)
    assert (info.value.http_status, info.value.provider_code) == (429, 20429)
    assert fake.messages == []
    # the script is consumed: the next send goes through
    sender.send(TO, BODY)
    assert len(fake.messages) == 1


@pytest.mark.parametrize("code", [21610, 21211, 21408, 21614])
def test_client_errors_are_permanent(fake, sender, code):
    fake.script(("error", 400, code))
    with pytest.raises(PermanentSendError) as info:
        sender.send(TO, BODY)
    assert info.value.provider_code == code
    assert info.value.http_status == 400
    assert info.value.code == "sms_send_rejected"


def test_error_message_does_not_leak_the_number(fake, sender):
    with pytest.raises(PermanentSendError) as info:
        sender.send("+1234", BODY)  # the fake validates To like Twilio: 21211
    assert info.value.provider_code == 21211
    assert "+1234" not in str(info.value)


def test_server_error_is_unknown_outcome(fake, sender):
    fake.script(("error", 500, 20500))
    with pytest.raises(UnknownOutcomeError) as info:
        sender.send(TO, BODY)
    assert (info.value.http_status, info.value.provider_code) == (500, 20500)


def test_timeout_after_create_is_unknown_then_found(fake, sender):
    since = datetime.now(UTC)
    fake.script("timeout_after_create")
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError) as info:
        sender.send(TO, BODY)
    assert time.monotonic() - started < TEST_TIMEOUT + 1.0
    assert info.value.http_status is None
    [created] = fake.messages_to(TO)
    found = sender.find_sent(TO, since, BODY_SHA)
    assert found is not None
    assert found.sid == created["sid"]
    assert found.body == BODY


def test_find_sent_sees_messages_still_queued(fake, sender):
    fake.deliver = False  # no date_sent: DateSent filters hide it, the second pass must find it
    since = datetime.now(UTC)
    fake.script("drop_after_create")
    with pytest.raises(UnknownOutcomeError):
        sender.send(TO, BODY)
    found = sender.find_sent(TO, since, BODY_SHA)
    assert found is not None and found.status == "queued"


def test_find_sent_returns_none_when_absent(fake, sender):
    sender.send("+447400123456", BODY)  # other number
    sender.send(TO, "something else")
    assert sender.find_sent(TO, datetime.now(UTC), BODY_SHA) is None


def test_find_sent_ignores_older_messages(fake, sender):
    sender.send(TO, BODY)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert sender.find_sent(TO, later, BODY_SHA) is None


def test_find_sent_pages_through_results(fake, sender, monkeypatch):
    monkeypatch.setattr("searchjobs.notifications.twilio.LOOKUP_PAGE_SIZE", 2)
    since = datetime.now(UTC)
    sender.send(TO, BODY)
    for i in range(5):
        sender.send(TO, f"other {i}")
    found = sender.find_sent(TO, since, BODY_SHA)
    assert found is not None and found.body == BODY


def test_find_sent_with_naive_and_non_utc_datetimes(fake, sender):
    sender.send(TO, BODY)
    paris = timezone(timedelta(hours=2))
    assert sender.find_sent(TO, datetime.now(paris), BODY_SHA) is not None
    assert sender.find_sent(TO, datetime.now(UTC).replace(tzinfo=None), BODY_SHA) is not None


def test_drop_after_create_is_unknown(fake, sender):
    fake.script("drop_after_create")
    with pytest.raises(UnknownOutcomeError):
        sender.send(TO, BODY)
    assert len(fake.messages) == 1


def test_drop_before_create_is_unknown(fake, sender):
    # the client cannot tell it apart from drop_after_create
    fake.script("drop_before_create")
    with pytest.raises(UnknownOutcomeError):
        sender.send(TO, BODY)
    assert fake.messages == []


def test_connection_refused_is_retryable():
    sender = TwilioSender(
        "AC" + "0" * 32,
        "token",
        from_number=FROM,
        api_base_url=f"http://127.0.0.1:{closed_port()}",
        timeout=TEST_TIMEOUT,
    )
    with pytest.raises(RetryableSendError) as info:
        sender.send(TO, BODY)
    assert info.value.http_status is None
    assert isinstance(info.value.__cause__, requests.ConnectionError)


def test_lookup_failure_is_unknown_outcome():
    sender = TwilioSender(
        "AC" + "0" * 32,
        "token",
        from_number=FROM,
        api_base_url=f"http://127.0.0.1:{closed_port()}",
        timeout=TEST_TIMEOUT,
    )
    # a failed lookup says nothing about the original message: never "retryable"
    with pytest.raises(UnknownOutcomeError):
        sender.find_sent(TO, datetime.now(UTC), "x")


def test_request_timeout_is_applied(fake, sender):
    fake.script(("slow", 3))
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        sender.send(TO, BODY)
    elapsed = time.monotonic() - started
    assert TEST_TIMEOUT * 0.8 <= elapsed < TEST_TIMEOUT + 1.0


def test_slow_within_timeout_is_ok(fake):
    sender = TwilioSender(
        fake.account_sid, fake.auth_token, from_number=FROM, api_base_url=fake.base_url, timeout=2
    )
    fake.script(("slow", 0.2))
    assert sender.send(TO, BODY).status == "queued"


def test_default_timeout_is_set():
    sender = TwilioSender("AC" + "0" * 32, "token", from_number=FROM)
    assert sender._client.http_client.timeout == 10.0


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_their_own_error(fake, sender, status):
    fake.script(("error", status, 20003))
    with pytest.raises(CredentialsRejectedError) as info:
        sender.send(TO, BODY)
    assert not isinstance(info.value, PermanentSendError | RetryableSendError | UnknownOutcomeError)
    assert (info.value.http_status, info.value.provider_code) == (status, 20003)
    assert info.value.code == "sms_credentials_rejected"
    assert "Twilio refused our credentials" in info.value.message and TO not in info.value.message
    assert fake.messages == []


def test_a_message_specific_403_fails_that_message_and_pauses_nothing(fake, sender):
    """Only 401 or code 20003 is a refused login; a 403 about one message is that message's rejection."""
    fake.script(("error", 403, 21408))
    with pytest.raises(PermanentSendError) as info:
        sender.send(TO, BODY)
    assert not isinstance(info.value, CredentialsRejectedError)
    assert (info.value.http_status, info.value.provider_code) == (403, 21408)
    fake.script(("error", 401, 20005))  # any 401 is a refused login, whatever its code
    with pytest.raises(CredentialsRejectedError):
        sender.send(TO, BODY)
    assert fake.messages == []


def test_wrong_auth_token_is_refused_credentials_for_send_and_lookup(fake):
    sender = TwilioSender(fake.account_sid, "wrong", from_number=FROM, api_base_url=fake.base_url)
    with pytest.raises(CredentialsRejectedError) as info:
        sender.send(TO, BODY)
    assert (info.value.http_status, info.value.provider_code) == (401, 20003)
    # a look-up refused for credentials is not an answer either, and says why
    with pytest.raises(CredentialsRejectedError) as info:
        sender.find_sent(TO, datetime.now(UTC), BODY_SHA)
    assert (info.value.http_status, info.value.provider_code) == (401, 20003)
    assert fake.messages == []


def test_revoked_credentials_fault_until_accepted_again(fake, sender):
    fake.refuse_credentials()
    for _ in range(2):
        with pytest.raises(CredentialsRejectedError):
            sender.send(TO, BODY)
    assert fake.messages == []
    fake.accept_credentials()
    assert sender.send(TO, BODY).status == "queued"
    assert len(fake.messages) == 1


def test_find_sent_matches_the_exact_body_not_the_link(fake, sender):
    since = datetime.now(UTC)
    other_base = BODY.replace("https://example.com", "https://new.example.com")
    sender.send(TO, other_base)  # the same token under another PUBLIC_BASE_URL: not the message we sent
    sender.send(TO, BODY + " ")
    assert sender.find_sent(TO, since, BODY_SHA) is None
    sent = sender.send(TO, BODY)
    assert sender.find_sent(TO, since, BODY_SHA).sid == sent.sid
    assert sender.find_sent(TO, since, body_sha256(other_base)).body == other_base


TOKEN = BODY.rsplit("/r/", 1)[1]
TOKEN_HASH = token_sha256(TOKEN)


@pytest.mark.parametrize(
    "stored",
    [
        BODY + " ",  # trailing whitespace
        BODY.replace("https://example.com", "https://new.example.com"),  # PUBLIC_BASE_URL changed since
        BODY.replace(":", "\uff1a", 1),  # a unicode character, or its Smart Encoding replacement
        "Sent from your Twilio trial account - " + BODY + "\n",
    ],
    ids=["trailing-space", "other-base-url", "unicode", "trial-prefix"],
)
def test_find_sent_with_a_token_hash_matches_the_link_token_whatever_the_rest(fake, sender, stored):
    since = datetime.now(UTC)
    fake._create({"To": TO, "From": FROM, "Body": stored})
    found = sender.find_sent(TO, since, BODY_SHA, token_hash=TOKEN_HASH)
    assert found is not None and found.body == stored
    assert sender.find_sent(TO, since, None, token_hash=TOKEN_HASH) is not None  # rows without a body hash


def test_find_sent_with_a_token_hash_ignores_other_jobs_and_linkless_messages(fake, sender):
    since = datetime.now(UTC)
    other_job = BODY.replace(TOKEN, "Z" * len(TOKEN))
    fake._create({"To": TO, "From": FROM, "Body": other_job})  # another job's SMS to the same person
    fake._create({"To": TO, "From": FROM, "Body": "Your code is 123456"})  # another app's, without a link
    assert sender.find_sent(TO, since, BODY_SHA, token_hash=TOKEN_HASH) is None


@pytest.mark.parametrize("short", ["https://sj.lnk/4bXz9", "sj.lnk/4bXz9"])
def test_find_sent_cannot_tell_a_shortened_link_and_says_so(fake, sender, short):
    since = datetime.now(UTC)
    fake._create({"To": TO, "From": FROM, "Body": "Your search results are ready: " + short})
    with pytest.raises(UnknownOutcomeError) as info:  # it may be ours: "not found" would be a guess
        sender.find_sent(TO, since, BODY_SHA, token_hash=TOKEN_HASH)
    assert info.value.code == LINK_UNREADABLE and TO not in info.value.message
    fake._create({"To": TO, "From": FROM, "Body": BODY})  # ours is there as well: found, no doubt left
    assert sender.find_sent(TO, since, BODY_SHA, token_hash=TOKEN_HASH).body == BODY


def test_console_sender_matches_the_token_too():
    console = ConsoleSender(stream=io.StringIO())
    since = datetime.now(UTC)
    sent = console.send(TO, BODY + " ")
    assert console.find_sent(TO, since, BODY_SHA) is None
    assert console.find_sent(TO, since, BODY_SHA, token_hash=TOKEN_HASH) == sent


def test_the_token_hash_is_the_one_the_job_keeps():
    assert token_sha256(TOKEN) == links.token_hash(TOKEN)


def test_find_sent_recognises_a_trial_account_body(fake, sender):
    since = datetime.now(UTC)
    fake._create({"To": TO, "From": FROM, "Body": "Sent from your Twilio trial account - " + BODY})
    assert sender.find_sent(TO, since, BODY_SHA) is not None


def test_late_landing_create_is_unknown_and_found_only_after_it_lands(fake, sender):
    since = datetime.now(UTC)
    fake.script(("land_late", TEST_TIMEOUT + 1.0))
    started = time.monotonic()
    with pytest.raises(UnknownOutcomeError):
        sender.send(TO, BODY)
    assert time.monotonic() - started < TEST_TIMEOUT + 0.5
    assert sender.find_sent(TO, since, BODY_SHA) is None  # too early: "not found" proves nothing yet
    deadline = time.monotonic() + 5
    while not fake.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert time.monotonic() - started >= TEST_TIMEOUT + 1.0
    assert sender.find_sent(TO, since, BODY_SHA) is not None


def test_base_url_with_path_prefix(fake):
    sender = TwilioSender(
        fake.account_sid, fake.auth_token, from_number=FROM, api_base_url=fake.base_url + "/proxy"
    )
    with pytest.raises(PermanentSendError) as info:  # the fake has no /proxy prefix: 404 proves the rewrite
        sender.send(TO, BODY)
    assert info.value.http_status == 404
    assert fake.requests[-1][1].startswith("/proxy/2010-04-01/Accounts/")


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"from_number": FROM, "messaging_service_sid": "MG" + "1" * 32},
        {"from_number": FROM, "timeout": 0},
        {"from_number": FROM, "api_base_url": "127.0.0.1:8080"},
        {"from_number": FROM, "api_base_url": "ftp://example.com"},
    ],
)
def test_config_errors(kwargs):
    with pytest.raises(ConfigError):
        TwilioSender("AC" + "0" * 32, "token", **kwargs)


def test_missing_credentials():
    with pytest.raises(ConfigError):
        TwilioSender("", "token", from_number=FROM)


def test_classify_connect_timeout_and_dns_failure():
    assert isinstance(_classify_send_error(requests.ConnectTimeout()), RetryableSendError)
    dns = NameResolutionError("api.twilio.com", None, OSError("Name or service not known"))
    wrapped = requests.ConnectionError(MaxRetryError(None, "/x", reason=dns))
    assert isinstance(_classify_send_error(wrapped), RetryableSendError)
    reset = requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))
    assert isinstance(_classify_send_error(reset), UnknownOutcomeError)
    assert isinstance(_classify_send_error(requests.ReadTimeout()), UnknownOutcomeError)


def test_send_errors_share_a_base(fake, sender):
    fake.script(("error", 429, 20429))
    with pytest.raises(SendError):
        sender.send(TO, BODY)


def test_logs_mask_number_and_token(fake, sender, caplog):
    caplog.set_level(logging.DEBUG, logger="searchjobs")
    caplog.set_level(logging.DEBUG, logger="twilio")
    since = datetime.now(UTC)
    sender.send(TO, BODY)
    fake.script(("error", 400, 21610))
    with pytest.raises(PermanentSendError):
        sender.send(TO, BODY)
    sender.find_sent(TO, since, BODY_SHA)
    text = "\n".join(
        f"{r.getMessage()} {r.__dict__}"
        for r in caplog.records
        if r.name.startswith(("searchjobs", "twilio"))
    )
    assert "+33 6•• •• •• 78" in text
    assert "612345678" not in text
    assert "EfGh1jKl" not in text


def test_console_sender_prints_full_body_and_logs_masked(capsys, caplog):
    caplog.set_level(logging.INFO, logger="searchjobs")
    console = ConsoleSender()
    since = datetime.now(UTC)
    sent = console.send(TO, BODY)
    assert sent.sid.startswith("console-") and sent.status == "sent"
    err = capsys.readouterr().err
    assert BODY in err  # the developer's copy of the link
    assert "+33 6•• •• •• 78" in err and TO not in err
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "+33 6•• •• •• 78" in logged
    assert "EfGh1jKl" not in logged and TO not in logged
    assert console.find_sent(TO, since, BODY_SHA) == sent
    assert console.find_sent(TO, since + timedelta(minutes=1), BODY_SHA) is None
    assert console.find_sent("+447400123456", since, BODY_SHA) is None


# -- SMS settings ---------------------------------------------------------------------------------


def test_sms_settings_defaults_and_overrides():
    from searchjobs.config import Settings

    default = Settings.from_env({})
    assert (default.sms_lookup_margin, default.sms_give_up_hours, default.sms_auth_retry_seconds) == (60, 24, 60)
    custom = Settings.from_env({"SEARCHJOBS_SMS_LOOKUP_MARGIN": "3", "SEARCHJOBS_SMS_GIVE_UP_HOURS": "0.5",
                                "SEARCHJOBS_SMS_AUTH_RETRY_SECONDS": "1.5"})
    assert (custom.sms_lookup_margin, custom.sms_give_up_hours, custom.sms_auth_retry_seconds) == (3, 0.5, 1.5)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SEARCHJOBS_SMS_GIVE_UP_HOURS": "200"}, "within the retention period"),  # 7 days = 168 h
        ({"SEARCHJOBS_SMS_GIVE_UP_HOURS": "30", "SEARCHJOBS_RETENTION_DAYS": "1"}, "within the retention period"),
        ({"SEARCHJOBS_SMS_GIVE_UP_HOURS": "0"}, "must be positive"),
        ({"SEARCHJOBS_SMS_LOOKUP_MARGIN": "-1"}, "SEARCHJOBS_SMS_LOOKUP_MARGIN must be a number >= 0"),
        ({"SEARCHJOBS_SMS_LOOKUP_MARGIN": "soon"}, "SEARCHJOBS_SMS_LOOKUP_MARGIN must be a number"),
        ({"SEARCHJOBS_SMS_AUTH_RETRY_SECONDS": "0"}, "SEARCHJOBS_SMS_AUTH_RETRY_SECONDS must be a number"),
    ],
)
def test_sms_settings_refuse_bad_values(env, message):
    from searchjobs.config import Settings

    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert message in info.value.message
