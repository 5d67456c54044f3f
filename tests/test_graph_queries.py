"""Exposure queries (attack paths, blast radius, provenance, capability impact) and the cost
guard, on a small hand-built surface, on both engines. Traversal results against networkx are in
test_graph_properties.py."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bastion.errors import InvalidValue, NotFound
from bastion.schema.batch import Batch
from bastion.store import traversal
from bastion.store.traversal import CostExceeded, Limits, _GuardedTransaction


def surface(tenant) -> dict[str, str]:
    """seed → www (external) → IP with open 443 → CONNECTS_TO app server → DEPENDS_ON db
    (crown jewel by criticality); a second jewel tagged critical behind a VPN; nuclei found a
    critical risk on the web port."""
    b = Batch()
    k = {}
    k["seed"] = b.add("seed", identifier="acme.example")
    k["nmap"] = b.add("capability", name="nmap")
    k["nuclei"] = b.add("capability", name="nuclei")
    k["apex"] = b.add("asset", identifier="acme.example", exposure="external")
    k["www"] = b.add("asset", identifier="www.acme.example", exposure="external")
    k["ip"] = b.add("asset", identifier="203.0.113.10", exposure="external")
    k["https"] = b.add("port", asset=k["ip"], number=443, state="open")
    k["app"] = b.add("asset", identifier="app.internal.example", exposure="internal")
    k["db"] = b.add("asset", identifier="db.internal.example", exposure="internal", criticality="critical")
    k["vpn"] = b.add("asset", identifier="vpn.acme.example", exposure="external")
    k["vpn_risk"] = b.add("risk", target=k["vpn"], name="weak ike", severity="medium", status="open")
    k["hr"] = b.add("asset", identifier="hr.internal.example", exposure="internal")
    k["tag"] = b.add("attribute", name="tag", value="critical", parent=k["hr"])
    k["rce"] = b.add("risk", target=k["https"], name="CVE-2021-41773", severity="critical", status="open")
    k["fixed"] = b.add("risk", target=k["https"], name="old finding", severity="high", status="remediated")
    b.link("DISCOVERED", k["seed"], k["apex"])
    b.link("DISCOVERED", k["apex"], k["www"], capability="subfinder")
    b.link("DISCOVERED", k["nmap"], k["ip"])
    b.link("DISCOVERED", k["nmap"], k["https"])
    b.link("DISCOVERED", k["nuclei"], k["rce"])
    b.link("RESOLVES_TO", k["www"], k["ip"])
    b.link("CONNECTS_TO", k["https"], k["app"])
    b.link("DEPENDS_ON", k["app"], k["db"])
    b.link("CONNECTS_TO", k["vpn"], k["hr"])
    tenant.apply(b, actor="t", source="test")
    return k


@pytest.fixture(params=["backward", "forward"])
def strategy(request, monkeypatch):
    """Few crown jewels are searched backward, many forward: both must give the same answer."""
    if request.param == "forward":
        monkeypatch.setattr(traversal, "BACKWARD_JEWELS", 0)
    return request.param


def test_attack_paths_run_from_exposed_entries_to_crown_jewels_ranked(tenant, strategy):
    k = surface(tenant)
    paths = tenant.graph().attack_paths()
    assert [(p.entry, p.crown_jewel, p.path) for p in paths] == [
        (k["vpn"], k["hr"], [k["vpn"], k["hr"]]),
        (k["ip"], k["db"], [k["ip"], k["https"], k["app"], k["db"]]),
    ]
    assert paths[0].worst_severity == "medium" and paths[0].risks == [k["vpn_risk"]]
    # the remediated finding on the port does not count; the open critical one does
    assert paths[1].worst_severity == "critical" and paths[1].risks == [k["rce"]]


def test_attack_path_selectors(tenant, strategy):
    k = surface(tenant)
    g = tenant.graph()
    assert [p.crown_jewel for p in g.attack_paths(to="tag=critical")] == [k["hr"]]
    assert [p.crown_jewel for p in g.attack_paths(to=k["db"])] == [k["db"]]
    assert [p.crown_jewel for p in g.attack_paths(to="exposure=internal")] == [k["hr"], k["app"], k["db"]]
    assert g.attack_paths(to=k["db"], depth=2) == []  # three hops away
    with pytest.raises(InvalidValue, match="asset has no field 'colour'"):
        g.attack_paths(to="colour=red")
    with pytest.raises(InvalidValue, match="use a key, FIELD=VALUE or tag=VALUE"):
        g.attack_paths(to="critical")


def test_blast_radius_starts_from_the_hosts_of_a_port(tenant):
    k = surface(tenant)
    assets, jewels = tenant.graph().blast_radius(k["rce"])
    assert [(h.key, h.distance) for h in assets] == [(k["ip"], 0), (k["app"], 1), (k["db"], 2)]
    assert jewels == [k["db"]]
    with pytest.raises(InvalidValue, match="is not a risk key"):
        tenant.graph().blast_radius(k["ip"])


def test_provenance_chains_back_to_the_seed_with_capabilities(tenant):
    k = surface(tenant)
    chains = tenant.graph().provenance(k["www"])
    assert [[(s.key, s.capabilities) for s in c] for c in chains] == [[
        (k["seed"], ()), (k["apex"], ()), (k["www"], ("subfinder",))]]
    (chain,) = tenant.graph().provenance(k["https"])
    assert [(s.key, s.capabilities) for s in chain] == [(k["https"], (k["nmap"],))]


def test_capability_impact_counts_assets_and_open_severe_risks(tenant):
    k = surface(tenant)
    impact = {r["capability"]: r for r in tenant.graph().capability_impact()}
    assert impact[k["nmap"]] == {"capability": k["nmap"], "assets": 1, "high": 0, "critical": 1}
    assert impact[k["nuclei"]]["assets"] == 0


def test_subgraph_holds_every_edge_among_its_nodes(tenant):
    k = surface(tenant)
    sub = tenant.graph().subgraph(k["ip"], depth=1)
    assert {h.key for h in sub.nodes} == {k["ip"], k["www"], k["https"], k["nmap"]}
    assert {(e.source, e.relationship, e.target) for e in sub.edges} == {
        (k["www"], "RESOLVES_TO", k["ip"]), (k["ip"], "HAS_PORT", k["https"]),
        (k["nmap"], "DISCOVERED", k["ip"]), (k["nmap"], "DISCOVERED", k["https"])}


def test_bad_arguments_are_clear_errors(tenant):
    k = surface(tenant)
    g = tenant.graph()
    with pytest.raises(NotFound, match="no entity #asset#nowhere.example#nowhere.example"):
        g.reach("#asset#nowhere.example#nowhere.example")
    with pytest.raises(InvalidValue, match="depth must be between 0 and 12"):
        g.reach(k["ip"], depth=13)
    with pytest.raises(InvalidValue, match="unknown relationship 'LIKES'"):
        g.reach(k["ip"], kinds=["likes"])
    with pytest.raises(InvalidValue, match="direction must be one of"):
        g.neighbors(k["ip"], direction="sideways")


def test_the_cost_guard_refuses_before_running(tenant):
    k = surface(tenant)
    g = tenant.graph(Limits(budget=5))
    with pytest.raises(CostExceeded, match=r"reach refused: an estimated [\d,]+ edge visits exceeds "
                                           r"the budget of 5; narrow it with a smaller --depth \(now 6\)"):
        g.reach(k["seed"])
    assert g.reach(k["seed"], depth=1, kinds=["DISCOVERED"])  # narrowed: allowed
    assert CostExceeded.exit_code == 5


def test_the_rows_cap_stops_a_traversal(tenant):
    k = surface(tenant)
    with pytest.raises(CostExceeded, match="visited more than 3 rows"):
        tenant.graph(Limits(max_rows=3)).reach(k["seed"], direction="both")


def test_estimates_grow_with_depth_and_use_refreshed_hubs(tenant):
    surface(tenant)
    g = tenant.graph()
    shallow, deep = g.estimate(1, None, "out"), g.estimate(4, None, "out")
    assert 0 < shallow < deep
    stats = g.refresh_stats()
    assert stats["DISCOVERED"]["count"] == 5 and stats["DISCOVERED"]["max_out"] == 2
    assert stats["asset"]["count"] == 7
    assert g.estimate(1, None, "out") > shallow  # the hub is now priced in


@pytest.mark.parametrize("engine_name", ["postgresql"])
def test_a_statement_timeout_becomes_a_cost_error(tenant):
    guard = _GuardedTransaction(tenant.scope, Limits(timeout_ms=20))
    with pytest.raises(CostExceeded, match="statement timeout of 20 ms"):
        with guard as conn:
            conn.execute(text("SELECT pg_sleep(1)"))
