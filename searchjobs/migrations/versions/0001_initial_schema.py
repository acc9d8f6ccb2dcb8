"""Initial schema: jobs, their events, images, the SMS outbox, API clients, the catalog.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 00:20:03.885333
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_clients',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('key_prefix', sa.Text(), nullable=False),
    sa.Column('key_hash', sa.Text(), nullable=False),
    sa.Column('is_admin', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_clients')),
    sa.UniqueConstraint('key_prefix', name=op.f('uq_api_clients_key_prefix'))
    )
    op.create_table('catalog_items',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('sku', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('category', sa.Text(), nullable=False),
    sa.Column('price', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), server_default='EUR', nullable=False),
    sa.Column('image_url', sa.Text(), nullable=True),
    sa.Column('image_data', sa.LargeBinary(), nullable=True),
    sa.Column('image_content_type', sa.Text(), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('embedding_version', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalog_items')),
    sa.UniqueConstraint('sku', name=op.f('uq_catalog_items_sku'))
    )
    op.create_index('ix_catalog_items_category', 'catalog_items', ['category'], unique=False)
    op.create_table('images',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('public_id', sa.Text(), nullable=False),
    sa.Column('content_type', sa.Text(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.Text(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_images')),
    sa.UniqueConstraint('public_id', name=op.f('uq_images_public_id'))
    )
    op.create_table('search_jobs',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('job_id', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default='pending', nullable=False),
    sa.Column('progress', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('stage', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('phone_number', sa.Text(), nullable=True),
    sa.Column('country_code', sa.Text(), nullable=True),
    sa.Column('categories', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('original_image_url', sa.Text(), nullable=True),
    sa.Column('image_id', sa.BigInteger(), nullable=True),
    sa.Column('results', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('meta', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('error_code', sa.Text(), nullable=True),
    sa.Column('client_id', sa.BigInteger(), nullable=True),
    sa.Column('idempotency_key', sa.Text(), nullable=True),
    sa.Column('request_hash', sa.Text(), nullable=True),
    sa.Column('result_token_hash', sa.Text(), nullable=True),
    sa.Column('worker_name', sa.Text(), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('run_after', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')", name=op.f('ck_search_jobs_status_valid')),
    sa.CheckConstraint('cardinality(categories) BETWEEN 1 AND 20', name=op.f('ck_search_jobs_categories_count')),
    sa.CheckConstraint('progress BETWEEN 0 AND 100', name=op.f('ck_search_jobs_progress_range')),
    sa.ForeignKeyConstraint(['client_id'], ['api_clients.id'], name=op.f('fk_search_jobs_client_id_api_clients'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_search_jobs_image_id_images'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_search_jobs')),
    sa.UniqueConstraint('job_id', name=op.f('uq_search_jobs_job_id')),
    sa.UniqueConstraint('result_token_hash', name=op.f('uq_search_jobs_result_token_hash'))
    )
    op.create_index('ix_search_jobs_client_id_id', 'search_jobs', ['client_id', 'id'], unique=False)
    op.create_index('ix_search_jobs_created_at', 'search_jobs', ['created_at'], unique=False)
    op.create_index('ix_search_jobs_status_created_at', 'search_jobs', ['status', 'created_at'], unique=False)
    op.create_index('ix_search_jobs_unfinished', 'search_jobs', ['status', 'lease_expires_at'], unique=False, postgresql_where=sa.text("status IN ('pending', 'processing')"))
    op.create_index('uq_search_jobs_idempotency', 'search_jobs', [sa.literal_column('coalesce(client_id, 0)'), 'idempotency_key'], unique=True, postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.create_table('notifications',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('job_id', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('channel', sa.Text(), server_default='sms', nullable=False),
    sa.Column('to_number', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default='pending', nullable=False),
    sa.Column('provider', sa.Text(), nullable=True),
    sa.Column('provider_sid', sa.Text(), nullable=True),
    sa.Column('provider_status', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error_code', sa.Text(), nullable=True),
    sa.Column('last_error_message', sa.Text(), nullable=True),
    sa.Column('first_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'sending', 'unknown', 'sent', 'delivered', 'undelivered', 'failed', 'skipped')", name=op.f('ck_notifications_status_valid')),
    sa.ForeignKeyConstraint(['job_id'], ['search_jobs.job_id'], name=op.f('fk_notifications_job_id_search_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('job_id', 'kind', name=op.f('uq_notifications_job_id_kind'))
    )
    op.create_index('ix_notifications_provider_sid', 'notifications', ['provider_sid'], unique=False)
    op.create_index('ix_notifications_status', 'notifications', ['status', 'next_attempt_at'], unique=False)
    op.create_table('search_job_events',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('job_id', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('progress', sa.SmallInteger(), nullable=False),
    sa.Column('stage', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), server_default='0', nullable=False),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['search_jobs.job_id'], name=op.f('fk_search_job_events_job_id_search_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_search_job_events'))
    )
    op.create_index('ix_search_job_events_job_id_id', 'search_job_events', ['job_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_search_job_events_job_id_id', table_name='search_job_events')
    op.drop_table('search_job_events')
    op.drop_index('ix_notifications_status', table_name='notifications')
    op.drop_index('ix_notifications_provider_sid', table_name='notifications')
    op.drop_table('notifications')
    op.drop_index('uq_search_jobs_idempotency', table_name='search_jobs', postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.drop_index('ix_search_jobs_unfinished', table_name='search_jobs', postgresql_where=sa.text("status IN ('pending', 'processing')"))
    op.drop_index('ix_search_jobs_status_created_at', table_name='search_jobs')
    op.drop_index('ix_search_jobs_created_at', table_name='search_jobs')
    op.drop_index('ix_search_jobs_client_id_id', table_name='search_jobs')
    op.drop_table('search_jobs')
    op.drop_table('images')
    op.drop_index('ix_catalog_items_category', table_name='catalog_items')
    op.drop_table('catalog_items')
    op.drop_table('api_clients')
