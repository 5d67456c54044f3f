"""Retention with a fake clock (`now=`): what scanners found and no scan saw for N days goes, with
a deleted event each; seeds, what a person made or decided, and what it depends on stay. Both
engines."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bastion.errors import InvalidValue
from bastion.ops import retention
from bastion.risks import enrich
from bastion.schema.batch import Batch
from bastion.store import edits

FIXTURES = Path(__file__).parent.parent / "fixtures"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SCAN = "import:nmap"


def scanned(tenant, host: str, *, at=T0, port: int | None = None, risk: str | None = None,
            cve: str | None = None) -> dict[str, str]:
    b = Batch()
    keys = {"asset": b.add("asset", identifier=host)}
    target = keys["asset"]
    if port is not None:
        keys["port"] = target = b.add("port", asset=keys["asset"], number=port, service="https")
    if risk is not None:
        keys["risk"] = b.add("risk", target=target, name=risk, severity="high",
                             **({"cve": cve} if cve else {}))
    tenant.apply(b, actor="scanner-bot", source=SCAN, at=at)
    return keys


@pytest.fixture
def surface(tenant):
    """Every case, first seen at T0; `fresh` seen again 20 days later."""
    k = {
        "gone": scanned(tenant, "old.acme.example", port=443, risk="weak tls"),
        "decided": scanned(tenant, "accepted.acme.example", port=8443, risk="self-signed"),
        "fresh": scanned(tenant, "fresh.acme.example", port=22, risk="ssh banner"),
        "exposure": scanned(tenant, "crown.acme.example"),
        "enriched": scanned(tenant, "kev.acme.example", risk="log4shell", cve="CVE-2021-44228"),
    }
    scanned(tenant, "fresh.acme.example", port=22, risk="ssh banner", at=T0 + timedelta(days=20))
    b = Batch()
    k["seed"] = b.add("seed", identifier="acme.example")
    k["by_hand"] = b.add("asset", identifier="manual.acme.example")
    tenant.apply(b, actor="alice", source="cli", at=T0)
    # An analyst's decisions an hour later: a risk accepted, an asset's criticality set (not
    # sightings, as `risk set-status` and `update` write them).
    for kind, values in (("risk", {"target": k["decided"]["port"], "name": "self-signed",
                                   "status": "accepted"}),
                         ("asset", {"identifier": "crown.acme.example", "criticality": "high"})):
        batch, _key = edits.put_batch(tenant, kind, values)
        tenant.apply(batch, actor="alice", source="cli", at=T0 + timedelta(hours=1), observed=False)
    # Enrichment is automatic: it decides nothing (the KEV catalog names CVE-2021-44228).
    with open(FIXTURES / "enrich" / "kev.json", "rb") as f:
        result = enrich.apply_kev(tenant, enrich.read_kev(f, "kev.json"), "tester")
    assert tenant.get(k["enriched"]["risk"]).values["kev"] is True, result
    return k


def test_dry_run_lists_what_would_go_and_changes_nothing(tenant, surface):
    retention.set_policy(tenant, 30, actor="alice", source="cli")
    before = tenant.events(after_seq=0, limit=100000)
    report = retention.run(tenant, actor="ops", now=T0 + timedelta(days=31), dry_run=True)
    gone = surface["gone"]
    expected = sorted([gone["asset"], gone["port"], gone["risk"], surface["enriched"]["asset"],
                       surface["enriched"]["risk"]])
    assert sorted(c.key for c in report.selection.expired) == expected
    assert report.cutoff == T0 + timedelta(days=1) and report.days == 30
    assert sorted(report.selection.decided) == sorted(
        [surface["decided"]["risk"], surface["exposure"]["asset"], surface["by_hand"]])
    # the accepted risk keeps its port, and the port its asset
    assert sorted(report.selection.depended_on) == sorted(
        [surface["decided"]["port"], surface["decided"]["asset"]])
    assert tenant.events(after_seq=0, limit=100000) == before
    assert all(tenant.get(k) is not None for k in expected)


def test_run_deletes_through_the_write_path_with_an_event_each(tenant, surface):
    now = T0 + timedelta(days=31)
    report = retention.run(tenant, actor="ops", days=30, now=now)
    expired = {c.key for c in report.selection.expired}
    assert len(expired) == 5
    for key in expired:
        assert tenant.get(key) is None
        last = tenant.history(key)[-1]
        assert last.event_type.endswith(".deleted")
        assert (last.source, last.actor, last.occurred_at) == ("retention", "ops", now)
        assert last.correlation_id == report.selection.correlation_id
    kept = [surface["fresh"]["asset"], surface["fresh"]["port"], surface["fresh"]["risk"],
            surface["seed"], surface["by_hand"], surface["exposure"]["asset"],
            *surface["decided"].values()]
    assert all(tenant.get(k) is not None for k in kept)
    # a second run finds nothing more; a year later the fresh ones go, the rest still stays
    assert retention.run(tenant, actor="ops", days=30, now=now).selection.expired == []
    later = retention.run(tenant, actor="ops", days=30, now=now + timedelta(days=365))
    assert {c.key for c in later.selection.expired} == set(surface["fresh"].values())
    assert all(tenant.get(k) is not None for k in kept if k not in surface["fresh"].values())


def test_policy_is_a_setting_with_its_event(tenant):
    assert retention.policy(tenant) is None
    with pytest.raises(InvalidValue, match="has no retention policy"):
        retention.run(tenant, actor="ops")
    assert retention.set_policy(tenant, 90, actor="alice", source="cli")
    assert retention.policy(tenant) == 90
    last = tenant.events(after_seq=0)[-1]
    assert (last.entity_key, last.event_type, last.diff) == (
        "setting:retention", "setting.changed", {"retention": [None, {"days": 90}]})
    for bad in (0, -1, "x", 40000):
        with pytest.raises(InvalidValue, match="invalid retention"):
            retention.set_policy(tenant, bad, actor="alice", source="cli")
