"""Coverage, gaps, overlaps, history, drift, Navigator layers and the CI gate, on both engines.

The catalog is built in memory (the store's catalog loader is tested elsewhere); detections and
mappings are written through the write path."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import insert

from bastion.coverage import ATTRIBUTION
from bastion.coverage.catalog import Catalog, Tactic, Technique
from bastion.coverage.compute import compute, compute_accounts, technique_map, tenant_union
from bastion.coverage.gaps import classify, gaps, overlaps, set_gap_status
from bastion.coverage.history import drift, history, snapshot
from bastion.coverage.layer import layer
from bastion.errors import InvalidValue
from bastion.schema.batch import Batch
from bastion.store import coverage as sql
from bastion.store.coverage import Qualify
from bastion.store.store import Store
from bastion.store.tables import detection_snapshot
from cli_harness import Cli, cli, runner  # noqa: F401 (fixtures)

IA, PE, DE = "initial-access", "persistence", "defense-evasion"
ALL3 = (IA, PE, DE)


def make_catalog() -> Catalog:
    tactics = [Tactic("TA0001", IA, "Initial Access", 0), Tactic("TA0003", PE, "Persistence", 1),
               Tactic("TA0005", DE, "Defense Evasion", 2)]
    techs = [
        Technique("T1078", "Valid Accounts", None, ALL3, ("IaaS", "Windows", "SaaS"), groups=10),
        Technique("T1078.004", "Cloud Accounts", "T1078", ALL3, ("IaaS", "SaaS"), groups=5),
        Technique("T1078.001", "Default Accounts", "T1078", ALL3, ("Windows",), groups=2),
        Technique("T1190", "Exploit Public-Facing Application", None, (IA,),
                  ("Windows", "Linux", "IaaS"), groups=20),
        Technique("T1098", "Account Manipulation", None, (PE,), ("IaaS", "Windows"), groups=3),
        Technique("T1098.001", "Additional Cloud Credentials", "T1098", (PE,), ("IaaS",)),
        Technique("T1562", "Impair Defenses", None, (DE,), ("IaaS", "Windows"), groups=7),
        Technique("T1562.008", "Disable Cloud Logs", "T1562", (DE,), ("IaaS",), groups=1),
        Technique("T1535", "Unused/Unsupported Cloud Regions", None, (DE,), ("IaaS",)),
        Technique("T1099", "Timestomp (old)", None, (DE,), ("Windows",), deprecated=True),
        Technique("T1108", "Redundant Access", None, (PE,), ("Windows",), revoked=True,
                  revoked_by="T1078"),
    ]
    return Catalog("enterprise", "17", "Enterprise ATT&CK 17", tactics, {t.id: t for t in techs})


@pytest.fixture
def catalog() -> Catalog:
    return make_catalog()


def det(b: Batch, account: str, rule: str, *, status="enabled", health="healthy", level="medium",
        type="sigma_rule", service=None, maps=()):
    """A detection and its mappings: maps = [(technique, confidence, validation)]."""
    key = b.add("detection", account=account, rule_id=rule, name=f"rule {rule}", status=status,
                health=health, level=level, type=type, service=service)
    for tech, conf, validation in maps:
        b.add("mapping", detection=key, technique=tech, confidence=conf, method="analyst",
              validation=validation)
    return key


def populate(tenant) -> dict[str, str]:
    b = Batch()
    a = b.add("cloud_account", provider="aws", identifier="111", name="prod-aws",
              criticality="high", platforms=["IaaS"])
    w = b.add("cloud_account", provider="azure", identifier="222", name="corp-azure",
              criticality="critical", platforms=["Windows"])
    keys = {"A": a, "B": w}
    keys["d1"] = det(b, a, "d1", level="high", type="cloud_control", service="guardduty",
                     maps=[("T1078.004", 0.9, "pending")])
    keys["d2"] = det(b, a, "d2", maps=[("T1562.008", 0.4, "validated")])
    keys["d3"] = det(b, a, "d3", status="disabled", maps=[("T1190", 1.0, "pending")])
    keys["d4"] = det(b, a, "d4", health="broken", maps=[("T1098", 1.0, "pending")])
    keys["d5"] = det(b, a, "d5", level="low", maps=[("T1535", 0.5, "pending")])
    keys["d6"] = det(b, a, "d6", maps=[("T1098.001", 0.9, "disputed")])
    keys["d7"] = det(b, a, "d7", level="critical", health="unknown",
                     maps=[("T1108", 0.8, "pending")])  # revoked → T1078; unknown health counts
    keys["e1"] = det(b, w, "e1", type="log_query", maps=[("T1078.001", 0.9, "pending")])
    keys["e2"] = det(b, w, "e2", level="high", maps=[("T1562", 0.7, "pending")])
    tenant.apply(b, actor="tester", source="test")
    return keys


def tactic_figures(cov):
    return {t.shortname: (t.covered, t.total, t.percent) for t in cov.tactics}


# -- the methods ----------------------------------------------------------------------------------


def test_default_method_per_account(tenant, catalog):
    k = populate(tenant)
    cov = compute(tenant, catalog, account=k["A"])
    # IaaS: T1078, .004, T1190, T1098, T1098.001, T1562, T1562.008, T1535 (not T1078.001)
    assert set(cov.techniques) == {"T1078", "T1078.004", "T1190", "T1098", "T1098.001", "T1562",
                                   "T1562.008", "T1535"}
    # d1 (.004 → rolls up to T1078), d7 (revoked T1108 → T1078), d2 validated at 0.4 (T1562.008
    # → T1562); d3 disabled, d4 broken, d5 low confidence, d6 disputed do not count.
    assert cov.covered() == {"T1078", "T1078.004", "T1562", "T1562.008"}
    assert tactic_figures(cov) == {IA: (2, 3, 66.67), PE: (2, 4, 50.0), DE: (4, 5, 80.0)}
    assert [t.shortname for t in cov.tactics] == [IA, PE, DE]
    assert cov.overall == {"covered": 4, "total": 8, "percent": 50.0}
    assert cov.platforms == ["IaaS"]


def test_plain_method_is_the_classic_count(tenant, catalog):
    k = populate(tenant)
    cov = compute(tenant, catalog, account=k["A"], method="plain")
    # every active technique, all platforms, no roll-up, no revoked-id resolution; health and
    # validation ignored (d4 broken and d6 disputed count), validated 0.4 (d2) does not
    assert len(cov.techniques) == 9
    assert cov.covered() == {"T1078.004", "T1098", "T1098.001"}
    assert tactic_figures(cov) == {IA: (1, 4, 25.0), PE: (3, 5, 60.0), DE: (1, 6, 16.67)}
    assert cov.overall == {"covered": 3, "total": 9, "percent": 33.33}
    active = {t.id for t in catalog.techniques.values() if t.active}
    assert cov.overall["percent"] == round(100 * len(cov.covered() & active) / len(active), 2)
    with pytest.raises(InvalidValue):
        compute(tenant, catalog, method="plain", include=["T1078"])


def test_roll_up_is_one_way(tenant, catalog):
    b = Batch()
    c = b.add("cloud_account", provider="gcp", identifier="p1")  # no platforms: all of them
    det(b, c, "parent-only", maps=[("T1562", 0.9, "pending")])
    det(b, c, "sub", maps=[("T1098.001", 0.9, "pending")])
    tenant.apply(b, actor="t", source="t")
    cov = compute(tenant, catalog, account=c)
    assert cov.techniques["T1562"].covered and not cov.techniques["T1562.008"].covered
    assert cov.techniques["T1098.001"].covered and cov.techniques["T1098"].covered
    assert len(cov.techniques) == 9 and cov.platforms is None


def test_exclusions_and_confidence_threshold(tenant, catalog):
    k = populate(tenant)
    # raising the threshold drops d1 (0.9 stays), lowering it admits d5 (0.5)
    low = compute(tenant, catalog, account=k["A"], min_confidence=0.5)
    assert "T1535" in low.covered()
    high = compute(tenant, catalog, account=k["A"], min_confidence=0.95)
    # d1 0.9 and d7 0.8 drop; d2 is validated so it still counts
    assert high.covered() == {"T1562", "T1562.008"}


def test_scores_for_each_aggregation_and_the_detection_list(tenant, catalog):
    k = populate(tenant)
    count = compute(tenant, catalog, account=k["A"], details=True)
    t = count.techniques["T1078"]
    assert (t.count, t.max_level, t.weighted, t.score) == (2, "critical", 9, 2)  # high 4 + critical 5
    assert sorted(d["key"] for d in t.detections) == sorted([k["d1"], k["d7"]])
    d7 = next(d for d in t.detections if d["key"] == k["d7"])
    assert d7["mapped"] == ["T1108"] and d7["health"] == "unknown"
    assert compute(tenant, catalog, account=k["A"], aggregation="max").techniques["T1078"].score == 5
    assert compute(tenant, catalog, account=k["A"], aggregation="weighted").techniques["T1078"].score == 9
    assert count.techniques["T1190"].score == 0 and count.techniques["T1190"].detections is None
    with pytest.raises(InvalidValue):
        compute(tenant, catalog, aggregation="median")


def test_platform_filter_and_tenant_union(tenant, catalog):
    k = populate(tenant)
    b_cov = compute(tenant, catalog, account="corp-azure")  # by name
    assert set(b_cov.techniques) == {"T1078", "T1078.001", "T1190", "T1098", "T1562"}
    assert b_cov.covered() == {"T1078", "T1078.001", "T1562"}
    whole = compute(tenant, catalog)
    per = compute_accounts(tenant, catalog)
    assert whole.account == "*" and whole.covered() == set().union(*(c.covered() for c in per.values()))
    assert set(whole.techniques) == set().union(*(set(c.techniques) for c in per.values()))
    assert whole.overall == {"covered": 5, "total": 9, "percent": 55.56}
    assert whole.techniques["T1078"].count == 3  # d1, d7 (A) + e1 (B)
    assert whole.platforms == ["IaaS", "Windows"]
    assert compute(tenant, catalog, account="aws/111").account == k["A"]


def test_include_and_ignore_scopes(tenant, catalog):
    k = populate(tenant)
    only = compute(tenant, catalog, account=k["A"], include=["T1078"])  # with sub-techniques
    assert set(only.techniques) == {"T1078", "T1078.004"}
    assert tactic_figures(only) == {IA: (2, 2, 100.0), PE: (2, 2, 100.0), DE: (2, 2, 100.0)}
    de = compute(tenant, catalog, account=k["A"], include=["defense-evasion"])
    assert [t.shortname for t in de.tactics] == [DE]
    assert de.techniques["T1078"].tactics == (DE,)
    no_de = compute(tenant, catalog, account=k["A"], ignore=["TA0005", "T1190"])
    assert [t.shortname for t in no_de.tactics] == [IA, PE]
    assert tactic_figures(no_de) == {IA: (2, 2, 100.0), PE: (2, 4, 50.0)}
    with pytest.raises(InvalidValue):
        compute(tenant, catalog, include=["lateral-movement"])


def test_technique_map_resolves_and_rolls_up(catalog):
    pairs = set(technique_map(catalog))
    assert ("T1108", "T1078") in pairs and ("T1078.004", "T1078") in pairs
    assert ("T1078", "T1078.004") not in pairs
    assert not any(raw == "T1099" for raw, _ in pairs)  # deprecated, no successor
    assert set(technique_map(catalog, "plain")) == {(t, t) for t, x in catalog.techniques.items() if x.active}


# -- gaps -----------------------------------------------------------------------------------------


def test_gaps_ranked_by_risk_and_status_survives_recompute(tenant, catalog):
    k = populate(tenant)
    rep = gaps(tenant, catalog, account=k["A"])
    # high (3) × (1 + groups): T1190 20 → 63, T1098 3 → 12, T1098.001 0 → 3, T1535 0 → 3
    assert [(g.technique, g.risk, g.severity) for g in rep.gaps] == [
        ("T1190", 63, "critical"), ("T1098", 12, "medium"), ("T1098.001", 3, "low"),
        ("T1535", 3, "low")]
    assert all(g.status == "open" for g in rep.gaps)
    set_gap_status(tenant, "prod-aws", "t1190", "accepted_risk", comment="WAF", actor="ana")
    set_gap_status(tenant, k["A"], "T1535", "acknowledged", actor="ana")
    rep = gaps(tenant, catalog, account=k["A"])
    by = {g.technique: g for g in rep.gaps}
    assert by["T1190"].status == "accepted_risk" and by["T1190"].comment == "WAF"
    assert by["T1535"].status == "acknowledged"
    # the status change alone keeps the comment
    rec = set_gap_status(tenant, k["A"], "T1190", "acknowledged", actor="ana")
    assert rec.values["comment"] == "WAF"
    with pytest.raises(InvalidValue):
        set_gap_status(tenant, k["A"], "T1190", "closed", actor="ana")

    # T1535 becomes covered: reported remediated; written only with update=True, once
    b = Batch()
    det(b, k["A"], "regions", maps=[("T1535", 0.9, "validated")])
    tenant.apply(b, actor="t", source="t")
    rep = gaps(tenant, catalog, account=k["A"])
    assert [g.technique for g in rep.remediated] == ["T1535"] and rep.remediated[0].status == "remediated"
    assert "T1535" not in {g.technique for g in rep.gaps}
    gap_key = Batch().add("gap", account=k["A"], technique="T1535")
    assert tenant.get(gap_key).values["status"] == "acknowledged"
    assert gaps(tenant, catalog, account=k["A"], update=True).updated == 1
    assert tenant.get(gap_key).values["status"] == "remediated"
    assert gaps(tenant, catalog, account=k["A"], update=True).updated == 0
    # uncovered again: open again
    b = Batch()
    b.add("detection", account=k["A"], rule_id="regions", status="disabled")
    tenant.apply(b, actor="t", source="t")
    rep = gaps(tenant, catalog, account=k["A"], update=True)
    again = next(g for g in rep.gaps if g.technique == "T1535")
    assert again.status == "open" and again.note == "uncovered again" and rep.updated == 1
    assert tenant.get(gap_key).values["status"] == "open"


def test_gaps_of_every_account_and_without_groups(tenant, catalog):
    populate(tenant)
    rep = gaps(tenant, catalog)
    assert rep.gaps[0].technique == "T1190" and rep.gaps[0].criticality == "critical"
    assert rep.gaps[0].risk == 4 * 21
    for t in catalog.techniques.values():
        object.__setattr__(t, "groups", 0)
    rep = gaps(tenant, catalog)
    assert {(g.risk, g.severity) for g in rep.gaps} == {(4, "critical"), (3, "high")}


# -- overlaps -------------------------------------------------------------------------------------


def test_overlaps_classification(tenant, catalog):
    b = Batch()
    o = b.add("cloud_account", provider="aws", identifier="999")
    det(b, o, "waf", type="cloud_control", service="waf", maps=[("T1190", 0.9, "pending")])
    det(b, o, "alb", type="log_query", service="elb", maps=[("T1190", 0.8, "pending")])
    det(b, o, "am-on", maps=[("T1098", 0.9, "pending")])
    det(b, o, "am-on2", type="log_query", maps=[("T1098", 0.8, "pending")])
    det(b, o, "am-off", status="disabled", maps=[("T1098", 0.9, "pending")])
    for i in range(6):
        det(b, o, f"imp{i}", level="high", maps=[("T1562", 0.9, "pending")])
    det(b, o, "x1", status="disabled", maps=[("T1535", 0.9, "pending")])
    det(b, o, "x2", status="disabled", maps=[("T1535", 0.9, "pending")])
    det(b, o, "single", maps=[("T1078", 0.9, "pending")])
    tenant.apply(b, actor="t", source="t")
    found = {x.technique: x for x in overlaps(tenant, catalog, account=o)}
    assert set(found) == {"T1190", "T1098", "T1562"}
    assert found["T1098"].classification == "conflicting"
    assert "1 disabled/deprecated" in found["T1098"].reason
    assert found["T1562"].classification == "excessive" and len(found["T1562"].detections) == 6
    assert found["T1190"].classification == "beneficial"
    assert sorted(d["rule_id"] for d in found["T1190"].detections) == ["alb", "waf"]
    # with a higher limit the six rules are beneficial
    assert {x.technique: x.classification for x in overlaps(tenant, catalog, account=o, max_same=6)}["T1562"] == "beneficial"


def test_one_counting_detection_is_no_overlap(tenant, catalog):
    """A counting detection beside disabled, broken, disputed or low-confidence ones overlaps
    nothing: an overlap needs two counting detections on the technique."""
    b = Batch()
    o = b.add("cloud_account", provider="aws", identifier="998")
    det(b, o, "on", maps=[("T1098", 0.9, "pending")])
    det(b, o, "off", status="disabled", maps=[("T1098", 0.9, "pending")])
    det(b, o, "broken", health="broken", maps=[("T1098", 0.9, "pending")])
    det(b, o, "disputed", maps=[("T1098", 0.9, "disputed")])
    det(b, o, "weak", maps=[("T1098", 0.3, "pending")])
    det(b, o, "on2", maps=[("T1190", 0.9, "pending")])
    det(b, o, "on3", type="log_query", maps=[("T1190", 0.9, "pending")])
    tenant.apply(b, actor="t", source="t")
    found = overlaps(tenant, catalog, account=o)
    assert [(x.technique, x.classification) for x in found] == [("T1190", "beneficial")]


def test_classify_broken_and_disputed_conflict():
    q = Qualify()
    base = {"status": "enabled", "health": "healthy", "validation": "pending", "level": "high",
            "type": "sigma_rule", "service": None, "confidence": 0.9, "counts": True}
    assert classify([base, {**base, "health": "broken", "counts": False}], q)[0] == "conflicting"
    assert classify([base, {**base, "validation": "disputed", "counts": False}], q)[0] == "conflicting"
    assert classify([base, base], q)[0] == "beneficial"


# -- history and drift ----------------------------------------------------------------------------


def _inventory(tenant, account: str, detections: dict, at: datetime, source="import") -> int:
    """A detection snapshot row as the importer writes it (this module only reads them)."""
    existing = sql.detection_snapshots(tenant.scope)
    sid = (existing[-1]["id"] if existing else 0) + 1
    with tenant.scope.transaction(write=True) as conn:
        conn.execute(insert(detection_snapshot).values(
            tenant_id=tenant.tenant_id, id=sid, account=account, taken_at=at, source=source,
            detections=detections))
    return sid


def test_snapshot_history_and_drift(tenant, catalog):
    k = populate(tenant)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    inv1 = {k["d1"]: ["h1", "enabled", "healthy"], k["d2"]: ["h2", "enabled", "healthy"],
            k["d5"]: ["h5", "enabled", "healthy"]}
    s1 = _inventory(tenant, k["A"], inv1, t0)
    c1 = snapshot(tenant, catalog, k["A"], at=t0)
    # the next import: d1 changed and d2 disabled, d5 removed, a new one covers T1190
    b = Batch()
    b.add("detection", account=k["A"], rule_id="d2", status="disabled")
    det(b, k["A"], "d9", maps=[("T1190", 0.9, "pending")])
    tenant.apply(b, actor="t", source="t")
    new_key = Batch().add("detection", account=k["A"], rule_id="d9")
    inv2 = {k["d1"]: ["h1b", "enabled", "healthy"], k["d2"]: ["h2", "disabled", "healthy"],
            new_key: ["h9", "enabled", "broken"]}
    s2 = _inventory(tenant, k["A"], inv2, t0 + timedelta(days=1))
    c2 = snapshot(tenant, catalog, k["A"], at=t0 + timedelta(days=1))
    snapshot(tenant, catalog)  # tenant-level

    series = history(tenant, k["A"])
    assert [s["id"] for s in series] == [c1, c2]
    assert [s["detection_snapshot"] for s in series] == [s1, s2]
    assert series[0]["attack_version"] == "17" and series[0]["attack_domain"] == "enterprise"
    assert series[0]["overall"] == {"covered": 4, "total": 8, "percent": 50.0}
    assert series[0]["tactics"]["TA0005"]["percent"] == 80.0
    assert series[0]["techniques"]["T1078"] == 2
    # d2 disabled: T1562(.008) lost; T1190 gained
    assert series[1]["overall"] == {"covered": 3, "total": 8, "percent": 37.5}
    assert [s["account"] for s in history(tenant)] == ["*"]

    d = drift(tenant, k["A"])
    assert (d["from"]["id"], d["to"]["id"]) == (s1, s2)
    assert [x["key"] for x in d["changes"]["added"]] == [new_key]
    assert [x["key"] for x in d["changes"]["removed"]] == [k["d5"]]
    assert [x["key"] for x in d["changes"]["modified"]] == [k["d1"]]
    assert [x["key"] for x in d["changes"]["disabled"]] == [k["d2"]]
    delta = {t["shortname"]: t for t in d["coverage_delta"]["tactics"]}
    assert delta[IA]["covered_before"] == 2 and delta[IA]["covered_after"] == 3
    assert delta[DE]["percent_delta"] == -40.0
    assert d["coverage_delta"]["overall"]["percent_delta"] == -12.5
    assert drift(tenant, None, from_snapshot=s1, to_snapshot=s2)["account"] == k["A"]


def test_drift_recomputes_the_latest_side(tenant, catalog):
    k = populate(tenant)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    s1 = _inventory(tenant, k["A"], {k["d1"]: ["h", "enabled", "healthy"]}, t0)
    snapshot(tenant, catalog, k["A"], s1, at=t0)  # at s1's instant (one taken after s2 is not)
    _inventory(tenant, k["A"], {}, t0 + timedelta(hours=1))
    assert drift(tenant, k["A"])["coverage_delta"] is None
    d = drift(tenant, k["A"], catalog=catalog)
    assert d["to"]["recomputed"] and d["coverage_delta"]["overall"]["percent_delta"] == 0.0


# -- Navigator layer ------------------------------------------------------------------------------

LAYER_REQUIRED = {"name", "domain"}
TECHNIQUE_KEYS = {"techniqueID", "tactic", "comment", "enabled", "score", "color", "metadata",
                  "links", "showSubtechniques"}


def test_layer_format_4_5(tenant, catalog):
    k = populate(tenant)
    cov = compute(tenant, catalog, account=k["A"], details=True)
    data = layer(cov)
    assert LAYER_REQUIRED <= data.keys()
    assert data["versions"]["layer"] == "4.5" and data["versions"]["attack"] == "17"
    assert tuple(int(x) for x in data["versions"]["navigator"].split(".")) >= (4, 9, 0)
    assert data["domain"] == "enterprise-attack"
    assert ATTRIBUTION in data["description"]
    g = data["gradient"]
    assert len(g["colors"]) >= 2 and g["minValue"] == 0 and g["maxValue"] == 2
    for entry in data["techniques"]:
        assert set(entry) <= TECHNIQUE_KEYS and entry["techniqueID"]
        assert all(set(m) == {"name", "value"} and isinstance(m["value"], str)
                   for m in entry["metadata"])
    t1078 = [e for e in data["techniques"] if e["techniqueID"] == "T1078"]
    assert sorted(e["tactic"] for e in t1078) == sorted(ALL3)  # one entry per technique × tactic
    assert t1078[0]["score"] == 2 and t1078[0]["showSubtechniques"] is True
    rules = [m["value"] for m in t1078[0]["metadata"] if m["name"] == "rule"]
    assert len(rules) == 2 and any("rule d7" in r and k["d7"] in r for r in rules)
    gap = next(e for e in data["techniques"] if e["techniqueID"] == "T1190")
    assert gap["score"] == 0 and gap["metadata"] == [] and gap["comment"].startswith("gap")
    assert data["filters"] == {"platforms": ["IaaS"]}
    assert {"name": "method", "value": "default"} in data["metadata"]


# -- properties -----------------------------------------------------------------------------------

ACTIVE = [t for t, x in make_catalog().techniques.items() if x.active] + ["T1108"]
mappings_st = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(ACTIVE),
                                 st.sampled_from([0.3, 0.6, 0.9]),
                                 st.sampled_from(["pending", "validated", "disputed"]),
                                 st.sampled_from(["enabled", "disabled"]),
                                 st.sampled_from(["healthy", "broken"])), max_size=12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(maps=mappings_st)
def test_properties_union_plain_and_roll_up(tenant, maps):
    catalog = make_catalog()
    b = Batch()
    accts = [b.add("cloud_account", provider="aws", identifier=f"prop{i}",
                   platforms=[["IaaS"], ["Windows"], None][i]) for i in range(3)]
    for n, (i, tech, conf, validation, status, health) in enumerate(maps):
        det(b, accts[i], f"p{n}", status=status, health=health, maps=[(tech, conf, validation)])
    # every example starts from scratch: delete what an earlier example left
    old = [r.key for r in tenant.list("detection", prefix="#detection#cloud_account#aws#prop", limit=1000).records]
    if old:
        from bastion.store import edits  # the detections' mappings depend on them: cascade
        edits.delete(tenant, old, actor="t", source="t", cascade=True)
    tenant.apply(b, actor="t", source="t")

    per = compute_accounts(tenant, catalog, accounts=accts)
    whole = tenant_union(tenant, catalog, per)
    assert whole.covered() == set().union(*(c.covered() for c in per.values()))

    plain = compute(tenant, catalog, account=accts[0], method="plain")
    active = {t.id for t in catalog.techniques.values() if t.active}
    assert plain.overall["percent"] == round(100 * len(plain.covered() & active) / len(active), 2)

    # rolling up never lowers coverage: whatever a sub-technique's detections cover, its parent
    # is covered too, and a parent's count is at least each sub-technique's
    for cov in per.values():
        for r in cov.techniques.values():
            if r.parent and r.covered and r.parent in cov.techniques:
                assert cov.techniques[r.parent].covered
                assert cov.techniques[r.parent].count >= r.count


# -- the command line -----------------------------------------------------------------------------


@pytest.fixture
def ccli(cli, database_url, monkeypatch):
    """The CLI with data and an in-memory catalog (the store's catalog loader is stubbed)."""
    store = Store(database_url)
    keys = populate(store.tenant("default"))
    store.close()
    monkeypatch.setattr("bastion.cli.coverage._catalog", lambda tenant, domain="enterprise": make_catalog())
    cli.keys = keys
    return cli


def test_cli_report_and_techniques(ccli):
    out = ccli.json("coverage", "report", "--account", "prod-aws")
    assert out["overall"] == {"covered": 4, "total": 8, "percent": 50.0}
    assert [(t["shortname"], t["covered"], t["total"], t["percent"]) for t in out["tactics"]] == [
        (IA, 2, 3, 66.67), (PE, 2, 4, 50.0), (DE, 4, 5, 80.0)]
    plain = ccli.json("coverage", "report", "--account", "prod-aws", "--method", "plain")
    assert plain["overall"]["percent"] == 33.33
    text = ccli("coverage", "report").stdout
    assert "Initial Access" in text and "Overall" in text and "MITRE" in text
    techs = ccli.json("coverage", "techniques", "--account", "prod-aws", "--covered")
    t1078 = next(t for t in techs["techniques"] if t["id"] == "T1078")
    assert {d["rule_id"] for d in t1078["detections"]} == {"d1", "d7"}
    r = ccli("coverage", "report", "--method", "nope", code=1)
    assert "--method" in r.stderr


def test_cli_check_gate(ccli):
    assert "OK" in ccli("coverage", "check", "--min-percent", "50", "--account", "prod-aws").stdout
    r = ccli("coverage", "check", "--min-percent", "51", "--account", "prod-aws", code=6)
    assert "overall" in r.stderr and "50.00%" in r.stderr
    ccli("coverage", "check", "--min-percent", "80", "--tactic", "defense-evasion", "--account", "prod-aws")
    r = ccli("coverage", "check", "--min-percent", "60", "--tactic", "TA0001", "--tactic", PE,
             "--account", "prod-aws", code=6)
    assert "persistence" in r.stderr and "initial-access" not in r.stderr
    ccli("coverage", "check", "--min-percent", "10", "--tactic", "lateral-movement", code=1)


def test_cli_gaps_overlaps_layer_snapshot_history_drift(ccli, tmp_path, database_url):
    g = ccli.json("coverage", "gaps", "--account", "prod-aws", "--limit", "2")
    assert [x["technique"] for x in g["gaps"]] == ["T1190", "T1098"] and g["total"] == 4
    ccli("coverage", "gap-status", "prod-aws", "T1190", "accepted_risk", "--comment", "WAF")
    g = ccli.json("coverage", "gaps", "--account", "prod-aws")
    assert g["gaps"][0]["status"] == "accepted_risk"
    ccli("coverage", "gap-status", "prod-aws", "T9999", "open", code=4)
    assert ccli.json("coverage", "overlaps")["overlaps"] == []
    path = tmp_path / "layer.json"
    ccli("coverage", "layer", "--account", "prod-aws", "-o", str(path))
    data = json.loads(path.read_text())
    assert data["versions"]["layer"] == "4.5" and data["techniques"]
    assert "stored" in ccli("coverage", "snapshot", "--account", "prod-aws").stdout
    ccli("coverage", "snapshot")
    hist = ccli.json("coverage", "history", "--account", "prod-aws")
    assert len(hist) == 1 and hist[0]["overall"]["percent"] == 50.0
    assert "enterprise 17" in ccli("coverage", "history").stdout
    r = ccli("coverage", "drift", "--account", "prod-aws", code=4)
    assert "two detection snapshots" in r.stderr


def store_catalog(engine, cat: Catalog) -> None:
    """Write an in-memory catalog as an active release (objects and relations, as an import)."""
    from bastion.store import catalog as store_cat

    objects = [{"stix_id": f"x-mitre-tactic--{t.id}", "type": "x-mitre-tactic", "attack_id": t.id,
                "name": t.name, "shortname": t.shortname, "ordinal": t.ordinal} for t in cat.tactics]
    relations = []
    for t in cat.techniques.values():
        objects.append({"stix_id": f"attack-pattern--{t.id}", "type": "attack-pattern",
                        "attack_id": t.id, "name": t.name, "parent": t.parent,
                        "tactics": list(t.tactics), "platforms": list(t.platforms),
                        "deprecated": t.deprecated, "revoked": t.revoked})
        if t.revoked_by:
            relations.append((f"attack-pattern--{t.id}", "revoked-by", f"attack-pattern--{t.revoked_by}"))
        for g in range(t.groups):
            relations.append((f"intrusion-set--G{g:04d}", "uses", f"attack-pattern--{t.id}"))
    groups = max(t.groups for t in cat.techniques.values())
    objects += [{"stix_id": f"intrusion-set--G{g:04d}", "type": "intrusion-set", "attack_id": f"G{g:04d}",
                 "name": f"group {g}"} for g in range(groups)]
    store_cat.replace_release(engine, store_cat.Release(cat.domain, cat.version, cat.name, "test"),
                              objects, relations, activate=True)


def test_cli_with_the_catalog_in_the_store(cli, database_url):
    store = Store(database_url)
    populate(store.tenant("default"))
    store_catalog(store.engine, make_catalog())
    store.close()
    out = cli.json("coverage", "report", "--account", "prod-aws")
    assert out["attack"] == {"domain": "enterprise", "version": "17"}
    assert out["overall"] == {"covered": 4, "total": 8, "percent": 50.0}
    g = cli.json("coverage", "gaps", "--account", "prod-aws")
    assert [(x["technique"], x["risk"]) for x in g["gaps"]][:2] == [("T1190", 63), ("T1098", 12)]
    cli("coverage", "check", "--min-percent", "90", "--account", "prod-aws", code=6)


def test_drift_pairs_snapshots_of_one_source(tenant, catalog):
    k = populate(tenant)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    a1 = _inventory(tenant, k["A"], {k["d1"]: ["h", "enabled", "healthy"]}, t0, source="sigma")
    _inventory(tenant, k["A"], {k["d2"]: ["h", "enabled", "healthy"]}, t0, source="native")
    a2 = _inventory(tenant, k["A"], {}, t0 + timedelta(hours=1), source="sigma")
    d = drift(tenant, k["A"])
    assert (d["from"]["id"], d["to"]["id"]) == (a1, a2)
    assert [x["key"] for x in d["changes"]["removed"]] == [k["d1"]]
    assert drift(tenant, to_snapshot=a2)["from"]["id"] == a1
