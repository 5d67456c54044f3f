"""The answers of graph queries as plain data: what `bastion graph … --json` prints and the HTTP
API returns, so both front ends give the same shape from the same library calls. Only keys, kinds
and positions: no entity field values (the subgraph export carries those; see jsonformat)."""

from __future__ import annotations

from typing import Any, Sequence

from bastion.store.exposure import AttackPath, Graph, Provenance
from bastion.store.traversal import Hop, Neighbor


def neighbors(key: str, direction: str, kinds: Sequence[str] | None,
              found: Sequence[Neighbor]) -> dict[str, Any]:
    return {"key": key, "direction": direction, "kinds": kinds,
            "nodes": [{"key": n.key, "kind": n.kind, "distance": 1,
                       "relationship": n.relationship, "direction": n.direction}
                      for n in found]}


def reach(key: str, depth: int, direction: str, kinds: Sequence[str] | None,
          hops: Sequence[Hop]) -> dict[str, Any]:
    return {"key": key, "depth": depth, "direction": direction, "kinds": kinds,
            "nodes": [{"key": h.key, "kind": h.kind, "distance": h.distance} for h in hops]}


def find_paths(graph: Graph, source: str, target: str, kinds: Sequence[str] | None,
               direction: str, depth: int | None, all_paths: bool,
               max_paths: int) -> list[list[str]]:
    """One shortest path (as a list of at most one), or the `max_paths` shortest simple paths."""
    if all_paths:
        return graph.simple_paths(source, target, kinds, direction, depth, max_paths)
    one = graph.shortest_path(source, target, kinds, direction, depth)
    return [one] if one is not None else []


def paths(source: str, target: str, found: Sequence[list[str]]) -> dict[str, Any]:
    return {"from": source, "to": target,
            "paths": [{"length": len(p) - 1, "path": p} for p in found]}


def provenance(key: str, found: Provenance) -> dict[str, Any]:
    return {"key": key, "found_on": found.found_on, "tools": list(found.tools),
            "runs": [{"id": r.id, "source": r.source, "status": r.status,
                      "started_at": r.started_at, "correlation_id": r.correlation_id,
                      "files": list(r.files), "formats": list(r.formats)}
                     for r in found.runs],
            "seed_reachable": found.seed_reachable, "stranded": found.stranded,
            "truncated": found.truncated,
            "chains": [{"path": [s.key for s in chain],
                        "steps": [{"position": i, "key": s.key, "kind": s.kind,
                                   "capabilities": list(s.capabilities)}
                                  for i, s in enumerate(chain)]}
                       for chain in found.chains]}


def find_attack_paths(graph: Graph, to: str | None, depth: int | None,
                      limit: int) -> tuple[list[AttackPath], int | None]:
    """The attack paths, and when there are none the number of crown jewels (to tell "no crown
    jewel defined" from "none reachable"); None when there are paths."""
    found = graph.attack_paths(to, depth, limit)
    return found, (len(graph.crown_jewels(to)) if not found else None)


def attack_paths(to: str | None, found: Sequence[AttackPath], jewels: int | None) -> dict[str, Any]:
    return {"to": to, **({"crown_jewels": jewels} if jewels is not None else {}), "paths": [
        {"entry": a.entry, "crown_jewel": a.crown_jewel, "length": len(a.path) - 1,
         "worst_severity": a.worst_severity, "risks": a.risks, "path": a.path}
        for a in found]}


def blast_radius(risk_key: str, assets: Sequence[Hop], jewels: Sequence[str]) -> dict[str, Any]:
    crown = set(jewels)
    return {"risk": risk_key, "nodes": [
        {"key": h.key, "kind": h.kind, "distance": h.distance, "crown_jewel": h.key in crown}
        for h in assets], "crown_jewels": list(jewels)}
