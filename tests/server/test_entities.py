"""Entities over HTTP: lists with the CLI's filters and keyset paging, one entity now and as of
an instant, history and links, merge writes with If-Match, delete with cascade, bulk upsert of a
graph document, concurrent writers, and masking per role on every entity read route."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from fastapi.testclient import TestClient

from bastion.schema.batch import Batch
from bastion.server.app import create_app
from bastion.server.context import Settings


def seed(api, n_risks: int = 5) -> dict[str, str]:
    b = Batch()
    asset = b.add("asset", identifier="www.example.com", **{"class": "domain"})
    port = b.add("port", asset=asset, protocol="tcp", number=443)
    risks = [b.add("risk", target=port, name=f"finding-{i}",
                   severity=("critical", "high", "medium", "low", "info")[i % 5],
                   comment=f"note {i}", evidence=[f"https://www.example.com/{i}"],
                   properties={"meta": {"password": "hunter2"}, "tags": ["t"]})
             for i in range(n_risks)]
    attr = b.add("attribute", name="db_password", value="s3cret", parent=asset)
    api.tenant.apply(b, actor="seed", source="test")
    return {"asset": asset, "port": port, "risks": risks, "attribute": attr}


def test_list_filters_sorts_and_pages_like_the_cli(api):
    keys = seed(api, 12)
    r = api.get("/v1/entities/risk", "reader", params={"where": ["severity>=high"], "sort": "name",
                                                        "limit": 2})
    assert r.status_code == 200
    page = r.json()
    library = api.tenant.list("risk", where=["severity>=high"], order_by="name", limit=100).records
    got, cursor = [i["key"] for i in page["items"]], page["next_cursor"]
    while cursor:
        nxt = api.get("/v1/entities/risk", "reader", params={"where": ["severity>=high"],
                                                             "sort": "name", "limit": 2,
                                                             "cursor": cursor}).json()
        got += [i["key"] for i in nxt["items"]]
        cursor = nxt["next_cursor"]
    assert got == [rec.key for rec in library] and len(got) == 6
    assert set(got) <= set(keys["risks"])
    text = api.get("/v1/entities/risk", "reader", params={"q": "finding-11"}).json()["items"]
    assert [i["name"] for i in text] == ["finding-11"]


def test_the_page_cap_bounds_every_list(api, store):
    seed(api, 7)
    client = TestClient(create_app(store, Settings(rate_limit="none", page_cap=3)))
    body = client.get("/v1/entities/risk", params={"limit": 1000},
                      headers=api.headers("reader")).json()
    assert len(body["items"]) == 3 and body["next_cursor"]


def test_bad_filters_and_kinds_are_problems(api):
    r = api.get("/v1/entities/risk", "reader", params={"where": ["nosuchfield=1"]})
    assert r.status_code == 400 and "no field 'nosuchfield'" in r.json()["detail"]
    assert r.headers["content-type"] == "application/problem+json"
    assert api.get("/v1/entities/nosuchkind", "reader").status_code == 422
    bad_cursor = api.get("/v1/entities/risk", "reader", params={"cursor": "garbage"})
    assert bad_cursor.status_code == 400


def test_get_as_of_history_and_links(api):
    keys = seed(api)
    before = datetime.now(timezone.utc)
    r = api.post("/v1/entities/asset", "analyst", json={
        "values": {"identifier": "www.example.com", "class": "domain", "criticality": "high"},
        "note": "crown jewel"})
    assert r.status_code == 200 and r.json()["updated"] == 1
    now = api.get("/v1/entity", "reader", params={"key": keys["asset"]})
    assert now.json()["criticality"] == "high" and now.headers["etag"] == '"2"'
    then = api.get("/v1/entity", "reader", params={"key": keys["asset"], "as_of": before.isoformat()})
    assert then.status_code == 200 and then.json()["criticality"] is None
    history = api.get("/v1/entity/history", "reader", params={"key": keys["asset"]}).json()
    assert [e["event_type"] for e in history if e["entity_kind"] == "asset"] == \
        ["asset.created", "asset.updated"]
    last = history[-1]
    assert (last["actor"], last["source"], last["correlation_id"], last["note"]) == \
        ("analyst-key", "api", r.headers["x-request-id"], "crown jewel")
    links = api.get("/v1/entity/links", "reader", params={"key": keys["asset"], "direction": "out"})
    assert {(l["relationship"], l["target"]) for l in links.json()} >= {("HAS_PORT", keys["port"])}
    assert api.get("/v1/entity", "reader", params={"key": "#asset#nope#nope"}).status_code == 404


def test_if_match_conflicts_are_412_and_write_nothing(api):
    keys = seed(api)
    body = {"values": {"identifier": "www.example.com", "class": "domain", "exposure": "external"}}
    stale = api.post("/v1/entities/asset", "analyst", json=body, headers={"If-Match": '"5"'})
    assert stale.status_code == 412 and stale.json()["status"] == 412
    assert api.tenant.get(keys["asset"]).version == 1
    ok = api.post("/v1/entities/asset", "analyst", json=body, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    garbage = api.post("/v1/entities/asset", "analyst", json=body, headers={"If-Match": "abc"})
    assert garbage.status_code == 400


def test_concurrent_writers_through_the_api_lose_no_update(api):
    """Each writer reads the version, then writes with If-Match: of every pair racing on one
    version, exactly one wins (200) and the other is told (412); the entity's version counts
    exactly the successful writes."""
    keys = seed(api)
    results: list[int] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        for _ in range(5):
            version = api.get("/v1/entity", "analyst", params={"key": keys["asset"]}).headers["etag"]
            r = api.post("/v1/entities/asset", "analyst", headers={"If-Match": version}, json={
                "values": {"identifier": "www.example.com", "class": "domain",
                           "criticality": ("low", "medium", "high", "critical")[i]}})
            with lock:
                results.append(r.status_code)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) <= {200, 412}, results
    wins = results.count(200)
    changed = [e for e in api.tenant.history(keys["asset"]) if e.event_type == "asset.updated"]
    # a write that set the criticality it already had changes nothing (no event, no version)
    assert len(changed) == api.tenant.get(keys["asset"]).version - 1 <= wins


def test_delete_needs_cascade_for_dependents(api):
    keys = seed(api)
    refused = api.request("DELETE", "/v1/entity", "admin", params={"key": keys["asset"]})
    assert refused.status_code == 409
    assert {e["key"] for e in refused.json()["errors"]} >= {keys["port"]}
    done = api.request("DELETE", "/v1/entity", "admin", params={"key": keys["asset"], "cascade": True})
    assert done.status_code == 200 and done.json()["deleted"] >= 1 + 1 + 5 + 1
    assert api.tenant.get(keys["port"]) is None
    deleted = [e for e in api.tenant.events() if e.event_type.endswith(".deleted")]
    assert {e.actor for e in deleted} == {"admin-key"}
    assert {e.correlation_id for e in deleted} == {done.headers["x-request-id"]}


def test_bulk_upsert_is_all_or_nothing_with_item_errors(api):
    doc = {"nodes": [{"kind": "asset", "identifier": "a.example.com", "class": "domain"},
                     {"kind": "asset", "identifier": "b.example.com", "class": "nonsense"},
                     {"kind": "asset", "identifier": "", "class": "domain"}]}
    r = api.post("/v1/batch", "analyst", json=doc)
    assert r.status_code == 422
    assert len(r.json()["errors"]) >= 2 and "nodes" in r.json()["detail"]
    assert api.tenant.count("asset") == 0
    doc["nodes"] = doc["nodes"][:1] + [{"kind": "asset", "identifier": "b.example.com", "class": "domain"}]
    ok = api.post("/v1/batch", "analyst", json=doc)
    assert ok.status_code == 200 and ok.json()["created"] == 2
    assert api.tenant.count("asset") == 2


def test_masking_per_role_on_every_entity_read_route(api):
    keys = seed(api, 1)
    risk, attr = keys["risks"][0], keys["attribute"]
    api.post("/v1/entities/asset", "admin", json={"values": {"identifier": "www.example.com",
                                                             "class": "domain", "account": "123456789012"}})
    expect = {  # role → (comment, evidence, properties.meta, attribute value, asset account)
        "reader": (None, None, None, None, None),
        "analyst": ("note 0", ["https://www.example.com/0"], None, None, "123456789012"),
        "admin": ("note 0", ["https://www.example.com/0"], {"password": "hunter2"}, "s3cret",
                  "123456789012"),
    }
    for role, (comment, evidence, meta, value, account) in expect.items():
        one = api.get("/v1/entity", role, params={"key": risk}).json()
        listed = api.get("/v1/entities/risk", role).json()["items"][0]
        for got in (one, listed):
            assert (got["comment"], got["evidence"], got["properties"]["meta"]) == (comment, evidence, meta)
            assert got["properties"]["tags"] == ["t"]  # internal: everyone
            assert bool(got.get("masked")) == (role != "admin")
        assert api.get("/v1/entity", role, params={"key": attr}).json()["value"] == value
        assert api.get("/v1/entity", role, params={"key": keys["asset"]}).json()["account"] == account
        history = api.get("/v1/entity/history", role, params={"key": risk}).json()
        created = history[0]["diff"]
        assert created["comment"] == (None if comment is None else [None, comment])
        assert created["severity"] == [None, "critical"]
    assert "hunter2" not in api.get("/v1/entities/risk", "analyst").text
    assert "s3cret" not in api.get("/v1/entity/history", "analyst", params={"key": attr}).text


def test_a_secret_in_an_attribute_key_is_masked_wherever_the_key_appears(api):
    keys = seed(api, 1)
    for role in ("reader", "analyst"):
        for path, params in (("/v1/entity/history", {"key": keys["asset"]}),
                             ("/v1/entity/links", {"key": keys["asset"]}),
                             ("/v1/entities/attribute", {})):
            r = api.get(path, role, params=params)
            assert r.status_code == 200 and "s3cret" not in r.text, (role, path, r.text)
            assert "#attribute#db_password#***#" in r.text
    assert "s3cret" in api.get("/v1/entity/links", "admin", params={"key": keys["asset"]}).text


def test_a_role_may_not_filter_or_sort_on_what_it_sees_masked(api):
    seed(api, 2)
    for params in ({"where": ["comment~note"]}, {"sort": "comment"}, {"where": ["!comment=x"]}):
        r = api.get("/v1/entities/risk", "reader", params=params)
        assert r.status_code == 400 and "may not" in r.json()["detail"], params
        assert api.get("/v1/entities/risk", "analyst", params=params).status_code == 200


def test_keys_embedding_a_masked_value_are_masked_inside(api):
    """A detection's key embeds its account's key, whose identifier is confidential."""
    from bastion.schema.roles import mask_key

    key = "#detection#cloud_account#aws#123456789012#sigma-rule-1"
    assert mask_key(key, "reader") == "#detection#cloud_account#aws#***#sigma-rule-1"
    assert mask_key(key, "analyst") == key
    deep = "#attribute#token#abc#port#tcp#443#asset#www.example.com#www.example.com"
    assert mask_key(deep, "reader") == "#attribute#token#***#port#tcp#443#asset#www.example.com#www.example.com"
