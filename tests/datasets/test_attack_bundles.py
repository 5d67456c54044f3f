"""Against MITRE's real ATT&CK bundles in ../shared/datasets/attack (run by `make datasets-check`
when the folder exists): the Enterprise 18.1 bundle as STIX 2.0 (one 34 MB line, no collection
object) and the ICS 18.1 bundle (STIX 2.1) import on SQLite with plausible counts, in time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bastion.coverage import attack
from bastion.store import catalog, migrate
from bastion.store.store import Store

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
ATTACK = DATASETS / "attack"
pytestmark = pytest.mark.skipif(not ATTACK.is_dir(), reason=f"{ATTACK} not present")

ENTERPRISE = ATTACK / "enterprise-attack-18.1-stix20-reassembled.json"
ICS = ATTACK / "ics-attack-18.1.json"


@pytest.fixture
def sqlite_store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'attack.db'}")
    migrate.upgrade(store.engine)
    store.ensure_tenant("default")
    yield store
    store.close()


def test_enterprise_18_1_stix20_bundle(sqlite_store):
    started = time.perf_counter()
    bundle = attack.read_bundle(ENTERPRISE, domain="enterprise", version="18.1")
    read = time.perf_counter() - started
    result = attack.import_bundle(sqlite_store, bundle, activate=True, actor="datasets")
    total = time.perf_counter() - started
    c = result.release.counts
    print(f"\nenterprise 18.1: read {read:.2f} s, read + stored {total:.2f} s; "
          f"{len(bundle.objects)} objects, {len(bundle.relations)} relations kept; {c}")
    assert total < 15
    assert result.release.spec_version == "2.0" and result.release.active
    assert c["tactics"] == 14
    assert 180 <= c["techniques"] <= 260 and 380 <= c["subtechniques"] <= 550
    assert c["detection_strategies"] > 500 and c["analytics"] > 1000 and c["groups"] > 100

    cat = catalog.load(sqlite_store.engine, "enterprise", "18.1")
    assert [t.id for t in cat.tactics][:3] == ["TA0043", "TA0042", "TA0001"]  # the matrix order
    assert cat.tactics[-1].id == "TA0040"
    t = cat.techniques["T1078.004"]
    assert t.parent == "T1078" and "initial-access" in t.tactics and "IaaS" in t.platforms
    assert cat.techniques["T1078"].groups > 10
    revoked = [x for x in cat.techniques.values() if x.revoked]
    assert len(revoked) > 100 and sum(1 for x in revoked if x.revoked_by) > 100
    assert all(cat.resolve(x.id) is None or cat.techniques[cat.resolve(x.id)].active for x in revoked)


def test_ics_18_1_stix21_bundle(sqlite_store):
    started = time.perf_counter()
    result = attack.import_bundle(sqlite_store, attack.read_bundle(ICS), actor="datasets")
    elapsed = time.perf_counter() - started
    r = result.release
    print(f"\nics 18.1: read + stored {elapsed:.2f} s; {r.counts}")
    assert (r.domain, r.version, r.spec_version) == ("ics", "18.1", "2.1")
    assert r.counts["tactics"] == 12 and 70 <= r.counts["techniques"] <= 110
    assert r.counts["detection_strategies"] > 50
    cat = catalog.load(sqlite_store.engine, "ics")
    assert cat.tactics[0].shortname == "initial-access" and cat.tactics[-1].shortname == "impact"
    assert any(t.groups for t in cat.techniques.values())
