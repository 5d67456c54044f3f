"""The change feed's storage: webhook subscriptions and their delivery log, the relay's cursors,
the events after a sequence that match a filter, and (PostgreSQL) waiting for the NOTIFY a
commit of new events sends (revision 0011).

Changes to a subscription (added, removed, paused, resumed, rewound for redelivery) are events
with their actor, filed under `webhook:<id>`. Deliveries and cursor moves are bookkeeping of the
feed, not changes of the tenant's data: were they events, each delivery would make another event
to deliver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from sqlalchemy import Engine, delete, func, or_, select, update

from bastion.errors import NotFound
from bastion.store import eventlog, writer
from bastion.store.query import Scope
from bastion.store.store import Event, _event
from bastion.store.tables import event, relay_cursor, webhook, webhook_delivery

NOTIFY_CHANNEL = "bastion_event"  # revision 0011's trigger
KEEP_DELIVERIES = 1000  # delivery log rows kept per subscription (the newest)


@dataclass(frozen=True)
class Subscription:
    """A webhook subscription (its secret is listed only by `secret()`)."""

    id: int
    url: str
    events: str
    state: str
    cursor: int  # last event sequence handled
    failures: int  # consecutive failed attempts
    next_attempt_at: datetime | None
    last_error: str | None
    paused_at: datetime | None
    created_at: datetime
    created_by: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver events seq_from..seq_to to a subscription."""

    id: int
    attempted_at: datetime
    seq_from: int
    seq_to: int
    events: int
    attempt: int
    status_code: int | None
    ok: bool
    error: str | None
    duration_ms: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _subscription(row) -> Subscription:
    return Subscription(row.id, row.url, row.events, row.state, row.cursor, row.failures,
                        row.next_attempt_at, row.last_error, row.paused_at, row.created_at,
                        row.created_by)


def _like(pattern: str) -> str:
    """An event filter pattern (`risk.*`, `*`, `risk.created`) as a LIKE pattern (escape `\\`)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _matching(patterns: Sequence[str]):
    if not patterns or "*" in patterns:
        return None
    return or_(*(event.c.event_type.like(_like(p), escape="\\") for p in patterns))


class Feed:
    """One tenant's subscriptions, delivery log and relay cursors (`tenant.feed`)."""

    def __init__(self, scope: Scope):
        self.scope = scope

    # -- subscriptions ------------------------------------------------------------------------

    def add(self, url: str, events: str, secret: str, *, actor: str, source: str,
            start_after: int | None = None, correlation_id: str | None = None) -> Subscription:
        """A new active subscription, delivering the events after `start_after` (default: the
        events from now on)."""
        now = datetime.now(timezone.utc)
        with self.scope.transaction(write=True) as conn:
            # The tenant's write lock first: subscriptions are numbered under it.
            self.scope.hold_writes(conn)
            cursor = eventlog.last_seq(self.scope, conn) if start_after is None else start_after
            sub_id = conn.execute(select(func.coalesce(func.max(webhook.c.id), 0) + 1)
                                  .where(self.scope.where(webhook))).scalar_one()
            conn.execute(webhook.insert().values(
                tenant_id=self.scope.tenant_id, id=sub_id, url=url, events=events, secret=secret,
                state="active", cursor=cursor, failures=0, created_at=now, created_by=actor))
            writer.record_event(self.scope, conn, key=f"webhook:{sub_id}", kind="webhook",
                                event_type="webhook.added",
                                diff={"url": [None, url], "events": [None, events],
                                      "cursor": [None, cursor]},
                                actor=actor, source=source, at=now, correlation_id=correlation_id)
        return self.get(sub_id)

    def list(self) -> list[Subscription]:
        with self.scope.transaction() as conn:
            return [_subscription(r) for r in conn.execute(
                select(webhook).where(self.scope.where(webhook)).order_by(webhook.c.id))]

    def get(self, sub_id: int) -> Subscription:
        with self.scope.transaction() as conn:
            return _subscription(self._row(conn, sub_id))

    def secret(self, sub_id: int) -> str:
        with self.scope.transaction() as conn:
            return self._row(conn, sub_id).secret

    def _row(self, conn, sub_id: int):
        row = conn.execute(select(webhook).where(self.scope.where(webhook),
                                                 webhook.c.id == sub_id)).first()
        if row is None:
            raise NotFound(f"no webhook subscription with id {sub_id} (see `bastion webhook list`)")
        return row

    def remove(self, sub_id: int, *, actor: str, source: str,
               correlation_id: str | None = None) -> Subscription:
        """Delete the subscription and its delivery log (an event keeps what it was)."""
        with self.scope.transaction(write=True) as conn:
            self.scope.hold_writes(conn)
            sub = _subscription(self._row(conn, sub_id))
            conn.execute(delete(webhook).where(self.scope.where(webhook), webhook.c.id == sub_id))
            writer.record_event(self.scope, conn, key=f"webhook:{sub_id}", kind="webhook",
                                event_type="webhook.removed",
                                diff={"url": [sub.url, None], "events": [sub.events, None],
                                      "state": [sub.state, None]},
                                actor=actor, source=source, correlation_id=correlation_id)
        return sub

    def set_state(self, sub_id: int, state: str, *, actor: str, source: str,
                  reason: str | None = None, cursor: int | None = None,
                  correlation_id: str | None = None) -> Subscription:
        """Pause or resume (`state`), optionally moving the cursor (redelivery): one event
        `webhook.paused` / `webhook.resumed` / `webhook.rewound` with what changed. Resuming
        clears the failure count and the backoff."""
        now = datetime.now(timezone.utc)
        with self.scope.transaction(write=True) as conn:
            self.scope.hold_writes(conn)
            old = _subscription(self._row(conn, sub_id))
            values: dict = {"state": state}
            diff: dict = {}
            if state != old.state:
                diff["state"] = [old.state, state]
            if state == "paused" and old.state != "paused":
                values["paused_at"] = now
            if state == "active":
                values.update(failures=0, next_attempt_at=None, paused_at=None)
            if cursor is not None and cursor != old.cursor:
                values["cursor"] = cursor
                diff["cursor"] = [old.cursor, cursor]
            if not diff:
                return old
            conn.execute(update(webhook).where(self.scope.where(webhook), webhook.c.id == sub_id)
                         .values(**values))
            kind = ("webhook.rewound" if "cursor" in diff else
                    "webhook.paused" if state == "paused" else "webhook.resumed")
            writer.record_event(self.scope, conn, key=f"webhook:{sub_id}", kind="webhook",
                                event_type=kind, diff=diff, note=reason, actor=actor,
                                source=source, at=now, correlation_id=correlation_id)
            return _subscription(self._row(conn, sub_id))

    def due(self, now: datetime) -> list[Subscription]:
        """Active subscriptions whose backoff (if any) has run out."""
        with self.scope.transaction() as conn:
            return [_subscription(r) for r in conn.execute(
                select(webhook).where(self.scope.where(webhook), webhook.c.state == "active",
                                      or_(webhook.c.next_attempt_at.is_(None),
                                          webhook.c.next_attempt_at <= now))
                .order_by(webhook.c.id))]

    def next_attempt(self) -> datetime | None:
        """The earliest instant an active subscription in backoff may be tried again."""
        with self.scope.transaction() as conn:
            return conn.execute(select(func.min(webhook.c.next_attempt_at)).where(
                self.scope.where(webhook), webhook.c.state == "active")).scalar()

    # -- the delivery log ---------------------------------------------------------------------

    def record_attempt(self, sub_id: int, *, at: datetime, seq_from: int, seq_to: int,
                       events: int, attempt: int, status_code: int | None, ok: bool,
                       error: str | None, duration_ms: int, cursor: int | None,
                       failures: int, next_attempt_at: datetime | None,
                       expected_cursor: int) -> bool:
        """Log one attempt and move the subscription on in one transaction: the cursor (when
        delivered), the failure count and the backoff. False (nothing written) when the
        subscription was removed, paused or rewound meanwhile."""
        with self.scope.transaction(write=True) as conn:
            moved = conn.execute(
                update(webhook).where(self.scope.where(webhook), webhook.c.id == sub_id,
                                      webhook.c.state == "active", webhook.c.cursor == expected_cursor)
                .values(cursor=expected_cursor if cursor is None else cursor, failures=failures,
                        next_attempt_at=next_attempt_at,
                        last_error=None if ok else error)).rowcount
            if not moved:
                return False
            self._log(conn, sub_id, at=at, seq_from=seq_from, seq_to=seq_to, events=events,
                      attempt=attempt, status_code=status_code, ok=ok, error=error,
                      duration_ms=duration_ms)
        return True

    def log_attempt(self, sub_id: int, **attempt) -> None:
        """Log an attempt that moves nothing (a test delivery)."""
        with self.scope.transaction(write=True) as conn:
            self._row(conn, sub_id)
            self._log(conn, sub_id, **attempt)

    def _log(self, conn, sub_id: int, *, at: datetime, **attempt) -> None:
        next_id = conn.execute(
            select(func.coalesce(func.max(webhook_delivery.c.id), 0) + 1)
            .where(self.scope.where(webhook_delivery), webhook_delivery.c.webhook_id == sub_id)
        ).scalar_one()
        conn.execute(webhook_delivery.insert().values(
            tenant_id=self.scope.tenant_id, webhook_id=sub_id, id=next_id, attempted_at=at,
            **attempt))
        if next_id > KEEP_DELIVERIES:
            conn.execute(delete(webhook_delivery).where(
                self.scope.where(webhook_delivery), webhook_delivery.c.webhook_id == sub_id,
                webhook_delivery.c.id <= next_id - KEEP_DELIVERIES))

    def skip_to(self, sub_id: int, expected_cursor: int, cursor: int) -> bool:
        """Move an active subscription's cursor over events its filter does not match."""
        with self.scope.transaction(write=True) as conn:
            return bool(conn.execute(
                update(webhook).where(self.scope.where(webhook), webhook.c.id == sub_id,
                                      webhook.c.state == "active", webhook.c.cursor == expected_cursor)
                .values(cursor=cursor)).rowcount)

    def deliveries(self, sub_id: int, limit: int = 50) -> list[Delivery]:
        """The newest attempts first."""
        with self.scope.transaction() as conn:
            self._row(conn, sub_id)
            rows = conn.execute(
                select(webhook_delivery).where(self.scope.where(webhook_delivery),
                                               webhook_delivery.c.webhook_id == sub_id)
                .order_by(webhook_delivery.c.id.desc()).limit(limit))
            return [Delivery(r.id, r.attempted_at, r.seq_from, r.seq_to, r.events, r.attempt,
                             r.status_code, r.ok, r.error, r.duration_ms) for r in rows]

    # -- the event log ------------------------------------------------------------------------

    def last_seq(self) -> int:
        """The last committed event's sequence (events are numbered as they commit, so what is
        visible is always 1..n)."""
        with self.scope.transaction() as conn:
            return eventlog.last_seq(self.scope, conn)

    def events_after(self, after_seq: int, patterns: Sequence[str] = (), limit: int = 100
                     ) -> tuple[list[Event], int]:
        """At most `limit` events after `after_seq` whose type matches one of `patterns` (none
        or `*`: all), and the sequence up to which the log was read: the last event returned
        when `limit` were found, else the last event there was when the read began."""
        cond = _matching(patterns)
        with self.scope.transaction() as conn:
            # The counter before the events: on PostgreSQL each statement sees the commits made
            # before it, so the events read after it include every one up to it.
            top = eventlog.last_seq(self.scope, conn)
            rows = [_event(r) for r in eventlog.page(self.scope, conn, after=after_seq, limit=limit,
                                                     where=[cond] if cond is not None else [])]
        if len(rows) == limit:
            return rows, rows[-1].seq
        return rows, max(top, after_seq, rows[-1].seq if rows else 0)

    # -- relay cursors ------------------------------------------------------------------------

    def cursor(self, sink: str) -> int:
        with self.scope.transaction() as conn:
            return conn.execute(select(relay_cursor.c.seq).where(
                self.scope.where(relay_cursor), relay_cursor.c.sink == sink)).scalar() or 0

    def cursors(self) -> dict[str, int]:
        """Every sink's cursor of the tenant."""
        with self.scope.transaction() as conn:
            return dict(conn.execute(select(relay_cursor.c.sink, relay_cursor.c.seq).where(
                self.scope.where(relay_cursor)).order_by(relay_cursor.c.sink)).all())

    def set_cursor(self, sink: str, seq: int) -> None:
        now = datetime.now(timezone.utc)
        with self.scope.transaction(write=True) as conn:
            if not conn.execute(update(relay_cursor).where(
                    self.scope.where(relay_cursor), relay_cursor.c.sink == sink)
                    .values(seq=seq, updated_at=now)).rowcount:
                conn.execute(relay_cursor.insert().values(tenant_id=self.scope.tenant_id,
                                                          sink=sink, seq=seq, updated_at=now))


class Listener:
    """PostgreSQL: a connection of its own that LISTENs for the NOTIFY revision 0011's trigger
    sends when a transaction appending events commits. SQLite has no such thing: `wait` sleeps
    the poll interval."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._raw = None
        if engine.dialect.name == "postgresql":
            self._raw = engine.raw_connection()
            driver = self._raw.driver_connection
            driver.autocommit = True
            driver.execute(f"LISTEN {NOTIFY_CHANNEL}")

    @property
    def listening(self) -> bool:
        return self._raw is not None

    def wait(self, timeout: float) -> set[int | None]:
        """Tenant ids notified within `timeout` seconds (None: a transaction bound to no tenant,
        look at every tenant); empty when nothing came (SQLite: after sleeping `timeout`)."""
        if self._raw is None:
            time.sleep(timeout)
            return set()
        driver = self._raw.driver_connection
        out: set[int | None] = set()
        for note in driver.notifies(timeout=timeout, stop_after=1):
            out.add(int(note.payload) if note.payload else None)
        # Whatever else arrived meanwhile, without waiting.
        for note in driver.notifies(timeout=0):
            out.add(int(note.payload) if note.payload else None)
        return out

    def close(self) -> None:
        if self._raw is not None:
            self._raw.invalidate()  # closed, not returned to the pool still listening
            self._raw = None


def listener(store) -> Listener:
    """A Listener on the store's database (`bastion relay` waits with it)."""
    return Listener(store.engine)
