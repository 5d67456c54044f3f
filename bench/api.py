#!/usr/bin/env python
"""HTTP API benchmark: `bastion serve` under load from a separate process, against the library.

For each engine it

1. loads a tenant of N risks on M assets (default 1,000,000 on 50,000) through the write path
   (`TenantStore.apply` in batches, as bench/write_path.py does), changes the criticality of
   every 20th asset (a second event in their history), adds one cloud account with a few
   hundred ATT&CK-mapped detections on the default catalog (so the coverage report has
   something to count), then VACUUM ANALYZE / ANALYZE;
2. for each `--workers` setting, starts `bastion serve --workers W` as a child process
   (BASTION_RATE_LIMIT=none) and drives it from another child process (an asyncio HTTP/1.1
   keep-alive client, or httpx.AsyncClient with `--client httpx`) at each concurrency: one
   entity by key, a risk page (open, severity>=high, by priority, 50), an asset's history, an
   account's coverage report, the four mixed, and /healthz (the framework's own ceiling);
   then uploads a nuclei file of `--import-findings` results (POST /v1/imports, polled to the
   end when answered 202) into a fresh tenant;
3. the floor, in this process at concurrency 1: the same reads through the library
   (`TenantStore.get`, `list`, `history`, `coverage.compute`), and the same nuclei file
   imported with the library of `bastion import` in a child process, into a fresh tenant.

It prints requests/s and p50/p95/p99 per endpoint and concurrency, the ratio API ÷ library per
read, PASS/MISS against the targets (PostgreSQL), and where a request's time goes (HTTP with
no database, authentication, the library call, masking and serialization).

    python bench/api.py [--risks 1000000] [--assets N/20] [--duration 8] [--workers 2]
                        [--concurrency 1,16,64] [--engines sqlite,postgresql] [--pg-url URL]
                        [--import-findings 100000] [--reuse] [--json FILE]

PostgreSQL: --pg-url or $BASTION_BENCH_PG_URL (a role that may CREATE DATABASE), else a
throwaway cluster (tests/pg_cluster.py) started for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlencode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # write_path / import_nuclei / coverage: helpers

import write_path as wp  # noqa: E402  (puts the repository and tests/ on sys.path)
from write_path import (analyze, print_machine, Postgres, cached_database, code_version, console, engine_list,  # noqa: E402
                        machine, mark_built, verdict)

TENANT = "default"
DATA_VERSION = 1  # bump when the generator changes: cached databases are then rebuilt
READS = ("entity", "risks", "history", "coverage")
TARGET_MIXED_RPS = 1000  # mixed reads at concurrency 16, PostgreSQL
TARGET_MIXED_P99_MS = 100.0
TARGET_ENTITY_P50_MS = 5.0  # one entity at concurrency 1
TARGET_API_RATIO = 2.0  # API p50 ÷ library p50 per read at concurrency 1
TARGET_IMPORT_RATIO = 0.8  # import over HTTP findings/s ÷ the library's (`bastion import`)
RISK_FILTER = ["status=open", "severity>=high"]
STATUSES = (("triage", 30), ("open", 30), ("accepted", 10), ("remediated", 30))
APEXES = tuple(f"{name}-{i}.{tld}" for i, (name, tld) in enumerate(
    (n, t) for n in ("acme", "globex", "initech", "umbrella", "hooli") for t in ("com", "io", "net", "de")))


# --------------------------------------------------------------------------- synthetic tenant


def bench_module(name: str):
    """A sibling bench script as a module, by path (bench/coverage.py shares its name with the
    coverage.py package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def asset_identifier(i: int) -> str:
    return f"{wp.WORDS[i % len(wp.WORDS)]}{i}.{APEXES[i % len(APEXES)]}"


def asset_exposure(i: int) -> str:
    return "external" if i % 10 < 7 else "internal"


def tenant_batches(risks: int, assets: int, seed: int, chunk: int = 500):
    """Batches of `chunk` assets with their risks (N/M each, deterministic for the seed), in
    parser order; yields (batch, asset keys, risk keys)."""
    from bastion.risks.priority import priority

    sevs = [s for s, _ in wp.SEVERITIES]
    sev_w = [w for _, w in wp.SEVERITIES]
    states = [s for s, _ in STATUSES]
    state_w = [w for _, w in STATUSES]
    per, extra = divmod(risks, assets)
    for start in range(0, assets, chunk):
        rng = random.Random(seed * 1_000_003 + start)
        batch = wp.Batch()
        akeys, rkeys = [], []
        for i in range(start, min(start + chunk, assets)):
            exposure = asset_exposure(i)
            akey = batch.add("asset", identifier=asset_identifier(i), **{"class": "subdomain"},
                             exposure=exposure,
                             criticality=rng.choice(("low", "medium", "medium", "high", "critical")))
            akeys.append(akey)
            names: set[str] = set()
            for _ in range(per + (1 if i < extra else 0)):
                values: dict[str, Any] = {"target": akey, "severity": rng.choices(sevs, sev_w)[0],
                                          "status": rng.choices(states, state_w)[0]}
                while True:
                    if rng.random() < 0.35:
                        name = f"CVE-{rng.randrange(2014, 2026)}-{rng.randrange(1000, 60000)}"
                    else:
                        name = rng.choice(wp.TEMPLATES)
                        if name in names:
                            name = f"{name}-{rng.randrange(10**6)}"
                    if name not in names:
                        names.add(name)
                        break
                if name.startswith("CVE-"):  # the store names a CVE finding after the CVE
                    values.update(cve=name, cvss=round(rng.uniform(2.0, 10.0), 1),
                                  epss_percentile=round(rng.random(), 3), kev=rng.random() < 0.03)
                else:
                    values["name"] = name
                values["title"] = f"{name.replace('-', ' ')} on {asset_identifier(i)}"
                if values["status"] == "remediated":
                    values["reason"] = "not_observed"
                values["priority"] = priority(values, exposure)
                props = {"template": name.lower()} if rng.random() < 0.5 else None
                rkeys.append(batch.add("risk", props, **values))
        yield batch, akeys, rkeys


def load_tenant(store, args) -> dict[str, Any]:
    """The tenant through the write path; returns load figures."""
    ts = store.tenant(TENANT)
    t0 = last = time.perf_counter()
    created = events = 0
    for n, (batch, akeys, _r) in enumerate(tenant_batches(args.risks, args.assets, args.seed)):
        r = ts.apply(batch, actor="bench", source="bench/api")
        created += r.created
        events += r.events
        if time.perf_counter() - last > 15:
            last = time.perf_counter()
            console.print(f"  … {created:,} entities, {last - t0:.0f}s, "
                          f"{created / (last - t0):,.0f} entities/s")
    load_s = time.perf_counter() - t0
    # A second event in the history of every 20th asset.
    t1 = time.perf_counter()
    upd = wp.Batch()
    for i in range(0, args.assets, 20):
        upd.add("asset", identifier=asset_identifier(i), **{"class": "subdomain"},
                exposure=asset_exposure(i), criticality="critical", note="bench: re-assessed")
    r = ts.apply(upd, actor="bench", source="bench/api")
    events += r.events
    update_s = time.perf_counter() - t1
    coverage_s = load_coverage(store)
    t2 = time.perf_counter()
    analyze(store)
    return {"entities": created, "events": events, "load_s": load_s,
            "entities_per_s": created / load_s, "update_s": update_s, "coverage_s": coverage_s,
            "analyze_s": time.perf_counter() - t2}


def load_coverage(store, detections: int = 300) -> float:
    """One cloud account with `detections` mapped detections (bench/coverage.py's generator)."""
    cov = bench_module("coverage")  # bench/coverage.py, not the coverage.py package
    from bastion.coverage.attack import ensure_default_catalog

    t0 = time.perf_counter()
    ensure_default_catalog(store, actor="bench")
    cat = cov.active_catalog(store)
    techs = sorted(t.id for t in cat.techniques.values() if t.active)
    random.Random(11).shuffle(techs)
    spec = cov.Spec(1, detections, 11, techs, cat.version)
    ts = store.tenant(TENANT)
    ab, akeys, providers = cov.accounts_batch(spec)
    ts.apply(ab, actor="bench", source="bench/api")
    ts.apply(cov.detections_batch(spec, 0, akeys[0], providers[0], cov.popularity(techs)),
             actor="bench", source="bench/api")
    return time.perf_counter() - t0


def sample_keys(store, n: int, seed: int) -> dict[str, list[str]]:
    """Keys to ask for: n risks and n assets at random, and the cloud account."""
    ts = store.tenant(TENANT)
    assets = [r.key for r in ts.iterate("asset", page_size=5000)]
    account = ts.list("cloud_account", limit=1).records[0].key
    rng = random.Random(seed)
    risks: list[str] = []
    seen = 0
    for rec in ts.iterate("risk", page_size=5000):  # reservoir sample over every risk
        seen += 1
        if len(risks) < n:
            risks.append(rec.key)
        elif (j := rng.randrange(seen)) < n:
            risks[j] = rec.key
        if seen >= 200_000:  # enough to spread over many pages; iterating 1M would take minutes
            break
    rng.shuffle(risks)
    return {"entity": risks[:n], "asset": rng.sample(assets, min(n, len(assets))), "account": [account]}


def request_paths(keys: dict[str, list[str]]) -> dict[str, list[str]]:
    risk_q = urlencode([*(("where", w) for w in RISK_FILTER), ("sort", "priority"),
                        ("desc", "true"), ("limit", "50")])
    return {
        "entity": [f"/v1/entity?key={quote(k, safe='')}" for k in keys["entity"]],
        "risks": [f"/v1/entities/risk?{risk_q}"],
        "history": [f"/v1/entity/history?key={quote(k, safe='')}" for k in keys["asset"]],
        "coverage": [f"/v1/coverage/report?account={quote(a, safe='')}" for a in keys["account"]],
        "healthz": ["/healthz"],
    }


# --------------------------------------------------------------------------- load (child process)


async def _raw_get(reader, writer, head: bytes) -> int:
    writer.write(head)
    lines = await reader.readuntil(b"\r\n\r\n")
    status = int(lines[9:12])
    low = lines.lower()
    at = low.find(b"content-length:")
    if at < 0:
        raise RuntimeError(f"no Content-Length in {lines[:200]!r}")
    length = int(low[at + 15:low.index(b"\r\n", at)])
    await reader.readexactly(length)
    if b"connection: close" in low:
        raise ConnectionResetError("server closed the connection")
    return status


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, list[str]] = spec["paths"]
    names: list[str] = spec["endpoints"]  # one endpoint, or several mixed in turn
    conc, host, port = spec["concurrency"], "127.0.0.1", spec["port"]
    auth = f"Bearer {spec['token']}"
    rng = random.Random(spec["seed"])
    lat: dict[str, list[float]] = {n: [] for n in names}
    errors: dict[str, int] = {}
    turn = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    warm_end = start + spec["warmup"]
    deadline = warm_end + spec["duration"]

    def pick() -> tuple[str, str]:
        nonlocal turn
        name = names[turn % len(names)]
        turn += 1
        return name, rng.choice(paths[name])

    def record(name: str, t0: float, t1: float, status: int) -> None:
        """Counted when answered within the window (after the warm-up): closed-loop users, so
        at high concurrency a request may wait longer than the window for its turn."""
        if warm_end <= t1 <= deadline:
            if status == 200:
                lat[name].append(t1 - t0)
            else:
                errors[f"{name} {status}"] = errors.get(f"{name} {status}", 0) + 1

    async def raw_user() -> None:
        reader = writer = None
        while loop.time() < deadline:
            name, path = pick()
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n".encode()
            t0 = loop.time()
            try:
                status = await _raw_get(reader, writer, head)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                reader = writer = None
                status = 599
            record(name, t0, loop.time(), status)
        if writer is not None:
            writer.close()

    async def httpx_user(client) -> None:
        while loop.time() < deadline:
            name, path = pick()
            t0 = loop.time()
            try:
                status = (await client.get(path)).status_code
            except Exception:  # noqa: BLE001 - counted, the load goes on
                status = 599
            record(name, t0, loop.time(), status)

    cpu0 = time.process_time()
    if spec["client"] == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", headers={"Authorization": auth},
                                     limits=limits, timeout=60) as client:
            await asyncio.gather(*(httpx_user(client) for _ in range(conc)))
    else:
        await asyncio.gather(*(raw_user() for _ in range(conc)))
    cpu = time.process_time() - cpu0
    return {"latencies": lat, "errors": errors, "window_s": spec["duration"],
            "client_cpu_s": cpu, "wall_s": loop.time() - start}


def load_worker(spec_file: str, out_file: str) -> int:
    spec = json.loads(Path(spec_file).read_text())
    Path(out_file).write_text(json.dumps(asyncio.run(_load(spec))))
    return 0


# --------------------------------------------------------------------------- measurements


@dataclass
class Stat:
    """Latency figures of one measurement (seconds in, milliseconds out)."""

    n: int
    rps: float
    p50: float
    p95: float
    p99: float
    errors: dict[str, int] = field(default_factory=dict)
    client_cpu: float = 0.0  # the load process's CPU share of one core during the run
    skipped: bool = False  # not measured: too slow at this concurrency (--max-queue)

    @classmethod
    def of(cls, lat: list[float], window: float, **kw) -> "Stat":
        if not lat:
            return cls(0, 0.0, float("nan"), float("nan"), float("nan"), **kw)
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [lat[0]] * 99
        return cls(len(lat), len(lat) / window, q[49] * 1e3, q[94] * 1e3, q[98] * 1e3, **kw)


def drive(port: int, token: str, paths: dict[str, list[str]], endpoints: list[str], conc: int,
          args, tmp: Path) -> dict[str, Stat]:
    """One measurement from a separate load process; Stat per endpoint (and "all" when mixed)."""
    spec = {"port": port, "token": token, "paths": paths, "endpoints": endpoints,
            "concurrency": conc, "duration": args.duration, "warmup": args.warmup,
            "seed": args.seed + conc, "client": args.client}
    spec_file, out_file = tmp / "load-spec.json", tmp / "load-out.json"
    spec_file.write_text(json.dumps(spec))
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--load-worker", str(spec_file),
                    str(out_file)], check=True)
    out = json.loads(out_file.read_text())
    window, cpu = out["window_s"], out["client_cpu_s"] / out["wall_s"]
    stats = {name: Stat.of(lat, window, client_cpu=cpu,
                           errors={k: v for k, v in out["errors"].items() if k.startswith(name + " ")})
             for name, lat in out["latencies"].items()}
    if len(endpoints) > 1:
        stats["mixed"] = Stat.of([x for lat in out["latencies"].values() for x in lat], window,
                                 client_cpu=cpu, errors=out["errors"])
    return stats


def library_floor(store, keys: dict[str, list[str]], seconds: float) -> dict[str, Stat]:
    """The same reads in this process, one at a time: what the routes call."""
    from bastion.coverage.attack import normalize_domain
    from bastion.coverage.compute import compute

    ts = store.tenant(TENANT)
    rng = random.Random(5)
    account = keys["account"][0]
    calls: dict[str, Callable[[], Any]] = {
        "entity": lambda: ts.get(rng.choice(keys["entity"])),
        "risks": lambda: ts.list("risk", where=RISK_FILTER, order_by="priority", descending=True,
                                 limit=50),
        "history": lambda: ts.history(rng.choice(keys["asset"])),
        "coverage": lambda: compute(ts, ts.coverage.catalog(normalize_domain("enterprise")),
                                    account=account),
    }
    out = {}
    for name, call in calls.items():
        # Warm-up past the plan switch: psycopg prepares a statement at its 5th execution on a
        # connection and PostgreSQL may move to the generic plan after 5 more (the risk page's
        # generic plan is ~18x slower at 200,000 risks). At most `seconds` of it.
        t_warm = time.perf_counter() + seconds
        for _ in range(12):
            call()
            if time.perf_counter() > t_warm:
                break
        lat: list[float] = []
        t_end = time.perf_counter() + seconds
        while (t0 := time.perf_counter()) < t_end:
            call()
            lat.append(time.perf_counter() - t0)
        out[name] = Stat.of(lat, seconds)
    return out


def breakdown(store, token: str, keys: dict[str, list[str]], runs: int = 300) -> dict[str, float]:
    """Where a request's time goes, in this process (p50, ms): authenticating the Bearer key
    (one transaction, as `needs()` does per request); a database round trip, a pool checkout, a
    plain transaction and the store's tenant transaction, each with nothing in it; masking and
    validating + serializing a record and a 50-risk page as the routes' response models do."""
    from sqlalchemy import text

    from bastion.schema import roles
    from bastion.server.schemas import EntityOut, EntityPage
    from bastion.store.keys import Authenticator

    ts = store.tenant(TENANT)
    auth = Authenticator(store.engine)
    auth.authenticate(token)  # its once-a-minute last-use write, out of the timing
    rec = ts.get(keys["entity"][0])
    page = ts.list("risk", where=RISK_FILTER, order_by="priority", descending=True, limit=50)

    def serialize_one():
        EntityOut.model_validate(roles.mask_record(rec.as_dict(), "admin")).model_dump_json()

    def serialize_page():
        body = {"items": [roles.mask_record(r.as_dict(), "admin") for r in page.records],
                "next_cursor": page.next_cursor}
        EntityPage.model_validate(body).model_dump_json()

    def empty_transaction():
        with ts.scope.transaction() as conn:
            conn.execute(text("SELECT 1"))

    def checkout():
        with store.engine.connect():
            pass

    def plain_transaction():
        with store.engine.connect() as conn, conn.begin():
            conn.execute(text("SELECT 1"))

    def p50(fn) -> float:
        for _ in range(5):
            fn()
        lat = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            lat.append(time.perf_counter() - t0)
        return statistics.median(lat) * 1e3

    with store.engine.connect() as conn:
        round_trip = p50(lambda: conn.execute(text("SELECT 1")))
    return {"authenticate": p50(lambda: auth.authenticate(token)),
            "round trip (SELECT 1 on an open connection)": round_trip,
            "pool checkout + checkin (pre-ping on PostgreSQL)": p50(checkout),
            "plain transaction with SELECT 1": p50(plain_transaction),
            "tenant transaction with SELECT 1 (PostgreSQL: + role, tenant binding)": p50(empty_transaction),
            "mask + serialize one entity": p50(serialize_one),
            "mask + serialize a 50-risk page": p50(serialize_page)}


# --------------------------------------------------------------------------- server and imports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(url: str, workers: int, log: Path):
    """`bastion serve` on a free port, as a child process in a session of its own (its workers
    stop with it); yields the port."""
    port = free_port()
    bastion = Path(sys.executable).with_name("bastion")
    env = {**os.environ, "BASTION_RATE_LIMIT": "none", "BASTION_TENANT": TENANT}
    cmd = [str(bastion), "--db", url, "serve", "--port", str(port), "--workers", str(workers),
           "--log-level", "warning"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bastion serve did not start: see {log}\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the group of the child started above
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def http_import(port: int, token: str, file: Path, findings: int) -> dict[str, Any]:
    """POST /v1/imports of `file`, then the run polled until it is no longer running."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with open(file, "rb") as f, httpx.Client(base_url=base, headers=headers, timeout=None) as c:
        r = c.post("/v1/imports", files={"files": (file.name, f, "application/x-ndjson")},
                   data={"source": "bench"})
        if r.status_code not in (201, 202):
            raise SystemExit(f"POST /v1/imports: {r.status_code} {r.text[:500]}")
        answered = time.perf_counter() - t0
        run = r.json()
        while run["status"] == "running":
            time.sleep(0.1)
            run = c.get(f"/v1/imports/{run['id']}").json()
    seconds = time.perf_counter() - t0
    if run["status"] != "succeeded":
        raise SystemExit(f"import over HTTP {run['status']}: {run['errors'][:5]}")
    return {"seconds": seconds, "findings_per_s": findings / seconds, "status_code": r.status_code,
            "answered_s": answered, "records": (run.get("counts") or {}).get("records")}


def import_worker(url: str, tenant: str, file: str, out: str) -> int:
    """`bastion import FILE` as the library does it, timed from the call to its return."""
    from bastion.ingest.runner import Options, import_paths
    from bastion.store.store import Store

    store = Store(url)
    ts = store.tenant(tenant)
    t0 = time.perf_counter()
    result = import_paths(ts, [file], Options(actor="bench", source="bench"))
    seconds = time.perf_counter() - t0
    Path(out).write_text(json.dumps({"seconds": seconds, "status": result.status,
                                     "records": result.files[0].records}))
    store.close()
    return 0


def library_import(url: str, tenant: str, file: Path, findings: int, tmp: Path) -> dict[str, Any]:
    out = tmp / "import-out.json"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--import-worker", url, tenant,
                    str(file), str(out)], check=True)
    wall = time.perf_counter() - t0
    data = json.loads(out.read_text())
    if data["status"] != "succeeded":
        raise SystemExit(f"library import {data['status']}")
    return {"seconds": data["seconds"], "findings_per_s": findings / data["seconds"],
            "process_wall_s": wall, "records": data["records"]}


def new_tenant_key(store, name: str) -> str:
    store.ensure_tenant(name)
    _key, token = store.tenant(name).keys.create(f"bench-{os.getpid()}", "admin", actor="bench",
                                                 source="bench")
    return token


# --------------------------------------------------------------------------- one engine


def run_engine(engine_name: str, args, pg: Postgres | None, cache: Path, tmp: Path,
               nuclei, stack: contextlib.ExitStack) -> dict[str, Any]:
    from import_nuclei import migrated

    from bastion.store.store import Store

    console.rule(f"[bold]{engine_name}")
    name = f"bastion_bench_api_r{args.risks}_a{args.assets}_s{args.seed}_v{DATA_VERSION}"
    url, built = cached_database(engine_name, name, pg, cache, args.reuse, stack)
    result: dict[str, Any] = {"engine": engine_name, "load": None, "workers": {}}
    if built:
        console.print(f"reusing the loaded database {name}")
        store = Store(url)
    else:
        store = migrated(url, TENANT)
        console.print(f"loading {args.risks:,} risks on {args.assets:,} assets through the write path …")
        result["load"] = load_tenant(store, args)
        mark_built(store)
        ld = result["load"]
        console.print(f"loaded {ld['entities']:,} entities ({ld['events']:,} events) in "
                      f"{ld['load_s']:.0f}s: {ld['entities_per_s']:,.0f} entities/s; coverage "
                      f"{ld['coverage_s']:.1f}s, analyze {ld['analyze_s']:.1f}s")
    keys = sample_keys(store, args.sample, args.seed)
    paths = request_paths(keys)
    token = store.tenant(TENANT).keys.create(f"bench-{os.getpid()}", "admin", actor="bench",
                                             source="bench")[1]
    console.print("library floor (in this process, concurrency 1) …")
    result["library"] = library_floor(store, keys, args.duration)
    result["breakdown"] = breakdown(store, token, keys)
    if store.dialect == "postgresql":  # a bound transaction's COMMIT waits for the WAL when on
        with store.engine.connect() as conn:
            result["synchronous_commit"] = conn.exec_driver_sql("SHOW synchronous_commit").scalar_one()
    suffix = f"{os.getpid()}"
    for workers in args.workers:
        per: dict[str, Any] = {}
        with server(url, workers, tmp / "serve.log") as port:
            for conc in args.concurrency:
                for ep in (*READS, "mixed", "healthz"):
                    if ep == "healthz" and conc > 16:
                        continue
                    eps = list(READS) if ep == "mixed" else [ep]
                    queue_s = (statistics.mean(per[f"{e}@1"].p50 for e in eps) / 1e3 * conc / workers
                               if conc > 1 else 0.0)
                    if queue_s > args.max_queue:
                        console.print(f"  workers {workers}, c={conc:>2} {ep:<9} skipped: a request "
                                      f"would wait about {queue_s:.1f}s (c=1 p50 × {conc} ÷ "
                                      f"{workers} workers > --max-queue {args.max_queue:g}s)")
                        per[f"{ep}@{conc}"] = Stat.of([], 1.0, skipped=True)
                        continue
                    stats = drive(port, token, paths, eps, conc, args, tmp)
                    st = stats["mixed" if ep == "mixed" else ep]
                    per[f"{ep}@{conc}"] = st
                    err = f", errors {st.errors}" if st.errors else ""
                    console.print(f"  workers {workers}, c={conc:>2} {ep:<9} {st.rps:8,.0f} req/s  "
                                  f"p50 {st.p50:7.1f}  p95 {st.p95:7.1f}  p99 {st.p99:7.1f} ms  "
                                  f"(client CPU {st.client_cpu:.0%}){err}")
            if nuclei is not None:
                imp_token = new_tenant_key(store, f"imp-http-w{workers}-{suffix}")
                per["import"] = http_import(port, imp_token, nuclei.path, nuclei.findings)
                console.print(f"  import over HTTP: {per['import']['seconds']:.1f}s, "
                              f"{per['import']['findings_per_s']:,.0f} findings/s")
        result["workers"][workers] = per
    if nuclei is not None:
        cli_tenant = f"imp-cli-{suffix}"
        store.ensure_tenant(cli_tenant)
        result["library_import"] = library_import(url, cli_tenant, nuclei.path, nuclei.findings, tmp)
        console.print(f"  import through the library: {result['library_import']['seconds']:.1f}s, "
                      f"{result['library_import']['findings_per_s']:,.0f} findings/s")
    store.close()
    return result


# --------------------------------------------------------------------------- report


def ms(x: float) -> str:
    return "—" if x != x else f"{x:,.1f}"


def report(results: list[dict[str, Any]], info: dict[str, Any], args) -> list[dict[str, Any]]:
    from rich.table import Table

    console.rule("[bold]results")
    print_machine(info)
    console.print(f"tenant: {args.risks:,} risks on {args.assets:,} assets; one cloud account with "
                  f"300 detections; {args.duration:g}s per measurement after {args.warmup:g}s "
                  f"warm-up; client {args.client}")
    verdicts = []
    for r in results:
        lib = r["library"]
        for workers, per in r["workers"].items():
            t = Table(title=f"{r['engine']}: bastion serve --workers {workers}")
            for col in ("endpoint", "conc.", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
                        "client CPU"):
                t.add_column(col, justify="left" if col == "endpoint" else "right")
            for key, st in per.items():
                if key == "import":
                    continue
                ep, conc = key.split("@")
                if st.skipped:
                    t.add_row(ep, conc, "skipped", "", "", "", "", "")
                    continue
                t.add_row(ep, conc, f"{st.rps:,.0f}", ms(st.p50), ms(st.p95), ms(st.p99),
                          str(sum(st.errors.values())) if st.errors else "", f"{st.client_cpu:.0%}")
            console.print(t)
        t = Table(title=f"{r['engine']}: the library in-process (concurrency 1) against the API "
                  "at concurrency 1")
        for col in ("read", "library req/s", "p50 ms", "p95 ms", "p99 ms",
                    *(f"API p50 ÷ library p50, {w} worker(s)" for w in r["workers"])):
            t.add_column(col, justify="left" if col == "read" else "right")
        for ep in READS:
            st = lib[ep]
            t.add_row(ep, f"{st.rps:,.0f}", ms(st.p50), ms(st.p95), ms(st.p99),
                      *(f"{per[f'{ep}@1'].p50 / st.p50:.2f}×" for per in r["workers"].values()))
        console.print(t)
        console.print("where a request's time goes (p50 in this process, ms): " + ", ".join(
            f"{k} {v:.2f}" for k, v in r["breakdown"].items())
            + (f"; synchronous_commit={r['synchronous_commit']}" if "synchronous_commit" in r else ""))
        t = Table(title=f"{r['engine']}: targets" + ("" if r["engine"] == "postgresql"
                                                       else " (set for PostgreSQL; information)"))
        for col in ("target", "workers", "measured", ""):
            t.add_column(col)
        for workers, per in r["workers"].items():
            checks = []
            mixed = per.get("mixed@16")
            if mixed and mixed.skipped:
                checks.append((f"mixed reads at c=16 ≥ {TARGET_MIXED_RPS:,} req/s, p99 ≤ "
                               f"{TARGET_MIXED_P99_MS:g} ms", "not measured: too slow (--max-queue)",
                               False))
            elif mixed:
                checks.append((f"mixed reads at c=16 ≥ {TARGET_MIXED_RPS:,} req/s", f"{mixed.rps:,.0f}",
                               mixed.rps >= TARGET_MIXED_RPS))
                checks.append((f"mixed reads at c=16 p99 ≤ {TARGET_MIXED_P99_MS:g} ms", ms(mixed.p99),
                               mixed.p99 <= TARGET_MIXED_P99_MS))
            ent = per.get("entity@1")
            if ent:
                checks.append((f"one entity at c=1 p50 ≤ {TARGET_ENTITY_P50_MS:g} ms", ms(ent.p50),
                               ent.p50 <= TARGET_ENTITY_P50_MS))
                for ep in READS:
                    ratio = per[f"{ep}@1"].p50 / lib[ep].p50
                    checks.append((f"{ep}: API ÷ library at c=1 ≤ {TARGET_API_RATIO:g}×",
                                   f"{ratio:.2f}×", ratio <= TARGET_API_RATIO))
            if "import" in per and "library_import" in r:
                ratio = per["import"]["findings_per_s"] / r["library_import"]["findings_per_s"]
                checks.append((f"import over HTTP ≥ {TARGET_IMPORT_RATIO:g}× the library's findings/s",
                               f"{per['import']['findings_per_s']:,.0f} vs "
                               f"{r['library_import']['findings_per_s']:,.0f}/s = {ratio:.2f}×",
                               ratio >= TARGET_IMPORT_RATIO))
            for label, value, ok in checks:
                t.add_row(label, str(workers), value, verdict(ok))
                verdicts.append({"engine": r["engine"], "workers": workers, "target": label,
                                 "measured": value, "pass": ok})
        console.print(t)
    return verdicts


def as_json(obj):
    if isinstance(obj, Stat):
        return obj.__dict__
    raise TypeError(type(obj))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--load-worker"]:
        return load_worker(argv[1], argv[2])
    if argv[:1] == ["--import-worker"]:
        return import_worker(*argv[1:5])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--risks", type=int, default=1_000_000, help="risks in the tenant (default 1000000)")
    ap.add_argument("--assets", type=int, help="assets they are on (default risks/20)")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per measurement (default 8)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each "
                    "measurement, not counted (default 1)")
    ap.add_argument("--concurrency", default="1,16,64", help="comma-separated (default 1,16,64)")
    ap.add_argument("--workers", default="2", help="bastion serve --workers, comma-separated "
                    "settings measured on the same database (default 2)")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw",
                    help="load client: asyncio streams with keep-alive (default, cheapest) or "
                         "httpx.AsyncClient")
    ap.add_argument("--max-queue", type=float, default=30.0,
                    help="skip a measurement at concurrency c when its c=1 p50 × c ÷ workers "
                         "exceeds this many seconds (the requests in flight are answered before "
                         "the next measurement; default 30)")
    ap.add_argument("--engines", default="sqlite,postgresql", help="comma-separated")
    ap.add_argument("--pg-url", default=os.environ.get("BASTION_BENCH_PG_URL"),
                    help="PostgreSQL server to create scratch databases on "
                         "(default $BASTION_BENCH_PG_URL, else a throwaway cluster)")
    ap.add_argument("--import-findings", type=int, default=100_000,
                    help="nuclei results in the file imported over HTTP and through the "
                         "library (default 100000; 0 skips the imports)")
    ap.add_argument("--sample", type=int, default=2000, help="distinct keys asked for (default 2000)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="keep the loaded database (a SQLite file "
                    "under --cache-dir, a PostgreSQL database on --pg-url) and reuse it next time")
    ap.add_argument("--cache-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "bastion-bench-api")
    ap.add_argument("--json", type=Path, help="also write the figures and machine to this file")
    args = ap.parse_args(argv)
    args.assets = args.assets or max(1, args.risks // 20)
    engines = engine_list(ap, args.engines)
    try:
        args.workers = [int(w) for w in args.workers.split(",")]
        args.concurrency = sorted({int(c) for c in args.concurrency.split(",")})
    except ValueError:
        ap.error("--workers and --concurrency take comma-separated numbers")
    if 1 not in args.concurrency:
        ap.error("--concurrency must include 1 (the API ÷ library ratio)")
    if args.reuse and not args.pg_url and "postgresql" in engines:
        ap.error("--reuse needs --pg-url (a throwaway cluster does not outlive the run)")

    console.width = max(console.width, 120)
    code = code_version()
    results = []
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-api-"))
        stack.callback(shutil.rmtree, tmp, True)
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        cache = args.cache_dir if args.reuse else tmp
        nuclei = None
        if args.import_findings:
            from import_nuclei import generate

            nuclei = generate(tmp, args.import_findings, max(1, args.import_findings // 20),
                              args.seed, "spray", False)
            console.print(f"generated a nuclei file of {nuclei.findings:,} results "
                          f"({nuclei.bytes / 2**20:.0f} MiB) in {nuclei.seconds:.1f}s")
        pg = Postgres(stack, args.pg_url) if "postgresql" in engines else None
        for engine_name in engines:
            t0 = time.perf_counter()
            results.append(run_engine(engine_name, args, pg, cache, tmp, nuclei, stack))
            results[-1]["seconds"] = time.perf_counter() - t0
            console.print(f"{engine_name}: {results[-1]['seconds']:.0f}s in all")
        info = machine(pg, code)
    info["peak RSS (bench process)"] = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
    verdicts = report(results, info, args)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "args": {k: str(v) for k, v in vars(args).items()},
            "results": results, "targets": verdicts}, indent=2, default=as_json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
