"""Named SQL queries, kept in a `.sql` file beside the one module that runs them.

A file holds queries, each opened by a `-- name: <name>` line and documented by the
comment lines under it:

    -- name: claim
    -- Claim a pending job for one attempt; the claimant's token fences its writes.
    WITH j AS (...) ...;

A query runs to the next `-- name:` line. Whole-line `--` comments are documentation for
the reader and are not sent to Postgres (nor scanned for `:name` parameters); a trailing
semicolon is dropped. A query may hold several statements (a `SET LOCAL` before the one it
applies to): they are sent as one message, one round trip.

The module loads its file once, at import, and binds each query it runs to a name there
(`_CLAIM = QUERIES["claim"]`), so a misspelt name fails at import, not at run time.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

_NAME_LINE = re.compile(r"--\s*name:\s*(?P<name>\S+)\s*$")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# a comment that looks like a header ("-- Name: x", "-- name: x y"): refused, or the query under it
# would silently run on as part of the one above
_HEADER_LIKE = re.compile(r"--\s*name\s*:", re.IGNORECASE)


class Queries(dict[str, sa.TextClause]):
    """The queries of one file, by name."""

    def __init__(self, path: Path, queries: dict[str, sa.TextClause]):
        super().__init__(queries)
        self.path = path

    def __missing__(self, name: str):
        raise KeyError(f"no query named {name!r} in {self.path}")


def parse(source: str, path: Path | str = "<string>") -> dict[str, str]:
    """{name: SQL} of a file's text, in file order, documentation comments removed."""
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        header = _NAME_LINE.match(line.strip())
        if header:
            name = header["name"]
            if not _NAME.fullmatch(name):
                raise ValueError(f"{path}:{number}: query name {name!r} is not a lower-case identifier")
            if name in queries:
                raise ValueError(f"{path}:{number}: a second query named {name!r}")
            current = queries[name] = []
        elif _HEADER_LIKE.match(line.strip()):
            raise ValueError(f"{path}:{number}: {line.strip()!r} is not a '-- name: <name>' line")
        elif line.strip().startswith("--") or not line.strip():
            continue
        elif current is None:
            raise ValueError(f"{path}:{number}: SQL before the first '-- name:' line")
        else:
            current.append(line.rstrip())
    texts = {}
    for name, lines in queries.items():
        text = "\n".join(lines).strip().removesuffix(";").rstrip()
        if not text:
            raise ValueError(f"{path}: query {name!r} has no SQL")
        texts[name] = text
    return texts


def load(module_file: str) -> Queries:
    """The queries of the `.sql` file beside `module_file` (pass `__file__`)."""
    path = Path(module_file).with_suffix(".sql")
    return Queries(path, {name: sa.text(text) for name, text in parse(path.read_text(), path).items()})
