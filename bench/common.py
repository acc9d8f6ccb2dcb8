"""Shared helpers for the benchmarks in bench/.

Every benchmark starts its own embedded PostgreSQL and Valkey in a temp dir
(`searchjobs.embedded.EmbeddedStack`, **not** fast_unsafe: fsync on,
synchronous_commit on, full_page_writes on; Valkey with appendonly +
appendfsync everysec, as `searchjobs up` runs them) unless DATABASE_URL and
REDIS_URL are both set, then migrates. On the embedded stack
pg_stat_statements is preloaded (one restart) so round trips can be counted.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
JOB_TABLES = "search_job_events, notifications, search_jobs, images, api_clients"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# -- numbers and tables ------------------------------------------------------

def pct(values, p: float) -> float:
    """Percentile p (0-100) by linear interpolation; nan for no values."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def fmt(value, digits: int = 2) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine_info() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        pass
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "searchjobs").rglob("*.py")):
        digest.update(path.read_bytes())
    info["product_code_sha256"] = digest.hexdigest()[:16]  # the working tree measured (it may be uncommitted)
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=5).stdout.strip()
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def write_results(name: str, data: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv,
               "machine": machine_info(), **data}
    path.write_text(json.dumps(payload, indent=2, default=str))
    log(f"wrote {path}")
    return path


# -- servers ------------------------------------------------------------------

class Servers:
    """PostgreSQL + Redis for one benchmark run: embedded in a temp dir, or DATABASE_URL/REDIS_URL."""

    def __init__(self, *, pg_stat_statements: bool = True, extra_pg_settings: dict | None = None):
        self.want_pg_stat = pg_stat_statements
        self.extra_pg_settings = extra_pg_settings or {}
        self.stack = None
        self.tmp: str | None = None
        self.database_url = os.environ.get("DATABASE_URL")
        self.redis_url = os.environ.get("REDIS_URL")
        self.external = bool(self.database_url and self.redis_url)
        self.pg_stat = False

    def __enter__(self) -> Servers:
        from searchjobs.db import schema

        if not self.external:
            from searchjobs.embedded import EmbeddedStack

            self.tmp = tempfile.mkdtemp(prefix="searchjobs-bench-")
            os.chmod(self.tmp, 0o711)  # as root the server's own user must pass through it
            started = time.monotonic()
            self.stack = EmbeddedStack(Path(self.tmp), fast_unsafe=False, persist_redis=True).start()
            self.database_url, self.redis_url = self.stack.postgres.url, self.stack.valkey.url
            if self.want_pg_stat or self.extra_pg_settings:
                self._configure_and_restart()
            log(f"embedded PostgreSQL + Valkey up in {time.monotonic() - started:.1f}s ({self.tmp})")
        schema.upgrade(self.database_url)
        self._use_configured_embedder()
        self.pg_stat = self._ensure_pg_stat()
        return self

    def _use_configured_embedder(self) -> None:
        """The empty catalog takes the configured embedder, as the product's first import does: a fresh
        schema names the first descriptor's version, and a worker refuses jobs whose catalog names an
        embedder it cannot load (every bench job would end as a retried `dependency_unavailable`)."""
        from searchjobs.catalog.load import writing_embedder

        rt = self.runtime()
        try:
            writing_embedder(rt.engine, rt.embedders)
        finally:
            rt.close()

    def _admin(self):
        import psycopg2

        conn = psycopg2.connect(self.database_url)
        conn.autocommit = True
        return conn

    def _configure_and_restart(self) -> None:
        conn = self._admin()
        with conn.cursor() as cur:
            if self.want_pg_stat:
                cur.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            for key, value in self.extra_pg_settings.items():
                cur.execute(f"ALTER SYSTEM SET {key} = %s", (str(value),))
        conn.close()
        self.stack.postgres.stop()
        self.stack.postgres.start()  # same port

    def _ensure_pg_stat(self) -> bool:
        if not self.want_pg_stat:
            return False
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_settings WHERE name = 'shared_preload_libraries' "
                            "AND setting LIKE '%pg_stat_statements%'")
                if cur.fetchone() is None:
                    return False
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            return True
        except Exception:  # noqa: BLE001 - an external server may not allow it
            return False
        finally:
            conn.close()

    def durability(self) -> dict:
        """The settings that decide what a commit costs, as the server reports them."""
        conn = self._admin()
        out = {}
        with conn.cursor() as cur:
            for name in ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "shared_buffers",
                         "server_version"):
                cur.execute(f"SHOW {name}")
                out[f"postgres.{name}"] = cur.fetchone()[0]
        conn.close()
        r = self.redis()
        try:
            cfg = r.config_get("appendonly")
            cfg.update(r.config_get("appendfsync"))
            out.update({f"valkey.{k}": v for k, v in cfg.items()})
            out["valkey.version"] = r.info("server").get("valkey_version") or r.info("server").get("redis_version")
        finally:
            r.close()
        out["source"] = "DATABASE_URL/REDIS_URL" if self.external else "embedded (EmbeddedStack, not fast_unsafe)"
        return out

    def env(self, **extra) -> dict:
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, "SECRET_KEY": "bench-secret",
            "PYTHONPATH": str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
            "SEARCHJOBS_LOG_FORMAT": "json",
        })
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def settings(self, **extra):
        from searchjobs.config import Settings

        return Settings.from_env(self.env(**extra))

    def runtime(self, **extra):
        from searchjobs.runtime import Runtime

        return Runtime.from_settings(self.settings(**extra))

    def redis(self):
        import redis

        return redis.Redis.from_url(self.redis_url)

    def engine(self, **kwargs):
        from searchjobs.db import engine as db

        return db.make_engine(self.database_url, **kwargs)

    def truncate_jobs(self) -> None:
        conn = self._admin()
        with conn.cursor() as cur:
            cur.execute(f"TRUNCATE {JOB_TABLES} RESTART IDENTITY CASCADE")
        conn.close()

    # round trips and commands
    def pg_stat_reset(self) -> None:
        if self.pg_stat:
            conn = self._admin()
            with conn.cursor() as cur:
                cur.execute("SELECT pg_stat_statements_reset()")
            conn.close()

    def pg_stat_top(self, limit: int = 15) -> list[dict]:
        """Statements since the last reset (ours only: not pg_stat_statements' own)."""
        if not self.pg_stat:
            return []
        conn = self._admin()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3), "
                "left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements "
                "WHERE query NOT ILIKE '%%pg_stat_statements%%' ORDER BY calls DESC LIMIT %s", (limit,))
            rows = [{"calls": c, "total_ms": float(t), "mean_ms": float(m), "query": q} for c, t, m, q in cur.fetchall()]
        conn.close()
        return rows

    def pg_wal(self) -> dict:
        conn = self._admin()
        with conn.cursor() as cur:
            try:
                cur.execute("SELECT wal_records, wal_bytes FROM pg_stat_wal")
                rec, nbytes = cur.fetchone()
                out = {"wal_records": int(rec), "wal_bytes": int(nbytes)}
            except Exception:  # noqa: BLE001
                out = {}
            try:  # PG 18 moved sync counts to pg_stat_io
                cur.execute("SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal'")
                out["wal_fsyncs"] = int(cur.fetchone()[0])
            except Exception:  # noqa: BLE001
                pass
        conn.close()
        return out

    def __exit__(self, *exc) -> None:
        if self.stack is not None:
            try:
                self.stack.stop()
            finally:
                if self.tmp:
                    shutil.rmtree(self.tmp, ignore_errors=True)


def redis_commandstats(r) -> dict[str, int]:
    stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def commands_delta(before: dict, after: dict) -> dict[str, int]:
    keys = set(before) | set(after)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k: v for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v > 0}


def summary_line(name: str, values: dict) -> str:
    parts = []
    for key, value in values.items():
        if isinstance(value, float):
            value = "nan" if value != value else (f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}")
        parts.append(f"{key}={value}")
    return f"{name}: " + " ".join(parts)
