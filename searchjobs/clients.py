"""API clients: keys are shown once at creation; only their sha256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

import sqlalchemy as sa

from searchjobs.db import sql

QUERIES = sql.load(__file__)  # clients.sql
_CREATE = QUERIES["create"]
_BY_KEY_PREFIX = QUERIES["by_key_prefix"]
_TOUCH = QUERIES["touch"]
_LIST_ALL = QUERIES["list_all"]
_REVOKE = QUERIES["revoke"]
_REVOCATION_EPOCH = QUERIES["revocation_epoch"]

EPOCH_CHECK_SECONDS = 1.0  # a process re-reads the revocation epoch this often: a revoked key is refused within ~1 s
TOUCH_SECONDS = 60.0  # last_used_at is written at most this often per client and process (the SQL also filters)
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


def revocation_epoch(conn: sa.Connection) -> tuple:
    """A value that changes whenever a key is revoked (keys are never un-revoked nor deleted)."""
    row = conn.execute(_REVOCATION_EPOCH).one()
    return tuple(row)


class KeyCache:
    """Authenticated keys kept in one process, dropped as soon as any key is revoked anywhere.

    Each lookup at most once a second reads the revocation epoch from Postgres (one small
    aggregate) and, if it moved, forgets every cached key; so a key revoked by any process is
    refused by every process within about a second. A key is cached by its sha256 only.
    `last_used_at` is touched at most once a minute per client from each process.
    """

    def __init__(self, *, epoch_check_seconds: float = EPOCH_CHECK_SECONDS, touch_seconds: float = TOUCH_SECONDS,
                 clock=time.monotonic):
        self.epoch_check_seconds = epoch_check_seconds
        self.touch_seconds = touch_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, dict] = {}  # sha256 of the key -> its active client row
        self._touched: dict[int, float] = {}  # client id -> when this process last touched it
        self._epoch: tuple | None = None
        self._epoch_checked = float("-inf")
        self._generation = 0  # bumped at every clear: a row read before a clear is not cached after it

    def authenticate(self, connect, key: str) -> dict | None:
        """The active client holding `key`, or None. `connect()` gives a Postgres connection context."""
        now = self.clock()
        digest = hash_key(key)
        if now - self._epoch_checked >= self.epoch_check_seconds:
            with connect() as conn:
                epoch = revocation_epoch(conn)
            with self._lock:
                if epoch != self._epoch:
                    self._clients.clear()
                    self._generation += 1
                    self._epoch = epoch
                self._epoch_checked = now
        client = self._clients.get(digest)
        if client is None:
            generation = self._generation
            with connect() as conn:
                client = authenticate(conn, key)
            if client is None:
                return None  # unknown or revoked keys are not cached: each try is checked again
            with self._lock:
                if generation == self._generation:
                    self._clients[digest] = client
        if now - self._touched.get(client["id"], float("-inf")) >= self.touch_seconds:
            with connect() as conn:
                touch(conn, client["id"])
            self._touched[client["id"]] = now
        return client


def list_all(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(_LIST_ALL)
    return [dict(r) for r in rows.mappings()]


def revoke(conn: sa.Connection, ident: str) -> dict | None:
    """Revoke by key prefix or by name; None if no active client matches."""
    row = conn.execute(_REVOKE, {"v": ident}).mappings().first()
    return dict(row) if row else None
