"""Migration round trips compare CONTENT, on both engines, for every revision.

Every table is populated through the library (scanner import with reusable-file records,
enrichment, settings, detections with snapshots, coverage, gaps, the ATT&CK catalog, refreshed
graph statistics, hand-written entities of every kind). Then, newest revision first, each revision
is undone and redone: the content of every table (a hash of all its rows, ordered by primary key)
must be identical afterwards unless the revision declares a loss (`lost_on_downgrade`), in which
case the downgrade is refused without --force (changing nothing), and the forced round trip may
change only the tables it declared — and does change each of them. A revision added later is
covered without editing this file; a table nothing populates fails the test.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from bastion.coverage import detections as det_ops
from bastion.coverage import history
from bastion.coverage.attack import import_bundle, read_bundle
from bastion.coverage.gaps import set_gap_status
from bastion.coverage.inventory import Options as DetectionOptions, import_detections
from bastion.errors import LossyDowngrade
from bastion.feed import webhooks
from bastion.ingest.runner import Options, import_paths
from bastion.risks import enrich
from bastion.schema.batch import Batch
from bastion.schema.kinds import REGISTRY
from bastion.store import catalog as catalog_store
from bastion.store import migrate, runs
from bastion.store.store import Store
from bastion.store.tables import metadata

pytestmark = pytest.mark.unmigrated

FIXTURES = Path(__file__).parent.parent / "fixtures"
AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
AWS = "#cloud_account#aws#123456789012"


@pytest.fixture
def empty(database_url):
    s = Store(database_url)
    yield s
    s.close()


def populate(store: Store, name: str = "acme") -> None:
    """A row in every table, through the library."""
    store.add_tenant(name)
    ts = store.tenant(name)
    import_bundle(store, read_bundle(FIXTURES / "attack" / "enterprise-17.0.json"), actor="tester")
    # A scanner import: nodes, edges, risks with source/evidence/priority, the run record and the
    # reusable-file records with their member lists.
    result = import_paths(ts, [str(FIXTURES / "scans" / "nuclei" / "v3.jsonl")], Options(actor="tester"))
    assert result.status == "succeeded"
    enrich.apply_kev(ts, enrich.read_kev(open(FIXTURES / "enrich" / "kev.json", "rb"), "kev.json"), "tester")
    enrich.apply_epss(ts, enrich.read_epss(open(FIXTURES / "enrich" / "epss.csv", "rb"), "epss.csv"), "tester")
    runs.set_setting(ts.scope, "risk_sla_days", {"critical": 5}, actor="tester", source="test")
    # Every other kind by hand, with an event note.
    b = Batch()
    asset = b.add("asset", identifier="www.acme.example", criticality="high", exposure="external")
    seed = b.add("seed", identifier="acme.example", note="scope agreed with the customer")
    cap = b.add("capability", name="nuclei", category="scanner")
    job = b.add("job", target=asset, capability="nuclei", status="passed")
    integ = b.add("integration", type="github", name="acme-org")
    attr = b.add("attribute", name="owner", value="web-team", parent=asset)
    port = b.add("port", asset=asset, number=443, service="https")
    tech = b.add("technology", name="nginx", version="1.25.3", vendor="f5")
    b.link("HAS_PORT", asset, port)
    b.link("HAS_TECHNOLOGY", port, tech, detected_by="httpx")
    b.link("DISCOVERED", seed, asset)
    b.link("SCANNED_BY", asset, job)
    b.link("HAS_ATTRIBUTE", asset, attr)
    b.link("INTEGRATES_WITH", integ, cap)
    ts.apply(b, actor="tester", source="test", at=AT)
    # Detection coverage: an account, detections and mappings with a detection snapshot, a
    # coverage snapshot and an analyst's gap decision.
    det_ops.add_account(ts, actor="tester", provider="aws", identifier="123456789012", name="prod")
    catalog = catalog_store.load(store.engine)
    imported = import_detections(ts, [str(FIXTURES / "sigma")],
                                 DetectionOptions(actor="tester", account=AWS), catalog=catalog)
    assert not imported.rejected
    history.snapshot(ts, catalog, AWS)
    set_gap_status(ts, AWS, "T1190", "accepted_risk", comment="behind the WAF", actor="tester",
                   catalog=catalog)
    ts.graph().refresh_stats()
    # The change feed: a webhook subscription, a (refused) test delivery in its log, a relay cursor.
    sub, _ = webhooks.add(ts, "http://127.0.0.1:9/hook", "risk.*", actor="tester", source="test",
                          secret="s" * 16)
    assert not webhooks.test(ts, sub.id).ok
    ts.feed.set_cursor("nats:BASTION", 1)
    ts.keys.create("populate", "reader", actor="tester", source="test")  # api_key (0010)


def tables(store: Store) -> list[str]:
    return sorted(set(inspect(store.engine).get_table_names()) - {"alembic_version"})


def content(store: Store) -> dict[str, tuple[str, int, list[dict]]]:
    """Per table: (hash of all rows ordered by primary key, row count, rows as dicts)."""
    insp = inspect(store.engine)
    out = {}
    with store.engine.connect() as conn:
        for table in tables(store):
            cols = sorted(c["name"] for c in insp.get_columns(table))
            pk = insp.get_pk_constraint(table)["constrained_columns"] or cols
            rows = [tuple(r) for r in conn.execute(text(
                f'SELECT {", ".join(f"{chr(34)}{c}{chr(34)}" for c in cols)} FROM "{table}" '
                f'ORDER BY {", ".join(f"{chr(34)}{c}{chr(34)}" for c in pk)}'))]
            digest = hashlib.blake2b(repr((cols, rows)).encode(), digest_size=16).hexdigest()
            out[table] = (digest, len(rows), [dict(zip(cols, r)) for r in rows])
    return out


def declared_tables(losses: list[migrate.Loss]) -> set[str]:
    out = set()
    for loss in losses:
        table = loss.what.split(".")[0]
        out.add(table)
        if table in REGISTRY.node_kinds:  # a node of a kind: its node row and typed row
            out.add("node")
    return out


def numbers(c, tenant_id: int) -> list[int]:
    """The feed numbers of a tenant's events: their `seq` column, or from revision 0012 their
    commit's base + their position."""
    events = [e for e in c["event"][2] if e["tenant_id"] == tenant_id]
    if events and "seq" in events[0]:
        return [e["seq"] for e in events]
    base = {r["txn"]: r["base"] for r in c["event_commit"][2] if r["tenant_id"] == tenant_id}
    return [base[e["txn"]] + e["pos"] for e in events]


def test_every_revision_declares_what_its_downgrade_loses():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate._config())
    undeclared = [rev for rev in migrate.revisions()
                  if not callable(getattr(script.get_revision(rev).module, "lost_on_downgrade", None))]
    assert not undeclared, (f"revisions without lost_on_downgrade(bind) (see bastion/store/migrate.py): "
                            f"{undeclared}")


def test_every_revision_round_trips_its_content_or_declares_and_refuses(empty):
    engine = empty.engine
    order = migrate.revisions()
    migrate.upgrade(engine, "head")
    populate(empty)
    counts = {t: n for t, (_h, n, _r) in content(empty).items()}
    assert set(counts) == set(metadata.tables)
    assert not [t for t, n in counts.items() if n == 0], f"populate() leaves tables empty: {counts}"
    lossless = []
    for i in range(len(order) - 1, -1, -1):
        rev, previous = order[i], (order[i - 1] if i else "base")
        assert migrate.current(engine) == rev
        before = content(empty)
        assert all(n for _h, n, _r in before.values()), f"an empty table at {rev}: nothing to compare"
        declared = migrate.losses(engine, previous)
        assert {loss.revision for loss in declared} <= {rev}
        assert all(loss.count > 0 for loss in declared)

        if declared:
            with pytest.raises(LossyDowngrade) as refused:
                migrate.downgrade(engine, previous)
            assert refused.value.losses == declared
            assert refused.value.exit_code == LossyDowngrade.exit_code
            assert migrate.current(engine) == rev
            assert content(empty) == before, "a refused downgrade changed something"
            assert migrate.downgrade(engine, previous, force=True) == declared
        else:
            assert migrate.downgrade(engine, previous) == []
            lossless.append(rev)
        assert migrate.current(engine) == (None if previous == "base" else previous)
        migrate.upgrade(engine, rev)
        after = content(empty)

        changed = {t for t in before if after[t][0] != before[t][0]}
        allowed = declared_tables(declared)
        if declared and "tenant" not in allowed:
            # Removals were recorded as events: the log only grew (and the tenant's counter);
            # what was there is still there (but for the columns declared lost).
            allowed |= {"event", "tenant"}
            gone = {loss.what.split(".")[1] for loss in declared if loss.what.startswith("event.")}

            def events(c):
                return {repr(sorted((k, v) for k, v in row.items() if k not in gone)) for row in c["event"][2]}
            assert events(before) <= events(after), f"{rev}: an event changed"
            assert [r["event_seq"] for r in before["tenant"][2]] <= [r["event_seq"] for r in after["tenant"][2]]
        assert changed <= allowed, f"{rev}: changed without being declared: {changed - allowed}"
        if declared:
            declared_changed = {loss.what.split(".")[0] for loss in declared}
            assert declared_changed <= changed, f"{rev}: declared but not lost: {declared_changed - changed}"
        else:
            assert changed == set(), f"{rev} is lossless but its round trip changed {changed}"
        if "event" in after:  # the feed stays gap-free: events 1..event_seq per tenant
            for t in after["tenant"][2]:
                assert sorted(numbers(after, t["id"])) == list(range(1, t["event_seq"] + 1)), rev
        # Back to just before `rev` for the next (older) revision, forced.
        migrate.downgrade(engine, previous, force=True)
    assert "0002" in lossless  # policies and triggers only
