"""Concurrent analysts on both engines (issue 11 points 2 and 5): two SLA changes at once both
land (and a fresh tenant never raises a duplicate key); `risk set-status` re-reads a risk
changed in between and applies the status on top, or — when someone else changed its status —
says who, when and to what. The interleaving is forced with hooks, never with timing."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import event as sa_event

from bastion.errors import ConflictError
from bastion.ingest.runner import Options, import_paths
from bastion.risks import lifecycle
from bastion.store import runs

RISK = "#risk#app.example.com#exposed-git"


def test_two_concurrent_sla_changes_on_a_fresh_tenant_both_land(tenant, monkeypatch):
    """A reads the stored SLA days and stalls before writing; B starts its change then. B may
    not read until A has written: both severities land, no duplicate key."""
    a_stalled, b_writing = threading.Event(), threading.Event()
    seen: dict[str, object] = {}
    errors: list[BaseException] = []

    def after_read(name, old):
        me = threading.current_thread().name
        seen[me] = old
        if me == "A":
            a_stalled.set()
            assert b_writing.wait(60), "B never began its write"

    def on_begin(conn):  # B announces its write transaction (it then waits for A's lock)
        if (threading.current_thread().name == "B"
                and conn.get_execution_options().get("bastion_write")):
            b_writing.set()

    def change(sla: str) -> None:
        try:
            lifecycle.configure(tenant, sla=sla, actor=threading.current_thread().name)
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    monkeypatch.setattr(runs, "after_setting_read", after_read)
    engine = tenant.scope.engine
    sa_event.listen(engine, "begin", on_begin, insert=True)
    try:
        a = threading.Thread(target=change, args=("critical=3",), name="A")
        a.start()
        assert a_stalled.wait(60)
        b = threading.Thread(target=change, args=("high=14",), name="B")
        b.start()
        a.join(120)
        b.join(120)
    finally:
        sa_event.remove(engine, "begin", on_begin)
    assert errors == []
    assert seen == {"A": None, "B": {"critical": 3}}
    assert tenant.settings()[lifecycle.SLA_SETTING] == {"critical": 3, "high": 14}
    changed = [e for e in tenant.events() if e.event_type == "setting.changed"]
    assert [(e.actor, e.diff) for e in changed] == [
        ("A", {lifecycle.SLA_SETTING: [None, {"critical": 3}]}),
        ("B", {lifecycle.SLA_SETTING: [{"critical": 3}, {"critical": 3, "high": 14}]})]


def test_the_same_first_setting_written_twice_is_one_row(tenant):
    assert tenant.set_setting("x", 1, actor="a", source="test")
    assert not tenant.set_setting("x", 1, actor="b", source="test")
    assert tenant.set_setting("x", 2, actor="b", source="test")
    assert tenant.settings() == {"x": 2}


def _scan(tenant, tmp_path, *paths: str) -> None:
    """A nuclei scan of app.example.com finding its exposed .git at `paths`."""
    lines = [json.dumps({
        "template-id": "exposed-git", "host": "https://app.example.com",
        "matched-at": f"https://app.example.com{p}", "type": "http",
        "timestamp": "2026-11-30T10:00:00Z",
        "info": {"name": "Exposed Git", "severity": "medium"}}) for p in paths]
    path = tmp_path / f"scan{len(paths)}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert import_paths(tenant, [str(path)], Options(actor="scanner")).status == "succeeded"


class _Interleaved:
    """The tenant, but the first `apply` is preceded by another writer's change (`between`):
    a write committed between set_status's read and its write."""

    def __init__(self, tenant, between):
        self._tenant, self._between = tenant, between

    def __getattr__(self, name):
        return getattr(self._tenant, name)

    def apply(self, *args, **kwargs):
        if self._between is not None:
            between, self._between = self._between, None
            between()
        return self._tenant.apply(*args, **kwargs)


def test_set_status_reapplies_over_a_scanner_change_made_in_between(tenant, tmp_path):
    _scan(tenant, tmp_path, "/.git/config")

    def scanner():
        _scan(tenant, tmp_path, "/.git/config", "/.git/HEAD")

    rec = lifecycle.set_status(_Interleaved(tenant, scanner), RISK, "accepted", reason=None,
                               comment="behind VPN", actor="ana")
    assert (rec.values["status"], rec.values["comment"]) == ("accepted", "behind VPN")
    assert rec.values["evidence"] == ["https://app.example.com/.git/config",
                                      "https://app.example.com/.git/HEAD"]
    assert [(e.event_type, e.actor) for e in tenant.history(RISK)] == [
        ("risk.created", "scanner"), ("risk.updated", "scanner"), ("risk.status_changed", "ana")]


def test_set_status_moot_after_another_analysts_decision_names_who_when_and_what(tenant, tmp_path):
    _scan(tenant, tmp_path, "/.git/config")

    def other_analyst():
        lifecycle.set_status(tenant, RISK, "deleted", reason="false_positive", comment=None,
                             actor="bob")

    with pytest.raises(ConflictError) as refused:
        lifecycle.set_status(_Interleaved(tenant, other_analyst), RISK, "accepted", reason=None,
                             comment=None, actor="ana")
    bob = tenant.history(RISK)[-1]
    when = bob.occurred_at.strftime("%Y-%m-%d %H:%M:%SZ")
    assert str(refused.value) == (
        f"{RISK} was set to deleted (false_positive) by bob at {when} (event {bob.seq}) while "
        "you were setting it to accepted; not changed: run the command again to set it anyway")
    assert "version" not in str(refused.value)
    assert tenant.get(RISK).values["status"] == "deleted"
    assert [e.actor for e in tenant.history(RISK)] == ["scanner", "bob"]
