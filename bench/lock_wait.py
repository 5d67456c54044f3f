#!/usr/bin/env python
"""Writers behind an import: how long an analyst's single change waits behind a running import.

For each engine:

1. a fresh migrated database with one risk the import will not touch (the analyst's);
2. `bastion import FILE` of a synthetic nuclei file (bench/import_nuclei.py's generator, N lines)
   started in a subprocess;
3. once the import's run is `running` and `--delay` seconds have passed (it is then inside its
   file's transaction), `--changes` times every `--every` seconds while it runs, `risk
   set-status` of one of those risks through the library (its connection already open, as a
   server's), with a lock timeout long enough not to fail: how long each took in all;
4. the feed afterwards: gap-free (as many events as the counter says) and the analyst's event
   numbered before or after the import's, as their commits came.

    python bench/lock_wait.py [--lines 100000] [--engines sqlite,postgresql] [--pg-url URL]
                              [--delay 2] [--changes 5] [--every 5] [--seed 7]

PostgreSQL: --pg-url or $BASTION_BENCH_PG_URL (a role that may CREATE DATABASE), else a
throwaway cluster (tests/pg_cluster.py) started for the run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import import_nuclei as nb  # noqa: E402  (puts the repository and tests/ on sys.path)
from write_path import Postgres, code_version, console, engine_list  # noqa: E402

from sqlalchemy import text  # noqa: E402

from bastion.risks import lifecycle  # noqa: E402

TENANT = "default"


def seed(store, tmp: Path, n: int) -> list[str]:
    """`n` risks on hosts the generated import never names."""
    from bastion.ingest import runner

    path = tmp / "seed.jsonl"
    path.write_text("".join(
        f'{{"template-id":"analyst","type":"http","host":"analyst{i}.example.net",'
        f'"matched-at":"https://analyst{i}.example.net/","info":{{"name":"Analyst risk",'
        f'"severity":"high"}}}}\n' for i in range(n)))
    tenant = store.tenant(TENANT)
    runner.import_paths(tenant, [str(path)], runner.Options(actor="bench", format="nuclei"))
    return [rec.key for rec in tenant.list("risk").records]


def wait_for_running(tenant, proc: subprocess.Popen) -> int:
    while True:
        running = [r for r in tenant.runs.list() if r.status == "running"]
        if running:
            return running[0].id
        if proc.poll() is not None:
            raise SystemExit(f"the import ended before it was seen running: {proc.stderr.read()}")
        time.sleep(0.05)


def run_engine(engine_name: str, gen: nb.Generated, args, pg: Postgres | None, tmp: Path) -> dict:
    url = nb.fresh_url(engine_name, "lockwait", pg, tmp)
    store = nb.migrated(url, TENANT)
    keys = seed(store, tmp, args.changes)
    told: list[float] = []
    from bastion.store.store import Store

    analyst = Store(url, lock_timeout=86400, on_wait=lambda holder, timeout: told.append(time.perf_counter()))
    analyst.tenant(TENANT).count("risk")  # its connection is open, as a server's would be
    env = {**os.environ, "BASTION_DATABASE_URL": url, "BASTION_ACTOR": "importer"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bastion.cli.main", "import", str(gen.path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_id = wait_for_running(store.tenant(TENANT), proc)
    time.sleep(args.delay)
    asked, waits = [], []
    for key in keys:  # one change every --every seconds while the import runs
        if proc.poll() is not None:
            break
        asked.append(time.perf_counter() - t0)
        start = time.perf_counter()
        lifecycle.set_status(analyst.tenant(TENANT), key, "accepted", reason=None, comment=None,
                             actor="analyst")
        waits.append(time.perf_counter() - start)
        time.sleep(args.every)
    proc.wait()
    ended = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(f"the import failed ({proc.returncode}): {proc.stderr.read()}")
    out = {"engine": engine_name, "run": run_id, "import_s": ended - t0, "asked_at_s": asked,
           "waits_s": waits, "told": len(told)}
    tenant = store.tenant(TENANT)
    with store.engine.connect() as conn:
        out["events"] = conn.execute(text("SELECT count(*) FROM event")).scalar_one()
    out["gap_free"] = out["events"] == tenant.last_seq()
    mine = [e.seq for k in keys for e in tenant.history(k) if e.event_type == "risk.status_changed"]
    imported = [e.seq for e in tenant.events(after_seq=max(mine), limit=1)]
    out["analyst_first"] = bool(mine) and bool(imported)  # the import committed after them
    analyst.close()
    store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=100_000, help="nuclei lines in the import")
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=os.environ.get("BASTION_BENCH_PG_URL"))
    ap.add_argument("--delay", type=float, default=2.0,
                    help="seconds after the run is seen running before the analyst's change")
    ap.add_argument("--changes", type=int, default=5, help="analyst changes made during the import")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between them")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    engines = engine_list(ap, args.engines)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bastion-lockwait-")))
        gen = nb.generate(tmp, args.lines, max(1, args.lines // 20), args.seed, "spray", False)
        console.print(f"{gen.findings:,} lines, {gen.bytes / 2**20:.0f} MiB; code {code_version()}; "
                      f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
        pg = Postgres(stack, args.pg_url) if "postgresql" in engines else None
        for engine_name in engines:
            r = run_engine(engine_name, gen, args, pg, tmp)
            waits = sorted(r["waits_s"])
            console.print(
                f"{engine_name}: import {r['import_s']:.1f} s ({r['events']:,} events, run {r['run']}); "
                f"{len(waits)} analyst changes asked at "
                f"{', '.join(f'{a:.0f}' for a in r['asked_at_s'])} s took median "
                f"{waits[len(waits) // 2]:.2f} s, max {waits[-1]:.2f} s; told of a wait {r['told']} times")
            console.print(f"  feed gap-free: {r['gap_free']}; the analyst's event numbered "
                          f"{'before' if r['analyst_first'] else 'after'} the import's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
