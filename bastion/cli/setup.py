"""Set-up commands: `bastion init`, `demo`, `db upgrade|downgrade|grants|current`, `tenant add|list`
and `schema docs` (registered by bastion.cli.main). The work is the library's (bastion.setup,
bastion.store.migrate, bastion.store.access); this module parses options and prints."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from bastion.errors import LossyDowngrade
from bastion.setup import initialize
from bastion.store import export, filters, migrate
from bastion.store.store import DEFAULT_TENANT
from bastion.cli.common import (FormatOpt, JsonOpt, console, emit, fmt_time, list_format,
                                rows_where_option, session)

# -- init and migrations ------------------------------------------------------------------------


def init(ctx: typer.Context) -> None:
    """Create or upgrade the database schema and the `default` tenant. Safe to run again.

    PostgreSQL: run it as the owner of the tables (not the application login); it also
    re-applies the application role's grants and policies (`bastion db grants`)."""
    sess = session(ctx)
    store = sess.store()
    done = initialize(store, actor=sess.actor)
    out = console()
    where = store.database if store.dialect == "sqlite" else sess.display_url
    out.print(f"database: {where}", soft_wrap=True)
    out.print(f"schema:   revision {done.revision} ({done.state})", soft_wrap=True)
    out.print(f"tenant:   {DEFAULT_TENANT} ready", soft_wrap=True)
    _print_catalog(done)


def _print_catalog(done) -> None:
    """Works offline from the start: say when the default ATT&CK catalog was loaded."""
    from bastion.coverage import ATTRIBUTION

    if done.catalog is not None:
        console().print(f"ATT&CK Enterprise {done.catalog.version} loaded ({done.catalog.source}) "
                        f"— {ATTRIBUTION}", soft_wrap=True)


db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the schema to REVISION (default: the newest). PostgreSQL: run it as the owner
    of the tables."""
    store = session(ctx).store()
    store.require_owner("bastion db upgrade")
    store.upgrade(revision)
    _print_revision(store)


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, or -N for N steps back; "
                                                 "`base` removes everything.")] = "-1",
    force: Annotated[bool, typer.Option(
        "--force", help="Downgrade even when it destroys data (what it removes from the graph is "
                        "recorded as events). Without it such a downgrade is refused and lists "
                        "what would be lost.")] = False,
) -> None:
    """Downgrade the schema to REVISION (default: one step back). A downgrade that would destroy
    data is refused, listing per revision what would be lost, unless --force."""
    sess = session(ctx)
    store = sess.store()
    try:
        lost = store.downgrade(revision, force=force, actor=sess.actor)
    except LossyDowngrade as exc:
        _print_losses("would be lost", exc.losses)
        raise
    if lost:
        _print_losses("removed", lost)
    _print_revision(store)


def _print_losses(title: str, losses) -> None:
    out = console()
    for rev in dict.fromkeys(loss.revision for loss in losses):
        out.print(f"undoing revision {rev}, {title}:", soft_wrap=True)
        for loss in losses:
            if loss.revision == rev:
                out.print(Text(f"  {loss}"), soft_wrap=True)


@db_app.command("grants")
def db_grants(ctx: typer.Context) -> None:
    """PostgreSQL: create the application role `bastion_app` if missing and re-apply its grants,
    the row-level security policies and the tenant functions (idempotent). Run it as the owner
    of the tables, e.g. after `pg_restore -O -x`, which restores neither. See docs/security.md."""
    store = session(ctx).store(create=False)
    applied = store.apply_grants()
    out = console()
    if applied is None:
        out.print("SQLite has no roles: nothing to grant (see docs/security.md)", soft_wrap=True)
        return
    out.print(f"role bastion_app: grants, policies and functions applied to "
              f"{applied.tenant_tables} tenant tables and {applied.shared_tables} shared "
              f"tables (owner: {applied.owner})", soft_wrap=True)


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the schema revision of the database and whether it is the newest (creates
    nothing: a SQLite file that is not there is said to be missing)."""
    _print_revision(session(ctx).store(create=False))


def _print_revision(store) -> None:
    current, head = store.revision(), migrate.head()
    if current is None:
        line = "revision: none (empty database: run `bastion init`)"
    elif current == head:
        line = f"revision: {current} (head)"
    else:
        line = f"revision: {current} (not head; head is {head}: run `bastion db upgrade`)"
    console().print(line, soft_wrap=True)


# -- tenants ------------------------------------------------------------------------------------

tenant_app = typer.Typer(help="Tenants: separate, isolated data sets in one database.",
                         no_args_is_help=True)


@tenant_app.command("add")
def tenant_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Short name: letters, digits, '-' or '_'.")],
    display_name: Annotated[Optional[str], typer.Option(help="Human-readable name.")] = None,
) -> None:
    """Create a tenant."""
    t = session(ctx).ready_store().add_tenant(name, display_name)
    console().print(Text("created", style="green") + Text(f" tenant {t.name}"), soft_wrap=True)


TenantsWhere = rows_where_option(export.TENANTS)


@tenant_app.command("list")
def tenant_list(
    ctx: typer.Context,
    where: TenantsWhere = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """List the tenants."""
    fmt = list_format(fmt, as_json)
    flt = filters.parse_rows(export.TENANTS, where)
    tenants = session(ctx).ready_store().tenants()
    rows = flt.select({"name": t.name, "display_name": t.display_name, "created_at": t.created_at}
                      for t in tenants)

    def table(rows):
        table = Table("Name", "Display name", "Created")
        for t in rows:
            table.add_row(t["name"], t["display_name"] or "", fmt_time(t["created_at"]))
        console().print(table)

    emit(fmt, rows, export.TENANTS.columns, table=table)


# -- schema -------------------------------------------------------------------------------------

schema_app = typer.Typer(help="The declared schema (bastion/schema/kinds.py).",
                         no_args_is_help=True)


@schema_app.command("docs")
def schema_docs() -> None:
    """Print the schema reference (docs/schema.md) generated from the declarations."""
    from bastion.schema.docs import render_markdown

    sys.stdout.write(render_markdown())


# -- demo ---------------------------------------------------------------------------------------


def demo(ctx: typer.Context) -> None:
    """Load a small sample attack surface (acme.example) and show what Bastion records.

    Initializes the database if needed. Safe to run again: a second run changes nothing.
    """
    from bastion import demo as sample
    from bastion.cli.demo_view import render

    sess = session(ctx)
    store = sess.store()
    _print_catalog(initialize(store, actor=sess.actor, tenants=(DEFAULT_TENANT, sess.tenant_name),
                              command="bastion demo"))
    tenant = store.tenant(sess.tenant_name)
    report = sample.run(tenant, actor=sess.actor)
    render(report, sess)
    _serve_hint(store, tenant, sess)


DEMO_KEY = "demo-admin"


def _serve_hint(store, tenant, sess) -> None:
    """How to serve the demo data, with an admin key kept in $BASTION_HOME/demo-admin.key (mode
    600): made on the first run, reused while it works, replaced when it no longer does."""
    from bastion.store.engine import bastion_home
    from bastion.store.keys import Unauthenticated

    path = bastion_home() / "demo-admin.key"
    token = path.read_text().strip() if path.exists() else ""
    try:
        if not token or store.authenticator().authenticate(token).tenant_id != tenant.tenant_id:
            raise Unauthenticated("no usable demo key")
    except Unauthenticated:
        if any(k.name == DEMO_KEY and k.state == "active" for k in tenant.keys.list()):
            tenant.keys.revoke(DEMO_KEY, actor=sess.actor, source="cli")
        token = tenant.keys.create(DEMO_KEY, "admin", actor=sess.actor, source="cli")[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(token + "\n")
    out = console()
    import os

    home = os.environ.get("BASTION_HOME")
    env = f"BASTION_HOME={home} " if home and not sess.url else ""
    db = f" --db '{sess.display_url}'" if sess.url else ""
    out.print(Text("Serve it", style="bold"))
    out.print(f"  {env}.venv/bin/bastion{db} serve --port 8080      # the HTTP API; docs at http://127.0.0.1:8080/docs",
              soft_wrap=True, highlight=False)
    out.print(f"  an admin key for tenant {sess.tenant_name} is in {path}:", soft_wrap=True)
    out.print(f"  curl -H \"Authorization: Bearer $(cat {path})\" "
              "'http://127.0.0.1:8080/v1/risks?limit=5'", soft_wrap=True, highlight=False)


def register(root: typer.Typer) -> None:
    root.command(rich_help_panel="Set up")(init)
    root.command(rich_help_panel="Set up")(demo)
    root.add_typer(db_app, name="db", rich_help_panel="Set up")
    root.add_typer(tenant_app, name="tenant", rich_help_panel="Set up")
    root.add_typer(schema_app, name="schema", rich_help_panel="Set up")
