"""Property tests of the graph queries (issue 5): on random small graphs, on both engines, every
query answers what networkx answers on the same graph.

A graph is n assets (h0.example … h{n-1}.example) and a set of (source, relationship, target)
edges among them, drawn from the relationships that allow asset → asset, with self-loops, cycles
and parallel edges of different kinds forced in often. networkx holds the same graph as a
MultiDiGraph (edge key = relationship); `kinds` filters its edges, direction "in" reverses it and
"both" makes it undirected. Results are compared as node indices (i for h{i}.example) so a
failure reads like the hypothesis example that produced it.
"""

from __future__ import annotations

import itertools
from itertools import pairwise

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bastion.errors import InvalidValue, NotFound
from bastion.schema.batch import Batch
from bastion.store.traversal import HARD_MAX_DEPTH, Hop, Limits

# Every relationship the registry allows between two assets.
REL_KINDS = ("RESOLVES_TO", "SUBDOMAIN_OF", "CONNECTS_TO", "DEPENDS_ON", "DISCOVERED",
             "ACCESSIBLE_BY")
DIRECTIONS = ("out", "in", "both")
DEFAULT_DEPTH = Limits().max_depth
BIG_LIMIT = 1000  # more simple paths than these graphs usually have within depth 5

# No deadline: the machine is shared and a slow example is not a failure. The store fixture is
# function-scoped on purpose: each example gets a fresh tenant in the same database instead.
PROPS = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_tenant_names = itertools.count()

# ---------------------------------------------------------------------------------------------
# Strategies


@st.composite
def graphs(draw, n: int | None = None) -> tuple[int, tuple[tuple[int, str, int], ...]]:
    """(n, sorted edges (source index, relationship, target index))."""
    if n is None:
        n = draw(st.integers(2, 12))
    node = st.integers(0, n - 1)
    kind = st.sampled_from(REL_KINDS)
    edges = set(draw(st.lists(st.tuples(node, kind, node), max_size=3 * n)))
    if draw(st.booleans()):  # a self-loop
        v = draw(node)
        edges.add((v, draw(kind), v))
    if draw(st.booleans()):  # a directed cycle through distinct nodes
        cycle = draw(st.lists(node, min_size=2, max_size=n, unique=True))
        k = draw(kind)
        edges.update((a, k, b) for a, b in zip(cycle, cycle[1:] + cycle[:1]))
    if edges and draw(st.booleans()):  # the same pair joined again by other relationships
        a, _, b = draw(st.sampled_from(sorted(edges)))
        edges.update((a, k, b) for k in draw(st.sets(kind, min_size=1)))
    return n, tuple(sorted(edges))


# None = every relationship. HAS_PORT is a known relationship no asset → asset edge carries: it
# must filter to nothing, not fail.
KINDS = st.none() | st.sets(st.sampled_from(REL_KINDS + ("HAS_PORT",)), min_size=1).map(sorted)
# None = the default depth. Up to the hard cap: a 12-node cycle has paths longer than the default.
DEPTH = st.none() | st.integers(0, HARD_MAX_DEPTH)

# ---------------------------------------------------------------------------------------------
# Loading one graph into a tenant and into networkx


def load(store, spec, name: str | None = None):
    """Apply the graph to a new tenant; return (Graph, keys by index, networkx graph over indices)."""
    n, edges = spec
    name = name or f"g{next(_tenant_names)}"
    store.add_tenant(name)
    tenant = store.tenant(name)
    batch = Batch()
    keys = [batch.add("asset", identifier=f"h{i}.example") for i in range(n)]
    G = nx.MultiDiGraph()
    G.add_nodes_from(range(n))
    for s, kind, t in edges:
        batch.link(kind, keys[s], keys[t])
        G.add_edge(s, t, key=kind)
    tenant.apply(batch, actor="test", source="hypothesis")
    return tenant.graph(), keys, G


def view(G: nx.MultiDiGraph, kinds, direction: str):
    """The graph a query with these `kinds` and `direction` walks, in networkx."""
    H = nx.MultiDiGraph()
    H.add_nodes_from(G)
    H.add_edges_from((u, v, k) for u, v, k in G.edges(keys=True) if kinds is None or k in kinds)
    if direction == "in":
        return H.reverse(copy=True)
    if direction == "both":
        return H.to_undirected()
    return H


def indices(keys: list[str]):
    """key → index; unknown keys map to themselves so a stray key shows up in the diff."""
    index = {k: i for i, k in enumerate(keys)}
    return lambda key: index.get(key, key)


def expected_hops(H, start: int, depth: int, keys: list[str]) -> list[tuple[int, str, int]]:
    dist = nx.single_source_shortest_path_length(H, start, cutoff=depth)
    # The API sorts by (distance, key): order by the key string, not by the index.
    return [(i, "asset", d) for i, d in sorted(dist.items(), key=lambda kv: (kv[1], keys[kv[0]]))]


def hop_tuples(hops, ix) -> list[tuple[int, str, int]]:
    assert all(isinstance(h, Hop) for h in hops)
    return [(ix(h.key), h.kind, h.distance) for h in hops]


def simple_graph(H):
    """Parallel edges collapse: simple paths are node sequences."""
    return nx.DiGraph(H) if H.is_directed() else nx.Graph(H)


# ---------------------------------------------------------------------------------------------
# Properties


@PROPS
@given(spec=graphs(), kinds=KINDS, direction=st.sampled_from(DIRECTIONS), depth=DEPTH)
def test_reach_matches_networkx(store, spec, kinds, direction, depth):
    g, keys, G = load(store, spec)
    H = view(G, kinds, direction)
    ix = indices(keys)
    for start in range(len(keys)):
        hops = g.reach(keys[start], depth=depth, kinds=kinds, direction=direction)
        expected = expected_hops(H, start, DEFAULT_DEPTH if depth is None else depth, keys)
        assert hop_tuples(hops, ix) == expected, f"reach from {start}"


@PROPS
@given(spec=graphs(), kinds=KINDS, direction=st.sampled_from(DIRECTIONS), depth=DEPTH)
def test_shortest_path_matches_networkx(store, spec, kinds, direction, depth):
    g, keys, G = load(store, spec)
    H = view(G, kinds, direction)
    ix = indices(keys)
    cutoff = DEFAULT_DEPTH if depth is None else depth
    for s, t in itertools.product(range(len(keys)), repeat=2):
        try:
            length = nx.shortest_path_length(H, s, t)
        except nx.NetworkXNoPath:
            length = None
        if length is not None and length > cutoff:
            length = None
        path = g.shortest_path(keys[s], keys[t], kinds=kinds, direction=direction, depth=depth)
        if length is None:
            assert path is None, f"{s} → {t}: networkx finds no path within {cutoff}"
            continue
        assert path is not None, f"{s} → {t}: networkx finds a path of length {length}"
        nodes = [ix(k) for k in path]
        assert nodes[0] == s and nodes[-1] == t, f"{s} → {t}: {nodes}"
        assert len(nodes) - 1 == length, f"{s} → {t}: {nodes} is not of length {length}"
        # Every step follows an edge of an allowed kind in the queried direction.
        assert all(H.has_edge(a, b) for a, b in pairwise(nodes)), f"{s} → {t}: {nodes}"


@PROPS
@given(spec=graphs(), kinds=KINDS, direction=st.sampled_from(DIRECTIONS),
       depth=st.integers(0, 5), limit=st.integers(1, 4))
def test_simple_paths_match_networkx(store, spec, kinds, direction, depth, limit):
    g, keys, G = load(store, spec)
    H = simple_graph(view(G, kinds, direction))
    ix = indices(keys)
    for s, t in itertools.product(range(len(keys)), repeat=2):
        # networkx yields a node path once per combination of parallel edges on a multigraph;
        # on the collapsed graph each node path once. For s == t (networkx ≥ 3.4) it yields [s].
        expected = sorted({tuple(p) for p in nx.all_simple_paths(H, s, t, cutoff=depth)},
                          key=lambda p: (len(p), [keys[i] for i in p]))
        got = g.simple_paths(keys[s], keys[t], kinds=kinds, direction=direction, depth=depth,
                             limit=BIG_LIMIT)
        assert [tuple(ix(k) for k in p) for p in got] == expected[:BIG_LIMIT], f"{s} → {t}"
        # `limit` keeps the first paths of that order.
        short = g.simple_paths(keys[s], keys[t], kinds=kinds, direction=direction, depth=depth,
                               limit=limit)
        assert [tuple(ix(k) for k in p) for p in short] == expected[:limit], f"{s} → {t}"


@PROPS
@given(spec=graphs(), kinds=KINDS, direction=st.sampled_from(DIRECTIONS))
def test_neighbors_match_networkx(store, spec, kinds, direction):
    g, keys, G = load(store, spec)
    F = view(G, kinds, "out")
    ix = indices(keys)
    for v in range(len(keys)):
        expected = []
        if direction in ("out", "both"):
            expected += [(r, "out", b, "asset") for _, b, r in F.out_edges(v, keys=True)]
        if direction in ("in", "both"):  # a self-loop is both an out- and an in-edge
            expected += [(r, "in", a, "asset") for a, _, r in F.in_edges(v, keys=True)]
        got = g.neighbors(keys[v], direction=direction, kinds=kinds)
        assert sorted((nb.relationship, nb.direction, ix(nb.key), nb.kind) for nb in got) \
            == sorted(expected), f"neighbors of {v}"


@PROPS
@given(a=graphs(), b=graphs(), direction=st.sampled_from(DIRECTIONS))
def test_tenants_sharing_keys_each_see_their_own_graph(store, a, b, direction):
    # The same entities under the same keys (the smaller graph's keys are a prefix of the
    # larger's), different edges.
    (ga, keys_a, Ga), (gb, keys_b, Gb) = load(store, a), load(store, b)
    for name, g, G, keys, theirs in (("a", ga, Ga, keys_a, keys_b), ("b", gb, Gb, keys_b, keys_a)):
        ix = indices(keys)
        H = view(G, None, direction)
        for start in range(len(keys)):
            hops = g.reach(keys[start], depth=HARD_MAX_DEPTH, direction=direction)
            assert hop_tuples(hops, ix) == expected_hops(H, start, HARD_MAX_DEPTH, keys), \
                f"tenant {name}: reach from {start}"
        for key in theirs[len(keys):]:  # only in the other tenant
            with pytest.raises(NotFound):
                g.reach(key)
            with pytest.raises(NotFound):
                g.shortest_path(keys[0], key)


@PROPS
@given(spec=graphs(), kinds=KINDS, depth=st.integers(0, 4))
def test_subgraph_matches_networkx(store, spec, kinds, depth):
    g, keys, G = load(store, spec)
    F = view(G, kinds, "out")
    ix = indices(keys)
    for start in range(len(keys)):
        sub = g.subgraph(keys[start], depth=depth, kinds=kinds)
        # Nodes: within depth in either direction; edges: every followed edge among them.
        nodes = expected_hops(F.to_undirected(), start, depth, keys)
        inside = {i for i, _, _ in nodes}
        edges = sorted(((u, k, v) for u, v, k in F.edges(keys=True) if u in inside and v in inside),
                       key=lambda e: (keys[e[0]], e[1], keys[e[2]]))
        assert hop_tuples(sub.nodes, ix) == nodes, f"subgraph of {start}"
        assert [(ix(e.source), e.relationship, ix(e.target)) for e in sub.edges] == edges, \
            f"subgraph of {start}"


# ---------------------------------------------------------------------------------------------
# Examples


def chain(store, name: str, extra=()):
    """h0 → h1 → h2 → h3 (CONNECTS_TO), plus `extra` edges."""
    return load(store, (4, tuple(sorted({(0, "CONNECTS_TO", 1), (1, "CONNECTS_TO", 2),
                                         (2, "CONNECTS_TO", 3), *extra}))), name)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_self_loops_do_not_change_distances_or_paths(store, direction):
    plain, keys, _ = chain(store, "plain")
    loops, _, _ = chain(store, "loops", extra=[(0, "CONNECTS_TO", 0), (1, "DEPENDS_ON", 1),
                                               (1, "RESOLVES_TO", 1), (3, "CONNECTS_TO", 3)])
    for k in keys:
        assert loops.reach(k, direction=direction) == plain.reach(k, direction=direction)
    # Walking in-edges, the chain is followed from its end.
    path = keys[::-1] if direction == "in" else keys
    assert loops.shortest_path(path[0], path[-1], direction=direction) == path
    assert loops.simple_paths(path[0], path[-1], direction=direction) == [path]
    assert loops.reach(keys[1], depth=1, kinds=["DEPENDS_ON"], direction=direction) \
        == [Hop(keys[1], "asset", 0)]


def test_depth_zero_reach_is_only_the_start(store):
    g, keys, _ = chain(store, "t", extra=[(0, "CONNECTS_TO", 0), (1, "RESOLVES_TO", 0)])
    for k, direction in itertools.product(keys, DIRECTIONS):
        assert g.reach(k, depth=0, direction=direction) == [Hop(k, "asset", 0)]


def test_a_path_from_a_node_to_itself_is_the_node(store):
    # As networkx (≥ 3.4): the zero-edge path [s], found even with no edges at all.
    g, keys, _ = chain(store, "t", extra=[(0, "CONNECTS_TO", 0)])
    for k, direction in itertools.product(keys, DIRECTIONS):
        assert g.shortest_path(k, k, direction=direction) == [k]
        assert g.simple_paths(k, k, direction=direction) == [[k]]


def test_parallel_edges_of_different_kinds_give_one_node_path(store):
    g, keys, _ = load(store, (2, ((0, "CONNECTS_TO", 1), (0, "DEPENDS_ON", 1), (0, "RESOLVES_TO", 1),
                                  (1, "SUBDOMAIN_OF", 0))), "t")
    a, b = keys
    assert g.simple_paths(a, b) == [[a, b]]
    assert g.simple_paths(a, b, direction="both") == [[a, b]]
    assert g.simple_paths(b, a, kinds=["CONNECTS_TO"]) == []
    assert sorted((n.relationship, n.direction) for n in g.neighbors(a)) == [
        ("CONNECTS_TO", "out"), ("DEPENDS_ON", "out"), ("RESOLVES_TO", "out"), ("SUBDOMAIN_OF", "in")]
    assert [(n.relationship, n.key) for n in g.neighbors(a, direction="out", kinds=["DEPENDS_ON"])] \
        == [("DEPENDS_ON", b)]


def test_unknown_key_is_not_found(store):
    g, keys, _ = chain(store, "t")
    # A well-formed key that exists only in another tenant is unknown here too.
    other, other_keys, _ = load(store, (6, ()), "other")
    missing = [Batch().add("asset", identifier="nowhere.example"), other_keys[5]]
    for key in missing:
        with pytest.raises(NotFound):
            g.reach(key)
        with pytest.raises(NotFound):
            g.neighbors(key)
        with pytest.raises(NotFound):
            g.shortest_path(key, keys[0])
        with pytest.raises(NotFound):
            g.shortest_path(keys[0], key)
        with pytest.raises(NotFound):
            g.simple_paths(key, keys[0])
        with pytest.raises(NotFound):
            g.simple_paths(keys[0], key)
    assert other.reach(other_keys[5]) == [Hop(other_keys[5], "asset", 0)]


def test_bad_arguments_are_invalid(store):
    g, keys, _ = chain(store, "t")
    a, b = keys[0], keys[3]
    # The hard cap is allowed; one more is not.
    assert g.reach(a, depth=HARD_MAX_DEPTH)[-1] == Hop(b, "asset", 3)
    assert g.shortest_path(a, b, depth=HARD_MAX_DEPTH) == keys
    assert g.simple_paths(a, b, depth=HARD_MAX_DEPTH) == [keys]
    for call in (lambda: g.reach(a, depth=HARD_MAX_DEPTH + 1),
                 lambda: g.shortest_path(a, b, depth=HARD_MAX_DEPTH + 1),
                 lambda: g.simple_paths(a, b, depth=HARD_MAX_DEPTH + 1),
                 lambda: g.reach(a, kinds=["CONNECTS_TOO"]),
                 lambda: g.neighbors(a, kinds=["CONNECTS_TOO"]),
                 lambda: g.shortest_path(a, b, kinds=["CONNECTS_TOO"]),
                 lambda: g.simple_paths(a, b, kinds=["CONNECTS_TOO"]),
                 lambda: g.reach(a, direction="sideways"),
                 lambda: g.neighbors(a, direction="sideways"),
                 lambda: g.shortest_path(a, b, direction="sideways"),
                 lambda: g.simple_paths(a, b, direction="sideways")):
        with pytest.raises(InvalidValue):
            call()


def test_negative_depth_is_invalid(store):
    g, keys, _ = chain(store, "t")
    with pytest.raises(InvalidValue):
        g.reach(keys[0], depth=-1)
    with pytest.raises(InvalidValue):
        g.shortest_path(keys[0], keys[3], depth=-1)
