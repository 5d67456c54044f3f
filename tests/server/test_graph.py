"""Graph routes on both engines: the answers equal the library's (the same `bastion.graph.answers`
shapes `bastion graph --json` prints) on a small surface built through the write path; the cost
guard and the statement timeout answer 422 naming the limit; the export masks entity values by
role; another tenant's entities are 404."""

from __future__ import annotations

import threading

import pytest
from fastapi.encoders import jsonable_encoder
from sqlalchemy import create_engine, text

from bastion.graph import answers, jsonformat
from bastion.graph.render import to_dot, to_mermaid
from bastion.schema.batch import Batch
from bastion.server.context import Settings
from bastion.store import edits
from bastion.store.traversal import Limits
from tests.server.conftest import make_api
from tests.test_graph_queries import surface as exposure_surface

SECRET_COMMENT = "exploit needs the /admin backdoor"


def surface(tenant) -> dict[str, str]:
    """The exposure tests' surface (tests/test_graph_queries.py), its critical risk carrying a
    confidential comment."""
    k = exposure_surface(tenant)
    edits.put(tenant, "risk", {"target": k["https"], "name": "CVE-2021-41773",
                               "comment": SECRET_COMMENT}, actor="t", source="test")
    return k


def other_surface(tenant) -> dict[str, str]:
    b = Batch()
    k = {"www": b.add("asset", identifier="www.globex.example"),
         "db": b.add("asset", identifier="db.globex.example")}
    b.link("DEPENDS_ON", k["www"], k["db"])
    tenant.apply(b, actor="t", source="test")
    return k


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def test_graph_answers_equal_the_library(api):
    k = surface(api.tenant)
    g = api.tenant.graph()

    body = ok(api.get("/v1/graph/neighbors", "reader", params={"key": k["ip"]}))
    assert body == answers.neighbors(k["ip"], "both", None, g.neighbors(k["ip"]))
    assert {n["key"] for n in body["nodes"]} == {k["https"], k["www"], k["nmap"]}

    body = ok(api.get("/v1/graph/neighbors", "reader", params={
        "key": k["ip"], "direction": "out", "kind": ["HAS_PORT"]}))
    assert [(n["key"], n["relationship"], n["direction"]) for n in body["nodes"]] == [
        (k["https"], "HAS_PORT", "out")]

    body = ok(api.get("/v1/graph/reach", "reader", params={"key": k["www"], "depth": 3}))
    assert body == answers.reach(k["www"], 3, "out", None, g.reach(k["www"], 3))
    assert [(n["key"], n["distance"]) for n in body["nodes"]][:2] == [(k["www"], 0), (k["ip"], 1)]

    body = ok(api.get("/v1/graph/path", "reader", params={"from": k["www"], "to": k["db"]}))
    assert body == {"from": k["www"], "to": k["db"], "paths": [
        {"length": 4, "path": [k["www"], k["ip"], k["https"], k["app"], k["db"]]}]}
    assert body == answers.paths(k["www"], k["db"], [g.shortest_path(k["www"], k["db"])])
    body = ok(api.get("/v1/graph/path", "reader", params={
        "from": k["db"], "to": k["www"], "direction": "both", "all": True, "max": 5}))
    assert body == answers.paths(k["db"], k["www"], g.simple_paths(k["db"], k["www"], None, "both", None, 5))
    assert ok(api.get("/v1/graph/path", "reader", params={
        "from": k["db"], "to": k["www"]}))["paths"] == []  # not against the relationships

    body = ok(api.get("/v1/graph/provenance", "reader", params={"key": k["www"]}))
    assert body == jsonable_encoder(answers.provenance(k["www"], g.provenance(k["www"])))
    assert body["seed_reachable"] and body["chains"][0]["path"] == [k["seed"], k["apex"], k["www"]]

    body = ok(api.get("/v1/graph/attack-paths", "reader"))
    assert body == answers.attack_paths(None, *answers.find_attack_paths(g, None, None, 50))
    assert [(p["entry"], p["crown_jewel"], p["worst_severity"], p["risks"]) for p in body["paths"]] == [
        (k["vpn"], k["hr"], "medium", [k["vpn_risk"]]), (k["ip"], k["db"], "critical", [k["rce"]])]
    body = ok(api.get("/v1/graph/attack-paths", "reader", params={"to": "criticality=high"}))
    assert body == {"to": "criticality=high", "crown_jewels": 0, "paths": []}

    body = ok(api.get("/v1/graph/blast-radius", "reader", params={"key": k["rce"]}))
    assert body == answers.blast_radius(k["rce"], *g.blast_radius(k["rce"]))
    assert body["crown_jewels"] == [k["db"]]

    body = ok(api.get("/v1/graph/capability-impact", "reader"))
    assert body == {"capabilities": g.capability_impact()}
    assert {"capability": k["nmap"], "assets": 1, "high": 0, "critical": 1} in body["capabilities"]


def test_export_in_each_format_with_values_masked_by_role(api):
    k = surface(api.tenant)
    sub = api.tenant.graph().subgraph(k["www"], 3)
    params = {"key": k["www"], "depth": 3}

    r = api.get("/v1/graph/export", "reader", params={**params, "format": "mermaid"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/vnd.mermaid")
    assert r.text == to_mermaid(sub, root=k["www"])
    r = api.get("/v1/graph/export", "reader", params={**params, "format": "dot"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/vnd.graphviz")
    assert r.text == to_dot(sub, root=k["www"])

    library = jsonable_encoder(jsonformat.export_document(api.tenant, sub, root=k["www"], depth=3))
    assert ok(api.get("/v1/graph/export", "admin", params=params)) == library
    risk_of = {role: next(n for n in ok(api.get("/v1/graph/export", role, params=params))["nodes"]
                          if n["key"] == k["rce"]) for role in ("reader", "analyst")}
    assert risk_of["analyst"]["comment"] == SECRET_COMMENT and "masked" not in risk_of["analyst"]
    assert risk_of["reader"]["comment"] is None and risk_of["reader"]["masked"] == ["comment"]
    assert risk_of["reader"]["severity"] == "critical"
    # the whole reader answer: nowhere the secret
    assert SECRET_COMMENT not in api.get("/v1/graph/export", "reader", params=params).text


def test_the_cost_guard_answers_422_naming_the_limit(api):
    k = surface(api.tenant)
    r = api.get("/v1/graph/reach", "reader", params={"key": k["www"], "budget": 1})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].endswith("/cost-exceeded")
    assert "reach refused" in problem["detail"] and "exceeds the budget of 1" in problem["detail"]
    r = api.get("/v1/graph/path", "reader", params={
        "from": k["www"], "to": k["db"], "max_rows": 1})
    assert r.status_code == 422 and "visited more than 1 rows" in r.json()["detail"]
    # a client may lower the limits, not raise them
    r = api.get("/v1/graph/reach", "reader", params={"key": k["www"], "budget": Limits().budget + 1})
    assert r.status_code == 422 and r.json()["type"].endswith("/invalid-request")


@pytest.mark.parametrize("engine_name", ["postgresql"])
def test_a_graph_query_past_the_statement_timeout_is_422_not_a_hang(store, database_url):
    api = make_api(store, Settings(rate_limit="none", statement_timeout_ms=200))
    k = surface(api.tenant)
    # Another session holds the edge table: without the timeout the query would wait for it.
    holder = create_engine(database_url)
    locked, release = threading.Event(), threading.Event()

    def hold():
        with holder.begin() as conn:
            conn.execute(text("LOCK TABLE edge IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert locked.wait(10)
        r = api.get("/v1/graph/reach", "reader", params={"key": k["www"]})
    finally:
        release.set()
        t.join()
        holder.dispose()
        api.client.close()
    assert r.status_code == 422, r.text
    assert "statement timeout of 200 ms" in r.json()["detail"]


def test_bad_input_and_other_tenants(api):
    k = surface(api.tenant)
    theirs = other_surface(api.other)
    assert api.get("/v1/graph/neighbors", "reader", params={"key": theirs["www"]}).status_code == 404
    r = api.get("/v1/graph/path", "reader", params={"from": k["www"], "to": theirs["db"]})
    assert r.status_code == 404 and theirs["db"] in r.json()["detail"]
    assert api.get("/v1/graph/export", "admin", params={"key": theirs["www"]}).status_code == 404
    r = api.get("/v1/graph/reach", "reader", params={"key": "#nonsense"})
    assert r.status_code == 400
    r = api.get("/v1/graph/blast-radius", "reader", params={"key": k["www"]})
    assert r.status_code == 400 and "is not a risk key" in r.json()["detail"]
    r = api.get("/v1/graph/reach", "reader", params={"key": k["www"], "kind": ["NOT_A_REL"]})
    assert r.status_code == 422
    r = api.get("/v1/graph/attack-paths", "reader", params={"to": "colour=red"})
    assert r.status_code == 400 and "colour" in r.json()["detail"]
    for selector in ("tag=\x00", "criticality=\x00"):
        r = api.get("/v1/graph/attack-paths", "reader", params={"to": selector})
        assert r.status_code == 400 and "NUL" in r.json()["detail"]
    # globex's own key sees its own graph, not acme's
    r = api.client.get("/v1/graph/reach", params={"key": k["www"]},
                       headers={"Authorization": f"Bearer {api.other_token}"})
    assert r.status_code == 404
    # no key: 401; the uploader role may not read
    assert api.get("/v1/graph/reach", None, params={"key": k["www"]}).status_code == 401
    assert api.get("/v1/graph/reach", "uploader", params={"key": k["www"]}).status_code == 403
