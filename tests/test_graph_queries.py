"""Exposure queries (attack paths, blast radius, provenance, capability impact) and the cost
guard, on a small hand-built surface, on both engines. Traversal results against networkx are in
test_graph_properties.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from bastion.errors import InvalidValue, NotFound
from bastion.schema.batch import Batch
from bastion.ingest.runner import Options, import_paths
from bastion.store import exposure
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
        monkeypatch.setattr(exposure, "BACKWARD_JEWELS", 0)
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
    found = tenant.graph().provenance(k["www"])
    assert [[(s.key, s.capabilities) for s in c] for c in found.chains] == [[
        (k["seed"], ()), (k["apex"], ()), (k["www"], ("subfinder",))]]
    assert (found.found_on, found.tools, found.stranded, found.truncated) == (
        None, ("subfinder",), [], False)
    assert found.seed_reachable
    # a port was found on its asset, which nothing but a tool discovered: that asset is the root
    port = tenant.graph().provenance(k["https"])
    assert [[(s.key, s.capabilities) for s in c] for c in port.chains] == [[
        (k["ip"], (k["nmap"],)), (k["https"], (k["nmap"],))]]
    assert (port.found_on, port.tools, port.seed_reachable) == (k["ip"], (k["nmap"],), False)


def cyclic(tenant, with_seed: bool = True) -> dict[str, str]:
    """BBOT's speculate events: apex found in → in, in → apex again, apex → _dmarc, _dmarc → in."""
    b = Batch()
    k = {name: b.add("asset", identifier=f"{name}.example.com".lstrip(".")) for name in
         ("", "in", "_dmarc")}
    k["apex"] = k.pop("")
    b.link("DISCOVERED", k["apex"], k["in"])
    b.link("DISCOVERED", k["in"], k["apex"])
    b.link("DISCOVERED", k["apex"], k["_dmarc"])
    b.link("DISCOVERED", k["_dmarc"], k["in"])
    if with_seed:
        k["seed"] = b.add("seed", identifier="example.com")
        b.link("DISCOVERED", k["seed"], k["apex"])
    tenant.apply(b, actor="t", source="test")
    return k


def chains(found) -> list[list[str]]:
    return [[s.key for s in c] for c in found.chains]


def test_provenance_climbs_a_cycle_to_the_seed_never_to_a_fake_root(tenant):
    k = cyclic(tenant)
    g = tenant.graph()
    assert chains(g.provenance(k["apex"])) == [[k["seed"], k["apex"]]]
    assert chains(g.provenance(k["in"])) == [[k["seed"], k["apex"], k["in"]]]
    dmarc = g.provenance(k["_dmarc"])
    assert chains(dmarc) == [[k["seed"], k["apex"], k["_dmarc"]]]
    assert (dmarc.stranded, dmarc.truncated, dmarc.seed_reachable) == ([], False, True)


def test_provenance_of_a_cycle_without_a_seed_reports_no_seed_reachable(tenant):
    k = cyclic(tenant, with_seed=False)
    found = tenant.graph().provenance(k["apex"])
    assert found.chains == [] and not found.seed_reachable and not found.truncated
    assert found.stranded == sorted(k.values())


def test_provenance_cut_by_the_depth_is_no_root(tenant):
    k = cyclic(tenant)
    found = tenant.graph().provenance(k["in"], depth=1)
    assert (found.chains, found.stranded, found.truncated) == ([], [], True)


BBOT_CYCLE = Path(__file__).parent / "fixtures" / "scans" / "bbot" / "bbot-cycle.ndjson"


def test_bbot_seeds_and_a_risks_provenance_name_the_asset_the_tool_and_the_run(tenant):
    result = import_paths(tenant, [str(BBOT_CYCLE)], Options(actor="tester"))
    assert result.status == "succeeded"
    seed, cidr = "#seed#domain#example.com", "#seed#cidr#192.0.2.0/30"
    apex, inner = "#asset#example.com#example.com", "#asset#in.example.com#in.example.com"
    assert [r.key for r in tenant.list("seed").records] == [cidr, seed]
    g = tenant.graph()
    assert chains(g.provenance(apex)) == [[seed, apex]]
    assert chains(g.provenance("#asset#_dmarc.example.com#_dmarc.example.com")) == [
        [seed, apex, "#asset#_dmarc.example.com#_dmarc.example.com"]]
    assert chains(g.provenance("#asset#192.0.2.1#192.0.2.1")) == [[cidr, "#asset#192.0.2.1#192.0.2.1"]]
    risk = "#risk#in.example.com#CVE-2021-41773"
    found = g.provenance(risk)
    assert chains(found) == [[seed, apex, inner, risk]]
    assert (found.found_on, found.tools) == (inner, ("#capability#bbot",))
    assert [(r.id, r.correlation_id, r.formats, r.files) for r in found.runs] == [
        (result.run_id, result.correlation_id, ("bbot",), (str(BBOT_CYCLE),))]
    # a second run that changes nothing writes no event: the risk's run stays the first
    import_paths(tenant, [str(BBOT_CYCLE)], Options(actor="tester", reuse=False))
    assert [r.id for r in g.provenance(risk).runs] == [result.run_id]


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
