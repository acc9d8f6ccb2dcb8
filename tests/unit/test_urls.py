"""Server URLs: Postgres with several hosts (libpq failover), Redis plain, TLS or through Sentinel."""

from __future__ import annotations

import pytest

from searchjobs.db.engine import make_engine, normalise_url
from searchjobs.errors import ConfigError


def _connect_args(url: str) -> dict:
    engine = make_engine(url)
    try:
        return engine.dialect.create_connect_args(engine.url)[1]
    finally:
        engine.dispose()


def test_one_host_urls_are_unchanged_but_for_the_driver():
    assert normalise_url("postgres://u:p@db:5432/app") == "postgresql+psycopg2://u:p@db:5432/app"
    assert normalise_url("postgresql://u@db/app?sslmode=require") == "postgresql+psycopg2://u@db/app?sslmode=require"


def test_several_hosts_reach_libpq_as_its_host_and_port_lists():
    args = _connect_args("postgresql://u:p%40ss@h1:5432,h2:5433/app?target_session_attrs=read-write")
    assert args["host"] == "h1,h2" and args["port"] == "5432,5433"
    assert args["target_session_attrs"] == "read-write"
    assert args["user"] == "u" and args["password"] == "p@ss" and args["dbname"] == "app"


def test_the_query_form_of_several_hosts_works_too():
    args = _connect_args("postgresql://u@/app?host=h1:5432&host=h2:5433&target_session_attrs=read-write")
    assert args["host"] == "h1,h2" and args["port"] == "5432,5433"


def test_the_autocommit_engine_keeps_every_host():
    from searchjobs.db.engine import autocommit

    engine = make_engine("postgresql://u@h1:5432,h2:5433/app?target_session_attrs=read-write")
    other = autocommit(engine)
    try:
        args = other.dialect.create_connect_args(other.url)[1]
        assert args["host"] == "h1,h2" and args["port"] == "5432,5433"
    finally:
        engine.dispose()
        other.dispose()


def test_every_connection_has_keepalives_and_a_user_timeout_and_no_startup_options(monkeypatch):
    engine = make_engine("postgresql://u@h1:5432,h2:5433/app")
    seen = {}

    def connect(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("no server in a unit test")
    monkeypatch.setattr(engine.dialect.loaded_dbapi, "connect", connect)
    with pytest.raises(RuntimeError):
        engine.connect()
    engine.dispose()
    assert seen["keepalives"] == 1 and seen["keepalives_idle"] <= 10 and seen["tcp_user_timeout"] <= 15000
    assert "options" not in seen  # PgBouncer (transaction pooling) refuses unknown startup parameters
    assert seen["host"] == "h1,h2"


def test_sentinel_urls_name_the_sentinels_the_service_and_the_database():
    from searchjobs.queue import SENTINEL_PORT, is_sentinel_url, parse_sentinel_url

    target = parse_sentinel_url("redis+sentinel://:s%40cret@s1:26380,s2,10.0.0.3:5000/mymaster/2")
    assert target.sentinels == (("s1", 26380), ("s2", SENTINEL_PORT), ("10.0.0.3", 5000))
    assert (target.service, target.db, target.password, target.username) == ("mymaster", 2, "s@cret", None)
    assert parse_sentinel_url("valkey+sentinel://u:p@s1/svc").db == 0
    assert is_sentinel_url("redis+sentinel://s1/svc") and not is_sentinel_url("rediss://h:6380/0")
    for bad in ("redis+sentinel://s1", "redis+sentinel://s1/a/1/x", "redis://h/0"):
        with pytest.raises(ConfigError):
            parse_sentinel_url(bad)


def test_connect_builds_a_sentinel_managed_client_with_keepalives():
    from redis.sentinel import SentinelConnectionPool

    from searchjobs.queue import connect

    client = connect("redis+sentinel://:pw@s1:26379,s2:26379/mymaster/3", socket_timeout=None)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "pw"
    assert pool.connection_kwargs["socket_keepalive"] and pool.connection_kwargs["socket_timeout"] is None
    plain = connect("redis://127.0.0.1:6379/0")
    assert plain.connection_pool.connection_kwargs["socket_keepalive_options"]
    client.close()
    plain.close()


def test_sentinel_urls_with_ipv6_hosts():
    from searchjobs.queue import parse_sentinel_url

    parsed = parse_sentinel_url("redis+sentinel://[::1]:26380,[fe80::2],h3/svc/2")
    assert parsed.sentinels == (("::1", 26380), ("fe80::2", 26379), ("h3", 26379))
    with pytest.raises(ConfigError):
        parse_sentinel_url("redis+sentinel://h:99999/svc")


def test_a_lookup_with_every_sentinel_down_fails_at_once():
    import time

    import redis

    from searchjobs.embedded import free_port
    from searchjobs.queue import connect

    ports = [free_port() for _ in range(3)]  # nothing listens: each refuses at once
    client = connect("redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in ports) + "/searchjobs")
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError):  # MasterNotFoundError
        client.ping()
    assert time.monotonic() - started < 2.0  # no retries with backoff per sentinel


def test_ipv6_hosts_in_a_several_host_database_url_are_refused_clearly():
    with pytest.raises(ConfigError):
        normalise_url("postgresql://u:p@[::1]:5432,[::2]:5433/app")
