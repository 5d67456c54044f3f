"""/metrics: Prometheus text with requests by route template, imports and their records, the
pool and each tenant's event counter; never a key or a URL's values; a token when configured."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import make_api
from bastion.server.context import Settings

NUCLEI = b'{"template-id":"t1","host":"a.example.com","matched-at":"https://a.example.com/","info":{"severity":"high","name":"T1"}}\n'


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_metrics_count_requests_imports_and_events(api):
    before = samples(api.get("/metrics", None).text)
    for _ in range(3):
        assert api.get("/v1/entity", "reader", params={"key": "#asset#x#secret-host"}).status_code == 404
    assert api.post("/v1/imports", "uploader", files=[("files", ("n.jsonl", NUCLEI))]).status_code == 201
    text = api.get("/metrics", None).text
    after = samples(text)
    key = ("bastion_http_requests_total", (("method", "GET"), ("route", "/v1/entity"), ("status", "404")))
    assert after[key] - before.get(key, 0) == 3
    assert after[("bastion_imports_total", (("kind", "scan"), ("status", "succeeded")))] >= 1
    assert after[("bastion_import_records_total", ())] >= 1
    seq = after[("bastion_tenant_event_seq", (("tenant_id", str(api.tenant.tenant_id)),))]
    assert seq == max(e.seq for e in api.tenant.events(limit=100000))
    assert ("bastion_db_pool_checked_out", ()) in after
    assert "secret-host" not in text and api.tokens["reader"] not in text


def test_a_metrics_token_guards_the_scrape(store, monkeypatch):
    monkeypatch.setenv("BASTION_METRICS_TOKEN", "scrape-me")
    api = make_api(store, Settings(rate_limit="none"))
    assert api.get("/metrics", None).status_code == 401
    ok = api.get("/metrics", None, headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200 and "bastion_http_requests_total" in ok.text


def test_relay_and_webhook_lag(api, monkeypatch):
    from bastion.feed import webhooks

    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_PRIVATE", "1")
    sub, _ = webhooks.add(api.tenant, "http://127.0.0.1:9/hook", "*", actor="t", source="t", from_seq=1)
    last = max(e.seq for e in api.tenant.events(limit=100000))
    text = api.get("/metrics", None).text
    key = ("bastion_relay_lag", (("sink", f"webhook:{sub.id}"), ("tenant_id", str(api.tenant.tenant_id))))
    assert samples(text)[key] == last
