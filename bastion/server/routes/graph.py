"""Graph queries, as `bastion graph` answers them: neighbors, reach, paths, provenance, attack
paths, blast radius, capability impact, and the subgraph export (Bastion's JSON graph format,
Mermaid, DOT).

Every query passes the store's cost guard: a depth cap, a budget of estimated edge visits, a cap
on rows visited and, on PostgreSQL, the server's statement timeout; a query over a limit is a
422 naming it, never a hang. A client may lower the budget and the rows cap, not raise them.
Answers carry keys and kinds only, except the JSON export, whose entity values are masked for
the key's role."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from bastion.graph import answers, jsonformat
from bastion.graph.render import to_dot, to_mermaid
from bastion.schema.keys import parse_key
from bastion.schema.kinds import REGISTRY
from bastion.schema.roles import mask_record
from bastion.server.context import READ, Context
from bastion.server.problems import responses
from bastion.store.traversal import HARD_MAX_DEPTH, Limits

router = APIRouter(prefix="/graph", tags=["graph"])

DEFAULTS = Limits()
Relationship = Literal[tuple(REGISTRY.relationships)]  # type: ignore[valid-type]
Direction = Literal["out", "in", "both"]


# -- parameters shared by the queries ---------------------------------------------------------


def _limits(budget: int | None = Query(
                default=None, ge=1, le=DEFAULTS.budget,
                description=f"Refuse a query whose estimated edge visits exceed this (at most "
                            f"{DEFAULTS.budget:,}, the default)"),
            max_rows: int | None = Query(
                default=None, ge=1, le=DEFAULTS.max_rows,
                description=f"Stop a query that visits more rows than this (at most "
                            f"{DEFAULTS.max_rows:,}, the default)")) -> tuple[int | None, int | None]:
    return budget, max_rows


def _graph(ctx: Context, limits: tuple[int | None, int | None]):
    budget, max_rows = limits
    return ctx.tenant.graph(Limits(max_depth=DEFAULTS.max_depth,
                                   max_rows=max_rows or DEFAULTS.max_rows,
                                   budget=budget or DEFAULTS.budget,
                                   timeout_ms=ctx.settings.statement_timeout_ms))


def _depth(default: str):
    return Query(default=None, ge=0, le=HARD_MAX_DEPTH,
                 description=f"Follow at most this many relationships (0-{HARD_MAX_DEPTH}; "
                             f"default {default})")


def _key(key: str) -> str:
    parse_key(key)  # a malformed key is reported as such before any query runs
    return key


def _kinds(kind: list[str]) -> list[str] | None:
    return list(dict.fromkeys(kind)) or None


KEY = Query(description="An entity's key, e.g. `#asset#example.com#www.example.com`")
KINDS = Query(default=[], description="Follow only this relationship (repeat for more); "
                                      "default: all")


# -- response models --------------------------------------------------------------------------


class NodeAt(BaseModel):
    key: str
    kind: str
    distance: int


class NeighborOut(NodeAt):
    relationship: str
    direction: Direction = Field(description="out: key → neighbor; in: neighbor → key")


class NeighborsAnswer(BaseModel):
    key: str
    direction: Direction
    kinds: list[str] | None
    nodes: list[NeighborOut]


class ReachAnswer(BaseModel):
    key: str
    depth: int
    direction: Direction
    kinds: list[str] | None
    nodes: list[NodeAt]


class PathOut(BaseModel):
    length: int
    path: list[str]


class PathsAnswer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    source: str = Field(alias="from")
    to: str
    paths: list[PathOut]


class ProvenanceStepOut(BaseModel):
    position: int
    key: str
    kind: str
    capabilities: list[str]


class ChainOut(BaseModel):
    path: list[str]
    steps: list[ProvenanceStepOut]


class RunRefOut(BaseModel):
    id: int
    source: str
    status: str
    started_at: datetime
    correlation_id: str
    files: list[str]
    formats: list[str]


class ProvenanceAnswer(BaseModel):
    key: str
    found_on: str | None
    tools: list[str]
    runs: list[RunRefOut]
    seed_reachable: bool
    stranded: list[str]
    truncated: bool
    chains: list[ChainOut]


class AttackPathOut(BaseModel):
    entry: str
    crown_jewel: str
    length: int
    worst_severity: str | None
    risks: list[str]
    path: list[str]


class AttackPathsAnswer(BaseModel):
    to: str | None
    crown_jewels: int | None = Field(default=None, description="When there are no paths: how "
                                     "many crown jewels there are (0: none is defined)")
    paths: list[AttackPathOut]


class BlastNodeOut(NodeAt):
    crown_jewel: bool


class BlastRadiusAnswer(BaseModel):
    risk: str
    nodes: list[BlastNodeOut]
    crown_jewels: list[str]


class CapabilityImpactOut(BaseModel):
    capability: str
    assets: int
    high: int
    critical: int


class CapabilityImpactAnswer(BaseModel):
    capabilities: list[CapabilityImpactOut]


class GraphDocumentOut(BaseModel):
    """Bastion's graph format (docs/formats.md#graph): nodes with their values (masked for the
    key's role, named in each node's `masked`) and edges."""

    model_config = ConfigDict(extra="allow")

    format: str
    version: int
    root: str | None = None
    depth: int | None = None
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]


# -- routes -----------------------------------------------------------------------------------


@router.get("/neighbors", response_model=NeighborsAnswer, responses=responses(404),
            summary="The entities one relationship away")
def neighbors(key: str = KEY, direction: Direction = "both", kind: list[Relationship] = KINDS,
              limits=Depends(_limits), ctx: Context = Depends(READ)) -> dict[str, Any]:
    kinds = _kinds(kind)
    found = _graph(ctx, limits).neighbors(_key(key), direction, kinds)
    return answers.neighbors(key, direction, kinds, found)


@router.get("/reach", response_model=ReachAnswer, responses=responses(404),
            summary="Everything within a depth, with its shortest distance")
def reach(key: str = KEY, depth: int | None = _depth(str(DEFAULTS.max_depth)),
          kind: list[Relationship] = KINDS, direction: Direction = "out",
          limits=Depends(_limits), ctx: Context = Depends(READ)) -> dict[str, Any]:
    kinds = _kinds(kind)
    hops = _graph(ctx, limits).reach(_key(key), depth, kinds, direction)
    return answers.reach(key, depth if depth is not None else DEFAULTS.max_depth, direction,
                         kinds, hops)


@router.get("/path", response_model=PathsAnswer, response_model_by_alias=True,
            responses=responses(404), summary="A shortest path, or the shortest simple paths")
def path(source: str = Query(alias="from", description="Key of the first entity"),
         target: str = Query(alias="to", description="Key of the last entity"),
         kind: list[Relationship] = KINDS, direction: Direction = "out",
         depth: int | None = _depth(str(DEFAULTS.max_depth)),
         all_paths: bool = Query(default=False, alias="all",
                                 description="The shortest simple paths, not just one"),
         max_paths: int = Query(default=10, alias="max", ge=1, le=1000,
                                description="With all: at most this many, shortest first"),
         limits=Depends(_limits), ctx: Context = Depends(READ)) -> dict[str, Any]:
    found = answers.find_paths(_graph(ctx, limits), _key(source), _key(target), _kinds(kind),
                               direction, depth, all_paths, max_paths)
    return answers.paths(source, target, found)


@router.get("/provenance", response_model=ProvenanceAnswer, responses=responses(404),
            summary="How an entity was found: discovery chains, tools, import runs")
def provenance(key: str = KEY, depth: int | None = _depth(str(DEFAULTS.max_depth)),
               limits=Depends(_limits), ctx: Context = Depends(READ)) -> dict[str, Any]:
    return answers.provenance(key, _graph(ctx, limits).provenance(_key(key), depth))


@router.get("/attack-paths", response_model=AttackPathsAnswer, response_model_exclude_unset=True,
            responses=responses(), summary="Paths from internet-exposed entry points to crown jewels")
def attack_paths(to: str | None = Query(default=None, max_length=1000, description=(
                     "Crown jewels to reach: a key, FIELD=VALUE on asset fields "
                     "(criticality=high) or tag=VALUE; default: criticality=critical or tagged "
                     "critical")),
                 depth: int | None = _depth(str(DEFAULTS.max_depth)),
                 limit: int = Query(default=50, ge=1, le=1000, description="At most this many paths"),
                 limits=Depends(_limits), ctx: Context = Depends(READ)) -> dict[str, Any]:
    found, jewels = answers.find_attack_paths(_graph(ctx, limits), to, depth, limit)
    return answers.attack_paths(to, found, jewels)


@router.get("/blast-radius", response_model=BlastRadiusAnswer, responses=responses(404),
            summary="What exploiting a risk reaches: assets and crown jewels")
def blast_radius(key: str = Query(description="Key of the risk"),
                 depth: int | None = _depth(str(DEFAULTS.max_depth)),
                 limits=Depends(_limits), ctx: Context = Depends(READ)) -> dict[str, Any]:
    assets, jewels = _graph(ctx, limits).blast_radius(_key(key), depth)
    return answers.blast_radius(key, assets, jewels)


@router.get("/capability-impact", response_model=CapabilityImpactAnswer, responses=responses(),
            summary="Per capability: the assets it found and their open high/critical risks")
def capability_impact(limits=Depends(_limits), ctx: Context = Depends(READ)) -> dict[str, Any]:
    return {"capabilities": _graph(ctx, limits).capability_impact()}


MEDIA = {"mermaid": "text/vnd.mermaid; charset=utf-8", "dot": "text/vnd.graphviz; charset=utf-8"}


@router.get("/export", response_model=GraphDocumentOut,
            responses={**responses(404), 200: {"description": "The subgraph", "content": {
                "text/vnd.mermaid": {"schema": {"type": "string"}},
                "text/vnd.graphviz": {"schema": {"type": "string"}}}}},
            summary="The subgraph around an entity: JSON graph format, Mermaid or DOT")
def export(key: str = KEY, depth: int = Query(default=2, ge=0, le=HARD_MAX_DEPTH,
                                              description="Within this many relationships, "
                                                          "either direction"),
           kind: list[Relationship] = KINDS,
           fmt: Literal["json", "mermaid", "dot"] = Query(
               default="json", alias="format", description="json: the format `POST /v1/batch` and "
                                           "`bastion import` read; mermaid or dot: a drawing"),
           limits=Depends(_limits), ctx: Context = Depends(READ)):
    sub = _graph(ctx, limits).subgraph(_key(key), depth, _kinds(kind))
    if fmt == "mermaid":
        return Response(to_mermaid(sub, root=key), media_type=MEDIA["mermaid"])
    if fmt == "dot":
        return Response(to_dot(sub, root=key), media_type=MEDIA["dot"])
    doc = jsonformat.export_document(ctx.tenant, sub, root=key, depth=depth)
    doc["nodes"] = [mask_record(n, ctx.role) for n in doc["nodes"]]
    return doc
