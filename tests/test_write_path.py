"""The one write path: batched, idempotent, all-or-nothing, audited — on both engines."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from bastion.errors import ConflictError, ValidationFailed
from bastion.schema.batch import Batch, Entity, Relationship
from bastion.store import eventlog
from bastion.store.tables import event, node

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def surface() -> tuple[Batch, dict[str, str]]:
    b = Batch()
    keys = {}
    keys["www"] = b.add("asset", identifier="www.acme.example")
    keys["ip"] = b.add("asset", identifier="203.0.113.10")
    keys["port"] = b.add("port", asset=keys["ip"], number=443, service="https")
    keys["risk"] = b.add("risk", target=keys["port"], name="CVE-2021-44228", severity="critical", cvss=10)
    b.link("RESOLVES_TO", keys["www"], keys["ip"])
    return b, keys


def all_events(store, tenant):
    """Every event of the tenant with its number, read as the owner (no binding)."""
    with store.engine.connect() as conn:
        return conn.execute(eventlog.numbered(tenant.scope).order_by(eventlog.SEQ)).all()


def node_rows(store, tenant):
    with store.engine.connect() as conn:
        return {r.key: r for r in conn.execute(select(node).where(node.c.tenant_id == tenant.tenant_id))}


def test_first_apply_creates_entities_edges_and_one_event_each(store, tenant):
    b, keys = surface()
    result = tenant.apply(b, actor="alice", source="test", correlation_id="req-1", at=T0)
    assert (result.created, result.updated, result.unchanged) == (4, 0, 0)
    # HAS_PORT and HAS_VULNERABILITY are implied by the port's asset and the risk's target.
    assert (result.edges_added, result.events) == (3, 7)
    evs = all_events(store, tenant)
    assert [e.seq for e in evs] == list(range(1, 8))  # gap-free per tenant
    assert {e.actor for e in evs} == {"alice"} and {e.source for e in evs} == {"test"}
    assert {e.correlation_id for e in evs} == {"req-1"}
    assert all(e.occurred_at == T0 for e in evs)
    types = sorted(e.event_type for e in evs)
    assert types == ["asset.created", "asset.created", "edge.added", "edge.added", "edge.added",
                     "port.created", "risk.created"]
    created = next(e for e in evs if e.entity_key == keys["risk"])
    assert created.entity_version == 1
    assert created.diff["severity"] == [None, "critical"]
    assert created.diff["name"] == [None, "CVE-2021-44228"]


def test_reapply_changes_nothing_but_last_seen(store, tenant):
    b, _ = surface()
    tenant.apply(b, actor="a", source="s", at=T0)
    before = node_rows(store, tenant)
    events_before = len(all_events(store, tenant))
    b2, _ = surface()
    result = tenant.apply(b2, actor="a", source="s", at=T0 + timedelta(hours=1))
    assert (result.created, result.updated, result.unchanged, result.events) == (0, 0, 4, 0)
    assert result.edges_unchanged == 3
    after = node_rows(store, tenant)
    assert len(all_events(store, tenant)) == events_before
    for key, row in after.items():
        old = before[key]
        assert (row.version, row.content_hash, row.first_seen) == (old.version, old.content_hash, old.first_seen)
        assert row.last_seen == T0 + timedelta(hours=1)
    edges = tenant.links(next(k for k in after if k.startswith("#asset#www")))
    assert edges[0].first_seen == T0 and edges[0].last_seen == T0 + timedelta(hours=1)


def test_a_change_that_is_no_sighting_keeps_last_seen(store, tenant):
    b, _ = surface()
    tenant.apply(b, actor="a", source="s", at=T0)
    b2, keys = surface()
    risk = next(e for e in b2.entities if e.kind == "risk")
    risk.values["status"] = "accepted"
    risk.prepared = None
    result = tenant.apply(b2, actor="ana", source="cli", at=T0 + timedelta(hours=1), observed=False)
    assert (result.updated, result.unchanged) == (1, 3)
    for key, row in node_rows(store, tenant).items():
        assert row.last_seen == T0, key
        if key.startswith("#risk#"):
            assert row.updated_at == T0 + timedelta(hours=1) and row.version == 2
    assert all(link.last_seen == T0 for k in keys.values() for link in tenant.links(k))


def test_changed_field_bumps_version_and_records_the_diff(tenant):
    b, keys = surface()
    tenant.apply(b, actor="a", source="s", at=T0)
    b2 = Batch()
    b2.add("risk", target=keys["port"], name="CVE-2021-44228", severity="high", cvss=9.1)
    result = tenant.apply(b2, actor="bob", source="s", at=T0 + timedelta(minutes=5))
    assert (result.updated, result.events) == (1, 1)
    rec = tenant.get(keys["risk"])
    assert rec.version == 2 and rec.values["severity"] == "high" and rec.values["cvss"] == 9.1
    last = tenant.history(keys["risk"])[-1]
    assert last.event_type == "risk.updated" and last.entity_version == 2 and last.actor == "bob"
    assert last.diff == {"severity": ["critical", "high"], "cvss": [10.0, 9.1]}


def test_status_change_is_its_own_event_type(tenant):
    b, keys = surface()
    tenant.apply(b, actor="a", source="s")
    b2 = Batch()
    b2.add("risk", target=keys["port"], name="CVE-2021-44228", severity="critical", cvss=10,
           status="accepted", comment="compensating WAF rule")
    tenant.apply(b2, actor="analyst", source="cli")
    last = tenant.history(keys["risk"])[-1]
    assert last.event_type == "risk.status_changed"
    assert last.diff["status"] == ["triage", "accepted"]
    assert last.diff["comment"] == [None, "compensating WAF rule"]


def test_properties_are_part_of_the_state(tenant):
    b = Batch()
    k = b.add("asset", {"source_url": "https://x"}, identifier="a.example")
    tenant.apply(b, actor="a", source="s")
    b2 = Batch()
    b2.add("asset", {"source_url": "https://y"}, identifier="a.example")
    assert tenant.apply(b2, actor="a", source="s").updated == 1
    assert tenant.get(k).properties == {"source_url": "https://y"}
    assert tenant.history(k)[-1].diff == {"properties": [{"source_url": "https://x"}, {"source_url": "https://y"}]}


def test_edge_properties_update_and_unlink_emit_events(tenant):
    b, keys = surface()
    tenant.apply(b, actor="a", source="s")
    b2 = Batch()
    b2.link("RESOLVES_TO", keys["www"], keys["ip"], record="A")
    assert tenant.apply(b2, actor="a", source="s").edges_updated == 1
    b3 = Batch(unlinks=[Relationship("RESOLVES_TO", keys["www"], keys["ip"])])
    assert tenant.apply(b3, actor="a", source="s").edges_removed == 1
    types = [e.event_type for e in tenant.history(keys["www"])]
    assert types == ["asset.created", "edge.added", "edge.updated", "edge.removed"]
    assert tenant.history(keys["www"])[2].diff["properties"] == [None, {"record": "A"}]
    assert [l.relationship for l in tenant.links(keys["www"])] == []


def test_delete_removes_entity_and_its_edges_with_events(store, tenant):
    b, keys = surface()
    tenant.apply(b, actor="a", source="s")
    # The risk on the port depends on it: deleted in the same batch (see tests/test_delete.py).
    result = tenant.apply(Batch(deletes=[keys["port"], keys["risk"]]), actor="a", source="s")
    assert result.deleted == 2 and result.edges_removed == 2  # HAS_PORT in, HAS_VULNERABILITY out
    assert tenant.get(keys["port"]) is None and tenant.get(keys["risk"]) is None
    assert [l.relationship for l in tenant.links(keys["ip"])] == ["RESOLVES_TO"]
    last = tenant.history(keys["port"])[-1]
    assert last.event_type == "port.deleted" and last.entity_version == 2
    assert last.diff["number"] == [443, None]
    # deleting what is not there is a no-op, not an error
    assert tenant.apply(Batch(deletes=[keys["port"]]), actor="a", source="s").events == 0


@pytest.mark.parametrize(
    "item, where, field, reason",
    [
        (Entity("asset", {"identifier": "10.0.0.300", "class": "ipv4"}), "item 2 (asset)", "identifier", "invalid IP"),
        (Entity("gizmo", {"name": "x"}), "item 2 (gizmo)", "kind", "unknown entity kind"),
        (Entity("port", {"asset": "#asset#a.example#a.example"}), "item 2 (port)", "number", "required field is missing"),
        (Entity("port", {"asset": "#asset#a.example#a.example", "number": 70000}), "item 2 (port)", "number", "less than or equal to 65535"),
        (Entity("risk", {"target": "#asset#a.example#a.example", "name": "x", "severity": "urgent"}),
         "item 2 (risk)", "severity", "not one of: info, low, medium, high, critical"),
        (Entity("risk", {"target": "#seed#domain#a.example", "name": "x"}), "item 2 (risk)", "target", "must name a asset, port, technology"),
        (Entity("asset", {"identifier": "a.example", "colour": "red"}), "item 2 (asset)", "colour", "unknown field"),
    ],
)
def test_invalid_item_rejects_the_whole_batch(store, tenant, item, where, field, reason):
    b = Batch()
    b.add("asset", identifier="a.example")
    b.entities.append(item)
    with pytest.raises(ValidationFailed) as exc:
        tenant.apply(b, actor="a", source="s")
    problem = exc.value.problems[0]
    assert problem.where == where and problem.field == field and reason in problem.reason
    assert str(problem).startswith(where)
    assert tenant.count("asset") == 0 and all_events(store, tenant) == []


def test_relationship_between_kinds_not_allowed_is_refused(store, tenant):
    b, keys = surface()
    b.link("HAS_PORT", keys["www"], keys["risk"])
    with pytest.raises(ValidationFailed, match=r"relationship 2 \(HAS_PORT\): HAS_PORT cannot join a asset to a risk"):
        tenant.apply(b, actor="a", source="s")
    assert node_rows(store, tenant) == {}


def test_edge_to_missing_entity_rejects_the_batch(store, tenant):
    b = Batch()
    k = b.add("asset", identifier="a.example")
    b.link("RESOLVES_TO", k, "#asset#198.51.100.1#198.51.100.1")
    with pytest.raises(ValidationFailed, match="target #asset#198.51.100.1#198.51.100.1 does not exist"):
        tenant.apply(b, actor="a", source="s")
    assert node_rows(store, tenant) == {} and all_events(store, tenant) == []


def test_every_problem_is_reported_at_once(tenant):
    b = Batch(entities=[Entity("asset", {"identifier": "bad..name"}), Entity("asset", {"identifier": "::zz"})])
    with pytest.raises(ValidationFailed) as exc:
        tenant.apply(b, actor="a", source="s")
    assert [p.where for p in exc.value.problems] == ["item 1 (asset)", "item 2 (asset)"]
    assert "and 1 more" in str(exc.value)


def test_expected_version_conflict_writes_nothing(store, tenant):
    b, keys = surface()
    tenant.apply(b, actor="a", source="s")
    events_before = len(all_events(store, tenant))
    stale = Batch()
    stale.add("asset", identifier="new.acme.example")
    stale.add("risk", expected_version=3, target=keys["port"], name="CVE-2021-44228", severity="low")
    with pytest.raises(ConflictError, match="expected version 3, current is 1"):
        tenant.apply(stale, actor="a", source="s")
    assert tenant.get(keys["risk"]).values["severity"] == "critical"
    assert tenant.count("asset") == 2 and len(all_events(store, tenant)) == events_before
    ok = Batch()
    ok.add("risk", expected_version=1, target=keys["port"], name="CVE-2021-44228", severity="low")
    assert tenant.apply(ok, actor="a", source="s").updated == 1
    must_be_new = Batch()
    must_be_new.add("asset", expected_version=0, identifier="www.acme.example")
    with pytest.raises(ConflictError):
        tenant.apply(must_be_new, actor="a", source="s")


def test_same_key_twice_in_a_batch_keeps_the_last_values(tenant):
    b = Batch()
    k = b.add("asset", identifier="A.example", exposure="internal")
    b.add("asset", identifier="a.example.", exposure="external")
    assert tenant.apply(b, actor="a", source="s").created == 1
    assert tenant.get(k).values["exposure"] == "external"


def test_event_log_is_append_only_for_the_store(store, tenant):
    from sqlalchemy import update
    from sqlalchemy.exc import DBAPIError

    tenant.apply(surface()[0], actor="a", source="s")
    with pytest.raises(DBAPIError, match="append-only"):
        with store.engine.begin() as conn:
            conn.execute(update(event).values(actor="mallory"))
    assert {e.actor for e in all_events(store, tenant)} == {"a"}


# -- property: applying any valid batch twice changes nothing the second time ---------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_hosts = st.sampled_from(["a.example", "B.example.", "10.0.0.1", "2001:db8::1", "https://a.example:443/x"])
_item = st.one_of(
    st.tuples(st.just("asset"), _hosts, st.sampled_from(["external", "internal", "unknown"])),
    st.tuples(st.just("port"), _hosts, st.integers(0, 65535)),
    st.tuples(st.just("risk"), _hosts, st.sampled_from(["xss", "CVE-2024-3094", "Weak TLS"])),
)


def _batch(items) -> Batch:
    b = Batch()
    for kind, host, extra in items:
        asset = b.add("asset", identifier=host)
        if kind == "asset":
            b.add("asset", identifier=host, exposure=extra)
        elif kind == "port":
            b.add("port", asset=asset, number=extra)
        else:
            b.add("risk", target=asset, name=extra, severity="medium")
    return b


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_item, min_size=1, max_size=12))
def test_reapplying_any_batch_is_a_no_op(store, items):
    name = f"p{len(store.tenants())}"
    store.add_tenant(name)
    tenant = store.tenant(name)
    first = tenant.apply(_batch(items), actor="a", source="s", at=T0)
    state = {r.key: (r.version, r.values) for r in tenant.list("asset", limit=1000).records}
    n_events = len(tenant.events(limit=10000))
    assert n_events == first.events
    again = tenant.apply(_batch(items), actor="a", source="s", at=T0 + timedelta(days=1))
    assert (again.created, again.updated, again.events, again.edges_added) == (0, 0, 0, 0)
    assert again.unchanged == first.created + first.updated
    assert {r.key: (r.version, r.values) for r in tenant.list("asset", limit=1000).records} == state
    assert len(tenant.events(limit=10000)) == n_events
