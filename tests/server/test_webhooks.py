"""Webhook subscriptions over HTTP (admin): the library of `bastion webhook`, a secret shown once,
every change an event of the key, and no subscription into the internal network unless allowed."""

from __future__ import annotations

import http.server
import threading

import pytest


@pytest.fixture
def receiver():
    got: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()


def test_an_internal_url_is_refused_unless_allowed(api, receiver, monkeypatch):
    url, _ = receiver
    refused = api.post("/v1/webhooks", "admin", json={"url": url, "events": "risk.*"})
    assert refused.status_code == 400 and "internal address" in refused.json()["detail"]
    assert api.get("/v1/webhooks", "admin").json() == []
    assert api.post("/v1/webhooks", "analyst", json={"url": url}).status_code == 403
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_PRIVATE", "1")
    assert api.post("/v1/webhooks", "admin", json={"url": url}).status_code == 201


def test_subscriptions_over_http(api, receiver, monkeypatch):
    monkeypatch.setenv("BASTION_WEBHOOK_ALLOW_PRIVATE", "1")
    url, got = receiver
    r = api.post("/v1/webhooks", "admin", json={"url": url, "events": "risk.*,asset.*"})
    assert r.status_code == 201
    sub = r.json()
    assert sub["secret"].startswith("whsec_") and sub["state"] == "active"
    listed = api.get("/v1/webhooks", "admin").json()
    assert [s["id"] for s in listed] == [sub["id"]] and sub["secret"] not in str(listed)
    tested = api.post(f"/v1/webhooks/{sub['id']}/test", "admin")
    assert tested.status_code == 200 and tested.json()["ok"] and len(got) == 1
    paused = api.post(f"/v1/webhooks/{sub['id']}/state", "admin", json={"action": "pause"})
    assert paused.json()["state"] == "paused"
    assert api.post(f"/v1/webhooks/{sub['id']}/state", "admin",
                    json={"action": "redeliver"}).status_code == 400
    assert api.get("/v1/webhooks/999", "admin").status_code == 404
    gone = api.request("DELETE", f"/v1/webhooks/{sub['id']}", "admin")
    assert gone.status_code == 200 and api.get("/v1/webhooks", "admin").json() == []
    events = [e for e in api.tenant.events(limit=1000) if e.event_type.startswith("webhook.")]
    assert len(events) >= 3 and {e.actor for e in events} == {"admin-key"}
    assert {e.source for e in events} == {"api"}
    assert sub["secret"] not in str([e.as_dict() for e in events])
    other = api.client.get("/v1/webhooks", headers={"Authorization": f"Bearer {api.other_token}"})
    assert other.json() == []
