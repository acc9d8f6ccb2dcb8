"""Alembic environment: the URL comes from `searchjobs db upgrade` (or DATABASE_URL)."""

from alembic import context
from sqlalchemy import create_engine, pool

from searchjobs.db.engine import normalise_url
from searchjobs.db.tables import metadata

config = context.config
target_metadata = metadata


def run_migrations_offline() -> None:
    context.configure(url=normalise_url(config.get_main_option("sqlalchemy.url")), target_metadata=metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(normalise_url(config.get_main_option("sqlalchemy.url")), poolclass=pool.NullPool)
    with engine.connect() as connection:
        # migrations may run longer than the role's statement_timeout (set by `db upgrade` for the app);
        # LOCAL: it ends with the one transaction below, so it cannot stay on a pooled server connection
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        # one migrator at a time: several `release` processes may start together
        connection.exec_driver_sql("SELECT pg_advisory_lock(727274)")
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        connection.exec_driver_sql("SELECT pg_advisory_unlock(727274)")
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
