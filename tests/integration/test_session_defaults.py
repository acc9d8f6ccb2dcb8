"""Session settings live on the role (set by `searchjobs db upgrade`), so they hold through PgBouncer too."""

from __future__ import annotations

import sqlalchemy as sa

from tests import pgbouncer


def test_every_connection_has_the_statement_timeout_without_sending_it(runtime):
    for engine in (runtime.engine, runtime.db):
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "15s"
            server_port = conn.execute(sa.text("SELECT inet_server_port()")).scalar()
        # with SEARCHJOBS_TEST_PGBOUNCER=1 the connection really goes through PgBouncer
        assert (engine.url.port != server_port) == pgbouncer.wanted()
