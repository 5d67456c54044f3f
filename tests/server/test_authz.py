"""The authorization matrix, derived from the route table: every /v1 route × every role, in its own
tenant and against another tenant's objects. A route's permission is the dependency it declares
(bastion.server.context.needs); a role's grants are bastion.schema.roles.GRANTS.

- no key → 401, a role without the permission → 403, and neither writes anything;
- a role with it is never refused (no 401/403) and never meets a 5xx;
- globex's admin, given acme's objects, gets 404 (or an empty answer) and never sees acme's keys.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from bastion.schema import roles
from bastion.schema.batch import Batch
from bastion.server.app import route_table
from bastion.server.context import permission_of



def populate(api) -> dict[str, str]:
    """acme's objects that route parameters name, by parameter name."""
    b = Batch()
    asset = b.add("asset", identifier="www.example.com", **{"class": "domain"}, exposure="external")
    port = b.add("port", asset=asset, protocol="tcp", number=443)
    risk = b.add("risk", target=port, name="cve-2021-44228", severity="critical",
                 comment="secret triage note", evidence=["https://www.example.com/confidential-x"],
                 properties={"meta": {"password": "restricted-hunter2"}})
    b.add("attribute", name="api_token", value="restricted-tok", parent=asset)
    b.add("cloud_account", provider="aws", identifier="999988887777", name="prod")
    api.tenant.apply(b, actor="seed", source="test")
    return {"key": risk, "kind": "risk", "name_or_id": "reader-key", "run_id": "1",
            "account": "*", "source": asset, "target": asset, "from": asset, "to": risk, "sub_id": "1", "domain": "enterprise",
            "min_percent": "50"}


# Bodies that get past validation for the routes that take one (the rest get `{}`).
BODIES = {
    ("POST", "/v1/entities/{kind}"): {"values": {"target": "#asset#www.example.com#www.example.com",
                                                 "name": "cve-2021-44228", "severity": "high"}},
    ("POST", "/v1/keys"): {"name": "matrix", "role": "reader"},
    ("POST", "/v1/batch"): {"nodes": []},
    ("PATCH", "/v1/settings/risks"): {"initial_status": "open"},
    ("POST", "/v1/webhooks"): {"url": "http://127.0.0.1:9/hook", "events": "risk.*"},
    ("POST", "/v1/webhooks/{sub_id}/state"): {"action": "pause"},
}


def request_for(route: APIRoute, method: str, samples: dict[str, str]):
    path = "/v1" + route.path
    for name in re.findall(r"{(\w+)(?::\w+)?}", path):
        assert name in samples, f"no sample for path parameter {name} of {path}: add it to populate()"
        path = re.sub(r"{%s(?::\w+)?}" % name, samples[name], path)
    params = {}
    for p in route.dependant.query_params:
        if p.field_info.is_required():
            name = p.alias or p.name  # what the client sends (`from`, not `from_`)
            assert name in samples, f"no sample for query parameter {name} of {route.path}"
            params[name] = samples[name]
    kw = {"params": params}
    if route.dependant.body_params:
        kw["json"] = BODIES.get((method, "/v1" + route.path), {})
    return path, kw


def cases(app=None):
    return [(route, method) for method, _, _, route in route_table()]


def test_every_v1_route_declares_a_permission():
    missing = [path for _, path, permission, _ in route_table()
               if not permission or not set(permission.split("|")) <= set(roles.PERMISSIONS)]
    assert missing == [] and len(route_table()) > 10


def test_without_the_permission_every_route_refuses_and_writes_nothing(api):
    samples = populate(api)
    before = len(api.tenant.events(limit=100000))
    checked = 0
    for route, method in cases():
        path, kw = request_for(route, method, samples)
        needed = permission_of(route)
        r = api.request(method, path, None, **kw)
        assert r.status_code == 401, (method, route.path, r.status_code, r.text)
        for role in roles.ROLES:
            if roles.allowed(role, needed):
                continue
            r = api.request(method, path, role, **kw)
            assert r.status_code == 403, (method, route.path, role, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            checked += 1
    assert checked > 10
    assert len(api.tenant.events(limit=100000)) == before


def test_with_the_permission_no_route_refuses_or_fails(api):
    samples = populate(api)
    # Destructive routes last, so the others still find what they name.
    ordered = sorted(cases(), key=lambda c: (c[1] == "DELETE", c[0].path))
    for route, method in ordered:
        path, kw = request_for(route, method, samples)
        for role in roles.ROLES:
            if not roles.allowed(role, permission_of(route)):
                continue
            r = api.request(method, path, role, **kw)
            assert r.status_code not in (401, 403), (method, route.path, role, r.text)
            assert r.status_code < 500, (method, route.path, role, r.status_code, r.text)


def test_another_tenants_objects_are_not_found_and_never_leak(api):
    samples = populate(api)
    before = len(api.tenant.events(limit=100000))
    headers = {"Authorization": f"Bearer {api.other_token}"}
    for route, method in cases():
        if method == "DELETE" and "{name_or_id}" in route.path:
            continue  # globex's own keys: its admin may revoke them
        path, kw = request_for(route, method, samples)
        r = api.client.request(method, path, headers=headers, **kw)
        assert r.status_code < 500, (method, route.path, r.status_code, r.text)
        for secret in ("www.example.com", "secret triage note", "reader-key", "cve-2021-44228"):
            if secret in f"{path} {kw}":
                continue  # echoed from the request itself (a 404 names the key it was given)
            assert secret not in r.text, (method, route.path, secret, r.text)
        if "key" in kw["params"] and method == "GET":
            assert r.status_code == 404, (method, route.path, r.status_code)
    assert len(api.tenant.events(limit=100000)) == before


CONFIDENTIAL = ("secret triage note", "confidential-x", "999988887777")
RESTRICTED = ("restricted-hunter2", "restricted-tok")


def test_every_read_route_masks_by_role(api):
    """Every GET route, for every role that may call it: no value of a class the role may not
    see appears anywhere in the answer (confidential: a comment, evidence, an account id;
    restricted: a template's matched credentials, a secret attribute's value)."""
    samples = populate(api)
    hidden = {"reader": CONFIDENTIAL + RESTRICTED, "uploader": CONFIDENTIAL + RESTRICTED,
              "analyst": RESTRICTED, "admin": ()}
    seen = set()
    for route, method in cases():
        if method != "GET":
            continue
        path, kw = request_for(route, method, samples)
        for role in roles.ROLES:
            if not roles.allowed(role, permission_of(route)):
                continue
            r = api.request(method, path, role, **kw)
            for value in hidden[role]:
                assert value not in r.text, (role, route.path, value)
            if role == "admin":
                seen.update(v for v in CONFIDENTIAL + RESTRICTED if v in r.text)
    assert seen == set(CONFIDENTIAL + RESTRICTED)  # the values are there to be masked


@pytest.mark.parametrize("role", roles.ROLES)
def test_the_route_table_matches_the_grants(api, role):
    """The matrix as documentation: what each role may call (docs/api.md lists it)."""
    allowed = {(m, r.path) for r, m in cases() if roles.allowed(role, permission_of(r))}
    if role == "admin":
        assert allowed == {(m, r.path) for r, m in cases()}
    if role == "uploader":
        assert all(roles.IMPORT in permission_of(r).split("|") for r, m in cases()
                   if (m, r.path) in allowed)
    if role == "reader":
        assert all(roles.READ in permission_of(r).split("|") for r, m in cases()
                   if (m, r.path) in allowed)


def test_the_route_table_in_docs_api_md_is_fresh():
    from bastion.server import docs

    assert docs.DOC.read_text() == docs.render(docs.DOC.read_text()), \
        "docs/api.md's route table is stale: run `python -m bastion.server.docs`"
