"""Webhooks against a real HTTP receiver, on both engines: every matching event delivered once
in order and signed, retries with backoff after 500s, pause after repeated failures (never
dropped), redelivery from a sequence, the delivery log, and subscription changes as events."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import pytest

from bastion.errors import InvalidValue, NotFound
from bastion.feed import relay, webhooks
from bastion.feed.signing import signature, verify
from bastion.schema.batch import Batch

from .conftest import signature_header

SECRET = "s3cret-s3cret-s3cret"


def write(tenant, n: int, start: int = 0) -> None:
    """n assets, each with a risk: asset.created and risk.created events (and edge.added)."""
    b = Batch()
    for i in range(start, start + n):
        a = b.add("asset", identifier=f"h{i}.acme.example", criticality="high", exposure="external")
        b.add("risk", target=a, name=f"exposed-{i}", severity="high", status="open", source="test")
    tenant.apply(b, actor="tester", source="test")


def events_of(tenant, types: tuple[str, ...]) -> list[int]:
    events, _ = tenant.feed.events_after(0, (), 10000)
    return [e.seq for e in events if e.event_type.split(".")[0] in types]


def test_every_matching_event_is_delivered_once_in_order_and_signed(tenant, receiver, clock):
    sub, secret = webhooks.add(tenant, receiver.url, "risk.*, asset.*", actor="alice",
                               source="test", secret=SECRET)
    assert (sub.events, sub.state, secret) == ("risk.*,asset.*", "active", SECRET)
    write(tenant, 130)  # more than one batch of 100
    out = webhooks.deliver(tenant, now=clock)
    expected = events_of(tenant, ("risk", "asset"))
    assert len(expected) == 260
    assert receiver.delivered_seqs() == expected
    assert out.delivered == 260 and out.requests == 3 and out.failed == 0
    for r in receiver.requests:
        assert r.headers["content-type"] == "application/json"
        assert verify(SECRET, signature_header(r), r.body)
        assert not verify("another-secret-of-16", signature_header(r), r.body)
        assert not verify(SECRET, signature_header(r), r.body + b" ")
        body = r.json
        assert body["tenant"] == "default" and body["webhook"] == sub.id
        assert all(e["id"] == f"default:{e['seq']}" for e in body["events"])
    first = receiver.requests[0].json["events"][0]
    assert first["type"] in ("asset.created", "risk.created") and first["actor"] == "tester"
    # Caught up: the cursor is past the last event (edge events included, not matching).
    assert webhooks.get(tenant, sub.id).cursor == tenant.feed.last_seq()
    assert webhooks.deliver(tenant, now=clock).requests == 0
    log = webhooks.deliveries(tenant, sub.id)
    assert [(d.ok, d.status_code, d.attempt) for d in log] == [(True, 200, 1)] * 3
    assert sum(d.events for d in log) == 260


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    import hashlib
    import hmac

    body = b'{"a":1}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("k" * 16, body, 1700000000) == f"t=1700000000,v1={expected}"
    assert verify("k" * 16, f"t=1700000000,v1={expected}", body, now=1700000100)
    assert not verify("k" * 16, f"t=1700000000,v1={expected}", body, now=1700001000)  # too old
    assert not verify("k" * 16, "v1=" + expected, body)


def test_retries_after_500s_with_exponential_backoff(tenant, receiver, clock):
    sub, _ = webhooks.add(tenant, receiver.url, "risk.*", actor="alice", source="test", secret=SECRET)
    write(tenant, 3)
    receiver.statuses = [500, 503]
    policy = webhooks.Policy(backoff_base=10, pause_after=5)
    assert webhooks.deliver(tenant, policy=policy, now=clock).failed == 1
    s = webhooks.get(tenant, sub.id)
    assert (s.failures, s.next_attempt_at, s.state) == (1, clock.now + timedelta(seconds=10), "active")
    assert s.last_error.startswith("HTTP 500")
    clock.advance(9)  # the backoff has not run out: no request
    assert webhooks.deliver(tenant, policy=policy, now=clock).requests == 0
    clock.advance(1)
    assert webhooks.deliver(tenant, policy=policy, now=clock).failed == 1
    assert webhooks.get(tenant, sub.id).next_attempt_at == clock.now + timedelta(seconds=20)
    clock.advance(20)
    out = webhooks.deliver(tenant, policy=policy, now=clock)
    assert (out.delivered, out.failed) == (3, 0)
    # The same batch each time; delivered once it was accepted.
    assert [r.seqs for r in receiver.requests] == [events_of(tenant, ("risk",))] * 3
    assert receiver.delivered_seqs() == events_of(tenant, ("risk",))
    log = webhooks.deliveries(tenant, sub.id)
    assert [(d.attempt, d.status_code, d.ok) for d in reversed(log)] == [(1, 500, False), (2, 503, False),
                                                                         (3, 200, True)]
    s = webhooks.get(tenant, sub.id)
    assert (s.failures, s.next_attempt_at, s.last_error) == (0, None, None)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_subscription_that_keeps_failing_is_paused_never_dropped(tenant, receiver, clock):
    sub, _ = webhooks.add(tenant, receiver.url, "*", actor="alice", source="test", secret=SECRET)
    dead, _ = webhooks.add(tenant, f"http://127.0.0.1:{_closed_port()}/gone", "risk.*",
                           actor="alice", source="test", secret=SECRET)
    write(tenant, 2)
    receiver.always = 500
    policy = webhooks.Policy(backoff_base=1, pause_after=3)
    paused = []
    for _ in range(6):
        paused += webhooks.deliver(tenant, policy=policy, now=clock).paused
        clock.advance(3600)
    assert sorted(paused) == [sub.id, dead.id]
    assert len(receiver.requests) == 3  # nothing after the pause
    for s in webhooks.list_(tenant):
        assert (s.state, s.failures) == ("paused", 3) and s.paused_at is not None
    refused = webhooks.get(tenant, dead.id)
    assert refused.last_error.startswith("ConnectionRefusedError")
    assert [d.status_code for d in webhooks.deliveries(tenant, dead.id)] == [None] * 3
    pause_events = [e for e in tenant.feed.events_after(0, ("webhook.paused",))[0]]
    assert [e.entity_key for e in pause_events] == [f"webhook:{sub.id}", f"webhook:{dead.id}"]
    assert pause_events[0].actor == webhooks.ACTOR_RELAY
    assert "3 failed deliveries in a row; last: HTTP 500" in pause_events[0].note
    # Resumed once the receiver is fixed: everything since the pause arrives, nothing was lost.
    receiver.always = None
    webhooks.resume(tenant, sub.id, actor="alice", source="test")
    write(tenant, 1, start=10)
    webhooks.deliver(tenant, policy=policy, now=clock)
    assert receiver.delivered_seqs() == list(range(sub.cursor + 1, tenant.feed.last_seq() + 1))
    assert webhooks.get(tenant, sub.id).cursor == tenant.feed.last_seq()


def test_redelivery_from_a_sequence(tenant, receiver, clock):
    sub, _ = webhooks.add(tenant, receiver.url, "asset.*", actor="alice", source="test", secret=SECRET)
    write(tenant, 5)
    webhooks.deliver(tenant, now=clock)
    assets = events_of(tenant, ("asset",))
    assert receiver.delivered_seqs() == assets
    rewound = webhooks.redeliver(tenant, sub.id, assets[2], actor="bob", source="test")
    assert rewound.cursor == assets[2] - 1
    event = tenant.feed.events_after(0, ("webhook.rewound",))[0][-1]
    assert (event.actor, event.diff["cursor"][1]) == ("bob", assets[2] - 1)
    webhooks.deliver(tenant, now=clock)
    assert receiver.delivered_seqs() == assets + assets[2:]
    with pytest.raises(InvalidValue, match="the tenant's last event is"):
        webhooks.redeliver(tenant, sub.id, 10_000, actor="bob", source="test")


def test_a_new_subscription_can_start_from_an_old_sequence(tenant, receiver, clock):
    write(tenant, 2)
    webhooks.add(tenant, receiver.url, "risk.*", actor="alice", source="test", secret=SECRET, from_seq=1)
    webhooks.deliver(tenant, now=clock)
    assert receiver.delivered_seqs() == events_of(tenant, ("risk",))


def test_test_delivery_is_signed_logged_and_moves_nothing(tenant, receiver):
    sub, secret = webhooks.add(tenant, receiver.url, "risk.*", actor="alice", source="test")
    assert secret.startswith("whsec_")
    attempt = webhooks.test(tenant, sub.id)
    assert (attempt.ok, attempt.status_code) == (True, 200)
    (r,) = receiver.requests
    assert r.json["events"][0]["type"] == "webhook.test" and r.json["events"][0]["seq"] == 0
    assert verify(secret, signature_header(r), r.body)
    receiver.always = 404
    assert webhooks.test(tenant, sub.id).error.startswith("HTTP 404")
    assert [(d.seq_from, d.ok) for d in webhooks.deliveries(tenant, sub.id)] == [(0, False), (0, True)]
    assert webhooks.get(tenant, sub.id) == sub


def test_subscription_changes_are_events_and_removal_deletes_the_log(tenant, receiver, clock):
    sub, _ = webhooks.add(tenant, receiver.url, "risk.*", actor="alice", source="test", secret=SECRET)
    write(tenant, 1)
    webhooks.deliver(tenant, now=clock)
    webhooks.pause(tenant, sub.id, actor="alice", source="test", reason="maintenance")
    webhooks.resume(tenant, sub.id, actor="alice", source="test")
    removed = webhooks.remove(tenant, sub.id, actor="carol", source="test")
    assert removed.id == sub.id
    events = tenant.feed.events_after(0, ("webhook.*",))[0]
    assert [(e.event_type, e.actor) for e in events] == [
        ("webhook.added", "alice"), ("webhook.paused", "alice"), ("webhook.resumed", "alice"),
        ("webhook.removed", "carol")]
    assert SECRET not in repr([e.diff for e in events])  # the secret is never in the log
    assert events[0].diff["url"] == [None, receiver.url]
    with pytest.raises(NotFound, match="no webhook subscription with id"):
        webhooks.deliveries(tenant, sub.id)
    assert webhooks.list_(tenant) == []


@pytest.mark.parametrize("url, events, secret, message", [
    ("ftp://x.example/h", "risk.*", SECRET, "give an http:// or https:// URL"),
    ("http:///nohost", "risk.*", SECRET, "give an http:// or https:// URL"),
    ("http://x.example:99999/", "risk.*", SECRET, "out of range"),
    ("http://x.example/", "", SECRET, "at least one event type"),
    ("http://x.example/", "risk.*,Risk created", SECRET, "'risk created'"),
    ("http://x.example/", "risk.*", "short", "16 to 200 characters"),
])
def test_bad_subscriptions_are_refused_with_the_reason(tenant, url, events, secret, message):
    with pytest.raises(InvalidValue, match=message):
        webhooks.add(tenant, url, events, actor="alice", source="test", secret=secret)
    assert webhooks.list_(tenant) == []


def test_filters_match_patterns_only(tenant):
    write(tenant, 1)
    types = {e.event_type for e in tenant.feed.events_after(0, ("*.created",))[0]}
    assert types == {"asset.created", "risk.created"}
    assert tenant.feed.events_after(0, ("risk_created",))[0] == []  # `_` is no wildcard
    assert {e.event_type for e in tenant.feed.events_after(0, ("edge.*",))[0]} == {"edge.added"}


def test_the_relay_delivers_webhooks_of_every_tenant(store, receiver):
    tenants = [store.ensure_tenant(n) and store.tenant(n) for n in ("one", "two")]
    for t in tenants:
        webhooks.add(t, receiver.url, "asset.*", actor="alice", source="test", secret=SECRET)
        write(t, 2)
    totals = asyncio.run(relay.run(store, once=True))
    assert totals.delivered == 4
    got = {(r.json["tenant"], s) for r in receiver.requests for s in r.seqs}
    assert got == {(t.name, s) for t in tenants for s in events_of(t, ("asset",))}
    lag = relay.lag(store)
    assert all(v == 0 for row in lag.values() for v in row.values())
