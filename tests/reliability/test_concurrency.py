"""Concurrent writers (issue 11, points 1 and 3), on both engines, ordered by events, never timed.

An analyst's decision committed while an importer is between reading a risk and writing it is
never overwritten: the importer's reads lock what they return (PostgreSQL: its rows; SQLite: the
database), so the analyst waits for the importer — told so through `on_wait` — and its change
lands after it, on top of the scanner's evidence. A writer waits at most the lock timeout, then
fails with Busy naming the running import. On PostgreSQL an analyst's change of a risk the
import does not touch does not wait at all: the import holds no tenant-wide lock that such a
change needs, and the event counter only while it commits.

The stall between read and write is injected by wrapping the importer's read (a WriteSession
method) so that it signals and then waits until the analyst has committed or is waiting.
"""

from __future__ import annotations

import io
import sys
import threading

import pytest

from bastion.errors import Busy, ConflictError
from bastion.ingest import runner as scans
from bastion.risks import enrich, lifecycle
from bastion.store.store import Store, WriteSession

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1]))

from cli_harness import cli, runner  # noqa: E402,F401 (fixtures)

CVE = "CVE-2021-44228"
WAIT = 60  # seconds a step waits for the other thread before the test fails (never reached)


def finding(host: str, evidence: str, name: str = "Log4Shell") -> bytes:
    import orjson

    return orjson.dumps({
        "template-id": name.lower(), "type": "http", "host": host, "matched-at": f"https://{host}/{evidence}",
        "info": {"name": name, "severity": "critical", "classification": {"cve-id": [CVE]}},
    }) + b"\n"


def import_stdin(tenant, monkeypatch, data: bytes, **options) -> scans.ImportResult:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    return scans.import_paths(tenant, ["-"], scans.Options(actor="scanner", format="nuclei",
                                                             source="ext", **options))


def risk_key(tenant) -> str:
    (rec,) = tenant.list("risk").records
    return rec.key


class Stall:
    """Wraps a WriteSession read: once it returned, `read` is set and the reading thread waits
    until `go` is set (by the analyst's on_wait, or after the analyst committed)."""

    def __init__(self, monkeypatch, method: str):
        self.read, self.go = threading.Event(), threading.Event()
        original = getattr(WriteSession, method)
        stall = self

        def wrapped(session, *args, **kwargs):
            out = original(session, *args, **kwargs)
            if not stall.read.is_set():
                stall.read.set()
                assert stall.go.wait(WAIT), "the analyst neither committed nor waited"
            return out

        monkeypatch.setattr(WriteSession, method, wrapped)


class Background(threading.Thread):
    def __init__(self, target):
        super().__init__(daemon=True)
        self.target_, self.result, self.error = target, None, None

    def run(self) -> None:
        try:
            self.result = self.target_()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc

    def outcome(self):
        self.join(WAIT)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


def race(store, tenant, stall: Stall, write, key: str, state: str = "accepted"):
    """Run `write` (the importer) in a thread; when it has read, the analyst sets `key` to
    `state` through a store of its own. Returns (importer result, waits the analyst was told of)."""
    waits = []

    def on_wait(holder, timeout):
        waits.append(holder)
        stall.go.set()

    analyst = Store(store.engine.url.render_as_string(hide_password=False), on_wait=on_wait)
    importer = Background(write)
    importer.start()
    try:
        assert stall.read.wait(WAIT)
        for _ in range(3):  # told of a conflict (the importer changed it first), the analyst retries
            try:
                lifecycle.set_status(analyst.tenant(tenant.name), key, state, reason=None,
                                     comment="analyst decision", actor="alice")
                break
            except ConflictError:
                continue
        else:
            pytest.fail("the analyst's change never applied")
    finally:
        stall.go.set()  # the analyst committed (or failed): the importer goes on
        analyst.close()
    return importer.outcome(), waits


def test_stdin_import_keeps_a_decision_made_while_it_read(store, tenant, monkeypatch):
    import_stdin(tenant, monkeypatch, finding("a.example.com", "first"))
    key = risk_key(tenant)
    stall = Stall(monkeypatch, "get_many")
    result, waits = race(store, tenant, stall,
                         lambda: import_stdin(tenant, monkeypatch, finding("a.example.com", "second")), key)
    assert result.status == "succeeded"
    rec = tenant.get(key)
    assert rec.values["status"] == "accepted"  # the decision survives
    assert any("second" in e for e in rec.values["evidence"])  # and the scanner's evidence landed
    if waits:  # the analyst waited for the import, and was told which one
        assert waits[0] is not None and waits[0].run_id == result.run_id


@pytest.mark.parametrize("kind", ["kev", "epss"])
def test_enrichment_keeps_a_decision_made_while_it_read(store, tenant, monkeypatch, kind):
    import_stdin(tenant, monkeypatch, finding("a.example.com", "first"))
    key = risk_key(tenant)
    catalog = enrich.Catalog(f"{kind}.json")
    if kind == "kev":
        catalog[CVE] = (None, True)
        write = lambda: enrich.apply_kev(tenant, catalog, "feeds")  # noqa: E731
    else:
        catalog[CVE] = (0.97, 0.999)
        write = lambda: enrich.apply_epss(tenant, catalog, "feeds")  # noqa: E731
    stall = Stall(monkeypatch, "risks_with_cve")
    result, _ = race(store, tenant, stall, write, key)
    assert result.updated == 1
    rec = tenant.get(key)
    assert rec.values["status"] == "accepted"
    if kind == "kev":
        assert rec.values["kev"] is True and rec.values["kev_ransomware"] is True
    else:
        assert rec.values["epss"] == pytest.approx(0.97)


def test_close_missing_keeps_a_decision_made_while_it_read(store, tenant, monkeypatch):
    import_stdin(tenant, monkeypatch, finding("a.example.com", "first"))
    key = risk_key(tenant)
    stall = Stall(monkeypatch, "open_risks_not_seen")
    result, _ = race(store, tenant, stall, lambda: import_stdin(
        tenant, monkeypatch, finding("b.example.com", "other", name="Other"), close_missing=True), key)
    rec = tenant.get(key)
    assert rec.values["status"] == "accepted"  # not put back to remediated
    history = [e.event_type for e in tenant.history(key)]
    # closed as not observed either before the analyst's decision, or not at all (it was no
    # longer open when close-missing read it): never after it
    assert history[-1] == "risk.status_changed"
    assert result.closed in (0, 1)


def hold_the_lock(tenant, monkeypatch):
    """An import stalled after its first read, holding the tenant's write lock until released."""
    stall = Stall(monkeypatch, "get_many")
    importer = Background(lambda: import_stdin(tenant, monkeypatch, finding("a.example.com", "second")))
    importer.start()
    assert stall.read.wait(WAIT)
    (run,) = [r for r in tenant.runs.list() if r.status == "running"]
    return stall, importer, run


def test_a_writer_behind_an_import_waits_then_is_busy(store, tenant, monkeypatch):
    import_stdin(tenant, monkeypatch, finding("a.example.com", "first"))
    key = risk_key(tenant)
    stall, importer, run = hold_the_lock(tenant, monkeypatch)
    waits = []
    analyst = Store(store.engine.url.render_as_string(hide_password=False), lock_timeout=0.5,
                    on_wait=lambda holder, timeout: waits.append((holder, timeout)))
    try:
        with pytest.raises(Busy) as exc:
            lifecycle.set_status(analyst.tenant(tenant.name), key, "accepted", reason=None,
                                 comment=None, actor="alice")
    finally:
        stall.go.set()
        analyst.close()
    assert importer.outcome().status == "succeeded"
    assert exc.value.exit_code == 8
    assert exc.value.holder.run_id == run.id and exc.value.holder.actor == "scanner"
    assert f"import {run.id} by scanner, running since" in str(exc.value)
    assert "0.5 s" in str(exc.value)
    assert [(h.run_id, t) for h, t in waits] == [(run.id, 0.5)]
    assert tenant.get(key).values["status"] != "accepted"  # nothing was written


def test_cli_names_the_import_it_waits_for(cli, tenant, monkeypatch):
    # `cli` initialised the database: the `tenant` fixture's tenant is the CLI's default one
    import_stdin(tenant, monkeypatch, finding("a.example.com", "first"))
    key = risk_key(tenant)
    stall, importer, run = hold_the_lock(tenant, monkeypatch)
    try:
        cli.runner.env["BASTION_LOCK_TIMEOUT"] = "0.5"
        result = cli("risk", "set-status", key, "accepted", code=8)
    finally:
        stall.go.set()
    importer.outcome()
    err = result.stderr
    assert f"waiting for import {run.id} by scanner, running since" in err
    assert "error: busy: import" in err and "gave up after 0.5 s" in err
    assert result.stdout == ""


def test_a_change_the_import_does_not_touch_does_not_wait_for_it(store, tenant, monkeypatch):
    import_stdin(tenant, monkeypatch, finding("a.example.com", "first") + finding("b.example.com", "first"))
    other = next(r.key for r in tenant.list("risk").records if "b.example.com" in r.key)
    before = tenant.last_seq()
    stall, importer, run = hold_the_lock(tenant, monkeypatch)  # the import names a.example.com only
    waits = []
    analyst = Store(store.engine.url.render_as_string(hide_password=False), lock_timeout=0.5,
                    on_wait=lambda holder, timeout: waits.append(holder))
    try:
        if store.engine.dialect.name == "postgresql":
            lifecycle.set_status(analyst.tenant(tenant.name), other, "accepted", reason=None,
                                 comment="while the import runs", actor="alice")
            assert waits == []  # it never waited, though the import is still in its transaction
            assert [r.status for r in tenant.runs.list() if r.id == run.id] == ["running"]
        else:  # one writer at a time per SQLite database: it waits, then is busy
            with pytest.raises(Busy):
                lifecycle.set_status(analyst.tenant(tenant.name), other, "accepted", reason=None,
                                     comment=None, actor="alice")
    finally:
        stall.go.set()
        analyst.close()
    assert importer.outcome().status == "succeeded"
    events = tenant.events(after_seq=before)
    assert [e.seq for e in events] == list(range(before + 1, tenant.last_seq() + 1))  # gap-free
    if store.engine.dialect.name == "postgresql":
        # numbered in commit order: the analyst's change first, then the whole import
        assert events[0].entity_key == other and events[0].event_type == "risk.status_changed"
        assert {e.correlation_id for e in events[1:]} == {run.correlation_id}
        assert tenant.get(other).values["status"] == "accepted"


def test_every_write_transaction_takes_the_tenant_lock_itself(store, tenant):
    """The lock is the transaction's: a pooled connection that held it before does not skip it."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's write lock is the database's, taken at BEGIN IMMEDIATE")
    from sqlalchemy import text

    from bastion.store.access import WRITE_LOCK

    held = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
            "AND classid = :c AND objid = :t")
    for _ in range(3):  # the same pooled connections, one transaction after another
        with tenant.scope.transaction(write=True) as conn:
            assert conn.execute(text(held), {"c": WRITE_LOCK, "t": tenant.tenant_id}).scalar() == 0
            tenant.scope.hold_writes(conn)
            assert conn.execute(text(held), {"c": WRITE_LOCK, "t": tenant.tenant_id}).scalar() == 1


def test_a_reranking_keeps_a_decision_made_while_it_read(store, tenant, monkeypatch):
    """A change of an asset's exposure re-ranks the risks on it: it locks them before reading
    them, so an analyst's status change (which takes no tenant lock) is never overwritten."""
    from bastion.schema.batch import Batch
    from bastion.store import writer

    import_stdin(tenant, monkeypatch, finding("a.example.com", "first"))
    key = risk_key(tenant)
    read, go = threading.Event(), threading.Event()
    original = writer._Apply._stored_state

    def stalled(self, kind, ids):
        out = original(self, kind, ids)
        if kind == "risk" and not read.is_set():
            read.set()
            assert go.wait(WAIT), "the analyst neither committed nor waited"
        return out

    monkeypatch.setattr(writer._Apply, "_stored_state", stalled)
    b = Batch()
    b.add("asset", identifier="a.example.com", exposure="external")
    ranking = Background(lambda: tenant.apply(b, actor="owner", source="test", observed=False))
    ranking.start()
    assert read.wait(WAIT)
    analyst = Store(store.engine.url.render_as_string(hide_password=False),
                    on_wait=lambda holder, timeout: go.set())
    try:
        for _ in range(3):  # told of a conflict (the ranking changed it first), it retries
            try:
                lifecycle.set_status(analyst.tenant(tenant.name), key, "accepted", reason=None,
                                     comment="analyst decision", actor="alice")
                break
            except ConflictError:
                continue
    finally:
        go.set()
        analyst.close()
    assert ranking.outcome().reranked == [key]
    assert tenant.get(key).values["status"] == "accepted"  # the decision survives the re-ranking
    assert [e.event_type for e in tenant.history(key)][-2:] == ["risk.updated", "risk.status_changed"]
