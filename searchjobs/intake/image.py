"""Image bytes: the limits of intake, and the check every image goes through.

``validate_image_bytes`` runs on uploads and on every downloaded body: it names
the real format from the bytes (never from a header or a file name), refuses
images too large in bytes or in pixels before decoding them, and decodes them
fully once so a truncated or malicious file is refused here, not in a worker.

Every failure is an ``ImageError`` with a stable ``code`` and a ``transient``
flag telling the worker whether a retry could help.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from searchjobs.errors import SearchJobsError

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 10 * 1024 * 1024  # default size cap for uploads and downloads
MAX_IMAGE_PIXELS = 40_000_000  # width * height above this is refused before decoding
ALLOWED_CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})  # what we accept

WHITE = (255, 255, 255, 255)  # background that transparent pixels are flattened onto
# open_image decodes big photos at a reduced scale whose shorter side stays at least this many pixels:
# the descriptor works at 64 px on the garment's box (catalog/descriptor.py), so a 12-48 MP phone photo
# needs a small share of its pixels; JPEG scales by 1/2, 1/4 or 1/8 in the decoder itself (draft)
QUERY_MIN_SIDE = 1024


# Pillow format name -> content type we report. MPO (multi-picture JPEG, common
# from phone cameras) is produced by Pillow's JPEG plugin and is a JPEG file.
_FORMAT_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
# Pillow plugins we let parse untrusted bytes at all (smaller attack surface).
_PIL_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
# What Pillow and its plugins raise on malformed input.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


class ImageError(SearchJobsError):
    """The image could not be accepted."""

    code = "image_unreadable"

    def __init__(self, message: str, *, code: str | None = None, transient: bool | None = None):
        super().__init__(message, code=code)
        # By default only a timeout is worth retrying; callers flag connection errors and 5xx.
        self.transient = (self.code == "image_fetch_timeout") if transient is None else transient


@dataclass(frozen=True)
class IntakeLimits:
    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS
    connect_timeout: float = 3.0
    read_timeout: float = 10.0  # also the total deadline for the whole download, redirects included
    max_redirects: int = 3
    allow_private: bool = False  # on-premise: allow RFC 1918 and ULA addresses
    allow_loopback: bool = False  # tests / local development only


DEFAULT_LIMITS = IntakeLimits()


@dataclass(frozen=True)
class ValidatedImage:
    data: bytes
    content_type: str
    width: int
    height: int
    sha256: str


# --------------------------------------------------------------------------- bytes


def validate_image_bytes(
    data: bytes, declared_type: str | None = None, limits: IntakeLimits = DEFAULT_LIMITS, *, decode: bool = True
) -> ValidatedImage:
    """Check size, real format, dimensions and integrity of an image.

    ``declared_type`` (upload or Content-Type header) is never trusted; the
    returned ``content_type`` is what the bytes really are.

    ``decode=False`` checks everything but the integrity (no pixel is decoded): for a caller that
    hands the image to ``open_image`` at once, whose decode refuses a truncated or corrupt file with
    the same error. The worker does so: a 40 MP photo is then decoded once, at draft scale, not
    twice with one at full size.
    """
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise ImageError(too_large_message(len(data), limits.max_bytes), code="image_too_large")
    if not data:
        raise ImageError("image is empty", code="image_unreadable")

    try:
        # Header only: Image.open does not decode pixels, so the size check runs first.
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as img:
            image_format = img.format
            width, height = img.size
            _check_dimensions(width, height, limits)
            img.verify()
        if decode:
            # verify() leaves the image unusable and misses truncation; a full load catches it.
            with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as img:
                img.load()
    except UnidentifiedImageError as exc:
        raise _unidentified_error(data) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(str(exc), code="image_dimensions_too_large") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"image cannot be decoded: {exc}", code="image_unreadable") from exc

    content_type = _FORMAT_CONTENT_TYPES[image_format]
    if declared_type and declared_type.split(";")[0].strip().lower() != content_type:
        log.debug("declared type %r but image is %s", declared_type, content_type)
    return ValidatedImage(
        data=data,
        content_type=content_type,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def too_large_message(size: int | None, limit: int) -> str:
    """"the image is 12478054 bytes (11.9 MB); the limit is 10485760 bytes (10 MB)": both units, as people
    read MB (1 MB = 1048576 bytes, as the submit page counts) and programs read bytes. `size` None: the
    size is not known (a body cut off once past the limit)."""
    limit_text = f"the limit is {limit} bytes ({_megabytes(limit)})"
    if size is None:
        return f"the image is too large; {limit_text}"
    return f"the image is {size} bytes ({_megabytes(size)}); {limit_text}"


def _megabytes(size: int) -> str:
    return f"{size / 1048576:.1f}".removesuffix(".0") + " MB"


def open_image(validated: ValidatedImage) -> Image.Image:
    """Decode a validated image to RGB, flattening any transparency onto white.

    A big photo is decoded at a reduced scale (shorter side >= QUERY_MIN_SIDE): a JPEG by its
    decoder (draft: a 40 MP photo costs a sixteenth of its pixels in memory and time), other
    formats reduced by an integer factor right after loading, before any copy.
    """
    try:
        with Image.open(io.BytesIO(validated.data), formats=_PIL_FORMATS) as img:
            if img.format in ("JPEG", "MPO"):
                img.draft("RGB", (QUERY_MIN_SIDE, QUERY_MIN_SIDE))
            img.load()
            factor = min(img.size) // QUERY_MIN_SIDE
            if factor >= 2 and img.mode in ("RGB", "RGBA", "L", "LA"):
                img = img.reduce(factor)
            # phone cameras store the sensor's orientation in EXIF; show the photo as the person took it
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                flat = Image.new("RGBA", rgba.size, WHITE)
                flat.alpha_composite(rgba)
                return flat.convert("RGB")
            return img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(str(exc), code="image_dimensions_too_large") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"image cannot be decoded: {exc}", code="image_unreadable") from exc


def _check_dimensions(width: int, height: int, limits: IntakeLimits) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"image has invalid size {width}x{height}", code="image_unreadable")
    # Never accept more than Pillow's own bomb limit either (its warning zone counts as too large).
    max_pixels = limits.max_pixels
    if Image.MAX_IMAGE_PIXELS:
        max_pixels = min(max_pixels, Image.MAX_IMAGE_PIXELS)
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} pixels, the limit is {max_pixels} pixels",
            code="image_dimensions_too_large",
        )


def _unidentified_error(data: bytes) -> ImageError:
    """Tell 'an image in a format we do not take' apart from 'not an image', by magic number only: the
    plugins of other formats never parse the bytes (their header parsers are attack surface too)."""
    other_format = _format_by_magic(data[:16])  # Image.open hands each plugin's check 16 bytes as well
    if other_format and other_format not in _PIL_FORMATS:  # one of ours that our plugins refused is damaged
        return ImageError(f"image format {other_format} is not supported", code="image_unsupported_type")
    return ImageError("data is not a recognised image", code="image_unreadable")


def _format_by_magic(prefix: bytes) -> str | None:
    Image.init()  # registers every plugin's (opener, magic check) in Image.OPEN
    for name, (_opener, accepts) in Image.OPEN.items():
        try:
            if accepts is not None and accepts(prefix):
                return name
        except _DECODE_ERRORS:  # a check that cannot read so short a prefix
            continue
    return None
