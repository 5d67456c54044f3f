"""Reads: get, list (filters, sorting, keyset pagination), count, history and as-of."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bastion.errors import InvalidValue
from bastion.schema.batch import Batch

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
SEVERITIES = ["info", "low", "medium", "high", "critical"]


def risks(tenant, n=23):
    b = Batch()
    host = b.add("asset", identifier="app.acme.example")
    keys = []
    for i in range(n):
        keys.append(b.add("risk", target=host, name=f"finding {i:02d}", severity=SEVERITIES[i % 5],
                          cvss=None if i % 4 == 0 else round(i * 0.4, 1)))
    tenant.apply(b, actor="a", source="s", at=T0)
    return host, keys


def test_get_returns_typed_values_and_none_for_missing(tenant):
    host, keys = risks(tenant, 3)
    rec = tenant.get(keys[1])
    assert rec.kind == "risk" and rec.version == 1
    assert rec.values["name"] == "finding-01" and rec.values["severity"] == "low"
    assert rec.values["cvss"] == 0.4 and rec.values["target"] == host
    assert rec.first_seen == T0
    assert tenant.get("#risk#app.acme.example#nothing-here") is None


def test_list_filters_by_field_values_and_counts_agree(tenant):
    risks(tenant)
    page = tenant.list("risk", where={"severity": ["high", "critical"]}, limit=100)
    assert {r.values["severity"] for r in page.records} == {"high", "critical"}
    assert len(page.records) == tenant.count("risk", where={"severity": ["high", "critical"]}) == 8
    assert tenant.count("risk", where={"severity": "CRITICAL"}) == 4  # normalized like input
    assert tenant.count("asset", where={"class": "domain"}) == 1
    with pytest.raises(InvalidValue, match="risk.severity cannot be 'urgent'"):
        tenant.count("risk", where={"severity": "urgent"})
    with pytest.raises(InvalidValue, match="risk has no field 'colour'"):
        tenant.list("risk", where={"colour": "red"})


def test_key_prefix_is_a_range_on_the_key(tenant):
    risks(tenant)
    assert tenant.count("risk", prefix="app.acme.example#finding-1") == 10
    assert tenant.count("risk", prefix="#risk#app.acme.example#finding-2") == 3
    assert tenant.count("asset", prefix="#risk#") == 0


@pytest.mark.parametrize("order_by, descending", [(None, False), ("severity", False),
                                                   ("cvss", True), ("cvss", False), ("name", True)])
def test_keyset_pages_cover_everything_once_in_order(tenant, order_by, descending):
    _, keys = risks(tenant)
    seen, after = [], None
    while True:
        page = tenant.list("risk", order_by=order_by, descending=descending, after=after, limit=4)
        seen.extend(page.records)
        after = page.next_cursor
        if after is None:
            break
        assert len(page.records) == 4
    assert sorted(r.key for r in seen) == sorted(keys) and len(seen) == len(keys)
    field = order_by or "key"
    def sort_key(r):
        value = r.key if field == "key" else r.values[field]
        return value
    non_null = [r for r in seen if sort_key(r) is not None]
    nulls = [r for r in seen if sort_key(r) is None]
    assert seen == non_null + nulls  # NULLs last either way
    expected = sorted(non_null, key=lambda r: (sort_key(r), r.key), reverse=descending)
    assert [sort_key(r) for r in non_null] == [sort_key(r) for r in expected]


def test_bad_list_arguments_are_clear_errors(tenant):
    with pytest.raises(InvalidValue, match="unknown kind 'gizmo'"):
        tenant.list("gizmo")
    with pytest.raises(InvalidValue, match="cannot sort risk by 'colour'"):
        tenant.list("risk", order_by="colour")
    with pytest.raises(InvalidValue, match="invalid page cursor"):
        tenant.list("risk", after="not-a-cursor")


def test_history_and_state_as_of_past_instants(tenant):
    b = Batch()
    host = b.add("asset", identifier="db.acme.example")
    risk = b.add("risk", target=host, name="Exposed Postgres", severity="medium")
    tenant.apply(b, actor="scanner", source="nuclei", at=T0)
    b = Batch()
    b.add("risk", target=host, name="Exposed Postgres", severity="high", status="open")
    tenant.apply(b, actor="analyst", source="cli", at=T0 + timedelta(days=1))
    tenant.apply(Batch(deletes=[risk]), actor="analyst", source="cli", at=T0 + timedelta(days=2))

    hist = tenant.history(risk)
    assert [(e.event_type, e.entity_version, e.actor) for e in hist] == [
        ("risk.created", 1, "scanner"), ("risk.status_changed", 2, "analyst"),
        ("risk.deleted", 3, "analyst")]
    assert tenant.get(risk, as_of=T0 - timedelta(seconds=1)) is None
    then = tenant.get(risk, as_of=T0 + timedelta(hours=12))
    assert then.version == 1 and then.values["severity"] == "medium" and then.values["status"] == "triage"
    later = tenant.get(risk, as_of=T0 + timedelta(days=1, hours=1))
    assert later.version == 2 and later.values["severity"] == "high" and later.values["status"] == "open"
    assert tenant.get(risk, as_of=T0 + timedelta(days=3)) is None
    assert tenant.get(risk) is None
    with pytest.raises(InvalidValue, match="time zone"):
        tenant.get(risk, as_of=datetime(2026, 1, 1))


def test_as_of_equals_current_state_after_many_changes(tenant):
    b = Batch()
    host = b.add("asset", identifier="10.1.2.3")
    tenant.apply(b, actor="a", source="s", at=T0)
    for i, exposure in enumerate(["external", "internal", "external", "unknown"], start=1):
        b = Batch()
        b.add("asset", {"round": i}, identifier="10.1.2.3", exposure=exposure, criticality="high")
        tenant.apply(b, actor="a", source="s", at=T0 + timedelta(hours=i))
    now = tenant.get(host)
    rebuilt = tenant.get(host, as_of=T0 + timedelta(days=1))
    assert rebuilt.values == now.values and rebuilt.properties == now.properties == {"round": 4}
    assert rebuilt.version == now.version == 5


def test_events_feed_is_ordered_and_resumable(tenant):
    risks(tenant, 3)
    first = tenant.events(limit=2)
    rest = tenant.events(after_seq=first[-1].seq)
    assert [e.seq for e in first + rest] == list(range(1, 8))


def test_counts_per_kind_and_relationship(tenant):
    risks(tenant, 5)
    counts = tenant.counts()
    assert counts["asset"] == 1 and counts["risk"] == 5 and counts["HAS_VULNERABILITY"] == 5
    assert counts["port"] == 0


def test_a_field_named_like_a_node_column_reads_as_the_field(tenant):
    b = Batch()
    tech = b.add("technology", cpe="cpe:2.3:a:apache:http_server:2.4.49")
    b.add("technology", cpe="cpe:2.3:a:openbsd:openssh:9.6")
    tenant.apply(b, actor="a", source="s")
    rec = tenant.get(tech)
    assert rec.version == 1 and rec.values["version"] == "2.4.49"
    assert rec.as_dict()["entity_version"] == 1 and rec.as_dict()["version"] == "2.4.49"
    first = tenant.list("technology", order_by="version", limit=1)
    second = tenant.list("technology", order_by="version", limit=1, after=first.next_cursor)
    assert [first.records[0].values["version"], second.records[0].values["version"]] == ["2.4.49", "9.6"]


def test_get_many_reads_what_exists_across_kinds(tenant):
    host, keys = risks(tenant, 5)
    missing = "#asset#missing.example#missing.example"
    found = tenant.get_many([host, *keys[:3], missing])
    assert set(found) == {host, *keys[:3]}
    assert found[keys[2]].values["severity"] == "medium" and found[host].kind == "asset"


# -- issue 10 (13): keys and filter values are normalized like the write path ----------------


def test_get_and_history_find_an_entity_by_a_non_normalized_key(tenant):
    b = Batch()
    host = b.add("asset", identifier="www.example.com")
    risk = b.add("risk", target=host, cve="CVE-2018-15473", severity="medium")
    tenant.apply(b, actor="a", source="s", at=T0)
    assert host == "#asset#www.example.com#www.example.com"
    rec = tenant.get("#asset#WWW.Example.com#WWW.Example.com")
    assert rec is not None and rec.key == host
    assert tenant.get("#risk#WWW.example.com#cve-2018-15473").key == risk
    assert [e.entity_key for e in tenant.history("#risk#www.example.com#cve-2018-15473")] == [risk]
    assert tenant.get("#asset#nothere.example.com#nothere.example.com") is None


def test_where_values_are_normalized_like_the_write_path(tenant):
    b = Batch()
    host = b.add("asset", identifier="www.example.com")
    risk = b.add("risk", target=host, cve="CVE-2018-15473", severity="medium")
    tenant.apply(b, actor="a", source="s", at=T0)
    assert [r.key for r in tenant.list("risk", where={"cve": "cve-2018-15473"}).records] == [risk]
    assert tenant.count("risk", where=["cve=cve-2018-15473"]) == 1
    assert tenant.count("risk", where={"target": "#asset#WWW.Example.com#WWW.Example.com"}) == 1
    assert tenant.count("asset", where={"identifier": "WWW.Example.COM."}) == 1
    assert tenant.count("risk", where={"name": "CVE-2018-15473"}) == 1
    with pytest.raises(InvalidValue, match="risk.cve: invalid CVE id 'nope'"):
        tenant.count("risk", where={"cve": "nope"})


def test_history_keeps_the_note_of_an_event(tenant):
    b = Batch()
    host = b.add("asset", identifier="www.example.com", note="found by hand")
    tenant.apply(b, actor="a", source="s", at=T0)
    assert [e.note for e in tenant.history(host)] == ["found by hand"]


def test_a_key_filter_matches_the_key_as_given_too(tenant):
    # An opaque cloud id can look like a DNS name: its key must not be "normalized" away.
    b = Batch()
    bucket = b.add("asset", identifier="my-bucket.example", **{"class": "cloud_resource"},
                   account="123456789012")
    b.add("risk", target=bucket, name="public bucket", severity="high")
    tenant.apply(b, actor="a", source="s", at=T0)
    assert bucket == "#asset#123456789012#my-bucket.example"
    assert tenant.count("risk", where={"target": bucket}) == 1
    assert tenant.count("risk", where=[f"target={bucket}"]) == 1
    assert tenant.get(bucket).key == bucket


def test_count_by_and_a_capped_count(tenant):
    from bastion.schema.batch import Batch

    b = Batch()
    asset = b.add("asset", identifier="www.example.com")
    for i, sev in enumerate(("high", "high", "low", "critical")):
        b.add("risk", target=asset, name=f"r{i}", severity=sev)
    tenant.apply(b, actor="t", source="t")
    assert tenant.count_by("risk", "severity") == {"high": 2, "low": 1, "critical": 1}
    assert tenant.count_by("risk", "severity", where=["severity>=high"]) == {"high": 2, "critical": 1}
    assert tenant.count("risk", at_most=2) == 2 and tenant.count("risk", at_most=10) == 4
    before = tenant.last_seq()
    tenant.apply(Batch(deletes=["#risk#www.example.com#r0"]), actor="t", source="t")
    assert tenant.last_seq() > before
