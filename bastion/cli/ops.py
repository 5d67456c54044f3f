"""Operations commands: `bastion backup [verify] FILE`, `restore FILE`, `tenant export|import`,
`retention show|set|run` and `db health` (registered by bastion.cli.main). The work is
bastion.ops'; this module parses options and prints."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from bastion.errors import InvalidValue
from bastion.ops import backup as ops_backup
from bastion.ops import health as ops_health
from bastion.ops import moving, retention
from bastion.cli.common import SOURCE, JsonOpt, console, echo_json, fmt_time, parse_time, session
from bastion.cli.setup import db_app, tenant_app

# -- backup, restore, verify ----------------------------------------------------------------------


def backup(
    ctx: typer.Context,
    args: Annotated[list[str], typer.Argument(
        metavar="[verify] FILE", help="The backup file to write, or `verify FILE` to check one.")],
    portable: Annotated[bool, typer.Option(
        "--portable", help="Write the portable export of every tenant (restorable into either "
                           "engine) instead of the engine's native backup.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Back the whole database up to FILE, or verify a backup.

    FILE.manifest.json is written beside it (row counts and content digests per table). SQLite: the online backup API (writers go on); PostgreSQL:
    pg_dump's custom format. `bastion backup verify FILE` restores FILE into a scratch database
    and compares every table with what was backed up (a pg_dump archive needs --db on a
    PostgreSQL server, where the scratch database is made and dropped)."""
    if len(args) == 2 and args[0] == "verify":
        return _verify(ctx, args[1], as_json)
    if len(args) != 1:
        raise typer.BadParameter("give FILE, or `verify FILE`", param_hint="ARGS")
    store = session(ctx).ready_store()
    manifest = ops_backup.backup(store, args[0], portable_format=portable)
    if as_json:
        return echo_json(manifest.as_dict())
    rows = sum(d.rows for d in manifest.tables.values())
    console().print(Text("backed up", style="green") + Text(
        f" {store.database} to {args[0]} ({manifest.kind}, revision {manifest.revision}, "
        f"{len(manifest.tables)} tables, {rows:,} rows, {manifest.bytes:,} bytes)"), soft_wrap=True)


def _verify(ctx: typer.Context, path: str, as_json: bool) -> None:
    sess = session(ctx)
    kind = ops_backup.kind_of_file(Path(path))
    store = sess.store(create=False) if kind == "pg_custom" else None
    checked = ops_backup.verify(path, store=store)
    if as_json:
        echo_json(checked.as_dict())
    else:
        table = Table("Table", "Rows backed up", "Rows restored", "Same")
        for c in checked.checks:
            table.add_row(c.table, _n(c.expected), _n(c.found),
                          Text("yes", style="green") if c.ok else Text("NO", style="bold red"))
        console().print(table)
        if checked.sha256_ok is False:
            console().print(Text("the file's SHA-256 differs from its manifest", style="red"))
        if checked.integrity != "ok":
            console().print(Text(f"restore: {checked.integrity}", style="red"), soft_wrap=True)
        verdict = Text("verified", style="green") if checked.ok else Text("FAILED", style="bold red")
        console().print(verdict + Text(f" {path} ({checked.kind})"), soft_wrap=True)
    if not checked.ok:
        raise typer.Exit(1)


def _n(d) -> str:
    return "" if d is None else f"{d.rows:,}"


def restore(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="A file `bastion backup` wrote.")],
    replace: Annotated[bool, typer.Option(
        "--replace", help="Replace a database that holds tenants (everything in it).")] = False,
) -> None:
    """Restore a backup into the database (--db).

    A native backup replaces the database whole
    and needs the same engine; a portable one adds its tenants to an initialized database of
    either engine. PostgreSQL: run it as the owner of the tables."""
    sess = session(ctx)
    store = sess.store()
    done = ops_backup.restore(store, path, replace=replace)
    what = f"tenants {', '.join(done.tenants)}" if done.tenants else "the database"
    console().print(Text("restored", style="green") + Text(
        f" {what} from {path} ({done.kind}, schema revision {done.revision})"), soft_wrap=True)


# -- tenant export / import -----------------------------------------------------------------------


@tenant_app.command("export")
def tenant_export(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="TENANT", help="The tenant to export.")],
    path: Annotated[str, typer.Argument(metavar="FILE", help="Where to write (gzip when it ends in .gz).")],
    shared: Annotated[bool, typer.Option(
        "--shared/--no-shared", help="Include the ATT&CK catalogs (shared reference data) the "
                                     "coverage history was measured on.")] = True,
) -> None:
    """Export one tenant to FILE, for another database or engine.

    Bastion's portable format (JSON lines, versioned) keeps entities,
    relationships, every event with its sequence number, import runs, coverage history,
    settings. `bastion tenant import` reads it into either engine."""
    done = moving.export_tenant(session(ctx).ready_store(), name, path, shared=shared)
    tables = done.tables[done.tenants[0]]
    console().print(Text("exported", style="green") + Text(
        f" tenant {done.tenants[0]} to {path} ({sum(d.rows for d in tables.values()):,} rows, "
        f"{tables['event'].rows:,} events)"), soft_wrap=True)


@tenant_app.command("import")
def tenant_import(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="A file `bastion tenant export` wrote.")],
    rename: Annotated[Optional[str], typer.Option(
        "--as", metavar="NAME", help="The tenant's name here (default: the exported name).")] = None,
) -> None:
    """Import a tenant that `bastion tenant export` wrote (from either engine).

    The tenant is
    created (an existing one must be empty); its events keep their sequence numbers and the
    next change continues after them. PostgreSQL: creating the tenant needs the owner login."""
    done = moving.import_tenant(session(ctx).ready_store(), path, rename=rename)
    for name, events in done.tenants.items():
        console().print(Text("imported", style="green") + Text(
            f" tenant {name} from {path} ({events:,} events)"), soft_wrap=True)


# -- retention ------------------------------------------------------------------------------------

retention_app = typer.Typer(
    help="Time to live for what scanners found and no scan has seen since (per tenant).",
    no_args_is_help=True)


@retention_app.command("show")
def retention_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The tenant's retention policy."""
    days = retention.policy(session(ctx).tenant())
    if as_json:
        return echo_json({"days": days})
    console().print("no retention: everything is kept" if days is None else
                    f"retention: {days} days (assets, ports and risks scanners found)")


@retention_app.command("set")
def retention_set(
    ctx: typer.Context,
    days: Annotated[Optional[int], typer.Option("--days", help="Days without a sighting after "
                                                               "which scanner finds go.")] = None,
    off: Annotated[bool, typer.Option("--off", help="Remove the policy: keep everything.")] = False,
) -> None:
    """Set the tenant's retention (a `setting.changed` event)."""
    if (days is None) == (not off):
        raise InvalidValue("give --days N or --off")
    sess = session(ctx)
    changed = retention.set_policy(sess.tenant(), None if off else days, actor=sess.actor,
                                   source=SOURCE)
    state = "off" if off else f"{days} days"
    console().print(f"retention {state}" + ("" if changed else " (unchanged)"))


@retention_app.command("run")
def retention_run(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; change nothing.")] = False,
    days: Annotated[Optional[int], typer.Option("--days", help="Days for this run instead of "
                                                               "the policy's.")] = None,
    now: Annotated[Optional[str], typer.Option(
        "--now", metavar="TIME", help="The instant to measure from (default: now).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete what scanners found and no scan has seen for the policy's days.

    Assets, ports and risks go, each with a `deleted` event (source `retention`). Never seeds, anything a person
    created or decided (a status, an exposure …), or anything a kept entity depends on."""
    sess = session(ctx)
    at = parse_time(now, "--now") if now else None
    report = retention.run(sess.tenant(), actor=sess.actor, days=days, now=at, dry_run=dry_run)
    if as_json:
        return echo_json(report.as_dict())
    s = report.selection
    table = Table("Key", "Kind", "Last seen")
    for c in s.expired:
        table.add_row(c.key, c.kind, fmt_time(c.last_seen))
    if s.expired:
        console().print(table)
    verb = "would delete" if dry_run else "deleted"
    extra = f" (and {len(s.cascaded)} dependents)" if s.cascaded else ""
    console().print(f"{verb} {len(s.expired)} entities not seen since {fmt_time(report.cutoff)}"
                    f"{extra}; kept {len(s.decided)} a person decided, {len(s.not_scanned)} no "
                    f"scanner made, {len(s.depended_on)} something kept depends on", soft_wrap=True)


# -- health ---------------------------------------------------------------------------------------


@db_app.command("health")
def db_health(
    ctx: typer.Context,
    long_after: Annotated[int, typer.Option(
        "--long-after", metavar="SECONDS", help="List transactions open longer (PostgreSQL).")] = 300,
    quick: Annotated[bool, typer.Option("--quick", help="SQLite: quick_check instead of the "
                                                        "full integrity check.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The database's health; exits 1 when something needs a look.

    PostgreSQL: cache hit ratio, table and index sizes, dead rows,
    scans per index (unused ones show 0), long transactions. SQLite: integrity check, pages,
    free pages, WAL size, pages per table and index."""
    h = ops_health.health(session(ctx).store(create=False), long_after=timedelta(seconds=long_after),
                          quick=quick)
    if as_json:
        echo_json({**dataclasses.asdict(h), "ok": h.ok})
    else:
        _print_health(h)
    if not h.ok:
        raise typer.Exit(1)


def _print_health(h) -> None:
    out = console()
    if h.engine == "postgresql":
        ratio = "n/a" if h.cache_hit_ratio is None else f"{h.cache_hit_ratio:.2%}"
        out.print(f"database size {h.database_bytes:,} bytes; cache hit ratio {ratio}; "
                  f"{len(h.long_transactions)} long transactions")
        table = Table("Table", "Bytes", "Index bytes", "Live rows", "Dead rows", "Seq scans",
                      "Index scans", "Last vacuum")
        for t in h.tables:
            table.add_row(t.name, f"{t.bytes:,}", f"{t.index_bytes:,}", f"{t.live_rows:,}",
                          f"{t.dead_rows:,}", f"{t.seq_scans or 0:,}", f"{t.index_scans or 0:,}",
                          fmt_time(t.last_vacuum))
    else:
        out.print(f"integrity {h.integrity}; {h.page_count:,} pages of {h.page_size:,} bytes, "
                  f"{h.freelist_count:,} free; journal {h.journal_mode}; WAL {h.wal_bytes:,} bytes")
        table = Table("Table", "Bytes")
        for t in h.tables:
            table.add_row(t.name, f"{t.bytes:,}")
    out.print(table)
    indexes = Table("Table", "Index", "Bytes", "Scans")
    for i in h.indexes:
        indexes.add_row(i.table, i.name, f"{i.bytes:,}", "" if i.scans is None else f"{i.scans:,}")
    out.print(indexes)
    for p in h.problems:
        out.print(Text(p, style="yellow"), soft_wrap=True)
    out.print(Text("healthy", style="green") if h.ok else Text("needs a look", style="bold yellow"))


def register(root: typer.Typer) -> None:
    root.command(rich_help_panel="Operations")(backup)
    root.command(rich_help_panel="Operations")(restore)
    root.add_typer(retention_app, name="retention", rich_help_panel="Operations")
