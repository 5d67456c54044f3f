"""Generic graph traversal over the node/edge tables, inside the store, on both engines:
neighbors, reach, shortest and simple paths, subgraphs, and the cost guard every query passes.

Recursive CTEs (reach, the distances of simple paths) and level-by-level frontier expansion with
the frontier passed as one array/JSON parameter (bidirectional shortest path; the exposure
queries of `bastion.store.exposure` build on it). Nothing copies the graph into memory whole.
Every query is tenant-scoped, bounded by a depth cap and a rows-visited cap, priced by a cost
guard before it runs, and (PostgreSQL) by a statement timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import orjson
from sqlalchemy import BigInteger, Connection, String, and_, any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from bastion.errors import CostExceeded, InvalidValue, NotFound
from bastion.schema.keys import kind_of, node_id
from bastion.schema.kinds import REGISTRY
from bastion.store.query import Scope, chunks
from bastion.store.tables import edge, node

DIRECTIONS = ("out", "in", "both")


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


class Traversal:
    """Generic traversal of one tenant's graph; `bastion.store.exposure.Graph` (what
    `TenantStore.graph()` returns) adds the exposure analysis on top."""

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
