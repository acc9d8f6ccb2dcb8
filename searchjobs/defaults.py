"""Named constants in one place (as rq/defaults.py): TTLs, intervals, queue names, limits."""

# -- queues ---------------------------------------------------------------
SEARCH_QUEUE = "searches"  # RQ queue the web app enqueues search jobs on
NOTIFICATION_QUEUE = "notifications"  # RQ queue of SMS sends, apart so a slow provider never delays searches
ALL_QUEUES = (SEARCH_QUEUE, NOTIFICATION_QUEUE)  # what `searchjobs worker` listens on by default, in priority order
SEARCH_JOB_FUNC = "searchjobs.jobs.search.run"  # enqueued by dotted path, with the job_id only
NOTIFICATION_FUNC = "searchjobs.notifications.send.send"  # likewise for an outbox row id

# -- jobs -----------------------------------------------------------------
JOB_TIMEOUT = 120  # seconds a search may run before the worker stops it
MAX_ATTEMPTS = 4  # a job is tried at most this often before it fails for good
RETRY_BACKOFF_BASE = 2.0  # seconds; retry n waits about base * 2**(n-1), with jitter
RETRY_BACKOFF_MAX = 60.0  # seconds; cap on one retry delay
LEASE_SECONDS = 20  # a processing job whose lease is older than this has lost its worker
HEARTBEAT_INTERVAL = 5  # seconds between lease renewals of the running job
RQ_RESULT_TTL = 60  # seconds RQ keeps a finished job's hash; the result lives in Postgres
RQ_FAILURE_TTL = 24 * 3600  # seconds RQ keeps a failed job's hash, for `rq info`
DEFAULT_TOP_K = 12  # results per category
MAX_CATEGORIES = 10  # categories one job may ask for
CATALOG_FACTS_TTL = 30.0  # seconds a process reuses the catalog's categories and version (an import shows within it)
ERROR_MESSAGE_MAX = 300  # characters of a job's stored error text

# -- reads ----------------------------------------------------------------
CACHE_TTL = 3600  # seconds a job's cached view lives (SEARCHJOBS_CACHE_TTL)
CACHE_PREFIX = "searchjobs:job:"  # key of one job's cached view
TOKEN_CACHE_PREFIX = "searchjobs:token:"  # key of one result-link token hash -> its job id
EVENTS_CHANNEL_PREFIX = "searchjobs:events:"  # pub/sub channel that wakes SSE streams of one job
REDIS_SOCKET_TIMEOUT = 0.5  # seconds; a slow Redis must not hang a read, Postgres answers instead
RETRY_AFTER_SECONDS = 5  # Retry-After on 503 when a dependency is down
DB_POOL_TIMEOUT = 2.0  # seconds to wait for a free pooled connection; then 503 (web) or a retry (worker)

# -- scheduler ------------------------------------------------------------
RECONCILE_INTERVAL = 5  # seconds between two reconciler passes
CLEANUP_INTERVAL = 3600  # seconds between two retention passes
CLEANUP_BATCH = 500  # jobs deleted per statement, so no lock is held for long
RETENTION_DAYS = 7  # jobs older than this are deleted (SEARCHJOBS_RETENTION_DAYS)
PENDING_GRACE_SECONDS = 10  # a pending job younger than this may still be on its way into Redis

# -- SMS ------------------------------------------------------------------
SMS_LOOKUP_MARGIN = 60.0  # seconds the provider may take to create a message it received (look-ups wait for it)
SMS_SEND_START_GRACE = 3.0  # seconds; a create request not started this long after its send was recorded is not made
SMS_GIVE_UP_HOURS = 24.0  # an SMS still not sent this long after its job completed is given up (unknown: parked)
SMS_AUTH_RETRY_SECONDS = 60.0  # while the provider refuses our credentials, a paused SMS is tried again this often

# -- web ------------------------------------------------------------------
MAX_CONTENT_LENGTH = 12 * 1024 * 1024  # bytes of one request body (the image cap plus form overhead)
IDEMPOTENCY_WINDOW_HOURS = 24  # a repeated Idempotency-Key returns the first job within this window
