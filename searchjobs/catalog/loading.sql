-- The catalog's first load, announced to every process, run by searchjobs/catalog/loading.py.


-- name: announce
-- Held by the loader's own transaction for the whole load: a transaction-level advisory lock whose
-- two keys are (our namespace, the number of items being loaded). It ends with that transaction,
-- so a loader that dies never leaves the catalog "loading"; a transaction keeps its server
-- connection even behind PgBouncer's transaction pooling; and it is shared, so that two loaders
-- (or one announcing twice) never wait for each other.
SELECT pg_advisory_xact_lock_shared(:namespace, :total);


-- name: progress
-- The load running now, as (items being loaded, items in the catalog so far); NULLs when none runs.
SELECT max(CAST(objid AS bigint)) AS total,
       CASE WHEN count(*) > 0 THEN (SELECT count(*) FROM catalog_items) END AS loaded
  FROM pg_locks
 WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = CAST(CAST(:namespace AS int) AS oid)
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database());
