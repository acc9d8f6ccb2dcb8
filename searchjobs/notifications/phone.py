"""Phone numbers: normalise user input to E.164 and mask numbers for logs."""

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from searchjobs.errors import SearchJobsError

#: longest input we try to parse; real numbers with spaces and punctuation stay well below
MAX_INPUT_LENGTH = 32
#: number types that can receive an SMS; FIXED_LINE, TOLL_FREE, PREMIUM_RATE, VOIP ... cannot (reliably)
SMS_CAPABLE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
#: character replacing each hidden digit in a masked number
MASK_CHAR = "•"
#: what mask() returns when it cannot make sense of its input
GENERIC_MASK = "+•••••••"
#: trailing digits left visible by mask()
VISIBLE_TAIL_DIGITS = 2


class InvalidPhoneNumber(SearchJobsError):
    """The phone number is invalid or cannot receive SMS."""

    code = "invalid_phone_number"


def normalize(phone_number: str, country_code: str | None = None) -> str:
    """Return `phone_number` in E.164 ("+33612345678") or raise InvalidPhoneNumber.

    `country_code` applies to numbers written in national form ("06 12 34 56 78");
    it may be a calling code ("33", "+33") or a region ("FR"). A number starting
    with "+" carries its own country code.
    """
    if not isinstance(phone_number, str) or not phone_number.strip():
        raise InvalidPhoneNumber("A phone number is required.")
    if len(phone_number) > MAX_INPUT_LENGTH or "\x00" in phone_number:
        raise InvalidPhoneNumber("The phone number is not valid.")

    region = _region_for(country_code)
    try:
        parsed = phonenumbers.parse(phone_number, region)
    except NumberParseException as exc:
        if region is None and exc.error_type == NumberParseException.INVALID_COUNTRY_CODE \
                and not phone_number.strip().startswith("+"):
            # a national number ("06 12 34 56 78") is fine once its country is known
            raise InvalidPhoneNumber("This number has no country code: choose its country, or start it with + "
                                     "and the country code.", code="phone_country_required") from exc
        # the library's message is safe (no digits), but ours is stable for API clients
        raise InvalidPhoneNumber("The phone number is not valid.") from exc

    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("The phone number is not valid.")
    if phonenumbers.number_type(parsed) not in SMS_CAPABLE_TYPES:
        raise InvalidPhoneNumber("The phone number cannot receive text messages; use a mobile number.")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def _region_for(country_code: str | None) -> str | None:
    """Map "33" / "+33" / "FR" to the region code phonenumbers expects (None if not given)."""
    if country_code is None or not country_code.strip():
        return None
    value = country_code.strip()
    if len(value) > MAX_INPUT_LENGTH or "\x00" in value:
        raise InvalidPhoneNumber("The country code is not valid.")
    digits = value.removeprefix("+")
    if digits.isdigit():
        region = phonenumbers.region_code_for_country_code(int(digits))
    else:
        region = value.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidPhoneNumber("The country code is not valid.")
    return region


def mask(e164: str) -> str:
    """Mask a number for logs: "+33612345678" -> "+33 6•• •• •• 78".

    Keeps the country code, the first national digit and the last two digits,
    grouped like the international format. Never raises.
    """
    try:
        parsed = phonenumbers.parse(e164, None)
        formatted = phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)
    except Exception:  # logging helper: any bad input gets the generic mask
        return _generic_mask(e164)

    prefix = f"+{parsed.country_code}"
    national = formatted.removeprefix(prefix).strip()
    if not formatted.startswith(prefix) or not national:
        return _generic_mask(e164)

    digit_count = sum(ch.isdigit() for ch in national)
    if digit_count <= 1 + VISIBLE_TAIL_DIGITS:
        return _generic_mask(e164)

    masked = []
    seen = 0
    for ch in national:
        if ch.isdigit():
            seen += 1
            keep = seen == 1 or seen > digit_count - VISIBLE_TAIL_DIGITS
            masked.append(ch if keep else MASK_CHAR)
        else:
            masked.append(ch)
    masked_national = "".join(masked)
    # a lone leading digit ("6 •• ••") reads like a separate number: attach it to the next group
    if len(masked_national) > 2 and masked_national[1] == " ":
        masked_national = masked_national[0] + masked_national[2:]
    return f"{prefix} {masked_national}"


def _generic_mask(value: object) -> str:
    """Fallback mask: show at most the last two digits."""
    if not isinstance(value, str):
        return GENERIC_MASK
    digits = [ch for ch in value if ch.isdigit()]
    if len(digits) < 6:
        return GENERIC_MASK
    return GENERIC_MASK + "".join(digits[-VISIBLE_TAIL_DIGITS:])
