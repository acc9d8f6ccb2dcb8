"""One source of SQL: every query lives in a `.sql` file beside the module that runs it.

Every named query is planned against the migrated database (EXPLAIN, each parameter a NULL), so a
query naming a missing table or column, or an ON CONFLICT target no unique index matches, fails
here rather than in production. And no SQL string is left in the Python code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sqlalchemy as sa

from searchjobs.db import sql

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "searchjobs"
SQL_FILES = sorted(PACKAGE.rglob("*.sql"))
QUERIES = [(path, name, text) for path in SQL_FILES for name, text in sql.parse(path.read_text(), path).items()]

# Where sa.text() may still appear: the loader itself, the migrations, and the schema mirror, whose
# text() holds DDL expressions (server defaults, index predicates), not statements.
TEXT_ALLOWED = {PACKAGE / "db" / "sql.py", PACKAGE / "db" / "tables.py"}
TEXT_ALLOWED_UNDER = PACKAGE / "migrations"
# Where a driver's execute() may take a string: the embedded server's bootstrap (the password, the
# database itself) runs on psycopg2 against the `postgres` database, below the tier of db.sql.
DRIVER_SQL_ALLOWED = {PACKAGE / "embedded" / "postgres.py"}
EXECUTE_METHODS = {"execute", "executemany", "exec_driver_sql", "mogrify"}


def statements(text: str) -> list[str]:
    """The statements of one query, split at semicolons outside quotes and $$ bodies."""
    parts, start, i, quote = [], 0, 0, None
    while i < len(text):
        if quote is not None:
            if text.startswith(quote, i):
                i, quote = i + len(quote), None
                continue
        elif text.startswith("$$", i):
            i, quote = i + 2, "$$"
            continue
        elif text[i] in "'\"":
            quote = text[i]
        elif text[i] == ";":
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def check(conn: sa.Connection, text: str) -> None:
    """Plan each statement with every parameter NULL (psycopg2 sends parameters as literals, so an
    untyped NULL stands for any of them). EXPLAIN does not run the statement; a SET has no plan, so
    it runs, inside the caller's transaction, which is rolled back."""
    for statement in statements(text):
        keyword = statement.split(None, 1)[0].upper()
        if keyword == "DO":
            # neither preparable nor explainable; engine.sql's session_defaults, the only one, runs
            # for real in every test session's `db upgrade` (tests/integration/test_session_defaults.py)
            continue
        clause = sa.text(statement if keyword == "SET" else "EXPLAIN " + statement)
        conn.execute(clause, {name: None for name in clause._bindparams})


def test_there_are_queries_to_check():
    assert {p.relative_to(PACKAGE).as_posix() for p in SQL_FILES} >= {
        "jobs/store.sql", "notifications/outbox.sql", "catalog/store.sql", "intake/store.sql", "clients.sql",
        "db/locks.sql", "db/engine.sql"}
    assert len(QUERIES) > 50


@pytest.mark.parametrize("path, name, text", QUERIES,
                         ids=[f"{p.relative_to(PACKAGE).as_posix()}:{n}" for p, n, _ in QUERIES])
def test_every_query_is_planned_against_the_migrated_schema(runtime, path, name, text):
    with runtime.engine.connect() as conn, conn.begin() as transaction:
        check(conn, text)
        transaction.rollback()


@pytest.mark.parametrize("broken", [
    "SELECT no_such_column FROM search_jobs WHERE job_id = :job_id",
    "UPDATE no_such_table SET x = 1",
    "INSERT INTO job_deletions (job_id, result_token_hash) VALUES (:j, :h) ON CONFLICT (result_token_hash) DO NOTHING",
    "SET LOCAL no_such_setting_without_a_dot = 1",
])
def test_the_check_catches_a_broken_query(runtime, broken):
    with runtime.engine.connect() as conn, conn.begin(), pytest.raises(sa.exc.ProgrammingError):
        check(conn, broken)


def test_every_query_in_a_file_is_run_by_its_module():
    """A query no code names is dead SQL; each module binds its queries at import (QUERIES["name"])."""
    for path in SQL_FILES:
        module = path.with_suffix(".py").read_text()
        unused = [name for name in sql.parse(path.read_text(), path) if f'QUERIES["{name}"]' not in module]
        assert unused == [], f"{path.relative_to(ROOT)}: no code runs {unused}"


def _root_name(node: ast.AST) -> str | None:
    """`sa` of `sa.sql.expression`."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_string(node: ast.AST) -> bool:
    """A literal string, an f-string, or strings glued together with + or %."""
    if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return True
    return isinstance(node, ast.BinOp) and (_is_string(node.left) or _is_string(node.right))


def _text_calls(path: Path, driver_sql: bool = True) -> list[int]:
    """Lines of `text(...)`, `sa.text(...)`, `sqlalchemy.text(...)` and `exec_driver_sql(...)` calls,
    of imports of sqlalchemy's text, and (driver_sql) of any `.execute(...)` given a string: a raw
    DB-API cursor's, or a connection's."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            if (driver_sql and isinstance(func, ast.Attribute) and func.attr in EXECUTE_METHODS
                    and node.args and _is_string(node.args[0])):
                found.append(node.lineno)
            elif (isinstance(func, ast.Name) and func.id == "text") or (
                isinstance(func, ast.Attribute) and (
                    func.attr == "exec_driver_sql"
                    or (func.attr == "text" and _root_name(func.value) in ("sa", "sqlalchemy")))
            ):
                found.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found.extend(node.lineno for alias in node.names if alias.name == "text")
    return sorted(found)


def test_no_sql_text_in_python_outside_the_sql_files():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in TEXT_ALLOWED and not path.is_relative_to(TEXT_ALLOWED_UNDER)
        for line in _text_calls(path, driver_sql=path not in DRIVER_SQL_ALLOWED)
    ]
    assert offenders == [], "SQL belongs in the .sql file beside its module (searchjobs/db/sql.py)"


def test_the_rule_finds_a_text_call(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import sqlalchemy as sa\nfrom sqlalchemy import text\nQ = sa.text('SELECT 1')\n"
                      "R = sa.sql.expression.text('SELECT 2')\n")
    assert _text_calls(module) == [2, 3, 4]


def test_the_rule_finds_sql_handed_to_a_driver(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f(conn, cur, table, q):\n"
                      "    cur.execute('SELECT 1')\n"
                      "    cur.execute(f'DELETE FROM {table}')\n"
                      "    conn.exec_driver_sql('SELECT ' + table)\n"
                      "    cur.executemany('INSERT INTO t VALUES (%s)', [])\n"
                      "    conn.execute(q)\n")  # a loaded query: fine
    assert _text_calls(module) == [2, 3, 4, 5]


# -- the loader -------------------------------------------------------------

def test_a_file_gives_its_queries_by_name_without_the_comments():
    queries = sql.parse("-- header\n\n-- name: one\n-- the first\nSELECT 1\n  -- inline note\n  FROM t;\n"
                        "-- name: two\nSELECT 2;\n")
    assert queries == {"one": "SELECT 1\n  FROM t", "two": "SELECT 2"}


@pytest.mark.parametrize("source, error", [
    ("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "a second query named 'a'"),
    ("SELECT 1;\n-- name: a\nSELECT 2;\n", "SQL before the first"),
    ("-- name: a\n-- nothing else\n", "query 'a' has no SQL"),
    ("-- name: Bad-Name\nSELECT 1;\n", "not a lower-case identifier"),
    ("-- name: a\nSELECT 1;\n-- name: b extra\nSELECT 2;\n", "is not a '-- name: <name>' line"),
    ("-- name: a\nSELECT 1;\n-- Name: b\nSELECT 2;\n", "is not a '-- name: <name>' line"),
])
def test_a_malformed_file_is_refused(source, error):
    with pytest.raises(ValueError, match=error):
        sql.parse(source)


def test_an_unknown_name_fails_with_the_file_named(tmp_path):
    module = tmp_path / "store.py"
    (tmp_path / "store.sql").write_text("-- name: known\nSELECT 1;\n")
    queries = sql.load(str(module))
    assert isinstance(queries["known"], sa.TextClause)
    with pytest.raises(KeyError, match=r"no query named 'unknown' in .*store\.sql"):
        queries["unknown"]


def test_the_settings_of_a_several_statement_query_end_with_its_message(runtime):
    """catalog/store.sql's nearest sets hnsw.ef_search for itself only: on the autocommit engine the
    settings and the SELECT are one implicit transaction, so the pooled session keeps its defaults."""
    from searchjobs.catalog import descriptor
    from searchjobs.catalog import store as catalog

    vector = "[" + ",".join(["0.1"] * descriptor.DESCRIPTOR_DIM) + "]"
    with runtime.db.connect() as conn:
        hits = catalog.nearest(conn, "dress", vector, 3, ef_search=123)
        after = conn.execute(sa.text("SELECT current_setting('hnsw.ef_search'), "
                                     "current_setting('hnsw.iterative_scan')")).one()
    assert len(hits) == 3
    assert tuple(after) == ("40", "off")  # pgvector's defaults
