"""Against the real Sigma rules and CTID mappings in ../shared/datasets (run by
`make datasets-check` when the folder exists), on SQLite: every rule is imported or its problem
is listed, the counts are plausible, a second import changes nothing, and it is timed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bastion.coverage import detections as ops
from bastion.coverage.inventory import Options, active_catalog, import_detections

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
pytestmark = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"{DATASETS} not present")
RULES = DATASETS / "sigma" / "rules"
CTID = DATASETS / "ctid" / "mappings"


@pytest.fixture
def sqlite_tenant(tmp_path):
    from bastion.store import migrate
    from bastion.store.store import Store

    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    migrate.upgrade(store.engine)
    store.ensure_tenant("default")
    try:  # the default ATT&CK catalog, as `bastion init` loads it
        from bastion.coverage.attack import ensure_default_catalog
    except ImportError:
        pass
    else:
        ensure_default_catalog(store, actor="t")
    yield store.tenant("default")
    store.close()


def test_sigma_rules(sqlite_tenant):
    tenant = sqlite_tenant
    catalog = active_catalog(tenant)
    files = sorted(p for p in RULES.rglob("*") if p.suffix in (".yml", ".yaml"))
    start = time.perf_counter()
    r = import_detections(tenant, [str(RULES)], Options(actor="t", skip_invalid=True), catalog=catalog)
    took = time.perf_counter() - start
    t = r.totals()
    assert t["files"] == len(files) > 1000
    listed = t["problems"]
    assert t["detections"] + t["skipped"] >= len(files) - listed  # imported, or its problem listed
    assert t["detections"] >= 0.95 * len(files)
    assert t["mappings"] >= t["detections"]  # SigmaHQ rules carry on average > 1 technique tag
    print(f"\n{len(files)} Sigma files: {t['detections']} detections, {t['mappings']} mappings, "
          f"{listed} problems, {took:.1f}s (catalog {catalog.version if catalog else None})")
    start = time.perf_counter()
    again = import_detections(tenant, [str(RULES)], Options(actor="t", skip_invalid=True), catalog=catalog)
    assert again.totals()["unchanged"] == t["detections"] and again.removed == 0
    print(f"re-import: {time.perf_counter() - start:.1f}s, all unchanged")


def test_ctid_files(sqlite_tenant):
    tenant = sqlite_tenant
    ops.add_account(tenant, actor="t", provider="aws", identifier="ctid")
    catalog = active_catalog(tenant)
    start = time.perf_counter()
    r = import_detections(tenant, [str(CTID)], Options(actor="t", account="aws:ctid", skip_invalid=True),
                          catalog=catalog)
    took = time.perf_counter() - start
    t = r.totals()
    assert t["files"] == 3 and not r.rejected
    assert t["detections"] == 30 + 38 + 58  # one per capability
    # 2,005 mapping objects, 28 without a score; per (capability, technique) fewer, minus the ids
    # the active ATT&CK release no longer has (listed, never dropped silently)
    assert t["mappings"] + t["problems"] >= 1800
    print(f"\nCTID: {t['detections']} capabilities, {t['mappings']} mappings, {t['problems']} "
          f"unknown-technique problems listed, {took:.1f}s")
