"""Fixtures of the change feed's tests: a real HTTP receiver in a thread, and a real NATS server
with JetStream (BASTION_TEST_NATS_URL, else the one on 127.0.0.1:4222, else `nats-server -js`
started on a free port; scripts/ensure-nats installs it for `make test`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bastion.feed.signing import HEADER


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.json["events"]]


@dataclass
class Receiver:
    """Answers each POST with the next status of `statuses` (then 200) and keeps every request."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    always: int | None = None  # answer every request with this status

    def next_status(self) -> int:
        if self.always is not None:
            return self.always
        return self.statuses.pop(0) if self.statuses else 200

    def delivered_seqs(self) -> list[int]:
        """Sequences of the events in the requests answered 2xx, in arrival order."""
        return [s for r in self.requests if r.headers.get("x-answered") == "200" for s in r.seqs]


@pytest.fixture
def receiver():
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rec: Receiver = state["receiver"]
            status = rec.next_status()
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["x-answered"] = str(status)
            rec.requests.append(Received(self.path, headers, body))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no" if status >= 300 else b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Receiver(f"http://127.0.0.1:{server.server_port}/hook")
    state["receiver"] = rec
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


class Clock:
    """A clock the tests move: backoffs run out without waiting."""

    def __init__(self):
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def signature_header(received: Received) -> str:
    return received.headers[HEADER.lower()]


# -- NATS --------------------------------------------------------------------------------------

async def _has_jetstream(url: str) -> bool:
    import nats

    try:
        nc = await nats.connect(servers=[url], connect_timeout=2, allow_reconnect=False,
                                max_reconnect_attempts=0)
    except Exception:  # noqa: BLE001 - nothing there
        return False
    try:
        await nc.jetstream().account_info()
        return True
    except Exception:  # noqa: BLE001 - a server without -js
        return False
    finally:
        await nc.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory):
    explicit = os.environ.get("BASTION_TEST_NATS_URL")
    if explicit:
        yield explicit
        return
    if asyncio.run(_has_jetstream("nats://127.0.0.1:4222")):
        yield "nats://127.0.0.1:4222"
        return
    binary = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
    if binary is None:
        pytest.fail("tests/feed need NATS with JetStream: run scripts/ensure-nats (make test does) "
                    "or set BASTION_TEST_NATS_URL")
    port = _free_port()
    store_dir = tmp_path_factory.mktemp("nats")
    proc = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"
    for _ in range(100):
        if asyncio.run(_has_jetstream(url)):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"nats-server -js did not start on port {port}")
    yield url
    proc.terminate()
    proc.wait(10)


def unique_tenant(prefix: str = "feed") -> str:
    """A tenant name no earlier run used: the stream on a shared server keeps old messages."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def stream_messages(url: str, tenant_name: str, stream: str = "BASTION") -> list:
    """Every message of the tenant in the stream, in stream order (subject, headers, data)."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(servers=[url])
    js = nc.jetstream()
    out = []
    try:
        seq = 0
        while True:
            try:
                msg = await js.get_msg(stream, seq + 1, next=True, subject=f"bastion.{tenant_name}.>")
            except NotFoundError:
                break
            out.append(msg)
            seq = msg.seq
    finally:
        await nc.close()
    return out
