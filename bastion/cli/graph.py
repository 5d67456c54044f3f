"""`bastion graph …`: queries over the tenant's graph, and subgraph export. Like every command:
no SQL, the library does the work (bastion.store.traversal, bastion.store.exposure,
bastion.graph)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from bastion.errors import InvalidValue
from bastion.graph import answers, jsonformat
from bastion.graph.render import to_dot, to_mermaid
from bastion.schema.keys import kind_of, parse_key
from bastion.schema.kinds import REGISTRY
from bastion.store.exposure import ACCESS_KINDS
from bastion.store.traversal import HARD_MAX_DEPTH, Limits
from bastion.cli.common import console, echo_json, session
from bastion.cli.common import key_column

DEFAULTS = Limits()

app = typer.Typer(
    help="Graph queries: neighbors, reachability, paths, provenance, attack paths, blast "
         "radius, and subgraph export for drawing.\n\n"
         "Every query is bounded: a depth cap (at most "
         f"{HARD_MAX_DEPTH}), a budget of estimated edge visits checked before it runs, a cap "
         "on rows visited and (PostgreSQL) a statement timeout. A query over a limit stops "
         "with one error line and exit code 5; narrow it with --depth or --kind, or raise the "
         "limit with the options below.",
    no_args_is_help=True,
)


class Direction(str, enum.Enum):
    out = "out"
    in_ = "in"
    both = "both"


class ExportFormat(str, enum.Enum):
    json = "json"
    mermaid = "mermaid"
    dot = "dot"


_REL_LIST = ", ".join(REGISTRY.relationships)
_ACCESS = ", ".join(ACCESS_KINDS)

KeyArg = Annotated[str, typer.Argument(metavar="KEY", help="Key of the entity to start from.")]
KindOpt = Annotated[Optional[list[str]], typer.Option(
    "--kind", "-k", metavar="REL",
    help=f"Follow only this relationship (repeatable). One of: {_REL_LIST}. Default: all.")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print JSON: every node with its key and its distance or position; every "
                   "path as its ordered node keys.")]


def _depth_opt(default_text: str):
    return typer.Option("--depth", "-d", metavar="N", min=0, max=HARD_MAX_DEPTH,
                        help=f"Follow at most N relationships (0-{HARD_MAX_DEPTH}; "
                             f"default {default_text}).")


DepthOpt = Annotated[Optional[int], _depth_opt(str(DEFAULTS.max_depth))]


@app.callback()
def _graph(
    ctx: typer.Context,
    budget: Annotated[int, typer.Option(
        metavar="N", min=1, help="Refuse a query whose estimated edge visits exceed N.")]
        = DEFAULTS.budget,
    max_rows: Annotated[int, typer.Option(
        metavar="N", min=1, help="Stop a query that visits more than N rows.")]
        = DEFAULTS.max_rows,
    timeout: Annotated[int, typer.Option(
        metavar="MS", min=1, help="Statement timeout on PostgreSQL, in milliseconds.")]
        = DEFAULTS.timeout_ms,
) -> None:
    ctx.meta["graph_limits"] = Limits(max_depth=DEFAULTS.max_depth, max_rows=max_rows,
                                      budget=budget, timeout_ms=timeout)


def _graph_of(ctx: typer.Context):
    return session(ctx).tenant().graph(ctx.meta.get("graph_limits"))


def _key(key: str) -> str:
    parse_key(key)  # a malformed key is reported as such before any query runs
    return key


def _kinds(kinds: list[str] | None) -> list[str] | None:
    return [k.strip().upper() for k in kinds] if kinds else None


def _title(text: str) -> dict[str, Any]:
    return {"title": text, "title_justify": "left"}


def _heading(text: str) -> None:
    # A line of its own rather than a table title: a title is wrapped to the table's width,
    # and a key must stay whole to be copied.
    console().print(Text(text, style="bold"), soft_wrap=True)


def _none(message: str) -> None:
    console().print(message, style="dim", soft_wrap=True)


# -- queries --------------------------------------------------------------------------------------


@app.command(help=(
    "The entities one relationship away from KEY, with the relationship and its "
    "direction."
))
def neighbors(
    ctx: typer.Context,
    key: KeyArg,
    direction: Annotated[Direction, typer.Option(
        help="out: relationships from KEY; in: relationships to KEY; both.")] = Direction.both,
    kind: KindOpt = None,
    as_json: JsonOpt = False,
) -> None:
    found = _graph_of(ctx).neighbors(_key(key), direction.value, _kinds(kind))
    if as_json:
        echo_json(answers.neighbors(key, direction.value, _kinds(kind), found))
        return
    if not found:
        _none(f"no neighbors of {key}")
        return
    _heading(f"Neighbors of {key}")
    table = Table("Relationship", "", key_column(), "Kind")
    for n in found:
        table.add_row(n.relationship, "→" if n.direction == "out" else "←", n.key, n.kind)
    console().print(table)


@app.command(help=(
    "Every entity within --depth relationships of KEY, with its shortest distance (KEY "
    "itself at 0)."
))
def reach(
    ctx: typer.Context,
    key: KeyArg,
    depth: DepthOpt = None,
    kind: KindOpt = None,
    direction: Annotated[Direction, typer.Option(
        help="out: follow relationships forwards; in: backwards (what reaches KEY); both: "
             "either way.")] = Direction.out,
    as_json: JsonOpt = False,
) -> None:
    hops = _graph_of(ctx).reach(_key(key), depth, _kinds(kind), direction.value)
    if as_json:
        echo_json(answers.reach(key, depth if depth is not None else DEFAULTS.max_depth,
                                direction.value, _kinds(kind), hops))
        return
    _heading(f"Reachable from {key}: {len(hops)}")
    table = Table("Distance", key_column(), "Kind")
    for h in hops:
        table.add_row(str(h.distance), h.key, h.kind)
    console().print(table)


@app.command(help=(
    "How KEY was found: each chain of DISCOVERED relationships from a root (a seed, or an "
    "entity nothing discovered) down to KEY, with the capabilities or jobs that found each "
    "step; for a port or a risk, the entity it sits on; the tools that found KEY and the "
    "import runs that recorded it. An entity found only from inside a cycle is no root: when "
    "every way up loops, the answer is that no seed is reachable."
))
def provenance(
    ctx: typer.Context,
    key: KeyArg,
    depth: DepthOpt = None,
    as_json: JsonOpt = False,
) -> None:
    found = _graph_of(ctx).provenance(_key(key), depth)
    depth_used = depth if depth is not None else DEFAULTS.max_depth
    if as_json:
        echo_json(answers.provenance(key, found))
        return
    out = console()
    _heading(f"Provenance of {key}")
    if found.found_on:
        out.print(f"found on:    {found.found_on}", soft_wrap=True)
    out.print(f"found by:    {', '.join(found.tools) or '-'}", soft_wrap=True)
    runs = "; ".join(
        f"{r.id} ({', '.join([*r.formats, *([f'--source {r.source}'] if r.source else [])])}"
        f"{', ' if r.formats or r.source else ''}{r.started_at:%Y-%m-%d %H:%M})"
        for r in found.runs)
    out.print(f"import runs: {runs or '-'}", soft_wrap=True)
    if not found.chains:
        if found.stranded:
            _none(f"no seed reachable: {key} was found only from inside a cycle of "
                  f"{len(found.stranded)} entities that were found from one another "
                  f"({', '.join(found.stranded[:5])}{', …' if len(found.stranded) > 5 else ''})")
        else:
            _none(f"no seed or root within depth {depth_used}; raise --depth")
        return
    for n, chain in enumerate(found.chains, 1):
        table = Table("#", key_column(), "Kind", "Found by", **_title(f"Chain {n} of {len(found.chains)}"))
        for i, s in enumerate(chain):
            table.add_row(str(i), s.key, s.kind, ", ".join(s.capabilities))
        out.print(table)
    if found.truncated:
        _none(f"more chains continue past depth {depth_used}; raise --depth to see their roots")
    if found.stranded:
        _none(f"also found from {len(found.stranded)} entities in a cycle with no way back to a "
              f"seed: {', '.join(found.stranded[:5])}{', …' if len(found.stranded) > 5 else ''}")


@app.command(help=(
    "A shortest path from FROM to TO (or, with --all, the shortest simple paths)."
))
def path(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="FROM", help="Key of the first entity.")],
    target: Annotated[str, typer.Argument(metavar="TO", help="Key of the last entity.")],
    kind: KindOpt = None,
    direction: Annotated[Direction, typer.Option(
        help="out: follow relationships forwards; in: backwards; both: either way.")]
        = Direction.out,
    depth: DepthOpt = None,
    all_paths: Annotated[bool, typer.Option(
        "--all", help="List the shortest simple paths (no entity twice), not just one.")] = False,
    max_paths: Annotated[int, typer.Option(
        "--max", metavar="N", min=1, help="With --all: at most N paths, shortest first.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    graph = _graph_of(ctx)
    _key(source)
    _key(target)
    paths = answers.find_paths(graph, source, target, _kinds(kind), direction.value, depth,
                               all_paths, max_paths)
    if as_json:
        echo_json(answers.paths(source, target, paths))
        return
    _print_paths(paths, f"no path from {source} to {target} within depth "
                        f"{depth if depth is not None else DEFAULTS.max_depth}")


def _print_paths(paths: list[list[str]], empty: str) -> None:
    if not paths:
        _none(empty)
        return
    out = console()
    for n, p in enumerate(paths, 1):
        title = f"Path {n} of {len(paths)}: {len(p) - 1} step(s)" if len(paths) > 1 \
            else f"Path: {len(p) - 1} step(s)"
        table = Table("#", key_column(), "Kind", **_title(title))
        for i, k in enumerate(p):
            table.add_row(str(i), k, kind_of(k))
        out.print(table)


_ATTACK_HELP = (
    "Paths from internet-exposed entry points to crown jewels.\n\n"
    "Entry points are assets with exposure=external that have an open port, are a URL, or carry "
    f"an open risk. Paths follow the relationships that carry access ({_ACCESS}) and are ranked "
    "shortest first, then by the worst open risk on the way."
)


@app.command("attack-paths", help=_ATTACK_HELP)
def attack_paths(
    ctx: typer.Context,
    to: Annotated[Optional[str], typer.Option(
        metavar="SELECTOR",
        help="Crown jewels to reach: a key, FIELD=VALUE on asset fields (criticality=high), or "
             "tag=VALUE. Default: assets with criticality=critical or tagged critical.")] = None,
    depth: DepthOpt = None,
    limit: Annotated[int, typer.Option(metavar="N", min=1, help="Show at most N paths.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    found, jewels = answers.find_attack_paths(_graph_of(ctx), to, depth, limit)
    if as_json:
        echo_json(answers.attack_paths(to, found, jewels))
        return
    if jewels == 0 and to:
        _none(f"no attack paths: no asset matches --to {to}")
        return
    if jewels == 0:
        _none("no attack paths: no crown jewel is defined. Mark an asset as one by tagging it "
              "(`bastion add attribute --name tag --value critical --parent ASSET_KEY`) or by "
              "setting its criticality to critical, or name the assets to reach with --to (a "
              "key, FIELD=VALUE or tag=VALUE)")
        return
    if not found:
        _none(f"no attack paths: none of the {jewels} crown jewel(s) is reachable from an "
              f"internet-exposed entry point" + (f" ({to})" if to else "")
              + f" within depth {depth if depth is not None else DEFAULTS.max_depth}")
        return
    table = Table("#", key_column("Entry"), key_column("Crown jewel"), "Steps", "Worst risk", key_column("Path"),
                  **_title(f"Attack paths ({len(found)})"))
    for n, a in enumerate(found, 1):
        table.add_row(str(n), a.entry, a.crown_jewel, str(len(a.path) - 1),
                      a.worst_severity or "", " → ".join(a.path))
    console().print(table)


@app.command("blast-radius", help=(
    "What an attacker exploiting a risk can reach: the assets within --depth of the "
    "entity the risk sits on (for a port or software: the hosts running it) along "
    "relationships that carry access, and the crown jewels among them."
))
def blast_radius(
    ctx: typer.Context,
    risk_key: Annotated[str, typer.Argument(metavar="RISK_KEY", help="Key of the risk.")],
    depth: DepthOpt = None,
    as_json: JsonOpt = False,
) -> None:
    assets, jewels = _graph_of(ctx).blast_radius(_key(risk_key), depth)
    crown = set(jewels)
    if as_json:
        echo_json(answers.blast_radius(risk_key, assets, jewels))
        return
    if not assets:
        _none(f"nothing reachable from {risk_key}")
        return
    _heading(f"Blast radius of {risk_key}: {len(assets)} asset(s), {len(jewels)} crown jewel(s)")
    table = Table("Distance", key_column("Asset"), "Crown jewel")
    for h in assets:
        table.add_row(str(h.distance), h.key, Text("yes", style="bold red") if h.key in crown
                      else "")
    console().print(table)


@app.command("capability-impact", help=(
    "Per capability: the assets it discovered (directly or through its jobs) and the "
    "high and critical risks still open on them: what would go unseen without it."
))
def capability_impact(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    rows = _graph_of(ctx).capability_impact()
    if as_json:
        echo_json({"capabilities": rows})
        return
    if not rows:
        _none("no capabilities recorded")
        return
    table = Table("Capability", "Assets", "High", "Critical", **_title("Capability impact"))
    for r in rows:
        table.add_row(r["capability"], str(r["assets"]), str(r["high"]), str(r["critical"]))
    console().print(table)


@app.command(help=(
    "The subgraph around KEY: everything within --depth relationships in either "
    "direction and every relationship among it, as JSON, Mermaid or Graphviz DOT."
))
def export(
    ctx: typer.Context,
    key: KeyArg,
    depth: Annotated[int, _depth_opt("2")] = 2,
    kind: KindOpt = None,
    fmt: Annotated[ExportFormat, typer.Option(
        "--format", "-f",
        help="json: the graph format `bastion import` reads (a round trip); mermaid or dot: a "
             "drawing.")] = ExportFormat.json,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="FILE", dir_okay=False,
        help="Write to FILE instead of standard output.")] = None,
) -> None:
    sess = session(ctx)
    tenant = sess.tenant()
    sub = tenant.graph(ctx.meta.get("graph_limits")).subgraph(_key(key), depth, _kinds(kind))
    if fmt is ExportFormat.json:
        text = jsonformat.dumps(jsonformat.export_document(tenant, sub, root=key, depth=depth))
    elif fmt is ExportFormat.mermaid:
        text = to_mermaid(sub, root=key)
    else:
        text = to_dot(sub, root=key)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidValue(f"cannot write {output}: {exc.strerror or exc}") from None
    console().print(f"wrote {output}: {len(sub.nodes)} node(s) within depth {depth}, "
                    f"{len(sub.edges)} relationship(s)", soft_wrap=True)


def register(root: typer.Typer) -> None:
    """Add `graph` to the root command."""
    root.add_typer(app, name="graph", rich_help_panel="Read")
