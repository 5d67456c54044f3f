"""`db health` reads real statistics: a long transaction and dead rows on PostgreSQL, the
integrity check, pages and WAL on SQLite."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from sqlalchemy import text

from bastion.ops.health import health
from bastion.schema.batch import Batch


def test_health_reports_what_the_engine_knows(store, tenant, engine_name):
    b = Batch()
    b.add("asset", identifier="www.acme.example")
    tenant.apply(b, actor="tester", source="test")
    if engine_name == "sqlite":
        h = health(store)
        assert h.ok and h.integrity == "ok" and h.journal_mode == "wal"
        assert h.page_count > 0 and h.database_bytes == h.page_size * h.page_count
        assert h.wal_bytes > 0  # the write above is in the WAL until a checkpoint
        assert {"node", "event"} <= {t.name for t in h.tables}
        assert any(i.table == "node" and i.bytes > 0 for i in h.indexes)
        return
    with store.engine.connect() as conn:  # dead rows: three updates of one row, stats flushed
        for _ in range(3):
            conn.execute(text("UPDATE graph_stats SET count = count"))
            conn.commit()
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        conn.commit()
    with store.engine.connect() as open_tx:  # an open transaction, listed with no threshold
        open_tx.execute(text("SELECT 1"))
        h = health(store, long_after=timedelta(0))
        assert [lt.pid for lt in h.long_transactions] == [
            open_tx.execute(text("SELECT pg_backend_pid()")).scalar_one()]
        assert not h.ok and "open for" in h.problems[-1]
    stats = {t.name: t for t in h.tables}
    assert stats["graph_stats"].dead_rows >= 3
    assert stats["node"].bytes > 0 and stats["node"].index_bytes > 0
    assert 0 <= h.cache_hit_ratio <= 1
    assert health(store).ok


def test_sqlite_integrity_problems_are_named(tmp_path):
    from bastion.store.health import check
    from sqlalchemy import create_engine

    path = tmp_path / "broken.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    conn.execute("CREATE INDEX t_b ON t (b)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(500)])
    conn.commit()
    conn.execute("PRAGMA writable_schema = ON")  # the index made to describe another column
    conn.execute("UPDATE sqlite_master SET sql = 'CREATE INDEX t_b ON t (a)' WHERE name = 't_b'")
    conn.commit()
    conn.close()
    engine = create_engine(f"sqlite:///{path}")
    try:
        h = check(engine)
    finally:
        engine.dispose()
    assert not h.ok and h.integrity != "ok" and h.problems[0].startswith("integrity check: ")
