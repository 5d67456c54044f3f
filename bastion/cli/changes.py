"""`bastion changes`: the event log by import run, correlation id, time and kind, and what an
import run changed. No logic here: bastion.store.changes reads the log."""

from __future__ import annotations

from itertools import islice
from typing import Annotated, Optional

import typer
from rich.table import Table

from bastion.errors import InvalidValue
from bastion.store import changes as lib, export, filters
from bastion.store.store import Event
from bastion.cli.common import (FormatOpt, console, echo_json, emit, exporting, list_format,
                                rows_where_option, session)
from bastion.cli.read import events_table

PAGE = 100  # events per page of the table and --json

LABELS = {"new_risks": "new risks", "closed_risks": "closed risks",
          "reopened_risks": "re-opened risks", "new_assets": "new assets",
          "vanished_assets": "vanished assets", "new_ports": "new ports",
          "vanished_ports": "vanished ports"}

HELP = (
    "List what changed: the events of an import run (--run, with a summary of its new, closed "
    "and re-opened risks and its new and vanished assets and ports), of a correlation id, in a "
    "time range, of one kind.\n\n"
    "A risk is closed when it leaves triage/open (or is deleted) and re-opened when it comes "
    "back; an asset vanishes when deleted or made inactive, a port when deleted or no longer "
    "open. Events are listed oldest first, a page at a time (--after SEQ continues); "
    "--format csv|ndjson exports every event that matches.\n\n"
    "Example: bastion changes --run 3; bastion changes --since -7d --kind risk "
    "--where 'event_type=risk.status_changed' --format csv")


EventsWhere = rows_where_option(export.EVENTS)


def changes(
    ctx: typer.Context,
    run: Annotated[Optional[int], typer.Option(
        "--run", metavar="N", help="Only this import run (see `bastion imports list`), with its "
                                   "summary.")] = None,
    correlation_id: Annotated[Optional[str], typer.Option(
        "--correlation-id", metavar="ID", help="Only the events of one write (one import, one "
                                               "command).")] = None,
    since: Annotated[Optional[str], typer.Option(
        metavar="TIME", help="From this time (ISO 8601, or relative: -7d, -12h).")] = None,
    until: Annotated[Optional[str], typer.Option(
        metavar="TIME", help="Before this time (ISO 8601, or relative).")] = None,
    kind: Annotated[Optional[str], typer.Option(
        metavar="KIND", help="Only events of this entity kind (or edge, setting).")] = None,
    where: EventsWhere = None,
    limit: Annotated[Optional[int], typer.Option(
        metavar="N", help=f"Events per page (default {PAGE}).", show_default=False)] = None,
    after: Annotated[Optional[int], typer.Option(
        metavar="SEQ", help="Continue after this event.")] = None,
    summary_only: Annotated[bool, typer.Option(
        "--summary", help="With --run: only the summary, no events.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON: {summary, events, next_after} (the same as --format "
                       "json).")] = False,
    fmt: FormatOpt = None,
) -> None:
    fmt = list_format(fmt, as_json, limit=limit, after=after)
    if summary_only and exporting(fmt):
        raise InvalidValue(f"--summary lists no events: --format {fmt} exports events")
    flt = filters.parse_rows(export.EVENTS, where)
    # Relative times resolved once, so every page reads the same range.
    start = filters.parse_time(since, "--since") if since is not None else None
    end = filters.parse_time(until, "--until") if until is not None else None
    tenant = session(ctx).tenant()

    def fetch(after_seq, n):
        return lib.changes(tenant, run=run, correlation_id=correlation_id, since=start,
                           until=end, kind=kind, after_seq=after_seq, limit=n)

    def rows(first: int, page_size: int | None = None):
        events = export.pages(fetch, lambda ev: ev.seq, start=first, page_size=page_size)
        return flt.select(ev.as_dict() for ev in events)

    if exporting(fmt):
        emit(fmt, rows(0), export.EVENTS.columns)
        return
    limit = PAGE if limit is None else limit
    if not 1 <= limit <= 10000:
        raise InvalidValue("--limit must be between 1 and 10000")
    summary = lib.run_summary(tenant, run) if run is not None else None
    events = [] if summary_only else list(islice(rows(after or 0, min(limit + 1, 10000)), limit + 1))
    nxt = events[limit - 1]["seq"] if len(events) > limit else None
    events = events[:limit]
    if fmt == "json":
        echo_json({"summary": summary.as_dict() if summary else None,
                   "events": events, "next_after": nxt})
        return
    out = console()
    if summary is not None:
        table = Table("", "Count", "Keys", title=f"Import run {summary.run} ({summary.source}, "
                      f"{summary.status}): {summary.events} events", title_justify="left")
        for name, label in LABELS.items():
            cat = summary.categories[name]
            shown = cat.keys[:5]
            more = f" … (+{cat.count - len(shown)})" if cat.count > len(shown) else ""
            table.add_row(label, str(cat.count), "\n".join(shown) + more)
        out.print(table)
    if summary_only:
        return
    if not events:
        out.print("no events" + (" after this one" if after else ""), style="dim")
        return
    out.print(events_table([Event(**ev) for ev in events], with_key=True))
    if nxt is not None:
        typer.echo(f"next page: --after {nxt}")


def register(root: typer.Typer) -> None:
    root.command("changes", help=HELP, rich_help_panel="Read")(changes)
