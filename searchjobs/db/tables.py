"""A SQLAlchemy Core mirror of the schema the Alembic migrations create; no query is built from it.

It exists for two readers only: tests/integration/test_schema.py compares it with the migrated
database, and `alembic revision --autogenerate` diffs against it to draft the next migration. Keep
it in step with searchjobs/migrations/versions. The queries themselves are plain SQL in the `.sql`
file beside each module that runs them (searchjobs/db/sql.py). The status vocabularies below are
the Python side of the CHECK constraints that spell them out.
"""

from __future__ import annotations

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

JOB_STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
FINISHED_STATUSES = ("completed", "failed", "cancelled")
NOTIFICATION_STATUSES = ("pending", "sending", "unknown", "sent", "delivered", "undelivered", "failed", "skipped")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _now() -> Column:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


api_clients = Table(
    "api_clients",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", Text, nullable=False),
    Column("key_prefix", Text, nullable=False, unique=True),  # shown in listings; finds the row
    Column("key_hash", Text, nullable=False),  # sha256 of the whole key; the key itself is never stored
    Column("is_admin", Boolean, nullable=False, server_default=text("false")),
    _now(),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

images = Table(
    "images",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("public_id", Text, nullable=False, unique=True),  # unguessable: the URL of a person's photo
    Column("content_type", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("data", LargeBinary, nullable=False),
    _now(),
)

search_jobs = Table(
    "search_jobs",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("job_id", Text, nullable=False, unique=True),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("progress", SmallInteger, nullable=False, server_default="0"),
    Column("stage", Text),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("phone_number", Text),  # E.164; shown only masked
    Column("country_code", Text),
    Column("categories", ARRAY(Text), nullable=False),
    Column("original_image_url", Text),
    Column("image_id", BigInteger, ForeignKey("images.id", ondelete="SET NULL")),
    Column("results", JSONB),
    Column("meta", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error", Text),
    Column("error_code", Text),
    Column("client_id", BigInteger, ForeignKey("api_clients.id", ondelete="SET NULL")),
    Column("idempotency_key", Text),
    Column("request_hash", Text),  # what the idempotent request asked for, to refuse a reuse with another body
    Column("result_token_hash", Text, unique=True),
    Column("worker_name", Text),
    Column("claim_token", UUID(as_uuid=False)),  # fresh per claim; every write of that attempt names it
    Column("lease_expires_at", DateTime(timezone=True)),  # a processing job past this has lost its worker
    Column("run_after", DateTime(timezone=True)),  # a retried job waits until then
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint(
        "status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')", name="status_valid"
    ),
    CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
    CheckConstraint("cardinality(categories) BETWEEN 1 AND 20", name="categories_count"),
    Index("ix_search_jobs_status_created_at", "status", "created_at"),
    Index("ix_search_jobs_created_at", "created_at"),
    Index("ix_search_jobs_updated_at", "updated_at"),  # the reconciler's "changed since its last pass"
    Index("ix_search_jobs_client_id_id", "client_id", "id"),
    # the reconciler's steady pass: retries whose run_after came since its last pass
    Index("ix_search_jobs_pending_run_after", "run_after", postgresql_where=text("status = 'pending'")),
    Index(
        "ix_search_jobs_unfinished",
        "status",
        "lease_expires_at",
        postgresql_where=text("status IN ('pending', 'processing')"),
    ),
    Index(
        "uq_search_jobs_idempotency",
        text("coalesce(client_id, 0)"),
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
)

search_job_events = Table(
    "search_job_events",
    metadata,
    Column("id", BigInteger, primary_key=True),  # the change-feed cursor: only ever increases
    Column("job_id", Text, ForeignKey("search_jobs.job_id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),  # created, claimed, progress, retried, completed, failed, cancelled, notified
    Column("status", Text, nullable=False),
    Column("progress", SmallInteger, nullable=False),
    Column("stage", Text),
    Column("version", Integer, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # the writing transaction (xid8 as bigint): the change feed returns only events of finished transactions
    Column("tx_id", BigInteger, nullable=False, server_default=text("(pg_current_xact_id()::text)::bigint")),
    _now(),
    Index("ix_search_job_events_job_id_id", "job_id", "id"),
    Index("ix_search_job_events_tx_id_id", "tx_id", "id"),  # the change feed's order
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("job_id", Text, ForeignKey("search_jobs.job_id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),  # "results_ready"
    Column("channel", Text, nullable=False, server_default="sms"),
    Column("to_number", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("provider", Text),
    Column("provider_sid", Text),
    Column("provider_status", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error_code", Text),
    Column("last_error_message", Text),
    Column("first_attempt_at", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("claimed_at", DateTime(timezone=True)),
    Column("body_sha256", Text),  # of the exact text sent at the first claim: what a provider look-up matches
    Column("give_up_at", DateTime(timezone=True)),  # no retry after this; an unknown outcome is parked
    Column("last_send_at", DateTime(timezone=True)),  # the last create request was recorded, just before it started
    # until when the last create request may still land: look-ups wait for it (0008)
    Column("may_land_until", DateTime(timezone=True)),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    UniqueConstraint("job_id", "kind"),
    CheckConstraint(
        "status IN ('pending', 'sending', 'unknown', 'sent', 'delivered', 'undelivered', 'failed', 'skipped')",
        name="status_valid",
    ),
    Index("ix_notifications_status", "status", "next_attempt_at"),
    Index("ix_notifications_provider_sid", "provider_sid"),
)

# Jobs deleted within the last cache lifetime: the reconciler re-writes their tombstones in Redis.
job_deletions = Table(
    "job_deletions",
    metadata,
    Column("job_id", Text, primary_key=True),
    Column("result_token_hash", Text),
    Column("deleted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_job_deletions_deleted_at", "deleted_at"),
)

# One reconciler pass, one cleanup at a time across schedulers (searchjobs.db.locks).
scheduler_locks = Table(
    "scheduler_locks",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

catalog_items = Table(
    "catalog_items",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("sku", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("category", Text, nullable=False),  # normalised lower-case
    Column("price", Numeric(12, 2), nullable=False),
    Column("currency", String(3), nullable=False, server_default="EUR"),
    Column("image_url", Text),  # an external image the service can read, or
    Column("image_data", LargeBinary),  # the image itself, served at /catalog/images/<sku>
    Column("image_content_type", Text),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_catalog_items_category", "category"),
)

# The embedders that made catalog vectors; the dimension fixes the cast of its HNSW index.
catalog_embedders = Table(
    "catalog_embedders",
    metadata,
    Column("id", BigInteger, primary_key=True),  # names the embedder's index: ix_catalog_embeddings_hnsw_<id>
    Column("name", Text, nullable=False, unique=True),  # "hsvgrid-v1", "onnx:<12 hex of the model's sha256>"
    Column("dimension", Integer, nullable=False),
    Column("spec", Text, nullable=False),  # how to load it: "descriptor" or "onnx:/path/model.onnx"
    _now(),
    CheckConstraint("dimension BETWEEN 1 AND 2000", name="dimension_range"),  # pgvector's HNSW limit
)

# One row: the embedder whose vectors searches use; every worker reads it per job.
catalog_state = Table(
    "catalog_state",
    metadata,
    Column("singleton", Boolean, primary_key=True, server_default=text("true")),
    Column("active_embedder", Text, ForeignKey("catalog_embedders.name"), nullable=False),
    Column("switched_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("singleton", name="one_row"),
)

# One vector per (item, embedder); category is copied from the item so the HNSW scan filters it itself.
catalog_embeddings = Table(
    "catalog_embeddings",
    metadata,
    Column("item_id", BigInteger, ForeignKey("catalog_items.id", ondelete="CASCADE"), primary_key=True),
    Column("embedder", Text, ForeignKey("catalog_embedders.name", ondelete="CASCADE"), primary_key=True),
    Column("category", Text, nullable=False),
    Column("embedding", Vector(), nullable=False),  # of its embedder's dimension
    _now(),
)

# Each embedder's partial HNSW index, (embedding::vector(D)) WHERE embedder = '<name>', is made at run time
# by catalog_embedder_index() (migration 0010) when the embedder is first recorded: which ones exist is
# data, not schema, so they are not mirrored here (tests/integration/test_schema.py leaves them out).
EMBEDDER_INDEX_PREFIX = "ix_catalog_embeddings_hnsw_"
