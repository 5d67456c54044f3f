"""Event numbers are given as write transactions commit (bastion.store.eventlog): gap-free per
tenant and in commit order, whatever order the transactions began in; every reader pages
through them exactly once, in order, across a commit of thousands of events and many small
ones — on both engines."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bastion.schema.batch import Batch
from bastion.store import changes as changes_lib
from bastion.store import eventlog, writer

BIG = 6000  # events of the one large commit: more than a page reads in one window (eventlog.WINDOW)


def _record(tenant, conn, key: str, n: int, correlation_id: str) -> None:
    for i in range(n):
        writer.record_event(tenant.scope, conn, key=key, kind="setting", event_type="setting.changed",
                            diff={key: [i, i + 1]}, actor="tester", source="test",
                            correlation_id=correlation_id)


def _overlapping(tenant, engine_name: str, key: str) -> None:
    """Transaction A begins and writes 3 events, B begins, writes 2 and commits, then A commits.
    SQLite has one writer at a time (B could not begin before A ended): there A then B."""
    if engine_name == "sqlite":
        for cid, n in (("A", 3), ("B", 2)):
            with tenant.scope.transaction(write=True) as conn:
                _record(tenant, conn, key, n, cid)
        return
    start = tenant.last_seq()
    with ExitStack() as first:
        a = first.enter_context(tenant.scope.transaction(write=True))
        _record(tenant, a, key, 3, "A")
        with tenant.scope.transaction(write=True) as b:
            _record(tenant, b, key, 2, "B")
        # B committed while A is still open: its events already have their numbers.
        assert [(e.seq, e.correlation_id) for e in tenant.events(after_seq=start)] == \
            [(start + 1, "B"), (start + 2, "B")]
        assert tenant.last_seq() == start + 2


def test_events_are_numbered_in_commit_order_without_gaps(tenant, engine_name):
    _overlapping(tenant, engine_name, "setting:x")
    events = tenant.events()
    order = ["A"] * 3 + ["B"] * 2 if engine_name == "sqlite" else ["B"] * 2 + ["A"] * 3
    assert [(e.seq, e.correlation_id) for e in events] == list(zip(range(1, 6), order))
    assert tenant.last_seq() == tenant.feed.last_seq() == 5
    # Within a transaction, its events keep the order they were written in.
    assert [e.diff["setting:x"] for e in events if e.correlation_id == "A"] == [[0, 1], [1, 2], [2, 3]]
    # Consumers resume after any number.
    assert [e.seq for e in tenant.events(after_seq=2, limit=2)] == [3, 4]
    assert tenant.feed.events_after(4) == ([events[-1]], 5)


def test_an_entity_history_is_in_commit_order(tenant, engine_name):
    b = Batch()
    key = b.add("asset", identifier="www.acme.example")
    tenant.apply(b, actor="tester", source="test")
    _overlapping(tenant, engine_name, key)
    b = Batch()
    b.add("asset", identifier="www.acme.example", criticality="high")
    port = b.add("port", asset=key, number=443)
    tenant.apply(b, actor="tester", source="test")
    history = tenant.history(key)
    assert [e.seq for e in history] == sorted(e.seq for e in history)
    assert [e.seq for e in history] == [e.seq for e in tenant.events() if e.entity_key == key]
    assert history[0].event_type == "asset.created"
    assert [e.correlation_id for e in history[1:6]] == (
        ["A"] * 3 + ["B"] * 2 if engine_name == "sqlite" else ["B"] * 2 + ["A"] * 3)
    assert history[-1].event_type in ("asset.updated", "edge.added")
    assert tenant.history(port)[0].event_type == "port.created"


# -- paging through a large commit and many small ones -----------------------------------------


@pytest.fixture
def log(tenant):
    """A tenant whose log is small commits around one commit of BIG events (and one of 300):
    the events, as one read in order sees them."""
    def small(i: int) -> None:
        if i % 3:
            b = Batch()
            b.add("asset", identifier=f"small{i}.acme.example")
            tenant.apply(b, actor="tester", source="test", correlation_id=f"small-{i % 2}")
        else:
            with tenant.scope.transaction(write=True) as conn:
                _record(tenant, conn, f"setting:s{i}", 1, f"small-{i % 2}")

    for i in range(40):
        small(i)
    b = Batch()
    for i in range(BIG):
        b.add("asset", identifier=f"h{i}.acme.example")
    tenant.apply(b, actor="tester", source="test", correlation_id="big")
    for i in range(40, 100):
        small(i)
    with tenant.scope.transaction(write=True) as conn:
        _record(tenant, conn, "setting:many", 300, "small-1")
    for i in range(100, 130):
        small(i)
    with tenant.scope.transaction() as conn:
        rows = conn.execute(eventlog.numbered(tenant.scope).order_by(eventlog.SEQ)).all()
    from bastion.store.store import _event

    events = [_event(r) for r in rows]
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and len(events) > BIG + 400
    assert tenant.last_seq() == len(events)
    return tenant, events


def _walk(fetch, size: int, after: int = 0) -> list:
    out = []
    while True:
        page = fetch(after, size)
        assert len(page) <= size
        out.extend(page)
        if len(page) < size:
            return out
        after = page[-1].seq


FILTERS = {
    "all": ({}, lambda e: True),
    "kind": ({"kind": "setting"}, lambda e: e.entity_kind == "setting"),
    "event type": ({"event_type": "asset.*"}, lambda e: e.event_type.startswith("asset.")),
    "big run": ({"correlation_id": "big"}, lambda e: e.correlation_id == "big"),
    "small runs": ({"correlation_id": "small-1"}, lambda e: e.correlation_id == "small-1"),
    "kind and run": ({"correlation_id": "small-0", "kind": "asset"},
                     lambda e: e.correlation_id == "small-0" and e.entity_kind == "asset"),
}


def test_every_reader_pages_through_everything_once_in_order(log):
    tenant, events = log
    # Pages of seven from inside the large commit (from its start they would be thousands).
    for size, after in ((7, BIG - 100), (999, 0), (10000, 0)):
        rest = events[after:]
        assert _walk(lambda a, n: tenant.events(after_seq=a, limit=n), size, after) == rest
        for name, (kw, keep) in FILTERS.items():
            found = _walk(lambda a, n: changes_lib.changes(tenant, after_seq=a, limit=n, **kw),
                          size, after)
            assert found == [e for e in rest if keep(e)], (name, size)
        got = _walk(lambda a, n: tenant.feed.events_after(a, ["setting.*"], n)[0], size, after)
        assert got == [e for e in rest if e.event_type.startswith("setting.")]


def test_the_events_of_a_run_and_of_an_entity(log):
    tenant, events = log
    summary_events = [e for e in events if e.correlation_id == "big"]
    with tenant.scope.transaction() as conn:
        found = eventlog.correlation(tenant.scope, conn, "big")
        assert found is not None
        assert [r.seq for r in eventlog.each(tenant.scope, conn, where=found[0],
                                             commits_where=found[1], size=2500)] == \
            [e.seq for e in summary_events]
        assert eventlog.correlation(tenant.scope, conn, "nobody") is None
    key = "#asset#h5.acme.example#h5.acme.example"
    assert tenant.history(key) == [e for e in events if e.entity_key == key]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(after=st.integers(min_value=0, max_value=BIG + 600), size=st.integers(min_value=1, max_value=300),
       which=st.sampled_from(sorted(FILTERS)))
def test_any_page_is_the_slice_after_its_number(log, after, size, which):
    tenant, events = log
    assert tenant.events(after_seq=after, limit=size) == events[after:after + size]
    kw, keep = FILTERS[which]
    expected = [e for e in events if e.seq > after and keep(e)][:size]
    assert changes_lib.changes(tenant, after_seq=after, limit=size, **kw) == expected


# -- an imported file's counter is the one its commit left ---------------------------------------


def test_a_change_committed_after_an_imported_file_stops_its_reuse(tenant, engine_name, tmp_path):
    """A file records the counter as its transaction commits: its own events are before it, and
    a change that began before the file but committed after it is after it (PostgreSQL: the
    change's transaction is open while the file is imported)."""
    from test_import_reuse import one_finding, run

    path = one_finding(tmp_path, "www.acme.example")
    first = run(tenant, path)
    asset = tenant.list("asset", limit=1).records[0].key
    with ExitStack() as change:
        conn = change.enter_context(tenant.scope.transaction(write=True))
        writer.record_event(tenant.scope, conn, key=asset, kind="asset", event_type="asset.updated",
                            diff={"note": [None, "seen by hand"]}, actor="analyst", source="test")
        if engine_name == "sqlite":  # one writer at a time: the change commits first
            change.close()
        full = run(tenant, path, reuse=False)
    assert full.files[0].reused_run is None and first.run_id < full.run_id
    again = run(tenant, path)
    if engine_name == "sqlite":  # the change came before the file, whose import read it
        assert again.files[0].reused_run == full.run_id
    else:  # the change committed after the file: its event names what the file wrote
        assert again.files[0].reused_run is None
        assert run(tenant, path).files[0].reused_run == again.run_id  # nothing since
