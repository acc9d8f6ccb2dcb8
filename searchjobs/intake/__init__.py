"""Image intake: how a query image gets in.

- ``image``: the limits and the byte check every image passes (uploads and downloads);
- ``fetch``: fetching an ``image_url`` without SSRF;
- ``store``: uploaded images kept in Postgres, served at /images/<public id>.
"""

from searchjobs.intake.fetch import check_url, fetch_image
from searchjobs.intake.image import (
    ALLOWED_CONTENT_TYPES,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    ImageError,
    IntakeLimits,
    ValidatedImage,
    open_image,
    validate_image_bytes,
)

__all__ = [
    "ALLOWED_CONTENT_TYPES", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "ImageError", "IntakeLimits", "ValidatedImage",
    "check_url", "fetch_image", "open_image", "validate_image_bytes",
]
