"""The request and response bodies of the HTTP API, once: pydantic models that validate what comes in and
generate the OpenAPI components (web/openapi.py) that describe it.

Request models are strict (no coercion: 7 is not "7") and forbid unknown fields. Checks that need the
server's state read it from the validation context: `known_categories` (the catalog's names) and `limits`
(the image URL rules). Each such check raises a PydanticCustomError whose type is the API's stable error
code, so web/submission.py can turn the first error into the same error body as before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError

from searchjobs import defaults, intake
from searchjobs.db.tables import JOB_STATUSES
from searchjobs.notifications.phone import InvalidPhoneNumber, normalize

MAX_CATEGORY_LENGTH = 40  # characters of one category name
MAX_FIELD_LENGTH = 2048  # characters of any text field (URLs included)
MAX_IDEMPOTENCY_KEY = 200  # characters of an Idempotency-Key header
REF_TEMPLATE = "#/components/schemas/{model}"

# What country_code may be: a region phonenumbers knows (FR), or its calling code (33, +33); empty for none.
CALLING_CODES = sorted({str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
                        if phonenumbers.region_code_for_country_code(code) in phonenumbers.SUPPORTED_REGIONS}, key=int)
COUNTRY_CODES = ["", *sorted(phonenumbers.SUPPORTED_REGIONS), *CALLING_CODES, *(f"+{code}" for code in CALLING_CODES)]
PHONE_FORMAT = "phone"  # a custom format: a number that is valid and can receive SMS (see the description)




def known_country_code(value: str) -> bool:
    return value.upper() in phonenumbers.SUPPORTED_REGIONS or value.removeprefix("+") in CALLING_CODES


# An http(s) URL whose host is a DNS name (letters in the last label, so never an IP literal or
# "localhost"): what every public image URL looks like. The server's own rule (intake.check_url) also
# takes public IP literals; the document promises only what is accepted everywhere.
IMAGE_URL_PATTERN = (r"^https?://([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
                     r"(:[1-9][0-9]{0,3})?([/?#][!-~]*)?$")


def _base64_digits_pattern(max_digits: int) -> str:
    """Exactly the unpadded URL-safe base64 encodings of 1 to `max_digits` (a multiple of 3) decimal digits.
    Three digits (0x30-0x39) encode to four characters: the first two carry the first digit, the third the
    second digit's low bits, the fourth the third digit's; a one- or two-digit tail ends in zero bits."""
    lead = "(M[DTjz]|N[DTjz]|O[DT])"
    three, two, one = lead + "[AEIMQUYcgk][wxyz0-5]", lead + "[AEIMQUYcgk]", "(M[AQgw]|N[AQgw]|O[AQ])"
    return f"^(({three}){{0,{max_digits // 3 - 1}}}({three}|{two}|{one}))?$"  # empty: no cursor


# The cursors this API gives out: a listing's holds a job's row id (at most 18 digits); the change feed's
# a transaction id followed by a 19-digit event id (at most 39 digits), or a bare event id.
CURSOR_PATTERN = _base64_digits_pattern(18)
FEED_CURSOR_PATTERN = _base64_digits_pattern(39)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("invalid_field", "must not contain NUL bytes")
    return value


# Any text field: a string of at most MAX_FIELD_LENGTH characters, without NUL.
Text = Annotated[str, Field(max_length=MAX_FIELD_LENGTH), AfterValidator(_no_nul)]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def split_categories(values: list[str], known: set[str] | None) -> list[str]:
    """The distinct category names of the entries (each may hold several, comma-separated), lowercased."""
    names: list[str] = []
    for value in values:
        parts = [part.strip().lower() for part in value.split(",")]
        if not any(parts):
            raise PydanticCustomError("categories_required", "every categories entry must name a category")
        for name in filter(None, parts):
            if len(name) > MAX_CATEGORY_LENGTH:
                raise PydanticCustomError("field_too_long", "a category name is too long")
            if name not in names:
                names.append(name)
    if len(names) > defaults.MAX_CATEGORIES:
        raise PydanticCustomError("too_many_categories", f"at most {defaults.MAX_CATEGORIES} categories")
    unknown = [name for name in names if known is not None and name not in known]
    if unknown:
        raise PydanticCustomError("unknown_category", "unknown categories: {names}",
                                  {"names": ", ".join(unknown)[:200]})
    return names


PHONE_FIELD = {
    "default": None, "json_schema_extra": {"format": PHONE_FORMAT},
    "description": "For one SMS with the result link when the job completes: a mobile number that can receive "
                   "SMS, in E.164 (+33612345678) or in national form with country_code; empty for none.",
}
COUNTRY_FIELD = {
    "default": None, "json_schema_extra": {"enum": COUNTRY_CODES},
    "description": "For a number in national form: a region (FR) or its calling code (33, +33).",
}
# In JSON a calling code may also be a number (33), as a form's "33" is: it is read as that string.
CallingCode = Annotated[int, AfterValidator(str),
                        WithJsonSchema({"type": "integer", "enum": [int(code) for code in CALLING_CODES]})]
CountryText = Annotated[Text, WithJsonSchema({"type": "string", "maxLength": MAX_FIELD_LENGTH,
                                              "enum": COUNTRY_CODES})]


class SubmitFields(RequestModel):
    categories: list[Text] = Field(
        min_length=1, max_length=defaults.MAX_CATEGORIES,
        description=f"1 to {defaults.MAX_CATEGORIES} catalog categories (GET /api/categories). An entry may "
                    "also hold several, comma-separated; case and spaces around names do not matter.")
    phone_number: Text | None = Field(**PHONE_FIELD)
    country_code: CountryText | CallingCode | None = Field(
        None, description="For a number in national form: a region (FR) or its calling code (33, +33, or the "
                          "number 33).")

    @field_validator("categories")
    @classmethod
    def _categories(cls, values: list[str], info: ValidationInfo) -> list[str]:
        return split_categories(values, (info.context or {}).get("known_categories"))

    @field_validator("image_url", check_fields=False)
    @classmethod
    def _image_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = value.strip()
        try:
            intake.check_url(value, (info.context or {}).get("limits", intake.IntakeLimits()))
        except intake.ImageError as exc:
            raise PydanticCustomError(exc.code, exc.message) from exc
        return value

    @model_validator(mode="after")
    def _phone(self) -> SubmitFields:
        phone = (self.phone_number or "").strip()
        country = (self.country_code or "").strip() or None
        if country is not None and not known_country_code(country):
            raise PydanticCustomError("invalid_phone_number", "The country code is not valid.",
                                      {"field": "country_code"})
        if not phone:
            self.phone_number, self.country_code = None, None
            return self
        try:
            self.phone_number, self.country_code = normalize(phone, country), country
        except InvalidPhoneNumber as exc:
            # a national number without a country is the caller's missing country, not a bad number
            field = "country_code" if exc.code == "phone_country_required" else "phone_number"
            raise PydanticCustomError(exc.code, exc.message, {"field": field}) from exc
        return self


# The pattern is declared, not enforced here: intake.check_url gives each refusal its own code.
ImageUrl = Annotated[str, Field(min_length=1, max_length=MAX_FIELD_LENGTH,
                                json_schema_extra={"pattern": IMAGE_URL_PATTERN}), AfterValidator(_no_nul)]


FormImageUrl = Annotated[str, Field(max_length=MAX_FIELD_LENGTH,
                                    json_schema_extra={"pattern": f"^$|{IMAGE_URL_PATTERN}"}),
                         AfterValidator(_no_nul)]


class SubmitJson(SubmitFields):
    """A submit as application/json: the photo by URL."""

    image_url: ImageUrl = Field(description="A public http(s) URL of the photo; fetched by the worker.")


class SubmitMultipart(SubmitFields):
    """A submit as multipart/form-data: the photo as a file (`image`) or by URL. Repeat `categories`, or give
    one comma-separated value."""

    # exactly one photo: a file (and image_url absent or empty), or a URL (and no file)
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["image"], "properties": {"image_url": {"maxLength": 0}}},
        {"required": ["image_url"], "properties": {"image_url": {"minLength": 1}, "image": False}},
    ]})

    image: bytes = Field(
        None, json_schema_extra={"format": "binary", "contentMediaType": "image/*", "minLength": 1},
        description=f"The photo ({', '.join(sorted(intake.ALLOWED_CONTENT_TYPES))}; at most "
                    f"{intake.MAX_IMAGE_BYTES} bytes). Give this or image_url.")
    # a form field is a string or absent, never null: the defaults below are for absent fields
    image_url: FormImageUrl = Field(None, description="A public http(s) URL of the photo, instead of a file "
                                                      "(empty: none, as a browser sends an unused field).")
    phone_number: Text = Field(**PHONE_FIELD)
    country_code: Text = Field(**COUNTRY_FIELD)

    @model_validator(mode="after")
    def _one_image(self) -> SubmitMultipart:
        if self.image is not None and self.image_url:
            raise PydanticCustomError("image_conflict", "send either an image file or an image_url, not both",
                                      {"field": "image"})
        if self.image is None and not self.image_url:
            raise PydanticCustomError("image_required", "an image file (field 'image') or an image_url is required",
                                      {"field": "image"})
        if self.image is not None and not self.image:
            raise PydanticCustomError("image_required", "the image file is empty", {"field": "image"})
        return self


class TwilioStatus(BaseModel):
    """A Twilio delivery callback (application/x-www-form-urlencoded)."""

    MessageSid: str = None
    MessageStatus: str = None
    SmsSid: str = None
    SmsStatus: str = None
    ErrorCode: str = None


# -- responses --------------------------------------------------------------------------------------

NullableTime = datetime | None
Status = Literal[JOB_STATUSES]  # type: ignore[valid-type]


class JobError(BaseModel):
    code: str
    message: str


class Hit(BaseModel):
    sku: str | None = None
    name: str | None = None
    price: float | str | None = None
    currency: str | None = None
    score: float | None = None
    image_url: str | None = None


class QueryColour(BaseModel):
    hex: str = Field(pattern=r"^#[0-9a-f]{6}$")
    name: str = Field(description="An everyday colour word for it.")
    share: float = Field(ge=0, le=1, description="Part of the garment in this colour.")


class Results(BaseModel):
    categories: dict[str, list[Hit]] | None = Field(None, description="Best matches per category, best first.")
    catalog_version: str | None = None
    took_ms: float | None = None
    query_colours: list[QueryColour] | None = Field(
        None, max_length=3, description="The dominant colours the search saw in the photo's garment, biggest first.")


class Job(BaseModel):
    """A search job as the caller may see it. Never holds the phone number. `results` is present only for a
    completed job, and only to its owner, an admin, or the holder of its result link."""

    job_id: str
    status: Status
    progress: int = Field(ge=0, le=100)
    stage: str | None = Field(None, description="queued, claimed, image_loaded, features, searched:<category>, "
                                                "ranked, done")
    version: int
    attempts: int = Field(ge=0)
    categories: list[str]
    sms: bool = Field(description="A phone number was given (it is never shown).")
    cancel_requested: bool
    error: JobError | None = None
    created_at: datetime
    updated_at: datetime
    started_at: NullableTime = None
    finished_at: NullableTime = None
    status_url: str = Field(json_schema_extra={"format": "uri"},
                            description="This job's absolute URL (on PUBLIC_BASE_URL): GET it for the status.")
    results: Results | None = None


class SubmittedJob(Job):
    result_url: str = Field(json_schema_extra={"format": "uri"}, description="The result page link (the one sent by SMS). Keep it: it is the only "
                                        "way to the results without an API key.")
    result_token: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$",
                              description="The token of the result link (its last part): GET /api/results/{token}.")


class JobList(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ChangeEvent(BaseModel):
    id: int
    job_id: str
    kind: str = Field(description="created, claimed, progress, retried, completed, failed, cancelled, notified, ...")
    status: Status
    progress: int
    stage: str | None = None
    version: int
    attempt: int | None = None
    created_at: datetime


class Changes(BaseModel):
    events: list[ChangeEvent]
    next_cursor: str = Field(description="Pass as `since` next time.")
    has_more: bool


class Category(BaseModel):
    category: str
    items: int


class Categories(BaseModel):
    categories: list[Category]
    max_per_job: int


class StepData(BaseModel):
    kind: str
    status: Status
    progress: int = Field(ge=0, le=100)
    stage: str | None = None
    version: int
    at: datetime


class StepEvent(BaseModel):
    """One Server-Sent Event, as a client's SSE parser yields it (the schema describes each event of the
    stream)."""

    id: str | None = Field(None, pattern=r"^[0-9]+$", description="The event id: the resume cursor.")
    event: Literal["progress", "completed", "failed", "cancelled"]
    data: str = Field(json_schema_extra={"contentMediaType": "application/json",
                                         "contentSchema": {"$ref": REF_TEMPLATE.format(model="StepData")}})
    retry: int | None = Field(None, description="Reconnect delay in milliseconds.")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable"] = Field(
        description="degraded: Postgres answers but Redis does not (submits still work, reads come from Postgres).")
    checks: dict[str, str] = Field(description="Each dependency (database, redis) and how it answered.")


class Recorded(BaseModel):
    recorded: bool


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable and machine-readable; `x-descriptions` says what each means.")
    message: str = Field(description="For people; may change.")
    field: str | None = Field(None, description="The request field at fault, if one is.")
    size_bytes: int | None = Field(None, description="image_too_large: the image's size in bytes (or the whole "
                                                     "body's, when it was refused without being read).")
    limit_bytes: int | None = Field(None, description="image_too_large: the largest image accepted, in bytes.")
    job: Job | None = Field(None, description="The job as it is now (409 answers).")


class Error(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


REQUEST_MODELS = (SubmitJson, SubmitMultipart, TwilioStatus)
RESPONSE_MODELS = (Error, Job, SubmittedJob, JobList, Changes, Categories, StepEvent, StepData, Health,
                   Readiness, Recorded)


def _tidy(schema: Any) -> Any:
    """Drop pydantic's generated titles (noise in the rendered docs) and `default: null`."""
    if isinstance(schema, dict):
        return {key: _tidy(value) for key, value in schema.items()
                if key != "title" and not (key == "default" and value is None)}
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    return schema


def component_schemas() -> dict[str, dict]:
    """Every model's JSON Schema (2020-12, OpenAPI 3.1's dialect), keyed by model name, refs between them."""
    pairs = [(model, "validation") for model in REQUEST_MODELS] + [(model, "serialization")
                                                                   for model in RESPONSE_MODELS]
    _, top = models_json_schema(pairs, ref_template=REF_TEMPLATE)
    return _tidy(top["$defs"])
