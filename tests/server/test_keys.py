"""API keys: created once in clear, stored as a hash, refused when unknown, wrong, revoked or
expired, scoped to their tenant, their use recorded, and their creation and revocation events."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from bastion.store.tables import api_key
from cli_harness import cli, runner  # noqa: F401 (fixtures)


def test_a_token_is_stored_only_as_its_hash(api):
    token = api.tokens["reader"]
    _, tenant_id, key_id, secret = token.split("_", 3)
    with api.store.engine.connect() as conn:
        rows = conn.execute(select(api_key)).all()
    assert all(token not in json.dumps([str(v) for v in r]) for r in rows)
    row = next(r for r in rows if r.id == key_id)
    assert int(tenant_id) == api.tenant.tenant_id
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.name == "reader-key" and row.role == "reader"


@pytest.mark.parametrize("header", [
    None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer nonsense", "Bearer bst_1_abc_",
    "Bearer bst_999_0123456789ab_secret"])
def test_no_or_a_malformed_key_is_401_with_a_problem(api, header):
    r = api.client.get("/v1/entities/asset", headers={"Authorization": header} if header else {})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["status"] == 401 and "Bearer" in r.json()["detail"]


def test_a_wrong_secret_for_a_real_key_id_is_401(api):
    token = api.tokens["admin"]
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    assert api.client.get("/v1/kinds", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_another_tenants_id_in_the_token_is_refused(api):
    """A key id of acme presented with globex's tenant id finds nothing: the row is acme's."""
    _, _, key_id, secret = api.tokens["admin"].split("_", 3)
    moved = f"bst_{api.other.tenant_id}_{key_id}_{secret}"
    assert api.client.get("/v1/kinds", headers={"Authorization": f"Bearer {moved}"}).status_code == 401


def test_a_revoked_key_is_refused_and_the_revocation_is_an_event(api):
    assert api.get("/v1/kinds", "reader").status_code == 200
    r = api.request("DELETE", "/v1/keys/reader-key", "admin")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert api.get("/v1/kinds", "reader").status_code == 401
    events = [e for e in api.tenant.events() if e.entity_kind == "api_key"]
    assert [e.event_type for e in events if e.entity_key == "api_key:reader-key"] == \
        ["api_key.created", "api_key.revoked"]
    revoked = events[-1]
    assert (revoked.actor, revoked.source, revoked.correlation_id) == \
        ("admin-key", "api", r.headers["x-request-id"])


def test_an_expired_key_is_refused(api):
    _, token = api.tenant.keys.create("short", "reader", actor="t", source="t",
                                      expires_at=datetime.now(timezone.utc) + timedelta(seconds=1))
    with api.store.engine.begin() as conn:
        conn.execute(api_key.update().where(api_key.c.name == "short")
                     .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    assert api.client.get("/v1/kinds", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert [k.state for k in api.tenant.keys.list() if k.name == "short"] == ["expired"]


def test_use_is_recorded_and_the_key_is_never_logged(api, caplog):
    caplog.set_level(logging.DEBUG)
    assert api.get("/v1/kinds", "analyst").status_code == 200
    used = {k.name: k.last_used_at for k in api.tenant.keys.list()}
    assert used["analyst-key"] is not None and used["reader-key"] is None
    assert api.tokens["analyst"] not in caplog.text
    assert api.tokens["analyst"].split("_", 3)[3] not in caplog.text


def test_keys_through_the_api_are_admin_only_and_shown_once(api):
    assert api.post("/v1/keys", "analyst", json={"name": "x", "role": "reader"}).status_code == 403
    r = api.post("/v1/keys", "admin", json={"name": "ci", "role": "uploader", "expires_in_days": 90})
    assert r.status_code == 201
    body = r.json()
    assert body["token"].startswith(f"bst_{api.tenant.tenant_id}_") and body["state"] == "active"
    listed = api.get("/v1/keys", "admin").json()
    assert "token" not in json.dumps(listed) and body["token"] not in json.dumps(listed)
    assert {k["name"] for k in listed} >= {"ci", "admin-key"}
    # The new key works, as an uploader: no reads.
    assert api.client.get("/v1/kinds", headers={"Authorization": f"Bearer {body['token']}"}).status_code == 403
    again = api.post("/v1/keys", "admin", json={"name": "ci", "role": "reader"})
    assert again.status_code == 409 and "exists" in again.json()["detail"]
    # globex's admin sees only globex's keys
    other = api.client.get("/v1/keys", headers={"Authorization": f"Bearer {api.other_token}"}).json()
    assert [k["name"] for k in other] == ["globex-admin"]


def test_key_commands(cli):
    body = cli.json("key", "create", "--name", "ci", "--role", "uploader", "--expires", "90d")
    assert body["token"].startswith("bst_") and body["role"] == "uploader"
    expiry = datetime.fromisoformat(body["expires_at"])
    assert timedelta(days=89) < expiry - datetime.now(timezone.utc) <= timedelta(days=90)
    listed = cli("key", "list", "--json")
    assert [k["name"] for k in json.loads(listed.stdout)] == ["ci"]
    assert body["token"] not in listed.stdout
    bad = cli("key", "create", "--name", "x", "--role", "root", code=1)
    assert "admin, analyst, uploader, reader" in bad.output
    assert "revoked key ci" in cli("key", "revoke", "ci").stdout
    assert "no API key" in cli("key", "revoke", "nobody", code=4).output
    other = cli.json("key", "create", "--name", "ci", "--role", "reader", "--tenant", "default")
    assert other["name"] == "ci"  # a revoked key's name is free again


def test_cli_json_and_exports_mask_as_a_role_like_the_api(cli):
    """One masking function for the API and the CLI: `--as-role`."""
    cli("add", "asset", "--identifier", "www.example.com")
    cli("add", "risk", "--target", "#asset#www.example.com#www.example.com",
        "--name", "weak-tls", "--severity", "high", "--comment", "see ticket 9")
    key = "#risk#www.example.com#weak-tls"
    listed = cli.json("list", "risks", "--as-role", "reader")["items"][0]
    assert listed["comment"] is None and listed["masked"] == ["comment"]
    assert cli.json("get", key, "--as-role", "analyst")["comment"] == "see ticket 9"
    csv_out = cli("list", "risks", "--as-role", "reader", "--format", "csv").stdout
    assert "see ticket 9" not in csv_out and "weak-tls" in csv_out
    history = cli.json("history", key, "--as-role", "reader")
    assert history[0]["diff"]["comment"] is None
    assert "see ticket 9" in cli("list", "risks", "--format", "csv").stdout  # no role: as stored


def test_a_verified_key_is_kept_briefly_but_a_revocation_here_ends_it_at_once(api):
    auth = api.client.app.state.authenticator
    assert auth.cache_seconds > 0
    assert api.get("/v1/kinds", "reader").status_code == 200
    api.tenant.keys.revoke("reader-key", actor="t", source="t")  # not through the API
    assert api.get("/v1/kinds", "reader").status_code == 401
