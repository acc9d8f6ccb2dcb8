-- Queries on catalog_items (the products searched), run by searchjobs/catalog/store.py.


-- name: categories
SELECT category, count(*) AS items FROM catalog_items GROUP BY category ORDER BY category;


-- name: count
SELECT count(*) FROM catalog_items;


-- name: catalog_version
-- What changes whenever the catalog does: item count, last update and descriptor version.
SELECT count(*), coalesce(max(updated_at), 'epoch'::timestamptz), coalesce(max(embedding_version), 'none')
  FROM catalog_items;


-- name: image
SELECT image_data, image_content_type, image_url FROM catalog_items WHERE sku = :sku;


-- name: upsert
-- A batch of an import, by sku, in one statement: each parameter is an array holding that column's
-- value for every item (one round trip, where one INSERT per item took 2.5 ms each). Running an
-- import again updates items instead of duplicating them. A sku appears at most once per batch.
INSERT INTO catalog_items (sku, name, category, price, currency, image_url, image_data, image_content_type,
                           attributes, embedding, embedding_version)
SELECT item.sku, item.name, item.category, item.price, item.currency, item.image_url, item.image_data,
       item.image_content_type, CAST(item.attributes AS jsonb), CAST(item.embedding AS vector),
       item.embedding_version
  FROM unnest(CAST(:sku AS text[]), CAST(:name AS text[]), CAST(:category AS text[]), CAST(:price AS numeric[]),
              CAST(:currency AS text[]), CAST(:image_url AS text[]), CAST(:image_data AS bytea[]),
              CAST(:image_content_type AS text[]), CAST(:attributes AS text[]), CAST(:embedding AS text[]),
              CAST(:embedding_version AS text[]))
       AS item(sku, name, category, price, currency, image_url, image_data, image_content_type, attributes,
               embedding, embedding_version)
ON CONFLICT (sku) DO UPDATE SET
    name = EXCLUDED.name, category = EXCLUDED.category, price = EXCLUDED.price, currency = EXCLUDED.currency,
    image_url = EXCLUDED.image_url, image_data = EXCLUDED.image_data,
    image_content_type = EXCLUDED.image_content_type, attributes = EXCLUDED.attributes,
    embedding = EXCLUDED.embedding, embedding_version = EXCLUDED.embedding_version, updated_at = now();


-- name: nearest
-- The :k items of :category nearest to :vector by cosine distance, through the HNSW index on
-- embedding. One message: the settings and the SELECT run in one implicit transaction and one round
-- trip, and both settings end with it. :ef_search is the candidate list per query (set_config, as a
-- SET cannot take a parameter); iterative scans (pgvector >= 0.8) keep walking the index until :k rows
-- of the category are found, instead of filtering ef_search candidates down to too few.
SELECT set_config('hnsw.ef_search', CAST(:ef_search AS text), true);
SET LOCAL hnsw.iterative_scan = strict_order;
SELECT sku, name, price, currency, image_url, image_data IS NOT NULL AS has_image,
       embedding <=> CAST(:vector AS vector) AS distance
  FROM catalog_items
 WHERE category = :category AND embedding IS NOT NULL
 ORDER BY embedding <=> CAST(:vector AS vector)
 LIMIT :k;
