#!/usr/bin/env python
"""The 25 query patterns (bastion/store/patterns.py) at scale: their time and the index each
plan uses with real statistics, per engine.

For each engine it fills one tenant of a fresh migrated database through the write path with
`--entities` entities (a third assets, a third ports on them, a third risks on the ports, with
their HAS_PORT / HAS_VULNERABILITY edges and created events: about 2.7 rows per entity across
node, typed, edge and event tables) plus a second tenant of a tenth of that, runs ANALYZE, then
for each pattern captures the statement the library sends, EXPLAINs it (no planner settings
changed) and times the library call (median of --repeat runs). The floor is the median round
trip of `SELECT 1` on the same engine in the same run; each pattern's ratio is its time over it.

    python bench/query_patterns.py [--entities 333334] [--engines sqlite,postgresql]
                                   [--pg-url URL] [--repeat 7] [--json FILE]

PostgreSQL: --pg-url or $BASTION_BENCH_PG_URL (a role that may CREATE DATABASE).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.schema.batch import Batch  # noqa: E402
from bastion.store import migrate, patterns  # noqa: E402
from bastion.store.store import Store  # noqa: E402


def fill(store: Store, name: str, n: int, sample: bool) -> int:
    store.add_tenant(name)
    t = store.tenant(name)
    rows = 0
    chunk = 10000
    for start in range(0, n, chunk):
        b = Batch()
        for i in range(start, min(n, start + chunk)):
            host = "www.acme.example" if sample and i == 0 else f"h{i}.{name}.example"
            a = b.add("asset", identifier=host)
            p = b.add("port", asset=a, number=443 if sample and i == 0 else 1 + i % 1000,
                      state="open" if i % 7 else "filtered")
            b.add("risk", target=p, name="weak tls" if sample and i == 0 else f"finding {i % 500}",
                  severity=("low", "medium", "high", "critical")[i % 4],
                  status=("open", "triage", "remediated", "accepted")[i % 4], priority=i % 100,
                  cve=f"CVE-2021-{44228 + i % 2000}")
            b.link("HAS_PORT", a, p)
        result = t.apply(b, actor="bench", source="import:bench")
        rows += result.events
    return rows


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(url: str, engine: str, entities: int, repeat: int) -> dict:
    store = Store(url)
    migrate.upgrade(store.engine)
    t0 = time.perf_counter()
    fill(store, "other", max(1, entities // 10), False)
    events = fill(store, "acme", entities, True)
    load = time.perf_counter() - t0
    patterns.analyze(store)
    t = store.tenant("acme")
    last = t.events(after_seq=events - 1, limit=1)[-1]
    keys = {"cursor": t.list("asset", limit=1).next_cursor, "seq": events - 50,
            "correlation_id": last.correlation_id}
    with store.engine.connect() as conn:
        floor = timed(lambda: conn.execute(text("SELECT 1")).scalar(), max(repeat, 50))
    out = {"engine": engine, "entities": entities, "load_seconds": round(load, 1),
           "floor_ms": floor * 1000, "patterns": []}
    for p in patterns.PATTERNS:
        captured = patterns.statement_of(store, t, p, keys)
        used, plan = patterns.explain(store, t.tenant_id, captured)
        seconds = timed(lambda: p.run(store, t, keys), repeat)
        out["patterns"].append({"name": p.name, "indexes": sorted(used), "ms": seconds * 1000,
                                "ratio": seconds / floor, "plan": plan,
                                "statement": " ".join(captured.statement.split())})
        print(f"{engine:10} {p.name:22} {seconds * 1000:9.2f} ms  x{seconds / floor:8.0f} of the "
              f"floor  {', '.join(sorted(used)) or 'no index'}", flush=True)
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=333334)
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=os.environ.get("BASTION_BENCH_PG_URL"))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json")
    args = ap.parse_args()
    results = []
    for engine in args.engines.split(","):
        if engine == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                results.append(run(f"sqlite:///{tmp}/bench.db", engine, args.entities, args.repeat))
        else:
            if not args.pg_url:
                sys.exit("PostgreSQL: give --pg-url or set BASTION_BENCH_PG_URL")
            admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
            name = f"bastion_bench_patterns_{os.getpid()}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
                results.append(run(url, engine, args.entities, args.repeat))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
