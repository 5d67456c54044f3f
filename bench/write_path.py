#!/usr/bin/env python
"""Write-path benchmark: TenantStore.apply against a bare bulk insert of the same rows.

For each engine it

1. applies N synthetic entities (≈40% assets, 35% ports, 25% risks) plus RESOLVES_TO edges
   through the write path, in batches, into a fresh migrated database — building the Batch
   objects inside the timed region, as a parser would;
2. re-applies the identical data (new Batch objects, same values) and times that;
3. reads back the node, typed and edge rows the write path stored and bulk-inserts them into a
   second fresh migrated database (SQLite: sqlite3 executemany in one transaction; PostgreSQL:
   COPY as the table owner) — the floor;

then prints entities/s, the ratios and PASS/MISS against the targets, with the machine.

    python bench/write_path.py [--n 100000] [--engines sqlite,postgresql] [--pg-url URL]
                               [--batch-size 10000] [--seed 1] [--profile] [--json FILE]

PostgreSQL: --pg-url or $BASTION_BENCH_PG_URL (a role that may CREATE DATABASE), else a
throwaway cluster (tests/pg_cluster.py) started for the run.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # pg_cluster.ThrowawayCluster

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import JSON, create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bastion.schema.batch import Batch, validate  # noqa: E402
from bastion.store import migrate  # noqa: E402
from bastion.store.store import Store  # noqa: E402
from bastion.store.tables import edge, event, node, typed  # noqa: E402

TARGET_RATE = 50_000  # entities/s
TARGET_FLOOR_RATIO = 4.0  # write path time / floor time
TARGET_REAPPLY_RATIO = 1 / 3  # re-apply time / first apply time
TENANT = "bench"
KINDS = ("asset", "port", "risk")

console = Console(highlight=False)


# --------------------------------------------------------------------------- synthetic data


@dataclass(slots=True)
class Item:
    """One entity as a parser would emit it; references name earlier items by index."""

    kind: str
    values: dict[str, Any]
    props: dict[str, Any] | None = None
    refs: tuple[tuple[str, int], ...] = ()  # (field, index of the referenced item)
    links: tuple[tuple[str, int, int], ...] = ()  # (relationship, source index, target index)


@dataclass
class Dataset:
    items: list[Item]
    counts: dict[str, int]
    explicit_edges: int  # RESOLVES_TO; HAS_PORT / HAS_VULNERABILITY are implied by the kinds

    @property
    def edges(self) -> int:
        return self.explicit_edges + self.counts["port"] + self.counts["risk"]


WORDS = ("www", "api", "mail", "vpn", "dev", "staging", "app", "portal", "auth", "cdn", "git",
         "jenkins", "grafana", "kibana", "sso", "admin", "shop", "static", "img", "m", "beta",
         "test", "internal", "login", "docs", "status", "billing", "crm", "ftp", "smtp", "ns1",
         "ns2", "webmail", "remote", "owa", "jira", "confluence", "s3", "assets", "media")
ENVS = ("", "", "", "eu.", "us.", "prod.", "qa.", "int.", "ap.", "edge.")
TLDS = ("com", "net", "io", "org", "co.uk", "de", "fr", "cloud")
FIRST_OCTETS = (3, 13, 18, 23, 34, 35, 44, 52, 54, 64, 66, 104, 108, 151, 162, 172, 185, 198, 203, 212)
PORTS = ((443, "tcp", "https"), (80, "tcp", "http"), (22, "tcp", "ssh"), (8080, "tcp", "http-proxy"),
         (8443, "tcp", "https-alt"), (21, "tcp", "ftp"), (25, "tcp", "smtp"), (53, "udp", "domain"),
         (3389, "tcp", "ms-wbt-server"), (3306, "tcp", "mysql"), (5432, "tcp", "postgresql"),
         (6379, "tcp", "redis"), (9200, "tcp", "elasticsearch"), (161, "udp", "snmp"),
         (123, "udp", "ntp"), (110, "tcp", "pop3"), (143, "tcp", "imap"), (993, "tcp", "imaps"),
         (27017, "tcp", "mongodb"), (5900, "tcp", "vnc"))
BANNERS = ("nginx/1.24.0", "Apache/2.4.57 (Debian)", "OpenSSH_9.2p1 Debian-2", "Microsoft-IIS/10.0",
           "Postfix ESMTP", "cloudflare", "envoy", "Jetty(9.4.51)", "lighttpd/1.4.69")
TEMPLATES = ("exposed-git-config", "tls-weak-cipher-suites", "missing-hsts-header",
             "self-signed-certificate", "expired-ssl-certificate", "open-redirect",
             "directory-listing-enabled", "exposed-env-file", "default-login-page",
             "swagger-ui-exposed", "phpinfo-disclosure", "cors-misconfiguration",
             "clickjacking-x-frame-options", "ssh-password-auth-enabled", "ftp-anonymous-login",
             "smtp-open-relay", "redis-unauthenticated", "elasticsearch-unauthenticated",
             "mongodb-unauthenticated", "rdp-exposed", "vnc-no-auth", "snmp-public-community",
             "dns-zone-transfer", "subdomain-takeover-candidate", "spf-record-missing",
             "dmarc-policy-none", "weak-tls-version", "server-version-disclosure",
             "admin-panel-exposed", "jenkins-unauthenticated", "grafana-default-credentials",
             "kibana-exposed", "s3-bucket-listable", "wordpress-user-enumeration",
             "backup-file-exposed", "graphql-introspection-enabled", "http-trace-enabled",
             "cookie-without-secure-flag", "csp-header-missing", "stack-trace-disclosure")
SEVERITIES = (("info", 30), ("low", 25), ("medium", 25), ("high", 15), ("critical", 5))


def synthesize(n: int, seed: int) -> Dataset:
    """N entities in parser order (each item after everything it references), deterministic."""
    rng = random.Random(seed)
    n_assets = max(2, round(n * 0.40))
    n_ports = max(1, round(n * 0.35))
    n_risks = max(0, n - n_assets - n_ports)
    n_apex = min(40, max(1, n_assets // 50))
    n_ips = max(1, round(n_assets * 0.3))
    n_sub = max(0, n_assets - n_apex - n_ips)

    apexes = [f"{rng.choice(('acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark'))}-{i}."
              f"{rng.choice(TLDS)}" for i in range(n_apex)]
    ips: set[str] = set()
    while len(ips) < n_ips:
        ips.add(f"{rng.choice(FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    subs: dict[str, str] = {}  # name -> apex
    while len(subs) < n_sub:
        apex = rng.choice(apexes)
        word = rng.choice(WORDS) + (str(rng.randrange(1, 500)) if rng.random() < 0.8 else "")
        subs.setdefault(f"{word}.{rng.choice(ENVS)}{apex}", apex)

    # Assets: (identifier, class or None to let the store infer it, properties).
    assets: list[tuple[str, str | None, dict | None]] = []
    assets += [(a, "domain", None) for a in apexes]
    assets += [(ip, None, {"asn": rng.choice((16509, 13335, 15169, 8075, 14061)),
                           "country": rng.choice(("US", "DE", "IE", "FR", "JP"))})
               for ip in sorted(ips)]
    assets += [(s, "subdomain", None) for s in sorted(subs)]
    ip_index = {ident: i for i, (ident, _c, _p) in enumerate(assets) if _c is None}
    ip_list = sorted(ips)

    # Ports spread over the assets, at most one per (asset, number, protocol).
    ports_of: list[list[tuple[int, str, str]]] = [[] for _ in assets]
    for _ in range(n_ports):
        while True:
            a = rng.randrange(len(assets))
            if rng.random() < 0.85:
                number, proto, service = PORTS[min(int(rng.expovariate(0.35)), len(PORTS) - 1)]
            else:
                number, proto, service = rng.randrange(1024, 65536), "tcp", "unknown"
            if all(p[0] != number or p[1] != proto for p in ports_of[a]):
                ports_of[a].append((number, proto, service))
                break

    # Risks on ports (70%) or assets (30%); the key is (target's group, name): keep it unique.
    sev_names = [s for s, _ in SEVERITIES]
    sev_weights = [w for _, w in SEVERITIES]
    used: set[tuple[str, str]] = set()
    risks_of_asset: list[list[dict]] = [[] for _ in assets]
    risks_of_port: dict[tuple[int, int], list[dict]] = {}
    all_ports = [(a, j) for a, ps in enumerate(ports_of) for j in range(len(ps))]
    for _ in range(n_risks):
        on_port = all_ports and rng.random() < 0.7
        if on_port:
            a, j = rng.choice(all_ports)
        else:
            a = rng.randrange(len(assets))
        group = assets[a][0]
        risk: dict[str, Any] = {"severity": rng.choices(sev_names, sev_weights)[0]}
        while True:
            if rng.random() < 0.35:
                name = f"CVE-{rng.randrange(2014, 2026)}-{rng.randrange(1000, 60000)}"
                risk.pop("name", None)  # the store names a CVE finding after the CVE
                risk.update(cve=name, cvss=round(rng.uniform(2.0, 10.0), 1))
            else:
                name = rng.choice(TEMPLATES)
                if (group, name) in used:
                    name = f"{name}-{rng.randrange(10**6)}"
                risk.pop("cve", None)
                risk.pop("cvss", None)
                risk["name"] = name
            if (group, name) not in used:
                used.add((group, name))
                break
        risk["title"] = f"{name.replace('-', ' ')} on {group}"
        if rng.random() < 0.5:
            risk["props"] = {"template": name.lower(), "matched_at": f"https://{group}/"
                             + rng.choice(("", ".git/config", "admin", ".env", "api/v1"))}
        if on_port:
            risks_of_port.setdefault((a, j), []).append(risk)
        else:
            risks_of_asset[a].append(risk)

    # Emit in parser order: each asset, its RESOLVES_TO links, its ports and their risks.
    items: list[Item] = []
    asset_item: list[int] = []
    explicit = 0
    for a, (ident, cls, props) in enumerate(assets):
        links: list[tuple[str, int, int]] = []
        idx = len(items)
        if cls == "subdomain":
            for ip in {rng.choice(ip_list) for _ in range(2 if rng.random() < 0.05 else 1)}:
                links.append(("RESOLVES_TO", idx, asset_item[ip_index[ip]]))
        explicit += len(links)
        values = {"identifier": ident, "exposure": "external"}
        if cls is not None:
            values["class"] = cls
        if rng.random() < 0.1:
            values["criticality"] = rng.choice(("low", "medium", "high", "critical"))
        items.append(Item("asset", values, props, (), tuple(links)))
        asset_item.append(idx)
        for risk in risks_of_asset[a]:
            items.append(_risk_item(risk, idx))
        for j, (number, proto, service) in enumerate(ports_of[a]):
            pidx = len(items)
            pvalues = {"number": number, "protocol": proto, "service": service,
                       "state": "open" if rng.random() < 0.9 else "filtered"}
            pprops = {"banner": rng.choice(BANNERS)} if rng.random() < 0.3 else None
            items.append(Item("port", pvalues, pprops, (("asset", idx),)))
            for risk in risks_of_port.get((a, j), ()):
                items.append(_risk_item(risk, pidx))
    counts = {k: sum(1 for it in items if it.kind == k) for k in KINDS}
    return Dataset(items, counts, explicit)


def _risk_item(risk: dict[str, Any], target: int) -> Item:
    values = {k: v for k, v in risk.items() if k != "props"}
    return Item("risk", values, risk.get("props"), (("target", target),))


# --------------------------------------------------------------------------- the write path


@dataclass
class Totals:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    edges_added: int = 0
    edges_unchanged: int = 0
    events: int = 0

    def add(self, r) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(r, name))


def apply_all(ts, data: Dataset, batch_size: int, profiles: list | None = None,
              phase: str = "") -> tuple[float, Totals]:
    """Build and apply the batches the way a parser would; returns (seconds, totals).
    With `ts` None, only builds and validates them (the Python share, no database).
    With `profiles` given (--profile), runs under cProfile and appends (phase, profile)."""
    items = data.items
    keys: list[str | None] = [None] * len(items)
    totals = Totals()
    profiler = cProfile.Profile() if profiles is not None else None
    gc.collect()
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    for start in range(0, len(items), batch_size):
        batch = Batch()
        for i in range(start, min(start + batch_size, len(items))):
            it = items[i]
            values = dict(it.values)
            for name, j in it.refs:
                values[name] = keys[j]
            props = dict(it.props) if it.props is not None else None
            keys[i] = batch.add(it.kind, props, **values)
            for rel, s, t in it.links:
                batch.link(rel, keys[s], keys[t])
        if ts is None:
            validate(batch)
        else:
            totals.add(ts.apply(batch, actor="bench", source="bench/write_path"))
    if profiler:
        profiler.disable()
        profiles.append((phase, profiler))
    return time.perf_counter() - t0, totals


# --------------------------------------------------------------------------- databases


class Postgres:
    """Scratch databases on one server: the given URL or a throwaway cluster."""

    def __init__(self, stack: contextlib.ExitStack, url: str | None):
        if url:
            self.origin = "given URL"
        else:
            from pg_cluster import ThrowawayCluster

            console.print("PostgreSQL: starting a throwaway cluster (tests/pg_cluster.py) …")
            url = stack.enter_context(ThrowawayCluster())
            self.origin = "throwaway cluster, fsync=off, synchronous_commit=off"
        self.url = make_url(url).set(drivername="postgresql+psycopg")
        self.admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        stack.callback(self.admin.dispose)
        self.stack = stack
        self.prefix = f"bastion_bench_{os.getpid()}"
        with self.admin.connect() as conn:
            self.version = conn.execute(text("SHOW server_version")).scalar_one()
        console.print(f"PostgreSQL {self.version}: {self.origin} "
                      f"({self.url.render_as_string(hide_password=True)})")

    def fresh(self, suffix: str) -> str:
        name = f"{self.prefix}_{suffix}"
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.stack.callback(self._drop, name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def _drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def engine_list(ap: argparse.ArgumentParser, text: str, allow_none: bool = False) -> list[str]:
    """The engines of a comma-separated --engines value; an argparse error for anything else."""
    engines = [e.strip() for e in text.split(",") if e.strip()]
    if (not engines and not allow_none) or set(engines) - {"sqlite", "postgresql"}:
        ap.error("--engines takes sqlite and/or postgresql")
    return engines


def cached_database(engine_name: str, name: str, pg: Postgres | None, cache: Path, reuse: bool,
                    stack: contextlib.ExitStack) -> tuple[str, bool]:
    """(url, already built) of a bench database called `name`: a SQLite file under `cache` or a
    PostgreSQL database. With `reuse` it is kept after the run and returned as built when an
    earlier run finished building it (`mark_built`); otherwise it is recreated and dropped."""
    if engine_name == "sqlite":
        path = cache / f"{name}.db"
        done = path.with_suffix(".done")
        files = (path, done, Path(f"{path}-wal"), Path(f"{path}-shm"))
        if reuse and path.exists() and done.exists():
            return f"sqlite:///{path}", True
        for p in files:
            p.unlink(missing_ok=True)
        if not reuse:
            stack.callback(lambda: [p.unlink(missing_ok=True) for p in files])
        return f"sqlite:///{path}", False
    assert pg is not None
    url = pg.url.set(database=name).render_as_string(hide_password=False)
    with pg.admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                              {"n": name}).first() is not None
        if reuse and exists:
            s = Store(url)
            try:
                with s.engine.connect() as c:
                    built = c.execute(text("SELECT count(*) FROM pg_tables "
                                           "WHERE tablename = 'bench_built'")).scalar_one()
            finally:
                s.close()
            if built:
                return url, True
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    if not reuse:
        stack.callback(pg._drop, name)
    return url, False


def mark_built(store: Store) -> None:
    """Record that a `cached_database` is fully built, for the next `--reuse`."""
    if store.dialect == "sqlite":
        Path(store.engine.url.database).with_suffix(".done").write_text("built")
    else:
        with store.engine.begin() as c:
            c.execute(text("CREATE TABLE bench_built (tag text)"))


def fresh_store(engine_name: str, suffix: str, pg: Postgres | None, tmp: Path) -> Store:
    url = pg.fresh(suffix) if engine_name == "postgresql" else f"sqlite:///{tmp / f'{suffix}.db'}"
    store = Store(url)
    migrate.upgrade(store.engine)
    store.ensure_tenant(TENANT)
    return store


FLOOR_TABLES = (node, *(typed[k] for k in KINDS), edge)


def _columns(table, postgres: bool) -> list[str]:
    # JSON read as text: COPY's text format parses it back into jsonb on the way in.
    return [f'"{c.name}"::text' if postgres and isinstance(c.type, JSON) else f'"{c.name}"'
            for c in table.c]


def read_rows(store: Store, tables) -> dict[str, list[tuple]]:
    """The rows the write path stored, as the driver returns them (no SQLAlchemy processing),
    in primary-key order: the best case for a B-tree load, so the floor is a true lower bound
    (on SQLite the same rows in random order take about 1.8x as long)."""
    postgres = store.dialect == "postgresql"
    out = {}
    with store.engine.connect() as conn:
        for t in tables:
            cols = ", ".join(_columns(t, postgres))
            order = ", ".join(f'"{c.name}"' for c in t.primary_key.columns)
            out[t.name] = [tuple(r) for r in conn.exec_driver_sql(
                f'SELECT {cols} FROM "{t.name}" ORDER BY {order}')]
    return out


def bulk_insert(store: Store, tables, rows: dict[str, list[tuple]]) -> float:
    """Insert `rows` without validation or events; returns the seconds the insert took."""
    gc.collect()
    if store.dialect == "sqlite":
        path = store.engine.url.database
        store.close()
        conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            conn.execute(f"PRAGMA {pragma}")
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for t in tables:
            marks = ", ".join("?" * len(t.c))
            names = ", ".join(f'"{c.name}"' for c in t.c)
            conn.executemany(f'INSERT INTO "{t.name}" ({names}) VALUES ({marks})', rows[t.name])
        conn.execute("COMMIT")
        seconds = time.perf_counter() - t0
        conn.close()
        return seconds
    import psycopg

    # The login role owns the tables (it ran the migrations), so RLS does not apply to it and
    # COPY is allowed.
    dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    store.close()
    with psycopg.connect(dsn) as conn:
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for t in tables:
                names = ", ".join(f'"{c.name}"' for c in t.c)
                with cur.copy(f'COPY "{t.name}" ({names}) FROM STDIN') as copy:
                    for row in rows[t.name]:
                        copy.write_row(row)
        return time.perf_counter() - t0


# --------------------------------------------------------------------------- one engine


@dataclass
class Result:
    engine: str
    n: int
    entities: int
    edges: int
    events: int
    batch_size: int
    first_s: float
    reapply_s: float
    floor_s: float
    floor_rows: int
    floor_events_s: float
    peak_rss_mb: float
    profiled: bool  # under cProfile: times inflated, targets meaningless
    validate_s: float = 0.0  # building + validating the batches alone, without a database
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.entities / self.first_s

    @property
    def floor_ratio(self) -> float:
        return self.first_s / self.floor_s

    @property
    def reapply_ratio(self) -> float:
        return self.reapply_s / self.first_s


def run_engine(engine_name: str, data: Dataset, args, pg: Postgres | None, tmp: Path) -> Result:
    console.rule(f"[bold]{engine_name}")
    store = fresh_store(engine_name, "write", pg, tmp)
    ts = store.tenant(TENANT)
    problems: list[str] = []
    n_entities = len(data.items)

    profiles: list[tuple[str, cProfile.Profile]] | None = [] if args.profile else None
    first_s, first = apply_all(ts, data, args.batch_size, profiles, "first apply")
    console.print(f"first apply: {first_s:.2f}s")
    if (first.created, first.edges_added) != (n_entities, data.edges):
        problems.append(f"first apply created {first.created} entities / {first.edges_added} "
                        f"edges, expected {n_entities} / {data.edges}")
    reapply_s, again = apply_all(ts, data, args.batch_size, profiles, "re-apply")
    console.print(f"re-apply:    {reapply_s:.2f}s")
    if (again.unchanged, again.edges_unchanged, again.events) != (n_entities, data.edges, 0):
        problems.append(f"re-apply: {again.unchanged} unchanged entities, {again.edges_unchanged} "
                        f"unchanged edges, {again.events} events; expected {n_entities}, "
                        f"{data.edges}, 0")
    counts = ts.counts()
    stored = {k: counts[k] for k in KINDS}
    if stored != data.counts:
        problems.append(f"stored {stored}, generated {data.counts}")

    rows = read_rows(store, FLOOR_TABLES)
    events = read_rows(store, (event,))
    store.close()
    floor_store = fresh_store(engine_name, "floor", pg, tmp)
    floor_s = bulk_insert(floor_store, FLOOR_TABLES, rows)
    # Informational: the events the write path also writes, inserted on top of the floor.
    floor_store = Store(floor_store.engine.url.render_as_string(hide_password=False))
    floor_events_s = bulk_insert(floor_store, (event,), events)
    console.print(f"floor:       {floor_s:.2f}s (+{floor_events_s:.2f}s for the events)")

    for phase, profiler in profiles or ():
        print_profile(f"{phase} on {engine_name}", profiler)
    return Result(
        engine=engine_name, n=args.n, entities=n_entities, edges=data.edges,
        events=first.events, batch_size=args.batch_size, first_s=first_s, reapply_s=reapply_s,
        floor_s=floor_s, floor_rows=sum(len(r) for r in rows.values()),
        floor_events_s=floor_events_s, peak_rss_mb=peak_rss_mb(), profiled=bool(profiles),
        problems=problems,
    )


def print_profile(what: str, profiler: cProfile.Profile) -> None:
    for order in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats(order).print_stats(25)
        console.rule(f"profile of the {what}, by {order}")
        print(buf.getvalue())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------------- report


def machine(pg: Postgres | None, code: str) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "cpu": cpu, "cores": os.cpu_count(), "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "postgresql": f"{pg.version}; {pg.origin}" if pg else "not run",
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "code": code,
    }


def code_version() -> str:
    """The commit benchmarked, and whether bastion/ differs from it (read-only git calls)."""
    import subprocess

    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never touch the index
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "bastion"], cwd=ROOT,
                               env=env, capture_output=True).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in bastion/" if dirty else "")


def print_machine(info: dict[str, Any]) -> None:
    """The machine and code a run measured, as a table (every bench prints it first)."""
    t = Table(title="machine", show_header=False)
    for k, v in info.items():
        t.add_row(k, str(v))
    console.print(t)


def analyze(store) -> None:
    """The statistics autovacuum would have in steady state, after a bulk load."""
    if store.dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")
    else:
        with store.engine.connect() as c:
            c.exec_driver_sql("ANALYZE")
            c.commit()


def verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]MISS[/]"


def report(results: list[Result], data: Dataset, info: dict[str, Any]) -> None:
    console.rule("[bold]results")
    print_machine(info)
    c = data.counts
    console.print(f"data: {len(data.items):,} entities ({c['asset']:,} assets, {c['port']:,} ports, "
                  f"{c['risk']:,} risks), {data.edges:,} edges ({data.explicit_edges:,} RESOLVES_TO, "
                  f"the rest implied HAS_PORT / HAS_VULNERABILITY)")
    for r in results:
        t = Table(title=f"{r.engine}: N={r.n:,}, batch size {r.batch_size:,}"
                  + (" [red](under cProfile: times inflated)[/]" if r.profiled else ""))
        t.add_column("measure")
        t.add_column("value", justify="right")
        t.add_column("target", justify="right")
        t.add_column("")
        t.add_row("entities / edges / events", f"{r.entities:,} / {r.edges:,} / {r.events:,}", "", "")
        t.add_row("first apply", f"{r.first_s:.2f} s", "", "")
        t.add_row("  of which build + validate", f"{r.validate_s:.2f} s (measured apart)", "", "")
        t.add_row("  entities/s", f"{r.rate:,.0f}", f"≥ {TARGET_RATE:,}", verdict(r.rate >= TARGET_RATE))
        t.add_row("  (entities+edges)/s", f"{(r.entities + r.edges) / r.first_s:,.0f}", "", "")
        t.add_row("re-apply (unchanged)", f"{r.reapply_s:.2f} s", "", "")
        t.add_row("  re-apply / first", f"{r.reapply_ratio:.2f}", "≤ 0.33",
                  verdict(r.reapply_ratio <= TARGET_REAPPLY_RATIO))
        t.add_row("floor (bulk insert)", f"{r.floor_s:.2f} s", "", "")
        t.add_row("  floor rows/s", f"{r.floor_rows / r.floor_s:,.0f}  ({r.floor_rows:,} rows)", "", "")
        t.add_row("  first apply / floor", f"{r.floor_ratio:.2f}×", f"≤ {TARGET_FLOOR_RATIO:g}×",
                  verdict(r.floor_ratio <= TARGET_FLOOR_RATIO))
        t.add_row("  … / floor incl. events", f"{r.first_s / (r.floor_s + r.floor_events_s):.2f}×",
                  "(info)", "")
        t.add_row("peak RSS so far", f"{r.peak_rss_mb:,.0f} MiB", "", "")
        console.print(t)
        for p in r.problems:
            console.print(f"[red]CHECK FAILED ({r.engine}):[/] {p}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="entities to write (default 100000)")
    ap.add_argument("--engines", default="sqlite,postgresql", help="comma-separated")
    ap.add_argument("--pg-url", default=os.environ.get("BASTION_BENCH_PG_URL"),
                    help="PostgreSQL server to create scratch databases on "
                         "(default $BASTION_BENCH_PG_URL, else a throwaway cluster)")
    ap.add_argument("--batch-size", type=int, default=10_000, help="entities per Batch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true",
                    help="run the first apply under cProfile and print the top 25 functions")
    ap.add_argument("--json", type=Path, help="also write the figures and machine to this file")
    args = ap.parse_args(argv)
    engines = engine_list(ap, args.engines)

    code = code_version()  # now: the modules were imported from this tree at start-up
    t0 = time.perf_counter()
    data = synthesize(args.n, args.seed)
    console.print(f"generated {len(data.items):,} entities and {data.edges:,} edges "
                  f"in {time.perf_counter() - t0:.1f}s (seed {args.seed})")
    validate_s, _ = apply_all(None, data, args.batch_size)
    console.print(f"building and validating the batches alone (no database): {validate_s:.2f}s")
    results = []
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
        stack.callback(shutil.rmtree, tmp, True)
        pg = Postgres(stack, args.pg_url) if "postgresql" in engines else None
        if "sqlite" in engines:
            console.print(f"SQLite {sqlite3.sqlite_version}: files under {tmp}")
        for engine_name in engines:
            results.append(run_engine(engine_name, data, args, pg, tmp))
            results[-1].validate_s = validate_s
        info = machine(pg, code)
    report(results, data, info)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info,
            "data": {"entities": len(data.items), **data.counts, "edges": data.edges},
            "results": [{**r.__dict__, "entities_per_s": r.rate, "floor_ratio": r.floor_ratio,
                         "reapply_ratio": r.reapply_ratio} for r in results],
        }, indent=2))
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
