"""`searchjobs keys`: API keys."""

from __future__ import annotations

import click

from searchjobs.cli.common import fail, open_runtime, table, to_json, when


@click.group()
def keys() -> None:
    """API keys (shown once at creation; only a hash is stored)."""


@keys.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An admin key sees and changes every job.")
def keys_create(name: str, admin: bool) -> None:
    """Create a key for client NAME and print it once."""
    from searchjobs import clients

    runtime = open_runtime()
    if not name.strip() or len(name) > 100:
        fail("NAME must be 1-100 characters")
    with runtime.engine.begin() as conn:
        row, key = clients.create(conn, name.strip(), is_admin=admin)
    click.echo(key)
    click.echo(f"created {'admin ' if admin else ''}key {row['key_prefix']} for {row['name']!r}; "
               "it is shown only now", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    """List clients and their keys' prefixes."""
    from searchjobs import clients

    runtime = open_runtime()
    with runtime.engine.connect() as conn:
        rows = clients.list_all(conn)
    if as_json:
        click.echo(to_json([{k: v for k, v in r.items()} for r in rows]))
        return
    table(["prefix", "name", "admin", "created", "last used", "revoked"],
          [[r["key_prefix"], r["name"], "yes" if r["is_admin"] else "", when(r["created_at"]),
            when(r["last_used_at"]), when(r["revoked_at"])] for r in rows])


@keys.command("revoke")
@click.argument("prefix_or_name")
def keys_revoke(prefix_or_name: str) -> None:
    """Revoke a key by its prefix (sjk_...) or its client's name."""
    from searchjobs import clients

    runtime = open_runtime()
    with runtime.engine.begin() as conn:
        row = clients.revoke(conn, prefix_or_name)
    if row is None:
        fail(f"no active key matches {prefix_or_name!r}", code=1)
    click.echo(f"revoked {row['key_prefix']} ({row['name']})")
