"""Parse and check a job submission (multipart or JSON). Nothing here writes anything.

Every rejection is a ValidationError with a stable code, raised before any row
is written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from flask import Request

from searchjobs import defaults, intake
from searchjobs.errors import ValidationError
from searchjobs.notifications.phone import InvalidPhoneNumber, normalize

JSON_FIELDS = {"image_url", "categories", "phone_number", "country_code"}
FORM_FIELDS = JSON_FIELDS | {"image"}
MAX_CATEGORY_LENGTH = 40  # characters of one category name
MAX_FIELD_LENGTH = 2048  # characters of any text field (URLs included)
MAX_IDEMPOTENCY_KEY = 200  # characters of an Idempotency-Key header

IMAGE_ERROR_STATUS = {"image_too_large": 413, "image_unsupported_type": 415}


@dataclass(frozen=True)
class Submission:
    categories: list[str]
    image: intake.ValidatedImage | None
    image_url: str | None
    phone_number: str | None  # E.164
    country_code: str | None
    idempotency_key: str | None

    def request_hash(self) -> str:
        """What was asked, to tell a replay (same key, same body) from a misuse (same key, other body)."""
        material = json.dumps(
            [sorted(self.categories), self.image.sha256 if self.image else None, self.image_url,
             self.phone_number],
            separators=(",", ":"),
        )
        return hashlib.sha256(material.encode()).hexdigest()


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", code="invalid_field", field=field)
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL bytes", code="invalid_field", field=field)
    if len(value) > MAX_FIELD_LENGTH:
        raise ValidationError(f"{field} is too long", code="field_too_long", field=field)
    return value.strip()


def parse_categories(values: list, known: set[str]) -> list[str]:
    names: list[str] = []
    for value in values:
        for part in _text(value, "categories").split(","):
            name = part.strip().lower()
            if not name:
                continue
            if len(name) > MAX_CATEGORY_LENGTH:
                raise ValidationError("a category name is too long", code="field_too_long", field="categories")
            if name not in names:
                names.append(name)
    if not names:
        raise ValidationError("pick at least one category", code="categories_required", field="categories")
    if len(names) > defaults.MAX_CATEGORIES:
        raise ValidationError(f"at most {defaults.MAX_CATEGORIES} categories", code="too_many_categories",
                              status=422, field="categories")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValidationError(f"unknown categories: {', '.join(unknown)}", code="unknown_category",
                              status=422, field="categories")
    return names


def parse_phone(phone_number, country_code) -> tuple[str | None, str | None]:
    if phone_number in (None, ""):
        if country_code not in (None, ""):
            _text(country_code, "country_code")
        return None, None
    phone_number = _text(phone_number, "phone_number")
    country = _text(country_code, "country_code") if country_code not in (None, "") else None
    if not phone_number:
        return None, None
    try:
        return normalize(phone_number, country), country
    except InvalidPhoneNumber as exc:
        raise ValidationError(exc.message, code="invalid_phone_number", status=422, field="phone_number") from exc


def parse_idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not (1 <= len(key) <= MAX_IDEMPOTENCY_KEY) or not all(33 <= ord(c) <= 126 for c in key):
        raise ValidationError(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters",
                              code="invalid_idempotency_key")
    return key


def _unknown_fields(names: list[str]) -> ValidationError:
    """The error for fields we do not take; names are cut short, as they come from the caller."""
    shown = [name[:MAX_CATEGORY_LENGTH] for name in names[:5]]
    return ValidationError(f"unknown fields: {', '.join(shown)}", code="unknown_field", field=shown[0])


def _check_image_url(url: str, limits: intake.IntakeLimits) -> str:
    try:
        intake.check_url(url, limits)
    except intake.ImageError as exc:
        raise ValidationError(exc.message, code=exc.code, status=422, field="image_url") from exc
    return url


def _check_upload(data: bytes, declared: str | None, limits: intake.IntakeLimits) -> intake.ValidatedImage:
    try:
        return intake.validate_image_bytes(data, declared, limits)
    except intake.ImageError as exc:
        raise ValidationError(exc.message, code=exc.code, status=IMAGE_ERROR_STATUS.get(exc.code, 422),
                              field="image") from exc


def parse_submission(request: Request, known_categories: set[str], limits: intake.IntakeLimits) -> Submission:
    mimetype = request.mimetype
    idempotency_key = parse_idempotency_key(request)
    if mimetype == "application/json":
        try:
            body = json.loads(request.get_data(cache=False) or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
            raise ValidationError("the body is not valid JSON", code="malformed_json") from None
        if not isinstance(body, dict):
            raise ValidationError("the body must be a JSON object", code="invalid_body")
        unknown = sorted(set(body) - JSON_FIELDS)
        if unknown:
            raise _unknown_fields(unknown)
        categories = body.get("categories")
        if not isinstance(categories, list):
            raise ValidationError("categories must be a list of names", code="invalid_field", field="categories")
        if "image_url" not in body or body["image_url"] in (None, ""):
            raise ValidationError("image_url is required (or upload an image as multipart/form-data)",
                                  code="image_required", field="image_url")
        image_url = _check_image_url(_text(body["image_url"], "image_url"), limits)
        phone, country = parse_phone(body.get("phone_number"), body.get("country_code"))
        return Submission(parse_categories(categories, known_categories), None, image_url, phone, country,
                          idempotency_key)

    if mimetype == "multipart/form-data":
        if not request.mimetype_params.get("boundary"):
            raise ValidationError("multipart/form-data needs a boundary parameter", code="malformed_multipart")
        if not request.form and not request.files and request.content_length:
            # werkzeug drops what it cannot parse: a body with no readable part is broken, not empty
            raise ValidationError("the multipart body could not be read (broken body or wrong boundary)",
                                  code="malformed_multipart")
        unknown = sorted((set(request.form) | set(request.files)) - FORM_FIELDS)
        if unknown:
            raise _unknown_fields(unknown)
        upload = request.files.get("image")
        image_url = request.form.get("image_url") or None
        if upload is not None and image_url:
            raise ValidationError("send either an image file or an image_url, not both", code="image_conflict")
        categories = parse_categories(request.form.getlist("categories"), known_categories)
        phone, country = parse_phone(request.form.get("phone_number"), request.form.get("country_code"))
        if upload is not None:
            data = upload.read(limits.max_bytes + 1)
            if not data:
                raise ValidationError("the image file is empty", code="image_required", field="image")
            image = _check_upload(data, upload.mimetype, limits)
            return Submission(categories, image, None, phone, country, idempotency_key)
        if image_url:
            return Submission(categories, None, _check_image_url(_text(image_url, "image_url"), limits), phone,
                              country, idempotency_key)
        raise ValidationError("an image file (field 'image') or an image_url is required", code="image_required",
                              field="image")

    raise ValidationError("send multipart/form-data or application/json", code="unsupported_media_type",
                          status=415)
