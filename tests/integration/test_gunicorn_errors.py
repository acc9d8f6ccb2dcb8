"""Requests the real gunicorn refuses before the app sees them are JSON errors with stable codes too.

A header too large (431), a control character in a header (400), a request line too long (414) and a
garbled request line (400) were gunicorn's HTML pages; found by sending them to `searchjobs up`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

from searchjobs.embedded import free_port
from searchjobs.web.error_codes import ERROR_CODES
from tests.conftest import TEST_SECRET, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gunicorn_port(servers):
    database_url, redis_url, _ = servers
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "SECRET_KEY": TEST_SECRET,
           "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1", "SEARCHJOBS_ACCESS_LOG": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "python:searchjobs.web.gunicorn_conf"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def serving():
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False
    try:
        wait_for(serving, 30, "gunicorn")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def raw_request(port: int, request: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


REFUSED = {
    "header too large": (b"GET /api/categories HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"k" * 9000
                         + b"\r\n\r\n", 431, "header_fields_too_large"),
    "control character in a header": (b"POST /api/search-jobs HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k\x01\r\n"
                                      b"Content-Length: 0\r\n\r\n", 400, "bad_request"),
    "request line too long": (b"GET /api/categories?x=" + b"y" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
                              "uri_too_long"),
    "garbled request line": (b"GET\x00 / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_requests_gunicorn_refuses_get_a_json_error(gunicorn_port, case):
    request, status, code = REFUSED[case]
    answered, headers, body = raw_request(gunicorn_port, request)
    assert answered == status, body
    assert headers["content-type"] == "application/json", headers
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)["error"]
    assert error["code"] == code and code in ERROR_CODES
    assert error["message"] and "<" not in error["message"]
