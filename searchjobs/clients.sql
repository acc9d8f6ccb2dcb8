-- API clients (`api_clients`), run by searchjobs/clients.py. Only a key's sha256 is stored.


-- name: create
INSERT INTO api_clients (name, key_prefix, key_hash, is_admin) VALUES (:name, :prefix, :hash, :admin)
RETURNING id, name, key_prefix, is_admin, created_at, last_used_at, revoked_at;


-- name: by_key_prefix
-- The row a key names by its prefix (the caller then compares the whole key's hash).
SELECT id, name, key_prefix, key_hash, is_admin, last_used_at, revoked_at FROM api_clients
 WHERE key_prefix = :prefix;


-- name: touch
-- Record use, at most once a minute per client (no write per request).
UPDATE api_clients SET last_used_at = now()
 WHERE id = :id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');


-- name: revocation_epoch
-- Changes whenever a key is revoked: web processes compare it (about once a second) to drop cached keys.
SELECT count(*) AS revoked, max(revoked_at) AS last_revoked_at FROM api_clients WHERE revoked_at IS NOT NULL;


-- name: list_all
SELECT id, name, key_prefix, is_admin, created_at, last_used_at, revoked_at FROM api_clients ORDER BY id;


-- name: revoke
-- Revoke by key prefix or by name; no row if no active client matches.
UPDATE api_clients SET revoked_at = now()
 WHERE (key_prefix = :v OR name = :v) AND revoked_at IS NULL
RETURNING id, name, key_prefix;
