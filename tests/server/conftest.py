"""The HTTP API on both engines: an app over a fresh database with two tenants (`acme`, whose
keys cover every role, and `globex`, whose objects acme's keys must never reach), driven in
process through Starlette's TestClient (a real ASGI round trip: routing, middleware, errors)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from bastion.schema.roles import ROLES
from bastion.server.app import create_app
from bastion.server.context import Settings
from bastion.store.store import Store, TenantStore


@dataclass
class Api:
    client: TestClient
    store: Store
    tenant: TenantStore
    other: TenantStore
    tokens: dict[str, str] = field(default_factory=dict)  # role → acme's key of that role
    other_token: str = ""  # globex's admin key

    def headers(self, role: str | None = "admin", **extra: str) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return {**h, **extra}

    def request(self, method: str, path: str, role: str | None = "admin", *, headers=None, **kw):
        return self.client.request(method, path, headers=self.headers(role, **(headers or {})), **kw)

    def get(self, path: str, role: str | None = "admin", **kw):
        return self.request("GET", path, role, **kw)

    def post(self, path: str, role: str | None = "admin", **kw):
        return self.request("POST", path, role, **kw)


def make_api(store: Store, settings: Settings | None = None) -> Api:
    acme, globex = store.ensure_tenant("acme"), store.ensure_tenant("globex")
    tenant, other = store.tenant(acme.name), store.tenant(globex.name)
    api = Api(TestClient(create_app(store, settings or Settings(rate_limit="none")),
                         raise_server_exceptions=False), store, tenant, other)
    for role in ROLES:
        api.tokens[role] = tenant.keys.create(f"{role}-key", role, actor="test", source="test")[1]
    api.other_token = other.keys.create("globex-admin", "admin", actor="test", source="test")[1]
    return api


@pytest.fixture
def api(store) -> Api:
    a = make_api(store)
    yield a
    a.client.close()
