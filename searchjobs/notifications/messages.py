"""SMS texts sent to people, and masking of result links for logs."""

import hashlib
import re
import string

#: one SMS segment in the GSM-7 alphabet holds 160 septets; longer bodies are split and billed per segment
MAX_SMS_LENGTH = 160
#: text before the result link
RESULT_MESSAGE_PREFIX = "Your search results are ready: "
#: ASCII characters of the GSM-7 basic alphabet (1 septet each); "`" is not in GSM-7 at all
GSM7_BASIC_ASCII = frozenset(string.ascii_letters + string.digits + " \n\r!\"#$%&'()*+,-./:;<=>?@_")
#: ASCII characters of the GSM-7 extension table: allowed, but each costs 2 septets (escape + char)
GSM7_EXTENSION_ASCII = frozenset("^{}\\[~]|")
#: path marker in front of the secret token of a result link
RESULT_PATH_MARKER = "/r/"
#: token characters left visible by mask_link (enough to correlate log lines)
VISIBLE_TOKEN_CHARS = 4
#: what replaces the hidden part of a link
LINK_MASK = "••••"
#: URLs inside free text, for mask_links_in()
_URL_RE = re.compile(r"https?://\S+")


def result_message(link: str) -> str:
    """Return the SMS body announcing `link`; ValueError if it is not one plain GSM-7 segment."""
    if not isinstance(link, str) or not link:
        raise ValueError("link is required")
    if any(ch.isspace() for ch in link):
        # a space or newline would cut the link in the phone's message view
        raise ValueError("link must not contain whitespace")
    body = RESULT_MESSAGE_PREFIX + link
    septets = 0
    for ch in body:
        if ch in GSM7_BASIC_ASCII:
            septets += 1
        elif ch in GSM7_EXTENSION_ASCII:
            septets += 2
        else:
            # anything else switches the whole SMS to UCS-2 (70 chars per segment)
            raise ValueError("link contains a character that is not plain GSM-7 ASCII")
    if septets > MAX_SMS_LENGTH:
        raise ValueError(f"message would be {septets} characters; one SMS holds {MAX_SMS_LENGTH}")
    return body


def mask_link(link: str) -> str:
    """Hide the token of ".../r/<token>" for logs, keeping its first 4 characters. Never raises."""
    if not isinstance(link, str):
        return LINK_MASK
    marker_at = link.rfind(RESULT_PATH_MARKER)
    if marker_at == -1:
        # unknown shape: keep scheme and host only, the path may hold a secret too
        scheme, sep, rest = link.partition("://")
        if not sep:
            return LINK_MASK
        host = rest.split("/", 1)[0]
        return f"{scheme}://{host}/{LINK_MASK}"
    token_start = marker_at + len(RESULT_PATH_MARKER)
    # everything after the token start is hidden, query string and fragment included
    visible = link[token_start : token_start + VISIBLE_TOKEN_CHARS]
    return link[:token_start] + visible + LINK_MASK


def mask_links_in(text: str) -> str:
    """Apply mask_link to every http(s) URL in `text` (for logging message bodies)."""
    return _URL_RE.sub(lambda match: mask_link(match.group(0)), text)


def body_sha256(body: str) -> str:
    """The hex sha256 of an SMS body as sent: what the outbox keeps and a provider look-up matches on."""
    return hashlib.sha256(body.encode()).hexdigest()
