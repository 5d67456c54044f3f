"""The relay against a real NATS server with JetStream, on both engines: every event in the
stream once, under `bastion.<tenant>.<kind>.<event_type>` with the id `<tenant>:<seq>`; a restart
resumes after what the stream already holds; PostgreSQL wakes the relay by NOTIFY, SQLite polls;
and a relay killed with SIGKILL at random moments while events are written loses nothing and
stores nothing twice."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from bastion.errors import ConfigError
from bastion.feed import relay
from bastion.schema.batch import Batch
from bastion.store.feed import listener

from .conftest import stream_messages, unique_tenant

FULL = os.environ.get("BASTION_RELIABILITY_FULL") == "1"
DEADLINE = 60.0  # seconds: a failure bound for what should take well under one, never a measure


def write(tenant, n: int, start: int = 0) -> None:
    b = Batch()
    for i in range(start, start + n):
        a = b.add("asset", identifier=f"h{i}.acme.example", criticality="low", exposure="internal")
        b.add("risk", target=a, name=f"weak-{i}", severity="low", status="open", source="test")
    tenant.apply(b, actor="tester", source="test")


def all_events(tenant):
    return tenant.feed.events_after(0, (), 1_000_000)[0]


def check_stream(nats_url: str, tenant) -> list:
    """The stream holds each of the tenant's events exactly once, in order, as published."""
    messages = asyncio.run(stream_messages(nats_url, tenant.name))
    events = all_events(tenant)
    ids = [m.headers["Nats-Msg-Id"] for m in messages]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert ids == [f"{tenant.name}:{e.seq}" for e in events], "an event is missing or out of order"
    for m, e in zip(messages, events):
        assert m.subject == f"bastion.{tenant.name}.{e.entity_kind}.{e.event_type}"
        body = json.loads(m.data)
        assert (body["tenant"], body["seq"], body["type"], body["key"]) == \
            (tenant.name, e.seq, e.event_type, e.entity_key)
    return messages


@pytest.fixture
def named(store):
    name = unique_tenant()
    store.add_tenant(name)
    return store.tenant(name)


def test_every_event_is_published_once_with_its_subject_and_id(store, named, nats_url):
    write(named, 40)
    totals = asyncio.run(relay.run(store, nats_url=nats_url, once=True))
    assert totals.published == len(all_events(named)) == 120  # asset, risk, edge each
    messages = check_stream(nats_url, named)
    assert {m.subject.split(".", 2)[2] for m in messages} == {
        "asset.asset.created", "risk.risk.created", "edge.edge.added"}
    assert named.feed.cursors() == {"nats:BASTION": 120}
    # Again: nothing new, nothing published; then only what is new.
    assert asyncio.run(relay.run(store, nats_url=nats_url, once=True)).published == 0
    write(named, 5, start=100)
    assert asyncio.run(relay.run(store, nats_url=nats_url, once=True)).published == 15
    check_stream(nats_url, named)
    assert relay.lag(store)[named.name]["nats:BASTION"] == 0


def test_a_cursor_behind_the_stream_resumes_after_the_stream(store, named, nats_url):
    """A relay killed after the server acknowledged a batch but before its cursor committed."""
    write(named, 10)
    asyncio.run(relay.run(store, nats_url=nats_url, once=True))
    named.feed.set_cursor("nats:BASTION", 7)
    write(named, 2, start=50)
    totals = asyncio.run(relay.run(store, nats_url=nats_url, once=True))
    assert totals.published == 6  # only the new events: 31..36
    check_stream(nats_url, named)


def test_an_unreachable_nats_or_a_foreign_stream_is_one_clear_error(store, named, nats_url):
    asyncio.run(relay.run(store, nats_url=nats_url, once=True))  # the stream BASTION exists
    with pytest.raises(ConfigError, match="cannot connect to NATS at nats://127.0.0.1:1"):
        asyncio.run(relay.run(store, nats_url="nats://127.0.0.1:1", once=True))
    with pytest.raises(ConfigError, match="already takes bastion.>: relay to it with --stream BASTION"):
        asyncio.run(relay.run(store, nats_url=nats_url, stream="OTHER", once=True))


def test_the_relay_is_woken_by_new_events(store, named, nats_url, engine_name):
    """PostgreSQL: by the NOTIFY of the commit (the relay would otherwise sleep an hour);
    SQLite: by polling."""
    write(named, 1)

    async def scenario():
        stop = asyncio.Event()
        passes = []
        task = asyncio.create_task(relay.run(store, nats_url=nats_url, poll=0.05, wake=3600,
                                             stop=stop, on_pass=lambda t: passes.append(t.published)))
        deadline = time.monotonic() + DEADLINE
        while not passes or passes[-1] < 3:  # the first pass published the backlog
            assert time.monotonic() < deadline, "the relay never published the backlog"
            await asyncio.sleep(0.02)
        await asyncio.to_thread(write, named, 2, 10)
        while passes[-1] < 9:
            assert time.monotonic() < deadline, "the relay was not woken by the new events"
            await asyncio.sleep(0.02)
        stop.set()
        return await task

    totals = asyncio.run(scenario())
    assert totals.published == 9
    check_stream(nats_url, named)


def test_postgres_listener_is_notified_at_commit_with_the_tenant(store, named, engine_name):
    wait = listener(store)
    try:
        if engine_name == "sqlite":
            assert not wait.listening and wait.wait(0.01) == set()
            return
        assert wait.listening
        assert wait.wait(0.01) == set()
        with named.writing(actor="tester", source="test") as session:
            b = Batch()
            b.add("asset", identifier="n.acme.example")
            session.apply(b)
            assert wait.wait(0.05) == set()  # not before the commit
        assert wait.wait(DEADLINE) == {named.tenant_id}
    finally:
        wait.close()


def _writer(tenant, batches: int, stop: threading.Event) -> None:
    for i in range(batches):
        if stop.is_set():
            return
        write(tenant, 10, start=i * 10)


def test_sigkill_at_random_moments_loses_nothing_and_publishes_nothing_twice(
        store, named, nats_url, database_url, tmp_path):
    rng = random.Random(15)
    kills = 12 if FULL else 4
    write(named, 400)  # a backlog of 1200 events, so that kills land in the middle of publishing
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(named, 40 if FULL else 15, stop))
    writer.start()
    env = {**os.environ, "BASTION_HOME": str(tmp_path / "home"), "BASTION_ACTOR": "relay-test"}
    argv = [sys.executable, "-m", "bastion.cli.main", "--db", database_url, "relay",
            "--nats", nats_url, "--poll", "0.05"]
    published_before = []
    try:
        for i in range(kills):
            before = named.feed.cursors().get("nats:BASTION", 0)
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if i % 2:  # anywhere, starting up included
                time.sleep(rng.uniform(0.05, 1.5))
            else:  # once it publishes: in the middle of a batch, or between two
                deadline = time.monotonic() + DEADLINE
                while named.feed.cursors().get("nats:BASTION", 0) == before < named.feed.last_seq():
                    if time.monotonic() > deadline or proc.poll() is not None:
                        proc.kill()
                        pytest.fail(f"the relay published nothing: {proc.communicate()[1].decode()}")
                    time.sleep(0.01)
                time.sleep(rng.uniform(0, 0.2))
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=DEADLINE)
            assert proc.returncode == -signal.SIGKILL, err.decode()
            published_before.append(named.feed.cursors().get("nats:BASTION", 0))
    finally:
        stop.set()
        writer.join()
    done = subprocess.run([*argv[:-2], "--once", "--json"], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert published_before[-1] > 0  # the killed relays were publishing
    check_stream(nats_url, named)
    assert named.feed.cursors()["nats:BASTION"] == named.feed.last_seq()
