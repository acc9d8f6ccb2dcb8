-- Queries on the catalog (catalog_items, the products searched, and their vectors in catalog_embeddings,
-- one per embedder), run by searchjobs/catalog/store.py.


-- name: categories
SELECT category, count(*) AS items FROM catalog_items GROUP BY category ORDER BY category;


-- name: count
SELECT count(*) FROM catalog_items;


-- name: catalog_version
-- What changes whenever the searched catalog does: the active embedder, the item count, and the
-- last update or switch of embedder.
SELECT s.active_embedder, count(i.id),
       greatest(coalesce(max(i.updated_at), 'epoch'::timestamptz), s.switched_at)
  FROM catalog_state s LEFT JOIN catalog_items i ON true
 GROUP BY s.active_embedder, s.switched_at;


-- name: image
SELECT image_data, image_content_type, image_url FROM catalog_items WHERE sku = :sku;


-- name: upsert
-- A batch of an import, by sku, in one statement: each parameter is an array holding that column's
-- value for every item (one round trip, where one INSERT per item took 2.5 ms each). Running an
-- import again updates items instead of duplicating them. A sku appears at most once per batch.
INSERT INTO catalog_items (sku, name, category, price, currency, image_url, image_data, image_content_type,
                           attributes)
SELECT item.sku, item.name, item.category, item.price, item.currency, item.image_url, item.image_data,
       item.image_content_type, CAST(item.attributes AS jsonb)
  FROM unnest(CAST(:sku AS text[]), CAST(:name AS text[]), CAST(:category AS text[]), CAST(:price AS numeric[]),
              CAST(:currency AS text[]), CAST(:image_url AS text[]), CAST(:image_data AS bytea[]),
              CAST(:image_content_type AS text[]), CAST(:attributes AS text[]))
       AS item(sku, name, category, price, currency, image_url, image_data, image_content_type, attributes)
ON CONFLICT (sku) DO UPDATE SET
    name = EXCLUDED.name, category = EXCLUDED.category, price = EXCLUDED.price, currency = EXCLUDED.currency,
    image_url = EXCLUDED.image_url, image_data = EXCLUDED.image_data,
    image_content_type = EXCLUDED.image_content_type, attributes = EXCLUDED.attributes, updated_at = now();


-- name: upsert_embedding
-- The vector of an item just upserted, from :embedder (the active one); the item's vectors from other
-- embedders go, as its image may have changed (a reembed in progress computes them again).
WITH item AS (SELECT id, category FROM catalog_items WHERE sku = :sku),
     stale AS (DELETE FROM catalog_embeddings e USING item WHERE e.item_id = item.id AND e.embedder <> :embedder)
INSERT INTO catalog_embeddings (item_id, embedder, category, embedding)
SELECT id, :embedder, category, CAST(:embedding AS vector) FROM item
ON CONFLICT (item_id, embedder) DO UPDATE SET
    category = EXCLUDED.category, embedding = EXCLUDED.embedding, created_at = now();


-- name: active_embedder
-- The embedder whose vectors searches use, and how to load it.
SELECT d.name, d.dimension, d.spec, s.switched_at
  FROM catalog_state s JOIN catalog_embedders d ON d.name = s.active_embedder;


-- name: lock_active_embedder
-- An import's batch holds this until it commits, so a switch (which locks the row for update first)
-- waits for it and then sees its items; a batch that starts after a switch sees the new embedder.
SELECT s.active_embedder FROM catalog_state s FOR SHARE;


-- name: register_embedder
-- Record an embedder (idempotent); the dimension returned is the one first recorded for that name.
INSERT INTO catalog_embedders (name, dimension, spec) VALUES (:name, :dimension, :spec)
ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec
RETURNING dimension;


-- name: embedder_index
-- The embedder's partial HNSW index (made if missing; migration 0010's function): its name.
SELECT catalog_embedder_index(:name);


-- name: embedding_progress
-- How many items there are, and how many already have a vector from :embedder.
SELECT count(*) AS items, count(e.item_id) AS embedded
  FROM catalog_items i LEFT JOIN catalog_embeddings e ON e.item_id = i.id AND e.embedder = :embedder;


-- name: missing_embeddings
-- The next items (by id, after :after) that have no vector from :embedder yet: what a reembed does next.
SELECT i.id, i.sku, i.updated_at, i.image_data, i.image_content_type, i.image_url
  FROM catalog_items i
 WHERE i.id > :after
   AND NOT EXISTS (SELECT 1 FROM catalog_embeddings e WHERE e.item_id = i.id AND e.embedder = :embedder)
 ORDER BY i.id
 LIMIT :limit;


-- name: add_embedding
-- A reembedded vector; written only if the item is unchanged since it was read (an import in between
-- wrote a newer image: the next pass computes it again).
INSERT INTO catalog_embeddings (item_id, embedder, category, embedding)
SELECT id, :embedder, category, CAST(:embedding AS vector) FROM catalog_items
 WHERE id = :item_id AND updated_at = :updated_at
ON CONFLICT (item_id, embedder) DO NOTHING;


-- name: switch_embedder
-- Make :embedder the active one, only if every item has a vector from it. The state row is locked
-- first (waiting for import batches in flight); the check then runs as a second statement, with a
-- snapshot that sees what they committed. No row: not every item has one yet.
SELECT 1 FROM catalog_state FOR UPDATE;
UPDATE catalog_state SET active_embedder = :embedder, switched_at = now()
 WHERE active_embedder <> :embedder
   AND NOT EXISTS (SELECT 1 FROM catalog_items i
                    WHERE NOT EXISTS (SELECT 1 FROM catalog_embeddings e
                                       WHERE e.item_id = i.id AND e.embedder = :embedder))
RETURNING active_embedder;


-- name: nearest
-- The :k items of :category nearest to :vector by cosine distance among the vectors of :embedder
-- (NULL: the active one), through that embedder's HNSW index (catalog_nearest, migration 0010).
-- One message: the settings and the SELECT run in one implicit transaction and one round trip, and
-- both settings end with it. :ef_search is the candidate list per query (set_config, as a SET cannot
-- take a parameter); iterative scans (pgvector >= 0.8) keep walking the index until :k rows of the
-- category are found, instead of filtering ef_search candidates down to too few.
SELECT set_config('hnsw.ef_search', CAST(:ef_search AS text), true);
SET LOCAL hnsw.iterative_scan = strict_order;
SELECT sku, name, price, currency, image_url, has_image, distance
  FROM catalog_nearest(coalesce(:embedder, (SELECT active_embedder FROM catalog_state)), :category,
                       CAST(:vector AS vector), :k);
