"""The graph view in headless Chromium on both engines: the attack-path graph's nodes and edges
are the API's answer; a neighbourhood expands hop by hop as the API's neighbours; the provenance
chain is shown; the cost guard's refusal is a message, not a blank canvas; keys masked by role."""

from __future__ import annotations

import httpx

from bastion.schema.batch import Batch
from bastion.web.graph import label
from tests.test_graph_queries import surface

NODES = "bastionGraph.nodes().map(n => n.data('key')).sort()"
EDGES = ("bastionGraph.edges().map(e => [e.source().data('key'), e.target().data('key')])")


def api_get(console, role: str, path: str, **params):
    r = httpx.get(console.base_url + path, params=params,
                  headers={"Authorization": f"Bearer {console.tokens[role]}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_attack_paths_and_neighbourhoods_equal_the_api(console, page):
    k = surface(console.tenant)
    console.sign_in(page, "reader")
    page.goto(console.url("/graph"))
    page.wait_for_function("window.bastionGraph && bastionGraph.nodes().length > 0")

    answer = api_get(console, "reader", "/v1/graph/attack-paths")
    assert len(answer["paths"]) == 2
    nodes = sorted({key for p in answer["paths"] for key in p["path"]})
    edges = sorted({(a, b) for p in answer["paths"] for a, b in zip(p["path"], p["path"][1:])})
    assert page.evaluate(NODES) == nodes
    assert sorted(map(tuple, page.evaluate(EDGES))) == edges
    entries = page.evaluate("bastionGraph.nodes('[?entry]').map(n => n.data('key')).sort()")
    jewels = page.evaluate("bastionGraph.nodes('[?jewel]').map(n => n.data('key')).sort()")
    assert entries == sorted(p["entry"] for p in answer["paths"]) == sorted([k["vpn"], k["ip"]])
    assert jewels == sorted(p["crown_jewel"] for p in answer["paths"]) == sorted([k["hr"], k["db"]])
    assert page.locator("#paths-table tbody tr").count() == 2
    assert page.locator("#graph-nodes li").count() == len(nodes)  # the keyboard's way in
    console.shot(page, "graph-attack-paths")

    # the neighbourhood of an entity, expanded one hop at a time
    page.goto(console.url("/graph") + "?" + httpx.QueryParams({"key": k["ip"]}).__str__())
    page.wait_for_function("window.bastionGraph && bastionGraph.nodes().length > 0")
    around_ip = api_get(console, "reader", "/v1/graph/neighbors", key=k["ip"])
    assert page.evaluate(NODES) == sorted({k["ip"], *(n["key"] for n in around_ip["nodes"])})
    assert page.evaluate("bastionGraph.edges().length") == len(around_ip["nodes"])
    around_https = api_get(console, "reader", "/v1/graph/neighbors", key=k["https"])
    page.click(f"#graph-nodes li[data-key='{k['https']}'] button.expand")
    page.wait_for_selector("#graph-message:has-text('Added')")
    assert page.evaluate(NODES) == sorted({k["ip"], k["https"], *(n["key"] for n in around_ip["nodes"]),
                                          *(n["key"] for n in around_https["nodes"])})
    assert k["app"] in page.evaluate(NODES)  # one hop further than the first drawing

    # its provenance chain: seed → apex → www for www; ip's chain shown as the API's
    chains = api_get(console, "reader", "/v1/graph/provenance", key=k["ip"])["chains"]
    shown = [li.all_inner_texts() for li in [page.locator("#provenance ol.chain").nth(i).locator("li")
                                             for i in range(len(chains))]]
    assert [[t.split(" ")[1] for t in chain] for chain in shown] == [c["path"] for c in chains]
    console.shot(page, "graph-neighbourhood")


def test_a_refusal_is_a_message_and_masked_keys_stay_masked(console, page):
    k = surface(console.tenant)
    b = Batch()
    account = b.add("cloud_account", provider="aws", identifier="444455556666", name="shared")
    b.add("detection", account=account, rule_id="r1", type="other")  # HAS_DETECTION implied
    console.tenant.apply(b, actor="test", source="test")
    console.sign_in(page, "reader")

    page.goto(console.url("/graph?budget=1"))
    refusal = page.locator("#graph-refusal")
    assert "cost guard refused" in refusal.inner_text()
    assert "exceeds the budget of 1" in refusal.inner_text()
    assert page.locator("#graph-canvas").count() == 0  # no blank canvas
    console.shot(page, "graph-refused")

    # a provenance refused by the guard is a message beside the neighbourhood it did draw
    page.goto(console.url("/graph") + "?" + str(httpx.QueryParams({"key": k["www"], "max_rows": 1})))
    page.wait_for_function("window.bastionGraph && bastionGraph.nodes().length > 0")
    provenance = page.inner_text("#provenance [role=alert]")
    assert "cost guard refused" in provenance and "visited more than 1 rows" in provenance

    # a reader sees an account's key masked: drawn, not expandable, the identifier nowhere
    page.goto(console.url("/graph") + "?" + str(httpx.QueryParams({"key": account})))
    page.wait_for_function("window.bastionGraph && bastionGraph.nodes().length > 0")
    assert page.evaluate(NODES) == sorted(["#cloud_account#aws#***", "#detection#cloud_account#aws#***#r1"])
    assert page.evaluate("bastionGraph.nodes('[?expandable]').length") == 0
    assert "444455556666" not in page.inner_text("main")  # only in the field the reader typed it in
    assert label("#port#tcp#443#asset#203.0.113.10#203.0.113.10") == "443/tcp 203.0.113.10"
