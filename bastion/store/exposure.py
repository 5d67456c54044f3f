"""Exposure analysis on top of the generic traversal (`bastion.store.traversal`): attack paths
from internet-exposed entry points to crown jewels, the blast radius of a risk, provenance (how an
entity was found, by which tool, in which import run) and what each capability found. Same
guarantees as every graph query: inside the store, tenant-scoped, on both engines, bounded by
depth, rows visited, the cost guard and (PostgreSQL) the statement timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

from sqlalchemy import Connection, select

from bastion.errors import InvalidValue
from bastion.schema.keys import build_key, kind_of, node_id
from bastion.schema.kinds import REGISTRY
from bastion.store.query import chunks
from bastion.store.tables import edge, event, import_run, node, typed
from bastion.store.traversal import Hop, Traversal

# Relationships that carry access: what an attacker can move along (issue 5).
ACCESS_KINDS = ("RESOLVES_TO", "HAS_PORT", "CONNECTS_TO", "DEPENDS_ON", "ACCESSIBLE_BY",
                "HAS_VULNERABILITY")
# Up to this many crown jewels, attack paths are searched backward from each jewel.
BACKWARD_JEWELS = 200
SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
OPEN_RISK_STATES = ("triage", "open")
# Provenance climbs from an entity to what it was found from: DISCOVERED edges from these kinds,
# and the entity a port or a risk sits on. A DISCOVERED edge from a capability or a job names
# who found the entity instead.
CHAIN_SOURCES = ("seed", "asset", "port")
_UPWARD = ("DISCOVERED", "HAS_PORT", "HAS_VULNERABILITY")


@dataclass(frozen=True)
class ProvenanceStep:
    key: str
    kind: str
    capabilities: tuple[str, ...]  # capability/job keys (or `capability` edge properties) that found it


@dataclass(frozen=True)
class ImportRunRef:
    """An import run whose events changed the entity (created, updated, re-opened it)."""

    id: int
    source: str
    status: str
    started_at: datetime
    correlation_id: str
    files: tuple[str, ...]  # the files the run read
    formats: tuple[str, ...]  # their formats (the tools that wrote them)


@dataclass(frozen=True)
class Provenance:
    key: str
    # Root first, ending at `key`: the shortest chain from each root. A root is a seed or an
    # entity nothing discovered; an entity discovered only from inside a cycle is never one.
    chains: list[list[ProvenanceStep]]
    found_on: str | None  # a risk: the entity it sits on; a port: its asset
    tools: tuple[str, ...]  # what found `key`: capabilities or jobs (a risk: the tool that reported it)
    runs: list[ImportRunRef]  # import runs whose events changed `key`, oldest first
    # Entities `key` was found from that lead back to no root: they were only discovered from
    # one another (a cycle). When every way up ends there, no seed is reachable.
    stranded: list[str] = field(default_factory=list)
    truncated: bool = False  # the depth limit cut a chain before its root

    @property
    def seed_reachable(self) -> bool:
        return any(chain[0].kind == "seed" for chain in self.chains)


@dataclass(frozen=True)
class AttackPath:
    entry: str
    crown_jewel: str
    path: list[str]  # node keys, entry first
    worst_severity: str | None  # of open risks on the path's entities
    risks: list[str] = field(default_factory=list)  # open risk keys on the way, worst first


class Graph(Traversal):
    """Graph queries of one tenant (`TenantStore.graph()`): the generic traversal and the
    exposure analysis."""

    # -- attack surface ----------------------------------------------------------------------------

    def _entry_points(self, conn: Connection, among: Sequence[int] | None = None) -> set[int]:
        """Internet-exposed assets (all, or those `among` these ids): exposure external and an
        open port, a URL, or an open risk — on the asset, or on an address it resolves to."""
        asset = typed["asset"]
        ext = select(asset.c.node_id, asset.c["class"]).where(
            self.scope.where(asset), asset.c.exposure == "external")
        candidates: dict[int, str] = {}
        if among is None:
            candidates.update((r[0], r[1]) for r in conn.execute(ext))
        else:
            for chunk in chunks(sorted(set(among))):
                stmt = ext.where(self.scope.id_in(asset.c.node_id, chunk))
                candidates.update((r[0], r[1]) for r in conn.execute(stmt))
        entries = self._directly_exposed(conn, candidates)
        # A name that resolves to an exposed address is reached through it: exposed too.
        names = sorted(set(candidates) - entries)
        if names:
            pairs = self._expand(conn, names, "out", ("RESOLVES_TO",))
            targets = sorted({b for _a, b in pairs})
            exposed = self._entry_points(conn, targets) if among is not None else entries
            entries.update(a for a, b in pairs if b in exposed)
        return entries

    def _directly_exposed(self, conn: Connection, candidates: dict[int, str]) -> set[int]:
        port, risk = typed["port"], typed["risk"]
        entries = {i for i, cls in candidates.items() if cls == "url"}
        for chunk in chunks(sorted(set(candidates) - entries)):
            with_port = (select(edge.c.source_id)
                         .join(port, (port.c.tenant_id == edge.c.tenant_id) & (port.c.node_id == edge.c.target_id))
                         .where(self.scope.where(edge), edge.c.kind == "HAS_PORT", port.c.state == "open",
                                self.scope.id_in(edge.c.source_id, chunk)))
            with_risk = (select(edge.c.source_id)
                         .join(risk, (risk.c.tenant_id == edge.c.tenant_id) & (risk.c.node_id == edge.c.target_id))
                         .where(self.scope.where(edge), edge.c.kind == "HAS_VULNERABILITY",
                                risk.c.status.in_(OPEN_RISK_STATES), self.scope.id_in(edge.c.source_id, chunk)))
            entries.update(conn.execute(with_port).scalars())
            entries.update(conn.execute(with_risk).scalars())
        return entries

    def _crown_jewels(self, conn: Connection, selector: str | None) -> set[int]:
        """Assets marked critical (criticality, or a tag attribute), or those a selector names:
        a key, `field=value` on asset fields, or `tag=VALUE`."""
        asset, attribute = typed["asset"], typed["attribute"]
        if selector and "\x00" in selector:  # PostgreSQL text cannot hold it: nothing matches
            raise InvalidValue(f"crown-jewel selector {selector!r} contains a NUL character")
        if selector and selector.startswith("#"):
            return set(self._require(conn, selector))
        field_name, value = ("criticality", "critical")
        tag = "critical"
        if selector:
            field_name, sep, value = selector.partition("=")
            if not sep or not value:
                raise InvalidValue(f"crown-jewel selector {selector!r}: use a key, FIELD=VALUE or tag=VALUE")
            tag = value if field_name == "tag" else None
            if field_name != "tag" and field_name not in REGISTRY.entity("asset").field_names:
                raise InvalidValue(f"asset has no field {field_name!r}")
        jewels: set[int] = set()
        if field_name != "tag":
            jewels.update(conn.execute(select(asset.c.node_id).where(
                self.scope.where(asset), asset.c[field_name] == value)).scalars())
        if tag is not None:
            tagged = (select(edge.c.source_id)
                      .join(attribute, (attribute.c.tenant_id == edge.c.tenant_id)
                            & (attribute.c.node_id == edge.c.target_id))
                      .where(self.scope.where(edge), edge.c.kind == "HAS_ATTRIBUTE",
                             edge.c.source_kind == "asset", attribute.c.name == "tag",
                             attribute.c.value == tag))
            jewels.update(conn.execute(tagged).scalars())
        return jewels

    def crown_jewels(self, selector: str | None = None) -> list[str]:
        """The keys of the crown jewels a selector names (see `attack_paths`); by default the
        assets marked critical (criticality, or tagged critical)."""
        with self._tx() as conn:
            return sorted(k for k, _kind in self._keys(conn, self._crown_jewels(conn, selector)).values())

    def _open_risks(self, conn: Connection, ids: set[int]) -> dict[int, list[tuple[int, str, str]]]:
        """Open risks sitting on these entities: id → [(rank, severity, risk key)]."""
        risk = typed["risk"]
        rnode = node.alias("rnode")
        out: dict[int, list[tuple[int, str, str]]] = {}
        for chunk in chunks(sorted(ids)):
            stmt = (select(edge.c.source_id, risk.c.severity, rnode.c.key)
                    .join(risk, (risk.c.tenant_id == edge.c.tenant_id) & (risk.c.node_id == edge.c.target_id))
                    .join(rnode, (rnode.c.tenant_id == edge.c.tenant_id) & (rnode.c.id == edge.c.target_id))
                    .where(self.scope.where(edge), edge.c.kind == "HAS_VULNERABILITY",
                           risk.c.status.in_(OPEN_RISK_STATES), self.scope.id_in(edge.c.source_id, chunk)))
            for source, severity, key in conn.execute(stmt):
                out.setdefault(source, []).append((SEVERITY_RANK[severity], severity, key))
        return out

    def attack_paths(self, to: str | None = None, depth: int | None = None,
                     limit: int = 50) -> list[AttackPath]:
        """Shortest paths from internet-exposed entry points to crown jewels along relationships
        that carry access, for each crown jewel from its nearest entry points. Jewels are few:
        each is searched backward (frontier expansion on in-edges) until a level holds entry
        points, and exposure is checked only for what the search visits. A large jewel set is
        searched forward from every entry at once instead. Ranked by length, then by the worst
        open risk on the way (worst first)."""
        depth = self._depth(depth)
        with self._tx() as conn:
            jewels = sorted(self._crown_jewels(conn, to))
            if not jewels:
                return []
            if len(jewels) <= BACKWARD_JEWELS:
                self._guard(depth, ACCESS_KINDS, "in", sources=len(jewels), what="attack-paths", conn=conn)
                paths = self._paths_backward(conn, jewels, depth)
            else:
                entries = sorted(self._entry_points(conn))
                self._guard(depth, ACCESS_KINDS, "out", sources=len(entries), what="attack-paths", conn=conn)
                paths = self._paths_forward(conn, entries, set(jewels), depth)
            risks = self._open_risks(conn, {i for p in paths for i in p})
            names = self._keys(conn, {i for p in paths for i in p})
        result = []
        for p in paths:
            found = sorted((r for i in p for r in risks.get(i, [])), key=lambda r: (-r[0], r[2]))
            result.append(AttackPath(names[p[0]][0], names[p[-1]][0], [names[i][0] for i in p],
                                     found[0][1] if found else None, [r[2] for r in found]))
        result.sort(key=lambda a: (len(a.path), -SEVERITY_RANK.get(a.worst_severity or "", -1), a.path))
        return result[:limit]

    def _paths_backward(self, conn: Connection, jewels: list[int], depth: int) -> list[list[int]]:
        """One backward search per jewel, all advanced together: per level one expansion of
        every live frontier and one exposure check of everything newly reached."""
        succ: dict[int, dict[int, int | None]] = {j: {j: None} for j in jewels}
        frontier: dict[int, list[int]] = {j: [j] for j in jewels}
        exposed = self._entry_points(conn, jewels)
        found: dict[int, list[int]] = {j: [j] for j in jewels if j in exposed}
        visited = 0
        for _ in range(depth):
            live = [j for j in jewels if j not in found and frontier[j]]
            if not live:
                break
            preds: dict[int, list[int]] = {}
            pairs = self._expand(conn, sorted({x for j in live for x in frontier[j]}), "in", ACCESS_KINDS)
            visited += len(pairs)
            self._visited(visited, "attack-paths")
            for b, a in sorted(pairs):  # a → b along an access relationship
                preds.setdefault(b, []).append(a)
            for j in live:
                seen, nxt = succ[j], []
                for b in frontier[j]:
                    for a in preds.get(b, ()):
                        if a not in seen:
                            seen[a] = b
                            nxt.append(a)
                frontier[j] = nxt
            reached = {a for j in live for a in frontier[j]}
            exposed = self._entry_points(conn, sorted(reached)) if reached else set()
            for j in live:
                hits = sorted(a for a in frontier[j] if a in exposed)
                if hits:
                    found[j] = hits
        paths = []
        for j, entries in found.items():
            for entry in entries:
                path, x = [], entry
                while x is not None:
                    path.append(x)
                    x = succ[j][x]
                paths.append(path)
        return paths

    def _paths_forward(self, conn: Connection, entries: list[int], jewels: set[int],
                       depth: int) -> list[list[int]]:
        pred: dict[int, int | None] = {e: None for e in entries}
        frontier, visited = list(entries), 0
        for _ in range(depth):
            if not frontier or jewels <= pred.keys():
                break
            pairs = self._expand(conn, frontier, "out", ACCESS_KINDS)
            visited += len(pairs)
            self._visited(visited, "attack-paths")
            frontier = []
            for a, b in sorted(pairs):
                if b not in pred:
                    pred[b] = a
                    frontier.append(b)
        paths = []
        for jewel in sorted(jewels & pred.keys()):
            path, x = [], jewel
            while x is not None:
                path.append(x)
                x = pred[x]
            paths.append(path[::-1])
        return paths

    def blast_radius(self, risk_key: str, depth: int | None = None) -> tuple[list[Hop], list[str]]:
        """What an attacker holding the entity a risk sits on (for a port or a technology: the
        hosts running it) can reach: assets within `depth` along relationships that carry
        access, and the crown jewels among them."""
        if kind_of(risk_key) != "risk":
            raise InvalidValue(f"{risk_key} is not a risk key")
        depth = self._depth(depth)
        self._guard(depth, ACCESS_KINDS, "out", what="blast-radius", revisits=True)
        risk = typed["risk"]
        with self._tx() as conn:
            (rid,) = self._require(conn, risk_key)
            target = conn.execute(select(risk.c.target).where(
                self.scope.where(risk), risk.c.node_id == rid)).scalar_one()
            starts = self._require(conn, target)
            if kind_of(target) != "asset":
                # Holding a port or a piece of software means holding the hosts that run it.
                hosts = self._expand(conn, starts, "in", ("HAS_PORT", "HAS_TECHNOLOGY"))
                starts = sorted(set(starts) | {h for _t, h in hosts})
            dist = self._reach_ids(conn, starts, depth, ACCESS_KINDS, "out")
            names = self._keys(conn, dist)
            jewels = self._crown_jewels(conn, None) & dist.keys()
        assets = sorted((Hop(names[i][0], names[i][1], d) for i, d in dist.items()
                         if names[i][1] == "asset"), key=lambda h: (h.distance, h.key))
        return assets, sorted(names[i][0] for i in jewels)

    def capability_impact(self) -> list[dict]:
        """Per capability: assets it discovered (directly, or through its jobs) and the high and
        critical risks that are not closed on those assets and their ports."""
        job, risk, port_t = typed["job"], typed["risk"], typed["port"]
        src = node.alias("src")
        by_cap: dict[str, set[int]] = {}
        with self._tx() as conn:
            caps = conn.execute(select(node.c.key).where(self.scope.where(node), node.c.kind == "capability")).scalars()
            for cap in caps:
                by_cap.setdefault(cap, set())
            direct = (select(src.c.key, edge.c.target_id)
                      .join(src, (src.c.tenant_id == edge.c.tenant_id) & (src.c.id == edge.c.source_id))
                      .where(self.scope.where(edge), edge.c.kind == "DISCOVERED",
                             edge.c.source_kind == "capability", edge.c.target_kind == "asset"))
            for cap, asset_id in conn.execute(direct):
                by_cap.setdefault(cap, set()).add(asset_id)
            via_job = (select(job.c.capability, edge.c.target_id)
                       .join(job, (job.c.tenant_id == edge.c.tenant_id) & (job.c.node_id == edge.c.source_id))
                       .where(self.scope.where(edge), edge.c.kind == "DISCOVERED",
                              edge.c.source_kind == "job", edge.c.target_kind == "asset"))
            for name, asset_id in conn.execute(via_job):
                by_cap.setdefault(f"#capability#{name}", set()).add(asset_id)
            assets = {i for ids in by_cap.values() for i in ids}
            # ports of those assets carry findings too
            owner: dict[int, int] = {a: a for a in assets}
            for a, p in self._expand(conn, sorted(assets), "out", ("HAS_PORT",)):
                owner[p] = a
            severe: dict[int, dict[str, set[int]]] = {}
            for chunk in chunks(sorted(owner)):
                stmt = (select(edge.c.source_id, edge.c.target_id, risk.c.severity)
                        .join(risk, (risk.c.tenant_id == edge.c.tenant_id) & (risk.c.node_id == edge.c.target_id))
                        .where(self.scope.where(edge), edge.c.kind == "HAS_VULNERABILITY",
                               risk.c.severity.in_(("high", "critical")),
                               risk.c.status.notin_(("remediated", "deleted")),
                               self.scope.id_in(edge.c.source_id, chunk)))
                for source, risk_id, severity in conn.execute(stmt):
                    severe.setdefault(owner[source], {}).setdefault(severity, set()).add(risk_id)
        out = []
        for cap, ids in by_cap.items():
            high = set().union(*(severe.get(a, {}).get("high", set()) for a in ids)) if ids else set()
            crit = set().union(*(severe.get(a, {}).get("critical", set()) for a in ids)) if ids else set()
            out.append({"capability": cap, "assets": len(ids), "high": len(high), "critical": len(crit)})
        return sorted(out, key=lambda r: (-r["critical"], -r["high"], -r["assets"], r["capability"]))

    # -- provenance ----------------------------------------------------------------------------------

    def provenance(self, key: str, depth: int | None = None) -> Provenance:
        """How an entity was found: the DISCOVERED chains (through seeds, assets, ports, and the
        entity a port or a risk sits on) from each root down to it, root first, each step with
        the capabilities or jobs that found it; the tools that found it and the import runs
        that recorded it. One level-by-level climb: a cycle is climbed once, so a chain never
        starts inside it; what leads back to no root is reported as stranded."""
        depth = self._depth(depth)
        with self._tx() as conn:
            (start,) = self._require(conn, key)
            kinds = {start: kind_of(key)}
            dist = {start: 0}
            parents: dict[int, set[int]] = {}  # entity → what it was found from
            found_by: dict[int, set[int | str]] = {}  # entity → capability/job ids, edge labels
            cut: set[int] = set()  # found from something past the depth limit
            on: int | None = None  # the entity a port or a risk sits on
            frontier, level, visited = [start], 0, 0
            while frontier:
                rows = self._upward(conn, frontier)
                visited += len(rows)
                self._visited(visited, "provenance")
                nxt = []
                for target, rel, source, source_kind, props in rows:
                    if target == start and rel != "DISCOVERED":
                        on = source
                    if rel == "DISCOVERED" and isinstance(props, dict) and props.get("capability"):
                        found_by.setdefault(target, set()).add(str(props["capability"]))
                    if rel == "DISCOVERED" and source_kind not in CHAIN_SOURCES:
                        if source_kind in ("capability", "job", "integration"):
                            found_by.setdefault(target, set()).add(source)
                        continue
                    if kinds[target] == "seed":
                        continue  # a seed is a root, whatever else names it
                    if level == depth:
                        cut.add(target)
                        continue
                    parents.setdefault(target, set()).add(source)
                    if source not in dist:
                        dist[source], kinds[source] = level + 1, source_kind
                        nxt.append(source)
                frontier, level = sorted(nxt), level + 1
            children: dict[int, set[int]] = {}
            for child, ups in parents.items():
                for up in ups:
                    children.setdefault(up, set()).add(child)
            roots = [i for i in dist if kinds[i] == "seed" or (i not in parents and i not in cut)]
            grounded = _below(roots, children) | _below(cut, children)
            stranded = set(dist) - grounded
            tool_ids = {x for ids in found_by.values() for x in ids if isinstance(x, int)}
            names = self._keys(conn, set(dist) | tool_ids | ({on} if on is not None else set()))
            tools = {i: {names[x][0] if isinstance(x, int) else x for x in found_by.get(i, ())}
                     for i in dist}
            found_on = names[on][0] if on is not None else None
            if kinds[start] == "risk":
                tools[start].update(self._reporting_tool(conn, start))
            runs = self._runs_of(conn, key)
        chains = []
        for root in roots:
            chain = [root]
            while chain[-1] != start:
                below = [c for c in children[chain[-1]] if dist[c] == dist[chain[-1]] - 1]
                chain.append(min(below, key=lambda c: names[c][0]))
            chains.append([ProvenanceStep(names[i][0], names[i][1], tuple(sorted(tools[i])))
                           for i in chain])
        chains.sort(key=lambda c: (len(c), [s.key for s in c]))
        return Provenance(key, chains, found_on, tuple(sorted(tools[start])), runs,
                          sorted(names[i][0] for i in stranded), bool(cut - stranded))

    def _upward(self, conn: Connection, ids: Sequence[int]) -> list[tuple]:
        """The edges provenance climbs into these entities: (target, relationship, source,
        source kind, properties)."""
        out: list[tuple] = []
        for chunk in chunks(ids):
            stmt = (select(edge.c.target_id, edge.c.kind, edge.c.source_id, edge.c.source_kind,
                           edge.c.properties)
                    .where(self.scope.where(edge), self.scope.id_in(edge.c.target_id, chunk),
                           edge.c.kind.in_(_UPWARD))
                    .order_by(edge.c.target_id, edge.c.kind, edge.c.source_id))
            out.extend(tuple(r) for r in conn.execute(stmt))
        return out

    def _reporting_tool(self, conn: Connection, risk_id: int) -> set[str]:
        """The capability of the tool a risk's `source` names (`nuclei:weekly` → nuclei), when
        the store has it: imports record findings without a DISCOVERED edge from the tool."""
        risk = typed["risk"]
        source = conn.execute(select(risk.c.source).where(
            self.scope.where(risk), risk.c.node_id == risk_id)).scalar_one_or_none()
        if not source:
            return set()
        try:
            cap = build_key(REGISTRY.entity("capability"), {"name": source.split(":", 1)[0].lower()})
        except InvalidValue:
            return set()
        exists = conn.execute(self.scope.nodes_by_id([node_id(cap)], node.c.key)).scalars().first()
        return {cap} if exists == cap else set()

    def _runs_of(self, conn: Connection, key: str) -> list[ImportRunRef]:
        """The import runs whose events changed the entity: joined by correlation id."""
        cids = select(event.c.correlation_id).where(
            self.scope.where(event), event.c.entity_key == key,
            event.c.correlation_id.is_not(None)).distinct()
        stmt = (select(import_run.c.id, import_run.c.source, import_run.c.status,
                       import_run.c.started_at, import_run.c.correlation_id, import_run.c.files)
                .where(self.scope.where(import_run), import_run.c.correlation_id.in_(cids))
                .order_by(import_run.c.id))
        out = []
        for *head, files in conn.execute(stmt):
            files = [f for f in files or [] if isinstance(f, dict)]
            out.append(ImportRunRef(*head, tuple(str(f.get("name")) for f in files if f.get("name")),
                                    tuple(dict.fromkeys(str(f["format"]) for f in files
                                                        if f.get("format")))))
        return out


def _below(starts, children: dict[int, set[int]]) -> set[int]:
    """Everything reachable downward (from what an entity was found from, to it) from `starts`."""
    seen, todo = set(starts), list(starts)
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen
