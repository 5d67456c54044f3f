"""Errors and limits over HTTP: one problem format (RFC 9457) for every mistake, never a stack
trace; body size limits, per-key rate limits with Retry-After; health and readiness; the request
id; `bastion serve` itself under uvicorn."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from bastion.server.context import Settings
from tests.server.conftest import make_api

PROBLEM = "application/problem+json"


def assert_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["instance"]
    assert body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body


def test_unknown_routes_methods_and_bad_requests_are_problems(api):
    assert_problem(api.get("/v1/nope"), 404)
    assert_problem(api.request("PUT", "/v1/kinds"), 405)
    body = assert_problem(api.get("/v1/entities/risk", params={"limit": 0}), 422)
    assert body["errors"][0]["where"].endswith("limit")
    body = assert_problem(api.post("/v1/entities/asset", "analyst", content=b"{not json",
                                   headers={"content-type": "application/json"}), 422)
    assert body["detail"]


def test_an_unexpected_error_is_a_500_logged_with_its_request_id(api, monkeypatch, caplog):
    def boom(*a, **kw):
        raise RuntimeError("database exploded at /secret/path")

    monkeypatch.setattr(type(api.tenant), "list", boom)
    caplog.set_level(logging.ERROR, "bastion.server")
    r = api.get("/v1/entities/risk", "reader", headers={"X-Request-Id": "req-42"})
    body = assert_problem(r, 500)
    assert body["request_id"] == "req-42" and "req-42" in body["detail"]
    assert "exploded" not in r.text and "/secret/path" not in r.text
    assert "req-42" in caplog.text and "exploded" in caplog.text


def test_the_request_id_is_the_clients_when_plain_else_new(api):
    assert api.get("/healthz", None, headers={"X-Request-Id": "ci-run-7"}).headers["x-request-id"] == "ci-run-7"
    new = api.get("/healthz", None, headers={"X-Request-Id": "bad id\n with spaces"}).headers["x-request-id"]
    assert new != "bad id\n with spaces" and len(new) == 32


def test_bodies_over_the_limit_are_413_before_they_are_read(store):
    api = make_api(store, Settings(rate_limit="none", max_body=1000))
    r = api.post("/v1/batch", "analyst", content=b"{" + b" " * 5000 + b"}",
                 headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
    assert "1000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(10):
            yield b" " * 500

    r = api.post("/v1/batch", "analyst", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert api.tenant.count("asset") == 0


def test_rate_limits_are_per_key_with_retry_after(store):
    api = make_api(store, Settings(rate_limit="3/minute"))
    codes = [api.get("/v1/kinds", "reader").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = api.get("/v1/kinds", "reader")
    body = assert_problem(r, 429)
    assert 1 <= int(r.headers["retry-after"]) <= 60 and "retry after" in body["detail"]
    assert api.get("/v1/kinds", "analyst").status_code == 200  # another key has its own budget


def test_health_and_readiness(api, store):
    assert api.get("/healthz", None).json() == {"status": "ok"}
    ready = api.get("/readyz", None).json()
    assert ready["status"] == "ready" and ready["revision"] == store.revision()
    store.downgrade("0009", force=True)
    try:
        r = api.get("/readyz", None)
        assert r.status_code == 503 and "bastion db upgrade" in r.json()["detail"]
    finally:
        store.upgrade()


def test_openapi_is_3_1_with_bearer_auth_and_problem_responses(api):
    doc = api.get("/openapi.json", None).json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    op = doc["paths"]["/v1/entities/{kind}"]["get"]
    assert PROBLEM in op["responses"]["401"]["content"]
    assert api.get("/docs", None).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_bastion_serve_answers_with_a_key(database_url, workers, tmp_path):
    """The real command under uvicorn (one process, then two workers): a key made with
    `bastion key create` reads; no key is 401."""
    env = {**os.environ, "BASTION_DATABASE_URL": database_url, "BASTION_HOME": str(tmp_path)}
    bastion = [sys.executable, "-m", "bastion.cli.main"]
    subprocess.run([*bastion, "init"], env=env, check=True, capture_output=True)
    created = subprocess.run([*bastion, "key", "create", "--name", "ops", "--role", "reader", "--json"],
                             env=env, check=True, capture_output=True, text=True)
    token = json.loads(created.stdout)["token"]
    port = _free_port()
    server = subprocess.Popen([*bastion, "serve", "--port", str(port), "--workers", str(workers)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90  # a loaded 2-core machine starts Python slowly
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        req = urllib.request.Request(url + "/v1/entities/asset", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.load(r) == {"items": [], "next_cursor": None}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/v1/entities/asset", timeout=5)
        assert refused.value.code == 401
    finally:
        server.terminate()
        out = server.communicate(timeout=20)[0].decode()
    assert token not in out


def test_serve_refuses_a_database_that_is_not_there(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bastion.cli.main", "--db", f"sqlite:///{tmp_path}/none.db",
                        "serve"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "bastion init" in r.stderr and "Traceback" not in r.stderr
