"""Coverage, snapshots and the ATT&CK catalog through one store interface (issue 10, "the library
as one surface"): `Store.attack`, `TenantStore.coverage` and `WriteSession.coverage`, on both
engines; and no coverage module outside bastion/store handles a scope, a connection or an engine."""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bastion.coverage import attack
from bastion.coverage import detections as ops
from bastion.errors import NotFound

ROOT = Path(__file__).resolve().parent.parent
# the coverage half of the library and the commands that call it
CALLERS = sorted([*(ROOT / "bastion" / "coverage").glob("*.py"),
                  *(ROOT / "bastion" / "cli" / n for n in ("coverage.py", "detections.py", "attack.py"))])
STORE_INTERNALS = {"scope", "conn", "engine", "transaction"}
SQL_MODULES = {"bastion.store.coverage", "bastion.store.catalog", "bastion.store.snapshots",
               "bastion.store.query"}
AWS = "#cloud_account#aws#123456789012"
AT = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("path", CALLERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_callers_use_the_store_interface(path):
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and n.attr in STORE_INTERNALS:
            found.append(f"line {n.lineno}: .{n.attr}")
        elif isinstance(n, ast.ImportFrom) and n.module == "bastion.store":
            found += [f"line {n.lineno}: imports bastion.store.{a.name}" for a in n.names
                      if f"bastion.store.{a.name}" in SQL_MODULES]
        elif isinstance(n, ast.Import):
            found += [f"line {n.lineno}: imports {a.name}" for a in n.names if a.name in SQL_MODULES]
    assert found == []


def test_attack_releases_through_store(store, tenant):
    assert store.attack.releases() == [] and store.attack.active_version("enterprise") is None
    with pytest.raises(NotFound, match="no active ATT&CK enterprise release"):
        tenant.coverage.catalog("enterprise")
    rel = attack.ensure_default_catalog(store, actor="tester")
    assert [(r.domain, r.version, r.active) for r in store.attack.releases()] == \
        [("enterprise", rel.version, True)]
    assert store.attack.release("enterprise", rel.version) == store.attack.releases("enterprise")[0]
    assert store.attack.active_version("enterprise") == rel.version
    assert store.attack.set_active("enterprise", rel.version).active
    cat = tenant.coverage.catalog("enterprise")  # read in the tenant's own transaction
    assert (cat.domain, cat.version) == ("enterprise", rel.version)
    assert cat.techniques == store.attack.load("enterprise").techniques
    assert tenant.coverage.catalog("enterprise", version=rel.version).version == rel.version
    assert tenant.coverage.catalog("enterprise", others=True).others == {}  # no ICS/Mobile


def test_tenant_coverage_snapshots_and_session(tenant):
    ops.add_account(tenant, actor="tester", provider="aws", identifier="123456789012", name="prod")
    assert [(a.key, a.provider, a.label) for a in tenant.coverage.accounts()] == [(AWS, "aws", "prod")]
    assert tenant.coverage.accounts(["#cloud_account#aws#999999999999"]) == []
    assert tenant.coverage.gap_decisions() == []
    inventory = {"#detection#x": ["h1", "enabled", "unknown", ["T1078"]]}
    with tenant.writing(actor="tester", source="test", at=AT) as session:
        assert session.coverage.latest_snapshot(account=AWS, source="sigma:") is None
        first = session.coverage.record_snapshot(account=AWS, source="sigma:", detections=inventory)
        latest = session.coverage.latest_snapshot(account=AWS, source="sigma:")  # sees its own write
        assert (latest.id, latest.taken_at, latest.detections) == (first, AT, inventory)
        assert session.coverage.mappings_of(["#detection#x"]) == []
    listed = tenant.coverage.detection_snapshots(account=AWS, with_detections=True)
    assert [(s["id"], s["source"], s["detections"]) for s in listed] == [(first, "sigma:", inventory)]
    sid = tenant.coverage.add_snapshot(
        account=AWS, taken_at=AT, method="default", attack_domain="enterprise", attack_version="19",
        detection_snapshot_id=first, overall={"covered": 1, "total": 2, "percent": 50.0},
        tactics={}, techniques={"T1078": 1})
    covs = tenant.coverage.snapshots(account=AWS, detection_snapshot_ids=[first])
    assert [(c["id"], c["overall"]["percent"], c["techniques"]) for c in covs] == [(sid, 50.0, {"T1078": 1})]
    assert tenant.coverage.snapshots(account=AWS, with_techniques=False)[0]["techniques"] is None
