"""The `bastion` command: a thin layer over the library (bastion.store), no SQL.

User mistakes (any BastionError, bad options, an unreachable or uninitialized database) print one
red `error: …` line on stderr and exit with the error's exit code; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import DatabaseError, OperationalError, ProgrammingError
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperGroup

from bastion.errors import BastionError, ConfigError, InvalidValue, NotFound, ValidationFailed
from bastion.schema.batch import Batch, Relationship
from bastion.schema.keys import parse_key
from bastion.schema.kinds import REGISTRY
from bastion.store import access, migrate
from bastion.store.store import DEFAULT_TENANT
from bastion.cli import add as add_cmd
from bastion.cli import update as update_cmd
from bastion.cli import changes as changes_cmd
from bastion.cli import attack as attack_cmd
from bastion.cli import coverage as coverage_cmd
from bastion.cli import detections as detections_cmd
from bastion.cli import enrich as enrich_cmd
from bastion.cli import graph as graph_cmd
from bastion.cli import ingest as ingest_cmd
from bastion.cli import read as read_cmd
from bastion.cli.common import (
    SOURCE,
    Session,
    console,
    default_actor,
    echo_json,
    fmt_time,
    parse_pairs,
    print_error,
    session,
)


class BastionGroup(TyperGroup):
    """The root group: turns user mistakes into one `error: …` line and an exit code."""

    ORDER = ("init", "demo", "tenant", "db", "schema", "add", "import", "imports", "risk", "enrich",
             "link", "unlink", "update", "delete", "changes", "get", "list", "history", "stats",
             "graph", "attack", "account", "detections", "map", "coverage")

    def list_commands(self, ctx) -> list[str]:
        # Help lists commands in workflow order (Typer would put sub-groups such as `add` last).
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (OperationalError, ProgrammingError, DatabaseError) as exc:
            sess = ctx.obj if isinstance(ctx.obj, Session) else Session(None)
            error = _database_error(exc, sess.display_url)
            if error is exc:  # not the user's doing: keep the traceback
                raise
            raise error from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:  # a caller that handles errors itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
                sys.exit(exc.exit_code)
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
            print_error(exc.format_message() + where)
            sys.exit(exc.exit_code)
        except ClickException as exc:
            print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except ValidationFailed as exc:
            print_error("\n".join(_problem_line(p) for p in exc.problems))
            sys.exit(exc.exit_code)
        except BastionError as exc:
            print_error(str(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _problem_line(p) -> str:
    # A one-item batch from `bastion add` reports its problems at "item": name the field alone.
    if p.where == "item" and p.field:
        return f"{p.field}: {p.reason}"
    return str(p)


def _database_error(exc: Exception, url: str) -> Exception:
    """The user-facing error for a database that cannot be used, or the original if a bug."""
    orig = getattr(exc, "orig", None)
    text = str(orig or exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    undefined_table = (getattr(orig, "sqlstate", None) == "42P01"  # PostgreSQL undefined_table
                       or reason.startswith("no such table"))  # SQLite
    if undefined_table:
        return ConfigError(f"database {url} is not initialized: run `bastion init` first")
    if getattr(orig, "sqlstate", None) == "42501":  # PostgreSQL insufficient_privilege
        return ConfigError(f"database {url}: {reason} (tenant administration, `init` and "
                           "migrations need the owner login; after a restore without grants run "
                           "`bastion db grants` as the owner)")
    # A bare DatabaseError is SQLite's "file is not a database" (a subclass would be a bug).
    if isinstance(exc, OperationalError) or type(exc) is DatabaseError:
        return ConfigError(f"cannot open database {url}: {reason}")
    return exc


app = typer.Typer(
    cls=BastionGroup,
    name="bastion",
    help="Bastion: attack-surface and detection-coverage data platform.\n\n"
         "Start with `bastion init` (or `bastion demo` for a sample attack surface).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option(
        "--db", metavar="URL",
        help="Database URL (sqlite:///path or postgresql://…). Default: $BASTION_DATABASE_URL, "
             "else $BASTION_HOME/bastion.db (BASTION_HOME defaults to ~/.bastion).")] = None,
    tenant: Annotated[str, typer.Option(
        "--tenant", metavar="NAME", envvar="BASTION_TENANT",
        help="Tenant to read and write.")] = DEFAULT_TENANT,
    actor: Annotated[Optional[str], typer.Option(
        "--actor", metavar="NAME", envvar="BASTION_ACTOR",
        help="Who is making changes, recorded in every event. Default: the OS user.")] = None,
) -> None:
    sess = Session(db, (tenant or DEFAULT_TENANT).strip().lower(), actor or default_actor())
    ctx.obj = sess
    ctx.call_on_close(sess.close)


# -- init and migrations ------------------------------------------------------------------------


@app.command(rich_help_panel="Set up")
def init(ctx: typer.Context) -> None:
    """Create or upgrade the database schema and the `default` tenant. Safe to run again.

    PostgreSQL: run it as the owner of the tables (not the application login); it also
    re-applies the application role's grants and policies (`bastion db grants`)."""
    sess = session(ctx)
    store = sess.store()
    access.require_owner(store.engine, "bastion init")
    before = migrate.current(store.engine)
    migrate.upgrade(store.engine, "head")
    access.apply_grants(store.engine, "bastion init")
    store.ensure_tenant(DEFAULT_TENANT)
    head = migrate.head()
    out = console()
    where = store.engine.url.database if store.dialect == "sqlite" else sess.display_url
    out.print(f"database: {where}", soft_wrap=True)
    state = "created" if before is None else ("already up to date" if before == head
                                              else f"upgraded from {before}")
    out.print(f"schema:   revision {head} ({state})", soft_wrap=True)
    out.print(f"tenant:   {DEFAULT_TENANT} ready", soft_wrap=True)
    _default_attack_catalog(store, sess.actor)


def _default_attack_catalog(store, actor: str) -> None:
    """Works offline from the start: the default ATT&CK Enterprise catalog (from a dependency)
    when no Enterprise release is stored yet."""
    from bastion.coverage import ATTRIBUTION
    from bastion.coverage.attack import ensure_default_catalog

    loaded = ensure_default_catalog(store, actor=actor)
    if loaded is not None:
        console().print(f"ATT&CK Enterprise {loaded.version} loaded ({loaded.source}) — {ATTRIBUTION}",
                        soft_wrap=True)


db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db", rich_help_panel="Set up")


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the schema to REVISION (default: the newest). PostgreSQL: run it as the owner
    of the tables."""
    store = session(ctx).store()
    access.require_owner(store.engine, "bastion db upgrade")
    migrate.upgrade(store.engine, revision)
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
    from bastion.errors import LossyDowngrade

    sess = session(ctx)
    store = sess.store()
    try:
        lost = migrate.downgrade(store.engine, revision, force=force, actor=sess.actor)
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
    applied = access.apply_grants(store.engine)
    out = console()
    if applied is None:
        out.print("SQLite has no roles: nothing to grant (see docs/security.md)", soft_wrap=True)
        return
    out.print(f"role bastion_app: grants, policies and functions applied to "
              f"{applied.tenant_tables} tenant tables and {applied.shared_tables} shared "
              f"tables (owner: {applied.owner})", soft_wrap=True)


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the schema revision of the database and whether it is the newest."""
    _print_revision(session(ctx).store())


def _print_revision(store) -> None:
    current, head = migrate.current(store.engine), migrate.head()
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
app.add_typer(tenant_app, name="tenant", rich_help_panel="Set up")


@tenant_app.command("add")
def tenant_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Short name: letters, digits, '-' or '_'.")],
    display_name: Annotated[Optional[str], typer.Option(help="Human-readable name.")] = None,
) -> None:
    """Create a tenant."""
    t = session(ctx).ready_store().add_tenant(name, display_name)
    console().print(Text("created", style="green") + Text(f" tenant {t.name}"), soft_wrap=True)


@tenant_app.command("list")
def tenant_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the tenants."""
    tenants = session(ctx).ready_store().tenants()
    if as_json:
        echo_json([{"name": t.name, "display_name": t.display_name, "created_at": t.created_at}
                   for t in tenants])
        return
    table = Table("Name", "Display name", "Created")
    for t in tenants:
        table.add_row(t.name, t.display_name or "", fmt_time(t.created_at))
    console().print(table)


# -- writes -------------------------------------------------------------------------------------

app.add_typer(add_cmd.app, name="add", rich_help_panel="Write")
graph_cmd.register(app)  # `bastion graph` (Read)
ingest_cmd.register(app)  # `bastion import`, `imports`, `risk`
enrich_cmd.register(app)  # `bastion enrich kev|epss`
attack_cmd.register(app)  # `bastion attack …` (Coverage)
detections_cmd.register(app)  # `bastion account|detections|map …` (Coverage)
coverage_cmd.register(app)  # `bastion coverage …` (Coverage)
read_cmd.register(app)  # `bastion get|list|history|stats` (Read)
update_cmd.register(app)  # `bastion update KIND --where … --set …` (Write)
changes_cmd.register(app)  # `bastion changes` (Read)


def _relationship(name: str) -> str:
    rel = name.strip().upper()
    if rel not in REGISTRY.relationships:
        raise InvalidValue(f"unknown relationship {name!r}; relationships: "
                           + ", ".join(REGISTRY.relationships))
    return rel


_REL_HELP = "Relationship kind: " + ", ".join(REGISTRY.relationships) + "."


@app.command(rich_help_panel="Write")
def link(
    ctx: typer.Context,
    relationship: Annotated[str, typer.Argument(metavar="REL", help=_REL_HELP)],
    source: Annotated[str, typer.Argument(metavar="SOURCE_KEY", help="Key of the source.")],
    target: Annotated[str, typer.Argument(metavar="TARGET_KEY", help="Key of the target.")],
    prop: Annotated[Optional[list[str]], typer.Option(
        "--property", "-p", metavar="NAME=VALUE",
        help="Edge property (repeatable); VALUE is JSON when it parses as JSON.")] = None,
) -> None:
    """Add (or update) a relationship between two existing entities."""
    sess = session(ctx)
    rel = _relationship(relationship)
    batch = Batch()
    batch.link(rel, source, target, **parse_pairs(prop, "--property"))
    result = sess.tenant().apply(batch, actor=sess.actor, source=SOURCE)
    outcome = ("added" if result.edges_added else "updated" if result.edges_updated
               else "unchanged")
    console().print(Text(f"{outcome:<9} ", style="green" if result.edges_added else "dim")
                    + Text(f"{source} -{rel}-> {target}"), soft_wrap=True)


@app.command(rich_help_panel="Write")
def unlink(
    ctx: typer.Context,
    relationship: Annotated[str, typer.Argument(metavar="REL", help=_REL_HELP)],
    source: Annotated[str, typer.Argument(metavar="SOURCE_KEY", help="Key of the source.")],
    target: Annotated[str, typer.Argument(metavar="TARGET_KEY", help="Key of the target.")],
) -> None:
    """Remove a relationship."""
    sess = session(ctx)
    rel = _relationship(relationship)
    batch = Batch()
    batch.unlinks.append(Relationship(rel, source, target))
    result = sess.tenant().apply(batch, actor=sess.actor, source=SOURCE)
    if not result.edges_removed:
        raise NotFound(f"no {rel} link from {source} to {target}")
    console().print(Text("removed   ", style="yellow") + Text(f"{source} -{rel}-> {target}"),
                    soft_wrap=True)


@app.command(rich_help_panel="Write")
def delete(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Key of the entity to delete.")],
    cascade: Annotated[bool, typer.Option(
        "--cascade", help="Also delete the entities that depend on it (the ports of an asset, "
                          "the risks on it and its ports, attributes, jobs …), each with its "
                          "event. Without it, such a delete is refused and lists them.")] = False,
) -> None:
    """Delete an entity and its relationships (its history is kept)."""
    from bastion.store import edits

    sess = session(ctx)
    result = edits.delete(sess.tenant(), [key], actor=sess.actor, source=SOURCE, cascade=cascade)
    if not result.deleted:
        raise NotFound(f"no entity with key {key}")
    links = f" and {result.edges_removed} link(s)" if result.edges_removed else ""
    out = console()
    out.print(Text("deleted   ", style="red") + Text(key) + Text(links), soft_wrap=True)
    for dep in result.cascaded:
        out.print(Text("deleted   ", style="red") + Text(dep) + Text(" (depends on it)", style="dim"),
                  soft_wrap=True)


# -- schema -------------------------------------------------------------------------------------

schema_app = typer.Typer(help="The declared schema (bastion/schema/kinds.py).",
                         no_args_is_help=True)
app.add_typer(schema_app, name="schema", rich_help_panel="Set up")


@schema_app.command("docs")
def schema_docs() -> None:
    """Print the schema reference (docs/schema.md) generated from the declarations."""
    from bastion.schema.docs import render_markdown

    sys.stdout.write(render_markdown())


# -- demo ---------------------------------------------------------------------------------------


@app.command(rich_help_panel="Set up")
def demo(ctx: typer.Context) -> None:
    """Load a small sample attack surface (acme.example) and show what Bastion records.

    Initializes the database if needed. Safe to run again: a second run changes nothing.
    """
    from bastion import demo as sample
    from bastion.cli.demo_view import render

    sess = session(ctx)
    store = sess.store()
    migrate.upgrade(store.engine, "head")
    store.ensure_tenant(DEFAULT_TENANT)
    store.ensure_tenant(sess.tenant_name)
    _default_attack_catalog(store, sess.actor)
    report = sample.run(store.tenant(sess.tenant_name), actor=sess.actor)
    render(report, sess)


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
