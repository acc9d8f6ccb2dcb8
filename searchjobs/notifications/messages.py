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
#: the token of a result link inside a body, wherever the link points (URL-safe base64)
_RESULT_TOKEN_RE = re.compile(re.escape(RESULT_PATH_MARKER) + r"([A-Za-z0-9_-]+)")
#: anything a phone shows as a link, with or without a scheme ("https://x.io/ab", "x.io/ab")
_ANY_LINK_RE = re.compile(r"https?://|\b[\w-]+(?:\.[\w-]+)+/", re.IGNORECASE)
#: match_sent_body verdicts
MATCHED = "matched"
UNREADABLE = "unreadable"


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


def token_sha256(token: str) -> str:
    """The hex sha256 of a result-link token: the same hash as jobs.links.token_hash, which the job keeps."""
    return hashlib.sha256(token.encode()).hexdigest()


def match_sent_body(stored: str, *, body_sha256: str | None, token_hash: str | None) -> str | None:
    """Is the provider's copy of a message one we sent? MATCHED, UNREADABLE, or None (not ours).

    With `token_hash`, a body is ours if a result link in it (`.../r/<token>`) carries the token of that
    hash: the provider may store the body differently from what we sent (trailing whitespace, Smart
    Encoding of unicode characters, the base URL changed since), but the token is ours alone. A body
    that shows a link but no result token (a Messaging Service's link shortening) is UNREADABLE: it may
    be ours, and nothing in it can tell. A body hashing to `body_sha256` is ours too (the exact text sent).
    """
    if body_sha256 is not None and hashlib.sha256(stored.encode()).hexdigest() == body_sha256:
        return MATCHED
    if token_hash is None:
        return None
    tokens = _RESULT_TOKEN_RE.findall(stored)
    if any(token_sha256(token) == token_hash for token in tokens):
        return MATCHED
    if not tokens and _ANY_LINK_RE.search(stored):
        return UNREADABLE
    return None
