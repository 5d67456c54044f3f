"""Property-based API tests: schemathesis generates requests for every operation of
/openapi.json and sends them with a valid admin key, on both engines. No response may be a 5xx,
and every response must match what the document promises (status code, content type, headers,
body schema). A small seeded tenant gives the generated keys something to find."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from bastion.schema.batch import Batch
from bastion.server.context import Settings
from tests.server.conftest import make_api

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]


def test_every_operation_answers_within_its_schema(store):
    api = make_api(store, Settings(rate_limit="none", page_cap=50))
    b = Batch()
    asset = b.add("asset", identifier="www.example.com", **{"class": "domain"}, exposure="external")
    port = b.add("port", asset=asset, protocol="tcp", number=443)
    b.add("risk", target=port, name="cve-2021-44228", severity="critical", comment="c")
    api.tenant.apply(b, actor="seed", source="test")
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    headers = api.headers("admin")
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) > 20
    failures = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.headers = {**(case.headers or {}), **headers}
            case.call_and_validate(checks=CHECKS)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, not only the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
