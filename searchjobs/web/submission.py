"""Read and check a job submission (multipart or JSON). Nothing here writes anything.

The body is read (`read_json_body`, `read_form_body`), validated by its pydantic model in web/schemas.py
(the same model that documents it), and the first problem becomes a ValidationError with a stable code,
raised before any row is written.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import pydantic
from flask import Request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from searchjobs import intake
from searchjobs.errors import ValidationError
from searchjobs.intake.image import too_large_message
from searchjobs.web.errors import ApiError
from searchjobs.web.schemas import (
    MAX_CATEGORY_LENGTH,
    MAX_FIELD_LENGTH,
    MAX_IDEMPOTENCY_KEY,
    SubmitFields,
    SubmitJson,
    SubmitMultipart,
)

__all__ = ["MAX_FIELD_LENGTH", "MAX_IDEMPOTENCY_KEY", "Submission", "parse_idempotency_key", "parse_submission"]

# Codes that are not 400: well formed, but not acceptable (422), or an image too big / of the wrong type.
CODE_STATUS = {
    "too_many_categories": 422, "unknown_category": 422, "image_url_invalid": 422, "image_url_forbidden": 422,
    "invalid_phone_number": 422, "phone_country_required": 422, "image_unreadable": 422,
    "image_dimensions_too_large": 422, "image_too_large": 413, "image_unsupported_type": 415,
}
# The codes schemas.py's validators raise as their error type.
OWN_CODES = frozenset({"categories_required", "field_too_long", "image_conflict", "image_required",
                       "invalid_field", *CODE_STATUS})
# pydantic's own error types, by field ("*": any field), as the API's codes; any other is invalid_field.
PYDANTIC_CODES = {
    ("string_too_long", "*"): "field_too_long",
    ("too_short", "categories"): "categories_required",
    ("too_long", "categories"): "too_many_categories",
}


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


def parse_idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not (1 <= len(key) <= MAX_IDEMPOTENCY_KEY) or not all(33 <= ord(c) <= 126 for c in key):
        raise ValidationError(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters",
                              code="invalid_idempotency_key")
    return key


def _refuse_repeated(name: str) -> ValidationError:
    """A field given twice: taking either value would be a guess (a JSON parser keeps the last, a form
    reader the first), and a proxy checking the other one would be fooled."""
    shown = name[:MAX_CATEGORY_LENGTH]  # the name comes from the caller: cut short
    return ValidationError(f"{shown} is given more than once", code="invalid_field", field=shown)


def _object_without_repeats(pairs: list[tuple[str, object]]) -> dict:
    body = dict(pairs)
    if len(body) < len(pairs):
        seen = set()
        raise _refuse_repeated(next(name for name, _ in pairs if name in seen or seen.add(name)))
    return body


def read_json_body(request: Request) -> dict:
    try:
        body = json.loads(request.get_data(cache=False) or b"null", object_pairs_hook=_object_without_repeats)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ValidationError("the body is not valid JSON", code="malformed_json") from None
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", code="invalid_body")
    return body


def image_too_large(size: int | None, limit: int) -> ApiError:
    """413 image_too_large, with the sizes as numbers; `size` is None when a chunked body went past the
    limit (it is not read to the end, so its size is never known)."""
    sizes = {"limit_bytes": limit} if size is None else {"size_bytes": size, "limit_bytes": limit}
    return ApiError(413, "image_too_large", too_large_message(size, limit), field="image", **sizes)


def refuse_oversized_body(request: Request, limits: intake.IntakeLimits) -> None:
    """A multipart body declared larger than the app takes is an image too large: say so from the headers
    alone, before any of the body is read (the server drains or closes the connection after the answer)."""
    declared, cap = request.content_length, request.max_content_length
    if request.mimetype == "multipart/form-data" and declared is not None and cap is not None and declared > cap:
        raise image_too_large(declared, limits.max_bytes)


def read_form_body(request: Request, limits: intake.IntakeLimits) -> dict:
    """The multipart fields as the model's input: a list for categories, the file for the image. An empty
    image_url counts as absent: a browser sends every field of its form."""
    if not request.mimetype_params.get("boundary"):
        raise ValidationError("multipart/form-data needs a boundary parameter", code="malformed_multipart")
    try:
        request.form  # noqa: B018 - parses the body, files included
    except RequestEntityTooLarge:
        if request.content_length is None:  # a chunked body went past MAX_CONTENT_LENGTH while read
            raise image_too_large(None, limits.max_bytes) from None
        raise  # a text field past MAX_FORM_MEMORY_SIZE: the generic 413
    if not request.form and not request.files and request.content_length:
        # werkzeug drops what it cannot parse: a body with no readable part is broken, not empty
        raise ValidationError("the multipart body could not be read (broken body or wrong boundary)",
                              code="malformed_multipart")
    for parts in (request.form, request.files):  # categories may repeat (one part per category), nothing else
        repeated = next((name for name, values in parts.lists() if len(values) > 1 and name != "categories"), None)
        if repeated is not None or any(name in request.form for name in request.files):
            raise _refuse_repeated(repeated or next(name for name in request.files if name in request.form))
    fields: dict = {name: request.form.get(name) for name in request.form if name != "categories"}
    if fields.get("image_url") == "":
        del fields["image_url"]
    fields["categories"] = request.form.getlist("categories")
    for name in request.files:
        fields[name] = request.files[name]
    return fields


def _first_error(exc: pydantic.ValidationError) -> ValidationError:
    """The API's error for the first problem pydantic found; unknown fields are reported before anything."""
    errors = exc.errors(include_url=False)
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        shown = [name[:MAX_CATEGORY_LENGTH] for name in unknown[:5]]  # names come from the caller: cut short
        return ValidationError(f"unknown fields: {', '.join(shown)}", code="unknown_field", field=shown[0])
    error = errors[0]
    field = str(error["loc"][0]) if error["loc"] else (error.get("ctx") or {}).get("field")
    kind = error["type"]
    if field == "image_url" and (kind == "missing" or error.get("input") in (None, "")):
        return ValidationError("image_url is required (or upload an image as multipart/form-data)",
                               code="image_required", field="image_url")
    if kind in OWN_CODES:
        code, message = kind, error["msg"]
    else:
        code = PYDANTIC_CODES.get((kind, field)) or PYDANTIC_CODES.get((kind, "*")) or "invalid_field"
        message = f"{field} has the wrong type" if code == "invalid_field" else f"{field}: {error['msg']}"
    return ValidationError(message, code=code, status=CODE_STATUS.get(code, 400), field=field)


def _upload_size(upload: FileStorage) -> int:
    """The uploaded file's size in bytes. Werkzeug has already spooled the part to memory or a temporary
    file (within MAX_CONTENT_LENGTH), so seeking to its end reads nothing."""
    stream = upload.stream
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    return size


def validate(model: type[SubmitFields], body: dict, known_categories: set[str],
             limits: intake.IntakeLimits) -> SubmitFields:
    try:
        return model.model_validate(body, context={"known_categories": known_categories, "limits": limits})
    except pydantic.ValidationError as exc:
        raise _first_error(exc) from None


def _check_upload(data: bytes, declared: str | None, limits: intake.IntakeLimits) -> intake.ValidatedImage:
    try:
        return intake.validate_image_bytes(data, declared, limits)
    except intake.ImageError as exc:
        raise ValidationError(exc.message, code=exc.code, status=CODE_STATUS.get(exc.code, 422),
                              field="image") from exc


def parse_submission(request: Request, known_categories: set[str], limits: intake.IntakeLimits) -> Submission:
    idempotency_key = parse_idempotency_key(request)
    if request.mimetype == "application/json":
        model = validate(SubmitJson, read_json_body(request), known_categories, limits)
        return Submission(model.categories, None, model.image_url, model.phone_number, model.country_code,
                          idempotency_key)
    if request.mimetype == "multipart/form-data":
        refuse_oversized_body(request, limits)
        fields = read_form_body(request, limits)
        upload = fields.get("image")
        size = None
        if isinstance(upload, FileStorage):
            size = _upload_size(upload)
            fields["image"] = upload.read(limits.max_bytes + 1)  # enough to tell "too large", no more
        model = validate(SubmitMultipart, fields, known_categories, limits)
        if size is not None and size > limits.max_bytes:
            raise image_too_large(size, limits.max_bytes)  # its real size, not the bytes read
        image = _check_upload(model.image, upload.mimetype, limits) if model.image is not None else None
        return Submission(model.categories, image, model.image_url, model.phone_number, model.country_code,
                          idempotency_key)
    raise ValidationError("send multipart/form-data or application/json", code="unsupported_media_type",
                          status=415)
