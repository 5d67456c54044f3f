"""`bastion db health`: what a database team looks at first, per engine.

PostgreSQL (from the statistics views, readable by any login; other sessions' query text needs
pg_read_all_stats): the buffer cache hit ratio, per table its size, index size, live and dead
rows, sequential and index scans and last vacuum, per index its scans and size (never-used ones
stand out), and transactions open longer than a threshold. SQLite: the integrity check, page size
and counts, free pages, the journal mode, the WAL file's size and, when SQLite has the dbstat
table, pages per table and index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

if TYPE_CHECKING:
    from bastion.store.store import Store


WARM_BLOCKS = 100_000  # block requests before the cache hit ratio means anything


@dataclass
class TableHealth:
    name: str
    bytes: int  # the table's size (PostgreSQL: heap and TOAST; SQLite: pages × page size)
    index_bytes: int | None = None
    live_rows: int | None = None
    dead_rows: int | None = None
    seq_scans: int | None = None
    index_scans: int | None = None
    last_vacuum: Any = None


@dataclass
class IndexHealth:
    table: str
    name: str
    bytes: int
    scans: int | None = None


@dataclass
class LongTransaction:
    pid: int
    user: str | None
    application: str | None
    state: str | None
    age: timedelta
    query: str | None


@dataclass
class Health:
    engine: str
    database_bytes: int
    problems: list[str] = field(default_factory=list)  # empty when nothing needs a look
    tables: list[TableHealth] = field(default_factory=list)
    indexes: list[IndexHealth] = field(default_factory=list)
    # PostgreSQL
    cache_hit_ratio: float | None = None
    long_transactions: list[LongTransaction] = field(default_factory=list)
    # SQLite
    integrity: str | None = None
    page_size: int | None = None
    page_count: int | None = None
    freelist_count: int | None = None
    journal_mode: str | None = None
    wal_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def check(engine: "Store | Engine", *, long_after: timedelta = timedelta(minutes=5), quick: bool = False,
          min_cache_hit: float = 0.9) -> Health:
    """The health of the database. `long_after`: a transaction open longer is listed (and is a
    problem); `quick`: SQLite's quick_check instead of the full integrity check."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    if engine.dialect.name == "postgresql":
        return _postgres(engine, long_after, min_cache_hit)
    return _sqlite(engine, quick)


def _postgres(engine: Engine, long_after: timedelta, min_cache_hit: float) -> Health:
    with engine.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        hit, read = conn.execute(text(
            "SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()")).one()
        h = Health("postgresql", size)
        h.cache_hit_ratio = hit / (hit + read) if hit + read else None
        for r in conn.execute(text("""
                SELECT relname, pg_table_size(relid), pg_indexes_size(relid), n_live_tup,
                       n_dead_tup, seq_scan, idx_scan, greatest(last_vacuum, last_autovacuum)
                  FROM pg_stat_user_tables WHERE schemaname = current_schema()
                 ORDER BY pg_total_relation_size(relid) DESC, relname""")):
            h.tables.append(TableHealth(*r))
        for r in conn.execute(text("""
                SELECT relname, indexrelname, pg_relation_size(indexrelid), idx_scan
                  FROM pg_stat_user_indexes WHERE schemaname = current_schema()
                 ORDER BY pg_relation_size(indexrelid) DESC, indexrelname""")):
            h.indexes.append(IndexHealth(*r))
        for r in conn.execute(text("""
                SELECT pid, usename, application_name, state, now() - xact_start, left(query, 200)
                  FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND xact_start < now() - :age ORDER BY xact_start"""), {"age": long_after}):
            h.long_transactions.append(LongTransaction(*r))
    # A new or just-restarted database reads everything once: judge the ratio on real traffic.
    if hit + read >= WARM_BLOCKS and h.cache_hit_ratio < min_cache_hit:
        h.problems.append(f"cache hit ratio {h.cache_hit_ratio:.1%} is below {min_cache_hit:.0%}: "
                          "shared_buffers may be too small for the working set")
    for t in h.tables:
        if t.dead_rows and t.live_rows is not None and t.dead_rows > max(1000, t.live_rows // 5):
            h.problems.append(f"table {t.name}: {t.dead_rows:,} dead rows for {t.live_rows:,} live "
                              "(vacuum is behind)")
    for lt in h.long_transactions:
        h.problems.append(f"transaction of pid {lt.pid} ({lt.application or lt.user}) open for "
                          f"{lt.age} (it holds back vacuum and may hold locks)")
    return h


def _sqlite(engine: Engine, quick: bool) -> Health:
    path = engine.url.database
    with engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        integrity = "; ".join(r[0] for r in conn.exec_driver_sql(
            "PRAGMA quick_check" if quick else "PRAGMA integrity_check").fetchmany(10))
        page_size, page_count = pragma("page_size"), pragma("page_count")
        h = Health("sqlite", page_size * page_count, integrity=integrity, page_size=page_size,
                   page_count=page_count, freelist_count=pragma("freelist_count"),
                   journal_mode=pragma("journal_mode"))
        try:
            rows = conn.exec_driver_sql("""
                SELECT d.name, m.type, m.tbl_name, sum(d.pgsize) FROM dbstat d
                  JOIN sqlite_master m ON m.name = d.name GROUP BY d.name
                 ORDER BY sum(d.pgsize) DESC, d.name""").all()
        except OperationalError:  # SQLite built without the dbstat table
            rows = []
        for name, kind, table, size in rows:
            if kind == "table":
                h.tables.append(TableHealth(name, size))
            else:
                h.indexes.append(IndexHealth(table, name, size))
    wal = f"{path}-wal" if path else None
    h.wal_bytes = os.path.getsize(wal) if wal and os.path.exists(wal) else 0
    if integrity != "ok":
        h.problems.append(f"integrity check: {integrity}")
    if h.freelist_count and page_count and h.freelist_count > page_count // 4:
        h.problems.append(f"{h.freelist_count:,} of {page_count:,} pages are free (VACUUM would "
                          "give them back)")
    return h
