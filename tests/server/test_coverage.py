"""/v1/coverage on both engines, against the default ATT&CK catalog `bastion init` loads: every
answer equals what bastion.coverage returns for the same arguments; gap decisions and mapping
validation are events of the key (TRIAGE); confidential values are masked for a reader; globex
reaches none of acme's accounts."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from bastion.coverage.attack import ensure_default_catalog
from bastion.schema import roles
from bastion.coverage.compute import compute
from bastion.coverage.gaps import gaps, overlaps
from bastion.coverage.gate import check as gate_check
from bastion.coverage.history import drift, history, snapshot
from bastion.coverage.inventory import Options, import_detections
from bastion.coverage.layer import layer
from bastion.schema.batch import Batch
from bastion.server.routes.coverage import DriftOut, HistoryPoint, TechniqueOut


def det(b: Batch, account: str, rule: str, maps, **values) -> str:
    key = b.add("detection", account=account, rule_id=rule, name=f"rule {rule}",
                **{"status": "enabled", "health": "healthy", "level": "medium",
                   "type": "sigma_rule", **values})
    for tech, conf, validation in maps:
        b.add("mapping", detection=key, technique=tech, confidence=conf, method="analyst",
              validation=validation, rationale=f"{rule} sees {tech}")
    return key


@pytest.fixture
def cov(api):
    """acme: a named AWS account (IaaS) with seven detections, an unnamed GCP account with one;
    globex: an account of its own."""
    ensure_default_catalog(api.store, actor="test")
    b = Batch()
    aws = b.add("cloud_account", provider="aws", identifier="111122223333", name="prod-aws",
                criticality="high", platforms=["IaaS"])
    gcp = b.add("cloud_account", provider="gcp", identifier="acme-secret-project", platforms=["IaaS"])
    k = {"aws": aws, "gcp": gcp}
    k["d1"] = det(b, aws, "d1", [("T1078.004", 0.9, "pending")], level="high", service="guardduty",
                  type="cloud_control")
    k["d2"] = det(b, aws, "d2", [("T1078.004", 0.8, "pending")], level="high", service="cloudtrail",
                  type="log_query")
    k["d3"] = det(b, aws, "d3", [("T1190", 1.0, "pending")], status="disabled")
    k["d4"] = det(b, aws, "d4", [("T1098", 1.0, "pending")], health="broken")
    k["d5"] = det(b, aws, "d5", [("T1530", 0.4, "pending")])  # below 0.6, not validated
    k["d6"] = det(b, aws, "d6", [("T1535", 0.9, "pending")])
    k["d7"] = det(b, aws, "d7", [("T1078.004", 0.9, "pending")], health="broken")
    k["g1"] = det(b, gcp, "g1", [("T1580", 0.9, "pending")])
    api.tenant.apply(b, actor="test", source="test")
    k["m5"] = Batch().add("mapping", detection=k["d5"], technique="T1530")
    b = Batch()
    k["globex"] = b.add("cloud_account", provider="aws", identifier="999", name="globex-aws")
    api.other.apply(b, actor="test", source="test")
    return k


def catalog(api, domain="enterprise"):
    return api.tenant.coverage.catalog(domain)


def test_accounts_with_their_detection_counts(api, cov):
    body = api.get("/v1/coverage/accounts", "analyst").json()
    assert [(a["key"], a["detections"]) for a in body["items"]] == [(cov["aws"], 7), (cov["gcp"], 1)]
    # the identifier is confidential: masked for a reader, in the key too
    body = api.get("/v1/coverage/accounts", "reader").json()
    assert [(a["key"], a["detections"]) for a in body["items"]] == [
        ("#cloud_account#aws#***", 7), ("#cloud_account#gcp#***", 1)]
    assert body["items"][0]["identifier"] is None and body["items"][0]["masked"] == ["identifier"]
    assert body["items"][0]["platforms"] == ["IaaS"]
    shown = api.get("/v1/coverage/accounts", "analyst", params={"where": "name=prod-aws"}).json()
    assert [a["identifier"] for a in shown["items"]] == ["111122223333"]
    page = api.get("/v1/coverage/accounts", "analyst", params={"limit": 1}).json()
    rest = api.get("/v1/coverage/accounts", "analyst", params={"cursor": page["next_cursor"]}).json()
    assert [a["key"] for a in page["items"] + rest["items"]] == [cov["aws"], cov["gcp"]]
    globex = api.client.get("/v1/coverage/accounts", headers={"Authorization": f"Bearer {api.other_token}"})
    assert [a["key"] for a in globex.json()["items"]] == [cov["globex"]]


@pytest.mark.parametrize("params", [
    {"account": "prod-aws"},
    {},
    {"account": "aws/111122223333", "method": "plain", "aggregation": "max"},
    {"account": "prod-aws", "min_confidence": 0.3, "aggregation": "weighted"},
    {"account": "prod-aws", "include": ["initial-access", "T1098"], "ignore": ["T1190"]},
])
def test_report_equals_the_library(api, cov, params):
    r = api.get("/v1/coverage/report", "analyst", params=params)
    assert r.status_code == 200, r.text
    lib = compute(api.tenant, catalog(api), account=params.get("account"),
                  method=params.get("method", "default"), aggregation=params.get("aggregation", "count"),
                  min_confidence=params.get("min_confidence", 0.6), include=params.get("include"),
                  ignore=params.get("ignore"))
    body = r.json()
    assert body.pop("attribution").startswith("MITRE ATT&CK")
    assert body == lib.as_dict()
    assert body["attack"] == {"domain": "enterprise", "version": "19"}


def test_the_report_of_a_default_account(api, cov):
    body = api.get("/v1/coverage/report", "reader", params={"account": "prod-aws"}).json()
    # d1, d2 cover T1078.004 (rolled up to T1078); d6 covers T1535; d3 disabled, d4 broken, d5
    # below the confidence floor: not counted
    assert body["overall"]["covered"] == 3
    assert body["accounts"] == ["#cloud_account#aws#***"] and body["platforms"] == ["IaaS"]
    assert body["account"] == "#cloud_account#aws#***"  # the reader's view
    body = api.get("/v1/coverage/report", "analyst", params={"account": "prod-aws"}).json()
    assert body["account"] == cov["aws"] and body["accounts"] == [cov["aws"]]


def test_techniques_with_the_detections_behind_them(api, cov):
    lib = compute(api.tenant, catalog(api), account="prod-aws", details=True)
    body = api.get("/v1/coverage/techniques", "analyst", params={"account": "prod-aws"}).json()
    assert body["techniques"] == [TechniqueOut.model_validate(t.as_dict()).model_dump(mode="json")
                                  for t in lib.techniques.values()]
    assert body["next_cursor"] is None
    covered = api.get("/v1/coverage/techniques", "reader",
                      params={"account": "prod-aws", "covered": True}).json()["techniques"]
    assert [t["id"] for t in covered] == ["T1078", "T1078.004", "T1535"]
    behind = {d["rule_id"]: d for d in covered[1]["detections"]}
    assert set(behind) == {"d1", "d2"}  # d7 is broken
    assert behind["d1"]["account"] == "#cloud_account#aws#***"  # the reader's view
    assert (behind["d1"]["confidence"], behind["d1"]["health"], behind["d1"]["validation"]) == \
        (0.9, "healthy", "pending")
    # the CLI's row filter, and paging by technique id
    high = api.get("/v1/coverage/techniques", "reader",
                   params={"account": "prod-aws", "where": ["covered=true", "id~T1078"]}).json()
    assert [t["id"] for t in high["techniques"]] == ["T1078", "T1078.004"]
    ids, cursor = [], None
    while True:
        page = api.get("/v1/coverage/techniques", "reader", params={
            "account": "prod-aws", "limit": 50, **({"cursor": cursor} if cursor else {})}).json()
        ids += [t["id"] for t in page["techniques"]]
        if not (cursor := page["next_cursor"]):
            break
    assert ids == list(lib.techniques)
    bad = api.get("/v1/coverage/techniques", "reader", params={"account": "prod-aws", "cursor": "T0000"})
    assert bad.status_code == 400


def test_gaps_and_a_gap_decision(api, cov):
    lib = gaps(api.tenant, catalog(api), account="prod-aws")
    body = api.get("/v1/coverage/gaps", "analyst", params={"account": "prod-aws", "limit": 1000}).json()
    assert body["gaps"] == [{**g.as_dict(), "masked": None} for g in lib.gaps]
    assert body["total"] == len(lib.gaps) and "T1190" in [g["technique"] for g in body["gaps"]]
    r = api.post("/v1/coverage/gaps/status", "analyst", json={
        "account": "prod-aws", "technique": "T1190", "status": "accepted_risk", "comment": "WAF in front"})
    assert r.status_code == 200, r.text
    gap = r.json()
    assert (gap["kind"], gap["status"], gap["comment"]) == ("gap", "accepted_risk", "WAF in front")
    ev = api.tenant.history(gap["key"])[-1]
    assert (ev.event_type, ev.actor, ev.source, ev.correlation_id, ev.note) == (
        "gap.created", "analyst-key", "api", r.headers["X-Request-Id"], "WAF in front")
    lib = gaps(api.tenant, catalog(api), account="prod-aws")
    assert next(g for g in lib.gaps if g.technique == "T1190").status == "accepted_risk"
    # the comment is confidential: a reader sees it masked, an analyst in clear
    by_reader = api.get("/v1/coverage/gaps", "reader", params={"account": "prod-aws"}).json()["gaps"]
    t1190 = next(g for g in by_reader if g["technique"] == "T1190")
    assert (t1190["status"], t1190["comment"], t1190["masked"]) == ("accepted_risk", None, ["comment"])
    assert api.get("/v1/coverage/gaps", "reader", params={
        "account": "prod-aws", "where": "comment~WAF"}).json()["gaps"] == []
    by_analyst = api.get("/v1/coverage/gaps", "analyst", params={
        "account": "prod-aws", "where": "comment~WAF"}).json()["gaps"]
    assert [(g["technique"], g["comment"]) for g in by_analyst] == [("T1190", "WAF in front")]


def test_gaps_of_the_tenant_page_and_hide_an_unnamed_accounts_identifier(api, cov):
    lib = gaps(api.tenant, catalog(api))
    seen, cursor, cursors = [], None, []
    while True:  # the reader's pages: its cursors do not carry the masked identifier
        body = api.get("/v1/coverage/gaps", "reader",
                       params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        seen += body["gaps"]
        if not (cursor := body["next_cursor"]):
            break
        cursors.append(cursor)
    assert [(g["account"].split("#")[2], g["technique"]) for g in seen] == [
        (g.account.split("#")[2], g.technique) for g in lib.gaps]
    assert cursors and not any("111122223333" in c or "acme-secret" in c for c in cursors)
    assert {g["account"] for g in seen} == {"#cloud_account#aws#***", "#cloud_account#gcp#***"}
    gcp = [g for g in seen if g["account"] == "#cloud_account#gcp#***"]
    assert gcp and all(g["account_name"] is None and "account_name" in g["masked"] for g in gcp)
    analyst = api.get("/v1/coverage/gaps", "analyst", params={"account": cov["gcp"]}).json()["gaps"]
    assert analyst[0]["account_name"] == "gcp/acme-secret-project"


def test_gap_decisions_need_triage_and_stay_in_the_tenant(api, cov):
    events = len(api.tenant.events(limit=100000))
    body = {"account": "prod-aws", "technique": "T1190", "status": "acknowledged"}
    assert api.post("/v1/coverage/gaps/status", "reader", json=body).status_code == 403
    assert api.post("/v1/coverage/gaps/status", "uploader", json=body).status_code == 403
    globex = {"Authorization": f"Bearer {api.other_token}"}
    assert api.client.post("/v1/coverage/gaps/status", headers=globex, json=body).status_code == 404
    assert api.client.post("/v1/coverage/gaps/status", headers=globex,
                           json={**body, "account": cov["aws"]}).status_code == 404
    r = api.post("/v1/coverage/gaps/status", "analyst", json={**body, "technique": "T9999"})
    assert r.status_code == 404 and "T9999" in r.json()["detail"]
    assert api.post("/v1/coverage/gaps/status", "analyst", json={**body, "status": "fixed"}).status_code == 422
    assert len(api.tenant.events(limit=100000)) == events
    r = api.get("/v1/coverage/report", "reader", params={"account": cov["globex"]})
    assert r.status_code == 404


def test_overlaps_equal_the_library(api, cov):
    lib = overlaps(api.tenant, catalog(api), account="prod-aws")
    body = api.get("/v1/coverage/overlaps", "analyst", params={"account": "prod-aws"}).json()
    assert body["overlaps"] == [o.as_dict() for o in lib]
    [o] = body["overlaps"]  # d1, d2 count on T1078.004 beside the broken d7
    assert (o["technique"], o["classification"]) == ("T1078.004", "conflicting")
    assert "beneficial" in body["rules"] and "excessive" in body["rules"]
    only = api.get("/v1/coverage/overlaps", "reader", params={"where": "classification=beneficial"}).json()
    assert only["overlaps"] == []


def test_the_navigator_layer_equals_the_library(api, cov):
    lib = layer(compute(api.tenant, catalog(api), account="prod-aws", details=True), name="prod")
    body = api.get("/v1/coverage/layer", "analyst", params={"account": "prod-aws", "name": "prod"}).json()
    assert body == json.loads(json.dumps(lib))
    masked = api.get("/v1/coverage/layer", "reader", params={"account": "prod-aws"}).json()
    assert "111122223333" not in json.dumps({k: v for k, v in masked.items() if k != "techniques"})
    assert body["versions"]["layer"] == "4.5" and body["domain"] == "enterprise-attack"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_ci_gate_answers_passed_or_failed_with_200(api, cov, method):
    lib = compute(api.tenant, catalog(api), account="prod-aws")
    pct = lib.overall["percent"]
    base = {"account": "prod-aws"}
    ok = api.request(method, "/v1/coverage/check", "reader", params={**base, "min_percent": pct})
    assert ok.status_code == 200
    assert ok.json() == gate_check(lib, pct).as_dict() and ok.json()["passed"] is True
    assert ok.json()["message"].startswith("OK: coverage at or above")
    fail = api.request(method, "/v1/coverage/check", "reader", params={**base, "min_percent": pct + 1})
    assert fail.status_code == 200 and fail.json()["passed"] is False
    assert fail.json()["message"] == f"FAIL: coverage below {pct + 1:g}%: overall (3/{lib.overall['total']}) {pct:.2f}%"
    tactics = api.request(method, "/v1/coverage/check", "reader", params={
        **base, "min_percent": 1, "tactic": ["initial-access", "TA0009"]}).json()
    assert [(c["tactic"], c["passed"]) for c in tactics["checked"]] == [("initial-access", True),
                                                                      ("collection", False)]
    assert tactics == gate_check(lib, 1, ["initial-access", "TA0009"]).as_dict()
    bad = api.request(method, "/v1/coverage/check", "reader", params={**base, "min_percent": 1, "tactic": "nope"})
    assert bad.status_code == 400 and "unknown tactic" in bad.json()["detail"]
    assert api.request(method, "/v1/coverage/check", "reader", params={"min_percent": 101}).status_code == 422


def test_history_and_drift_equal_the_library(api, cov, tmp_path):
    cat = catalog(api)
    t0 = datetime.now(timezone.utc) - timedelta(days=2)
    first = tmp_path / "siem.json"
    first.write_text(json.dumps([{"rule_id": "s1", "name": "root login", "type": "log_query",
                                  "techniques": [{"id": "T1078.004", "confidence": 0.9}]},
                                 {"rule_id": "s2", "name": "new region", "techniques": ["T1535"]}]))
    opts = dict(actor="test", format="json", account=cov["aws"], source="siem")
    import_detections(api.tenant, [str(first)], Options(**opts), catalog=cat)
    snapshot(api.tenant, cat, cov["aws"], at=t0)
    first.write_text(json.dumps([{"rule_id": "s1", "name": "root login", "type": "log_query",
                                  "techniques": [{"id": "T1078.004", "confidence": 0.9}]},
                                 {"rule_id": "s3", "name": "cloud storage", "techniques": ["T1530"]}]))
    import_detections(api.tenant, [str(first)], Options(**opts), catalog=cat)
    snapshot(api.tenant, cat, cov["aws"])

    hist = api.get("/v1/coverage/history", "analyst", params={"account": "prod-aws", "techniques": True})
    lib = history(api.tenant, "prod-aws", techniques=True)
    assert len(lib) >= 2
    assert hist.json() == [HistoryPoint.model_validate(p).model_dump(mode="json") for p in lib]
    plain = api.get("/v1/coverage/history", "reader", params={"account": "prod-aws", "method": "plain"})
    assert plain.json() == []

    d = api.get("/v1/coverage/drift", "analyst", params={"account": "prod-aws"})
    assert d.status_code == 200, d.text
    lib = drift(api.tenant, "prod-aws", catalog=cat)
    assert d.json() == DriftOut.model_validate(lib).model_dump(mode="json", by_alias=True)
    body = d.json()
    assert body["source"] == "siem" and body["counts"]["added"] == 1 and body["counts"]["removed"] == 1
    assert body["from"]["id"] < body["to"]["id"]
    again = api.get("/v1/coverage/drift", "reader", params={"from": body["from"]["id"], "to": body["to"]["id"]})
    assert again.json()["changes"] == roles.mask_deep(body["changes"], "reader")
    assert again.json()["account"] == "#cloud_account#aws#***"
    assert "111122223333" not in again.text
    none = api.get("/v1/coverage/drift", "reader", params={"account": cov["gcp"]})
    assert none.status_code == 404 and "two detection snapshots" in none.json()["detail"]


def test_a_domain_without_a_release_is_404(api, cov):
    r = api.get("/v1/coverage/report", "reader", params={"domain": "ics"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert api.get("/v1/coverage/report", "reader", params={"domain": "pre"}).status_code == 422


def test_mapping_validation_is_an_analysts_event(api, cov):
    key = cov["m5"]
    events = len(api.tenant.events(limit=100000))
    assert api.post("/v1/coverage/mappings/validation", "reader",
                    json={"key": key, "validation": "validated"}).status_code == 403
    globex = {"Authorization": f"Bearer {api.other_token}"}
    assert api.client.post("/v1/coverage/mappings/validation", headers=globex,
                           json={"key": key, "validation": "validated"}).status_code == 404
    assert len(api.tenant.events(limit=100000)) == events
    r = api.post("/v1/coverage/mappings/validation", "analyst",
                 json={"key": key, "validation": "validated", "rationale": "tested in staging"})
    assert r.status_code == 200, r.text
    assert (r.json()["validation"], r.json()["rationale"]) == ("validated", "tested in staging")
    ev = api.tenant.history(key)[-1]
    assert (ev.actor, ev.source, ev.correlation_id) == ("analyst-key", "api", r.headers["X-Request-Id"])
    assert ev.note == "validated by analyst-key: tested in staging"
    # validated, the 0.4 mapping of d5 counts now: T1530 is covered
    covered = api.get("/v1/coverage/techniques", "reader",
                      params={"account": "prod-aws", "covered": True}).json()["techniques"]
    assert "T1530" in [t["id"] for t in covered]
    r = api.post("/v1/coverage/mappings/validation", "analyst",
                 json={"key": cov["d5"], "validation": "validated"})
    assert r.status_code == 400 and "not a mapping key" in r.json()["detail"]


def test_no_answer_tells_a_reader_the_account_identifier(api, cov):
    """Layer rule labels, drift changes and error messages quote detection and account keys:
    masked for a role that may not see the identifier (confidential)."""
    for path in ("/v1/coverage/layer", "/v1/coverage/drift", "/v1/coverage/report",
                 "/v1/coverage/techniques", "/v1/coverage/gaps", "/v1/coverage/history"):
        for params in ({"account": "aws:111122223333"}, {}):
            r = api.get(path, "reader", params=params)
            assert r.status_code in (200, 400, 404), (path, r.text)
            assert "111122223333" not in r.text, (path, params, r.text[:500])
    assert "111122223333" in api.get("/v1/coverage/layer", "analyst",
                                      params={"account": "aws:111122223333"}).text
