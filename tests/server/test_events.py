"""GET /v1/events on both engines: the tenant's change feed written through the API, read back in
sequence order a page at a time, filtered by correlation id (the write's X-Request-Id), kind
and event type; diffs masked by role; another tenant's events never appear."""

from __future__ import annotations

from bastion.schema.roles import ROLES, mask_event

SECRET_COMMENT = "reachable only with the leaked vpn password"


def write_asset(api, identifier: str, role: str = "analyst", **values):
    r = api.post("/v1/entities/asset", role, json={"values": {"identifier": identifier, **values}})
    assert r.status_code in (200, 201), r.text
    return r.headers["X-Request-Id"]


def feed(api, role: str = "reader", **params) -> dict:
    r = api.get("/v1/events", role, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_feed_in_order_resumable_and_by_correlation_id(api):
    keys_made = feed(api)  # the fixture's keys: api_key.created events
    assert {e["event_type"] for e in keys_made["events"]} == {"api_key.created"}
    start = keys_made["next_after"]
    ids = [write_asset(api, f"host{i}.acme.example") for i in range(3)]
    write_asset(api, "host1.acme.example", exposure="external")  # an update of the second

    whole = feed(api, after=start)
    assert not whole["more"] and whole["next_after"] == whole["events"][-1]["seq"]
    library = [mask_event(e.as_dict(), "reader") for e in api.tenant.events(after_seq=start)]
    assert [e["seq"] for e in whole["events"]] == [e["seq"] for e in library]
    assert [e["seq"] for e in whole["events"]] == sorted(e["seq"] for e in whole["events"])
    assert [e["event_type"] for e in whole["events"]] == ["asset.created"] * 3 + ["asset.updated"]

    # two at a time, each page resuming from the last sequence number of the one before
    seen, after = [], start
    while True:
        page = feed(api, after=after, limit=2)
        seen += page["events"]
        after = page["next_after"]
        if not page["more"]:
            break
    assert seen == whole["events"]
    assert feed(api, after=after) == {"events": [], "next_after": after, "more": False}
    # times as the CLI takes them: ISO 8601 or relative
    assert feed(api, after=start, since="-1h")["events"] == whole["events"]
    assert feed(api, after=start, until="2000-01-01")["events"] == []

    mine = feed(api, correlation_id=ids[1])["events"]
    assert [(e["entity_key"], e["event_type"]) for e in mine] == [
        ("#asset#host1.acme.example#host1.acme.example", "asset.created")]
    assert (mine[0]["actor"], mine[0]["source"], mine[0]["correlation_id"]) == (
        "analyst-key", "api", ids[1])


def test_filters_by_kind_and_event_type(api):
    write_asset(api, "www.acme.example")
    target = "#asset#www.acme.example#www.acme.example"
    r = api.post("/v1/entities/risk", "analyst", json={"values": {
        "target": target, "name": "weak tls", "severity": "low", "status": "open"}})
    assert r.status_code == 201, r.text
    r = api.post("/v1/entities/risk", "analyst", json={"values": {
        "target": target, "name": "weak tls", "status": "accepted"}})
    assert r.status_code == 200, r.text

    assert [e["event_type"] for e in feed(api, kind="risk")["events"]] == [
        "risk.created", "risk.status_changed"]
    assert [e["event_type"] for e in feed(api, event_type="risk.*")["events"]] == [
        "risk.created", "risk.status_changed"]
    assert [e["entity_kind"] for e in feed(api, event_type="*.created")["events"]] == [
        "api_key"] * len(ROLES) + ["asset", "risk"]
    assert [e["event_type"] for e in feed(api, event_type="risk.status_changed")["events"]] == [
        "risk.status_changed"]
    assert [e["event_type"] for e in feed(api, event_type="RISK.*")["events"]] == [
        "risk.created", "risk.status_changed"]
    # `_` and `%` are no wildcards: only `*` is
    assert feed(api, event_type="risk_*")["events"] == []
    assert feed(api, event_type="%")["events"] == []
    assert feed(api, kind="port")["events"] == []


def test_a_reader_sees_confidential_diffs_masked_an_analyst_sees_them(api):
    write_asset(api, "vpn.acme.example")
    r = api.post("/v1/entities/risk", "analyst", json={"values": {
        "target": "#asset#vpn.acme.example#vpn.acme.example", "name": "default credentials",
        "severity": "high", "comment": SECRET_COMMENT}})
    assert r.status_code == 201, r.text
    rid = r.headers["X-Request-Id"]

    (analyst,) = feed(api, "analyst", correlation_id=rid, kind="risk")["events"]
    assert analyst["diff"]["comment"] == [None, SECRET_COMMENT] and analyst.get("masked") is None
    reader = api.get("/v1/events", "reader", params={"correlation_id": rid})
    (ev,) = [e for e in reader.json()["events"] if e["entity_kind"] == "risk"]
    assert ev["diff"]["comment"] is None and ev["masked"] == ["comment"]
    assert ev["diff"]["severity"] == analyst["diff"]["severity"]
    assert SECRET_COMMENT not in reader.text


def test_another_tenants_events_never_appear(api):
    acme = write_asset(api, "www.acme.example")
    r = api.client.post("/v1/entities/asset", json={"values": {"identifier": "www.globex.example"}},
                        headers={"Authorization": f"Bearer {api.other_token}"})
    assert r.status_code == 201, r.text
    globex = r.headers["X-Request-Id"]

    assert {e["correlation_id"] for e in feed(api, kind="asset")["events"]} == {acme}
    assert "globex" not in str(feed(api)["events"])
    assert feed(api, correlation_id=globex)["events"] == []
    theirs = api.client.get("/v1/events", headers={"Authorization": f"Bearer {api.other_token}"})
    assert [e["entity_key"] for e in theirs.json()["events"]] == [
        "api_key:globex-admin", "#asset#www.globex.example#www.globex.example"]


def test_bad_requests(api):
    assert api.get("/v1/events", "reader", params={"kind": "planet"}).status_code == 422
    assert api.get("/v1/events", "reader", params={"after": -1}).status_code == 422
    r = api.get("/v1/events", "reader", params={"run": 999})
    assert r.status_code == 404 and "999" in r.json()["detail"]
    # what PostgreSQL cannot compare is refused on both engines, never a 500
    for params in ({"correlation_id": "a\x00"}, {"event_type": "risk.\x00*"},
                   {"since": "9999-12-31T23:59:59-23:59"}, {"until": "0.5"}):
        r = api.get("/v1/events", "reader", params=params)
        assert r.status_code == 400, (params, r.text)
    assert api.get("/v1/events", "uploader").status_code == 403
    assert api.get("/v1/events", None).status_code == 401
