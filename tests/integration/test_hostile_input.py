"""Hostile input gets a 4xx JSON error with a stable code, never a stack trace, and changes nothing:
no job row, no image row, no event, nothing queued in Redis."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import struct
import zlib

import pytest
import sqlalchemy as sa

from searchjobs import clients
from tests.conftest import demo_image_bytes

photo = functools.cache(demo_image_bytes)  # built on first use, not at collection

SUBMIT = "/api/search-jobs"
GOOD_URL = "https://images.example.com/photo.png"


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims `width` x `height` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


def bmp_image() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, format="BMP")
    return out.getvalue()


def json_body(**fields) -> dict:
    body = {"categories": ["dress"], "image_url": GOOD_URL, **fields}
    return {"data": json.dumps(body), "content_type": "application/json"}


def raw_json(text: str | bytes) -> dict:
    return {"data": text, "content_type": "application/json"}


def form(image: bytes | None = None, filename: str = "photo.png", **fields) -> dict:
    data = {"categories": "dress", **fields}
    if image is not None:
        data["image"] = (io.BytesIO(image), filename)
    return {"data": data, "content_type": "multipart/form-data"}


def raw_multipart(*parts: tuple[str, str | None, bytes]) -> dict:
    """A multipart body built here: werkzeug's test client leaks the temporary file it spools large ones to."""
    boundary = "hostile-boundary"
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}


def counts(runtime) -> dict:
    with runtime.engine.connect() as conn:
        found = {table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                 for table in ("search_jobs", "images", "search_job_events", "notifications")}
    found["queued"] = runtime.redis.llen("rq:queue:searches")
    return found


def assert_clean_error(response, status: int, code: str) -> dict:
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json", text
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, text
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in text and 'File "' not in text and "sqlalchemy" not in text.lower()
    return body


@pytest.fixture
def strict_client(settings):
    """An app with the production image rules: loopback and private addresses refused."""
    from searchjobs.runtime import Runtime
    from searchjobs.web import create_app

    rt = Runtime.from_settings(dataclasses.replace(settings, image_allow_loopback=False, image_allow_private=False))
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    yield app.test_client()
    rt.close()


SUBMISSIONS = {
    # size and type of the body
    "body over the limit": (lambda: {"data": b"x" * (12 * 1024 * 1024 + 1), "content_type": "application/json"},
                            413, "payload_too_large"),
    "text/plain body": ({"data": b"categories=dress", "content_type": "text/plain"}, 415, "unsupported_media_type"),
    "urlencoded form": ({"data": {"categories": "dress", "image_url": GOOD_URL}}, 415, "unsupported_media_type"),
    "no content type": ({"data": b"{}"}, 415, "unsupported_media_type"),
    "json look-alike type": ({"data": b"{}", "content_type": "application/vnd.api+json"}, 415,
                             "unsupported_media_type"),
    # malformed bodies
    "truncated JSON": (raw_json("{\"categories\": [\"dress\""), 400, "malformed_json"),
    "not UTF-8": (raw_json(b"\xff\xfe\xfa"), 400, "malformed_json"),
    "absurdly nested JSON": (raw_json("[" * 100_000), 400, "malformed_json"),
    "empty JSON body": (raw_json(b""), 400, "invalid_body"),
    "JSON array": (raw_json("[]"), 400, "invalid_body"),
    "JSON string": (raw_json("\"dress\""), 400, "invalid_body"),
    "multipart without boundary": ({"data": b"garbage", "content_type": "multipart/form-data"}, 400,
                                   "malformed_multipart"),
    "multipart garbage": ({"data": b"garbage", "content_type": "multipart/form-data; boundary=zz"}, 400,
                          "malformed_multipart"),
    "multipart truncated": ({"data": b"--zz\r\nContent-Disposition: form-data; name=\"categories\"\r\n\r\ndress",
                             "content_type": "multipart/form-data; boundary=zz"}, 400, "malformed_multipart"),
    # unknown fields, wrong types
    "unknown JSON field": (json_body(is_admin=True), 400, "unknown_field"),
    "unknown form field": (lambda: form(photo(), client_id="1"), 400, "unknown_field"),
    "unknown file field": ({"data": {"categories": "dress", "avatar": (io.BytesIO(b"x"), "a.png"),
                                     "image_url": GOOD_URL}, "content_type": "multipart/form-data"},
                           400, "unknown_field"),
    "categories as a string": (json_body(categories="dress"), 400, "invalid_field"),
    "category as a number": (json_body(categories=[7]), 400, "invalid_field"),
    "image_url as a number": (json_body(image_url=5), 400, "invalid_field"),
    "phone_number as a list": (json_body(phone_number=["+33612345678"]), 400, "invalid_field"),
    "image_url missing": (raw_json(json.dumps({"categories": ["dress"]})), 400, "image_required"),
    "no image at all": (form(), 400, "image_required"),
    "image and image_url": (lambda: form(photo(), image_url=GOOD_URL), 400, "image_conflict"),
    # categories
    "no categories": (json_body(categories=[]), 400, "categories_required"),
    "blank categories": (lambda: form(photo(), categories=" , ,"), 400, "categories_required"),
    "too many categories": (json_body(categories=[f"c{i}" for i in range(11)]), 422, "too_many_categories"),
    "unknown category": (json_body(categories=["spaceship"]), 422, "unknown_category"),
    # overlong strings and NUL bytes
    "overlong image_url": (json_body(image_url="https://example.com/" + "a" * 3000), 400, "field_too_long"),
    "overlong category": (json_body(categories=["d" * 41]), 400, "field_too_long"),
    "overlong phone number": (json_body(phone_number="1" * 3000), 400, "field_too_long"),
    "NUL in a category (JSON)": (json_body(categories=["dre\x00ss"]), 400, "invalid_field"),
    "NUL in a category (form)": (lambda: form(photo(), categories="dre\x00ss"), 400, "invalid_field"),
    "NUL in image_url": (json_body(image_url=GOOD_URL + "\x00"), 400, "invalid_field"),
    # uploads that are not acceptable images
    "a PDF": (form(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n", "photo.png"), 422,
              "image_unreadable"),
    "an SVG": (form(b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "p.svg"), 422,
               "image_unreadable"),
    "a truncated PNG": (lambda: form(photo()[:200]), 422, "image_unreadable"),
    "a BMP": (form(bmp_image(), "photo.bmp"), 415, "image_unsupported_type"),
    "a PNG claiming 100000x100000 pixels": (form(png_claiming(100_000, 100_000)), 422,
                                           "image_dimensions_too_large"),
    "an image over the image limit": (lambda: raw_multipart(("categories", None, b"dress"), (
        "image", "big.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * 1024 * 1024 + 10))), 413,
                                      "image_too_large"),
    # URLs that are not fetchable images
    "file URL": (json_body(image_url="file:///etc/passwd"), 422, "image_url_invalid"),
    "gopher URL": (json_body(image_url="gopher://example.com/"), 422, "image_url_invalid"),
    "URL with credentials": (json_body(image_url="https://user:secret@example.com/a.png"), 422,
                             "image_url_invalid"),
    # phone numbers
    "letters for a phone number": (json_body(phone_number="call me maybe"), 422, "invalid_phone_number"),
    "too short a phone number": (json_body(phone_number="+1 555"), 422, "invalid_phone_number"),
    "national number without a country": (json_body(phone_number="06 12 34 56 78"), 422, "phone_country_required"),
    # a field given twice: which one counts would be a guess (the first was taken, a JSON key's last)
    "phone_number twice (form)": (lambda: raw_multipart(("categories", None, b"dress"), ("image", "p.png", photo()),
                                                        ("phone_number", None, b"+33612345678"),
                                                        ("phone_number", None, b"not a phone")), 400, "invalid_field"),
    "image twice": (lambda: raw_multipart(("categories", None, b"dress"), ("image", "a.png", photo()),
                                          ("image", "b.png", photo())), 400, "invalid_field"),
    "an empty then a real image_url beside an image": (lambda: raw_multipart(
        ("categories", None, b"dress"), ("image", "p.png", photo()), ("image_url", None, b""),
        ("image_url", None, GOOD_URL.encode())), 400, "invalid_field"),
    "JSON key twice": (raw_json('{"categories": ["dress"], "image_url": "' + GOOD_URL + '", '
                                '"phone_number": "+33612345678", "phone_number": "junk"}'), 400, "invalid_field"),
    # Idempotency-Key
    "empty Idempotency-Key": ({**json_body(), "headers": {"Idempotency-Key": ""}}, 400, "invalid_idempotency_key"),
    "overlong Idempotency-Key": ({**json_body(), "headers": {"Idempotency-Key": "k" * 201}}, 400,
                                 "invalid_idempotency_key"),
    "Idempotency-Key with a space": ({**json_body(), "headers": {"Idempotency-Key": "two words"}}, 400,
                                     "invalid_idempotency_key"),
    "non-ASCII Idempotency-Key": ({**json_body(), "headers": {"Idempotency-Key": "caf\xe9"}}, 400,
                                  "invalid_idempotency_key"),
}


@pytest.mark.parametrize("case", list(SUBMISSIONS))
def test_hostile_submission_is_refused_and_writes_nothing(client, runtime, case):
    request, status, code = SUBMISSIONS[case]
    request = request() if callable(request) else request
    before = counts(runtime)
    response = client.post(SUBMIT, **request)
    assert_clean_error(response, status, code)
    assert counts(runtime) == before


SSRF_URLS = [
    "http://127.0.0.1/a.png",
    "http://127.1.2.3:8080/a.png",
    "http://localhost/a.png",
    "http://localhost./a.png",  # a fully qualified name (trailing dot) is the same host
    "http://127.0.0.1./a.png",
    "http://images.localhost/a.png",
    "http://[::1]/a.png",
    "http://[::ffff:127.0.0.1]/a.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://10.0.0.5/a.png",
    "http://172.16.3.4/a.png",
    "http://192.168.1.1/a.png",
    "http://0.0.0.0/a.png",
    "http://100.100.100.200/a.png",
]


@pytest.mark.parametrize("url", SSRF_URLS)
@pytest.mark.parametrize("encoding", ["json", "multipart"])
def test_ssrf_urls_are_refused_at_submit(strict_client, runtime, url, encoding):
    before = counts(runtime)
    if encoding == "json":
        response = strict_client.post(SUBMIT, **json_body(image_url=url))
    else:
        response = strict_client.post(SUBMIT, data={"categories": "dress", "image_url": url},
                                      content_type="multipart/form-data")
    body = assert_clean_error(response, 422, "image_url_forbidden")
    assert body["error"]["field"] == "image_url"
    assert counts(runtime) == before


def test_a_public_url_is_accepted_by_the_strict_app(strict_client, runtime):
    """The SSRF cases above fail on their address, not because the strict app refuses every URL."""
    response = strict_client.post(SUBMIT, **json_body())
    assert response.status_code == 202, response.get_data(as_text=True)
    assert counts(runtime)["search_jobs"] == 1


@pytest.fixture
def api_key(runtime):
    with runtime.engine.begin() as conn:
        return clients.create(conn, "hostile-tests")[1]


READS = {
    "cursor not base64": ("/api/search-jobs?cursor=%21%21%21", 400, "invalid_cursor"),
    "cursor of a negative id": ("/api/search-jobs?cursor=LTE", 400, "invalid_cursor"),
    "cursor of text": ("/api/search-jobs?cursor=aGVsbG8", 400, "invalid_cursor"),
    "overlong cursor": ("/api/search-jobs?cursor=" + "MTIz" * 30, 400, "invalid_cursor"),
    "since not a cursor": ("/api/changes?since=%00", 400, "invalid_cursor"),
    "limit zero": ("/api/search-jobs?limit=0", 400, "invalid_limit"),
    "limit too large": ("/api/changes?limit=100000", 400, "invalid_limit"),
    "limit not a number": ("/api/search-jobs?limit=ten", 400, "invalid_limit"),
    # str.isdigit() is true of these, and int() refuses the first: it was a 500
    "limit of a superscript digit": ("/api/search-jobs?limit=%C2%B2", 400, "invalid_limit"),
    "feed limit of a superscript digit": ("/api/changes?limit=%C2%B2", 400, "invalid_limit"),
    "limit of an Arabic-Indic digit": ("/api/search-jobs?limit=%D9%A1", 400, "invalid_limit"),
    "unknown status": ("/api/search-jobs?status=exploded", 400, "invalid_status"),
    "empty status": ("/api/search-jobs?status=", 400, "invalid_status"),  # the document's enum has no ""
    "overlong job id": ("/api/search-jobs/" + "a" * 5000, 404, "not_found"),
    "job id with NUL": ("/api/search-jobs/ab%00cd", 404, "not_found"),
    "job events with NUL": ("/api/search-jobs/ab%00cd/events", 404, "not_found"),
    "image id with NUL": ("/images/ab%00cd", 404, "not_found"),
    "catalog sku with NUL": ("/catalog/images/sku%00", 404, "not_found"),
    "token of the wrong shape": ("/api/results/not-a-token", 404, "not_found"),
}


@pytest.mark.parametrize("case", list(READS))
def test_hostile_reads_are_refused(client, runtime, api_key, case):
    path, status, code = READS[case]
    before = counts(runtime)
    response = client.get(path, headers={"Authorization": f"Bearer {api_key}"})
    assert_clean_error(response, status, code)
    assert counts(runtime) == before


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer sjk_", "Bearer sjk_0000_x" + "y" * 5000,
                                    "Bearer not-a-key", "Token abc"])
def test_bad_credentials_are_refused_before_anything_is_written(client, runtime, header):
    before = counts(runtime)
    response = client.post(SUBMIT, headers={"Authorization": header}, **json_body())
    assert response.status_code == 401
    assert_clean_error(response, 401, response.get_json()["error"]["code"])
    assert response.get_json()["error"]["code"] in ("invalid_authorization", "invalid_api_key")
    assert counts(runtime) == before


def test_unknown_paths_and_methods_are_json_errors(client):
    assert_clean_error(client.get("/api/no-such-thing"), 404, "not_found")
    response = client.put(SUBMIT, json={})
    assert_clean_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_clean_error(client.patch("/api/search-jobs/abc"), 405, "method_not_allowed")
