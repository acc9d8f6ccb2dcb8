"""Every `error.code` the API may answer, with what it means: the Error schema's enum in /openapi.json.

A client can rely on a code staying what it says here; web/errors.py turns exceptions into bodies
carrying them.
"""

from __future__ import annotations

from searchjobs import defaults
from searchjobs.intake import MAX_IMAGE_BYTES
from searchjobs.web.api import MAX_PAGE
from searchjobs.web.schemas import MAX_IDEMPOTENCY_KEY

# Every `error.code` an answer may carry, with what it means. The Error schema's enum is this list.
ERROR_CODES = {
    # request shape
    "bad_request": "The request could not be read (for example a broken multipart body, or a control "
                   "character in a header), or an /api query parameter is given more than once.",
    "malformed_json": "The body is not valid JSON.",
    "malformed_multipart": "The multipart/form-data body has no boundary or no readable part.",
    "invalid_body": "The JSON body is not an object.",
    "unknown_field": "The body has a field this operation does not take (`field` names it).",
    "invalid_field": "A field has the wrong type, holds a NUL byte, or is given more than once (only "
                     "categories may repeat) (`field` names it).",
    "field_too_long": "A text field or a category name is too long.",
    "unsupported_media_type": "The body is neither multipart/form-data nor application/json.",
    "payload_too_large": f"The body is larger than {defaults.MAX_CONTENT_LENGTH} bytes (a multipart submit that "
                         "large gets image_too_large), or a form's text field is too large to read.",
    "method_not_allowed": "The path exists but not with this method.",
    "uri_too_long": "The request line is longer than the server reads (4094 bytes) (414).",
    "header_fields_too_large": "A header is longer than the server reads (8190 bytes), or there are too many "
                               "(431).",
    "not_found": "No such job, result link, image or path (or not visible to this caller).",
    # submissions
    "categories_required": "No category was given, or a categories entry names none.",
    "too_many_categories": f"More than {defaults.MAX_CATEGORIES} distinct categories.",
    "unknown_category": "A category is not in the catalog (see GET /api/categories).",
    "image_required": "Neither an image file nor an image_url was given, or the file is empty.",
    "image_conflict": "Both an image file and an image_url were given.",
    "image_too_large": f"The image is larger than {MAX_IMAGE_BYTES} bytes, or a multipart submit's body is "
                       f"larger than {defaults.MAX_CONTENT_LENGTH} (refused unread). `limit_bytes` is the limit, "
                       "`size_bytes` the image's (or that body's) size.",
    "image_unsupported_type": "The image is in a format other than JPEG, PNG, WebP or GIF.",
    "image_unreadable": "The file is not an image, or it is damaged.",
    "image_dimensions_too_large": "The image has too many pixels (its header is checked before decoding).",
    "image_url_invalid": "The image_url is not an http(s) URL this service can fetch.",
    "image_url_forbidden": "The image_url points at a loopback, private or metadata address.",
    "invalid_phone_number": "The phone number is not valid or cannot receive SMS, or country_code is not a "
                            "region or calling code (`field` says which).",
    "phone_country_required": "The phone number is in national form (no leading + and country code) and "
                              "country_code is not given.",
    "invalid_idempotency_key": f"The Idempotency-Key header is not 1-{MAX_IDEMPOTENCY_KEY} printable ASCII "
                               "characters.",
    "idempotency_key_reused": "The Idempotency-Key was used earlier for a different request (409).",
    # listings
    "invalid_limit": f"limit is not an integer from 1 to {MAX_PAGE}.",
    "invalid_status": "status is not a job status.",
    "invalid_cursor": "cursor / since is not a cursor this API gave out.",
    "invalid_last_event_id": "Last-Event-ID is not an event id this API sent.",
    # who may do what
    "unauthorized": "Credentials are missing (metrics).",
    "invalid_authorization": "The Authorization header is not `Bearer <api key>`.",
    "invalid_api_key": "The API key is unknown or revoked.",
    "api_key_required": "This operation (or, with SEARCHJOBS_ALLOW_ANONYMOUS=false, this service) needs "
                        "an API key.",
    "forbidden": "The caller may see the job but not change it this way.",
    "invalid_signature": "The Twilio signature is missing or wrong.",
    "invalid_callback": "The Twilio callback lacks MessageSid or MessageStatus.",
    # state
    "conflict": "The job changed meanwhile; read it again.",
    "job_finished": "The job is already finished and cannot be cancelled (`job` holds it).",
    "job_not_failed": "Only a failed job can be retried (`job` holds it).",
    "unprocessable": "The request is well formed but cannot be carried out.",
    # limits and outages
    "rate_limited": "Too many requests; wait for Retry-After seconds.",
    "too_many_streams": "This server holds as many live streams as it may; poll the status instead.",
    "service_unavailable": "Postgres or Redis is unavailable (or, for requests without a key, rate "
                           "limiting is); retry after Retry-After seconds.",
    "catalog_loading": "The catalog's first load is running (`loaded` of `total` items): categories and "
                       "submits answer once it is done; retry after Retry-After seconds.",
    "internal_error": "A bug. No details are given to clients; the server log has them.",
    "http_error": "Any other HTTP error.",
}
