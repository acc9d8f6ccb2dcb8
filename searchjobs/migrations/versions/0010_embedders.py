"""Catalog vectors per embedder: each vector records the embedder that made it, one active embedder.

catalog_items.embedding (vector(256), the descriptor's) moves to catalog_embeddings, one row per
(item, embedder), so `searchjobs catalog reembed` can fill a new embedder's vectors while the old
ones keep serving searches, and switch catalog_state.active_embedder once every item has one.
pgvector indexes need a fixed dimension, so each embedder gets its own partial HNSW index on
`embedding::vector(<its dimension>) WHERE embedder = '<its name>'`, made by
catalog_embedder_index(); catalog_nearest() queries through it with the same expression.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The descriptor of the time (searchjobs.catalog.descriptor): what catalog_items.embedding holds.
DESCRIPTOR_NAME = "hsvgrid-v1"
DESCRIPTOR_DIM = 256

INDEX_FUNCTION = """
CREATE FUNCTION catalog_embedder_index(embedder_name text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    registered catalog_embedders%ROWTYPE;
    index_name text;
BEGIN
    SELECT * INTO registered FROM catalog_embedders WHERE name = embedder_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown embedder %', embedder_name;
    END IF;
    index_name := 'ix_catalog_embeddings_hnsw_' || registered.id;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON catalog_embeddings '
                   'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WITH (m = 16, ef_construction = 64) '
                   'WHERE embedder = %L', index_name, registered.dimension, registered.name);
    RETURN index_name;
END
$$
"""

# The dimension is part of the index expression, so it is written into the query text (with the
# embedder's name as a literal, which lets the planner match the partial index's predicate).
NEAREST_FUNCTION = """
CREATE FUNCTION catalog_nearest(embedder_name text, category_name text, query vector, k integer)
RETURNS TABLE (sku text, name text, price numeric, currency text, image_url text, has_image boolean,
               distance double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    dims integer;
BEGIN
    SELECT dimension INTO dims FROM catalog_embedders WHERE catalog_embedders.name = embedder_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown embedder %', embedder_name;
    END IF;
    IF vector_dims(query) <> dims THEN
        RAISE EXCEPTION 'the query vector has % dimensions, % vectors have %', vector_dims(query), embedder_name, dims;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT i.sku, i.name, i.price, i.currency::text, i.image_url, i.image_data IS NOT NULL,
                e.embedding::vector(%1$s) <=> $1
           FROM catalog_embeddings e JOIN catalog_items i ON i.id = e.item_id
          WHERE e.embedder = %2$L AND e.category = $2
          ORDER BY e.embedding::vector(%1$s) <=> $1
          LIMIT $3', dims, embedder_name)
    USING query, category_name, k;
END
$$
"""


def upgrade() -> None:
    op.execute("""
        CREATE TABLE catalog_embedders (
            id bigserial CONSTRAINT pk_catalog_embedders PRIMARY KEY,
            name text NOT NULL CONSTRAINT uq_catalog_embedders_name UNIQUE,
            dimension integer NOT NULL,
            spec text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ck_catalog_embedders_dimension_range CHECK (dimension BETWEEN 1 AND 2000)
        )""")
    op.execute(f"INSERT INTO catalog_embedders (name, dimension, spec) "
               f"VALUES ('{DESCRIPTOR_NAME}', {DESCRIPTOR_DIM}, 'descriptor')")
    op.execute(f"""
        CREATE TABLE catalog_state (
            singleton boolean CONSTRAINT pk_catalog_state PRIMARY KEY DEFAULT true,
            active_embedder text NOT NULL
                CONSTRAINT fk_catalog_state_active_embedder_catalog_embedders REFERENCES catalog_embedders (name),
            switched_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ck_catalog_state_one_row CHECK (singleton)
        );
        INSERT INTO catalog_state (active_embedder) VALUES ('{DESCRIPTOR_NAME}')""")
    op.execute("""
        CREATE TABLE catalog_embeddings (
            item_id bigint NOT NULL
                CONSTRAINT fk_catalog_embeddings_item_id_catalog_items REFERENCES catalog_items (id) ON DELETE CASCADE,
            embedder text NOT NULL
                CONSTRAINT fk_catalog_embeddings_embedder_catalog_embedders REFERENCES catalog_embedders (name)
                ON DELETE CASCADE,
            category text NOT NULL,
            embedding vector NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_catalog_embeddings PRIMARY KEY (item_id, embedder)
        )""")
    op.execute(INDEX_FUNCTION)
    op.execute(NEAREST_FUNCTION)
    op.execute(f"""
        INSERT INTO catalog_embeddings (item_id, embedder, category, embedding)
        SELECT id, embedding_version, category, embedding FROM catalog_items
         WHERE embedding IS NOT NULL AND embedding_version = '{DESCRIPTOR_NAME}'""")
    op.execute(f"SELECT catalog_embedder_index('{DESCRIPTOR_NAME}')")
    op.execute("DROP INDEX ix_catalog_items_embedding_hnsw")
    op.execute("ALTER TABLE catalog_items DROP COLUMN embedding, DROP COLUMN embedding_version")


def downgrade() -> None:
    op.execute(f"ALTER TABLE catalog_items ADD COLUMN embedding vector({DESCRIPTOR_DIM}), "
               "ADD COLUMN embedding_version text")
    op.execute(f"""
        UPDATE catalog_items i SET embedding = e.embedding::vector({DESCRIPTOR_DIM}), embedding_version = e.embedder
          FROM catalog_embeddings e WHERE e.item_id = i.id AND e.embedder = '{DESCRIPTOR_NAME}'""")
    op.execute("CREATE INDEX ix_catalog_items_embedding_hnsw ON catalog_items "
               "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
    op.execute("DROP FUNCTION catalog_nearest(text, text, vector, integer)")
    op.execute("DROP FUNCTION catalog_embedder_index(text)")
    op.execute("DROP TABLE catalog_embeddings, catalog_state, catalog_embedders")
