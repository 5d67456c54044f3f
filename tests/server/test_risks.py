"""/v1/risks on both engines: open risks by priority, overdue risks and status changes, equal to
what bastion.risks.lifecycle and the store return for the same arguments; roles, If-Match,
masking of the confidential comment, and tenant isolation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bastion.risks import lifecycle
from bastion.schema.batch import Batch

OLD = datetime.now(timezone.utc) - timedelta(days=60)


@pytest.fixture
def risks(api) -> dict[str, str]:
    """Five risks on two assets of acme (three first seen 60 days ago), one accepted; one risk
    of globex. Priorities are given (imports and enrichment compute them)."""
    b = Batch()
    www = b.add("asset", identifier="www.acme.example")
    api_host = b.add("asset", identifier="api.acme.example")
    keys = {"crit": b.add("risk", target=www, name="exposed-git", severity="critical", cvss=9.8,
                          priority=95),
            "high": b.add("risk", target=api_host, name="CVE-2021-41773", severity="high", cvss=7.5,
                          priority=70),
            "low": b.add("risk", target=www, name="missing-hsts", severity="low", priority=20)}
    api.tenant.apply(b, actor="scanner", source="nuclei", at=OLD)
    b = Batch()
    keys["med"] = b.add("risk", target=www, name="weak-tls", severity="medium", cvss=5.0,
                        priority=40)
    keys["info"] = b.add("risk", target=api_host, name="server-header", severity="info",
                         priority=5)
    api.tenant.apply(b, actor="scanner", source="nuclei")
    lifecycle.set_status(api.tenant, keys["low"], "accepted", reason=None, comment="by design",
                         actor="ana")
    lifecycle.set_status(api.tenant, keys["high"], "open", reason=None, comment="ticket SEC-1",
                         actor="ana")
    b = Batch()
    keys["globex"] = b.add("risk", target=b.add("asset", identifier="www.globex.example"),
                           name="exposed-git", severity="critical")
    api.other.apply(b, actor="scanner", source="nuclei", at=OLD)
    return keys


def open_by_priority(tenant, *where):
    return [r.key for r in tenant.iterate("risk", where=where or None, order_by="priority",
                                          descending=True)
            if r.values["status"] in lifecycle.OPEN_STATES]


def pages(api, path, role="reader", **params):
    """Every item of a paged list, following next_cursor."""
    items, cursor = [], None
    while True:
        r = api.get(path, role, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_open_risks_in_priority_order_as_the_store_lists_them(api, risks):
    expected = open_by_priority(api.tenant)
    assert expected == [risks["crit"], risks["high"], risks["med"], risks["info"]]
    body = api.get("/v1/risks", "reader").json()
    assert [r["key"] for r in body["items"]] == expected and body["next_cursor"] is None
    priorities = [r["priority"] for r in body["items"]]
    assert priorities == sorted(priorities, reverse=True)
    # the same order page by page through the keyset cursor
    assert [r["key"] for r in pages(api, "/v1/risks", limit=1)] == expected
    # the CLI's filter syntax, ANDed with "open"
    high = api.get("/v1/risks", "reader", params={"where": ["severity>=high", "cvss>=7"]}).json()
    assert [r["key"] for r in high["items"]] == open_by_priority(api.tenant, "severity>=high", "cvss>=7")
    assert [r["key"] for r in high["items"]] == [risks["crit"], risks["high"]]
    text = api.get("/v1/risks", "reader", params={"q": "tls"}).json()
    assert [r["key"] for r in text["items"]] == [risks["med"]]
    only_open = api.get("/v1/risks", "reader", params={"where": "status=open"}).json()
    assert [r["key"] for r in only_open["items"]] == [risks["high"]]
    # an accepted risk is not open, even when asked for by name
    assert api.get("/v1/risks", "reader", params={"where": "status=accepted"}).json()["items"] == []


def test_the_comment_is_masked_for_a_reader_and_shown_to_an_analyst(api, risks):
    by_reader = {r["key"]: r for r in api.get("/v1/risks", "reader").json()["items"]}
    assert by_reader[risks["high"]]["comment"] is None
    assert "comment" in by_reader[risks["high"]]["masked"]
    by_analyst = {r["key"]: r for r in api.get("/v1/risks", "analyst").json()["items"]}
    assert by_analyst[risks["high"]]["comment"] == "ticket SEC-1"
    assert not by_analyst[risks["high"]].get("masked")
    # filtering on it would tell it: refused for the reader, allowed for the analyst
    r = api.get("/v1/risks", "reader", params={"where": "comment~SEC"})
    assert r.status_code == 400 and "comment" in r.json()["detail"]
    assert [x["key"] for x in api.get("/v1/risks", "analyst", params={"where": "comment~SEC"}).json()["items"]] \
        == [risks["high"]]


def test_overdue_risks_as_the_library_lists_them(api, risks):
    now = datetime.now(timezone.utc)
    expected = [(r.key, due) for r, due in lifecycle.overdue(api.tenant, now)]
    # critical (7 days) and high (30 days) first seen 60 days ago; low is accepted
    assert [k for k, _ in expected] == sorted([risks["crit"], risks["high"]])
    items = pages(api, "/v1/risks/overdue", limit=1)
    assert [(i["risk"]["key"], datetime.fromisoformat(i["due"])) for i in items] == expected
    assert all(i["days_overdue"] >= 29 for i in items)
    assert all(i["risk"]["comment"] is None for i in items)  # the reader's view
    crit = api.get("/v1/risks/overdue", "reader", params={"where": "severity=critical"}).json()
    assert [i["risk"]["key"] for i in crit["items"]] == [risks["crit"]]
    assert api.get("/v1/risks/overdue", "reader", params={"cursor": "nope"}).status_code == 400


def test_a_status_change_is_an_event_of_the_key_with_the_request_id(api, risks):
    key = risks["crit"]
    before = api.tenant.get(key)
    r = api.post("/v1/risks/status", "analyst", json={
        "key": key, "status": "deleted", "reason": "false_positive", "comment": "test host"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["reason"], body["comment"]) == ("deleted", "false_positive", "test host")
    assert body["entity_version"] == before.version + 1 and r.headers["ETag"] == f'"{before.version + 1}"'
    ev = api.tenant.history(key)[-1]
    assert ev.event_type == "risk.status_changed"
    assert (ev.actor, ev.source, ev.correlation_id) == ("analyst-key", "api", r.headers["X-Request-Id"])
    assert ev.diff["status"] == ["triage", "deleted"] and ev.note == "test host"
    rec = api.tenant.get(key)
    assert (rec.values["status"], rec.values["reason"]) == ("deleted", "false_positive")
    assert key not in open_by_priority(api.tenant)


def test_if_match_applies_the_change_only_to_the_version_read(api, risks):
    key = risks["med"]
    version = api.tenant.get(key).version
    events = len(api.tenant.history(key))
    r = api.post("/v1/risks/status", "analyst", headers={"If-Match": f'"{version - 1}"'},
                 json={"key": key, "status": "accepted"})
    assert r.status_code == 412
    assert r.headers["content-type"].startswith("application/problem+json")
    assert f"version {version}" in r.json()["detail"]
    assert len(api.tenant.history(key)) == events and api.tenant.get(key).version == version
    assert api.tenant.get(key).values["status"] == "triage"
    r = api.post("/v1/risks/status", "analyst", headers={"If-Match": f'"{version}"'},
                 json={"key": key, "status": "accepted", "comment": "compensating control"})
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert len(api.tenant.history(key)) == events + 1
    r = api.post("/v1/risks/status", "analyst", headers={"If-Match": "abc"},
                 json={"key": key, "status": "open"})
    assert r.status_code == 400


@pytest.mark.parametrize("role", ["reader", "uploader"])
def test_roles_without_triage_may_not_change_a_status(api, risks, role):
    events = len(api.tenant.events(limit=100000))
    r = api.post("/v1/risks/status", role, json={"key": risks["crit"], "status": "accepted"})
    assert r.status_code == 403
    assert len(api.tenant.events(limit=100000)) == events
    assert api.tenant.get(risks["crit"]).values["status"] == "triage"
    assert api.get("/v1/risks", "uploader").status_code == 403  # uploaders do not read


def test_mistakes_answer_with_the_cli_messages_and_write_nothing(api, risks):
    events = len(api.tenant.events(limit=100000))
    r = api.post("/v1/risks/status", "analyst", json={"key": risks["crit"], "status": "deleted"})
    assert r.status_code == 400 and "needs --reason" in r.json()["detail"]
    r = api.post("/v1/risks/status", "analyst",
                 json={"key": risks["crit"], "status": "open", "reason": "duplicate"})
    assert r.status_code == 400 and "only when a risk is remediated or deleted" in r.json()["detail"]
    r = api.post("/v1/risks/status", "analyst", json={"key": risks["crit"], "status": "fixed"})
    assert r.status_code == 422
    r = api.post("/v1/risks/status", "analyst", json={"key": "#asset#www.acme.example", "status": "open"})
    assert r.status_code == 400 and "is not a risk" in r.json()["detail"]
    r = api.post("/v1/risks/status", "analyst", json={"key": "#risk#nowhere.example#x", "status": "open"})
    assert r.status_code == 404
    r = api.get("/v1/risks", "reader", params={"where": "colour=red"})
    assert r.status_code == 400
    assert len(api.tenant.events(limit=100000)) == events


def test_globex_cannot_reach_acme_risks(api, risks):
    globex = {"Authorization": f"Bearer {api.other_token}"}
    r = api.client.post("/v1/risks/status", headers=globex, json={"key": risks["crit"], "status": "accepted"})
    assert r.status_code == 404
    assert api.tenant.get(risks["crit"]).values["status"] == "triage"
    listed = api.client.get("/v1/risks", headers=globex).json()["items"]
    assert [x["key"] for x in listed] == [risks["globex"]]
    overdue = api.client.get("/v1/risks/overdue", headers=globex).json()["items"]
    assert [x["risk"]["key"] for x in overdue] == [risks["globex"]]
    # and acme's keys do not reach globex's risk
    r = api.post("/v1/risks/status", "admin", json={"key": risks["globex"], "status": "accepted"})
    assert r.status_code == 404
    assert risks["globex"] not in [x["key"] for x in api.get("/v1/risks", "admin").json()["items"]]


def test_a_status_changes_note_is_masked_with_its_comment(api, risks):
    """The comment of a status change is also its event's note: a reader sees neither."""
    r = api.post("/v1/risks/status", "analyst", json={"key": risks["high"], "status": "accepted",
                                                      "comment": "WAF rule 42 covers it"})
    assert r.status_code == 200, r.text
    for path, params in (("/v1/entity/history", {"key": risks["high"]}),
                         ("/v1/events", {"correlation_id": r.headers["x-request-id"]})):
        reader = api.get(path, "reader", params=params)
        assert reader.status_code == 200 and "WAF rule 42" not in reader.text
        assert "WAF rule 42" in api.get(path, "analyst", params=params).text


def test_unwatched_exposures_equal_the_library(api, risks):
    from bastion.coverage.attack import ensure_default_catalog
    from bastion.risks.exposures import exposures

    assert api.get("/v1/exposures", "reader").status_code == 404  # no ATT&CK release yet
    ensure_default_catalog(api.store, actor="test")
    from bastion.store import edits

    for key, tid in ((risks["high"], "T1190"), (risks["crit"], "T1078")):  # as `enrich techniques` writes them
        rec = api.tenant.get(key)
        edits.put(api.tenant, "risk", {"target": rec.values["target"], "name": rec.values["name"]},
                  {"techniques": [{"id": tid, "role": "exploitation"}]}, actor="t", source="t")
    catalog = api.tenant.coverage.catalog("enterprise")
    expected = [e.risk for e in exposures(api.tenant, catalog)]
    body = api.get("/v1/exposures", "reader").json()
    assert [e["risk"] for e in body["exposures"]] == expected
    assert set(expected) == {risks["high"], risks["crit"]}
    assert body["attack_version"] == catalog.version
    assert {t["technique"] for t in body["techniques"]} == {"T1190", "T1078"}
