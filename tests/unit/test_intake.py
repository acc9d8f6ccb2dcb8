"""Unit tests for searchjobs.intake: image validation and SSRF-safe fetching.

Network tests only talk to a ThreadingHTTPServer on 127.0.0.1 started here;
"public" hosts are faked by replacing intake.fetch._resolve (no DNS, no internet).
"""

from __future__ import annotations

import functools
import hashlib
import io
import shutil
import ssl
import struct
import subprocess
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import urllib3
from PIL import Image
from urllib3.exceptions import ProtocolError

from searchjobs.errors import SearchJobsError
from searchjobs.intake import (
    ALLOWED_CONTENT_TYPES,
    ImageError,
    IntakeLimits,
    ValidatedImage,
    check_url,
    fetch_image,
    open_image,
    validate_image_bytes,
)
from searchjobs.intake import fetch as intake_fetch
from searchjobs.intake.image import QUERY_MIN_SIDE

pytestmark = pytest.mark.timeout(10)

LOCAL = IntakeLimits(allow_loopback=True, connect_timeout=1.0, read_timeout=3.0)
PUBLIC_IP = "93.184.216.34"  # a public address; never actually contacted in these tests


def make_image(fmt: str, size=(32, 24), mode="RGB", color=(200, 10, 10), **save_args) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, fmt, **save_args)
    return buf.getvalue()


def noisy_jpeg(size=(64, 64)) -> bytes:
    """A JPEG with real entropy, so cutting it leaves a genuinely truncated scan."""
    raw = hashlib.sha256(b"seed").digest() * (size[0] * size[1] * 3 // 32 + 1)
    img = Image.frombytes("RGB", size, raw[: size[0] * size[1] * 3])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR is patched to claim width x height (CRC fixed up)."""
    data = bytearray(make_image("PNG", size=(1, 1)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


PNG = make_image("PNG")


# --------------------------------------------------------------------------- validate_image_bytes


@pytest.mark.parametrize(
    "fmt, content_type",
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_validate_accepts_allowed_formats(fmt, content_type):
    data = make_image(fmt, size=(40, 30))
    result = validate_image_bytes(data)
    assert result == ValidatedImage(
        data=data, content_type=content_type, width=40, height=30, sha256=hashlib.sha256(data).hexdigest()
    )
    assert result.content_type in ALLOWED_CONTENT_TYPES


def test_validate_reports_sniffed_type_not_declared():
    assert validate_image_bytes(PNG, declared_type="image/jpeg").content_type == "image/png"


def test_validate_accepts_multi_picture_jpeg_as_jpeg():
    buf = io.BytesIO()
    first, second = Image.new("RGB", (16, 8), "red"), Image.new("RGB", (16, 8), "blue")
    first.save(buf, "MPO", save_all=True, append_images=[second])
    result = validate_image_bytes(buf.getvalue())
    assert (result.content_type, result.width, result.height) == ("image/jpeg", 16, 8)


@pytest.mark.parametrize("data", [b"", b"hello, this is not an image", b"<html><body>hi</body></html>"])
def test_validate_rejects_non_image(data):
    with pytest.raises(ImageError) as info:
        validate_image_bytes(data)
    assert info.value.code == "image_unreadable"
    assert info.value.transient is False
    assert isinstance(info.value, SearchJobsError)


def test_validate_rejects_truncated_jpeg():
    data = noisy_jpeg()
    validate_image_bytes(data)  # the whole file is fine
    with pytest.raises(ImageError) as info:
        validate_image_bytes(data[: len(data) // 2])
    assert info.value.code == "image_unreadable"


@pytest.mark.parametrize("data", [noisy_jpeg(), noisy_jpeg((2400, 2200)), make_image("PNG", size=(300, 200))],
                         ids=["small jpeg", "big jpeg (draft scale)", "png"])
def test_a_truncated_image_is_refused_by_the_header_check_or_its_one_decode(data):
    cut = data[: len(data) // 2]
    with pytest.raises(ImageError) as info:  # as the worker does: header check, then one decode in open_image
        open_image(validate_image_bytes(cut, decode=False))  # (a PNG's missing end is seen by verify() already)
    assert (info.value.code, info.value.transient) == ("image_unreadable", False)
    assert open_image(validate_image_bytes(data, decode=False)).mode == "RGB"  # the whole file is fine


def test_the_header_check_still_refuses_what_the_header_tells():
    for data, code in ((png_claiming(6000, 7000), "image_dimensions_too_large"), (b"not an image", "image_unreadable"),
                       (make_image("BMP"), "image_unsupported_type")):
        with pytest.raises(ImageError) as info:
            validate_image_bytes(data, decode=False)
        assert info.value.code == code


def test_validate_rejects_corrupt_png_crc():
    data = bytearray(PNG)
    data[30] ^= 0xFF  # break the IHDR CRC
    with pytest.raises(ImageError) as info:
        validate_image_bytes(bytes(data))
    assert info.value.code == "image_unreadable"


def test_validate_rejects_too_many_bytes():
    with pytest.raises(ImageError) as info:
        validate_image_bytes(PNG, limits=IntakeLimits(max_bytes=len(PNG) - 1))
    assert info.value.code == "image_too_large"
    validate_image_bytes(PNG, limits=IntakeLimits(max_bytes=len(PNG)))  # exactly at the cap is fine
    assert info.value.message.startswith(f"the image is {len(PNG)} bytes")


def test_the_size_message_gives_bytes_and_megabytes():
    from searchjobs.intake.image import too_large_message

    assert too_large_message(12_478_054, 10 * 1048576) == ("the image is 12478054 bytes (11.9 MB); the limit is "
                                                           "10485760 bytes (10 MB)")
    assert too_large_message(None, 10 * 1048576) == "the image is too large; the limit is 10485760 bytes (10 MB)"


def test_validate_rejects_huge_dimensions_from_header():
    data = png_claiming(100_000, 100_000)
    assert len(data) < 100
    started = time.monotonic()
    with pytest.raises(ImageError) as info:
        validate_image_bytes(data)
    assert info.value.code == "image_dimensions_too_large"
    assert time.monotonic() - started < 1.0


def test_validate_rejects_dimensions_over_our_own_cap():
    # 6000x7000 = 42M pixels: below Pillow's bomb limit, above MAX_IMAGE_PIXELS.
    with pytest.raises(ImageError) as info:
        validate_image_bytes(png_claiming(6000, 7000))
    assert info.value.code == "image_dimensions_too_large"
    with pytest.raises(ImageError) as info:
        validate_image_bytes(make_image("PNG", size=(20, 20)), limits=IntakeLimits(max_pixels=399))
    assert info.value.code == "image_dimensions_too_large"


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO", "PPM"])
def test_validate_rejects_unsupported_formats(fmt):
    with pytest.raises(ImageError) as info:
        validate_image_bytes(make_image(fmt, size=(16, 16)))
    assert info.value.code == "image_unsupported_type"


# --------------------------------------------------------------------------- open_image


def test_open_image_returns_rgb():
    img = open_image(validate_image_bytes(make_image("JPEG", size=(10, 7))))
    assert (img.mode, img.size) == ("RGB", (10, 7))


def test_open_image_flattens_alpha_on_white():
    data = make_image("PNG", size=(4, 4), mode="RGBA", color=(0, 0, 0, 0))
    img = open_image(validate_image_bytes(data))
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255)


def test_open_image_flattens_palette_transparency():
    palette_image = Image.new("P", (4, 4), 0)
    palette_image.putpalette([0, 0, 0] * 256)
    buf = io.BytesIO()
    palette_image.save(buf, "GIF", transparency=0)
    img = open_image(validate_image_bytes(buf.getvalue()))
    assert img.getpixel((1, 1)) == (255, 255, 255)


def test_a_big_photo_is_decoded_at_a_reduced_scale_keeping_its_shape():
    # 4608 x 3456 (16 MP): the JPEG decoder's 1/2 scale keeps the shorter side above QUERY_MIN_SIDE, 1/4 would not
    img = open_image(validate_image_bytes(make_image("JPEG", size=(4608, 3456), quality=70)))
    assert (img.mode, img.size) == ("RGB", (2304, 1728))
    assert img.getpixel((1000, 1000))[0] > 150, "the same picture, smaller"
    png = open_image(validate_image_bytes(make_image("PNG", size=(3456, 2304))))
    assert png.size == (1728, 1152) and min(png.size) >= QUERY_MIN_SIDE


def test_a_big_photo_keeps_its_exif_orientation_when_reduced():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: shown upright, the photo is taller than wide
    img = open_image(validate_image_bytes(make_image("JPEG", size=(4608, 3456), exif=exif.tobytes())))
    assert img.size == (1728, 2304)


def test_a_photo_below_twice_the_minimum_side_is_decoded_at_full_size():
    img = open_image(validate_image_bytes(make_image("JPEG", size=(3000, 2000))))
    assert img.size == (3000, 2000)


# --------------------------------------------------------------------------- check_url


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.jpg",
        "http://images.test:8080/x.png?size=large#frag",
        "https://b\u00fccher.example/bild.png",
        "http://93.184.216.34/",  # a public IP literal
    ],
)
def test_check_url_accepts(url):
    check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "gopher://example.com/",
        "javascript:alert(1)",
        "http:///no-host",
        "http://user:secret@example.com/a.jpg",
        "http://user@example.com/a.jpg",
        "http://example.com/a\x00.jpg",
        "http://example.com/a b.jpg",
        "http://example.com/a.jpg\r\nX-Injected: 1",
        "http://example.com:0/",
        "http://example.com:99999/",
        "http://[not-ipv6]/",
        "http://exa%6dple.com/",
        "https://example.com/" + "a" * 2048,
    ],
)
def test_check_url_rejects(url):
    with pytest.raises(ImageError) as info:
        check_url(url)
    assert info.value.code == "image_url_invalid"
    assert info.value.transient is False


def test_fetch_checks_url_syntax_first():
    with pytest.raises(ImageError) as info:
        fetch_image("file:///etc/passwd")
    assert info.value.code == "image_url_invalid"


# --------------------------------------------------------------------------- forbidden addresses

FORBIDDEN_URLS = [
    "http://127.0.0.1/a.png",
    "http://localhost/a.png",
    "http://[::1]/a.png",
    "http://10.0.0.1/a.png",
    "http://192.168.1.1/a.png",
    "http://172.16.0.1/a.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/a.png",
    "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0/a.png",
    "http://100.64.0.1/a.png",
    "http://[fd00::1]/a.png",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://2130706433/",  # 127.0.0.1 as an integer
    "http://127.1/",
    "https://[64:ff9b::a00:1]/",  # NAT64 for 10.0.0.1
]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_fetch_refuses_forbidden_addresses(url):
    with pytest.raises(ImageError) as info:
        fetch_image(url, IntakeLimits(connect_timeout=0.5, read_timeout=0.5))
    assert info.value.code == "image_url_forbidden"
    assert info.value.transient is False


@pytest.mark.parametrize(
    "address, allowed_by_default, allowed_private, allowed_loopback",
    [
        (PUBLIC_IP, True, True, True),
        ("2606:2800:220:1:248:1893:25c8:1946", True, True, True),
        ("127.0.0.1", False, False, True),
        ("::1", False, False, True),
        ("::ffff:127.0.0.1", False, False, True),
        ("10.0.0.1", False, True, False),
        ("172.31.255.255", False, True, False),
        ("192.168.1.1", False, True, False),
        ("fd00::1", False, True, False),
        ("::ffff:10.1.2.3", False, True, False),
        ("169.254.169.254", False, False, False),
        ("fd00:ec2::254", False, False, False),
        ("168.63.129.16", False, False, False),
        ("169.254.1.1", False, False, False),
        ("fe80::1", False, False, False),
        ("100.64.0.1", False, False, False),
        ("0.0.0.0", False, False, False),
        ("::", False, False, False),
        ("224.0.0.1", False, False, False),
        ("ff02::1", False, False, False),
        ("255.255.255.255", False, False, False),
        ("192.0.2.1", False, False, False),
        ("2002:a00:1::", False, True, False),  # 6to4 wrapping 10.0.0.1
    ],
)
def test_address_policy(address, allowed_by_default, allowed_private, allowed_loopback):
    def allowed(limits):
        return intake_fetch._address_problem(address, limits) is None

    assert allowed(IntakeLimits()) is allowed_by_default
    assert allowed(IntakeLimits(allow_private=True)) is allowed_private
    assert allowed(IntakeLimits(allow_loopback=True)) is allowed_loopback


def test_every_resolved_address_is_checked(monkeypatch):
    # A host that resolves to a public and a loopback address is refused as a whole.
    monkeypatch.setattr(intake_fetch, "_resolve", lambda host, port: [PUBLIC_IP, "127.0.0.1"])
    with pytest.raises(ImageError) as info:
        fetch_image("http://images.test/a.png")
    assert info.value.code == "image_url_forbidden"


def test_unknown_host_is_permanent_failure():
    with pytest.raises(ImageError) as info:
        fetch_image("http://no-such-host.invalid/a.png", IntakeLimits(read_timeout=2.0))
    assert info.value.code == "image_fetch_failed"


# --------------------------------------------------------------------------- local server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get("Host"), self.headers.get("User-Agent")))
        parts = urlsplit(self.path)
        route = getattr(
            self, "route_" + parts.path.strip("/").split("/")[0].split(".")[0].replace("-", "_"), None
        )
        try:
            if route is None:
                self.reply(404, b"not found", "text/plain")
            else:
                route(parts)
        except OSError:  # the client hung up, which several tests do on purpose
            self.server.aborted.set()
            self.close_connection = True

    def reply(self, status, body=b"", content_type="image/png", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def route_good(self, parts):
        self.reply(200, PNG)

    def route_declared_huge(self, parts):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(50 * 1024 * 1024))
        self.end_headers()
        self.wfile.write(PNG)
        self.close_connection = True

    def route_chunked_huge(self, parts):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"\0" * 65536
        for _ in range(1024):  # 64 MiB if nobody stops us
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.server.chunked_sent += len(chunk)
        self.wfile.write(b"0\r\n\r\n")

    def route_html(self, parts):
        self.reply(200, b"<html>hi</html>", "text/html; charset=utf-8")

    def route_not_an_image(self, parts):
        self.reply(200, b"definitely not a png", "image/png")

    def route_missing(self, parts):
        self.reply(404, b"gone", "text/plain")

    def route_unavailable(self, parts):
        self.reply(503, b"busy", "text/plain")

    def route_slow(self, parts):
        time.sleep(2.0)
        self.reply(200, PNG)

    def route_drip(self, parts):
        # Each byte arrives well within the read timeout, but the whole body never does in time.
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            self.wfile.write(b"x")
            time.sleep(0.1)

    def route_redirect(self, parts):
        hops = int(parts.path.rstrip("/").split("/")[-1])
        location = "/good.png" if hops == 0 else f"/redirect/{hops - 1}"
        self.reply(302, b"", "text/plain", headers=[("Location", location)])

    def route_to(self, parts):
        location = parse_qs(parts.query)["url"][0]
        self.reply(302, b"", "text/plain", headers=[("Location", location)])


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    httpd.aborted = threading.Event()
    httpd.chunked_sent = 0
    httpd.port = httpd.server_address[1]
    httpd.url = f"http://127.0.0.1:{httpd.port}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def fetch_error(url, limits=LOCAL) -> ImageError:
    with pytest.raises(ImageError) as info:
        fetch_image(url, limits)
    return info.value


def test_fetch_good_image(server):
    result = fetch_image(server.url + "/good.png", LOCAL)
    assert result.data == PNG
    assert (result.content_type, result.width, result.height) == ("image/png", 32, 24)
    assert result.sha256 == hashlib.sha256(PNG).hexdigest()
    path, host, user_agent = server.seen[0]
    assert path == "/good.png"
    assert host == f"127.0.0.1:{server.port}"
    assert user_agent == intake_fetch.USER_AGENT


def test_fetch_refuses_loopback_without_allow_loopback(server):
    error = fetch_error(server.url + "/good.png", IntakeLimits())
    assert error.code == "image_url_forbidden"
    assert server.seen == []  # refused before any connection


def test_fetch_refuses_declared_content_length_over_cap(server):
    error = fetch_error(server.url + "/declared-huge", LOCAL)
    assert error.code == "image_too_large"
    assert error.transient is False


def test_fetch_stops_reading_chunked_body_over_cap(server):
    limits = IntakeLimits(allow_loopback=True, max_bytes=256 * 1024, read_timeout=5.0)
    error = fetch_error(server.url + "/chunked-huge", limits)
    assert error.code == "image_too_large"
    # We hung up early: the server's writes fail long before it sends 64 MiB.
    assert server.aborted.wait(5.0)
    assert server.chunked_sent < 32 * 1024 * 1024


def test_fetch_rejects_non_image_content_type(server):
    assert fetch_error(server.url + "/html").code == "image_unsupported_type"


def test_fetch_validates_the_bytes(server):
    assert fetch_error(server.url + "/not-an-image").code == "image_unreadable"


def test_fetch_404_is_permanent(server):
    error = fetch_error(server.url + "/missing")
    assert (error.code, error.transient) == ("image_fetch_failed", False)


def test_fetch_503_is_transient(server):
    error = fetch_error(server.url + "/unavailable")
    assert (error.code, error.transient) == ("image_fetch_failed", True)


def test_fetch_connection_refused_is_transient(server):
    port = server.port
    server.shutdown()
    server.server_close()  # nothing listens on the port any more
    error = fetch_error(f"http://127.0.0.1:{port}/good.png")
    assert (error.code, error.transient) == ("image_fetch_failed", True)


def test_fetch_times_out_on_slow_server(server):
    limits = IntakeLimits(allow_loopback=True, read_timeout=0.5)
    started = time.monotonic()
    error = fetch_error(server.url + "/slow", limits)
    assert (error.code, error.transient) == ("image_fetch_timeout", True)
    assert time.monotonic() - started < 1.5


def test_fetch_deadline_covers_slow_drip(server):
    limits = IntakeLimits(allow_loopback=True, read_timeout=0.5)
    started = time.monotonic()
    error = fetch_error(server.url + "/drip", limits)
    assert (error.code, error.transient) == ("image_fetch_timeout", True)
    assert time.monotonic() - started < 1.5


def test_fetch_follows_redirects_up_to_limit(server):
    result = fetch_image(server.url + "/redirect/2", IntakeLimits(allow_loopback=True, max_redirects=3))
    assert result.data == PNG
    assert [path for path, _, _ in server.seen] == ["/redirect/2", "/redirect/1", "/redirect/0", "/good.png"]


def test_fetch_refuses_too_many_redirects(server):
    error = fetch_error(server.url + "/redirect/3", IntakeLimits(allow_loopback=True, max_redirects=3))
    assert (error.code, error.transient) == ("image_fetch_failed", False)
    assert len(server.seen) == 4  # the original request and three redirects, no more


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.png",
        "http://[::ffff:169.254.169.254]/",
        "file:///etc/passwd",
    ],
)
def test_fetch_checks_redirect_targets(server, target):
    error = fetch_error(server.url + "/to?url=" + quote(target, safe=""))
    expected = "image_url_invalid" if target.startswith("file:") else "image_url_forbidden"
    assert error.code == expected
    assert len(server.seen) == 1


def test_fetch_connects_to_pinned_address_with_original_host(server, monkeypatch):
    calls = []

    def fake_resolve(host, port):
        calls.append((host, port))
        return ["127.0.0.1"]

    monkeypatch.setattr(intake_fetch, "_resolve", fake_resolve)
    result = fetch_image(f"http://images.test:{server.port}/good.png", LOCAL)
    assert result.data == PNG
    assert calls == [("images.test", server.port)]
    assert server.seen[0][1] == f"images.test:{server.port}"


class _RecordingPool:
    """Stands in for a urllib3 pool: records how it was built, then fails like a dropped connection."""

    created: list = []

    def __init__(self, host, port, **kwargs):
        self.created.append({"host": host, "port": port, **kwargs})

    def urlopen(self, method, url, headers=None, **kwargs):
        self.created[-1].update(method=method, url=url, headers=headers)
        raise ProtocolError("connection dropped")

    def close(self):
        pass


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_fetch_pins_public_address_and_keeps_hostname_for_tls(monkeypatch, scheme):
    _RecordingPool.created = []
    monkeypatch.setattr(intake_fetch, "_resolve", lambda host, port: [PUBLIC_IP])
    monkeypatch.setattr(intake_fetch, "HTTPConnectionPool", _RecordingPool)
    monkeypatch.setattr(intake_fetch, "HTTPSConnectionPool", _RecordingPool)

    error = fetch_error(f"{scheme}://Images.Test/p%C3%A4th/\u00e4.png?q=1", IntakeLimits())
    assert (error.code, error.transient) == ("image_fetch_failed", True)

    [pool] = _RecordingPool.created
    assert pool["host"] == PUBLIC_IP
    assert pool["port"] == (443 if scheme == "https" else 80)
    assert pool["headers"]["Host"] == "images.test"
    assert pool["url"] == "/p%C3%A4th/%C3%A4.png?q=1"
    if scheme == "https":
        assert pool["server_hostname"] == "images.test"
        assert pool["assert_hostname"] == "images.test"
        assert pool["cert_reqs"] == "CERT_REQUIRED"


# --------------------------------------------------------------------------- real TLS against a pinned address


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 with a throwaway certificate for images.test; records SNI names."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=images.test"]
        + ["-addext", "subjectAltName=DNS:images.test"],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    sni_names = []
    context.sni_callback = lambda sock, name, ctx: sni_names.append(name)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.seen, httpd.aborted, httpd.chunked_sent = [], threading.Event(), 0
    httpd.port, httpd.cert, httpd.sni_names = httpd.server_address[1], str(cert), sni_names
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _trust_test_cert(monkeypatch, cert):
    monkeypatch.setattr(
        intake_fetch, "HTTPSConnectionPool", functools.partial(urllib3.HTTPSConnectionPool, ca_certs=cert)
    )
    monkeypatch.setattr(intake_fetch, "_resolve", lambda host, port: ["127.0.0.1"])


def test_https_uses_original_hostname_for_sni_and_certificate(tls_server, monkeypatch):
    _trust_test_cert(monkeypatch, tls_server.cert)
    result = fetch_image(f"https://images.test:{tls_server.port}/good.png", LOCAL)
    assert result.data == PNG
    assert tls_server.sni_names == ["images.test"]
    assert tls_server.seen[0][1] == f"images.test:{tls_server.port}"


def test_https_certificate_for_another_name_is_refused(tls_server, monkeypatch):
    _trust_test_cert(monkeypatch, tls_server.cert)
    error = fetch_error(f"https://other.test:{tls_server.port}/good.png")
    assert (error.code, error.transient) == ("image_fetch_failed", False)
    assert tls_server.seen == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/", "http://[::1]:8080/", "http://localhost/x.png", "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data/", "http://2130706433/", "http://0x7f000001/",
            "http://127.1/", "http://0177.0.0.1/"],
)
def test_check_url_refuses_forbidden_literals_early(url):
    with pytest.raises(ImageError) as info:
        check_url(url)
    assert info.value.code == "image_url_forbidden"


def test_check_url_allows_loopback_literal_when_configured():
    check_url("http://127.0.0.1:8080/a.png", IntakeLimits(allow_loopback=True))


def test_a_format_we_do_not_take_is_named_without_its_plugin_parsing_the_bytes(monkeypatch):
    """Only the plugins of the formats we take parse untrusted bytes (image._PIL_FORMATS). Naming another
    format for the error ran Image.open with every plugin: a PSD's header parser read the caller's bytes.
    Its magic number alone names it now."""
    from PIL import PsdImagePlugin

    def parsed(self):
        raise AssertionError("the PSD plugin parsed an upload")

    monkeypatch.setattr(PsdImagePlugin.PsdImageFile, "_open", parsed)
    with pytest.raises(ImageError) as info:
        validate_image_bytes(b"8BPS\x00\x01" + b"\x00" * 64)
    assert info.value.code == "image_unsupported_type"
    assert "PSD" in info.value.message
