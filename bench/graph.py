#!/usr/bin/env python
"""Graph-query benchmark: the store's graph API on SQLite and PostgreSQL against networkx.

1. generates a synthetic attack surface, the same for a given --seed: seeds → apex domains →
   subdomains → IPs (a few CDN hub IPs that thousands of names resolve to) → ports →
   technologies (shared CPEs) and risks; discovery capabilities with DISCOVERED edges; an
   internal network reached by CONNECTS_TO from web servers, with a few crown jewels;
2. builds the same graph as a networkx MultiDiGraph (load time, memory) and times the
   equivalent queries there;
3. for each engine, loads the graph through TenantStore.apply in batches (load time), then times
   graph.neighbors, reach(depth=4), shortest_path(depth=6) and attack_paths(depth=6), checks
   every answer's size against networkx and counts refusals (CostExceeded) separately.

    python bench/graph.py [--nodes 100000] [--engines sqlite,postgresql] [--pg-url URL]
                          [--queries 200] [--seed 1] [--reuse] [--json FILE]

PostgreSQL: --pg-url or $BASTION_BENCH_PG_URL (a role that may CREATE DATABASE), else a
throwaway cluster (tests/pg_cluster.py) started for the run. --reuse keeps the loaded databases
(a SQLite file under --cache-dir, a PostgreSQL database on --pg-url) for the next run with the
same size and seed, which then only times the queries.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from bisect import bisect
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # pg_cluster.ThrowawayCluster
sys.path.insert(0, str(ROOT / "bench"))  # write_path: machine info, scratch databases

import networkx as nx  # noqa: E402
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,  # noqa: E402
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bastion.schema.batch import Batch, key_for  # noqa: E402
from bastion.store import migrate  # noqa: E402
from bastion.store.store import Store  # noqa: E402
from bastion.store.exposure import ACCESS_KINDS  # noqa: E402
from bastion.store.traversal import CostExceeded, Limits  # noqa: E402
from write_path import (print_machine, Postgres, cached_database, code_version, console, engine_list,  # noqa: E402
                        machine, mark_built, peak_rss_mb)

TENANT = "bench"
console.width = max(console.width, 150)  # the results table is wide; logs are often not a tty
# Targets from issue 5, for PostgreSQL at 1M nodes (p95, milliseconds).
DATA_VERSION = 1  # bump when the generator changes: databases kept by --reuse are then rebuilt
TARGETS_MS = {"neighbors": 50, "shortest_path": 50, "attack_paths": 500}
OPEN_RISK = ("triage", "open")
ACCESS = frozenset(ACCESS_KINDS)
# Limits for re-running refused queries, to show what they would have cost.
RAISED = Limits(max_rows=10**9, budget=10**15, timeout_ms=600_000)

# --------------------------------------------------------------------------- vocabulary

CAPABILITIES = (("subfinder", "discovery"), ("dnsx", "discovery"), ("httpx", "enrichment"),
                ("nmap", "scanner"), ("naabu", "scanner"), ("nuclei", "scanner"))
ORGS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell", "cyberdyne")
TLDS = ("com", "net", "io", "org", "co.uk", "de", "fr", "cloud")
WORDS = ("www", "api", "mail", "vpn", "dev", "staging", "app", "portal", "auth", "cdn", "git",
         "jenkins", "grafana", "kibana", "sso", "admin", "shop", "static", "img", "m", "beta",
         "test", "login", "docs", "status", "billing", "crm", "ftp", "smtp", "webmail", "remote",
         "owa", "jira", "confluence", "assets", "media")
ENVS = ("", "", "", "eu.", "us.", "prod.", "qa.", "ap.", "edge.")
FIRST_OCTETS = (3, 13, 18, 23, 34, 35, 44, 52, 54, 64, 66, 108, 151, 162, 185, 198, 203, 212)
CDN_IPS = ("104.16.0.1", "104.16.1.1", "151.101.1.57", "151.101.65.57", "13.32.0.10", "23.32.1.5")
WEB = {80: "http", 443: "https", 8080: "http-proxy", 8443: "https-alt"}
# (number, protocol, service, weight) for ports on internet-facing hosts.
EXT_PORTS = ((443, "tcp", "https", 40), (80, "tcp", "http", 30), (22, "tcp", "ssh", 8),
             (8080, "tcp", "http-proxy", 5), (8443, "tcp", "https-alt", 4), (25, "tcp", "smtp", 2),
             (21, "tcp", "ftp", 2), (53, "udp", "domain", 2), (3389, "tcp", "ms-wbt-server", 1),
             (3306, "tcp", "mysql", 1), (6379, "tcp", "redis", 1), (9200, "tcp", "elasticsearch", 1),
             (27017, "tcp", "mongodb", 1), (5900, "tcp", "vnc", 1), (161, "udp", "snmp", 1))
INT_PORTS = ((22, "tcp", "ssh", 10), (443, "tcp", "https", 6), (8080, "tcp", "http-proxy", 6),
             (5432, "tcp", "postgresql", 4), (3306, "tcp", "mysql", 3), (6379, "tcp", "redis", 3),
             (9200, "tcp", "elasticsearch", 2), (445, "tcp", "microsoft-ds", 3),
             (27017, "tcp", "mongodb", 1), (389, "tcp", "ldap", 2))
# Technology catalogue: category → (vendor, product); versions are generated.
PRODUCTS = {
    "server": (("nginx", "nginx"), ("apache", "http_server"), ("microsoft", "iis"),
               ("eclipse", "jetty"), ("apache", "tomcat"), ("envoyproxy", "envoy"),
               ("lighttpd", "lighttpd"), ("caddyserver", "caddy")),
    "stack": (("openssl", "openssl"), ("php", "php"), ("python", "python"), ("nodejs", "node"),
              ("oracle", "jdk"), ("jquery", "jquery"), ("getbootstrap", "bootstrap"),
              ("vuejs", "vue"), ("facebook", "react"), ("laravel", "laravel"),
              ("djangoproject", "django"), ("vmware", "spring_framework")),
    "app": (("wordpress", "wordpress"), ("drupal", "drupal"), ("grafana", "grafana"),
            ("jenkins", "jenkins"), ("atlassian", "jira"), ("atlassian", "confluence"),
            ("gitlab", "gitlab"), ("elastic", "kibana"), ("microsoft", "exchange_server")),
    "ssh": (("openbsd", "openssh"),),
    "db": (("postgresql", "postgresql"), ("oracle", "mysql"), ("mariadb", "mariadb"),
           ("redis", "redis"), ("elastic", "elasticsearch"), ("mongodb", "mongodb")),
    "mail": (("postfix", "postfix"), ("exim", "exim"), ("vsftpd_project", "vsftpd"),
             ("isc", "bind"), ("microsoft", "remote_desktop_services"), ("samba", "samba"),
             ("openldap", "openldap"), ("realvnc", "vnc_server"), ("net-snmp", "net-snmp")),
}
SERVICE_CATEGORY = {"ssh": "ssh", "postgresql": "db", "mysql": "db", "redis": "db",
                    "elasticsearch": "db", "mongodb": "db"}
TEMPLATES = ("exposed-git-config", "tls-weak-cipher-suites", "missing-hsts-header",
             "self-signed-certificate", "expired-ssl-certificate", "open-redirect",
             "directory-listing-enabled", "exposed-env-file", "default-login-page",
             "swagger-ui-exposed", "phpinfo-disclosure", "cors-misconfiguration",
             "ssh-password-auth-enabled", "ftp-anonymous-login", "redis-unauthenticated",
             "elasticsearch-unauthenticated", "mongodb-unauthenticated", "rdp-exposed",
             "subdomain-takeover-candidate", "weak-tls-version", "server-version-disclosure",
             "admin-panel-exposed", "jenkins-unauthenticated", "grafana-default-credentials",
             "backup-file-exposed", "graphql-introspection-enabled", "http-trace-enabled")
SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_WEIGHTS = (30, 25, 25, 15, 5)
STATUSES = ("triage", "open", "accepted", "remediated")
STATUS_WEIGHTS = (35, 20, 15, 30)

# --------------------------------------------------------------------------- synthetic graph


@dataclass
class Data:
    """The generated graph in parser order: entity i is (kinds[i], values[i], props[i]) with key
    keys[i]; edges are (source index, relationship, target index), implied ones included."""

    kinds: list[str] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)
    props: list[dict[str, Any] | None] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    edges: list[tuple[int, str, int]] = field(default_factory=list)
    implied: int = 0  # edges the store derives from port.asset / risk.target
    groups: dict[str, list[int]] = field(default_factory=dict)  # role → entity indexes

    def add(self, role: str, kind: str, values: dict[str, Any], props: dict | None = None,
            key: str | None = None) -> int:
        i = len(self.keys)
        self.kinds.append(kind)
        self.values.append(values)
        self.props.append(props)
        self.keys.append(key or key_for(kind, **values))
        self.groups.setdefault(role, []).append(i)
        return i

    def link(self, rel: str, source: int, target: int) -> None:
        self.edges.append((source, rel, target))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in self.kinds:
            out[k] = out.get(k, 0) + 1
        for _s, rel, _t in self.edges:
            out[rel] = out.get(rel, 0) + 1
        return out


def _zipf(n: int, s: float) -> list[float]:
    """Cumulative weights of ranks 1..n ∝ 1/rank^s (for rng.choices(cum_weights=…))."""
    return list(accumulate(1 / (r ** s) for r in range(1, n + 1)))


def generate(n: int, seed: int) -> Data:
    """About `n` entities (the risks fill the remainder exactly) and ≈4.5 edges per entity."""
    rng = random.Random(seed)
    d = Data()
    pick = rng.choices

    caps = {name: d.add("capability", "capability", {"name": name, "category": cat})
            for name, cat in CAPABILITIES}

    def discovered(cap: str, target: int, p: float = 1.0) -> None:
        if p >= 1 or rng.random() < p:
            d.link("DISCOVERED", caps[cap], target)

    # Seeds and apex domains; subdomains spread over the apexes with a long tail.
    n_apex = max(3, n // 2500)
    apexes = []
    for i in range(n_apex):
        name = f"{ORGS[i % len(ORGS)]}-{i}.{TLDS[i % len(TLDS)]}"
        s = d.add("seed", "seed", {"class": "domain", "identifier": name})
        a = d.add("apex", "asset", {"identifier": name, "class": "domain", "exposure": "external"})
        d.link("DISCOVERED", s, a)
        apexes.append(a)
    apex_cum = _zipf(n_apex, 0.8)

    # Technologies: shared CPEs, popularity long-tailed within each category.
    n_tech = max(60, n // 200)
    products = [(cat, vp) for cat, vps in PRODUCTS.items() for vp in vps]
    per_product = max(2, n_tech // len(products))
    techs: dict[str, list[int]] = {cat: [] for cat in PRODUCTS}
    for cat, (vendor, product) in products:
        for v in range(per_product):
            version = f"{1 + v % 9}.{v // 9 % 30}.{v // 270}"
            t = d.add("technology", "technology",
                      {"cpe": f"cpe:2.3:a:{vendor}:{product}:{version}:*:*:*:*:*:*:*",
                       "vendor": vendor})
            techs[cat].append(t)
            discovered("httpx", t)
    for cat in techs:  # shuffled so the popular version of each product differs
        rng.shuffle(techs[cat])
    tech_cum = {cat: _zipf(len(ts), 1.1) for cat, ts in techs.items()}

    def tech(cat: str) -> int:
        return pick(techs[cat], cum_weights=tech_cum[cat])[0]

    port_cum = {which: list(accumulate(p[3] for p in table))
                for which, table in (("ext", EXT_PORTS), ("int", INT_PORTS))}

    def ports(host: int, k: int, which: str = "ext") -> list[int]:
        """k ports on `host`, with DISCOVERED and HAS_TECHNOLOGY edges; returns web ports."""
        table = EXT_PORTS if which == "ext" else INT_PORTS
        chosen = set()
        web = []
        while len(chosen) < k:
            chosen.add(pick(table, cum_weights=port_cum[which])[0])
        for number, proto, service, _w in sorted(chosen):
            p = d.add("port", "port", {"asset": d.keys[host], "protocol": proto, "number": number,
                                       "service": service,
                                       "state": "open" if rng.random() < 0.9 else "filtered"})
            d.link("HAS_PORT", host, p)
            d.implied += 1
            discovered("nmap", p, 0.8)
            discovered("naabu", p, 0.6)
            if number in WEB:
                web.append(p)
                discovered("httpx", p)
                d.link("HAS_TECHNOLOGY", p, tech("server"))
                for t in {tech("stack") for _ in range(rng.choice((1, 1, 2, 3)))}:
                    d.link("HAS_TECHNOLOGY", p, t)
            elif rng.random() < 0.8:
                d.link("HAS_TECHNOLOGY", p, tech(SERVICE_CATEGORY.get(service, "mail")))
        return web

    # Internal network: data tier (crown jewels among it), then application tier.
    n_internal = max(10, round(n * 0.04))
    n_jewels = min(50, max(3, n // 20000))
    n_data = max(n_jewels + 2, round(n_internal * 0.4))
    seen_ips: set[str] = set()

    def ip(prefix: str | None = None) -> str:
        while True:
            first = prefix or str(rng.choice(FIRST_OCTETS))
            a = f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            if a not in seen_ips:
                seen_ips.add(a)
                return a

    data_tier, app_tier, app_web = [], [], []
    for j in range(n_internal):
        jewel = j < n_jewels
        tier = "data" if j < n_data else "app"
        a = d.add("jewel" if jewel else "internal", "asset",
                  {"identifier": ip("10"), "exposure": "internal",
                   "criticality": "critical" if jewel else ("high" if tier == "data" else "medium")})
        if jewel:
            d.groups.setdefault("internal", []).append(a)
        discovered("nmap", a)
        web = ports(a, pick((1, 2, 3), (5, 3, 2))[0], "int")
        (data_tier if tier == "data" else app_tier).append(a)
        if tier == "app":
            app_web.extend(web)
    jewels = d.groups["jewel"]
    for a in app_tier:
        for target in {rng.choice(data_tier) for _ in range(rng.choice((1, 1, 2)))}:
            d.link("CONNECTS_TO", a, target)
        if rng.random() < 0.3:
            d.link("CONNECTS_TO", a, rng.choice(app_tier))
    for a in data_tier:
        if rng.random() < 0.2:
            d.link("CONNECTS_TO", a, rng.choice(data_tier))
    for n_j, j in enumerate(jewels):  # reached from the application tier or one hop deeper
        tier = app_tier if n_j % 2 == 0 else [a for a in data_tier if a not in jewels]
        for a in {rng.choice(tier) for _ in range(rng.choice((2, 3, 4)))}:
            d.link("CONNECTS_TO", a, j)

    # Internet-facing addresses: CDN hubs first, then ordinary hosts.
    cdn = []
    for addr in CDN_IPS:
        seen_ips.add(addr)
        c = d.add("cdn", "asset", {"identifier": addr, "exposure": "external"},
                  {"asn": 13335, "org": "cdn"})
        discovered("dnsx", c)
        ports(c, 4)
        cdn.append(c)
    n_ips = max(10, round(n * 0.07))
    ips, ip_web = [], []
    for _ in range(n_ips):
        a = d.add("ip", "asset", {"identifier": ip(), "exposure": "external"},
                  {"asn": rng.choice((16509, 15169, 8075, 14061, 24940))}
                  if rng.random() < 0.5 else None)
        discovered("dnsx", a)
        discovered("nmap", a, 0.7)
        discovered("naabu", a, 0.4)
        ip_web.extend(ports(a, pick((0, 1, 2, 3, 4), (30, 30, 25, 10, 5))[0]))
        ips.append(a)
    ip_found: set[int] = set()  # addresses whose provenance edge (name → address) exists

    # Subdomains: names under the apexes, resolving to hosts or CDN hubs, with ports.
    n_sub = max(20, round(n * 0.27))
    per_apex = [0] * n_apex
    sub_web, by_apex = [], [[] for _ in range(n_apex)]
    for _ in range(n_sub):
        k = pick(range(n_apex), cum_weights=apex_cum)[0]
        per_apex[k] += 1
        apex = apexes[k]
        name = f"{rng.choice(WORDS)}{per_apex[k]}.{rng.choice(ENVS)}{d.values[apex]['identifier']}"
        values = {"identifier": name, "class": "subdomain", "exposure": "external"}
        if rng.random() < 0.1:
            values["criticality"] = rng.choice(("low", "medium", "high"))
        s = d.add("subdomain", "asset", values)
        d.link("SUBDOMAIN_OF", s, apex)
        d.link("DISCOVERED", apex, s)
        discovered("subfinder", s)
        discovered("dnsx", s, 0.6)
        r = rng.random()
        targets = (set() if r >= 0.92 else
                   {rng.choice(ips) for _ in range(rng.choice((1, 1, 1, 2)))} if r < 0.7 else
                   {rng.choice(cdn) for _ in range(rng.choice((1, 2)))})
        for t in sorted(targets):
            d.link("RESOLVES_TO", s, t)
            if t not in ip_found and t not in cdn:
                ip_found.add(t)
                d.link("DISCOVERED", s, t)
        if by_apex[k] and rng.random() < 0.1:  # a CNAME to another name of the same domain
            d.link("RESOLVES_TO", s, rng.choice(by_apex[k]))
        by_apex[k].append(s)
        if rng.random() < 0.25:
            d.link("HAS_TECHNOLOGY", s, tech("app"))
        web = ports(s, pick((0, 1, 2, 3), (40, 30, 22, 8))[0])
        if web:
            discovered("httpx", s)
        sub_web.extend(web)

    # Web servers reach the application tier (and a few load balancers, by address).
    for a in app_tier:
        for p in {rng.choice(sub_web) for _ in range(rng.choice((1, 1, 2)))}:
            d.link("CONNECTS_TO", p, a)
        if ip_web and rng.random() < 0.2:
            d.link("CONNECTS_TO", rng.choice(ip_web), a)

    # Findings fill the remainder: on ports (most), names and software; a later nuclei run.
    all_ports = d.groups["port"]
    names = d.groups["subdomain"]
    used: set[str] = set()  # a risk's key is (target's group, name): two ports of a host share it
    for _ in range(max(0, n - len(d.keys))):
        r = rng.random()
        target = (rng.choice(all_ports) if r < 0.8 else rng.choice(names) if r < 0.95
                  else rng.choice(d.groups["technology"]))
        while True:
            if d.kinds[target] == "technology" or rng.random() < 0.35:
                name = f"CVE-{rng.randrange(2014, 2026)}-{rng.randrange(1000, 60000)}"
            else:
                name = rng.choice(TEMPLATES)
            values = {"target": d.keys[target], "severity": pick(SEVERITIES, SEVERITY_WEIGHTS)[0],
                      "status": pick(STATUSES, STATUS_WEIGHTS)[0],
                      ("cve" if name.startswith("CVE-") else "name"): name}
            key = key_for("risk", **values)
            if key not in used:
                used.add(key)
                break
        risk = d.add("risk", "risk", values, key=key)
        d.link("HAS_VULNERABILITY", target, risk)
        d.implied += 1
        discovered("nuclei", risk, 0.9)
        discovered("nmap", risk, 0.1)
    if len(set(d.keys)) != len(d.keys):
        raise SystemExit("generator bug: duplicate keys")
    return d


# --------------------------------------------------------------------------- loading


def batches(d: Data, size: int):
    """(entity count, Batch) in parser order; each explicit edge rides with its later end."""
    implied = {"HAS_PORT", "HAS_VULNERABILITY"}
    by_item: dict[int, list[tuple[int, str, int]]] = {}
    for e in d.edges:
        if e[1] in implied and d.kinds[e[2]] in ("port", "risk"):
            continue  # written by the store from port.asset / risk.target
        by_item.setdefault(max(e[0], e[2]), []).append(e)
    keys = d.keys
    for start in range(0, len(keys), size):
        b = Batch()
        stop = min(start + size, len(keys))
        for i in range(start, stop):
            key = b.add(d.kinds[i], d.props[i], **d.values[i])
            assert key == keys[i], (key, keys[i])
            for s, rel, t in by_item.get(i, ()):
                b.link(rel, keys[s], keys[t])
        yield stop - start, b


def load_store(ts, d: Data, size: int, label: str) -> float:
    gc.collect()
    columns = (TextColumn(f"loading {label}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("load", total=len(d.keys))
        t0 = time.perf_counter()
        for n, b in batches(d, size):
            ts.apply(b, actor="bench", source="bench/graph")
            progress.advance(task, n)
        return time.perf_counter() - t0


def build_networkx(d: Data) -> nx.MultiDiGraph:
    """Nodes carry the fields the attack-path query needs (as the store's typed tables do)."""
    g = nx.MultiDiGraph()
    keys = d.keys
    wanted = ("exposure", "criticality", "class", "state", "status", "severity")
    g.add_nodes_from((keys[i], {"kind": d.kinds[i],
                                **{f: v for f, v in d.values[i].items() if f in wanted}})
                     for i in range(len(keys)))
    g.add_edges_from((keys[s], keys[t], rel) for s, rel, t in d.edges)
    return g


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --------------------------------------------------------------------------- workload


@dataclass
class Workload:
    starts: list[str]  # neighbors, reach
    pairs: list[tuple[str, str]]  # shortest_path: half joined by a walk, half random
    hubs: list[str]  # CDN addresses, the largest domain, the most used software
    jewels: list[str]  # attack_paths(to=…)
    repeats: int  # attack_paths


def workload(d: Data, g: nx.MultiDiGraph, queries: int, seed: int) -> Workload:
    rng = random.Random(seed + 1)
    pool = d.groups["subdomain"] + d.groups["ip"] + d.groups["cdn"]
    keys = d.keys
    starts = [keys[rng.choice(pool)] for _ in range(queries)]
    pairs = []
    while len(pairs) < queries:
        s = keys[rng.choice(pool)]
        if len(pairs) % 2:
            pairs.append((s, keys[rng.choice(pool)]))
            continue
        x, steps = s, rng.randint(2, 6)  # a random out-walk: a path of at most `steps` exists
        for _ in range(steps):
            succ = list(g.successors(x))
            if not succ:
                break
            x = rng.choice(succ)
        if x != s:
            pairs.append((s, x))
    biggest_apex = max(d.groups["apex"], key=lambda a: g.in_degree(keys[a]))
    top_tech = max(d.groups["technology"], key=lambda t: g.in_degree(keys[t]))
    hubs = [keys[c] for c in d.groups["cdn"]] + [keys[biggest_apex], keys[top_tech]]
    jewels = [keys[rng.choice(d.groups["jewel"])] for _ in range(max(3, queries // 20))]
    return Workload(starts, pairs, hubs, jewels, max(3, queries // 20))


# --------------------------------------------------------------------------- timing


@dataclass
class OpStats:
    op: str
    times_ms: list[float] = field(default_factory=list)  # answered queries
    refused_ms: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # vs networkx
    refusal: str = ""  # one refusal message
    raised_ms: list[float] = field(default_factory=list)  # refused queries re-run, raised limits
    raised_sizes: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"op": self.op, "answered": len(self.times_ms), "refused": len(self.refused_ms),
                **{f"{k}_ms": v for k, v in pct(self.times_ms).items()},
                "mean_size": sum(self.sizes) / len(self.sizes) if self.sizes else None,
                "nonempty": sum(1 for x in self.sizes if x),
                "max_size": max(self.sizes) if self.sizes else None,
                "refused_p50_ms": pct(self.refused_ms)["p50"], "refusal": self.refusal,
                "raised": {**pct(self.raised_ms), "n": len(self.raised_ms),
                           "max_size": max(self.raised_sizes) if self.raised_sizes else None},
                "mismatches": len(self.mismatches), "mismatch_examples": self.mismatches[:5]}


def pct(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p95": None, "max": None}
    s = sorted(xs)
    at = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731  nearest rank
    return {"p50": at(0.5), "p95": at(0.95), "max": s[-1]}


def run_op(op: str, fn: Callable, args: list[tuple], size: Callable[[Any], int],
           expect: list[Any] | None = None, check: Callable | None = None,
           raised_fn: Callable | None = None, warmup: int = 3, max_raised: int = 20) -> OpStats:
    """Time fn(*a) for each a; CostExceeded counts as a refusal (its time kept apart); each
    answer is checked against the networkx answer with check(answer, expected) → error text."""
    st = OpStats(op)
    for a in args[:warmup]:
        with contextlib.suppress(CostExceeded):
            fn(*a)
    refused = []
    with Progress(TextColumn(f"  {op}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(op, total=len(args))
        for i, a in enumerate(args):
            t0 = time.perf_counter()
            try:
                r = fn(*a)
            except CostExceeded as exc:
                st.refused_ms.append((time.perf_counter() - t0) * 1000)
                st.refusal = st.refusal or str(exc)
                refused.append(i)
                progress.advance(task)
                continue
            st.times_ms.append((time.perf_counter() - t0) * 1000)
            st.sizes.append(size(r))
            if check and expect is not None:
                err = check(r, expect[i])
                if err:
                    st.mismatches.append(f"{a}: {err}")
            progress.advance(task)
    for i in refused[:max_raised] if raised_fn else ():
        t0 = time.perf_counter()
        try:
            r = raised_fn(*args[i])
        except CostExceeded:
            continue
        st.raised_ms.append((time.perf_counter() - t0) * 1000)
        st.raised_sizes.append(size(r))
        if check and expect is not None:
            err = check(r, expect[i])
            if err:
                st.mismatches.append(f"{args[i]} (raised limits): {err}")
    return st


# --------------------------------------------------------------------------- networkx side


def _directly_exposed(g: nx.MultiDiGraph, n: str) -> bool:
    attrs = g.nodes[n]
    if attrs["kind"] != "asset" or attrs.get("exposure") != "external":
        return False
    if attrs.get("class") == "url":
        return True
    nodes = g.nodes
    return any(("HAS_PORT" in rels and nodes[m].get("state") == "open")
               or ("HAS_VULNERABILITY" in rels and nodes[m].get("status") in OPEN_RISK)
               for m, rels in g.succ[n].items())


def nx_exposed(g: nx.MultiDiGraph, n: str, _seen: frozenset = frozenset()) -> bool:
    """The store's entry-point rule (traversal._entry_points): an external asset with an open
    port, a URL or an open risk, or an external name that resolves to such an asset."""
    if _directly_exposed(g, n):
        return True
    attrs = g.nodes[n]
    if attrs["kind"] != "asset" or attrs.get("exposure") != "external":
        return False
    seen = _seen | {n}
    return any("RESOLVES_TO" in rels and m not in seen and nx_exposed(g, m, seen)
               for m, rels in g.succ[n].items())


def nx_jewels(g: nx.MultiDiGraph, to: str | None) -> list[str]:
    if to is not None:
        return [to]
    return sorted(n for n, a in g.nodes.items()
                  if a["kind"] == "asset" and a.get("criticality") == "critical")


def nx_attack_paths(g: nx.MultiDiGraph, depth: int = 6, to: str | None = None) -> set[tuple]:
    """As the store: from each crown jewel, BFS backward along ACCESS_KINDS until a level holds
    entry points (exposure checked only where the search goes). {(jewel, entry, length)}."""
    found = set()
    for jewel in nx_jewels(g, to):
        seen, frontier, level = {jewel}, [jewel], 0
        entries = [jewel] if nx_exposed(g, jewel) else []
        while not entries and frontier and level < depth:
            nxt = []
            for b in frontier:
                for a, rels in g.pred[b].items():
                    if a not in seen and not ACCESS.isdisjoint(rels):
                        seen.add(a)
                        nxt.append(a)
            frontier, level = nxt, level + 1
            entries = [a for a in frontier if nx_exposed(g, a)]
        found.update((jewel, e, level) for e in entries)
    return found


def nx_attack_paths_forward(g: nx.MultiDiGraph, depth: int = 6) -> dict[str, int]:
    """The textbook alternative: every entry point (a scan of all nodes), then one multi-source
    BFS along ACCESS_KINDS until every crown jewel is reached; jewel → length."""
    entries = [n for n in g.nodes if nx_exposed(g, n)]
    jewels = set(nx_jewels(g, None))
    dist = dict.fromkeys(entries, 0)
    frontier = entries
    for level in range(1, depth + 1):
        if not frontier or jewels <= dist.keys():
            break
        nxt = []
        for a in frontier:
            for b, rels in g.succ[a].items():
                if b not in dist and not ACCESS.isdisjoint(rels):
                    dist[b] = level
                    nxt.append(b)
        frontier = nxt
    return {j: dist[j] for j in jewels if j in dist}


def nx_shortest(g: nx.MultiDiGraph, s: str, t: str, depth: int = 6) -> int | None:
    try:
        n = len(nx.bidirectional_shortest_path(g, s, t)) - 1
    except nx.NetworkXNoPath:
        return None
    return n if n <= depth else None


def run_networkx(g: nx.MultiDiGraph, w: Workload) -> tuple[dict[str, OpStats], dict[str, list]]:
    """Time the networkx equivalents; returns the stats and the expected answers per query."""
    expected: dict[str, list] = {}
    stats: dict[str, OpStats] = {}

    def nbrs(k):
        return list(g.out_edges(k, keys=True)) + list(g.in_edges(k, keys=True))

    ops = (
        ("neighbors", nbrs, [(k,) for k in w.starts], len),
        ("neighbors (hubs)", nbrs, [(k,) for k in w.hubs], len),
        ("reach depth 4", lambda k: nx.single_source_shortest_path_length(g, k, cutoff=4),
         [(k,) for k in w.starts], len),
        ("shortest_path depth 6", lambda s, t: nx_shortest(g, s, t), w.pairs,
         lambda r: 0 if r is None else r),
        ("attack_paths depth 6", lambda: nx_attack_paths(g), [()] * w.repeats, len),
        ("attack_paths to=jewel", lambda j: nx_attack_paths(g, to=j), [(j,) for j in w.jewels], len),
        ("attack_paths, forward BFS", lambda: nx_attack_paths_forward(g), [()] * min(3, w.repeats),
         len),
    )
    for op, fn, args, size in ops:
        st = OpStats(op)
        answers = []
        for a in args:
            t0 = time.perf_counter()
            r = fn(*a)
            st.times_ms.append((time.perf_counter() - t0) * 1000)
            st.sizes.append(size(r))
            answers.append(r)
        stats[op] = st
        expected[op] = [r if op.startswith("attack") else size(r) for r in answers]
        console.print(f"  networkx {op}: p50 {fmt(pct(st.times_ms)['p50'])} ms, "
                      f"p95 {fmt(pct(st.times_ms)['p95'])} ms")
    return stats, expected


# --------------------------------------------------------------------------- store side


def _attack_check(paths, want: set[tuple]) -> str | None:
    """Same (crown jewel, entry, length) triples as networkx; when the answer is cut at its
    limit, the ones returned must be among them and be the shortest."""
    got = {(p.crown_jewel, p.entry, len(p.path) - 1) for p in paths}
    if len(got) != len(paths):
        return "the same (jewel, entry) pair twice"
    if len(paths) >= 50:
        extra = got - want
        longest = max((n for *_x, n in got), default=0)
        shorter = {t for t in want - got if t[2] < longest}
        if extra or shorter:
            return f"not among networkx's: {sorted(extra)[:3]}; shorter ones left out: {sorted(shorter)[:3]}"
        return None
    if got != want:
        return (f"differs from networkx: only in the store {sorted(got - want)[:3]}, "
                f"only in networkx {sorted(want - got)[:3]}")
    return None


def run_store(ts, w: Workload, expected: dict[str, list] | None) -> dict[str, OpStats]:
    graph = ts.graph()
    raised = ts.graph(RAISED)
    exp = expected or {}

    def same(r, want):
        return None if r == want else f"{r} vs networkx {want}"

    plan = (
        ("neighbors", lambda gr: gr.neighbors, [(k,) for k in w.starts], len, same),
        ("neighbors (hubs)", lambda gr: gr.neighbors, [(k,) for k in w.hubs], len, same),
        ("reach depth 4", lambda gr: (lambda k: gr.reach(k, depth=4)), [(k,) for k in w.starts],
         len, same),
        ("shortest_path depth 6", lambda gr: (lambda s, t: gr.shortest_path(s, t, depth=6)),
         w.pairs, lambda r: 0 if r is None else len(r) - 1, same),
        ("attack_paths depth 6", lambda gr: (lambda: gr.attack_paths(depth=6)),
         [()] * w.repeats, len, _attack_check),
        ("attack_paths to=jewel", lambda gr: (lambda j: gr.attack_paths(to=j, depth=6)),
         [(j,) for j in w.jewels], len, _attack_check),
    )
    out = {}
    for op, make, args, size, check in plan:
        want = exp.get(op)
        chk = (lambda r, e, size=size, check=check: check(size(r), e)) if check is same else check
        st = run_op(op, make(graph), args, size, want, chk if want is not None else None,
                    raised_fn=make(raised), warmup=min(3, len(args)))
        out[op] = st
        s = st.summary()
        console.print(f"  {op}: p50 {fmt(s['p50_ms'])} ms, p95 {fmt(s['p95_ms'])} ms, "
                      f"max {fmt(s['max_ms'])} ms; {s['answered']} answered, {s['refused']} refused"
                      + (f", [red]{s['mismatches']} differ from networkx[/]" if s["mismatches"] else ""))
    return out


def analyze(store: Store) -> float:
    """Planner statistics and (PostgreSQL) the visibility map, as autovacuum / `PRAGMA optimize`
    would have them in steady state: straight after a bulk load no page is all-visible, so every
    index-only scan would still visit the table."""
    t0 = time.perf_counter()
    if store.dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - t0


def run_engine(engine_name: str, d: Data, w: Workload, expected, args, pg, cache: Path,
               stack: contextlib.ExitStack) -> dict:
    console.rule(f"[bold]{engine_name}")
    url, built = cached_database(engine_name, f"bastion_bench_graph_v{DATA_VERSION}_{len(d.keys)}"
                                 f"_s{args.seed}", pg, cache, args.reuse, stack)
    store = Store(url)
    if not built:
        migrate.upgrade(store.engine)
        store.ensure_tenant(TENANT)
    ts = store.tenant(TENANT)
    if built:
        load_s = None
        console.print("load: reused (--reuse)")
    else:
        load_s = load_store(ts, d, args.batch_size, engine_name)
        console.print(f"load through TenantStore.apply: {load_s:.1f} s "
                      f"({len(d.keys) / load_s:,.0f} entities/s, "
                      f"{(len(d.keys) + len(d.edges)) / load_s:,.0f} (entities+edges)/s)")
    problems = []
    counts = ts.counts()
    want = d.counts()
    diff = {k: (counts.get(k, 0), n) for k, n in want.items() if counts.get(k, 0) != n}
    if diff:
        problems.append(f"stored counts differ from generated (stored, generated): {diff}")
        console.print(f"[red]{problems[-1]}[/]")
    analyze_s = analyze(store) if not args.no_analyze else None
    refresh_s = None
    if not args.no_refresh_stats:
        t0 = time.perf_counter()
        ts.graph().refresh_stats()
        refresh_s = time.perf_counter() - t0
    console.print(f"(VACUUM) ANALYZE: {fmt(analyze_s and analyze_s * 1000)} ms; graph refresh_stats(): "
                  f"{fmt(refresh_s and refresh_s * 1000)} ms")
    if args.reuse and not built:
        mark_built(store)
    ops = run_store(ts, w, expected)
    size_mb = db_size_mb(store, url)
    store.close()
    return {"engine": engine_name, "load_s": load_s, "analyze_s": analyze_s,
            "refresh_stats_s": refresh_s, "db_size_mb": size_mb, "ops": ops, "problems": problems,
            "peak_rss_mb": peak_rss_mb()}


def db_size_mb(store: Store, url: str) -> float | None:
    with contextlib.suppress(Exception):
        if store.dialect == "sqlite":
            path = Path(store.engine.url.database)
            return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20
        with store.engine.connect() as conn:
            return conn.execute(text("SELECT pg_database_size(current_database())")).scalar() / 2**20
    return None


# --------------------------------------------------------------------------- report


def fmt(x: float | None, nd: int = 1) -> str:
    if x is None:
        return "–"
    return f"{x:,.{nd}f}" if x < 100 else f"{x:,.0f}"


def report(d: Data, nxr: dict | None, results: list[dict], info: dict, args) -> None:
    console.rule("[bold]results")
    print_machine(info)
    c = d.counts()
    n, e = len(d.keys), len(d.edges)
    console.print(f"graph: {n:,} nodes, {e:,} edges ({e / n:.2f} edges per node, mean degree "
                  f"{2 * e / n:.2f}); " + ", ".join(f"{k} {v:,}" for k, v in sorted(c.items())))
    g = d.groups
    console.print(f"  {len(g['apex'])} apex domains, {len(g['subdomain']):,} subdomains, "
                  f"{len(g['ip']):,} addresses + {len(g['cdn'])} CDN hubs, "
                  f"{len(g['internal']):,} internal assets of which {len(g['jewel'])} crown jewels")
    if nxr:
        console.print(f"networkx {nx.__version__}: load {nxr['load_s']:.1f} s, "
                      f"+{nxr['rss_mb']:,.0f} MiB RSS")
    for r in results:
        load = (f"load {r['load_s']:.1f} s ({n / r['load_s']:,.0f} entities/s)"
                if r["load_s"] else "load reused (--reuse)")
        console.print(f"{r['engine']}: {load}, database {fmt(r['db_size_mb'])} MiB, "
                      f"refresh_stats {fmt(r['refresh_stats_s'])} s")
    t = Table(title=f"graph queries, N={n:,} (ms; sizes = result rows)")
    for col in ("query", "engine", "p50", "p95", "max", "answered / refused", "non-empty",
                "mean size",
                "vs nx p50", "target p95", ""):
        t.add_column(col, justify="left" if col in ("query", "engine", "") else "right")
    nxs = nxr["ops"] if nxr else {}
    ops = list(results[0]["ops"]) if results else []
    ops += [op for op in nxs if op not in ops]
    for op in ops:
        for r in results:
            if op not in r["ops"]:
                continue
            s = r["ops"][op].summary()
            ratio = ""
            if op in nxs and s["p50_ms"] and pct(nxs[op].times_ms)["p50"]:
                ratio = f"{s['p50_ms'] / pct(nxs[op].times_ms)['p50']:,.1f}×"
            base = op.split(" ")[0]
            target = TARGETS_MS.get(base) if r["engine"] == "postgresql" and "hubs" not in op \
                and "to=" not in op else None
            verdict = ""
            if target is not None:
                ok = s["p95_ms"] is not None and s["p95_ms"] < target and not s["refused"]
                verdict = "[green]PASS[/]" if ok else "[red]MISS[/]"
                if n < 1_000_000:
                    verdict += " (1M target)"
            t.add_row(op, r["engine"], fmt(s["p50_ms"]), fmt(s["p95_ms"]), fmt(s["max_ms"]),
                      f"{s['answered']} / {s['refused']}", str(s["nonempty"]),
                      fmt(s["mean_size"]) if s["mean_size"] is not None else "–", ratio,
                      f"< {target}" if target else "", verdict)
            if s["raised"]["n"]:
                t.add_row("  refused ones, raised limits", r["engine"], fmt(s["raised"]["p50"]),
                          fmt(s["raised"]["p95"]), fmt(s["raised"]["max"]),
                          f"{s['raised']['n']} re-run", "", f"max {s['raised']['max_size']}", "",
                          "", "")
        if op in nxs:
            p = pct(nxs[op].times_ms)
            sizes = nxs[op].sizes
            t.add_row(op, "networkx", fmt(p["p50"]), fmt(p["p95"]), fmt(p["max"]),
                      f"{len(sizes)} / –", str(sum(1 for x in sizes if x)),
                      fmt(sum(sizes) / len(sizes)), "", "", "")
        t.add_section()
    console.print(t)
    for r in results:
        for op, st in r["ops"].items():
            if st.refusal:
                console.print(f"[yellow]{r['engine']} {op}: {len(st.refused_ms)} refused[/], e.g. "
                              f"{st.refusal}")
            for m in st.mismatches[:3]:
                console.print(f"[red]{r['engine']} {op} differs from networkx:[/] {m}")
        for p in r["problems"]:
            console.print(f"[red]CHECK FAILED ({r['engine']}):[/] {p}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100_000, help="entities to generate (default 100000)")
    ap.add_argument("--engines", default="sqlite,postgresql", help="comma-separated; '' for networkx only")
    ap.add_argument("--pg-url", default=os.environ.get("BASTION_BENCH_PG_URL"),
                    help="PostgreSQL server to create a scratch database on "
                         "(default $BASTION_BENCH_PG_URL, else a throwaway cluster)")
    ap.add_argument("--queries", type=int, default=200,
                    help="queries per kind (attack paths: a twentieth of it, at least 3)")
    ap.add_argument("--batch-size", type=int, default=20_000, help="entities per Batch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-networkx", action="store_true", help="skip networkx (and the answer checks)")
    ap.add_argument("--no-analyze", action="store_true", help="do not run ANALYZE (PostgreSQL: VACUUM ANALYZE) after loading")
    ap.add_argument("--no-refresh-stats", action="store_true",
                    help="do not run graph.refresh_stats() after loading (the cost guard then "
                         "does not know the largest fan-outs)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the loaded databases and reuse them when they exist (then the "
                         "load is not measured)")
    ap.add_argument("--cache-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "bastion-bench-graph",
                    help="where the SQLite databases are kept with --reuse")
    ap.add_argument("--json", type=Path, help="also write the figures and machine to this file")
    args = ap.parse_args(argv)
    engines = engine_list(ap, args.engines, allow_none=True)

    code = code_version()
    t0 = time.perf_counter()
    d = generate(args.nodes, args.seed)
    console.print(f"generated {len(d.keys):,} entities and {len(d.edges):,} edges "
                  f"({len(d.edges) / len(d.keys):.2f} per entity) in {time.perf_counter() - t0:.1f} s "
                  f"(seed {args.seed})")

    # networkx first: the workload's connected pairs are drawn from it, and its answers are the
    # reference every engine's answers are checked against.
    gc.collect()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    g = build_networkx(d)
    nx_load = time.perf_counter() - t0
    gc.collect()
    nx_rss = rss_mb() - rss0
    console.print(f"networkx MultiDiGraph: {nx_load:.1f} s to build, +{nx_rss:,.0f} MiB RSS")
    w = workload(d, g, args.queries, args.seed)
    nxr, expected = None, None
    if not args.no_networkx:
        console.rule("[bold]networkx")
        nx_ops, expected = run_networkx(g, w)
        nxr = {"load_s": nx_load, "rss_mb": nx_rss, "ops": nx_ops}
    del g
    # The generated graph stays in memory for the loads; frozen, the collector no longer walks
    # it, so a query's own garbage collections cost what they would in a small process.
    gc.collect()
    gc.freeze()

    results = []
    with contextlib.ExitStack() as stack:
        if args.reuse:
            tmp = args.cache_dir
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="bastion-graph-bench-"))
            stack.callback(shutil.rmtree, tmp, True)
        pg = Postgres(stack, args.pg_url) if "postgresql" in engines else None
        if "sqlite" in engines:
            console.print(f"SQLite {sqlite3.sqlite_version}: files under {tmp}")
        for engine_name in engines:
            results.append(run_engine(engine_name, d, w, expected, args, pg, tmp, stack))
        info = machine(pg, code)
    report(d, nxr, results, info, args)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "args": {k: str(v) for k, v in vars(args).items()},
            "graph": {"nodes": len(d.keys), "edges": len(d.edges), **d.counts()},
            "networkx": ({"load_s": nxr["load_s"], "rss_mb": nxr["rss_mb"],
                          "ops": {op: st.summary() for op, st in nxr["ops"].items()}}
                         if nxr else None),
            "engines": [{**{k: v for k, v in r.items() if k != "ops"},
                         "ops": {op: st.summary() for op, st in r["ops"].items()}}
                        for r in results],
        }, indent=2, default=str))
    failed = any(r["problems"] or any(st.mismatches for st in r["ops"].values()) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
