"""What a new user meets first (issue #14): the size errors, the phone errors, and absolute URLs."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from searchjobs import defaults
from searchjobs.embedded import free_port
from searchjobs.intake import MAX_IMAGE_BYTES
from tests.conftest import TEST_SECRET, demo_image_bytes, wait_for

SUBMIT = "/api/search-jobs"
BOUNDARY = "first-hour"


class CountingStream(io.RawIOBase):
    """A request body of `size` bytes that counts what the server reads of it (nothing is held in memory)."""

    def __init__(self, size: int):
        self.size, self.read_bytes = size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.size - self.read_bytes)
        buffer[:count] = b"x" * count
        self.read_bytes += count
        return count


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def post_stream(client, body: CountingStream, content_type: str, *, chunked: bool = False):
    """POST `body` as it comes off the wire (werkzeug's test client would seek it to measure it)."""
    environ = {"wsgi.input": body, "CONTENT_TYPE": content_type}
    if chunked:  # as gunicorn passes a chunked body: no length, the stream ends where the body does
        environ.update({"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": "", "wsgi.input_terminated": True})
    else:
        environ["CONTENT_LENGTH"] = str(body.size)
    return client.post(SUBMIT, environ_overrides=environ)


def submit_json(client, **fields):
    body = {"categories": ["dress"], "image_url": "https://images.example.com/photo.png", **fields}
    return client.post(SUBMIT, json=body)


def test_an_image_of_11_9_mb_is_refused_with_its_real_size_and_the_limit(client, runtime):
    size = int(11.9 * 1048576)
    image = b"\x89PNG\r\n\x1a\n" + b"\x00" * (size - 8)
    response = client.post(SUBMIT, data=multipart(("categories", None, b"dress"), ("image", "big.png", image)),
                           content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "image_too_large" and error["field"] == "image"
    assert error["size_bytes"] == size and error["limit_bytes"] == MAX_IMAGE_BYTES
    assert error["message"] == f"the image is {size} bytes (11.9 MB); the limit is {MAX_IMAGE_BYTES} bytes (10 MB)"


def test_a_30_mb_upload_gets_image_too_large_without_its_body_being_read(client, runtime):
    size = 30 * 1048576
    body = CountingStream(size)
    response = post_stream(client, body, f"multipart/form-data; boundary={BOUNDARY}")
    assert response.status_code == 413 and response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error == {"code": "image_too_large", "field": "image", "size_bytes": size, "limit_bytes": MAX_IMAGE_BYTES,
                     "message": f"the image is {size} bytes (30 MB); the limit is {MAX_IMAGE_BYTES} bytes (10 MB)"}
    assert body.read_bytes == 0


def test_a_chunked_upload_past_the_limit_gets_image_too_large(client, runtime):
    """No Content-Length (chunked): werkzeug stops reading at MAX_CONTENT_LENGTH; the size is not known."""
    body = CountingStream(30 * 1048576)
    response = post_stream(client, body, f"multipart/form-data; boundary={BOUNDARY}", chunked=True)
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "image_too_large" and error["limit_bytes"] == MAX_IMAGE_BYTES and "size_bytes" not in error
    assert body.read_bytes <= defaults.MAX_CONTENT_LENGTH + 64 * 1024


def test_a_json_body_past_the_limit_names_the_limit(client, runtime):
    response = post_stream(client, CountingStream(13 * 1048576), "application/json")
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["message"] == f"the request body is larger than {defaults.MAX_CONTENT_LENGTH} bytes"


@pytest.mark.parametrize("country_code", [33, "33", "+33", "FR"])
def test_a_calling_code_may_be_a_json_number_as_the_form_sends_it(client, runtime, country_code):
    response = submit_json(client, phone_number="06 12 34 56 78", country_code=country_code)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["sms"] is True


@pytest.mark.parametrize(("country_code", "status", "code"), [
    (0, 422, "invalid_phone_number"), (999, 422, "invalid_phone_number"), (-33, 422, "invalid_phone_number"),
    (True, 400, "invalid_field"), (33.0, 400, "invalid_field"),
])
def test_a_number_that_is_no_calling_code_is_refused(client, runtime, country_code, status, code):
    response = submit_json(client, phone_number="06 12 34 56 78", country_code=country_code)
    error = response.get_json()["error"]
    assert (response.status_code, error["code"], error["field"]) == (status, code, "country_code")


def test_a_national_number_without_a_country_says_a_country_is_needed(client, runtime):
    for send in (lambda: submit_json(client, phone_number="06 12 34 56 78"),
                 lambda: client.post(SUBMIT, data={"categories": "dress", "phone_number": "06 12 34 56 78",
                                                   "image": (io.BytesIO(demo_image_bytes(0, "dress")), "a.png")},
                                     content_type="multipart/form-data")):
        response = send()
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert error["code"] == "phone_country_required" and error["field"] == "country_code"
        assert "country" in error["message"]
    # a number that is simply wrong keeps its own code
    error = submit_json(client, phone_number="+33 1").get_json()["error"]
    assert error["code"] == "invalid_phone_number" and error["field"] == "phone_number"


def test_every_url_the_api_hands_out_is_absolute_on_public_base_url(client, runtime, settings):
    base = settings.public_base_url
    assert base == "http://testserver"
    # a request by another host name still gets PUBLIC_BASE_URL's links
    submitted = client.post(SUBMIT, json={"categories": ["dress"], "image_url": "https://images.example.com/a.png"},
                            base_url="http://10.0.0.5:8000")
    body = submitted.get_json()
    job_url = f"{base}/api/search-jobs/{body['job_id']}"
    assert body["status_url"] == submitted.headers["Location"] == job_url
    assert body["result_url"] == f"{base}/r/{body['result_token']}"
    assert client.get(job_url).get_json()["status_url"] == job_url
    assert client.get(f"/api/results/{body['result_token']}").get_json()["status_url"] == job_url
    assert client.post(f"{job_url}/cancel").get_json()["status_url"] == job_url
    finished = client.post(f"{job_url}/cancel").get_json()["error"]["job"]
    assert finished["status_url"] == job_url
    assert json.dumps(finished).count("/api/") == 1


@pytest.fixture
def gunicorn(settings, runtime, tmp_path):
    """The web process as the Procfile runs it (gthread, keep-alive): its base URL."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "SECRET_KEY": TEST_SECRET, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "HOST": "127.0.0.1",
           "PORT": str(port), "WEB_CONCURRENCY": "1", "SEARCHJOBS_ACCESS_LOG": "off",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    (tmp_path / "metrics").mkdir()
    with open(tmp_path / "gunicorn.log", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "python:searchjobs.web.gunicorn_conf"],
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"

    def serving():
        try:
            return requests.get(f"{base}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(serving, 30, "gunicorn")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def big_multipart_file(tmp_path, size: int) -> Path:
    path = tmp_path / "big.png"
    with open(path, "wb") as out:
        out.truncate(size)
    return path


@pytest.mark.slow
def test_gunicorn_answers_a_30_mb_upload_with_image_too_large_and_keeps_serving(gunicorn, tmp_path):
    size = 30 * 1048576
    photo = big_multipart_file(tmp_path, size)
    # curl, as a user would try it: it stops sending once the answer comes
    started = time.monotonic()
    done = subprocess.run(["curl", "-sS", "-o", str(tmp_path / "answer.json"), "-w", "%{http_code} %{size_upload}",
                           "-F", "categories=dress", "-F", f"image=@{photo};type=image/png",
                           f"{gunicorn}{SUBMIT}"], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    status, uploaded = done.stdout.split()
    error = json.loads((tmp_path / "answer.json").read_text())["error"]
    print(f"curl: {status} after {took:.2f} s, {int(float(uploaded))} of {size} bytes sent; {done.stderr.strip()}")
    assert status == "413" and error["code"] == "image_too_large" and error["field"] == "image"
    assert error["limit_bytes"] == MAX_IMAGE_BYTES and error["size_bytes"] > size
    assert float(uploaded) < size

    # requests sends the whole body before it reads; it still gets the answer, not a reset
    with requests.Session() as session, open(photo, "rb") as image:
        started = time.monotonic()
        answer = session.post(f"{gunicorn}{SUBMIT}", files={"image": ("big.png", image, "image/png")},
                              data={"categories": "dress"}, timeout=60)
        print(f"requests: {answer.status_code} after {time.monotonic() - started:.2f} s")
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "image_too_large"
        # and the same session goes on working (a new connection if the server closed the last one)
        assert session.get(f"{gunicorn}/healthz", timeout=10).status_code == 200
