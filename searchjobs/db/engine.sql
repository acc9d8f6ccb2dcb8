-- Plumbing statements that belong to no table, run by searchjobs/db/engine.py.


-- name: ping
-- The readiness probe's round trip: Postgres answers.
SELECT 1;


-- name: now
-- Postgres's clock, which every deadline and cutoff is on (the host's clock does not matter).
SELECT now();


-- name: session_defaults
-- What every new session of our role in our database starts with, whichever process and whichever
-- pooler opens it (ALTER ROLE ... IN DATABASE ... SET; any role may set its own defaults). A DO block
-- takes no parameters, so the value reaches it through a setting local to this transaction.
SELECT set_config('searchjobs.statement_timeout', :statement_timeout, true);
DO $$ BEGIN
  EXECUTE format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = %L',
                 current_user, current_database(), current_setting('searchjobs.statement_timeout'));
END $$;
