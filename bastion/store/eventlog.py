"""The event log as its readers see it: every event with its number in the tenant's feed, `seq`.

An event is stored with the write transaction that wrote it (`txn`) and its place in it (`pos`,
1, 2, …); the transaction's `event_commit` row, written as it commits (Scope._finish), numbers
its events `base + 1 … last`. Numbers are therefore gap-free and in commit order, and every read
of events with their numbers is here: a page after a number (`page`, `each`), one correlation
id's events (`correlated`), one entity's (`history`), and the tenant's events as its portable
export and digests carry them, each with its `seq` (`portable_rows`).

No reader joins every event to its commit and sorts the lot: `page` walks the commits in order
(UNIQUE (tenant_id, last)) and reads their events in windows of at most a few thousand numbers
by primary key, (tenant_id, txn, pos) — a commit of 850,000 events is read in slices of it. The
engines differ only in how a window's ranges reach the key (`_events_at`).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import orjson
from sqlalchemy import (BigInteger, Connection, Row, Select, and_, case, func, literal, select, true,
                        tuple_)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import ColumnElement

from bastion.store.query import Scope
from bastion.store.tables import event, event_commit, tenant

WINDOW = 5000  # numbers a window of `page` spans at most (or `limit` × 4 when that is more)
PAGE = 5000  # events `each` reads per page

# What a reader gets of an event: its columns but where it is stored, and its number.
COLUMNS = tuple(c for c in event.c if c.name not in ("txn", "pos"))
SEQ = (event_commit.c.base + event.c.pos).label("seq")
# The columns of the `event` section of a tenant's portable export (and of its digest): as
# they were when `seq` was a column (bastion.store.portable).
PORTABLE_COLUMNS = sorted([*(c.name for c in COLUMNS if c.name != "tenant_id"), "seq"])


def numbered(scope: Scope, *cols) -> Select:
    """SELECT the tenant's committed events (default: every column and `seq`) joined to their
    commits: add conditions on `event` and `event_commit`, and ORDER BY `SEQ`."""
    joined = event.join(event_commit, and_(event_commit.c.tenant_id == event.c.tenant_id,
                                           event_commit.c.txn == event.c.txn))
    return (select(*(cols or (*COLUMNS, SEQ))).select_from(joined)
            .where(scope.where(event), scope.where(event_commit)))


def last_seq(scope: Scope, conn: Connection) -> int:
    """The tenant's event counter: the number of the last event committed."""
    return conn.execute(select(tenant.c.event_seq).where(tenant.c.id == scope.tenant_id)).scalar_one()


def page(scope: Scope, conn: Connection, *, after: int, limit: int,
         where: Sequence[ColumnElement[bool]] = (),
         commits_where: ColumnElement[bool] | None = None) -> list[Row]:
    """At most `limit` events numbered after `after`, in order, that meet `where` (conditions on
    `event`) and whose commit meets `commits_where` (on `event_commit`).

    Window by window: the next commits after `cur` (by their index), as many as fill the
    window's budget of numbers (the last one in part: a commit larger than the budget is read
    in slices), then the events of exactly those positions by primary key, sorted. The budget
    starts at `limit` (a page without filters fills in one window) and grows fourfold up to
    max(4 × limit, WINDOW), so a filter that matches little costs a bounded read per window."""
    out: list[Row] = []
    cur, budget, most = after, max(1, limit), max(4 * limit, WINDOW)
    commits = [commits_where] if commits_where is not None else []
    while len(out) < limit:
        found = conn.execute(
            select(event_commit.c.txn, event_commit.c.base, event_commit.c.last)
            .where(scope.where(event_commit), event_commit.c.last > cur, *commits)
            .order_by(event_commit.c.last).limit(budget)).all()
        if not found:
            break
        spans, room = [], budget  # (txn, base, lo, hi): its events at positions lo < pos <= hi
        for txn, base, last in found:
            lo = max(base, cur) - base
            hi = min(last - base, lo + room)
            spans.append((txn, base, lo, hi))
            room -= hi - lo
            if not room:
                break
        out.extend(conn.execute(_events_at(scope, spans, where, limit - len(out))).all())
        if room:  # every commit there was is read (each fills at least one number)
            break
        txn, base, lo, hi = spans[-1]
        cur, budget = base + hi, min(most, budget * 4)
    return out


def _events_at(scope: Scope, spans: list[tuple[int, int, int, int]],
               where: Sequence[ColumnElement[bool]], limit: int) -> Select:
    """The first `limit` events of `spans` ((txn, base, lo, hi): positions lo < pos <= hi,
    numbered base + pos) meeting `where`, in order. The spans are one parameter (arrays
    unnested on PostgreSQL, a JSON array on SQLite) from which each span's events are read by a
    range of the primary key.

    PostgreSQL reads them in a LATERAL subquery per span: joined, its statistics cannot know
    that a commit's events are one narrow range of the key (a commit of 850,000 events skews
    them), and it would scan every event of the tenant into a hash instead — 200 ms for a
    window of 100 among a million. SQLite has no LATERAL, and its planner joins from the JSON
    array by key as it is."""
    if scope.postgres:
        w = func.unnest(*(literal(list(c), ARRAY(BigInteger)) for c in zip(*spans))).table_valued(
            "txn", "base", "lo", "hi").render_derived(name="w")
        per_span = (select(*COLUMNS, (w.c.base + event.c.pos).label("seq"))
                    .where(scope.where(event), event.c.txn == w.c.txn, event.c.pos > w.c.lo,
                           event.c.pos <= w.c.hi, *where)
                    .order_by(event.c.pos).limit(limit).lateral("spanned"))
        return (select(*per_span.c).select_from(w).join(per_span, true())
                .order_by(per_span.c.seq).limit(limit))
    each = func.json_each(literal(orjson.dumps(spans).decode())).table_valued("value")
    txn, base, lo, hi = (func.json_extract(each.c.value, f"$[{i}]") for i in range(4))
    seq = (base + event.c.pos).label("seq")
    on = and_(event.c.tenant_id == scope.tenant_id, event.c.txn == txn, event.c.pos > lo,
              event.c.pos <= hi)
    return (select(*COLUMNS, seq).select_from(each).join(event, on)
            .where(scope.where(event), *where).order_by(seq).limit(limit))


def each(scope: Scope, conn: Connection, *, after: int = 0,
         where: Sequence[ColumnElement[bool]] = (),
         commits_where: ColumnElement[bool] | None = None, size: int = PAGE) -> Iterator[Row]:
    """Every event after `after` that `page` would select, in order, read a page at a time."""
    while True:
        rows = page(scope, conn, after=after, limit=size, where=where, commits_where=commits_where)
        yield from rows
        if len(rows) < size:
            return
        after = rows[-1].seq


def correlation(scope: Scope, conn: Connection, correlation_id: str
                ) -> tuple[list[ColumnElement[bool]], ColumnElement[bool]] | None:
    """(where, commits_where) selecting one correlation id's events for `page` and `each`, or
    None when it has none. Its events are in few transactions, found by skipping through the
    index (tenant_id, correlation_id, txn, pos) one transaction at a time (a recursive query on
    both engines), not by reading every event of it."""
    def after_txn(prev):
        """The first transaction after `prev` with an event of this correlation id (NULL: none)."""
        if not scope.postgres:  # SQLite seeks a row comparison by its first column only
            return (select(event.c.txn).where(scope.where(event), event.c.correlation_id == correlation_id,
                                              event.c.txn > prev)
                    .order_by(event.c.txn).limit(1).scalar_subquery())
        # The next index entry after (correlation_id, prev), its txn while it is still this
        # correlation id's. A row comparison, not `correlation_id = …`: only this index yields
        # that order, so PostgreSQL cannot read the primary key in txn order instead, filtering
        # (a LIMIT 1 it misjudges when the id's events are the newest).
        return (select(case((event.c.correlation_id == correlation_id, event.c.txn)))
                .where(scope.where(event), tuple_(event.c.correlation_id, event.c.txn)
                       > tuple_(literal(correlation_id), prev))
                .order_by(event.c.correlation_id, event.c.txn).limit(1).scalar_subquery())

    txns = select(after_txn(literal(-1)).label("txn")).cte("txns", recursive=True)
    txns = txns.union_all(select(after_txn(txns.c.txn)).where(txns.c.txn.is_not(None)))
    found = conn.execute(select(txns.c.txn).where(txns.c.txn.is_not(None))).scalars().all()
    if not found:
        return None
    return [event.c.correlation_id == correlation_id], scope.id_in(event_commit.c.txn, found)


def correlated(scope: Scope, conn: Connection, correlation_id: str, *, after: int = 0,
               limit: int = 1000, where: Sequence[ColumnElement[bool]] = ()) -> list[Row]:
    """At most `limit` events of one correlation id numbered after `after`, in order, that meet
    `where`."""
    found = correlation(scope, conn, correlation_id)
    if found is None:
        return []
    mine, commits = found
    return page(scope, conn, after=after, limit=limit, where=[*mine, *where], commits_where=commits)


def history(scope: Scope, conn: Connection, entity_key: str) -> list[Row]:
    """Every event of one entity, in order (its index finds them; the few are sorted)."""
    return conn.execute(numbered(scope).where(event.c.entity_key == entity_key).order_by(SEQ)).all()


def after(scope: Scope, seq: int) -> ColumnElement[bool]:
    """A condition on `event` (its commit joined in) selecting the events numbered after `seq`,
    for an EXISTS over `event` and `event_commit` (the commits after `seq` first, by their
    index)."""
    return and_(scope.where(event_commit), event_commit.c.tenant_id == event.c.tenant_id,
                event_commit.c.txn == event.c.txn, event_commit.c.last > seq,
                event.c.pos > seq - event_commit.c.base)


def portable_rows(conn: Connection, tenant_id: int, columns: Sequence[str]) -> Iterator[tuple]:
    """The tenant's events in order, the named columns of PORTABLE_COLUMNS each: its portable
    export's `event` section and that section's digest (bastion.store.backup)."""
    scope = Scope(conn.engine, tenant_id)
    for row in each(scope, conn):
        values = row._mapping
        yield tuple(values[c] for c in columns)
