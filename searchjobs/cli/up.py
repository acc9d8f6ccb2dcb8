"""`searchjobs up`: the whole service on one machine, on the embedded default."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import click

from searchjobs.cli.catalog import (
    DEMO_CATALOG_SIZE,
    configured_embedders,
    load_demo_with_progress,
    reembed_if_stale,
)
from searchjobs.cli.common import fail
from searchjobs.config import SECRET_KEY_FILE, Settings

CHILD_STOP_TIMEOUT = 30  # seconds `up` waits for its processes after Ctrl-C before killing them
WEB_START_TIMEOUT = 60  # seconds the web gets to answer /healthz before `up` gives up


@click.command()
@click.option("--port", default=8000, show_default=True, help="Port of the web app (on 127.0.0.1).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the web app listens on.")
@click.option("--workers", "worker_count", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes.")
@click.option("--demo-size", default=DEMO_CATALOG_SIZE, show_default=True, type=click.IntRange(0),
              help="Demo catalog items to load when the catalog is empty (0: none).")
def up(port: int, host: str, worker_count: int, demo_size: int) -> None:
    """Run the whole service: embedded PostgreSQL + Valkey, migrations, web, workers, scheduler."""
    from searchjobs.embedded import InstanceLock

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stop_requested)
    settings = Settings.from_env()
    data_dir = settings.data_dir.resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"the data folder {data_dir} cannot be made ({exc.strerror}); set SEARCHJOBS_DATA_DIR to a folder")
    # the lock first: a second `up` on this folder is told so, not sent to another port
    lock = InstanceLock(data_dir).acquire()  # InstanceRunning: another `up` runs here; nothing touched
    _check_port_free(host, port)  # on failure the process exits, and the kernel drops the lock with it
    stack = None
    children: list[subprocess.Popen] = []
    try:
        stack = _start_embedded_stack(data_dir, lock) if settings.embedded else None
        env = _child_environment(data_dir, stack, host, port)
        _empty_metrics_dir(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
        _migrate(env["DATABASE_URL"])
        # appended one by one, so that a failed start still stops those already running
        with _demo_load(env["DATABASE_URL"], demo_size, settings) as load_demo:
            children.append(_start_child(_web_command(host, port), env))
            if load_demo is None:
                children.extend(_start_child(command, env) for command in _worker_commands(worker_count))
            _wait_until_serving(env["PUBLIC_BASE_URL"], children[0])
            lock.describe(web_url=env["PUBLIC_BASE_URL"])
            if load_demo is not None:
                # the URL answers (saying the catalog is loading) during the load; workers and the
                # scheduler start after it, as no search runs before, leaving the load the cores
                load_demo(env["PUBLIC_BASE_URL"])
                children.extend(_start_child(command, env) for command in _worker_commands(worker_count))
            else:
                report = reembed_if_stale(env["DATABASE_URL"], settings)
                if report is not None and report.failed:
                    click.echo(f"{len(report.failed)} items could not be embedded; searches keep {report.active} "
                               f"(see `searchjobs catalog reembed`)", err=True)
        _announce(env["PUBLIC_BASE_URL"], data_dir, worker_count, children)
        exited = _wait_for_children(children)
    except KeyboardInterrupt:  # Ctrl-C while starting (a load, a reembed): the same orderly stop
        exited = None
    finally:
        _stop_children(children)
        if stack is not None:
            click.echo("Stopping embedded servers ...")
            stack.stop()
        lock.release()
    if exited is not None:
        fail(f"a process exited on its own (pid {exited.pid}, code {exited.returncode}); everything was stopped",
             code=1)


def _stop_requested(signum, frame) -> None:
    """The first Ctrl-C or SIGTERM while `up` starts: an orderly stop (the KeyboardInterrupt is caught in
    `up`); more of them while it stops are ignored, so the stop is never cut short."""
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)
    raise KeyboardInterrupt


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _start_child(command: list[str], env: dict) -> subprocess.Popen:
    """A process of `up`'s own: it gets SIGTERM when `up` dies, however `up` dies (kill -9 included),
    so no web or worker outlives it against servers that are gone."""
    parent = os.getpid()

    def die_with_parent() -> None:  # in the child, between fork and exec
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # `up` died before the prctl took effect
            os._exit(1)

    return subprocess.Popen(command, env=env, preexec_fn=die_with_parent)


def _check_port_free(host: str, port: int) -> None:
    """Before anything starts or prints: the web's port must be free (as gunicorn binds it)."""
    if _port_free(host, port):
        return
    suggestion = next((p for p in range(port + 1, port + 50) if _port_free(host, p)), None)
    hint = f"; try --port {suggestion}" if suggestion else ""
    fail(f"port {port} is in use{hint}", code=1)


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn: a TIME_WAIT port is free
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _start_embedded_stack(data_dir: Path, lock):
    from searchjobs.embedded import EmbeddedStack

    click.echo(f"Starting embedded PostgreSQL and Valkey (data in {data_dir}) ...")
    return EmbeddedStack(data_dir, lock=lock).start()


def _child_environment(data_dir: Path, stack, host: str, port: int) -> dict[str, str]:
    """The environment of the child processes: this one's, plus what it leaves unset."""
    env = dict(os.environ)
    if stack is not None:
        env.setdefault("DATABASE_URL", stack.postgres.url)
        env.setdefault("REDIS_URL", stack.valkey.url)
    env.setdefault("SECRET_KEY", _secret_key(data_dir))
    public_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    env.setdefault("PUBLIC_BASE_URL", public_url)
    env["SEARCHJOBS_DATA_DIR"] = str(data_dir)
    # one metrics folder for web, workers and scheduler: /metrics then adds up every process's counters
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(data_dir / "metrics"))
    return env


def _secret_key(data_dir: Path) -> str:
    """A random SECRET_KEY kept in the data dir, so result links survive restarts of `up` (and the
    other process types find it: Settings.for_process)."""
    from searchjobs.embedded.base import write_private

    path = data_dir / SECRET_KEY_FILE
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def _empty_metrics_dir(metrics_dir: Path) -> None:
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):  # values of an earlier run's processes
        stale.unlink()


def _migrate(database_url: str) -> None:
    from searchjobs.db import schema

    click.echo("Migrating the database ...")
    schema.upgrade(database_url)


@contextlib.contextmanager
def _demo_load(database_url: str, demo_size: int, settings: Settings):
    """Yields the function that loads the demo catalog, if the catalog is empty (else None).
    The load is announced from the start of the block: a web started inside it shows the
    catalog loading, never an empty one."""
    from searchjobs.catalog import loading
    from searchjobs.catalog import store as catalog
    from searchjobs.db import engine as db

    engine = db.make_engine(database_url, pool_size=2)
    try:
        with engine.connect() as conn:
            empty = catalog.count(conn) == 0
        if not (empty and demo_size):
            yield None
            return

        def load(public_url: str) -> None:
            click.echo(f"Loading the demo catalog ({demo_size} generated items; label: Demo catalog); "
                       f"meanwhile {public_url} shows its progress ...")
            started = time.monotonic()
            load_demo_with_progress(engine, demo_size, configured_embedders(settings))
            click.echo(f"Demo catalog loaded in {time.monotonic() - started:.1f}s")

        with loading.announced(engine, demo_size):
            yield load
    finally:
        engine.dispose()


def _web_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "searchjobs", "web", "--host", host, "--port", str(port)]


def _worker_commands(worker_count: int) -> list[list[str]]:
    """The workers and the scheduler, each as `python -m searchjobs ...`."""
    exe = [sys.executable, "-m", "searchjobs"]
    return [exe + ["worker"] for _ in range(worker_count)] + [exe + ["scheduler"]]


def _announce(public_url: str, data_dir: Path, worker_count: int, children: list[subprocess.Popen]) -> None:
    click.echo("")
    click.echo(f"searchjobs is running at {public_url}")
    click.echo(f"  data:      {data_dir}")
    click.echo(f"  processes: web, {worker_count} worker(s), scheduler (pids "
               f"{', '.join(str(c.pid) for c in children)})")
    click.echo("Press Ctrl-C to stop.")


def _wait_until_serving(public_url: str, web: subprocess.Popen, timeout: float = WEB_START_TIMEOUT) -> None:
    """Until our web answers /healthz, so the URL we print is ours; a web that exits or never answers
    stops `up` with an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if web.poll() is not None:
            fail(f"the web process exited at start (code {web.returncode}); see its lines above", code=1)
        try:
            with urllib.request.urlopen(f"{public_url}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    fail(f"the web process did not answer at {public_url} within {timeout:.0f}s", code=1)


def _wait_for_children(children: list[subprocess.Popen]) -> subprocess.Popen | None:
    """Until Ctrl-C or SIGTERM (None), or until one of the processes exits (that one)."""
    stop = threading.Event()

    def requested(signum, frame) -> None:  # from now on a stop signal ends the wait, once
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, signal.SIG_IGN)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, requested)
    while not stop.wait(0.5):
        for child in children:
            if child.poll() is not None:
                click.echo(f"A process exited (pid {child.pid}, code {child.returncode}); stopping.", err=True)
                return child
    return None


def _stop_children(children: list[subprocess.Popen]) -> None:
    """SIGTERM to each, then wait; a process still running after CHILD_STOP_TIMEOUT is killed."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
