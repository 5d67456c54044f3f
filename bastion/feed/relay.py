"""`bastion relay`: delivers the event log to webhooks and (with a NATS URL) to JetStream.

Each pass goes over tenants: JetStream first (every event after the tenant's cursor), then the
webhook subscriptions that are due. Between passes the relay waits: on PostgreSQL for the NOTIFY
a commit of new events sends (revision 0011), at most `wake` seconds so backoffs run out on
time; on SQLite it polls every `poll` seconds. `once` makes passes until one finds nothing to
do, then returns (subscriptions waiting out a backoff are left for the next run).

Nothing here needs the relay to stop cleanly: every cursor moves only past what was delivered
and is committed right after, so a relay killed at any moment resumes where it stood.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from bastion.feed import webhooks
from bastion.feed.jetstream import DEFAULT_STREAM, JetStreamSink
from bastion.store.feed import listener


@dataclass
class Totals:
    passes: int = 0
    published: int = 0  # events acknowledged by JetStream
    delivered: int = 0  # events delivered to webhooks
    requests: int = 0
    failed: int = 0
    paused: list[tuple[str, int]] = field(default_factory=list)  # (tenant, subscription)


async def run(store, *, nats_url: str | None = None, stream: str = DEFAULT_STREAM,
              once: bool = False, policy: webhooks.Policy = webhooks.Policy(),
              poll: float = 1.0, wake: float = 5.0, stop: asyncio.Event | None = None,
              on_pass: Callable[[Totals], None] | None = None) -> Totals:
    """Relay until `stop` is set (or SIGTERM/SIGINT), or with `once` until nothing is pending."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    sink = JetStreamSink(nats_url, stream) if nats_url else None
    totals = Totals()
    wait = listener(store)
    try:
        if sink is not None:
            await sink.connect()
        woken: set[int | None] = {None}
        while not stop.is_set():
            busy = await _pass(store, sink, policy, woken, totals)
            totals.passes += 1
            if on_pass is not None:
                on_pass(totals)
            if once:
                if not busy:
                    break
                woken = {None}
                continue
            if busy:
                woken = {None}
                continue
            woken = await _wait(store, wait, poll, wake, stop)
    finally:
        wait.close()
        if sink is not None:
            await sink.close()
    return totals


async def _pass(store, sink, policy, woken: set[int | None], totals: Totals) -> bool:
    """One pass over the woken tenants (None: all); whether anything was delivered."""
    busy = False
    for t in store.tenants():
        if None not in woken and t.id not in woken:
            continue
        tenant = store.tenant_by_id(t.id, t.name)
        if sink is not None:
            n = await sink.publish_pending(tenant)
            totals.published += n
            busy |= n > 0
        out = await asyncio.to_thread(webhooks.deliver, tenant, policy=policy)
        totals.delivered += out.delivered
        totals.requests += out.requests
        totals.failed += out.failed
        totals.paused.extend((t.name, sub_id) for sub_id in out.paused)
        busy |= out.delivered > 0
    return busy


async def _wait(store, wait, poll: float, wake: float, stop: asyncio.Event) -> set[int | None]:
    """Tenants to look at next: those notified, or all once the wait ran out. Waits in slices
    of at most a second, so that a stop is seen soon."""
    timeout = wake if wait.listening else poll
    soonest = _soonest_retry(store)
    if soonest is not None:
        timeout = max(0.0, min(timeout, (soonest - datetime.now(timezone.utc)).total_seconds()))
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return {None}
        notified = await asyncio.to_thread(wait.wait, min(left, 1.0))
        if notified:
            return notified
    return set()


def _soonest_retry(store) -> datetime | None:
    times = [t for t in (webhooks.next_due(store.tenant_by_id(x.id, x.name)) for x in store.tenants())
             if t is not None]
    return min(times) if times else None


def lag(store) -> dict[str, dict[str, int]]:
    """Per tenant: the events after each relay sink's cursor (`nats:<stream>`, once a relay
    published there) and after each webhook subscription's (`webhook:<id>`, matching or not)."""
    out: dict[str, dict[str, int]] = {}
    for t in store.tenants():
        feed = store.tenant_by_id(t.id, t.name).feed
        last = feed.last_seq()
        row = {sink: last - seq for sink, seq in feed.cursors().items()}
        row.update({f"webhook:{s.id}": last - s.cursor for s in feed.list()})
        out[t.name] = row
    return out
