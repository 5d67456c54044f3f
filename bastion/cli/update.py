"""`bastion update KIND --where … --set FIELD=VALUE`: change many entities at once.

No logic here: bastion.store.edits.update selects, writes (one event per changed entity, one
transaction) and keeps priorities current."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.text import Text

from bastion.schema.kinds import REGISTRY
from bastion.store import edits
from bastion.cli.common import SOURCE, console, echo_json, kind_named, session


def update(
    ctx: typer.Context,
    kind_name: Annotated[str, typer.Argument(
        metavar="KIND", help="Entity kind, singular or plural: " + ", ".join(REGISTRY.node_kinds) + ".")],
    set_: Annotated[list[str], typer.Option(
        "--set", "-s", metavar="FIELD=VALUE",
        help="The value to set (repeatable); an empty VALUE clears the field. Key fields cannot "
             "be set.")],
    where: Annotated[Optional[list[str]], typer.Option(
        "--where", "-w", metavar="EXPR",
        help="Only entities matching this filter (repeatable, all must match), as for `bastion "
             "list`: FIELD=VALUE, FIELD=A,B, comparisons such as priority>50.")] = None,
    cidr: Annotated[Optional[str], typer.Option(
        metavar="CIDR", help="Only assets whose address lies in this network (10.0.0.0/8), or "
                             "ports on such assets.")] = None,
    note: Annotated[Optional[str], typer.Option(
        metavar="TEXT", help="Why: kept on every event.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count the matching entities; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    kind = kind_named(kind_name)
    sess = session(ctx)
    result = edits.update(sess.tenant(), kind.name, edits.parse_assignments(kind.name, set_),
                          where=where or None,
                          cidr=cidr, actor=sess.actor, source=SOURCE, note=note, dry_run=dry_run)
    if as_json:
        echo_json(result.as_dict())
        return
    out = console()
    if dry_run:
        out.print(f"{result.matched} {kind.name} entities match (dry run: nothing changed)")
        return
    for key in result.keys:
        out.print(Text("updated   ", style="yellow") + Text(key), soft_wrap=True)
    line = f"{result.updated} of {result.matched} matching {kind.name} entities updated"
    if result.reranked:
        line += f"; {result.reranked} risk(s) re-ranked"
    out.print(line)


HELP = (
    "Set fields on every entity of a kind that matches, each change an event, in one transaction "
    "(all or nothing).\n\n"
    "A changed asset exposure re-ranks the risks on the asset and its ports; a risk whose "
    "severity or scores change gets its priority recomputed. Without --where or --cidr every "
    "entity of the kind is updated.\n\n"
    "Example: bastion update assets --cidr 10.0.0.0/8 --set exposure=internal")


def register(root: typer.Typer) -> None:
    root.command("update", help=HELP, rich_help_panel="Write")(update)
