"""Deleting an entity others depend on: refused (listing them) or cascaded (an event each); and no
write fails because some other entity's reference is broken. Both engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, or_

from bastion.errors import ConflictError, ValidationFailed
from bastion.risks.enrich import apply_kev, read_kev
from bastion.risks.lifecycle import set_status
from bastion.schema.batch import Batch, Relationship
from bastion.schema.keys import node_id
from bastion.store import edits, writer
from bastion.store.tables import edge, node
from cli_harness import cli, one_error_line, runner  # noqa: F401 (fixtures)

KEV = Path(__file__).parent / "fixtures" / "enrich" / "kev.json"
HOST = "#asset#nuclei-example.com#nuclei-example.com"


def surface(tenant) -> dict[str, str]:
    b = Batch()
    k = {"host": b.add("asset", identifier="nuclei-example.com")}
    k["other"] = b.add("asset", identifier="other.example")
    k["port"] = b.add("port", asset=k["host"], number=443)
    k["on_host"] = b.add("risk", target=k["host"], cve="CVE-2021-44228", severity="critical")
    k["on_port"] = b.add("risk", target=k["port"], name="tls-weak", severity="low")
    k["on_other"] = b.add("risk", target=k["other"], cve="CVE-2023-4966", severity="high")
    k["attr"] = b.add("attribute", parent=k["port"], name="banner", value="nginx")
    k["job"] = b.add("job", target=k["host"], capability="nuclei")
    b.link("RESOLVES_TO", k["other"], k["host"])
    # A manual link to a risk whose target is another asset: not a dependency.
    b.link("HAS_VULNERABILITY", k["host"], k["on_other"])
    tenant.apply(b, actor="scanner", source="test")
    return k


DEPENDENTS = ("port", "on_host", "on_port", "attr", "job")


def test_dependents_are_derived_from_the_schemas_key_references():
    fields = {(kind, f) for kind, f, _ in writer.dependent_fields()}
    assert {("port", "asset"), ("risk", "target"), ("attribute", "parent"), ("job", "target"),
            ("detection", "account"), ("mapping", "detection"), ("gap", "account")} == fields


def test_deleting_an_entity_others_depend_on_is_refused_and_lists_them(tenant):
    k = surface(tenant)
    count = len(tenant.events())
    with pytest.raises(writer.DependentsExist) as err:
        edits.delete(tenant, [k["host"]], actor="ana", source="cli")
    assert isinstance(err.value, ConflictError)
    assert sorted(err.value.dependents) == sorted(k[d] for d in DEPENDENTS)
    assert "5 entities depend on it" in str(err.value) and "cascade" in str(err.value)
    assert len(tenant.events()) == count and tenant.get(k["host"]) is not None
    # The same through a plain batch: the write path refuses, whoever calls it.
    with pytest.raises(writer.DependentsExist):
        tenant.apply(Batch(deletes=[k["port"]]), actor="ana", source="cli")
    # Deleting the dependents in the same batch is no cascade: allowed.
    res = tenant.apply(Batch(deletes=[k["port"], k["on_port"], k["attr"]]), actor="ana", source="cli")
    assert (res.deleted, res.cascaded) == (3, [])


def test_cascade_deletes_every_dependent_with_its_event(tenant):
    k = surface(tenant)
    res = edits.delete(tenant, [k["host"]], actor="ana", source="cli", cascade=True)
    assert res.deleted == 6 and sorted(res.cascaded) == sorted(k[d] for d in DEPENDENTS)
    for name in ("host", *DEPENDENTS):
        assert tenant.get(k[name]) is None
        last = tenant.history(k[name])[-1]
        assert last.event_type.endswith(".deleted") and last.correlation_id == res.correlation_id
    assert tenant.history(k["host"])[-1].note is None
    assert tenant.history(k["port"])[-1].note == f"deleted with {k['host']}"
    assert tenant.history(k["on_port"])[-1].note == f"deleted with {k['port']}"
    assert tenant.history(k["attr"])[-1].note == f"deleted with {k['port']}"
    # What does not depend on it stays: the other asset, and the risk only linked by hand.
    assert tenant.get(k["other"]) is not None and tenant.get(k["on_other"]) is not None
    assert [l.relationship for l in tenant.links(k["other"])] == ["HAS_VULNERABILITY"]
    assert tenant.counts()["risk"] == 1 and tenant.counts()["port"] == 0
    # Enrichment and analyst transitions work on what is left.
    assert apply_kev(tenant, read_kev(KEV), "ana").risks == 1
    assert set_status(tenant, k["on_other"], "accepted", reason=None, comment=None,
                      actor="ana").values["status"] == "accepted"


def _break_reference(store, tenant, key: str) -> None:
    """Delete a node behind the write path's back, as `bastion delete` did before cascading:
    what referenced it stays, with a dangling reference."""
    nid = node_id(key)
    with store.engine.begin() as conn:
        conn.execute(delete(edge).where(edge.c.tenant_id == tenant.tenant_id,
                                        or_(edge.c.source_id == nid, edge.c.target_id == nid)))
        conn.execute(delete(node).where(node.c.tenant_id == tenant.tenant_id, node.c.id == nid))


def test_no_write_fails_because_another_entitys_reference_is_broken(store, tenant):
    k = surface(tenant)
    _break_reference(store, tenant, k["host"])
    # Enrichment rewrites every risk with a CVE, among them one on the vanished asset.
    result = apply_kev(tenant, read_kev(KEV), "ana")
    assert (result.risks, result.updated) == (2, 2)
    assert tenant.get(k["on_host"]).values["kev"] is True
    rec = set_status(tenant, k["on_host"], "remediated", reason="other", comment="host gone",
                     actor="ana")
    assert rec.values["status"] == "remediated" and rec.values["target"] == k["host"]
    # A new reference to a missing entity is still refused, and so is moving one to it.
    b = Batch()
    b.add("risk", target=k["host"], name="new-finding", severity="low")
    with pytest.raises(ValidationFailed, match="does not exist"):
        tenant.apply(b, actor="ana", source="cli")
    b = Batch()
    b.add("risk", target=k["host"], cve="CVE-2023-4966", severity="high")
    with pytest.raises(ValidationFailed, match="does not exist"):
        tenant.apply(b, actor="ana", source="cli")
    # And the dangling risk can be deleted.
    assert edits.delete(tenant, [k["on_host"]], actor="ana", source="cli").deleted == 1


def test_a_link_implied_by_a_reference_cannot_be_removed_alone(tenant):
    k = surface(tenant)
    b = Batch(unlinks=[Relationship("HAS_PORT", k["host"], k["port"])])
    with pytest.raises(ValidationFailed, match="implied by the port's asset"):
        tenant.apply(b, actor="ana", source="cli")
    # A link made by hand can.
    b = Batch(unlinks=[Relationship("HAS_VULNERABILITY", k["host"], k["on_other"])])
    assert tenant.apply(b, actor="ana", source="cli").edges_removed == 1


def test_cli_delete_refuses_then_cascades(cli):
    cli("add", "asset", "--identifier", "nuclei-example.com")
    port = "#port#tcp#80#asset#nuclei-example.com#nuclei-example.com"
    cli("add", "port", "--asset", HOST, "--number", "80")
    risk = "#risk#nuclei-example.com#tech-detect"
    cli("add", "risk", "--target", port, "--name", "tech-detect")
    line = one_error_line(cli("delete", HOST, code=3))
    assert "2 entities depend on it" in line and port in line and "--cascade" in line
    out = cli("delete", HOST, "--cascade").stdout
    assert HOST in out and f"{port} (depends on it)" in out and f"{risk} (depends on it)" in out
    one_error_line(cli("get", risk, code=4))
    assert cli.json("history", risk)[-1]["event_type"] == "risk.deleted"
