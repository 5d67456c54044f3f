#!/usr/bin/env python
"""Scanner-import benchmark: `bastion import` of a large nuclei JSONL file, end to end.

1. Generates a nuclei v3 JSON-lines file (fixed seed): N findings over M hosts from a pool of
   about 2,000 templates (mostly info/low, about 10% with a CVE and a CVSS score), where each
   (host, template) is observed about 3 times with different matched-at URLs.
2. For each engine, in a child process per measured step (so peak RSS figures do not mix):
   imports the file into a fresh migrated database with `import_paths`, then imports it again
   into the same database — as `bastion import` does, where the unchanged file is reused (not
   parsed: only `last_seen` moves) — and then once more in full (`--no-reuse`: parsed and
   merged, every risk gets its evidence merged, nothing is created).
3. The floor, in the same run on the same engine: the risk rows the import stored, bulk-inserted
   into a plain table with the same columns as the `risk` table (SQLite: sqlite3 executemany in
   one transaction; PostgreSQL: COPY as the owner). For information it also bulk-inserts every
   node, typed and edge row (and then the events) into a fresh migrated database, as
   bench/write_path.py does.

    python bench/import_nuclei.py [--findings 100000] [--hosts N/20] [--million] [--gzip]
                                  [--engines sqlite,postgresql] [--pg-url URL] [--seed 7]
                                  [--order spray|shuffled] [--profile] [--json FILE]

PostgreSQL: --pg-url or $BASTION_BENCH_PG_URL (a role that may CREATE DATABASE), else a
throwaway cluster (tests/pg_cluster.py) started for the run.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # write_path: its database helpers and report bits

import write_path as wp  # noqa: E402  (puts the repository and tests/ on sys.path)
from write_path import print_machine, Postgres, bulk_insert, code_version, console, machine, read_rows, verdict  # noqa: E402

TARGET_RATE = 20_000  # findings/s, first import
TARGET_REIMPORT = 3.0  # first import / re-import
TARGET_RSS_MIB = 300e6 / 2**20  # peak RSS of an import of 1M lines: 300 MB (10⁶ bytes) = 286.1 MiB
TENANT = "default"


# --------------------------------------------------------------------------- synthetic nuclei


WORDS = ("apache", "nginx", "tomcat", "jenkins", "grafana", "kibana", "gitlab", "jira", "confluence",
         "wordpress", "drupal", "joomla", "php", "spring", "struts", "iis", "exchange", "citrix",
         "fortinet", "paloalto", "f5", "vmware", "oracle", "weblogic", "jboss", "solr", "elastic",
         "redis", "mongodb", "rabbitmq", "minio", "harbor", "sonarqube", "nexus", "airflow",
         "zabbix", "prometheus", "traefik", "keycloak", "phpmyadmin", "laravel", "django", "rails",
         "express", "swagger", "graphql", "aws", "azure", "gcp", "s3", "firebase", "docker")
ISSUES = ("detect", "panel", "login", "default-login", "exposure", "config", "version",
          "debug", "unauth", "xss", "sqli", "lfi", "rce", "ssrf", "open-redirect", "takeover",
          "misconfig", "listing", "disclosure", "backup", "env-file", "git-config", "api-docs",
          "status-page", "metrics", "actuator", "install", "setup", "weak-cipher", "headers")
TAGS = ("tech", "panel", "exposure", "misconfig", "cve", "login", "default-login", "xss", "sqli",
        "lfi", "rce", "ssrf", "redirect", "takeover", "config", "disclosure", "ssl", "dns", "osint",
        "kev", "intrusive", "file", "token", "unauth", "devops", "cloud", "iot", "network")
# Severity mix of a non-CVE template (nuclei-templates is mostly info and low detections).
PLAIN_SEVERITY = (("info", 62), ("low", 18), ("medium", 12), ("high", 6), ("critical", 2))
CVE_SEVERITY = (("medium", 30), ("high", 45), ("critical", 25))
CVSS_RANGE = {"medium": (4.0, 6.9), "high": (7.0, 8.9), "critical": (9.0, 10.0)}
PATHS = ("", "admin/", "login", ".git/config", ".env", "api/v1/", "swagger-ui.html", "server-status",
         "wp-login.php", "phpinfo.php", "actuator/health", "robots.txt", "backup.zip", "config.json",
         "graphql", "console/", "debug/vars", "metrics", ".DS_Store", "cgi-bin/", "static/app.js",
         "index.php", "api/swagger.json", "jenkins/login", "manager/html", "solr/admin/")
APEXES = ("example.com", "acme-corp.net", "globex.io", "initech.org", "umbrella.co.uk", "hooli.dev",
          "stark-industries.com", "wayne.cloud", "cyberdyne.de", "tyrell.fr")
MATCHERS = (None, None, None, "version", "status", "body", "header", "favicon", "title", "word")


@dataclass
class Template:
    id: str
    name: str
    severity: str
    tags: list[str]
    cve: str | None = None
    cvss: float | None = None
    cwe: list[str] | None = None
    description: str | None = None
    references: list[str] | None = None
    path: str = ""

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.name, "author": ["pdteam"], "tags": self.tags,
                                "severity": self.severity}
        if self.description:
            info["description"] = self.description
        if self.references:
            info["reference"] = self.references
        if self.cve:
            info["classification"] = {"cve-id": [self.cve.lower()], "cwe-id": self.cwe,
                                      "cvss-metrics": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                                      "cvss-score": self.cvss}
        elif self.cwe:
            info["classification"] = {"cve-id": None, "cwe-id": self.cwe}
        return info


def templates(rng: random.Random, count: int = 2000) -> list[Template]:
    out: list[Template] = []
    ids: set[str] = set()
    while len(out) < count:
        if rng.random() < 0.10:
            year = rng.randrange(2014, 2026)
            tid = f"CVE-{year}-{rng.randrange(1000, 50000)}"
            if tid in ids:
                continue
            sev = rng.choices(*zip(*CVE_SEVERITY))[0]
            lo, hi = CVSS_RANGE[sev]
            t = Template(tid, f"{rng.choice(WORDS).title()} - {rng.choice(ISSUES).replace('-', ' ')}",
                         sev, ["cve", f"cve{year}", rng.choice(TAGS)], cve=tid,
                         cvss=round(rng.uniform(lo, hi), 1), cwe=[f"cwe-{rng.randrange(20, 1000)}"],
                         description="A vulnerability in the product allows a remote attacker to "
                                     "do harm. " * rng.randrange(1, 4),
                         references=[f"https://nvd.nist.gov/vuln/detail/{tid}"])
        else:
            tid = f"{rng.choice(WORDS)}-{rng.choice(ISSUES)}"
            if rng.random() < 0.4:
                tid += f"-{rng.randrange(2, 99)}"
            if tid in ids:
                continue
            sev = rng.choices(*zip(*PLAIN_SEVERITY))[0]
            t = Template(tid, tid.replace("-", " ").title(), sev,
                         rng.sample(TAGS, rng.randrange(1, 4)),
                         cwe=[f"cwe-{rng.randrange(20, 1000)}"] if rng.random() < 0.3 else None,
                         description=(f"Detects {tid.replace('-', ' ')}." if rng.random() < 0.5
                                      else None))
        t.path = f"http/{'cves/' + tid[4:8] if t.cve else rng.choice(TAGS)}/{tid.lower()}.yaml"
        ids.add(tid)
        out.append(t)
    return out


@dataclass
class Generated:
    path: Path
    findings: int
    hosts: int
    risks: int  # distinct (host, template) pairs in the file
    bytes: int
    seconds: float


def generate(out_dir: Path, findings: int, hosts: int, seed: int, order: str,
             compress: bool) -> Generated:
    """N nuclei v3 results over M hosts, deterministic for a seed.

    Each host is given distinct templates (popular ones more often: a Zipf-like pick over the
    pool) and each (host, template) is observed 1 + Geometric times, 3 on average, with
    different matched-at paths. `spray` order follows nuclei's default template-spray scan (per
    template, every host that matched, its observations together); `shuffled` orders all lines
    at random, so most repeated observations land in different chunks of the importer."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    pool = templates(rng)
    weights = [1 / (i + 10) ** 1.1 for i in range(len(pool))]  # long tail of template popularity
    cum = list(itertools.accumulate(weights))
    indexes = range(len(pool))
    host_names = [f"h{i}.{APEXES[i % len(APEXES)]}" for i in range(hosts)]
    ips = [f"{rng.choice((3, 13, 34, 52, 104, 151, 185, 203))}.{rng.randrange(256)}."
           f"{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(max(1, hosts * 2 // 3))]
    host_ip = [rng.choice(ips) for _ in range(hosts)]  # some hosts share an address
    host_port = [rng.choice((443, 443, 443, 80, 8443, 8080)) for _ in range(hosts)]

    # Observations: (template index, host index, repeat number), N of them.
    obs: list[tuple[int, int, int]] = []
    risks = 0
    per_host = findings / hosts  # observations per host, ~3 per distinct risk
    h = 0
    while len(obs) < findings:
        want = max(1, round(rng.gauss(per_host, per_host / 3)))
        chosen: set[int] = set()
        got = 0
        while got < want and len(obs) < findings:
            ti = rng.choices(indexes, cum_weights=cum)[0] if len(chosen) < len(pool) else None
            if ti is None or ti in chosen:
                if len(chosen) >= len(pool):
                    break
                continue
            chosen.add(ti)
            risks += 1
            repeats = 1
            while rng.random() < 2 / 3 and repeats < 30:  # geometric, mean 3
                repeats += 1
            for r in range(min(repeats, findings - len(obs))):
                obs.append((ti, h % hosts, r))
                got += 1
        h += 1
    if order == "shuffled":
        rng.shuffle(obs)
    else:
        obs.sort(key=lambda o: (o[0], o[1], o[2]))

    name = "nuclei.jsonl" + (".gz" if compress else "")
    path = out_dir / name
    opener = (lambda p: gzip.open(p, "wt", compresslevel=1)) if compress else (lambda p: open(p, "w"))
    start = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
    step = timedelta(seconds=3600 * 4 / max(1, findings))  # a 4-hour scan
    infos = [t.info() for t in pool]
    with opener(path) as f:
        for i, (ti, hi, r) in enumerate(obs):
            t = pool[ti]
            port = host_port[hi]
            scheme = "http" if port in (80, 8080) else "https"
            default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
            base = f"{scheme}://{host_names[hi]}" + ("" if default else f":{port}")
            p = PATHS[(ti * 7 + r * 13 + hi) % len(PATHS)] if r else PATHS[ti % len(PATHS)]
            if r >= len(PATHS) // 2:
                p += f"?id={r}"
            line = {
                "template": t.path, "template-url": f"https://cloud.projectdiscovery.io/public/{t.id}",
                "template-id": t.id, "template-path": f"/root/nuclei-templates/{t.path}",
                "info": infos[ti], "type": "http", "host": base, "port": str(port),
                "scheme": scheme, "url": base, "matched-at": f"{base}/{p}",
                "ip": host_ip[hi], "timestamp": (start + step * i).isoformat(),
                "matcher-status": True,
            }
            matcher = MATCHERS[(ti + r) % len(MATCHERS)]
            if matcher:
                line["matcher-name"] = matcher
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
    return Generated(path, len(obs), hosts, risks, path.stat().st_size, time.perf_counter() - t0)


# --------------------------------------------------------------------------- worker (child process)


def vm_hwm_mb() -> float:
    """This process's peak resident set (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker(url: str, file: str, out: str, profile: bool, reuse: bool = True) -> int:
    """One import of `file` into the database at `url`; figures as JSON into `out`."""
    from bastion.ingest.runner import Options, import_paths
    from bastion.store.store import Store

    store = Store(url)
    ts = store.tenant(TENANT)
    baseline = vm_rss_mb()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    result = import_paths(ts, [file], Options(actor="bench", reuse=reuse))
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - t0
    fr = result.files[0]
    Path(out).write_text(json.dumps({
        "seconds": seconds, "status": result.status, "totals": result.totals(),
        "errors": [e for f in result.files for e in f.errors][:10],
        "file": {k: getattr(fr, k) for k in ("records", "findings", "created", "updated",
                                             "unchanged", "reopened", "skipped", "reused_run")},
        "peak_rss_mb": vm_hwm_mb(), "baseline_rss_mb": baseline,
    }))
    store.close()
    if profiler:
        wp.print_profile(f"import (N={fr.records:,})", profiler)
    return 0


def run_worker(url: str, file: Path, tmp: Path, profile: bool, reuse: bool = True) -> dict[str, Any]:
    out = tmp / f"worker-{time.monotonic_ns()}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", url, str(file), str(out)]
    if profile:
        cmd.append("--profile")
    if not reuse:
        cmd.append("--no-reuse")
    subprocess.run(cmd, check=True)
    data = json.loads(out.read_text())
    out.unlink()
    if data["status"] != "succeeded":
        raise SystemExit(f"import {data['status']}: {data['errors']}")
    return data


# --------------------------------------------------------------------------- one engine


@dataclass
class Result:
    engine: str
    findings: int
    hosts: int
    risks: int
    assets: int
    created: int
    first_updated: int  # a risk seen again in a later chunk, an asset in several chunks …
    first_unchanged: int
    events: int
    first_s: float
    first_rss_mb: float
    baseline_rss_mb: float
    re_s: float
    re_rss_mb: float
    re_updated: int
    re_unchanged: int
    re_events: int
    full_re_s: float
    full_re_rss_mb: float
    full_re_updated: int
    full_re_unchanged: int
    full_re_events: int
    floor_s: float
    floor_rows: int
    full_floor_s: float
    full_floor_rows: int
    full_floor_events_s: float
    profiled: bool
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.findings / self.first_s

    @property
    def re_ratio(self) -> float:
        return self.first_s / self.re_s

    @property
    def floor_ratio(self) -> float:
        return self.first_s / self.floor_s


def fresh_url(engine_name: str, suffix: str, pg: Postgres | None, tmp: Path) -> str:
    return pg.fresh(suffix) if engine_name == "postgresql" else f"sqlite:///{tmp / f'{suffix}.db'}"


def migrated(url: str, tenant: str):
    from bastion.store import migrate
    from bastion.store.store import Store

    store = Store(url)
    migrate.upgrade(store.engine, "head")
    store.ensure_tenant(tenant)
    return store


def plain_risk_table():
    """A table with the `risk` table's columns and primary key, and nothing else: no foreign
    key, check or secondary index."""
    from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, Table

    from bastion.store.tables import typed

    risk = typed["risk"]
    return Table("risk_floor", MetaData(),
                 *(Column(c.name, c.type, nullable=c.nullable) for c in risk.c),
                 PrimaryKeyConstraint(*(c.name for c in risk.primary_key.columns)))


def event_count(store) -> int:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM event")).scalar_one()


def run_engine(engine_name: str, gen: Generated, args, pg: Postgres | None, tmp: Path) -> Result:
    from bastion.store.store import Store
    from bastion.store.tables import edge, event, node, typed

    console.rule(f"[bold]{engine_name}")
    problems: list[str] = []
    url = fresh_url(engine_name, "import", pg, tmp)
    store = migrated(url, TENANT)
    store.close()

    first = run_worker(url, gen.path, tmp, args.profile)
    console.print(f"first import: {first['seconds']:.2f}s, peak RSS {first['peak_rss_mb']:.0f} MiB")
    store = Store(url)
    counts = store.tenant(TENANT).counts()
    events_first = event_count(store)
    store.close()
    again = run_worker(url, gen.path, tmp, False)
    console.print(f"re-import:    {again['seconds']:.2f}s, peak RSS {again['peak_rss_mb']:.0f} MiB "
                  f"(reused import {again['file']['reused_run']})")
    store = Store(url)
    events_again = event_count(store) - events_first
    store.close()
    full = run_worker(url, gen.path, tmp, False, reuse=False)
    console.print(f"re-import in full (--no-reuse): {full['seconds']:.2f}s, "
                  f"peak RSS {full['peak_rss_mb']:.0f} MiB")
    store = Store(url)
    events_full = event_count(store) - events_first - events_again

    f1, f2 = first["file"], again["file"]
    if f1["records"] != gen.findings or f1["findings"] != gen.findings:
        problems.append(f"first import read {f1['records']} records / {f1['findings']} findings, "
                        f"generated {gen.findings}")
    if counts["risk"] != gen.risks:
        problems.append(f"stored {counts['risk']} risks, generated {gen.risks} distinct (host, template)")
    f3 = full["file"]
    if f2["reused_run"] is None:
        problems.append("the re-import of the unchanged file was not reused")
    if f2["created"] or f3["created"] or events_again or events_full:
        problems.append(f"re-imports created {f2['created']} + {f3['created']} entities, "
                        f"{events_again} + {events_full} events")

    # Floor: the risk rows, into a plain table with the same columns (a fresh database).
    risk_rows = read_rows(store, (typed["risk"],))["risk"]
    kinds = [k for k, n in counts.items() if k in typed and n]
    tables = (node, *(typed[k] for k in kinds), edge)
    all_rows = read_rows(store, tables)
    events = read_rows(store, (event,))
    store.close()
    plain = plain_risk_table()
    floor_store = Store(fresh_url(engine_name, "floor", pg, tmp))
    plain.create(floor_store.engine)
    floor_s = bulk_insert(floor_store, (plain,), {plain.name: risk_rows})
    console.print(f"floor:        {floor_s:.2f}s ({len(risk_rows):,} risk rows)")
    # Information: every stored row into a fresh migrated database, as write_path.py does.
    full_store = migrated(fresh_url(engine_name, "fullfloor", pg, tmp), TENANT)
    full_s = bulk_insert(full_store, tables, all_rows)
    full_store = Store(full_store.engine.url.render_as_string(hide_password=False))
    full_events_s = bulk_insert(full_store, (event,), events)
    console.print(f"full floor:   {full_s:.2f}s ({sum(map(len, all_rows.values())):,} node, typed and "
                  f"edge rows) + {full_events_s:.2f}s ({len(events['event']):,} events)")
    return Result(
        engine=engine_name, findings=gen.findings, hosts=gen.hosts, risks=counts["risk"],
        assets=counts["asset"], created=f1["created"], first_updated=f1["updated"],
        first_unchanged=f1["unchanged"], events=events_first,
        first_s=first["seconds"], first_rss_mb=first["peak_rss_mb"],
        baseline_rss_mb=first["baseline_rss_mb"], re_s=again["seconds"],
        re_rss_mb=again["peak_rss_mb"], re_updated=f2["updated"], re_unchanged=f2["unchanged"],
        re_events=events_again, full_re_s=full["seconds"], full_re_rss_mb=full["peak_rss_mb"],
        full_re_updated=f3["updated"], full_re_unchanged=f3["unchanged"], full_re_events=events_full,
        floor_s=floor_s, floor_rows=len(risk_rows), full_floor_s=full_s,
        full_floor_rows=sum(map(len, all_rows.values())), full_floor_events_s=full_events_s,
        profiled=args.profile, problems=problems)


# --------------------------------------------------------------------------- report


def report(results: list[Result], gen: Generated, info: dict[str, Any], args) -> None:
    console.rule("[bold]results")
    from rich.table import Table

    print_machine(info)
    console.print(f"file: {gen.findings:,} nuclei results, {gen.hosts:,} hosts, {gen.risks:,} distinct "
                  f"(host, template), {gen.bytes / 2**20:,.1f} MiB{' gzip' if args.gzip else ''}, "
                  f"order {args.order}, seed {args.seed}")
    rss_target = f"< {TARGET_RSS_MIB:.0f} MiB = 300 MB (1M lines)"
    for r in results:
        t = Table(title=f"{r.engine}: {r.findings:,} findings"
                  + (" [red](first import under cProfile: times inflated)[/]" if r.profiled else ""))
        t.add_column("measure")
        t.add_column("value", justify="right")
        t.add_column("target", justify="right")
        t.add_column("")
        t.add_row("findings / hosts", f"{r.findings:,} / {r.hosts:,}", "", "")
        t.add_row("distinct risks / assets", f"{r.risks:,} / {r.assets:,}", "", "")
        t.add_row("entities created / events", f"{r.created:,} / {r.events:,}", "", "")
        t.add_row("  applied again: updated / unchanged", f"{r.first_updated:,} / {r.first_unchanged:,}",
                  "", "")
        t.add_row("first import", f"{r.first_s:.2f} s", "", "")
        t.add_row("  findings/s", f"{r.rate:,.0f}", f"≥ {TARGET_RATE:,}", verdict(r.rate >= TARGET_RATE))
        t.add_row("re-import (unchanged file: reused)", f"{r.re_s:.2f} s", "", "")
        t.add_row("  updated / unchanged / events", f"{r.re_updated:,} / {r.re_unchanged:,} / "
                  f"{r.re_events:,}", "", "")
        t.add_row("  first / re-import", f"{r.re_ratio:.2f}×", f"≥ {TARGET_REIMPORT:g}×",
                  verdict(r.re_ratio >= TARGET_REIMPORT))
        t.add_row("re-import in full (--no-reuse)", f"{r.full_re_s:.2f} s", "", "")
        t.add_row("  updated / unchanged / events", f"{r.full_re_updated:,} / {r.full_re_unchanged:,} / "
                  f"{r.full_re_events:,}", "", "")
        t.add_row("  first / re-import in full", f"{r.first_s / r.full_re_s:.2f}×", "(info)", "")
        rss_ok = max(r.first_rss_mb, r.re_rss_mb, r.full_re_rss_mb) < TARGET_RSS_MIB
        t.add_row("peak RSS first / reused / full", f"{r.first_rss_mb:,.0f} / {r.re_rss_mb:,.0f} / "
                  f"{r.full_re_rss_mb:,.0f} MiB",
                  rss_target, verdict(rss_ok) if r.findings >= 1_000_000 else
                  ("(info)" if rss_ok else "[yellow]over[/]"))
        t.add_row("  RSS before the import", f"{r.baseline_rss_mb:,.0f} MiB", "", "")
        t.add_row("floor (risk rows, plain table)", f"{r.floor_s:.2f} s  ({r.floor_rows:,} rows)", "", "")
        t.add_row("  first import / floor", f"{r.floor_ratio:.1f}×", "(info)", "")
        t.add_row("full floor: node+typed+edge rows", f"{r.full_floor_s:.2f} s  ({r.full_floor_rows:,} rows)",
                  "", "")
        t.add_row("  … + events", f"+{r.full_floor_events_s:.2f} s", "", "")
        t.add_row("  first import / full floor incl. events",
                  f"{r.first_s / (r.full_floor_s + r.full_floor_events_s):.1f}×", "(info)", "")
        console.print(t)
        for p in r.problems:
            console.print(f"[red]CHECK FAILED ({r.engine}):[/] {p}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1], argv[2], argv[3], "--profile" in argv[4:], "--no-reuse" not in argv[4:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--findings", type=int, default=100_000, help="nuclei results (default 100000)")
    ap.add_argument("--hosts", type=int, help="hosts (default findings/20)")
    ap.add_argument("--million", action="store_true", help="shortcut for --findings 1000000")
    ap.add_argument("--gzip", action="store_true", help="write the file gzip-compressed")
    ap.add_argument("--order", choices=("spray", "shuffled"), default="spray",
                    help="line order: nuclei's template-spray (default) or shuffled")
    ap.add_argument("--engines", default="sqlite,postgresql", help="comma-separated")
    ap.add_argument("--pg-url", default=os.environ.get("BASTION_BENCH_PG_URL"),
                    help="PostgreSQL server to create scratch databases on "
                         "(default $BASTION_BENCH_PG_URL, else a throwaway cluster)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true",
                    help="run the first import under cProfile and print the top 25 functions")
    ap.add_argument("--keep", type=Path, help="also copy the generated file to this path")
    ap.add_argument("--json", type=Path, help="also write the figures and machine to this file")
    args = ap.parse_args(argv)
    if args.million:
        args.findings = 1_000_000
    args.hosts = args.hosts or max(1, args.findings // 20)
    engines = wp.engine_list(ap, args.engines)

    console.width = max(console.width, 110)  # a wider table when not on a terminal
    code = code_version()
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-import-"))
        stack.callback(shutil.rmtree, tmp, True)
        gen = generate(tmp, args.findings, args.hosts, args.seed, args.order, args.gzip)
        console.print(f"generated {gen.findings:,} results over {gen.hosts:,} hosts, {gen.risks:,} "
                      f"distinct (host, template), {gen.bytes / 2**20:,.1f} MiB in {gen.seconds:.1f}s "
                      f"→ {gen.path}")
        if args.keep:
            shutil.copyfile(gen.path, args.keep)
        pg = Postgres(stack, args.pg_url) if "postgresql" in engines else None
        for engine_name in engines:
            results.append(run_engine(engine_name, gen, args, pg, tmp))
        info = machine(pg, code)
    report(results, gen, info, args)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "args": {k: str(v) for k, v in vars(args).items()},
            "file": {"findings": gen.findings, "hosts": gen.hosts, "risks": gen.risks,
                     "bytes": gen.bytes},
            "results": [{**r.__dict__, "findings_per_s": r.rate, "reimport_ratio": r.re_ratio,
                         "floor_ratio": r.floor_ratio} for r in results],
        }, indent=2))
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
