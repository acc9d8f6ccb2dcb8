"""Result links: unguessable tokens, of which only a hash is stored.

The token is an HMAC of the job id under SECRET_KEY: the worker can rebuild it
for the SMS without the database ever holding it in clear, and nobody without
the secret can compute it from a job id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

TOKEN_BYTES = 32  # 256 bits before encoding; at least 128 are required
LINK_PLACEHOLDER = "{link}"  # stored in the SMS outbox body instead of the link; filled in at send time


def new_job_id() -> str:
    """An unguessable job id (160 random bits, URL-safe).

    Never starting with "-" or "_": an id like "-n3x..." would read as an option on the
    command line (`searchjobs jobs retry <job_id>`).
    """
    while True:
        job_id = secrets.token_urlsafe(20)
        if job_id[0].isalnum():
            return job_id


def result_token(secret_key: str, job_id: str) -> str:
    digest = hmac.new(secret_key.encode(), b"result-link:" + job_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:TOKEN_BYTES]).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def result_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/r/{token}"


def looks_like_token(value: str) -> bool:
    """Cheap shape check before touching the database (43 URL-safe characters)."""
    return len(value) == 43 and all(c.isalnum() or c in "-_" for c in value)


def render_sms(body: str, secret_key: str, public_base_url: str, job_id: str) -> str:
    """The outbox body with its link placeholder replaced by the job's real result link."""
    return body.replace(LINK_PLACEHOLDER, result_url(public_base_url, result_token(secret_key, job_id)))
