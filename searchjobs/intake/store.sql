-- Uploaded images (`images`), run by searchjobs/intake/store.py.


-- name: insert
INSERT INTO images (public_id, content_type, size, width, height, sha256, data)
VALUES (:public_id, :content_type, :size, :width, :height, :sha256, :data)
RETURNING id, public_id;


-- name: get_by_public_id
-- An image by the random id its URL carries.
SELECT id, public_id, content_type, size, sha256, data, created_at FROM images WHERE public_id = :p;


-- name: get
SELECT id, public_id, content_type, size, sha256, data FROM images WHERE id = :id;
