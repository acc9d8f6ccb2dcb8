-- Named locks held as lease rows (`scheduler_locks`), run by searchjobs/db/locks.py.


-- name: acquire
-- Take the lock, or extend it for its holder; no row comes back while another holder's lease runs.
INSERT INTO scheduler_locks (name, holder, expires_at)
VALUES (:name, :holder, now() + make_interval(secs => :seconds))
ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
 WHERE scheduler_locks.expires_at < now() OR scheduler_locks.holder = EXCLUDED.holder
RETURNING holder;


-- name: release
-- Only the holder releases its lock.
DELETE FROM scheduler_locks WHERE name = :name AND holder = :holder;
