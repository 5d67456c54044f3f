#!/usr/bin/env python
"""Detection-coverage benchmark: full recompute at scale on both engines, and Sigma against
sigma-cli.

1. Synthetic tenant: A cloud accounts x D detections (default 1,000 x 1,000 = 1M detections),
   about 2 mappings per detection (about 2M) over the active default ATT&CK catalog's
   techniques with a skewed popularity, a mix of statuses, health, confidence and validation.
   The data set is built once per engine (`--build bulk`, default: the write path's own
   validation and row inserts without lookups or events, see `bulk_apply`; `--build write-path`:
   `TenantStore.apply` in batches) and cached with `--reuse`. Then: the full recompute
   (`compute_accounts` of every account, then `tenant_union`), p50 of `--runs`; one account's
   report (`compute(account=…)`) and one account's gaps (`gaps(account=…)`).
2. Sigma (when ../shared/datasets/sigma exists): every rule under its rules/ imported into a fresh
   SQLite tenant (`import_detections`, as `bastion detections import`) and the tenant's coverage
   computed (`compute`), against `sigma analyze attack count` (sigma-cli) on the same rules.

    python bench/coverage.py [--accounts 1000] [--detections-per-account 1000]
                             [--engines sqlite,postgresql] [--pg-url URL] [--reuse]
                             [--build bulk|write-path] [--verify] [--runs 3] [--no-sigma]

PostgreSQL: --pg-url or $BASTION_BENCH_PG_URL (a role that may CREATE DATABASE), else a
throwaway cluster (tests/pg_cluster.py) started for the run (then --reuse cannot keep the
database between runs).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # write_path / import_nuclei: database helpers, report bits

from write_path import (analyze, print_machine, Postgres, cached_database, code_version, console, engine_list,  # noqa: E402
                        machine, mark_built, verdict)
from import_nuclei import migrated  # noqa: E402

from sqlalchemy import text  # noqa: E402

from bastion.coverage.attack import ensure_default_catalog  # noqa: E402
from bastion.coverage.compute import compute, compute_accounts, tenant_union  # noqa: E402
from bastion.coverage.gaps import gaps  # noqa: E402
from bastion.schema.batch import Batch, validate  # noqa: E402
from bastion.store.store import Store  # noqa: E402
from bastion.store.tables import edge, graph_stats, node, typed  # noqa: E402
from bastion.store.writer import _Apply, _Events  # noqa: E402

TARGET_RECOMPUTE_S = 30.0  # full recompute on PostgreSQL at 1,000 x 1,000
TENANT = "default"
ROOT = HERE.parent
SIGMA_DIR = ROOT.parent / "shared" / "datasets" / "sigma"
ATTACK_STIX = ROOT.parent / "shared" / "datasets" / "attack" / "enterprise-attack-18.1-stix20-reassembled.json"
DATA_VERSION = 1  # bump when the generator changes: cached databases are then rebuilt


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- synthetic tenant


PROVIDERS = (("aws", 60), ("azure", 25), ("gcp", 15))
PLATFORMS = (None, ["IaaS"], ["IaaS", "Identity Provider"], ["IaaS", "SaaS", "Office Suite"])
SERVICES = {"aws": ("cloudtrail", "guardduty", "securityhub", "config", "vpcflow", "s3"),
            "azure": ("activitylogs", "signinlogs", "auditlogs", "defender", "sentinel"),
            "gcp": ("audit", "scc", "vpcflow", "gke")}
TYPES = (("sigma_rule", 50), ("cloud_control", 20), ("log_query", 15), ("event_pattern", 10),
         ("metric_alarm", 5))
LEVELS = ((None, 5), ("informational", 10), ("low", 20), ("medium", 35), ("high", 22), ("critical", 8))
STATUS = (("enabled", 90), ("disabled", 7), ("deprecated", 3))
HEALTH = (("healthy", 60), ("unknown", 25), ("degraded", 10), ("broken", 5))
VALIDATION = (("pending", 85), ("validated", 10), ("disputed", 5))
METHODS = (("tag", 60), ("vendor", 20), ("pattern", 10), ("analyst", 10))
N_MAPPINGS = ((1, 30), (2, 45), (3, 20), (4, 5))  # mean 2.0


def _w(pairs):
    values, weights = zip(*pairs)
    return list(values), list(itertools.accumulate(weights))


@dataclass
class Spec:
    accounts: int
    per_account: int
    seed: int
    techniques: list[str]  # the active catalog's techniques and sub-techniques, popularity order
    version: str  # the catalog's version (mapping attack_version)

    @property
    def tag(self) -> str:
        return f"a{self.accounts}_d{self.per_account}_s{self.seed}_v{DATA_VERSION}"


def account_key_values(spec: Spec, i: int) -> dict[str, Any]:
    rng = random.Random(spec.seed * 7_919 + i)
    provs, pw = _w(PROVIDERS)
    prov = rng.choices(provs, cum_weights=pw)[0]
    return {"provider": prov, "identifier": f"{100000000000 + i * 7919:012d}" if prov == "aws"
            else f"{prov}-acct-{i:05d}", "name": f"{prov}-{i:05d}",
            "environment": rng.choice(("prod", "staging", "dev")),
            "criticality": rng.choice(("low", "medium", "medium", "high", "critical")),
            "platforms": rng.choice(PLATFORMS)}


def accounts_batch(spec: Spec) -> tuple[Batch, list[str], list[str]]:
    b = Batch()
    keys, providers = [], []
    for i in range(spec.accounts):
        v = account_key_values(spec, i)
        keys.append(b.add("cloud_account", **v))
        providers.append(v["provider"])
    return b, keys, providers


def detections_batch(spec: Spec, i: int, account: str, provider: str,
                     cum: list[float]) -> Batch:
    """The detections of account i and their mappings, deterministic for (seed, i)."""
    rng = random.Random(spec.seed * 1_000_003 + i)
    types, tw = _w(TYPES)
    levels, lw = _w(LEVELS)
    status, sw = _w(STATUS)
    health, hw = _w(HEALTH)
    valid, vw = _w(VALIDATION)
    meths, mw = _w(METHODS)
    nmaps, nw = _w(N_MAPPINGS)
    techs = spec.techniques
    services = SERVICES[provider]
    b = Batch()
    for j in range(spec.per_account):
        typ = rng.choices(types, cum_weights=tw)[0]
        svc = rng.choice(services)
        raw = (f"title: {svc} rule {j}\nlogsource: {{product: {provider}, service: {svc}}}\n"
               f"detection: {{selection: {{eventName: Op{rng.randrange(10**6)}}}, condition: selection}}\n")
        dkey = b.add("detection", account=account, rule_id=f"r-{i:05d}-{j:06d}",
                     name=f"{svc} detection {j}", type=typ, service=svc,
                     status=rng.choices(status, cum_weights=sw)[0],
                     level=rng.choices(levels, cum_weights=lw)[0], raw=raw,
                     content_hash=hashlib.sha256(raw.encode()).hexdigest(), revision=1,
                     health=rng.choices(health, cum_weights=hw)[0])
        chosen: set[str] = set()
        for _ in range(rng.choices(nmaps, cum_weights=nw)[0]):
            chosen.add(techs[rng.choices(range(len(techs)), cum_weights=cum)[0]])
        for tid in sorted(chosen):
            u = rng.random()  # 80% at or above 0.6
            conf = round(0.6 + u * 0.4, 2) if u < 0.8 else round(0.1 + rng.random() * 0.49, 2)
            meth = rng.choices(meths, cum_weights=mw)[0]
            b.add("mapping", detection=dkey, technique=tid, confidence=conf, method=meth,
                  mapped_by=f"bench:{meth}", validation=rng.choices(valid, cum_weights=vw)[0],
                  attack_version=spec.version)
    return b


def popularity(techniques: list[str]) -> list[float]:
    """Cumulative Zipf-like weights by rank (the techniques come in a seeded shuffle): a few
    very common, a long tail."""
    return list(itertools.accumulate(1 / (r + 3) ** 1.2 for r in range(len(techniques))))


# --------------------------------------------------------------------------- building


def bulk_apply(ts, conn, batch: Batch, at: datetime, counts: Counter) -> int:
    """Store new entities of `batch` exactly as TenantStore.apply would on an empty tenant —
    validate() gives the keys, node ids, normalized values, content hashes and implied edges
    (HAS_DETECTION, MAPS_TO); the node, typed and edge rows are built as writer._Apply builds
    them and inserted with its row insert (_Apply._insert_rows) — but without looking up
    existing rows and without events. Returns the rows written."""
    pb = validate(batch)
    tid = ts.tenant_id
    node_rows, per_kind = [], {}
    for e in pb.entities.values():
        node_rows.append({"tenant_id": tid, "id": e.id, "key": e.key, "kind": e.kind.name,
                          "version": 1, "content_hash": e.content_hash, "properties": e.properties,
                          "first_seen": at, "last_seen": at, "updated_at": at})
        per_kind.setdefault(e.kind.name, []).append({"tenant_id": tid, "node_id": e.id, **e.values})
    edge_rows = [{"tenant_id": tid, "source_id": e.source_id, "kind": e.kind,
                  "target_id": e.target_id, "source_kind": e.source_kind,
                  "target_kind": e.target_kind, "properties": e.properties,
                  "first_seen": at, "last_seen": at} for e in pb.edges.values()]
    _Apply._insert_rows(ts.scope, conn, node, node_rows)
    for kind, rows in per_kind.items():
        _Apply._insert_rows(ts.scope, conn, typed[kind], rows)
        counts[kind] += len(rows)
    _Apply._insert_rows(ts.scope, conn, edge, edge_rows)
    for e in pb.edges.values():
        counts[e.kind] += 1
    return len(node_rows) * 2 + len(edge_rows)


def write_graph_stats(ts, conn, counts: Counter) -> None:
    """graph_stats' counts, with the write path's own upsert (_Apply._count)."""
    from bastion.schema.batch import PreparedBatch

    ap = _Apply(ts.scope, conn, PreparedBatch({}, {}, [], {}), datetime.now(timezone.utc),
                _Events(datetime.now(timezone.utc), "bench", "bench", "x"))
    ap.counts = counts
    ap._count()


def build(store: Store, spec: Spec, how: str, chunk_accounts: int = 10) -> dict[str, Any]:
    """Load the synthetic tenant; returns build figures."""
    ts = store.tenant(TENANT)
    cum = popularity(spec.techniques)
    t0 = time.perf_counter()
    ab, akeys, providers = accounts_batch(spec)
    at = datetime.now(timezone.utc)
    counts: Counter = Counter()
    rows = 0
    total = spec.accounts * spec.per_account
    last = time.perf_counter()

    def progress(done_accounts: int) -> None:
        nonlocal last
        if time.perf_counter() - last > 10 or done_accounts == spec.accounts:
            last = time.perf_counter()
            el = last - t0
            dets = done_accounts * spec.per_account
            console.print(f"  … {dets:,}/{total:,} detections, {el:.0f}s, "
                          f"{dets / el:,.0f} detections/s, load {load_avg()}")

    if how == "write-path":
        ts.apply(ab, actor="bench", source="bench/coverage")
        for start in range(0, spec.accounts, chunk_accounts):
            b = Batch()
            for i in range(start, min(start + chunk_accounts, spec.accounts)):
                b.entities += detections_batch(spec, i, akeys[i], providers[i], cum).entities
            ts.apply(b, actor="bench", source="bench/coverage")
            progress(min(start + chunk_accounts, spec.accounts))
    else:
        with ts.scope.transaction(write=True) as conn:
            rows += bulk_apply(ts, conn, ab, at, counts)
            for start in range(0, spec.accounts, chunk_accounts):
                b = Batch()
                for i in range(start, min(start + chunk_accounts, spec.accounts)):
                    b.entities += detections_batch(spec, i, akeys[i], providers[i], cum).entities
                rows += bulk_apply(ts, conn, b, at, counts)
                progress(min(start + chunk_accounts, spec.accounts))
            write_graph_stats(ts, conn, counts)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    analyze(store)
    return {"how": how, "load_s": load_s, "analyze_s": time.perf_counter() - t1,
            "load_avg": load_avg()}


# --------------------------------------------------------------------------- databases


def database_url(engine_name: str, spec: Spec, how: str, pg: Postgres | None, cache: Path,
                 reuse: bool, stack: contextlib.ExitStack) -> tuple[str, bool]:
    """(url, already built), named after the size, seed and build route."""
    return cached_database(engine_name, f"bastion_bench_cov_{spec.tag}_{how.replace('-', '')}",
                           pg, cache, reuse, stack)


def prepared_store(url: str) -> Store:
    store = migrated(url, TENANT)
    ensure_default_catalog(store, actor="bench")
    return store


def active_catalog(store: Store):
    return store.tenant(TENANT).coverage.catalog("enterprise")


# --------------------------------------------------------------------------- timing


def p50(fn: Callable[[], Any], runs: int) -> tuple[float, list[float], Any]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


@dataclass
class EngineResult:
    engine: str
    accounts: int
    detections: int
    mappings: int
    edges: int
    build: dict[str, Any] | None
    catalog_s: float
    techniques: int
    recompute_s: float
    recompute_runs: list[float]
    accounts_s: float
    union_s: float
    aggregate_rows: int
    union_overall: dict[str, Any]
    report_s: float
    gaps_s: float
    gaps_found: int
    load_avg: str
    problems: list[str] = field(default_factory=list)


def counts_of(store: Store) -> dict[str, int]:
    c = store.tenant(TENANT).counts()
    with store.engine.connect() as conn:
        edges = conn.execute(text("SELECT count(*) FROM edge")).scalar_one()
    return {**c, "edges": edges}


def measure(engine_name: str, store: Store, spec: Spec, runs: int,
            build_info: dict[str, Any] | None) -> EngineResult:
    ts = store.tenant(TENANT)
    counts = counts_of(store)
    t0 = time.perf_counter()
    catalog = active_catalog(store)
    catalog_s = time.perf_counter() - t0
    # warm-up (page cache, statement caches), not timed
    compute_accounts(ts, catalog)

    split: list[tuple[float, float, int, Any]] = []

    def full():
        a0 = time.perf_counter()
        per = compute_accounts(ts, catalog)
        a1 = time.perf_counter()
        union = tenant_union(ts, catalog, per)
        split.append((a1 - a0, time.perf_counter() - a1,
                      sum(sum(r.covered for r in c.techniques.values()) for c in per.values()),
                      union))
        return per, union

    load_before = load_avg()
    med, times, (per, union) = p50(full, runs)
    mid = sorted(range(len(times)), key=times.__getitem__)[len(times) // 2]
    acc_s, uni_s, agg_rows, _ = split[mid]
    problems = []
    if len(per) != spec.accounts:
        problems.append(f"{len(per)} accounts computed, {spec.accounts} expected")
    one = sorted(per)[len(per) // 2]
    report_s, _, _ = p50(lambda: compute(ts, catalog, account=one), max(runs, 5))
    gaps_s, _, g = p50(lambda: gaps(ts, catalog, account=one), max(runs, 5))
    return EngineResult(
        engine=engine_name, accounts=len(per), detections=counts.get("detection", 0),
        mappings=counts.get("mapping", 0), edges=counts["edges"], build=build_info,
        catalog_s=catalog_s, techniques=sum(1 for t in catalog.techniques.values() if t.active),
        recompute_s=med, recompute_runs=times, accounts_s=acc_s, union_s=uni_s,
        aggregate_rows=agg_rows, union_overall=union.overall, report_s=report_s, gaps_s=gaps_s,
        gaps_found=len(g.gaps), load_avg=f"{load_before} → {load_avg()}", problems=problems)


# --------------------------------------------------------------------------- verification


def snapshot_rows(store: Store) -> dict[str, list[tuple]]:
    """Every node, typed (coverage kinds), edge and graph_stats row, without the write times."""
    out = {}
    skip = {"first_seen", "last_seen", "updated_at", "refreshed_at"}
    with store.engine.connect() as conn:
        for t in (node, typed["cloud_account"], typed["detection"], typed["mapping"], edge):
            cols = [c for c in t.c if c.name not in skip]
            order = [c for c in t.primary_key.columns]
            out[t.name] = [tuple(r) for r in conn.execute(
                t.select().with_only_columns(*cols).order_by(*order))]
        out["graph_stats"] = [tuple(r) for r in conn.execute(
            graph_stats.select().with_only_columns(graph_stats.c.name, graph_stats.c.count)
            .order_by(graph_stats.c.name))]
    return out


def coverage_dump(store: Store) -> Any:
    ts = store.tenant(TENANT)
    catalog = active_catalog(store)
    per = compute_accounts(ts, catalog)
    union = tenant_union(ts, catalog, per)
    g = gaps(ts, catalog)
    return ({k: c.as_dict(techniques=True) for k, c in per.items()},
            union.as_dict(techniques=True), [x.as_dict() for x in g.gaps])


def verify(engine_name: str, pg: Postgres | None, tmp: Path, spec: Spec,
           stack: contextlib.ExitStack) -> list[str]:
    """Build a small tenant both ways and compare every stored row (but write times and
    events) and the coverage results."""
    results = {}
    for how in ("bulk", "write-path"):
        url, _ = database_url(engine_name, spec, how, pg, tmp, False, stack)
        store = prepared_store(url)
        build(store, spec, how)
        results[how] = (snapshot_rows(store), coverage_dump(store))
        store.close()
    problems = []
    (rows_b, cov_b), (rows_w, cov_w) = results["bulk"], results["write-path"]
    for name in rows_b:
        if rows_b[name] != rows_w[name]:
            problems.append(f"verify ({engine_name}): {name} rows differ "
                            f"({len(rows_b[name])} bulk, {len(rows_w[name])} write path)")
    if cov_b != cov_w:
        problems.append(f"verify ({engine_name}): coverage differs")
    n = sum(len(v) for v in rows_b.values())
    console.print(f"verify {engine_name}: {spec.accounts} x {spec.per_account}: {n:,} rows and "
                  f"the coverage of {spec.accounts} accounts + tenant + gaps compared: "
                  + ("[green]identical[/]" if not problems else "[red]DIFFERENT[/]"))
    return problems


# --------------------------------------------------------------------------- Sigma vs sigma-cli


SIGMA_RUN = """
import json, sys, time
from sigma.data import mitre_attack
mitre_attack.set_cache_dir(sys.argv[1]); mitre_attack.set_url(sys.argv[2])
from sigma.cli.main import main
sys.argv = ["sigma", "analyze", "attack", "--file-pattern", "*.y*ml", "count", sys.argv[3], sys.argv[4]]
t0 = time.perf_counter()
try:
    main()
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def sigma_cli(rules: Path, stix: Path, cache: Path, out: Path) -> dict[str, Any]:
    """sigma analyze attack count, in a child process; its own time (from main(), after the
    interpreter and its imports) and the process's wall time."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", SIGMA_RUN, str(cache), str(stix), str(out),
                           str(rules)], capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sigma-cli failed: {proc.stderr[-2000:]}")
    inner = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
    layer = json.loads(out.read_text())
    return {"seconds": inner, "wall_s": wall, "techniques": len({t["techniqueID"]
                                                                 for t in layer["techniques"]})}


def bastion_sigma(rules: Path, tmp: Path, n: int) -> dict[str, Any]:
    """Import every rule into a fresh SQLite tenant and compute the tenant's coverage; the
    database (migrated, default catalog loaded: `bastion init`) is prepared untimed."""
    from bastion.coverage.inventory import Options, active_catalog as inv_catalog, import_detections

    url = f"sqlite:///{tmp / f'sigma-{n}.db'}"
    store = prepared_store(url)
    ts = store.tenant(TENANT)
    t0 = time.perf_counter()
    catalog = inv_catalog(ts)
    t1 = time.perf_counter()
    result = import_detections(ts, [str(rules)], Options(actor="bench", skip_invalid=True),
                               catalog=catalog)
    t2 = time.perf_counter()
    cov = compute(ts, catalog)
    t3 = time.perf_counter()
    store.close()
    tot = result.totals()
    return {"seconds": t3 - t0, "catalog_s": t1 - t0, "import_s": t2 - t1, "compute_s": t3 - t2,
            "totals": tot, "status": result.status, "overall": cov.overall}


def run_sigma(args, tmp: Path) -> dict[str, Any] | None:
    rules = args.sigma_dir / "rules"
    if not rules.is_dir():
        console.print(f"Sigma: {rules} not found, skipped")
        return None
    files = sum(1 for p in rules.rglob("*") if p.suffix in (".yml", ".yaml"))
    console.rule(f"[bold]Sigma: {files:,} rule files under {rules}")
    cache = args.sigma_cache
    cache.mkdir(parents=True, exist_ok=True)
    out = tmp / "sigma-layer.json"
    if not any(cache.iterdir()):  # first use: sigma-cli reads and caches its ATT&CK data
        t0 = time.perf_counter()
        sigma_cli(rules, args.attack_stix, cache, out)
        console.print(f"sigma-cli warm-up (fills its ATT&CK cache, not timed): "
                      f"{time.perf_counter() - t0:.1f}s")
    ours, theirs = [], []
    for n in range(args.sigma_runs):  # alternate, so both see the same load
        ours.append(bastion_sigma(rules, tmp, n))
        theirs.append(sigma_cli(rules, args.attack_stix, cache, out))
        console.print(f"  run {n + 1}: Bastion {ours[-1]['seconds']:.2f}s "
                      f"(import {ours[-1]['import_s']:.2f}s, coverage {ours[-1]['compute_s']:.2f}s), "
                      f"sigma-cli {theirs[-1]['seconds']:.2f}s (process {theirs[-1]['wall_s']:.2f}s), "
                      f"load {load_avg()}")
    b = sorted(ours, key=lambda r: r["seconds"])[len(ours) // 2]
    s = sorted(theirs, key=lambda r: r["seconds"])[len(theirs) // 2]
    return {"files": files, "bastion": b, "sigma_cli": s, "ratio": b["seconds"] / s["seconds"],
            "load_avg": load_avg()}


# --------------------------------------------------------------------------- report


def report(results: list[EngineResult], sig: dict[str, Any] | None, spec: Spec,
           info: dict[str, Any], verify_problems: list[str]) -> None:
    from rich.table import Table

    console.rule("[bold]results")
    print_machine(info)
    full = spec.accounts >= 1000 and spec.per_account >= 1000
    for r in results:
        t = Table(title=f"{r.engine}: {spec.accounts:,} accounts x {spec.per_account:,} detections")
        t.add_column("measure")
        t.add_column("value", justify="right")
        t.add_column("target", justify="right")
        t.add_column("")
        if r.build:
            t.add_row(f"build ({r.build['how']})", f"{r.build['load_s']:.1f} s + ANALYZE "
                      f"{r.build['analyze_s']:.1f} s", "", f"load {r.build['load_avg']}")
        else:
            t.add_row("build", "reused (--reuse)", "", "")
        t.add_row("tenant rows: mappings / detections / edges",
                  f"{r.mappings:,} / {r.detections:,} / {r.edges:,}", "", "")
        t.add_row("accounts / active techniques", f"{r.accounts:,} / {r.techniques:,}", "", "")
        t.add_row("catalog load (once per command)", f"{r.catalog_s:.2f} s", "", "")
        t.add_row(f"full recompute, p50 of {len(r.recompute_runs)}", f"{r.recompute_s:.2f} s",
                  f"< {TARGET_RECOMPUTE_S:g} s" + ("" if full else " (1M)") if r.engine == "postgresql" else "",
                  (verdict(r.recompute_s < TARGET_RECOMPUTE_S) + ("" if full else " (below 1M)"))
                  if r.engine == "postgresql" else "")
        t.add_row("  runs", " ".join(f"{x:.2f}" for x in r.recompute_runs), "", "")
        t.add_row("  compute_accounts / tenant_union", f"{r.accounts_s:.2f} / {r.union_s:.3f} s", "", "")
        t.add_row("  (account, technique) rows covered", f"{r.aggregate_rows:,}", "", "")
        o = r.union_overall
        t.add_row("  tenant overall", f"{o['covered']}/{o['total']} = {o['percent']}%", "", "")
        t.add_row("one account's report (compute), p50", f"{r.report_s * 1000:.0f} ms", "", "")
        t.add_row("one account's gaps, p50", f"{r.gaps_s * 1000:.0f} ms ({r.gaps_found} gaps)", "", "")
        t.add_row("load average before → after", r.load_avg, "", "")
        console.print(t)
        for p in r.problems:
            console.print(f"[red]CHECK FAILED ({r.engine}):[/] {p}")
    for p in verify_problems:
        console.print(f"[red]CHECK FAILED:[/] {p}")
    if sig:
        b, s = sig["bastion"], sig["sigma_cli"]
        tot = b["totals"]
        t = Table(title=f"Sigma: {sig['files']:,} files, SQLite, p50 of the runs")
        t.add_column("measure")
        t.add_column("value", justify="right")
        t.add_column("target", justify="right")
        t.add_column("")
        t.add_row("imported detections / mappings / skipped / rejected files",
                  f"{tot['detections']:,} / {tot['mappings']:,} / {tot['skipped']:,} / "
                  f"{tot['rejected']:,}", "", "")
        t.add_row("Bastion: catalog + import + coverage", f"{b['seconds']:.2f} s", "", "")
        t.add_row("  import / coverage", f"{b['import_s']:.2f} / {b['compute_s']:.2f} s", "", "")
        t.add_row("  tenant overall", f"{b['overall']['covered']}/{b['overall']['total']} = "
                  f"{b['overall']['percent']}%", "", "")
        t.add_row("sigma-cli analyze attack count", f"{s['seconds']:.2f} s", "", "")
        t.add_row("  process wall time (+ interpreter, imports)", f"{s['wall_s']:.2f} s", "", "")
        t.add_row("Bastion / sigma-cli", f"{sig['ratio']:.2f}", "≤ 1", verdict(sig["ratio"] <= 1))
        t.add_row("load average at the end", sig["load_avg"], "", "")
        console.print(t)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--detections-per-account", type=int, default=1000)
    ap.add_argument("--engines", default="sqlite,postgresql", help="comma-separated")
    ap.add_argument("--pg-url", default=os.environ.get("BASTION_BENCH_PG_URL"),
                    help="PostgreSQL server to create databases on (default $BASTION_BENCH_PG_URL, "
                         "else a throwaway cluster)")
    ap.add_argument("--build", choices=("bulk", "write-path"), default="bulk",
                    help="how the synthetic tenant is loaded (default bulk, see bulk_apply)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the built databases and reuse them when they exist")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "bastion-bench-coverage",
                    help="where the SQLite databases are kept with --reuse")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of the full recompute")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--verify", action="store_true",
                    help="first build a small tenant (4 x 50) both ways on each engine and compare")
    ap.add_argument("--no-synthetic", action="store_true", help="only the Sigma part")
    ap.add_argument("--no-sigma", action="store_true", help="skip the Sigma part")
    ap.add_argument("--sigma-dir", type=Path, default=SIGMA_DIR)
    ap.add_argument("--sigma-runs", type=int, default=3)
    ap.add_argument("--attack-stix", type=Path, default=ATTACK_STIX,
                    help="the ATT&CK STIX bundle sigma-cli reads instead of downloading one")
    ap.add_argument("--sigma-cache", type=Path,
                    default=Path(tempfile.gettempdir()) / "bastion-bench-sigma-cache",
                    help="sigma-cli's private ATT&CK cache (filled once)")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    engines = engine_list(ap, args.engines, allow_none=True)
    if args.no_synthetic:
        engines = []

    console.width = max(console.width, 110)
    code = code_version()
    results: list[EngineResult] = []
    verify_problems: list[str] = []
    sig = None
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-cov-"))
        stack.callback(shutil.rmtree, tmp, True)
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        cache = args.cache_dir if args.reuse else tmp
        pg = Postgres(stack, args.pg_url) if "postgresql" in engines else None
        if pg and args.reuse and not args.pg_url:
            console.print("[yellow]--reuse: a throwaway cluster does not outlive the run; give "
                          "--pg-url to keep the PostgreSQL database[/]")
        spec = None
        for engine_name in engines:
            console.rule(f"[bold]{engine_name}")
            if spec is None:  # the catalog's techniques, from a migrated scratch database
                s = prepared_store(f"sqlite:///{tmp / 'catalog.db'}")
                cat = active_catalog(s)
                s.close()
                techs = sorted(t.id for t in cat.techniques.values() if t.active)
                random.Random(args.seed).shuffle(techs)  # popularity order
                spec = Spec(args.accounts, args.detections_per_account, args.seed, techs, cat.version)
                console.print(f"ATT&CK {cat.domain} {cat.version}: {len(techs)} active techniques "
                              f"and sub-techniques")
            if args.verify:
                small = Spec(4, 50, args.seed, spec.techniques, spec.version)
                verify_problems += verify(engine_name, pg, tmp, small, stack)
            url, built = database_url(engine_name, spec, args.build, pg, cache, args.reuse, stack)
            if built:
                store = Store(url)
                console.print(f"reusing {store.engine.url.render_as_string(hide_password=True)}")
                info = None
            else:
                store = prepared_store(url)
                console.print(f"building {spec.accounts:,} x {spec.per_account:,} ({args.build}) "
                              f"into {store.engine.url.render_as_string(hide_password=True)}, "
                              f"load {load_avg()}")
                info = build(store, spec, args.build)
                mark_built(store)
                console.print(f"built in {info['load_s']:.1f}s + ANALYZE {info['analyze_s']:.1f}s")
            results.append(measure(engine_name, store, spec, args.runs, info))
            r = results[-1]
            console.print(f"full recompute p50 {r.recompute_s:.2f}s (runs "
                          + ", ".join(f"{x:.2f}" for x in r.recompute_runs)
                          + f"), report {r.report_s * 1000:.0f} ms, gaps {r.gaps_s * 1000:.0f} ms, "
                          f"load {load_avg()}")
            store.close()
        if not args.no_sigma and args.sigma_dir.is_dir():
            sig = run_sigma(args, tmp)
        info = machine(pg, code)
    report(results, sig, spec or Spec(args.accounts, args.detections_per_account, args.seed, [], ""),
           info, verify_problems)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "args": {k: str(v) for k, v in vars(args).items()},
            "results": [r.__dict__ for r in results], "sigma": sig,
            "verify_problems": verify_problems}, indent=2, default=str))
    problems = verify_problems + [p for r in results for p in r.problems]
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
