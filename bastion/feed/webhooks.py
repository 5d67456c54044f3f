"""Webhook subscriptions of a tenant and their delivery, for the CLI and the server alike.

A subscription names a URL, an event filter (`risk.*,coverage.*`; `*` is every event) and a
secret. The relay POSTs the matching events after the subscription's cursor, a batch of at most
`Policy.batch` per request, signed (bastion.feed.signing). A 2xx answer moves the cursor past the
batch; anything else (an error status, a refused connection, a timeout) is logged, and the same
batch is tried again after an exponential backoff — so every event arrives at least once, and a
receiver de-duplicates by the event id (`<tenant>:<seq>`). After `Policy.pause_after` failures
in a row the subscription is paused (an event `webhook.paused` says why), never dropped: `resume`
tries again from where it stopped, `redeliver` from any sequence.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import socket
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import urlsplit

from bastion.errors import InvalidValue
from bastion.feed.signing import HEADER, signature
from bastion.feed.wire import event_id, event_json, webhook_body
from bastion.store.feed import Delivery, Subscription

SOURCE_RELAY = "relay"
ACTOR_RELAY = "bastion-relay"
PATTERN = re.compile(r"[a-z0-9_*]+(\.[a-z0-9_*]+)*")
MIN_SECRET = 16


@dataclass(frozen=True)
class Policy:
    """How the relay delivers: batch size, request timeout, backoff, when to pause."""

    batch: int = 100
    timeout: float = 10.0  # seconds per request
    backoff_base: float = 1.0  # seconds after the first failure; doubled each further one
    backoff_cap: float = 600.0
    pause_after: int = 10  # failures in a row (about 17 minutes with the defaults)

    def backoff(self, failures: int) -> timedelta:
        return timedelta(seconds=min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1)))


@dataclass(frozen=True)
class Attempt:
    """What one POST did."""

    status_code: int | None
    ok: bool
    error: str | None
    duration_ms: int


@dataclass
class Outcome:
    """What one pass over a tenant's subscriptions did."""

    delivered: int = 0  # events delivered
    requests: int = 0
    failed: int = 0  # failed requests
    paused: list[int] = field(default_factory=list)  # subscriptions paused in this pass


def parse_events(text: str) -> tuple[str, ...]:
    """`risk.*,coverage.*` → ("risk.*", "coverage.*"); `*` alone is every event."""
    patterns = tuple(p.strip().lower() for p in (text or "").split(",") if p.strip())
    if not patterns:
        raise InvalidValue("--events needs at least one event type or pattern, e.g. 'risk.*' "
                           "(or '*' for every event)", "events")
    for p in patterns:
        if not PATTERN.fullmatch(p):
            raise InvalidValue(f"--events {p!r}: an event type such as risk.created, a pattern "
                               "such as risk.* or *.deleted, or * for every event", "events")
    return patterns


def check_url(url: str) -> str:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue(f"webhook URL {url!r}: give an http:// or https:// URL with a host", "url")
    if len(url) > 2000:
        raise InvalidValue("webhook URL longer than 2000 characters", "url")
    try:
        parts.port
    except ValueError as exc:
        raise InvalidValue(f"webhook URL {url!r}: {exc}", "url") from None
    return url


def check_public(url: str) -> None:
    """Refuse a URL whose host resolves to a loopback, private, link-local or reserved address:
    a subscription added over the API must not make the relay call services inside the network
    (BASTION_WEBHOOK_ALLOW_PRIVATE=1 allows them, e.g. for an internal ticketing system)."""
    if os.environ.get("BASTION_WEBHOOK_ALLOW_PRIVATE", "").lower() in ("1", "true", "yes"):
        return
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise InvalidValue(f"webhook URL {url!r}: its host {host!r} does not resolve", "url") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise InvalidValue(f"webhook URL {url!r}: {host} is {address}, an internal address; "
                               "set BASTION_WEBHOOK_ALLOW_PRIVATE=1 to allow internal receivers",
                               "url")


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


# -- subscriptions --------------------------------------------------------------------------------

def add(tenant, url: str, events: str, *, actor: str, source: str, secret: str | None = None,
        from_seq: int | None = None) -> tuple[Subscription, str]:
    """A new subscription and its secret (generated when not given). It delivers the events
    committed after it was added, or from sequence `from_seq` on."""
    url = check_url(url)
    patterns = parse_events(events)
    if secret is None:
        secret = new_secret()
    if len(secret) < MIN_SECRET or len(secret) > 200:
        raise InvalidValue(f"--secret: use {MIN_SECRET} to 200 characters (leave it out to get "
                           "a random one)", "secret")
    if from_seq is not None and from_seq < 1:
        raise InvalidValue("--from: event sequences start at 1", "from")
    sub = tenant.feed.add(url, ",".join(patterns), secret, actor=actor, source=source,
                          start_after=None if from_seq is None else from_seq - 1)
    return sub, secret


def list_(tenant) -> list[Subscription]:
    return tenant.feed.list()


def get(tenant, sub_id: int) -> Subscription:
    return tenant.feed.get(sub_id)


def remove(tenant, sub_id: int, *, actor: str, source: str) -> Subscription:
    return tenant.feed.remove(sub_id, actor=actor, source=source)


def resume(tenant, sub_id: int, *, actor: str, source: str) -> Subscription:
    """Activate a paused subscription: delivery goes on from its cursor at once."""
    return tenant.feed.set_state(sub_id, "active", actor=actor, source=source)


def pause(tenant, sub_id: int, *, actor: str, source: str, reason: str | None = None) -> Subscription:
    return tenant.feed.set_state(sub_id, "paused", actor=actor, source=source, reason=reason)


def redeliver(tenant, sub_id: int, from_seq: int, *, actor: str, source: str) -> Subscription:
    """Deliver again every matching event from sequence `from_seq` on (and resume the
    subscription if it was paused)."""
    if from_seq < 1:
        raise InvalidValue("--from: event sequences start at 1", "from")
    last = tenant.feed.last_seq()
    if from_seq > last + 1:
        raise InvalidValue(f"--from {from_seq}: the tenant's last event is {last}", "from")
    return tenant.feed.set_state(sub_id, "active", actor=actor, source=source,
                                 cursor=from_seq - 1, reason=f"redelivery from {from_seq}")


def deliveries(tenant, sub_id: int, limit: int = 50) -> list[Delivery]:
    return tenant.feed.deliveries(sub_id, limit)


def test(tenant, sub_id: int, *, policy: Policy = Policy()) -> Attempt:
    """POST one signed `webhook.test` event (sequence 0: no real event) and log the attempt;
    the subscription's cursor and state do not change."""
    sub = tenant.feed.get(sub_id)
    now = datetime.now(timezone.utc)
    body = webhook_body(tenant.name, sub.id, [{
        "id": event_id(tenant.name, 0), "seq": 0, "type": "webhook.test", "kind": "webhook",
        "key": f"webhook:{sub.id}", "version": None, "occurred_at": now.isoformat(),
        "actor": ACTOR_RELAY, "source": SOURCE_RELAY, "correlation_id": None, "diff": {},
        "note": "a test delivery"}])
    attempt = post(sub.url, body, tenant.feed.secret(sub_id), policy.timeout)
    tenant.feed.log_attempt(sub_id, at=now, seq_from=0, seq_to=0, events=1, attempt=1,
                            status_code=attempt.status_code, ok=attempt.ok, error=attempt.error,
                            duration_ms=attempt.duration_ms)
    return attempt


# -- delivery -------------------------------------------------------------------------------------

def post(url: str, body: bytes, secret: str, timeout: float) -> Attempt:
    """POST `body` signed with `secret`; never follows redirects (a 3xx is a failure)."""
    parts = urlsplit(url)
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json", "User-Agent": "bastion-relay",
               HEADER: signature(secret, body, int(time.time()))}
    started = time.monotonic()
    conn = conn_class(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        answer = resp.read(300)
        ms = int((time.monotonic() - started) * 1000)
        ok = 200 <= resp.status < 300
        error = None if ok else f"HTTP {resp.status} {resp.reason}: " + \
            answer.decode("utf-8", "replace").strip()[:200]
        return Attempt(resp.status, ok, error, ms)
    except (OSError, http.client.HTTPException) as exc:
        return Attempt(None, False, f"{type(exc).__name__}: {exc}"[:300],
                       int((time.monotonic() - started) * 1000))
    finally:
        conn.close()


def deliver(tenant, *, policy: Policy = Policy(), now: Callable[[], datetime] | None = None,
            max_requests: int = 100) -> Outcome:
    """One pass: every active subscription whose backoff ran out gets the matching events after
    its cursor, batch after batch, until it is caught up, fails, or `max_requests` requests were
    made for it (so one busy subscription does not starve the others)."""
    clock = now or (lambda: datetime.now(timezone.utc))
    out = Outcome()
    feed = tenant.feed
    for sub in feed.due(clock()):
        patterns = tuple(sub.events.split(","))
        secret = feed.secret(sub.id)
        cursor, failures = sub.cursor, sub.failures
        for _ in range(max_requests):
            events, upto = feed.events_after(cursor, patterns, policy.batch)
            if not events:
                if upto > cursor:
                    feed.skip_to(sub.id, cursor, upto)
                break
            at = clock()
            attempt = post(sub.url, webhook_body(tenant.name, sub.id, [event_json(tenant.name, e) for e in events]),
                           secret, policy.timeout)
            out.requests += 1
            failed = 0 if attempt.ok else failures + 1
            retry_at = None if attempt.ok else at + policy.backoff(failed)
            if not feed.record_attempt(sub.id, at=at, seq_from=events[0].seq, seq_to=events[-1].seq,
                                       events=len(events), attempt=failures + 1,
                                       status_code=attempt.status_code, ok=attempt.ok,
                                       error=attempt.error, duration_ms=attempt.duration_ms,
                                       cursor=upto if attempt.ok else None, failures=failed,
                                       next_attempt_at=retry_at, expected_cursor=cursor):
                break  # removed, paused or rewound meanwhile: the next pass sees it as it is now
            if attempt.ok:
                out.delivered += len(events)
                cursor, failures = upto, 0
                continue
            out.failed += 1
            if failed >= policy.pause_after:
                feed.set_state(sub.id, "paused", actor=ACTOR_RELAY, source=SOURCE_RELAY,
                               reason=f"{failed} failed deliveries in a row; last: {attempt.error}")
                out.paused.append(sub.id)
            break
    return out


def next_due(tenant) -> datetime | None:
    """When the earliest backoff of an active subscription runs out (None: none waits)."""
    return tenant.feed.next_attempt()
