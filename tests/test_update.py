"""Bulk updates (edits.update, `bastion update`), priorities that follow an asset's exposure, and
the priority order of risks (open ones first). Both engines."""

from __future__ import annotations

import pytest

from bastion.errors import InvalidValue
from bastion.risks.lifecycle import set_status
from bastion.risks.priority import priority
from bastion.schema.batch import Batch
from bastion.store import edits
from cli_harness import cli, one_error_line, runner  # noqa: F401 (fixtures)


def network(tenant) -> dict[str, str]:
    b = Batch()
    k = {}
    k["a1"] = b.add("asset", identifier="10.1.2.3")
    k["a2"] = b.add("asset", identifier="10.200.0.9", exposure="external")
    k["out"] = b.add("asset", identifier="192.0.2.7")
    k["dns"] = b.add("asset", identifier="intranet.example")
    k["p1"] = b.add("port", asset=k["a1"], number=22)
    k["p_out"] = b.add("port", asset=k["out"], number=22)
    k["r_asset"] = b.add("risk", target=k["a1"], cve="CVE-2021-44228", severity="critical", cvss=10,
                         priority=priority({"severity": "critical", "cvss": 10}, "unknown"))
    k["r_port"] = b.add("risk", target=k["p1"], name="ssh-weak-kex", severity="medium",
                        priority=priority({"severity": "medium"}, "unknown"))
    k["r_out"] = b.add("risk", target=k["out"], name="open-redirect", severity="low",
                       priority=priority({"severity": "low"}, "unknown"))
    tenant.apply(b, actor="scanner", source="test")
    return k


def value(tenant, key: str, name: str):
    return tenant.get(key).values[name]


def test_an_exposure_change_re_ranks_the_risks_on_the_asset_and_its_ports(tenant):
    k = network(tenant)
    assert value(tenant, k["r_asset"], "priority") == 51.0  # 100 × 0.85 × 0.6
    b = Batch()
    b.add("asset", identifier="10.1.2.3", exposure="internal")
    res = tenant.apply(b, actor="ana", source="cli")
    assert sorted(res.reranked) == sorted([k["r_asset"], k["r_port"]])
    assert value(tenant, k["r_asset"], "priority") == 42.0  # 100 × 0.7 × 0.6
    assert value(tenant, k["r_port"], "priority") == 21.0
    assert value(tenant, k["r_out"], "priority") == priority({"severity": "low"}, "unknown")
    ev = tenant.history(k["r_asset"])[-1]
    assert (ev.event_type, ev.diff, ev.correlation_id) == (
        "risk.updated", {"priority": [51.0, 42.0]}, res.correlation_id)
    assert ev.note == f"re-ranked: exposure of {k['a1']} changed"
    assert tenant.get(k["r_asset"]).last_seen == tenant.get(k["r_out"]).last_seen  # no sighting
    # Another field of the asset changing re-ranks nothing.
    b = Batch()
    b.add("asset", identifier="10.1.2.3", exposure="internal", criticality="critical")
    assert tenant.apply(b, actor="ana", source="cli").reranked == []


def test_bulk_update_by_cidr_changes_each_entity_with_its_event(tenant):
    k = network(tenant)
    res = edits.update(tenant, "asset", {"exposure": "internal"}, cidr="10.0.0.0/8",
                       actor="ana", source="cli", note="RFC 1918")
    assert (res.matched, res.updated, res.reranked) == (2, 2, 2)
    assert sorted(res.keys) == sorted([k["a1"], k["a2"]])
    for key in (k["a1"], k["a2"]):
        ev = tenant.history(key)[-1]
        assert (ev.event_type, ev.note, ev.correlation_id) == (
            "asset.updated", "RFC 1918", res.correlation_id)
        assert ev.diff["exposure"][1] == "internal"
    assert value(tenant, k["out"], "exposure") == "unknown"
    assert value(tenant, k["r_asset"], "priority") == 42.0  # priorities followed
    # Running it again changes nothing.
    again = edits.update(tenant, "asset", {"exposure": "internal"}, cidr="10.0.0.0/8",
                         actor="ana", source="cli")
    assert (again.matched, again.updated) == (2, 0)
    # Ports by the address of their asset.
    res = edits.update(tenant, "port", {"service": "ssh"}, cidr="10.1.0.0/16", actor="ana",
                       source="cli")
    assert res.keys == [k["p1"]] and value(tenant, k["p_out"], "service") is None


def test_bulk_update_by_where_and_risk_priorities(tenant):
    k = network(tenant)
    res = edits.update(tenant, "risk", {"severity": "high"}, where={"severity": "medium"},
                       actor="ana", source="cli")
    assert res.keys == [k["r_port"]]
    assert value(tenant, k["r_port"], "priority") == priority({"severity": "high"}, "unknown")
    assert edits.update(tenant, "asset", {"criticality": "high"}, where={"exposure": "external"},
                        actor="ana", source="cli", dry_run=True).matched == 1
    assert value(tenant, k["a2"], "criticality") is None  # a dry run writes nothing


def test_bulk_update_normalizes_the_values_it_sets_before_ranking(tenant):
    # `--set severity=HIGH` is stored as high; the priority must be that of high, not of an
    # unknown severity (0), and a risk already high is not rewritten.
    k = network(tenant)
    res = edits.update(tenant, "risk", {"severity": " HIGH "}, where=["severity<=medium"],
                       actor="ana", source="cli")
    assert sorted(res.keys) == sorted([k["r_port"], k["r_out"]])
    assert value(tenant, k["r_port"], "severity") == "high"
    assert value(tenant, k["r_port"], "priority") == priority({"severity": "high"}, "unknown")
    again = edits.update(tenant, "risk", {"severity": "High"}, where={"name": "ssh-weak-kex"},
                         actor="ana", source="cli")
    assert (again.matched, again.updated, again.keys) == (1, 0, [])


def test_bulk_update_of_a_risk_status_follows_the_lifecycle_rules(tenant):
    # As `risk set-status`: deleting needs a reason, a reason fits only a closed state, and a
    # risk set back to an open state loses the reason it was closed for.
    k = network(tenant)
    count = len(tenant.events())
    for changes, message in [({"status": "deleted"}, "needs --reason"),
                             ({"status": "open", "reason": "duplicate"}, "a reason is given only"),
                             ({"reason": "duplicate"}, "a reason is given only")]:
        with pytest.raises(InvalidValue, match=message):
            edits.update(tenant, "risk", changes, where={"name": "open-redirect"},
                         actor="ana", source="cli")
    assert len(tenant.events()) == count
    edits.update(tenant, "risk", {"status": "remediated", "reason": "not_observed"},
                 where={"name": "open-redirect"}, actor="ana", source="cli")
    edits.update(tenant, "risk", {"status": "open"}, where={"name": "open-redirect"},
                 actor="ana", source="cli")
    assert (value(tenant, k["r_out"], "status"), value(tenant, k["r_out"], "reason")) == ("open", None)


@pytest.mark.parametrize("changes, where, cidr, message", [
    ({"identifier": "x"}, None, None, "part of the key"),
    ({"colour": "red"}, None, None, "no field 'colour'"),
    ({"exposure": "public"}, None, None, "cannot be 'public'"),
    ({}, None, None, "nothing to set"),
    ({"exposure": "internal"}, None, "10.0.0.300/8", "invalid CIDR"),
])
def test_bulk_update_refuses_bad_input_and_writes_nothing(tenant, changes, where, cidr, message):
    network(tenant)
    count = len(tenant.events())
    with pytest.raises(InvalidValue, match=message):
        edits.update(tenant, "asset", changes, where=where, cidr=cidr, actor="ana", source="cli")
    assert len(tenant.events()) == count


def test_risks_by_priority_open_first(tenant):
    k = network(tenant)
    set_status(tenant, k["r_asset"], "accepted", reason=None, comment=None, actor="ana")
    order = [r.key for r in tenant.list("risk", order_by="priority", descending=True).records]
    assert order == [k["r_port"], k["r_out"], k["r_asset"]]  # the accepted one last
    # Paged by keyset, one at a time, the same order.
    keys, after = [], None
    while True:
        page = tenant.list("risk", order_by="priority", descending=True, after=after, limit=1)
        keys += [r.key for r in page.records]
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert keys == order
    asc = [r.key for r in tenant.list("risk", order_by="priority").records]
    assert asc == [k["r_out"], k["r_port"], k["r_asset"]]  # open ones first either way


def test_cli_update(cli):
    cli("add", "asset", "--identifier", "10.1.2.3")
    cli("add", "asset", "--identifier", "192.0.2.7")
    cli("add", "risk", "--target", "#asset#10.1.2.3#10.1.2.3", "--name", "x", "--severity", "high")
    out = cli("update", "assets", "--cidr", "10.0.0.0/8", "--set", "exposure=internal").stdout
    assert "#asset#10.1.2.3#10.1.2.3" in out and "1 of 1 matching asset entities updated" in out
    assert cli.json("get", "#asset#10.1.2.3#10.1.2.3")["exposure"] == "internal"
    got = cli.json("update", "asset", "--where", "exposure=unknown", "--set", "criticality=high")
    assert (got["matched"], got["updated"], got["keys"]) == (1, 1, ["#asset#192.0.2.7#192.0.2.7"])
    line = one_error_line(cli("update", "asset", "--set", "identifier=x", code=1))
    assert "part of the key" in line
