"""`bastion changes`: the event log by import run, correlation id, time and kind, and what an
import run changed. No logic here: bastion.store.changes reads the log."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from bastion.store import changes as lib
from bastion.cli.common import console, echo_json, session
from bastion.cli.read import events_table

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
    "open. Events are listed oldest first, a page at a time (--after SEQ continues).\n\n"
    "Example: bastion changes --run 3; bastion changes --since -7d --kind risk")


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
    limit: Annotated[int, typer.Option(metavar="N", help="Events per page.")] = 100,
    after: Annotated[int, typer.Option(metavar="SEQ", help="Continue after this event.")] = 0,
    summary_only: Annotated[bool, typer.Option(
        "--summary", help="With --run: only the summary, no events.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON: {summary, events, next_after}.")] = False,
) -> None:
    tenant = session(ctx).tenant()
    summary = lib.run_summary(tenant, run) if run is not None else None
    events = [] if summary_only else lib.changes(
        tenant, run=run, correlation_id=correlation_id, since=since, until=until, kind=kind,
        after_seq=after, limit=limit)
    nxt = events[-1].seq if len(events) == limit else None
    if as_json:
        echo_json({"summary": summary.as_dict() if summary else None,
                   "events": [ev.as_dict() for ev in events], "next_after": nxt})
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
    out.print(events_table(events, with_key=True))
    if nxt is not None:
        typer.echo(f"next page: --after {nxt}")


def register(root: typer.Typer) -> None:
    root.command("changes", help=HELP, rich_help_panel="Read")(changes)
