-- Queries on search_jobs and search_job_events, run by searchjobs/jobs/store.py.
--
-- Every state change is one statement: the job UPDATE (CTE `j`) and its event INSERT (CTE `e`)
-- travel together, so each step is atomic and costs one round trip on an autocommit connection.
-- Every change is version-checked (`version = :version`, then `version = version + 1`): it touches
-- nothing if someone else moved first. Every write of a worker's attempt is also fenced:
-- `claim_token = CAST(:token AS uuid)` appears in each of them, so a late writer changes nothing.
--
-- Statements that return a job return the same columns (enough to build the cached public view):
--   id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
--   original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
--   lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
--   claim_token::text AS claim_token


-- name: create
-- A pending job and its `created` event. With an idempotency key already used by this client
-- (within the window, see release_expired_key), nothing is inserted and no row comes back.
WITH j AS (
    INSERT INTO search_jobs (job_id, status, progress, stage, categories, image_id, original_image_url,
                             phone_number, country_code, client_id, idempotency_key, request_hash,
                             result_token_hash, meta)
    VALUES (:job_id, 'pending', 0, 'queued', :categories, :image_id, :original_image_url,
            :phone_number, :country_code, :client_id, :idempotency_key, :request_hash,
            :result_token_hash, CAST(:meta AS jsonb))
    ON CONFLICT (coalesce(client_id, 0), idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
              original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
              lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
              claim_token::text AS claim_token
), e AS (
    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
    SELECT job_id, 'created', status, progress, stage, version, attempts, CAST(:detail AS jsonb) FROM j
)
SELECT *, true AS created FROM j;


-- name: release_expired_key
-- The unique index on (client, key) has no time limit: a key past the window is cleared from its
-- old job just before the insert, in the same transaction.
UPDATE search_jobs SET idempotency_key = NULL
 WHERE coalesce(client_id, 0) = coalesce(:client_id, 0) AND idempotency_key = :key
   AND created_at < now() - make_interval(hours => :hours);


-- name: by_idempotency_key
-- The job that holds this client's idempotency key (its request_hash tells a replay from a misuse).
SELECT id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
       original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
       lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
       claim_token::text AS claim_token, request_hash, false AS created
  FROM search_jobs
 WHERE coalesce(client_id, 0) = coalesce(:client_id, 0) AND idempotency_key = :key;


-- name: get
SELECT id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
       original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
       lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
       claim_token::text AS claim_token
  FROM search_jobs
 WHERE job_id = :job_id;


-- name: get_by_token_hash
-- A job by the hash of its result token (the share link).
SELECT id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
       original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
       lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
       claim_token::text AS claim_token
  FROM search_jobs
 WHERE result_token_hash = :token_hash;


-- name: claim
-- pending -> processing for one attempt: the claimant's fresh token fences every write of it.
WITH j AS (
    UPDATE search_jobs
       SET status = 'processing', attempts = attempts + 1, worker_name = :worker,
           stage = 'claimed', progress = GREATEST(progress, :progress),
           started_at = coalesce(started_at, now()), updated_at = now(),
           lease_expires_at = now() + make_interval(secs => :lease), run_after = NULL,
           claim_token = CAST(:token AS uuid), version = version + 1
     WHERE job_id = :job_id AND status = 'pending' AND NOT cancel_requested
    RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
              original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
              lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
              claim_token::text AS claim_token
), e AS (
    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
    SELECT job_id, 'claimed', status, progress, stage, version, attempts, CAST(:detail AS jsonb) FROM j
)
SELECT * FROM j;


-- name: progress
-- One persisted progress step (row + event), fenced and version-checked; it also extends the lease.
WITH j AS (
    UPDATE search_jobs
       SET progress = GREATEST(progress, :progress), stage = :stage, updated_at = now(),
           lease_expires_at = now() + make_interval(secs => :lease), version = version + 1
     WHERE job_id = :job_id AND version = :version AND status = 'processing'
       AND claim_token = CAST(:token AS uuid)
    RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
              original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
              lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
              claim_token::text AS claim_token
), e AS (
    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
    SELECT job_id, 'progress', status, progress, stage, version, attempts, CAST(:detail AS jsonb) FROM j
)
SELECT * FROM j;


-- name: progress_fast
-- The same step as `progress`, committed without waiting for the WAL flush (still one message, one
-- round trip: the SET LOCAL and the statement run as one implicit transaction). Visible at once, but
-- a crash of the Postgres host can lose the last ~0.6 s of such steps; terminal states, results and
-- the SMS outbox never use it. Opt-in: SEARCHJOBS_PROGRESS_COMMIT=fast (bench/throughput.py).
SET LOCAL synchronous_commit = off;
WITH j AS (
    UPDATE search_jobs
       SET progress = GREATEST(progress, :progress), stage = :stage, updated_at = now(),
           lease_expires_at = now() + make_interval(secs => :lease), version = version + 1
     WHERE job_id = :job_id AND version = :version AND status = 'processing'
       AND claim_token = CAST(:token AS uuid)
    RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
              original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
              lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
              claim_token::text AS claim_token
), e AS (
    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
    SELECT job_id, 'progress', status, progress, stage, version, attempts, CAST(:detail AS jsonb) FROM j
)
SELECT * FROM j;


-- name: complete
-- processing -> completed with results, its event and (with a phone and a body) the SMS outbox row.
WITH j AS (
    UPDATE search_jobs
       SET status = 'completed', progress = 100, stage = 'done', results = CAST(:results AS jsonb),
           finished_at = now(), updated_at = now(), lease_expires_at = NULL, error = NULL,
           error_code = NULL, version = version + 1
     WHERE job_id = :job_id AND version = :version AND status = 'processing' AND NOT cancel_requested
       AND claim_token = CAST(:token AS uuid)
    RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
              original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
              lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
              claim_token::text AS claim_token
), e AS (
    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
    SELECT job_id, 'completed', status, progress, stage, version, attempts, CAST(:detail AS jsonb) FROM j
), n AS (
    INSERT INTO notifications (job_id, kind, channel, to_number, body, status, next_attempt_at)
    SELECT job_id, 'results_ready', 'sms', phone_number, :sms_body, 'pending', now() FROM j
     WHERE j.phone_number IS NOT NULL AND :sms_body IS NOT NULL
    ON CONFLICT (job_id, kind) DO NOTHING
    RETURNING id
)
SELECT j.*, (SELECT id FROM n) AS notification_id FROM j;


-- name: finish_without_results
-- processing -> :status ('failed' with an error, or 'cancelled' by the worker); the event's kind is
-- the new status.
WITH j AS (
    UPDATE search_jobs
       SET status = :status, error = :error, error_code = :error_code, finished_at = now(),
           updated_at = now(), lease_expires_at = NULL, version = version + 1
     WHERE job_id = :job_id AND version = :version AND status = 'processing'
       AND claim_token = CAST(:token AS uuid)
    RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
              original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
              lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
              claim_token::text AS claim_token
), e AS (
    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
    SELECT job_id, :status, status, progress, stage, version, attempts, CAST(:detail AS jsonb) FROM j
)
SELECT * FROM j;


-- name: requeue
-- processing -> pending (a retry, a graceful shutdown), by the attempt itself; progress is kept, and
-- so is the token until the next claim.
WITH j AS (
    UPDATE search_jobs
       SET status = 'pending', stage = 'queued', worker_name = NULL, lease_expires_at = NULL,
           run_after = now() + make_interval(secs => :delay), updated_at = now(),
           error = :error, error_code = :error_code, version = version + 1
     WHERE job_id = :job_id AND version = :version AND status = 'processing'
       AND claim_token = CAST(:token AS uuid)
    RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
              original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
              lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
              claim_token::text AS claim_token
), e AS (
    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
    SELECT job_id, 'retried', status, progress, stage, version, attempts, CAST(:detail AS jsonb) FROM j
)
SELECT * FROM j;


-- name: renew_lease
-- Heartbeat: keep this attempt's lease alive. Not a state change, so no version bump.
UPDATE search_jobs SET lease_expires_at = now() + make_interval(secs => :lease)
 WHERE job_id = :job_id AND status = 'processing' AND claim_token = CAST(:token AS uuid);


-- name: cancel_pending
-- pending -> cancelled at once (the token is cleared: no attempt of this job can write any more).
WITH j AS (
    UPDATE search_jobs
       SET status = 'cancelled', cancel_requested = true, finished_at = now(), updated_at = now(),
           claim_token = NULL, version = version + 1
     WHERE job_id = :job_id AND status = 'pending'
    RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
              original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
              lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
              claim_token::text AS claim_token
), e AS (
    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
    SELECT job_id, 'cancelled', status, progress, stage, version, attempts, CAST(:detail AS jsonb) FROM j
)
SELECT * FROM j;


-- name: request_cancel
-- A running job is asked to stop. The version moves so the cached view shows the request; the
-- running attempt then finds its version stale at its next write, sees cancel_requested and stops.
UPDATE search_jobs SET cancel_requested = true, updated_at = now(), version = version + 1
 WHERE job_id = :job_id AND status = 'processing'
RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
          original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
          lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
          claim_token::text AS claim_token;


-- name: retry_failed
-- failed/cancelled -> pending, by an operator or the owner: attempts start again from 0, and the
-- token is cleared so no earlier attempt can be taken for the next one.
WITH j AS (
    UPDATE search_jobs
       SET status = 'pending', stage = 'queued', error = NULL, error_code = NULL, finished_at = NULL,
           attempts = 0, run_after = NULL, cancel_requested = false, updated_at = now(),
           claim_token = NULL, version = version + 1
     WHERE job_id = :job_id AND status IN ('failed', 'cancelled')
    RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
              original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
              lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
              claim_token::text AS claim_token
), e AS (
    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
    SELECT job_id, 'retried', status, progress, stage, version, attempts, CAST(:detail AS jsonb) FROM j
)
SELECT * FROM j;


-- name: expire_leases
-- The reconciler: a processing job whose worker stopped renewing its lease is cancelled if the client
-- asked for it, failed once its attempts are used up, else pending and due at once (run_after = now(),
-- so the same reconciler pass enqueues it instead of waiting out the pending grace).
WITH j AS (
    UPDATE search_jobs
       SET status = CASE WHEN cancel_requested THEN 'cancelled'
                         WHEN attempts >= :max_attempts THEN 'failed' ELSE 'pending' END,
           error_code = CASE WHEN cancel_requested THEN error_code
                             WHEN attempts >= :max_attempts THEN 'worker_lost' ELSE error_code END,
           error = CASE WHEN cancel_requested THEN error
                        WHEN attempts >= :max_attempts THEN 'the job lost its worker too many times'
                        ELSE error END,
           finished_at = CASE WHEN cancel_requested OR attempts >= :max_attempts THEN now() ELSE NULL END,
           stage = CASE WHEN cancel_requested OR attempts >= :max_attempts THEN stage ELSE 'queued' END,
           run_after = CASE WHEN cancel_requested OR attempts >= :max_attempts THEN NULL ELSE now() END,
           worker_name = NULL, lease_expires_at = NULL, claim_token = NULL, updated_at = now(),
           version = version + 1
     WHERE status = 'processing' AND lease_expires_at < now()
    RETURNING id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
              original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
              lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
              claim_token::text AS claim_token
), e AS (
    INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
    SELECT job_id, CASE WHEN status = 'pending' THEN 'retried' ELSE status END, status, progress, stage,
           version, attempts, '{"reason": "lease_expired"}'::jsonb FROM j
)
SELECT * FROM j;


-- name: due_pending
-- The reconciler: pending jobs that should be waiting in Redis by now (submitted over :grace seconds
-- ago, or retries now due), oldest first, one keyset page after row id :after_id.
SELECT id, job_id, attempts, run_after FROM search_jobs
 WHERE status = 'pending' AND NOT cancel_requested AND id > :after_id
   AND CASE WHEN run_after IS NULL THEN updated_at < now() - make_interval(secs => :grace)
            ELSE run_after <= now() END
 ORDER BY id
 LIMIT :limit;


-- name: pending_due_since
-- The reconciler's steady pass: the due pending jobs (as due_pending) that became due or changed at or after
-- :since (Postgres time): changed since :since - :grace (so submits whose grace ended since), or a retry whose
-- run_after came since. One keyset page after row id :after_id.
SELECT id, job_id, attempts, run_after FROM search_jobs
 WHERE status = 'pending' AND NOT cancel_requested AND id > :after_id
   AND CASE WHEN run_after IS NULL THEN updated_at < now() - make_interval(secs => :grace)
            ELSE run_after <= now() END
   AND (updated_at >= CAST(:since AS timestamptz) - make_interval(secs => :grace) OR run_after >= :since)
 ORDER BY id
 LIMIT :limit;


-- name: changed_since
-- The reconciler's view refresh: rows changed at or after :since (Postgres time), one page in row-id order.
SELECT id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
       original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
       lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
       claim_token::text AS claim_token
  FROM search_jobs
 WHERE updated_at >= :since AND id > :after_id
 ORDER BY id
 LIMIT :limit;


-- name: deleted_since
-- Jobs deleted at or after :since, for the reconciler's tombstones.
SELECT job_id, result_token_hash FROM job_deletions WHERE deleted_at >= :since;


-- name: forget_deletions
-- Deletion records older than a cache lifetime: no view of those jobs can be left in Redis.
DELETE FROM job_deletions WHERE deleted_at < now() - make_interval(secs => :age);


-- name: events
-- One job's activity log after event id :after.
SELECT id, job_id, kind, status, progress, stage, version, attempt, detail, created_at
  FROM search_job_events
 WHERE job_id = :job_id AND id > :after
 ORDER BY id
 LIMIT :limit;


-- name: changes
-- The change feed after the cursor (:after_tx, :after_id), in (transaction, id) order. Only events of
-- transactions older than every transaction still running (tx_id below the snapshot's xmin, as the
-- bigint tx_id holds it) are returned. An admin sees every job; a client only its own (with no client,
-- :client_id is NULL and nothing matches).
SELECT e.id, e.tx_id, e.job_id, e.kind, e.status, e.progress, e.stage, e.version, e.attempt, e.created_at
  FROM search_job_events e JOIN search_jobs j ON j.job_id = e.job_id
 WHERE (e.tx_id, e.id) > (:after_tx, :after_id)
   AND (:admin OR j.client_id = :client_id)
   AND e.tx_id < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint
 ORDER BY e.tx_id, e.id
 LIMIT :limit;


-- name: changes_after_event_id
-- The change feed after the earlier cursor form, a bare event id: it starts just before the oldest
-- transaction of any later event, so nothing after it is skipped (a few events may come twice).
-- Otherwise as `changes`.
SELECT e.id, e.tx_id, e.job_id, e.kind, e.status, e.progress, e.stage, e.version, e.attempt, e.created_at
  FROM search_job_events e JOIN search_jobs j ON j.job_id = e.job_id
 WHERE (e.tx_id, e.id) > ((SELECT coalesce(min(tx_id), (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint) - 1
                             FROM search_job_events WHERE id > :after_id), 0)
   AND (:admin OR j.client_id = :client_id)
   AND e.tx_id < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint
 ORDER BY e.tx_id, e.id
 LIMIT :limit;


-- name: list_jobs
-- Newest first, keyset-paginated on the primary key (no OFFSET). A NULL :status or :before_id drops
-- that filter; an admin sees every job, a client only its own (none without a client).
SELECT id, job_id, status, progress, stage, version, attempts, phone_number, country_code, categories,
       original_image_url, image_id, results, meta, error, error_code, client_id, worker_name,
       lease_expires_at, run_after, cancel_requested, created_at, updated_at, started_at, finished_at,
       claim_token::text AS claim_token
  FROM search_jobs
 WHERE (:admin OR client_id = :client_id)
   AND (CAST(:status AS text) IS NULL OR status = :status)
   AND (CAST(:before_id AS bigint) IS NULL OR id < :before_id)
 ORDER BY id DESC
 LIMIT :limit;


-- name: counts_by_status
SELECT status, count(*) FROM search_jobs WHERE created_at >= :since GROUP BY status;


-- name: delete
-- Delete a job (its events and outbox rows go by ON DELETE CASCADE) and remember the deletion
-- (job_deletions), so the reconciler can re-write a tombstone Redis refused.
WITH gone AS (
    DELETE FROM search_jobs WHERE job_id = :job_id RETURNING job_id, image_id, result_token_hash
), remembered AS (
    INSERT INTO job_deletions (job_id, result_token_hash) SELECT job_id, result_token_hash FROM gone
    ON CONFLICT (job_id) DO NOTHING
)
SELECT * FROM gone;


-- name: delete_image
-- The uploaded image of a job just deleted.
DELETE FROM images WHERE id = :id;


-- name: count_expired
-- Cleanup: what the retention period would remove (finished jobs created before :cutoff).
SELECT count(*) AS jobs,
       coalesce(sum((SELECT count(*) FROM search_job_events e WHERE e.job_id = j.job_id)), 0) AS events,
       coalesce(sum((SELECT count(*) FROM notifications n WHERE n.job_id = j.job_id)), 0) AS notifications,
       count(j.image_id) AS images
  FROM search_jobs j
 WHERE j.created_at < :cutoff AND j.status IN ('completed', 'failed', 'cancelled');


-- name: delete_expired_batch
-- Cleanup, one small batch (short locks): finished jobs created before :cutoff, oldest first. Events
-- and outbox rows go by ON DELETE CASCADE, uploaded images explicitly; deletions are remembered.
WITH doomed AS (
    SELECT id FROM search_jobs
     WHERE created_at < :cutoff AND status IN ('completed', 'failed', 'cancelled')
     ORDER BY created_at
     LIMIT :batch
     FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM search_jobs j USING doomed WHERE j.id = doomed.id
    RETURNING j.job_id, j.image_id, j.result_token_hash
), remembered AS (
    INSERT INTO job_deletions (job_id, result_token_hash) SELECT job_id, result_token_hash FROM gone
    ON CONFLICT (job_id) DO NOTHING
), imgs AS (
    DELETE FROM images i USING gone WHERE i.id = gone.image_id RETURNING i.id
)
SELECT (SELECT count(*) FROM gone) AS jobs, (SELECT count(*) FROM imgs) AS images,
       coalesce((SELECT array_agg(job_id ORDER BY job_id) FROM gone), '{}') AS job_ids,
       coalesce((SELECT array_agg(result_token_hash ORDER BY job_id) FROM gone), '{}') AS token_hashes;


-- name: unfinished_summary
-- How many jobs are pending and processing, and the age of the oldest of each (the truth about
-- what is left to do).
SELECT status, count(*) AS n, extract(epoch FROM now() - min(created_at)) AS oldest_s
  FROM search_jobs
 WHERE status IN ('pending', 'processing')
 GROUP BY status;
