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
    """Each platform's file into an account of its provider; another provider's file is refused."""
    tenant = sqlite_tenant
    catalog = active_catalog(tenant)
    start = time.perf_counter()
    mappings = 0
    for provider, capabilities in (("aws", 30), ("azure", 38), ("gcp", 58)):
        ops.add_account(tenant, actor="t", provider=provider, identifier="ctid")
        [path] = (CTID / provider).rglob("*.json")
        r = import_detections(tenant, [str(path)], Options(actor="t", account=f"{provider}:ctid",
                                                           skip_invalid=True), catalog=catalog)
        t = r.totals()
        assert not r.rejected and t["detections"] == capabilities  # one per capability
        assert set(r.snapshots) == {f"ctid:{provider}"}
        mappings += t["mappings"]
    took = time.perf_counter() - start
    # 2,005 mapping objects, 28 without a score; per (capability, technique) fewer
    assert mappings >= 1800
    # the Azure file into the AWS account: refused, naming it; the AWS controls stay
    [azure] = (CTID / "azure").rglob("*.json")
    r = import_detections(tenant, [str(azure)], Options(actor="t", account="aws:ctid"), catalog=catalog)
    assert r.rejected and "file for azure (metadata.mapping_framework: azure)" in r.files[0].problems[0]
    assert tenant.count("detection", where={"account": "#cloud_account#aws#ctid"}) == 30
    print(f"\nCTID: 126 capabilities, {mappings} mappings, {took:.1f}s")


def test_cloud_rules_of_other_providers_skipped(sqlite_tenant):
    """SigmaHQ's rules/cloud into an AWS account: only the AWS rules are its coverage."""
    tenant = sqlite_tenant
    ops.add_account(tenant, actor="t", provider="aws", identifier="111122223333")
    r = import_detections(tenant, [str(RULES / "cloud")], Options(actor="t", account="aws:111122223333",
                                                                  skip_invalid=True),
                          catalog=active_catalog(tenant))
    assert r.other_providers() == {"azure": 123, "gcp": 26, "m365": 19}
    assert r.totals()["detections"] == 57 and not r.rejected
