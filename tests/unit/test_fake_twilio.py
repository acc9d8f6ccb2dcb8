"""FakeTwilio speaks Twilio's paths, auth and JSON shapes (checked with plain requests and the twilio client)."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from twilio.rest import Client

from searchjobs.notifications.twilio import _RoutedHttpClient
from tests.fake_twilio import FakeTwilio

pytestmark = pytest.mark.timeout(30)

TO = "+33612345678"


@pytest.fixture
def fake():
    with FakeTwilio() as server:
        yield server


def messages_url(fake, suffix=""):
    return f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Messages{suffix}.json"


def create(fake, **fields):
    data = {"To": TO, "From": "+15005550006", "Body": "hello"} | fields
    return requests.post(messages_url(fake), data=data, auth=(fake.account_sid, fake.auth_token), timeout=5)


def test_base_url_is_loopback_with_ephemeral_port(fake):
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert not fake.base_url.endswith(":0")


def test_account_sid_shape():
    assert FakeTwilio.account_sid.startswith("AC") and len(FakeTwilio.account_sid) == 34
    assert FakeTwilio("AC" + "f" * 32, "secret").account_sid == "AC" + "f" * 32


def test_create_returns_twilio_shaped_json(fake):
    response = create(fake, StatusCallback="https://example.com/cb")
    assert response.status_code == 201
    body = response.json()
    assert body["sid"].startswith("SM") and len(body["sid"]) == 34
    assert body["status"] == "queued"
    assert body["account_sid"] == fake.account_sid
    assert (body["to"], body["from"], body["body"]) == (TO, "+15005550006", "hello")
    assert body["date_created"].endswith("+0000")  # RFC 2822
    assert body["error_code"] is None
    assert body["uri"] == f"/2010-04-01/Accounts/{fake.account_sid}/Messages/{body['sid']}.json"
    [stored] = fake.messages
    assert stored["status_callback"] == "https://example.com/cb"
    assert isinstance(stored["date_created"], datetime)


def test_messages_snapshot_is_a_copy(fake):
    create(fake)
    fake.messages[0]["body"] = "changed"
    assert fake.messages[0]["body"] == "hello"


def test_wrong_auth_gets_twilio_401(fake):
    response = requests.post(messages_url(fake), data={"To": TO}, auth=(fake.account_sid, "nope"), timeout=5)
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert requests.get(messages_url(fake), timeout=5).status_code == 401
    assert fake.messages == []


def test_other_account_is_404(fake):
    url = f"{fake.base_url}/2010-04-01/Accounts/AC{'9' * 32}/Messages.json"
    response = requests.get(url, auth=(fake.account_sid, fake.auth_token), timeout=5)
    assert response.status_code == 404
    assert response.json()["code"] == 20404


def test_scripted_error_body(fake):
    fake.script(("error", 400, 21610))
    response = create(fake)
    assert response.status_code == 400
    assert response.json() == {
        "code": 21610,
        "message": "Attempt to send to unsubscribed recipient",
        "more_info": "https://www.twilio.com/docs/errors/21610",
        "status": 400,
    }


def test_script_is_consumed_in_order(fake):
    fake.script(("error", 429, 20429), ("error", 500, 20500))
    assert [create(fake).status_code for _ in range(3)] == [429, 500, 201]


def test_unknown_behaviour_is_rejected(fake):
    with pytest.raises(ValueError):
        fake.script("explode")


@pytest.mark.parametrize(
    ("fields", "code"),
    [({"To": "0612345678"}, 21211), ({"From": ""}, 21603), ({"Body": ""}, 21602)],
)
def test_create_validation(fake, fields, code):
    response = create(fake, **fields)
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_drop_before_create(fake):
    fake.script("drop_before_create")
    with pytest.raises(requests.ConnectionError):
        create(fake)
    assert fake.messages == []


def test_drop_after_create(fake):
    fake.script("drop_after_create")
    with pytest.raises(requests.ConnectionError):
        create(fake)
    assert len(fake.messages) == 1


def test_timeout_after_create_holds_until_client_gives_up(fake):
    fake.script("timeout_after_create")
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            messages_url(fake),
            data={"To": TO, "From": "+15005550006", "Body": "x"},
            auth=(fake.account_sid, fake.auth_token),
            timeout=0.3,
        )
    assert len(fake.messages) == 1


def test_stop_releases_a_hanging_request():
    fake = FakeTwilio().start()
    fake.script("timeout_after_create")
    errors = []

    def call():
        try:
            create(fake)
        except requests.RequestException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 5
    while not fake.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    fake.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and errors


def test_fetch(fake):
    sid = create(fake).json()["sid"]
    auth = (fake.account_sid, fake.auth_token)
    response = requests.get(messages_url(fake, f"/{sid}"), auth=auth, timeout=5)
    assert response.status_code == 200
    assert response.json()["sid"] == sid
    assert response.json()["status"] == "sent"  # deliver=True moves it on after create
    assert requests.get(messages_url(fake, "/SM" + "0" * 32), auth=auth, timeout=5).status_code == 404


def test_list_shape_and_paging(fake):
    for i in range(5):
        create(fake, Body=f"m{i}")
    create(fake, To="+447400123456")
    auth = (fake.account_sid, fake.auth_token)
    page = requests.get(messages_url(fake), params={"To": TO, "PageSize": 2}, auth=auth, timeout=5).json()
    assert set(page) == {
        "end",
        "first_page_uri",
        "messages",
        "next_page_uri",
        "page",
        "page_size",
        "previous_page_uri",
        "start",
        "uri",
    }
    assert [m["body"] for m in page["messages"]] == ["m4", "m3"]  # newest first
    assert page["previous_page_uri"] is None
    page2 = requests.get(fake.base_url + page["next_page_uri"], auth=auth, timeout=5).json()
    assert [m["body"] for m in page2["messages"]] == ["m2", "m1"]
    page3 = requests.get(fake.base_url + page2["next_page_uri"], auth=auth, timeout=5).json()
    assert [m["body"] for m in page3["messages"]] == ["m0"]
    assert page3["next_page_uri"] is None


def test_list_date_sent_filter(fake):
    create(fake)
    auth = (fake.account_sid, fake.auth_token)
    now = datetime.now(UTC)

    def count(value):
        params = {"To": TO, "DateSent>": value}
        return len(requests.get(messages_url(fake), params=params, auth=auth, timeout=5).json()["messages"])

    assert count((now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")) == 1
    assert count((now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")) == 0
    assert count(now.strftime("%Y-%m-%d")) == 1
    response = requests.get(messages_url(fake), params={"DateSent>": "yesterday"}, auth=auth, timeout=5)
    assert response.status_code == 400


def test_undelivered_messages_have_no_date_sent(fake):
    fake.deliver = False
    create(fake)
    [stored] = fake.messages
    assert stored["status"] == "queued" and stored["date_sent"] is None
    auth = (fake.account_sid, fake.auth_token)
    params = {"DateSent>": "2000-01-01"}
    assert requests.get(messages_url(fake), params=params, auth=auth, timeout=5).json()["messages"] == []


def test_official_client_list_fetch_and_paging(fake):
    client = Client(fake.account_sid, fake.auth_token, http_client=_RoutedHttpClient(fake.base_url, 5))
    for i in range(3):
        client.messages.create(to=TO, from_="+15005550006", body=f"m{i}")
    since = datetime.now(UTC) - timedelta(minutes=1)
    listed = client.messages.list(to=TO, date_sent_after=since, page_size=2)
    assert [m.body for m in listed] == ["m2", "m1", "m0"]
    fetched = client.messages(listed[0].sid).fetch()
    assert fetched.sid == listed[0].sid and fetched.date_created is not None


def test_land_late_holds_the_request_past_the_client_timeout_then_creates(fake):
    started = time.monotonic()
    fake.script(("land_late", 0.8))
    with pytest.raises(requests.ReadTimeout):
        requests.post(messages_url(fake), data={"To": TO, "From": "+15005550006", "Body": "x"},
                      auth=(fake.account_sid, fake.auth_token), timeout=0.3)
    assert fake.messages == []  # the client gave up; the message has not landed yet
    deadline = time.monotonic() + 5
    while not fake.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(fake.messages) == 1 and time.monotonic() - started >= 0.8


def test_land_late_hangs_up_without_an_answer_even_if_the_client_waits(fake):
    fake.script(("land_late", 0.2))
    with pytest.raises(requests.ConnectionError):
        create(fake)
    assert len(fake.messages) == 1


def test_fault_for_suffix_picks_the_fault_by_the_number_and_counts_down(fake):
    fake.fault_for_suffix("91", ("error", 500, 20500), times=2)
    fake.fault_for_suffix("92", ("error", 429, 20429))
    assert [create(fake, To="+33612345691").status_code for _ in range(3)] == [500, 500, 201]
    assert [create(fake, To="+33612345692").status_code for _ in range(2)] == [429, 429]
    fake.script(("error", 400, 21610))
    assert create(fake, To="+33612345691").status_code == 400  # the script still applies to other creates
    assert create(fake).status_code == 201
    with pytest.raises(ValueError):
        fake.fault_for_suffix("x1", "ok")
    with pytest.raises(ValueError):
        fake.fault_for_suffix("93", "explode")


def test_refused_credentials_answer_401_20003_to_everything_until_accepted(fake):
    fake.refuse_credentials()
    assert create(fake).json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert requests.get(messages_url(fake), auth=(fake.account_sid, fake.auth_token), timeout=5).status_code == 401
    fake.script(("error", 429, 20429))  # a refused request consumes no scripted behaviour
    assert create(fake).status_code == 401
    fake.accept_credentials()
    assert create(fake).status_code == 429 and create(fake).status_code == 201
    assert len(fake.messages) == 1


def test_timed_requests_record_arrival_times(fake):
    before = time.time()
    create(fake)
    [(at, method, path)] = fake.timed_requests
    assert before <= at <= time.time() and method == "POST" and path.endswith("/Messages.json")
    assert fake.requests == [(method, path)]
