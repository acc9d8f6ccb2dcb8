"""Fetching image URLs without SSRF.

``fetch_image`` resolves the host itself, refuses any non-public address, and
connects to the address it checked (so DNS rebinding cannot swap it),
following redirects by hand with the same checks. Every body goes through
``image.validate_image_bytes``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3 import exceptions as urllib3_errors

from searchjobs.intake.image import (
    DEFAULT_LIMITS,
    ImageError,
    IntakeLimits,
    ValidatedImage,
    validate_image_bytes,
)

log = logging.getLogger(__name__)


MAX_URL_LENGTH = 2048  # longer image URLs are refused outright
USER_AGENT = "searchjobs-image-fetcher/0.1"  # sent with every image request
READ_CHUNK_BYTES = 64 * 1024  # upper bound of one body read while streaming
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})  # statuses whose Location we follow
DEFAULT_PORTS = {"http": 80, "https": 443}  # also the set of allowed URL schemes

# Cloud metadata endpoints: never reachable, whatever the limits say.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "168.63.129.16",  # Azure wire server (a public-looking address)
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IPv6 instance metadata
    )
)
# RFC 1918 and IPv6 unique-local: reachable only with allow_private.
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_CGNAT_NETWORK = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, never public
_NAT64_NETWORK = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix, embeds an IPv4 address


# --------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class _Target:
    """A checked URL, split into what the request needs."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal without brackets
    port: int
    host_header: str  # what the server sees in Host:
    path: str  # path and query, percent-encoded


def check_url(url: str, limits: IntakeLimits = DEFAULT_LIMITS) -> None:
    """Syntactic checks (scheme, host, no credentials, length), and a host given as an IP
    literal or "localhost" must be allowed. Does not resolve names: the fetch checks every
    resolved address again, so this only answers obvious cases early (at submit time)."""
    target = _parse_url(url)
    if target.host == "localhost" or target.host.endswith(".localhost"):
        if not limits.allow_loopback:
            raise ImageError(f"{target.host} is a loopback host", code="image_url_forbidden")
        return
    address = _literal_address(target.host)
    if address is None:
        return
    problem = _address_problem(address, limits)
    if problem:
        raise ImageError(f"{target.host} is a {problem}", code="image_url_forbidden")


def _literal_address(host: str) -> str | None:
    """The address a host names by itself: an IP literal, or a legacy IPv4 form that resolvers
    accept ("2130706433", "0x7f000001", "127.1"); None for a name that needs DNS."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host.lower()) and any(c.isdigit() for c in host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _parse_url(url: str) -> _Target:
    if not isinstance(url, str) or not url:
        raise ImageError("image URL is empty", code="image_url_invalid")
    if len(url) > MAX_URL_LENGTH:
        raise ImageError(f"image URL is longer than {MAX_URL_LENGTH} characters", code="image_url_invalid")
    # Whitespace and control characters (NUL, CR, LF) have no place in a URL and invite header injection.
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise ImageError("image URL contains whitespace or control characters", code="image_url_invalid")
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
    except ValueError as exc:
        raise ImageError(f"image URL cannot be parsed: {exc}", code="image_url_invalid") from exc

    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ImageError("image URL must use http or https", code="image_url_invalid")
    if "@" in parts.netloc:
        raise ImageError("image URL must not contain credentials", code="image_url_invalid")
    if not parts.hostname:
        raise ImageError("image URL has no host", code="image_url_invalid")
    if explicit_port == 0:
        raise ImageError("image URL has an invalid port", code="image_url_invalid")

    host = _normalise_host(parts.hostname)
    port = explicit_port or DEFAULT_PORTS[scheme]
    host_header = f"[{host}]" if ":" in host else host
    if explicit_port is not None and explicit_port != DEFAULT_PORTS[scheme]:
        host_header += f":{explicit_port}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    # Percent-encode anything non-ASCII; existing %XX escapes are kept.
    path = quote(path, safe="!#$%&'()*+,/:;=?@[]~")
    return _Target(url=url, scheme=scheme, host=host, port=port, host_header=host_header, path=path)


def _normalise_host(host: str) -> str:
    if ":" in host:  # only IPv6 literals contain a colon after urlsplit
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ImageError(f"invalid IPv6 host {host!r}", code="image_url_invalid") from exc
        return str(address)
    # "localhost." and "127.0.0.1." (fully qualified: a trailing dot) are the same hosts as without it; kept,
    # the dot hid them from the submit's early checks (refused only once resolved by the worker)
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ImageError(f"invalid host name {host!r}", code="image_url_invalid") from exc
    if not ascii_host or not all(ch.isalnum() or ch in ".-_" for ch in ascii_host):
        raise ImageError(f"invalid host name {host!r}", code="image_url_invalid")
    return ascii_host.lower()


# --------------------------------------------------------------------------- addresses


def _resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to, in resolver order (tests replace this)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def _address_problem(address: str, limits: IntakeLimits) -> str | None:
    """Why we must not connect to this address, or None if it is fine."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        # Addresses that carry an IPv4 address are judged by that IPv4 address.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _NAT64_NETWORK:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        else:
            ip = ipaddress.IPv6Address(int(ip))  # drop any %scope so set lookups work

    if ip in _METADATA_ADDRESSES:
        return "cloud metadata address"
    if ip.is_loopback:
        return None if limits.allow_loopback else "loopback address"
    if any(ip in network for network in _PRIVATE_NETWORKS):
        return None if limits.allow_private else "private address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_reserved or getattr(ip, "is_site_local", False):
        return "reserved address"
    if ip in _CGNAT_NETWORK:
        return "carrier-grade NAT address"
    if not ip.is_global:
        return "non-public address"
    return None


def _allowed_addresses(target: _Target, limits: IntakeLimits) -> list[str]:
    """Resolve the host; refuse it if any address is forbidden (not just the first)."""
    try:
        addresses = _resolve(target.host, target.port)
    except socket.gaierror as exc:
        # EAI_AGAIN is a resolver hiccup; anything else (no such host) will not fix itself.
        raise ImageError(
            f"cannot resolve {target.host}: {exc}",
            code="image_fetch_failed",
            transient=exc.errno == socket.EAI_AGAIN,
        ) from exc
    except (UnicodeError, OSError) as exc:
        raise ImageError(f"cannot resolve {target.host}: {exc}", code="image_fetch_failed") from exc
    if not addresses:
        raise ImageError(f"{target.host} has no addresses", code="image_fetch_failed")
    for address in addresses:
        problem = _address_problem(address, limits)
        if problem:
            raise ImageError(f"{target.host} resolves to {address}, a {problem}", code="image_url_forbidden")
    return addresses


# --------------------------------------------------------------------------- fetching


def fetch_image(url: str, limits: IntakeLimits = DEFAULT_LIMITS, *, decode: bool = True) -> ValidatedImage:
    """Download an image URL within the limits and validate it (``decode``: see ``validate_image_bytes``).

    Redirects are followed by hand, at most ``limits.max_redirects``; every hop
    goes through the same URL and address checks as the first.
    """
    deadline = time.monotonic() + limits.read_timeout
    current_url = url
    for hop in range(limits.max_redirects + 1):
        target = _parse_url(current_url)
        addresses = _allowed_addresses(target, limits)
        pool, response = _open_response(target, addresses, limits, deadline)
        try:
            status = response.status
            if status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise ImageError(f"redirect {status} without Location", code="image_fetch_failed")
                if hop == limits.max_redirects:
                    raise ImageError(f"more than {limits.max_redirects} redirects", code="image_fetch_failed")
                current_url = urljoin(current_url, location)
                continue
            _check_status(status, target)
            content_type = _image_content_type(response.headers.get("Content-Type"))
            data = _read_body(response, limits, deadline)
        except (urllib3_errors.HTTPError, OSError) as exc:
            raise _transport_error(exc, target) from exc
        finally:
            # Closing without draining: an unread body is simply dropped with the connection.
            response.close()
            pool.close()
        return validate_image_bytes(data, content_type, limits, decode=decode)
    raise AssertionError("unreachable: the loop returns or raises")


def _open_response(target: _Target, addresses: list[str], limits: IntakeLimits, deadline: float):
    """Send the GET to the first checked address that accepts a connection."""
    headers = {
        "Host": target.host_header,
        "User-Agent": USER_AGENT,
        "Accept": "image/*",
        "Accept-Encoding": "identity",  # no compression wanted; if sent anyway, the cap counts decoded bytes
    }
    last_error: Exception | None = None
    for address in addresses:
        remaining = _remaining(deadline)
        pool = _make_pool(target, address)
        try:
            response = pool.urlopen(
                "GET",
                target.path,
                headers=headers,
                retries=False,
                redirect=False,
                preload_content=False,
                assert_same_host=False,
                timeout=Timeout(connect=min(limits.connect_timeout, remaining), read=remaining),
            )
            return pool, response
        except urllib3_errors.ConnectTimeoutError as exc:  # includes NewConnectionError: try the next address
            pool.close()
            last_error = exc
        except (urllib3_errors.HTTPError, OSError) as exc:
            pool.close()
            raise _transport_error(exc, target) from exc
    assert last_error is not None
    raise _transport_error(last_error, target) from last_error


def _make_pool(target: _Target, address: str) -> HTTPConnectionPool:
    """A one-connection pool pinned to ``address``; urllib3 never resolves the name itself."""
    if target.scheme == "https":
        # SNI and certificate checks use the real host name, not the pinned IP.
        return HTTPSConnectionPool(
            address,
            target.port,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return HTTPConnectionPool(address, target.port, maxsize=1)


def _check_status(status: int, target: _Target) -> None:
    if 200 <= status < 300:
        return
    # Server trouble may pass; a 4xx (or an odd 1xx/3xx) will not change on retry.
    raise ImageError(
        f"{target.host} answered HTTP {status}", code="image_fetch_failed", transient=status >= 500
    )


def _image_content_type(header: str | None) -> str:
    content_type = (header or "").split(";")[0].strip().lower()
    if not content_type.startswith("image/"):
        raise ImageError(
            f"URL serves {content_type or 'no content type'}, not an image", code="image_unsupported_type"
        )
    return content_type


def _read_body(response, limits: IntakeLimits, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None:
        try:
            declared_length = int(declared)
        except ValueError as exc:
            raise ImageError(f"invalid Content-Length {declared!r}", code="image_fetch_failed") from exc
        if declared_length > limits.max_bytes:
            raise ImageError(
                f"image is {declared_length} bytes, the limit is {limits.max_bytes}", code="image_too_large"
            )
    body = bytearray()
    while True:
        # read1 does one socket read at most; shrinking the socket timeout to what
        # is left of the deadline makes the deadline hard even against a slow drip.
        _set_socket_timeout(response, _remaining(deadline))
        chunk = response.read1(READ_CHUNK_BYTES)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limits.max_bytes:
            raise ImageError(f"image is larger than {limits.max_bytes} bytes", code="image_too_large")


def _set_socket_timeout(response, seconds: float) -> None:
    sock = getattr(response.connection, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ImageError("image download took too long", code="image_fetch_timeout")
    return remaining


def _transport_error(exc: Exception, target: _Target) -> ImageError:
    """Translate urllib3 / socket errors into ImageError with the right retry flag."""
    if isinstance(exc, ImageError):
        return exc
    if isinstance(
        exc, urllib3_errors.NewConnectionError
    ):  # a subclass of ConnectTimeoutError, so test it first
        return ImageError(
            f"cannot connect to {target.host}: {exc}", code="image_fetch_failed", transient=True
        )
    if isinstance(exc, (urllib3_errors.TimeoutError, TimeoutError)):
        return ImageError(f"timed out fetching from {target.host}", code="image_fetch_timeout")
    if isinstance(exc, urllib3_errors.SSLError):
        # Certificate or protocol mismatch: the host is misconfigured, retrying will not help.
        return ImageError(
            f"TLS failure with {target.host}: {exc}", code="image_fetch_failed", transient=False
        )
    return ImageError(f"connection to {target.host} failed: {exc}", code="image_fetch_failed", transient=True)
