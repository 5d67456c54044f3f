"""Write commands: `bastion link`, `unlink`, `delete` (registered by bastion.cli.main; `add` and
`update` have modules of their own). The write path is the library's; this module parses and prints."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.text import Text

from bastion.errors import InvalidValue, NotFound
from bastion.schema.batch import Batch, Relationship
from bastion.schema.kinds import REGISTRY
from bastion.store import edits
from bastion.cli.common import SOURCE, console, parse_pairs, session

def _relationship(name: str) -> str:
    rel = name.strip().upper()
    if rel not in REGISTRY.relationships:
        raise InvalidValue(f"unknown relationship {name!r}; relationships: "
                           + ", ".join(REGISTRY.relationships))
    return rel


_REL_HELP = "Relationship kind: " + ", ".join(REGISTRY.relationships) + "."


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


def delete(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Key of the entity to delete.")],
    cascade: Annotated[bool, typer.Option(
        "--cascade", help="Also delete the entities that depend on it (the ports of an asset, "
                          "the risks on it and its ports, attributes, jobs …), each with its "
                          "event. Without it, such a delete is refused and lists them.")] = False,
) -> None:
    """Delete an entity and its relationships (its history is kept)."""
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


def register(root: typer.Typer) -> None:
    for command in (link, unlink, delete):
        root.command(rich_help_panel="Write")(command)
