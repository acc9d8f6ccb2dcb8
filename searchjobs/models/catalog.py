"""Queries on catalog_items (the products searched)."""

from __future__ import annotations

import sqlalchemy as sa


def categories(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(
        sa.text("SELECT category, count(*) AS items FROM catalog_items GROUP BY category ORDER BY category")
    ).mappings()
    return [dict(r) for r in rows]


def category_names(conn: sa.Connection) -> set[str]:
    return {r["category"] for r in categories(conn)}


def count(conn: sa.Connection) -> int:
    return conn.execute(sa.text("SELECT count(*) FROM catalog_items")).scalar_one()


def catalog_version(conn: sa.Connection) -> str:
    """Changes whenever the catalog does: item count, last update and descriptor version."""
    row = conn.execute(
        sa.text(
            "SELECT count(*), coalesce(max(updated_at), 'epoch'::timestamptz), "
            "coalesce(max(embedding_version), 'none') FROM catalog_items"
        )
    ).one()
    return f"{row[2]}:{row[0]}:{int(row[1].timestamp())}"


def image(conn: sa.Connection, sku: str) -> dict | None:
    row = conn.execute(
        sa.text("SELECT image_data, image_content_type, image_url FROM catalog_items WHERE sku = :sku"), {"sku": sku}
    ).mappings().first()
    return dict(row) if row else None
