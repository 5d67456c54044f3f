"""Graph: attack paths from internet-exposed entry points to crown jewels drawn as a graph, the
neighbourhood of any entity expanded hop by hop, and the provenance chain of an entity.

The answers are the API's /v1/graph routes' (the same functions, called with the console's
Context), so the cost guard is the API's: a refused query (CostExceeded) is shown as a message
naming the limit, never as an empty canvas. Keys are shown as the role may see them
(bastion.schema.roles.mask_key); graph elements are identified by an opaque hash of the real key,
so a masked node can be drawn but not expanded (its key cannot be asked for)."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from bastion.errors import BastionError, CostExceeded
from bastion.schema.kinds import REGISTRY
from bastion.schema.roles import mask_key
from bastion.server.context import Context
from bastion.server.problems import _status_of
from bastion.server.routes import graph as api
from bastion.store.traversal import HARD_MAX_DEPTH
from bastion.web.app import READ, render, url, while_unchanged

router = APIRouter()

PATHS_SHOWN = 50  # attack paths drawn, as the API's default


def node_id(key: str) -> str:
    return "n" + hashlib.sha256(key.encode()).hexdigest()[:16]


REGISTRY_KINDS = frozenset(REGISTRY.node_kinds)  # kind names inside keys (a port's asset …)


def label(shown: str) -> str:
    """A short label for a key as shown: its components without the kind, repeats dropped."""
    parts = shown.lstrip("#").split("#")
    kind, rest = parts[0], parts[1:]
    out: list[str] = []
    for p in rest:
        if p and (not out or out[-1] != p) and p not in REGISTRY_KINDS:
            out.append(p)
    if kind == "port" and len(out) >= 2:
        return f"{out[1]}/{out[0]} {out[-1]}"
    text = " ".join(out[-2:] if len(out) > 2 else out) or shown
    return text if len(text) <= 48 else text[:47] + "…"


class Elements:
    """Cytoscape elements built from keys, deduplicated, masked for a role."""

    def __init__(self, role: str):
        self.role = role
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[str, dict[str, Any]] = {}

    def node(self, key: str, kind: str | None = None, **marks: Any) -> str:
        nid = node_id(key)
        shown = mask_key(key, self.role)
        data = self.nodes.setdefault(nid, {"id": nid, "key": shown, "label": label(shown),
                                           "kind": kind or shown.lstrip("#").split("#")[0],
                                           "expandable": shown == key})
        for name, value in marks.items():
            data[name] = data.get(name) or value
        return nid

    def edge(self, source: str, target: str, relationship: str | None = None) -> None:
        s, t = node_id(source), node_id(target)
        eid = "e" + hashlib.sha256(f"{s}|{t}|{relationship or ''}".encode()).hexdigest()[:16]
        self.edges.setdefault(eid, {"id": eid, "source": s, "target": t,
                                    "relationship": relationship or ""})

    def as_list(self) -> list[dict[str, Any]]:
        return ([{"group": "nodes", "data": n} for n in self.nodes.values()]
                + [{"group": "edges", "data": e} for e in self.edges.values()])


def neighbourhood(ctx: Context, key: str, limits: tuple[int | None, int | None]) -> Elements:
    """The entity and everything one relationship away."""
    answer = api.neighbors(key=key, direction="both", kind=[], limits=limits, ctx=ctx)
    els = Elements(ctx.role)
    els.node(key, centre=True)
    for n in answer["nodes"]:
        els.node(n["key"], n["kind"])
        if n["direction"] == "out":
            els.edge(key, n["key"], n["relationship"])
        else:
            els.edge(n["key"], key, n["relationship"])
    return els


def _refusal(exc: BastionError) -> dict[str, Any]:
    return {"message": str(exc), "refused": isinstance(exc, CostExceeded)}


Depth = Query(default=None, ge=0, le=HARD_MAX_DEPTH)
Budget = Query(default=None, ge=1, le=api.DEFAULTS.budget,
               description="Lower the cost guard's budget of estimated edge visits")
MaxRows = Query(default=None, ge=1, le=api.DEFAULTS.max_rows,
                description="Lower the cost guard's cap on rows visited")


@router.get("/graph")
def graph_page(request: Request, key: str | None = Query(default=None, max_length=2000),
               to: str | None = Query(default=None, max_length=1000), depth: int | None = Depth,
               budget: int | None = Budget, max_rows: int | None = MaxRows,
               ctx: Context = Depends(READ)):
    limits = (budget, max_rows)
    params = {"key": key, "to": to, "depth": depth, "budget": budget, "max_rows": max_rows}
    values: dict[str, Any] = {"params": params, "refusal": None, "paths": None,
                              "provenance": None, "provenance_refusal": None, "elements": None,
                              "neighbors_url": url("/graph/neighbors.json", budget=budget,
                                                   max_rows=max_rows)}
    if key:
        values["shown_key"] = mask_key(key, ctx.role)
        try:
            values["elements"] = neighbourhood(ctx, key, limits).as_list()
        except BastionError as exc:
            values["refusal"] = _refusal(exc)
        try:
            found = api.provenance(key=key, depth=depth, limits=limits, ctx=ctx)
            values["provenance"] = {
                **found, "found_on": mask_key(found["found_on"], ctx.role) if found["found_on"] else None,
                "stranded": [mask_key(k, ctx.role) for k in found["stranded"]],
                "chains": [[{**s, "key": mask_key(s["key"], ctx.role),
                             "capabilities": [mask_key(c, ctx.role) for c in s["capabilities"]]}
                            for s in chain["steps"]] for chain in found["chains"]]}
        except BastionError as exc:
            values["provenance_refusal"] = _refusal(exc)
    else:
        def attack_paths():
            try:
                return api.attack_paths(to=to, depth=depth, limit=PATHS_SHOWN, limits=limits,
                                        ctx=ctx), None
            except BastionError as exc:  # a refusal (the cost guard) is kept like an answer
                return None, exc

        # the tenant's whole exposure: computed once per state of its data
        answer, refused = while_unchanged(ctx, ("attack-paths", to, depth, limits), attack_paths)
        if refused is not None:
            values["refusal"] = _refusal(refused)
        else:
            els = Elements(ctx.role)
            for p in answer["paths"]:
                for k in p["path"]:
                    els.node(k, entry=k == p["entry"], jewel=k == p["crown_jewel"])
                for a, b in zip(p["path"], p["path"][1:]):
                    els.edge(a, b)
            values["elements"] = els.as_list()
            values["paths"] = [{**p, "entry": mask_key(p["entry"], ctx.role),
                                "crown_jewel": mask_key(p["crown_jewel"], ctx.role),
                                "risks": [mask_key(r, ctx.role) for r in p["risks"]],
                                "path": [mask_key(k, ctx.role) for k in p["path"]]}
                               for p in answer["paths"]]
            values["crown_jewels"] = answer.get("crown_jewels")
    return render(request, ctx, "graph.html", **values)


@router.get("/graph/neighbors.json")
def graph_neighbors(key: str = Query(max_length=2000), budget: int | None = Budget,
                    max_rows: int | None = MaxRows, ctx: Context = Depends(READ)):
    """One more hop around an entity, as cytoscape elements; a refusal as {message, refused}."""
    try:
        return {"elements": neighbourhood(ctx, key, (budget, max_rows)).as_list()}
    except BastionError as exc:
        return JSONResponse(_refusal(exc), status_code=_status_of(exc)[0])
