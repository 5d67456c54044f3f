"""Graph queries over the node/edge tables, inside the store, on both engines.

Recursive CTEs (reach, simple paths, provenance) and level-by-level frontier expansion with the
frontier passed as one array/JSON parameter (bidirectional shortest path, multi-source attack
paths). Nothing copies the graph into memory whole. Every query is tenant-scoped, bounded by a
depth cap and a rows-visited cap, priced by a cost guard before it runs, and (PostgreSQL) by a
statement timeout.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import orjson
from sqlalchemy import BigInteger, Connection, String, and_, any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from bastion.errors import BastionError, InvalidValue, NotFound
from bastion.schema.keys import kind_of, node_id
from bastion.schema.kinds import REGISTRY
from bastion.store.query import Scope, chunks
from bastion.store.tables import edge, node

DIRECTIONS = ("out", "in", "both")
# Relationships that carry access: what an attacker can move along (issue 5).
ACCESS_KINDS = ("RESOLVES_TO", "HAS_PORT", "CONNECTS_TO", "DEPENDS_ON", "ACCESSIBLE_BY",
                "HAS_VULNERABILITY")
# Up to this many crown jewels, attack paths are searched backward from each jewel.
BACKWARD_JEWELS = 200
SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
OPEN_RISK_STATES = ("triage", "open")


class CostExceeded(BastionError):
    """A graph query refused (before or while running) because it would exceed a limit."""

    exit_code = 5


@dataclass(frozen=True)
class Limits:
    max_depth: int = 6  # default depth; hard cap is HARD_MAX_DEPTH
    max_rows: int = 200_000  # rows a traversal may visit before it is stopped
    budget: int = 2_000_000  # estimated edge visits a query may plan for
    timeout_ms: int = 10_000  # PostgreSQL statement_timeout per statement

HARD_MAX_DEPTH = 12


@dataclass(frozen=True)
class Hop:
    key: str
    kind: str
    distance: int


@dataclass(frozen=True)
class Neighbor:
    relationship: str
    direction: str  # "out": key → neighbor; "in": neighbor → key
    key: str
    kind: str


@dataclass(frozen=True)
class GraphEdge:
    source: str
    relationship: str
    target: str


@dataclass(frozen=True)
class Subgraph:
    nodes: list[Hop]
    edges: list[GraphEdge]


@dataclass(frozen=True)
class ProvenanceStep:
    key: str
    kind: str
    capabilities: tuple[str, ...]  # capability/job keys (or `capability` edge properties) that found it


@dataclass(frozen=True)
class AttackPath:
    entry: str
    crown_jewel: str
    path: list[str]  # node keys, entry first
    worst_severity: str | None  # of open risks on the path's entities
    risks: list[str] = field(default_factory=list)  # open risk keys on the way, worst first


def _join(preds: dict[int, int | None], succs: dict[int, int | None], meet: int) -> list[int]:
    """The path through `meet`: back along `preds` to the source, on along `succs` to the target."""
    left, x = [], meet
    while x is not None:
        left.append(x)
        x = preds[x]
    right, x = [], succs[meet]
    while x is not None:
        right.append(x)
        x = succs[x]
    return left[::-1] + right


_EXPANSION_SQL: dict[tuple, tuple[str, tuple[str, ...] | None]] = {}


def _expansion_sql(dialect, side: str, with_kinds: bool) -> tuple[str, tuple[str, ...] | None]:
    """The frontier expansion for one side, compiled once: (SQL, positional parameter order).

    PostgreSQL joins the frontier as `unnest(array)`: `= ANY(array)` makes the planner weigh
    each element (tens of milliseconds for thousands of ids) for the same index probes. SQLite
    reads the ids from one JSON parameter."""
    key = (dialect.name, side, with_kinds)
    if key not in _EXPANSION_SQL:
        near, far = ((edge.c.source_id, edge.c.target_id) if side == "out"
                     else (edge.c.target_id, edge.c.source_id))
        postgres = dialect.name == "postgresql"

        def rows_of(name: str, type_):
            if postgres:
                return func.unnest(bindparam(name, type_=ARRAY(type_))).table_valued("id").render_derived(name=name)
            return func.json_each(bindparam(name, type_=String)).table_valued("value", name=name)

        ids = rows_of("ids", BigInteger)
        if postgres:
            stmt = select(near, far).select_from(
                ids.join(edge, and_(edge.c.tenant_id == bindparam("tenant"), near == ids.c.id)))
        else:
            stmt = select(near, far).where(edge.c.tenant_id == bindparam("tenant"),
                                           near.in_(select(ids.c.value)))
        if with_kinds and postgres:  # a handful: an index condition
            stmt = stmt.where(edge.c.kind == any_(bindparam("kinds", type_=ARRAY(String))))
        elif with_kinds:
            kinds = rows_of("kinds", String)
            stmt = stmt.where(edge.c.kind.in_(select(kinds.c.value)))
        compiled = stmt.compile(dialect=dialect)
        _EXPANSION_SQL[key] = (compiled.string, compiled.positiontup)
    return _EXPANSION_SQL[key]


def _reverse(direction: str) -> str:
    return {"out": "in", "in": "out", "both": "both"}[direction]


class Graph:
    """Graph queries of one tenant (`TenantStore.graph()`)."""

    def __init__(self, scope: Scope, limits: Limits | None = None):
        self.scope = scope
        self.limits = limits or Limits()

    # -- argument checks ---------------------------------------------------------------------

    def _depth(self, depth: int | None) -> int:
        depth = self.limits.max_depth if depth is None else depth
        if not 0 <= depth <= HARD_MAX_DEPTH:
            raise InvalidValue(f"depth must be between 0 and {HARD_MAX_DEPTH}, not {depth}")
        return depth

    @staticmethod
    def _kinds(kinds: Iterable[str] | None) -> tuple[str, ...] | None:
        if kinds is None:
            return None
        kinds = tuple(dict.fromkeys(k.upper() for k in kinds))
        unknown = [k for k in kinds if k not in REGISTRY.relationships]
        if unknown:
            raise InvalidValue(f"unknown relationship {unknown[0]!r}; relationships: "
                               + ", ".join(REGISTRY.relationships))
        return kinds

    @staticmethod
    def _direction(direction: str) -> str:
        if direction not in DIRECTIONS:
            raise InvalidValue(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        return direction

    # -- plumbing ------------------------------------------------------------------------------

    def _tx(self):
        return _GuardedTransaction(self.scope, self.limits)

    def _require(self, conn: Connection, *keys: str) -> list[int]:
        ids = [node_id(k) for k in keys]
        found = {r.id: r.key for r in conn.execute(self.scope.nodes_by_id(ids, node.c.id, node.c.key))}
        for k, i in zip(keys, ids):
            if found.get(i) != k:
                kind_of(k)  # a malformed key is an InvalidValue, not a NotFound
                raise NotFound(f"no entity {k}")
        return ids

    def _keys(self, conn: Connection, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        out: dict[int, tuple[str, str]] = {}
        for chunk in chunks(sorted(set(ids))):
            for r in conn.execute(self.scope.nodes_by_id(chunk, node.c.id, node.c.key, node.c.kind)):
                out[r.id] = (r.key, r.kind)
        return out

    def _expand(self, conn: Connection, frontier: Sequence[int], direction: str,
                kinds: tuple[str, ...] | None) -> list[tuple[int, int]]:
        """One level of a frontier expansion: (from, to) pairs, the frontier as one parameter.

        The hottest statement of the graph queries, so it goes through the driver's cursor:
        SQLAlchemy's result rows cost more than the query once a level has thousands of edges."""
        pairs: list[tuple[int, int]] = []
        raw = conn.connection.driver_connection
        postgres = self.scope.postgres
        for chunk in chunks(sorted(frontier)):
            for side in ("out", "in"):
                if direction not in (side, "both"):
                    continue
                sql, order = _expansion_sql(conn.dialect, side, kinds is not None)
                values = {"tenant": self.scope.tenant_id, "ids": list(chunk),
                          "kinds": list(kinds) if kinds is not None else None}
                if postgres:  # the array as a text literal: psycopg's list dumper checks every item
                    values["ids"] = "{%s}" % ",".join(map(str, chunk))
                    params = values
                else:
                    params = [orjson.dumps(values[n]).decode() if n != "tenant" else values[n]
                              for n in order]
                cur = raw.cursor(binary=True) if postgres else raw.cursor()
                try:
                    cur.execute(sql, params)
                    pairs.extend(cur.fetchall())
                finally:
                    cur.close()
        return pairs

    # -- cost guard -------------------------------------------------------------------------------

    def stats(self, conn: Connection | None = None) -> dict[str, dict]:
        """Counts per node kind and relationship kind, with the largest fan-outs when refreshed."""
        from bastion.store.tables import graph_stats

        stmt = select(graph_stats).where(self.scope.where(graph_stats))
        if conn is None:
            with self.scope.transaction() as own:
                rows = own.execute(stmt).all()
        else:
            rows = conn.execute(stmt).all()
        return {r.name: {"count": r.count, "max_out": r.max_out, "max_in": r.max_in,
                         "refreshed_at": r.refreshed_at} for r in rows}

    def refresh_stats(self) -> dict[str, dict]:
        """Recompute the largest out- and in-degree of every relationship kind (one scan)."""
        from bastion.store.tables import graph_stats
        from datetime import datetime, timezone

        now = datetime.now(timezone.utc)
        with self.scope.transaction(write=True) as conn:
            for col, name in ((edge.c.source_id, "max_out"), (edge.c.target_id, "max_in")):
                per = (select(edge.c.kind, col.label("n"), func.count().label("deg"))
                       .where(self.scope.where(edge)).group_by(edge.c.kind, col).subquery())
                for kind, deg in conn.execute(select(per.c.kind, func.max(per.c.deg)).group_by(per.c.kind)):
                    conn.execute(graph_stats.update().where(
                        self.scope.where(graph_stats), graph_stats.c.name == kind)
                        .values({name: deg, "refreshed_at": now}))
        return self.stats()

    def estimate(self, depth: int, kinds: tuple[str, ...] | None, direction: str,
                 sources: int = 1, conn: Connection | None = None, revisits: bool = False) -> int:
        """Edge visits a traversal may need, from the kept counts. Per level the frontier grows by
        the followed relationships' average fan-out; the largest hub is added once (a hub is
        expanded once). A frontier expansion visits an edge at most once, so its total is capped
        by the edges that exist; a recursive CTE (`revisits`) may meet an edge once per level."""
        stats = self.stats(conn)
        rels = kinds or tuple(REGISTRY.relationships)
        both = direction == "both"
        edges = sum(stats.get(k, {}).get("count", 0) for k in rels) * (2 if both else 1)
        nodes = max(1, sum(stats.get(k, {}).get("count", 0) for k in REGISTRY.node_kinds))
        hub = max([max(stats.get(k, {}).get("max_out") or 0, stats.get(k, {}).get("max_in") or 0)
                   if both else (stats.get(k, {}).get("max_in" if direction == "in" else "max_out") or 0)
                   for k in rels] or [0])
        fan = max(1.0, edges / nodes)
        grown, frontier = 0.0, float(sources)
        for _ in range(depth):
            frontier = min(float(edges), frontier * fan)
            grown += frontier
        cap = edges * (depth if revisits else 1)
        return int(min(grown, cap) + (hub if depth else 0))

    def _guard(self, depth: int, kinds, direction: str, sources: int = 1, what: str = "query",
               conn: Connection | None = None, revisits: bool = False,
               asked: int | None = None) -> None:
        """`asked`: the depth the user gave, when the search runs to a different one."""
        est = self.estimate(depth, kinds, direction, sources, conn, revisits)
        depth = depth if asked is None else asked
        if est > self.limits.budget:
            raise CostExceeded(
                f"{what} refused: an estimated {est:,} edge visits exceeds the budget of "
                f"{self.limits.budget:,}; narrow it with a smaller --depth (now {depth}) or "
                f"--kind to follow fewer relationships, or raise the budget")

    def _visited(self, n: int, what: str) -> None:
        if n > self.limits.max_rows:
            raise CostExceeded(
                f"{what} stopped: it visited more than {self.limits.max_rows:,} rows; narrow it "
                f"with a smaller --depth or --kind")

    # -- queries ------------------------------------------------------------------------------------

    def neighbors(self, key: str, direction: str = "both",
                  kinds: Iterable[str] | None = None) -> list[Neighbor]:
        direction, kinds = self._direction(direction), self._kinds(kinds)
        out: list[Neighbor] = []
        with self._tx() as conn:
            (nid,) = self._require(conn, key)
            found: list[tuple[str, str, int]] = []
            for side in ("out", "in"):
                if direction not in (side, "both"):
                    continue
                near, far = ((edge.c.source_id, edge.c.target_id) if side == "out"
                             else (edge.c.target_id, edge.c.source_id))
                # Ids from the edge index first, keys after by id: joining node directly lets
                # PostgreSQL pick a hash join over the whole node table for a hub.
                stmt = select(edge.c.kind, far).where(self.scope.where(edge), near == nid)
                if kinds is not None:
                    stmt = stmt.where(edge.c.kind.in_(kinds))
                rows = conn.execute(stmt.limit(self.limits.max_rows + 1)).all()
                self._visited(len(rows), "neighbors")
                found.extend((side, kind, other) for kind, other in rows)
            names = self._keys(conn, {other for _s, _k, other in found})
        out = [Neighbor(kind, side, *names[other]) for side, kind, other in found]
        return sorted(out, key=lambda n: (n.direction == "in", n.relationship, n.key))

    def reach(self, key: str, depth: int | None = None, kinds: Iterable[str] | None = None,
              direction: str = "out") -> list[Hop]:
        depth, kinds, direction = self._depth(depth), self._kinds(kinds), self._direction(direction)
        self._guard(depth, kinds, direction, what="reach", revisits=True)
        with self._tx() as conn:
            (start,) = self._require(conn, key)
            dist = self._reach_ids(conn, [start], depth, kinds, direction)
            names = self._keys(conn, dist)
        hops = [Hop(names[i][0], names[i][1], d) for i, d in dist.items()]
        return sorted(hops, key=lambda h: (h.distance, h.key))

    def _reach_ids(self, conn: Connection, starts: Sequence[int], depth: int,
                   kinds: tuple[str, ...] | None, direction: str) -> dict[int, int]:
        """Shortest distance of everything within `depth`: one recursive CTE, cycle-safe because
        each (node, depth) pair is kept once and depth is bounded; stopped past the rows cap."""
        tenant = self.scope.tenant_id
        kind_filter = "AND kind IN :kinds" if kinds is not None else ""
        sides = []
        if direction in ("out", "both"):
            sides.append(f"SELECT source_id AS a, target_id AS b FROM edge "
                         f"WHERE tenant_id = :tenant {kind_filter}")
        if direction in ("in", "both"):
            sides.append(f"SELECT target_id AS a, source_id AS b FROM edge "
                         f"WHERE tenant_id = :tenant {kind_filter}")
        edges_sql = " UNION ALL ".join(sides)
        seed = " UNION ".join(f"SELECT :s{i}, 0" for i in range(len(starts)))
        sql = (f"WITH RECURSIVE r(id, d) AS ({seed} UNION "
               f"SELECT e.b, r.d + 1 FROM r JOIN ({edges_sql}) e ON e.a = r.id WHERE r.d < :depth) "
               f"SELECT id, d FROM r LIMIT :cap")
        params = {"tenant": tenant, "depth": depth, "cap": self.limits.max_rows + 1,
                  **{f"s{i}": s for i, s in enumerate(starts)}}
        stmt = text(sql)
        if kinds is not None:
            stmt = stmt.bindparams(bindparam("kinds", expanding=True))
            params["kinds"] = list(kinds)
        rows = conn.execute(stmt, params).all()
        self._visited(len(rows), "reach")
        dist: dict[int, int] = {}
        for i, d in rows:
            if d < dist.get(i, depth + 1):
                dist[i] = d
        return dist

    def shortest_path(self, source: str, target: str, kinds: Iterable[str] | None = None,
                      direction: str = "out", depth: int | None = None) -> list[str] | None:
        """One shortest path by bidirectional frontier expansion: each side grows a level at a
        time (the smaller first) until they meet, so work is ~2·b^(d/2) instead of b^d."""
        depth, kinds, direction = self._depth(depth), self._kinds(kinds), self._direction(direction)
        self._guard((depth + 1) // 2, kinds, direction, sources=2, what="path", asked=depth)
        with self._tx() as conn:
            src, dst = self._require(conn, source, target)
            ids = self._bidirectional(conn, src, dst, kinds, direction, depth)
            if ids is None:
                return None
            names = self._keys(conn, ids)
        return [names[i][0] for i in ids]

    def _bidirectional(self, conn, src: int, dst: int, kinds, direction: str,
                       depth: int) -> list[int] | None:
        if src == dst:
            return [src]
        preds = {src: None}
        succs = {dst: None}
        fwd, bwd = [src], [dst]
        levels, visited = 0, 0
        while fwd and bwd and levels < depth:
            forward = len(fwd) <= len(bwd)
            frontier, seen, other = (fwd, preds, succs) if forward else (bwd, succs, preds)
            pairs = self._expand(conn, frontier, direction if forward else _reverse(direction), kinds)
            visited += len(pairs)
            self._visited(visited, "path")
            if levels == depth - 1:  # the last level matters only where it meets the other side
                pairs = [(a, b) for a, b in pairs if b in other]
            found: dict[int, int] = {}  # new node -> its smallest predecessor, for a stable answer
            for a, b in pairs:
                if b not in seen and (b not in found or a < found[b]):
                    found[b] = a
            seen.update(found)
            nxt = sorted(found)
            levels += 1
            met = [b for b in nxt if b in other]
            if met:
                return _join(preds, succs, met[0])
            if forward:
                fwd = nxt
            else:
                bwd = nxt
        return None

    def simple_paths(self, source: str, target: str, kinds: Iterable[str] | None = None,
                     direction: str = "out", depth: int | None = None, limit: int = 10) -> list[list[str]]:
        """The `limit` shortest simple paths within `depth` edges. Distances to the target are
        computed first (a recursive CTE on the reversed graph) so the forward enumeration only
        extends paths that can still arrive in time."""
        depth, kinds, direction = self._depth(depth), self._kinds(kinds), self._direction(direction)
        if limit < 1:
            raise InvalidValue("limit must be at least 1")
        self._guard(depth, kinds, direction, what="paths")
        with self._tx() as conn:
            src, dst = self._require(conn, source, target)
            if src == dst:
                return [[source]]  # the path of no edges, as networkx (≥ 3.4) answers too
            to_target = self._reach_ids(conn, [dst], depth, kinds, _reverse(direction))
            if to_target.get(src, depth + 1) > depth:
                return []
            done: list[tuple[int, ...]] = []
            partial: list[tuple[int, ...]] = [(src,)]
            visited = 0
            while partial:
                adjacency: dict[int, set[int]] = {}
                for a, b in self._expand(conn, list({p[-1] for p in partial}), direction, kinds):
                    adjacency.setdefault(a, set()).add(b)
                nxt = []
                for p in partial:
                    left = depth - len(p)  # edges still allowed after this one
                    for b in adjacency.get(p[-1], ()):
                        if b in p or to_target.get(b, depth + 1) > left:
                            continue
                        (done if b == dst else nxt).append(p + (b,))
                visited += len(nxt)
                self._visited(visited, "paths")
                partial = nxt
            names = self._keys(conn, {i for p in done for i in p})
        paths = sorted(([names[i][0] for i in p] for p in done), key=lambda p: (len(p), p))
        return paths[:limit]

    def provenance(self, key: str, depth: int | None = None) -> list[list[ProvenanceStep]]:
        """How an entity was found: DISCOVERED chains through seeds, assets and ports back to a
        root (a seed, or an entity nothing discovered), root first; each step lists the
        capabilities or jobs that discovered it."""
        depth = self._depth(depth)
        contains = "instr" if not self.scope.postgres else "strpos"
        sql = (f"WITH RECURSIVE up(id, d, path) AS ("
               f" SELECT :start, 0, ',' || :start || ','"
               f" UNION ALL"
               f" SELECT e.source_id, up.d + 1, up.path || e.source_id || ','"
               f" FROM up JOIN edge e ON e.tenant_id = :tenant AND e.target_id = up.id"
               f"  AND e.kind = 'DISCOVERED' AND e.source_kind IN ('seed', 'asset', 'port')"
               f" WHERE up.d < :depth AND {contains}(up.path, ',' || e.source_id || ',') = 0)"
               f" SELECT id, d, path FROM up LIMIT :cap")
        with self._tx() as conn:
            (start,) = self._require(conn, key)
            rows = conn.execute(text(sql), {"start": start, "tenant": self.scope.tenant_id,
                                            "depth": depth, "cap": self.limits.max_rows + 1}).all()
            self._visited(len(rows), "provenance")
            paths = [tuple(int(x) for x in r.path.strip(",").split(",")) for r in rows]
            extended = {p[:-1] for p in paths if len(p) > 1}
            chains = [p for p in paths if p not in extended]
            ids = {i for p in chains for i in p}
            names = self._keys(conn, ids)
            found_by = self._discoverers(conn, ids)
        out = [[ProvenanceStep(names[i][0], names[i][1], tuple(sorted(found_by.get(i, ()))))
                for i in reversed(p)] for p in chains]
        return sorted(out, key=lambda c: (len(c), [s.key for s in c]))

    def _discoverers(self, conn: Connection, ids: set[int]) -> dict[int, set[str]]:
        src = node.alias("src")
        found: dict[int, set[str]] = {}
        for chunk in chunks(sorted(ids)):
            stmt = (select(edge.c.target_id, src.c.key, edge.c.properties)
                    .join(src, (src.c.tenant_id == edge.c.tenant_id) & (src.c.id == edge.c.source_id))
                    .where(self.scope.where(edge), edge.c.kind == "DISCOVERED",
                           self.scope.id_in(edge.c.target_id, chunk)))
            for target, source_key, props in conn.execute(stmt):
                names = found.setdefault(target, set())
                if kind_of(source_key) in ("capability", "job"):
                    names.add(source_key)
                if isinstance(props, dict) and props.get("capability"):
                    names.add(str(props["capability"]))
        return found


    # -- exposure --------------------------------------------------------------------------------

    def _entry_points(self, conn: Connection, among: Sequence[int] | None = None) -> set[int]:
        """Internet-exposed assets (all, or those `among` these ids): exposure external and an
        open port, a URL, or an open risk — on the asset, or on an address it resolves to."""
        from bastion.store.tables import typed

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
        from bastion.store.tables import typed

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
        from bastion.store.tables import typed

        asset, attribute = typed["asset"], typed["attribute"]
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

    def _open_risks(self, conn: Connection, ids: set[int]) -> dict[int, list[tuple[int, str, str]]]:
        """Open risks sitting on these entities: id → [(rank, severity, risk key)]."""
        from bastion.store.tables import typed

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
        from bastion.store.tables import typed

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
        from bastion.store.tables import typed

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

    def subgraph(self, key: str, depth: int = 2, kinds: Iterable[str] | None = None) -> Subgraph:
        """Everything within `depth` hops in either direction, and every edge among it."""
        depth, kinds = self._depth(depth), self._kinds(kinds)
        self._guard(depth, kinds, "both", what="export", revisits=True)
        with self._tx() as conn:
            (start,) = self._require(conn, key)
            dist = self._reach_ids(conn, [start], depth, kinds, "both")
            names = self._keys(conn, dist)
            inside = set(dist)
            edges = set()
            for chunk in chunks(sorted(inside)):
                stmt = select(edge.c.source_id, edge.c.kind, edge.c.target_id).where(
                    self.scope.where(edge), self.scope.id_in(edge.c.source_id, chunk))
                if kinds is not None:
                    stmt = stmt.where(edge.c.kind.in_(kinds))
                for s_, k, t in conn.execute(stmt):
                    if t in inside:
                        edges.add(GraphEdge(names[s_][0], k, names[t][0]))
        nodes = sorted((Hop(names[i][0], names[i][1], d) for i, d in dist.items()),
                       key=lambda h: (h.distance, h.key))
        return Subgraph(nodes, sorted(edges, key=lambda e: (e.source, e.relationship, e.target)))


class _GuardedTransaction:
    """A tenant transaction with PostgreSQL's statement timeout set, turning a timeout into
    CostExceeded so a runaway query ends with an error instead of a hang."""

    def __init__(self, scope: Scope, limits: Limits):
        self.scope, self.limits = scope, limits

    def __enter__(self) -> Connection:
        self._cm = self.scope.transaction()
        conn = self._cm.__enter__()
        if self.scope.postgres:
            conn.execute(select(func.set_config("statement_timeout", str(self.limits.timeout_ms), True)))
        return conn

    def __exit__(self, exc_type, exc, tb):
        suppressed = self._cm.__exit__(exc_type, exc, tb)
        if exc is not None and _is_timeout(exc):
            raise CostExceeded(
                f"query stopped after the statement timeout of {self.limits.timeout_ms} ms; "
                f"narrow it with a smaller --depth or --kind") from None
        return suppressed


def _is_timeout(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    return type(orig).__name__ == "QueryCanceled" or "statement timeout" in str(orig)
