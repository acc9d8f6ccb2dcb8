"""API clients: keys are shown once at creation; only their sha256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import sqlalchemy as sa

from searchjobs.db import sql

QUERIES = sql.load(__file__)  # clients.sql
_CREATE = QUERIES["create"]
_BY_KEY_PREFIX = QUERIES["by_key_prefix"]
_TOUCH = QUERIES["touch"]
_LIST_ALL = QUERIES["list_all"]
_REVOKE = QUERIES["revoke"]

KEY_PREFIX = "sjk_"  # marks a searchjobs key in logs and secret scanners
PREFIX_CHARS = 8  # random characters of the key that identify its row (not secret on their own)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(conn: sa.Connection, name: str, *, is_admin: bool = False) -> tuple[dict, str]:
    """A new client and its key (128+ random bits). The key is returned once and never stored."""
    ident = secrets.token_hex(PREFIX_CHARS // 2)
    key = f"{KEY_PREFIX}{ident}_{secrets.token_urlsafe(24)}"
    row = conn.execute(
        _CREATE,
        {"name": name, "prefix": KEY_PREFIX + ident, "hash": hash_key(key), "admin": is_admin},
    ).mappings().one()
    return dict(row), key


def authenticate(conn: sa.Connection, key: str) -> dict | None:
    """The active client holding `key`, or None."""
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        return None
    prefix = key[: len(KEY_PREFIX) + PREFIX_CHARS]
    row = conn.execute(
        _BY_KEY_PREFIX,
        {"prefix": prefix},
    ).mappings().first()
    if row is None or row["revoked_at"] is not None or not hmac.compare_digest(row["key_hash"], hash_key(key)):
        return None
    return dict(row)


def touch(conn: sa.Connection, client_id: int) -> None:
    """Record use, at most once a minute per client (no write per request)."""
    conn.execute(_TOUCH, {"id": client_id})


def list_all(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(_LIST_ALL)
    return [dict(r) for r in rows.mappings()]


def revoke(conn: sa.Connection, ident: str) -> dict | None:
    """Revoke by key prefix or by name; None if no active client matches."""
    row = conn.execute(_REVOKE, {"v": ident}).mappings().first()
    return dict(row) if row else None
