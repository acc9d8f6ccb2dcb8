-- Queries on the SMS outbox (`notifications`), run by searchjobs/notifications/outbox.py; the
-- statuses and the fencing of a try by its claim (`attempts = :attempt`) are explained there.
--
-- Statements that return an outbox row return the same columns:
--   id, job_id, kind, channel, to_number, body, status, provider, provider_sid, provider_status, attempts,
--   last_error_code, last_error_message, first_attempt_at, next_attempt_at, claimed_at, body_sha256,
--   give_up_at, last_send_at, may_land_until, created_at, updated_at, sent_at, delivered_at
--
-- A row is due (claim, due): pending and its time has come (NULL: never tried), unknown with a next
-- look-up (NULL: parked), or left `sending` by a killed sender (claimed over :stale_after seconds ago).


-- name: claim
-- Take the row for one send attempt (none if it is not due, already done, or someone else holds it).
-- The first claim sets the deadline give_up_at: :give_up_after seconds after the row was written,
-- never past the job's retention.
WITH prev AS (SELECT id, status FROM notifications WHERE id = :id FOR UPDATE SKIP LOCKED)
UPDATE notifications n
   SET status = 'sending', attempts = n.attempts + 1, claimed_at = now(), updated_at = now(),
       first_attempt_at = coalesce(n.first_attempt_at, now()),
       give_up_at = coalesce(n.give_up_at, least(n.created_at + make_interval(secs => :give_up_after),
                                                 j.created_at + make_interval(days => :retention_days)))
  FROM prev, search_jobs j
 WHERE n.id = prev.id AND j.job_id = n.job_id
   AND ((n.status = 'pending' AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= now()))
        OR (n.status = 'unknown' AND n.next_attempt_at <= now())
        OR (n.status = 'sending' AND n.claimed_at < now() - make_interval(secs => :stale_after)))
RETURNING n.id, n.job_id, n.kind, n.channel, n.to_number, n.body, n.status, n.provider, n.provider_sid,
          n.provider_status, n.attempts, n.last_error_code, n.last_error_message, n.first_attempt_at,
          n.next_attempt_at, n.claimed_at, n.body_sha256, n.give_up_at, n.last_send_at, n.may_land_until,
          n.created_at, n.updated_at, n.sent_at, n.delivered_at,
          prev.status AS previous_status, j.result_token_hash,
          j.created_at + make_interval(days => :retention_days) AS retention_ends_at, now() AS db_now;


-- name: mark_sending
-- Just before a create request, for the current claim only: when it starts, until when it may land
-- (only ever later), and the body's hash.
UPDATE notifications
   SET last_send_at = now(), body_sha256 = :hash, updated_at = now(),
       may_land_until = greatest(may_land_until, now() + make_interval(secs => :land))
 WHERE id = :id AND status = 'sending' AND attempts = :attempt;


-- name: mark_sent
-- The provider's message, and a `notified` event on the job's activity log. Not fenced by attempt:
-- any claim's sid is the truth about what was sent.
WITH n AS (
    UPDATE notifications SET status = :status, provider = :provider, provider_sid = :sid,
           provider_status = :pstatus, sent_at = coalesce(sent_at, now()), updated_at = now(),
           delivered_at = CASE WHEN :status = 'delivered' THEN now() ELSE delivered_at END,
           next_attempt_at = NULL, last_error_code = NULL, last_error_message = NULL
     WHERE id = :id AND status IN ('sending', 'unknown')
    RETURNING job_id, channel
)
INSERT INTO search_job_events (job_id, kind, status, progress, stage, version, attempt, detail)
SELECT j.job_id, 'notified', j.status, j.progress, j.stage, j.version, j.attempts,
       jsonb_build_object('channel', n.channel, 'provider', CAST(:provider AS text))
  FROM n JOIN search_jobs j ON j.job_id = n.job_id;


-- name: mark_retry
-- Back to :status, 'pending' (not sent) or 'unknown' (may have been sent), for the claim :attempt only.
-- Due again at :due_at, or after :delay seconds (both NULL: parked); an unknown row never before
-- may_land_until, which moves to at least now + :land; :give_up_at, when given, is the new deadline.
UPDATE notifications
   SET status = :status,
       may_land_until = greatest(may_land_until, now() + make_interval(secs => CAST(:land AS float8))),
       next_attempt_at = CASE WHEN CAST(:delay AS float8) IS NULL AND CAST(:due_at AS timestamptz) IS NULL THEN NULL
         ELSE greatest(coalesce(CAST(:due_at AS timestamptz), now() + make_interval(secs => CAST(:delay AS float8))),
                       CASE WHEN :status = 'unknown' THEN greatest(may_land_until,
                            now() + make_interval(secs => CAST(:land AS float8))) END) END,
       give_up_at = coalesce(CAST(:give_up_at AS timestamptz), give_up_at),
       last_error_code = :code, last_error_message = :message, updated_at = now()
 WHERE id = :id AND status = 'sending' AND attempts = :attempt;


-- name: mark_failed
-- Nothing was sent and nothing will be (rejected, or given up), for the claim :attempt only.
UPDATE notifications
   SET status = 'failed', next_attempt_at = NULL, last_error_code = :code,
       last_error_message = :message, updated_at = now()
 WHERE id = :id AND status = 'sending' AND attempts = :attempt;


-- name: apply_provider_status
-- A delivery report moves a row forward only (reports arrive out of order and twice): the CASE
-- ranks the stored provider status as PROVIDER_STATUS_RANK in outbox.py does, :rank the new one.
UPDATE notifications
   SET provider_status = :pstatus, status = :status, updated_at = now(),
       delivered_at = CASE WHEN :status = 'delivered' THEN now() ELSE delivered_at END,
       last_error_code = coalesce(:code, last_error_code)
 WHERE provider_sid = :sid
   AND status IN ('sent', 'sending', 'unknown', 'delivered', 'undelivered', 'failed')
   AND coalesce(CASE provider_status
         WHEN 'accepted' THEN 1 WHEN 'queued' THEN 1 WHEN 'sending' THEN 2 WHEN 'sent' THEN 3
         WHEN 'delivered' THEN 4 WHEN 'undelivered' THEN 4 WHEN 'failed' THEN 4
         WHEN 'canceled' THEN 4 WHEN 'read' THEN 5 END, 0) < :rank;


-- name: has_provider_sid
SELECT 1 FROM notifications WHERE provider_sid = :sid LIMIT 1;


-- name: due
-- Rows the scheduler should (re-)enqueue: due ones, as `claim` takes them (not parked ones).
SELECT n.id FROM notifications n
 WHERE ((n.status = 'pending' AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= now()))
        OR (n.status = 'unknown' AND n.next_attempt_at <= now())
        OR (n.status = 'sending' AND n.claimed_at < now() - make_interval(secs => :stale_after)))
 ORDER BY n.id
 LIMIT :limit;


-- name: get
SELECT id, job_id, kind, channel, to_number, body, status, provider, provider_sid, provider_status, attempts,
       last_error_code, last_error_message, first_attempt_at, next_attempt_at, claimed_at, body_sha256,
       give_up_at, last_send_at, may_land_until, created_at, updated_at, sent_at, delivered_at
  FROM notifications
 WHERE id = :id;


-- name: list_rows
-- The newest outbox rows, of one :status (NULL: of any).
SELECT id, job_id, kind, channel, to_number, body, status, provider, provider_sid, provider_status, attempts,
       last_error_code, last_error_message, first_attempt_at, next_attempt_at, claimed_at, body_sha256,
       give_up_at, last_send_at, may_land_until, created_at, updated_at, sent_at, delivered_at
  FROM notifications
 WHERE (CAST(:status AS text) IS NULL OR status = :status)
 ORDER BY id DESC
 LIMIT :limit;


-- name: requeue
-- An operator's retry: back to pending, due now, with a new deadline. One row by :id, or (with :id
-- NULL and :all_failed true) every failed row the provider never accepted. Only rows an operator may
-- send again: nothing was sent (failed), or they checked the provider (parked unknown).
UPDATE notifications n
   SET status = 'pending', next_attempt_at = now(), first_attempt_at = NULL,
       give_up_at = least(now() + make_interval(secs => :give_up_after),
                          j.created_at + make_interval(days => :retention_days)),
       provider = NULL, provider_sid = NULL, provider_status = NULL, sent_at = NULL,
       delivered_at = NULL, last_error_code = NULL, last_error_message = NULL, updated_at = now()
  FROM search_jobs j
 WHERE j.job_id = n.job_id
   AND (n.id = :id OR (:all_failed AND n.status = 'failed' AND n.provider_sid IS NULL))
   AND (n.status = 'failed' OR (n.status = 'unknown' AND n.next_attempt_at IS NULL))
RETURNING n.id;


-- name: for_job
-- One job's outbox rows, oldest first.
SELECT id, job_id, kind, channel, to_number, body, status, provider, provider_sid, provider_status, attempts,
       last_error_code, last_error_message, first_attempt_at, next_attempt_at, claimed_at, body_sha256,
       give_up_at, last_send_at, may_land_until, created_at, updated_at, sent_at, delivered_at
  FROM notifications
 WHERE job_id = :j
 ORDER BY id;


-- name: counts_by_status
SELECT status, count(*) FROM notifications GROUP BY status;
