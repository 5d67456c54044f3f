"""Read commands: `bastion get`, `list`, `history`, `stats` (registered by bastion.cli.main).

Filtering, key normalization and export live in the library (bastion.store.filters,
bastion.store.export); this module parses options and prints.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer
from rich.table import Column, Table
from rich.text import Text

from bastion.errors import NotFound
from bastion.schema.keys import kind_of, parse_key
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import Classification, EntityKind, FieldType
from bastion.schema.roles import check_role, mask_event, mask_key, mask_record
from bastion.store import export, filters
from bastion.store.store import Event, Record
from bastion.cli.common import (
    FormatOpt,
    JsonOpt,
    console,
    echo_json,
    emit,
    exporting,
    list_format,
    rows_where_option,
    where_option,
    fmt_time,
    fmt_value,
    key_column,
    kind_named,
    parse_time,
    session,
    shorten,
)

def record_json(rec: Record, role: str | None = None) -> dict[str, Any]:
    """An entity as JSON, masked as `role` sees it (None: everything)."""
    return mask_record(rec.as_dict(), role)


AsRole = Annotated[Optional[str], typer.Option(
    "--as-role", metavar="ROLE", callback=lambda v: check_role(v) if v else v,
    help="Mask values as an API key of this role sees them (reader, uploader, analyst, admin; "
         "docs/api.md#masking), e.g. before sharing an export.")]


def get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(
        help="The entity's key, e.g. '#asset#acme.example#acme.example' (spelled as you like: "
             "it is normalized as imports normalize it).")],
    as_of: Annotated[Optional[str], typer.Option(
        "--as-of", metavar="TIME",
        help="Show the entity as it was at this ISO 8601 time "
             "(e.g. 2026-01-01T00:00:00Z).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_role: AsRole = None,
) -> None:
    """Show one entity: its fields, version, when it was seen, and its relationships."""
    parse_key(key)
    instant = parse_time(as_of, "--as-of") if as_of else None
    tenant = session(ctx).tenant()
    rec = tenant.get(key, as_of=instant)
    if rec is None:
        when = f" at {as_of}" if as_of else ""
        raise NotFound(f"no {kind_of(key)} with key {key}{when}")
    key = rec.key
    links = tenant.links(key)
    if as_json or as_role:
        echo_json({**record_json(rec, as_role), "links": [
            {"relationship": l.relationship, "source": mask_key(l.source, as_role),
             "target": mask_key(l.target, as_role),
             "properties": l.properties, "first_seen": l.first_seen,
             "last_seen": l.last_seen} for l in links]})
        return
    out = console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
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
        table = Table("Relationship", "", key_column("Other end"), title_justify="left",
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
PAGE = 50

ENTITY_FIELDS = "the kind's fields (docs/schema.md), key, first_seen, last_seen, updated_at"
EntityWhere = where_option(ENTITY_FIELDS + "; ~TEXT searches title and name")


def list_(
    ctx: typer.Context,
    kind_name: Annotated[str, typer.Argument(
        metavar="KIND", help="Entity kind, singular or plural: "
                             + ", ".join(REGISTRY.node_kinds) + ".")],
    where: EntityWhere = None,
    prefix: Annotated[Optional[str], typer.Option(
        help="Only keys starting with this (after '#kind#', or a whole key prefix).")] = None,
    sort: Annotated[Optional[str], typer.Option(metavar="FIELD", help="Sort by this field "
                                                "(default: key). Scores (priority, cvss, epss) "
                                                "sort highest first.")] = None,
    desc: Annotated[Optional[bool], typer.Option(
        "--desc/--asc", help="Sort in descending / ascending order.", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(
        metavar="N", help=f"Page size (default {PAGE}).", show_default=False)] = None,
    after: Annotated[Optional[str], typer.Option(
        metavar="CURSOR", help="Continue after this cursor (printed under a full page).")] = None,
    count: Annotated[bool, typer.Option(
        "--count", help="Print only the number of matches.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON: {items, next_cursor} (one page; the same as --format "
                       "json).")] = False,
    fmt: FormatOpt = None,
    as_role: AsRole = None,
) -> None:
    """List entities of one kind, a page at a time (or export them all with --format csv or
    ndjson)."""
    kind = kind_named(kind_name)
    fmt = list_format(fmt, as_json, limit=limit, after=after)
    tenant = session(ctx).tenant()
    if count:
        typer.echo(tenant.count(kind.name, where=where or None, prefix=prefix))
        return
    if desc is None:
        desc = sort in HIGHEST_FIRST
    if exporting(fmt):
        records = tenant.iterate(kind.name, where=where or None, prefix=prefix, order_by=sort,
                                 descending=desc, page_size=export.PAGE_SIZE)
        export.write(kind.name, records, sys.stdout, fmt, role=as_role)
        return
    page = tenant.list(kind.name, where=where or None, prefix=prefix, order_by=sort,
                       descending=desc, after=after, limit=PAGE if limit is None else limit)
    if as_role and fmt == "table":
        fmt = "json"  # masked values are shown as JSON (a table hides confidential columns anyway)
    if fmt == "json":
        echo_json({"items": [record_json(r, as_role) for r in page.records],
                   "next_cursor": page.next_cursor})
        return
    out = console()
    if not page.records:
        out.print(f"no {kind.name} entities" + (" on this page" if after else ""), style="dim")
        return
    cols = list_columns(kind, page.records)
    table = Table(key_column(), *cols)
    for r in page.records:
        table.add_row(r.key, *(fmt_value(r.values.get(c)) for c in cols))
    out.print(table)
    if page.next_cursor:
        # Plain and unwrapped, so it can be copied or parsed.
        typer.echo(f"next page: --after {page.next_cursor}")


def diff_summary(ev: Event, limit: int = 90) -> str:
    """One line describing what an event changed (an edge's target key in full)."""
    diff = ev.diff or {}
    if ev.entity_kind == "edge":
        return f"{diff.get('relationship')} → {diff.get('target')}"
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
    """Events as a table; `compact` leaves out time, version, actor and source. A Note column
    appears when an event has a note (why it changed)."""
    full = not compact
    notes = any(ev.note for ev in events)
    table = Table("Seq", *(["Time"] if full else []), "Type",
                  *([key_column("Entity")] if with_key else []),
                  *(["Version", "Actor", "Source"] if full else []), Column("Change", overflow="fold"),
                  *(["Note"] if notes else []), title=title, title_justify="left")
    for ev in events:
        version = "" if ev.entity_version is None else str(ev.entity_version)
        table.add_row(str(ev.seq), *([fmt_time(ev.occurred_at)] if full else []), ev.event_type,
                      *([ev.entity_key] if with_key else []),
                      *([version, ev.actor, ev.source] if full else []), diff_summary(ev),
                      *([ev.note or ""] if notes else []))
    return table


EventsWhere = rows_where_option(export.EVENTS)


def history(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The entity's key.")],
    where: EventsWhere = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
    as_role: AsRole = None,
) -> None:
    """Show every event of an entity, oldest first (relationships appear under their source),
    with the note of each change that has one."""
    parse_key(key)
    fmt = list_format(fmt, as_json)
    flt = filters.parse_rows(export.EVENTS, where)
    events = session(ctx).tenant().history(key)
    if not events:
        raise NotFound(f"no history for {key}")
    if as_role and fmt == "table":
        fmt = "json"
    emit(fmt, flt.select(mask_event(ev.as_dict(), as_role) for ev in events), export.EVENTS.columns,
         table=lambda rows: console().print(events_table([Event(**ev) for ev in rows])))


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


def register(root: typer.Typer) -> None:
    """Add the read commands to the root command."""
    root.command(rich_help_panel="Read")(get)
    root.command("list", rich_help_panel="Read")(list_)
    root.command(rich_help_panel="Read")(history)
    root.command(rich_help_panel="Read")(stats)
