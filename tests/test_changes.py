"""What changed: events by import run, correlation id, time and kind, and a run's summary. Both
engines."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bastion.errors import InvalidValue, NotFound
from bastion.schema.batch import Batch
from bastion.store import changes
from bastion.store.store import Event
from cli_harness import cli, one_error_line, runner  # noqa: F401 (fixtures)

NUCLEI = Path(__file__).parent / "fixtures" / "scans" / "nuclei" / "v3.jsonl"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
CLOSED = ["#risk#2001:db8::10#CVE-2021-40438", "#risk#mail.example.com#smtp-detect"]


def test_events_by_correlation_id_time_and_kind(tenant):
    b = Batch()
    asset = b.add("asset", identifier="a.example")
    tenant.apply(b, actor="ana", source="cli", correlation_id="first", at=T0)
    b = Batch()
    b.add("risk", target=asset, name="x", severity="low")
    tenant.apply(b, actor="ana", source="cli", correlation_id="second", at=T0 + timedelta(days=1))
    assert [e.event_type for e in changes.changes(tenant, correlation_id="first")] == ["asset.created"]
    second = changes.changes(tenant, correlation_id="second")
    assert [e.event_type for e in second] == ["risk.created", "edge.added"]
    assert [e.entity_kind for e in changes.changes(tenant, kind="risk")] == ["risk"]
    assert len(changes.changes(tenant, since=T0 + timedelta(hours=1))) == 2
    assert [e.correlation_id for e in changes.changes(tenant, until="2026-03-01T12:00:00Z")] == ["first"]
    page = changes.changes(tenant, limit=2)
    rest = changes.changes(tenant, after_seq=page[-1].seq)
    assert [e.seq for e in page + rest] == [1, 2, 3]
    with pytest.raises(InvalidValue, match="unknown kind"):
        changes.changes(tenant, kind="gizmo")
    with pytest.raises(NotFound, match="no import run 9"):
        changes.changes(tenant, run=9)


def ev(kind: str, what: str, diff: dict) -> Event:
    return Event(1, T0, f"#{kind}#x", kind, 2, f"{kind}.{what}", diff, "a", "s", "c")


@pytest.mark.parametrize("event, category", [
    (ev("risk", "created", {}), "new_risks"),
    (ev("risk", "status_changed", {"status": ["open", "remediated"]}), "closed_risks"),
    (ev("risk", "status_changed", {"status": ["triage", "accepted"]}), "closed_risks"),
    (ev("risk", "status_changed", {"status": ["remediated", "open"]}), "reopened_risks"),
    (ev("risk", "status_changed", {"status": ["triage", "open"]}), None),
    (ev("risk", "deleted", {}), "closed_risks"),
    (ev("asset", "created", {}), "new_assets"),
    (ev("asset", "status_changed", {"status": ["active", "inactive"]}), "vanished_assets"),
    (ev("asset", "deleted", {}), "vanished_assets"),
    (ev("port", "updated", {"state": ["open", "closed"]}), "vanished_ports"),
    (ev("port", "updated", {"service": [None, "ssh"]}), None),
    (ev("port", "created", {}), "new_ports"),
    (ev("technology", "created", {}), None),
])
def test_what_counts_as_new_closed_reopened_vanished(event, category):
    assert changes._category(event) == category


def test_cli_changes_summarises_each_import_run(cli, tmp_path):
    some = tmp_path / "some.jsonl"
    some.write_text("".join(NUCLEI.read_text().splitlines(keepends=True)[:2]))
    cli("import", str(NUCLEI), "--source", "weekly")
    cli("import", str(some), "--source", "weekly", "--close-missing")
    cli("import", str(NUCLEI), "--source", "weekly")
    first = cli.json("changes", "--run", "1")
    s = first["summary"]
    assert (s["run"], s["new_risks"]["count"], s["new_assets"]["count"]) == (1, 4, 5)
    assert s["closed_risks"]["count"] == s["reopened_risks"]["count"] == 0
    assert s["events"] == len(first["events"]) and first["next_after"] is None
    second = cli.json("changes", "--run", "2")["summary"]
    assert sorted(second["closed_risks"]["keys"]) == CLOSED and second["new_risks"]["count"] == 0
    third = cli.json("changes", "--run", "3", "--summary")
    assert sorted(third["summary"]["reopened_risks"]["keys"]) == CLOSED and third["events"] == []
    text = cli("changes", "--run", "2").stdout
    assert "closed risks" in text and "risk.status_changed" in text
    risks = cli.json("changes", "--kind", "risk", "--limit", "3")
    assert len(risks["events"]) == 3 and {e["entity_kind"] for e in risks["events"]} == {"risk"}
    assert risks["next_after"] == risks["events"][-1]["seq"]
    one_error_line(cli("changes", "--run", "7", code=4))
    one_error_line(cli("changes", "--since", "yesterday", code=1))
