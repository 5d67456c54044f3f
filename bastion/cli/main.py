"""The `bastion` command: a thin layer over the library (bastion.store), no SQL.

User mistakes (any BastionError, bad options, an unreachable or uninitialized database) print one
red `error: …` line on stderr and exit with the error's exit code; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError, ProgrammingError
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperGroup

from bastion.errors import BastionError, ConfigError, InvalidValue, NotFound, ValidationFailed
from bastion.schema.batch import Batch, Relationship
from bastion.schema.keys import kind_of, parse_key
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import Classification, EntityKind, FieldType
from bastion.store import migrate
from bastion.store.store import DEFAULT_TENANT, Event, Record
from bastion.cli import add as add_cmd
from bastion.cli import attack as attack_cmd
from bastion.cli import coverage as coverage_cmd
from bastion.cli import detections as detections_cmd
from bastion.cli import enrich as enrich_cmd
from bastion.cli import graph as graph_cmd
from bastion.cli import ingest as ingest_cmd
from bastion.cli.common import (
    SOURCE,
    Session,
    coerce,
    console,
    default_actor,
    echo_json,
    fmt_time,
    fmt_value,
    kind_named,
    parse_pairs,
    parse_time,
    print_error,
    session,
    shorten,
)


class BastionGroup(TyperGroup):
    """The root group: turns user mistakes into one `error: …` line and an exit code."""

    ORDER = ("init", "demo", "tenant", "db", "schema", "add", "import", "imports", "risk", "enrich",
             "link", "unlink", "delete", "get", "list", "history", "stats", "graph",
             "attack", "account", "detections", "map", "coverage")

    def list_commands(self, ctx) -> list[str]:
        # Help lists commands in workflow order (Typer would put sub-groups such as `add` last).
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (OperationalError, ProgrammingError) as exc:
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
    if isinstance(exc, OperationalError):
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
    """Create or upgrade the database schema and the `default` tenant. Safe to run again."""
    sess = session(ctx)
    store = sess.store()
    before = migrate.current(store.engine)
    migrate.upgrade(store.engine, "head")
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
    """Upgrade the schema to REVISION (default: the newest)."""
    store = session(ctx).store()
    migrate.upgrade(store.engine, revision)
    _print_revision(store)


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, or -N for N steps back; "
                                                 "`base` removes everything.")] = "-1",
) -> None:
    """Downgrade the schema to REVISION (default: one step back)."""
    store = session(ctx).store()
    migrate.downgrade(store.engine, revision)
    _print_revision(store)


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


# -- reads --------------------------------------------------------------------------------------


def record_json(rec: Record) -> dict[str, Any]:
    return rec.as_dict()


@app.command(rich_help_panel="Read")
def get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(
        help="The entity's key, e.g. '#asset#acme.example#acme.example'.")],
    as_of: Annotated[Optional[str], typer.Option(
        "--as-of", metavar="TIME",
        help="Show the entity as it was at this ISO 8601 time "
             "(e.g. 2026-01-01T00:00:00Z).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one entity: its fields, version, when it was seen, and its relationships."""
    parse_key(key)
    instant = parse_time(as_of, "--as-of") if as_of else None
    tenant = session(ctx).tenant()
    rec = tenant.get(key, as_of=instant)
    if rec is None:
        when = f" at {as_of}" if as_of else ""
        raise NotFound(f"no {kind_of(key)} with key {key}{when}")
    links = tenant.links(key)
    if as_json:
        echo_json({**record_json(rec), "links": [
            {"relationship": l.relationship, "source": l.source, "target": l.target,
             "properties": l.properties, "first_seen": l.first_seen,
             "last_seen": l.last_seen} for l in links]})
        return
    out = console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("key", rec.key)
    grid.add_row("kind", rec.kind)
    grid.add_row("version", str(rec.version))
    for name, value in rec.values.items():
        if value is not None:
            grid.add_row(name, fmt_value(value))
    for name, value in (rec.properties or {}).items():
        grid.add_row(Text(f"property {name}", style="italic"), fmt_value(value))
    grid.add_row("first seen", fmt_time(rec.first_seen))
    grid.add_row("last seen", fmt_time(rec.last_seen))
    if as_of:
        grid.add_row("as of", as_of)
    out.print(grid)
    if links:
        table = Table("Relationship", "", "Other end", title_justify="left",
                      title="Links (current)" if as_of else "Links")
        for l in links:
            outgoing = l.source == key
            table.add_row(l.relationship, "→" if outgoing else "←",
                          l.target if outgoing else l.source)
        out.print(table)


def list_columns(kind: EntityKind, records: list[Record]) -> list[str]:
    """The fields worth a column: not already spelled out in the key, not confidential, not
    free text too long for a table, and not empty on every row shown."""
    cols = []
    for f in kind.fields:
        if f.name in kind.key or f.type is FieldType.KEY:
            continue
        if f.classification in (Classification.CONFIDENTIAL, Classification.RESTRICTED):
            continue
        if f.max_length and f.max_length > 1000:
            continue
        if all(r.values.get(f.name) is None for r in records):
            continue
        cols.append(f.name)
    return cols


HIGHEST_FIRST = ("priority", "cvss", "epss", "epss_percentile")  # scores: the top matters


@app.command("list", rich_help_panel="Read")
def list_(
    ctx: typer.Context,
    kind_name: Annotated[str, typer.Argument(
        metavar="KIND", help="Entity kind, singular or plural: "
                             + ", ".join(REGISTRY.node_kinds) + ".")],
    where: Annotated[Optional[list[str]], typer.Option(
        "--where", "-w", metavar="FIELD=VALUE",
        help="Only entities whose FIELD equals VALUE (repeatable; the same field twice "
             "means either value).")] = None,
    prefix: Annotated[Optional[str], typer.Option(
        help="Only keys starting with this (after '#kind#', or a whole key prefix).")] = None,
    sort: Annotated[Optional[str], typer.Option(metavar="FIELD", help="Sort by this field "
                                                "(default: key). Scores (priority, cvss, epss) "
                                                "sort highest first.")] = None,
    desc: Annotated[Optional[bool], typer.Option(
        "--desc/--asc", help="Sort in descending / ascending order.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="Page size.")] = 50,
    after: Annotated[Optional[str], typer.Option(
        metavar="CURSOR", help="Continue after this cursor (printed under a full page).")] = None,
    count: Annotated[bool, typer.Option(
        "--count", help="Print only the number of matches.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON: {items, next_cursor}.")] = False,
) -> None:
    """List entities of one kind, a page at a time."""
    kind = kind_named(kind_name)
    filters = {name: [coerce(kind, name, v, "--where") for v in value] if isinstance(value, list)
               else coerce(kind, name, value, "--where")
               for name, value in parse_pairs(where, "--where", json_values=False).items()}
    tenant = session(ctx).tenant()
    if count:
        typer.echo(tenant.count(kind.name, where=filters, prefix=prefix))
        return
    if desc is None:
        desc = sort in HIGHEST_FIRST
    page = tenant.list(kind.name, where=filters, prefix=prefix, order_by=sort, descending=desc,
                       after=after, limit=limit)
    if as_json:
        echo_json({"items": [record_json(r) for r in page.records],
                   "next_cursor": page.next_cursor})
        return
    out = console()
    if not page.records:
        out.print(f"no {kind.name} entities" + (" on this page" if after else ""), style="dim")
        return
    cols = list_columns(kind, page.records)
    table = Table("Key", *cols)
    for r in page.records:
        table.add_row(r.key, *(fmt_value(r.values.get(c)) for c in cols))
    out.print(table)
    if page.next_cursor:
        # Plain and unwrapped, so it can be copied or parsed.
        typer.echo(f"next page: --after {page.next_cursor}")


def diff_summary(ev: Event, limit: int = 90) -> str:
    """One line describing what an event changed."""
    diff = ev.diff or {}
    if ev.entity_kind == "edge":
        return shorten(f"{diff.get('relationship')} → {diff.get('target')}", limit)
    if ev.event_type.endswith(".created"):
        # The key already shows its parts: list the other values.
        kind = REGISTRY.node_kinds.get(ev.entity_kind)
        shown = set(kind.key) | {f.name for f in kind.fields if f.type is FieldType.KEY} \
            if kind else set()
        text = ", ".join(f"{k}={fmt_value(new)}" for k, (_old, new) in diff.items()
                         if k not in shown) or "created"
    elif ev.event_type.endswith(".deleted"):
        text = "deleted"
    else:
        text = ", ".join(f"{k}: {fmt_value(old) or '∅'} → {fmt_value(new) or '∅'}"
                         for k, (old, new) in diff.items())
    return shorten(text, limit)


def events_table(events: list[Event], *, with_key: bool = False, compact: bool = False,
                 title: str | None = None) -> Table:
    """Events as a table; `compact` leaves out time, version, actor and source."""
    full = not compact
    table = Table("Seq", *(["Time"] if full else []), "Type", *(["Entity"] if with_key else []),
                  *(["Version", "Actor", "Source"] if full else []), "Change",
                  title=title, title_justify="left")
    for ev in events:
        version = "" if ev.entity_version is None else str(ev.entity_version)
        table.add_row(str(ev.seq), *([fmt_time(ev.occurred_at)] if full else []), ev.event_type,
                      *([ev.entity_key] if with_key else []),
                      *([version, ev.actor, ev.source] if full else []), diff_summary(ev))
    return table


@app.command(rich_help_panel="Read")
def history(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The entity's key.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every event of an entity, oldest first (relationships appear under their source)."""
    parse_key(key)
    events = session(ctx).tenant().history(key)
    if not events:
        raise NotFound(f"no history for {key}")
    if as_json:
        echo_json([ev.as_dict() for ev in events])
        return
    console().print(events_table(events))


@app.command(rich_help_panel="Read")
def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Count entities per kind and relationships per kind in the tenant."""
    counts = session(ctx).tenant().counts()
    if as_json:
        echo_json(counts)
        return
    console().print(counts_tables(counts))


def counts_tables(counts: dict[str, int]):
    from rich.columns import Columns

    kinds = Table("Kind", "Count", title="Entities", title_justify="left")
    for name in REGISTRY.node_kinds:
        kinds.add_row(name, str(counts.get(name, 0)))
    rels = Table("Relationship", "Count", title="Relationships", title_justify="left")
    for name in REGISTRY.relationships:
        if counts.get(name):
            rels.add_row(name, str(counts[name]))
    return Columns([kinds, rels], padding=(0, 4))


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
