"""Uploaded images: stored in Postgres so any process can read them back by URL."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from searchjobs.db import sql

QUERIES = sql.load(__file__)  # store.sql, beside this module
_INSERT = QUERIES["insert"]
_GET_BY_PUBLIC_ID = QUERIES["get_by_public_id"]
_GET = QUERIES["get"]


def new_public_id() -> str:
    """144 random bits: the URL of a person's photo must not be guessable."""
    return secrets.token_urlsafe(18)


def insert(conn: sa.Connection, *, public_id: str, data: bytes, content_type: str, width: int, height: int,
           sha256: str) -> dict:
    row = conn.execute(
        _INSERT,
        {
            "public_id": public_id,
            "content_type": content_type,
            "size": len(data),
            "width": width,
            "height": height,
            "sha256": sha256,
            "data": data,
        },
    ).mappings().one()
    return dict(row)


def get_by_public_id(conn: sa.Connection, public_id: str) -> dict | None:
    row = conn.execute(_GET_BY_PUBLIC_ID, {"p": public_id}).mappings().first()
    return dict(row) if row else None


def get(conn: sa.Connection, image_id: int) -> dict | None:
    row = conn.execute(_GET, {"id": image_id}).mappings().first()
    return dict(row) if row else None
