"""The cluster every fault scenario runs on: real web, worker and scheduler processes on a private
embedded Postgres and Valkey, a fake Twilio, and the checks every scenario ends with.

Each scenario submits jobs over HTTP, injects one fault mid-run, waits for the
outcome, and checks the same things: every job reached the state the scenario
requires, exactly one `completed` event per job (results written once),
progress events per job never go down, each event's version is above the one before (a `notified` event
carries the completed job's), every job with a phone number got
exactly one SMS, no response was a 5xx other than 503 with Retry-After, and
recovery stayed under the bar. Recovery figures are printed (`pytest -s`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests
import sqlalchemy as sa

from searchjobs import links
from searchjobs.catalog import demo
from searchjobs.db.engine import normalise_url
from searchjobs.embedded import EmbeddedStack, free_port
from searchjobs.queue import is_waiting, rq_job_id
from searchjobs.worker.worker import RESTART_PAUSE_MAX
from tests import pgbouncer
from tests.conftest import server_folder
from tests.fake_twilio import FakeTwilio

ROOT = Path(__file__).resolve().parents[2]
SECRET = "fault-test-secret"
FROM_NUMBER = "+15005550006"

# Short timings, so every recovery happens within seconds (production defaults: 20 / 5 / 5 / 25).
LEASE, HEARTBEAT, RECONCILE, GRACE = 4, 1, 1, 3
FAST = ("dress", "top", "skirt", "trousers", "jacket", "shoes")  # short jobs pick two of these
SLOW = ("bag", "hat", "coat", "scarf")  # a long job searches all four, each slow: it outlasts the grace
FAST_SECONDS, SLOW_SECONDS = 0.25, 1.2  # sleep of one category search
WORKERS = 3
BATCH = 25  # jobs per scenario; five scenarios submit > 100 in all
PHONE_EVERY = 3  # every third job leaves a phone number
FINISH_TIMEOUT = 60.0  # seconds for a scenario's jobs to finish once the fault is over
SMS_TIMEOUT = 20.0  # seconds for every due SMS to reach the fake

# Bars. A killed worker's job is back within a lease plus a reconciler pass (default 20 + 5 = 25 s <= 30 s).
KILL_BAR = LEASE + 2 * RECONCILE + 2
# Lost pointers are rebuilt by the next reconciler pass or two (it sees that Redis lost its data).
REDIS_REBUILD_BAR = 2 * RECONCILE + 3
# Workers take jobs again within their capped reconnect backoff.
REDIS_RESUME_BAR = RESTART_PAUSE_MAX + 2 * RECONCILE + 2
# After Postgres is back, paused workers retry within their backoff (capped at 5 s) and go on.
POSTGRES_BAR = 8.0

FIGURES: dict[str, float] = {}


def record(name: str, seconds: float) -> None:
    FIGURES[name] = round(seconds, 2)
    print(f"[faults] {name}: {seconds:.2f}s")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except sa.exc.OperationalError:  # our own reads during a Postgres outage
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Cluster:
    """The processes, the servers under them, and what the test submitted."""

    def __init__(self, stack: EmbeddedStack, fake: FakeTwilio, log_dir: Path, **env: str):
        self.stack = stack
        self.fake = fake
        self.log_dir = log_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": stack.postgres.url,
            "REDIS_URL": stack.valkey.url,
            "SECRET_KEY": SECRET,
            "PUBLIC_BASE_URL": self.base,
            "WEB_CONCURRENCY": "1",
            "SEARCHJOBS_LOG_FORMAT": "json",
            "SEARCHJOBS_RATE_LIMITS": "off",
            "SEARCHJOBS_LEASE_SECONDS": str(LEASE),
            "SEARCHJOBS_HEARTBEAT_INTERVAL": str(HEARTBEAT),
            "SEARCHJOBS_RECONCILE_INTERVAL": str(RECONCILE),
            "SEARCHJOBS_SHUTDOWN_GRACE": str(GRACE),
            "SEARCHJOBS_SEARCH_BACKEND": "tests.faults.slow_backend:factory",
            "SLOW_SEARCH_SECONDS": str(FAST_SECONDS),
            "SLOW_SEARCH_OVERRIDES": ",".join(f"{c}={SLOW_SECONDS}" for c in SLOW),
            "TWILIO_ACCOUNT_SID": fake.account_sid,
            "TWILIO_AUTH_TOKEN": fake.auth_token,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_API_BASE_URL": fake.base_url,
            "TWILIO_TIMEOUT": "2",
            **env,
        }
        self.processes: list[tuple[str, subprocess.Popen]] = []
        # our own reads: a fresh connection each time, so a Postgres restart leaves nothing stale here
        self.engine = sa.create_engine(normalise_url(stack.postgres.url), poolclass=sa.pool.NullPool)
        self.redis = redis.Redis.from_url(stack.valkey.url, socket_timeout=2)
        self.http = requests.Session()
        self.jobs: dict[str, str | None] = {}  # every job submitted: job_id -> phone (E.164) or None
        self.responses: list[tuple[str, int, str | None]] = []  # (what, status, Retry-After) of every request
        self.images = [item.image_png for item in demo.generate_items(10, seed=3)]
        self.counter = itertools.count()
        self.hostname = socket.gethostname()

    # -- processes -------------------------------------------------------------------------

    def start(self, kind: str, *args: str) -> subprocess.Popen:
        with open(self.log_dir / f"{kind}-{len(self.processes)}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "searchjobs", kind, *args], cwd=ROOT, env=self.env,
                                    stdout=log, stderr=subprocess.STDOUT)
        self.processes.append((kind, proc))
        return proc

    def wait_serving(self, timeout: float = 30) -> None:
        """Until the web answers /readyz with 200 (Postgres reachable)."""
        def serving():
            try:
                return requests.get(f"{self.base}/readyz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False
        wait_for(serving, timeout, "the web process")

    def close(self) -> None:
        """Stop every process and close the test's own clients (the servers are the fixture's)."""
        self.stop_all()
        self.http.close()
        self.redis.close()
        self.engine.dispose()

    def workers(self) -> list[subprocess.Popen]:
        return [p for kind, p in self.processes if kind == "worker" and p.poll() is None]

    def keep_workers(self, count: int = WORKERS) -> None:
        while len(self.workers()) < count:
            self.start("worker")

    def worker_process(self, worker_name: str | None) -> subprocess.Popen | None:
        """The worker process that wrote `worker_name` ("<host>.<pid>.<hex>[.<restart>]") on a claim."""
        if not worker_name or not worker_name.startswith(self.hostname + "."):
            return None
        pid = int(worker_name[len(self.hostname) + 1:].split(".")[0])
        return next((p for p in self.workers() if p.pid == pid), None)

    def stop_all(self) -> None:
        for _, proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.processes:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)

    # -- HTTP -------------------------------------------------------------------------------

    def request(self, method: str, path: str, what: str, session: requests.Session | None = None, **kwargs):
        response = (session or self.http).request(method, self.base + path, timeout=10, **kwargs)
        self.responses.append((what, response.status_code, response.headers.get("Retry-After")))
        return response

    def submit(self, categories: tuple[str, ...] | None = None, phone: bool | None = None,
               headers: dict | None = None, retry_503: float = 0.0):
        """POST one job (multipart upload); returns the response. Phones are unique, so SMS can be counted.

        `retry_503`: for that many seconds, retry a 503 as a careful client does, with the same
        Idempotency-Key (a 503 after the commit must not make a second job).
        """
        n = next(self.counter)
        categories = categories or (FAST[n % len(FAST)], FAST[(n + 1) % len(FAST)])
        with_phone = (n % PHONE_EVERY == 0) if phone is None else phone
        data = {"categories": ",".join(categories)}
        if with_phone:
            data.update(phone_number=f"06 12 34 {n // 100:02d} {n % 100:02d}", country_code="33")
        headers = dict(headers or {})
        deadline = time.monotonic() + retry_503
        if retry_503:
            headers.setdefault("Idempotency-Key", f"fault-client-{n}")
        while True:
            response = self.request("POST", "/api/search-jobs", "submit", data=data, headers=headers,
                                    files={"image": ("photo.png", self.images[n % len(self.images)], "image/png")})
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(float(response.headers.get("Retry-After", 1)) / 5)
        if response.status_code == 202:
            self.jobs[response.json()["job_id"]] = f"+3361234{n // 100:02d}{n % 100:02d}" if with_phone else None
        return response

    def submit_batch(self, count: int = BATCH, **kwargs) -> list[str]:
        ids = []
        for _ in range(count):
            response = self.submit(**kwargs)
            assert response.status_code == 202, response.text
            ids.append(response.json()["job_id"])
        return ids

    # -- reading Postgres -----------------------------------------------------------------------

    def query(self, statement: str, **params) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(statement), params).mappings()]

    def rows(self, ids: list[str]) -> dict[str, dict]:
        return {r["job_id"]: r for r in self.query("SELECT * FROM search_jobs WHERE job_id = ANY(:ids)", ids=ids)}

    def events(self, ids: list[str]) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {job_id: [] for job_id in ids}
        for event in self.query("SELECT * FROM search_job_events WHERE job_id = ANY(:ids) ORDER BY id", ids=ids):
            found[event["job_id"]].append(event)
        return found

    def first_event_after(self, job_id: str, after: float, kinds: tuple[str, ...] | None = None) -> float | None:
        for event in self.events([job_id])[job_id]:
            if event["created_at"].timestamp() > after and (kinds is None or event["kind"] in kinds):
                return event["created_at"].timestamp()
        return None

    def wait_event(self, job_id: str, after: float, kinds: tuple[str, ...], timeout: float) -> float:
        return wait_for(lambda: self.first_event_after(job_id, after, kinds), timeout,
                        f"a {'/'.join(kinds)} event of {job_id}")

    def wait_mid_job(self, ids: list[str], stage_like: str = "features") -> tuple[str, subprocess.Popen]:
        """A job of `ids` between two persisted steps, and the live worker process running it."""
        def find():
            for row in self.query("SELECT job_id, worker_name FROM search_jobs WHERE job_id = ANY(:ids) "
                                  "AND status = 'processing' AND stage LIKE :stage", ids=ids, stage=stage_like):
                proc = self.worker_process(row["worker_name"])
                if proc is not None:
                    return row["job_id"], proc
            return None
        return wait_for(find, 30, "a job caught mid-run", interval=0.02)

    def wait_finished(self, ids: list[str], timeout: float = FINISH_TIMEOUT) -> dict[str, dict]:
        def finished():
            rows = self.rows(ids)
            done = all(r["status"] in ("completed", "failed", "cancelled") for r in rows.values())
            return rows if done and len(rows) == len(ids) else None
        try:
            return wait_for(finished, timeout, f"{len(ids)} jobs to finish", interval=0.25)
        except AssertionError:
            left = {j: (r["status"], r["stage"], r["attempts"]) for j, r in self.rows(ids).items()
                    if r["status"] not in ("completed", "failed", "cancelled")}
            raise AssertionError(f"unfinished: {left}\n{self.log_tail()}") from None

    def rebuilt(self, ids: list[str]) -> bool:
        """Every job of `ids` is past pending, or has a pointer waiting in Redis again."""
        for row in self.rows(ids).values():
            if row["status"] == "pending" and not is_waiting(self.redis, rq_job_id(row["job_id"], row["attempts"])):
                return False
        return True

    # -- the checks every scenario ends with ----------------------------------------------------

    def check(self, ids: list[str], expected: str = "completed") -> None:
        rows = self.wait_finished(ids)
        events = self.events(ids)
        for job_id in ids:
            row, kinds = rows[job_id], [e["kind"] for e in events[job_id]]
            assert row["status"] == expected, (job_id, row["status"], row["error_code"], row["error"])
            assert kinds.count("completed") == (1 if expected == "completed" else 0), (job_id, kinds)
            if expected == "completed":
                assert row["results"] is not None and row["progress"] == 100
            progress = [e["progress"] for e in events[job_id]]
            assert progress == sorted(progress), (job_id, list(zip(kinds, progress, strict=True)))
            # each state change bumps the version once; a `notified` event records the completed job's
            changes = [(e["kind"], e["version"]) for e in events[job_id] if e["kind"] != "notified"]
            assert all(a[1] < b[1] for a, b in itertools.pairwise(changes)), (job_id, changes)
            assert all(e["version"] == row["version"] for e in events[job_id] if e["kind"] == "notified")
        self.check_sms()
        self.check_responses()

    def check_sms(self) -> None:
        """Every completed job with a phone, from every scenario so far, got exactly one SMS; no other SMS."""
        rows = self.rows(list(self.jobs))
        due = {job_id: links.result_token(SECRET, job_id) for job_id, phone in self.jobs.items()
               if phone is not None and rows[job_id]["status"] == "completed"}

        def all_sent():
            bodies = [m["body"] for m in self.fake.messages]
            return all(any(token in body for body in bodies) for token in due.values())
        try:
            wait_for(all_sent, SMS_TIMEOUT, "every due SMS", interval=0.2)
        except AssertionError as exc:  # say which rows are behind, and why
            raise AssertionError(f"{exc}; the unsent rows: {self.unsent_notifications()}") from None
        messages = self.fake.messages
        for job_id, token in due.items():
            mine = [m for m in messages if token in m["body"]]
            assert len(mine) == 1, (job_id, len(mine))
            assert mine[0]["to"] == self.jobs[job_id]
        assert len(messages) == len(due)

    def unsent_notifications(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(
                "SELECT id, job_id, status, attempts, last_error_code, last_error_message, claimed_at, "
                "last_send_at, may_land_until, next_attempt_at, now() AS db_now FROM notifications "
                "WHERE status NOT IN ('sent', 'delivered') ORDER BY id")).mappings()]

    def check_responses(self) -> None:
        for what, status, retry_after in self.responses:
            assert status < 500 or status == 503, (what, status)
            if status == 503:
                assert retry_after, (what, "503 without Retry-After")


@contextlib.contextmanager
def running_cluster(base: Path, workers: int = WORKERS, **env):
    """A private stack, the fake Twilio and the processes: web, `workers` workers, one scheduler."""
    from searchjobs.catalog.load import load_demo
    from searchjobs.db import engine as db
    from searchjobs.db import schema

    folders = contextlib.ExitStack()
    servers = folders.enter_context(server_folder("cluster"))
    # fsync stays on: with fast_unsafe (synchronous_commit off) an immediate stop loses acknowledged commits
    stack = EmbeddedStack(servers / "servers", persist_redis=False).start()
    fake = FakeTwilio().start()
    cluster = bouncer = None
    try:
        schema.upgrade(stack.postgres.url)
        engine = db.make_engine(stack.postgres.url, pool_size=1)
        load_demo(engine, 60)
        engine.dispose()
        if pgbouncer.wanted():  # the processes talk to PgBouncer; the test's own reads go to Postgres
            bouncer = pgbouncer.PgBouncer(servers / "pgbouncer", ("127.0.0.1", stack.postgres.port),
                                          password=stack.postgres.password).start()
            env = {**env, "DATABASE_URL": bouncer.url}
        (base / "logs").mkdir()
        cluster = Cluster(stack, fake, base / "logs", **env)
        cluster.start("web", "--host", "127.0.0.1", "--port", str(cluster.port))
        cluster.keep_workers(workers)
        cluster.start("scheduler")

        cluster.wait_serving()
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        fake.stop()
        if bouncer is not None:
            bouncer.stop()
        stack.stop()
        folders.close()
        if FIGURES:
            submitted = len(cluster.jobs) if cluster is not None else 0
            print(f"\n[faults] {submitted} jobs submitted; recovery figures: "
                  + ", ".join(f"{k}={v}s" for k, v in FIGURES.items()))
            FIGURES.clear()


