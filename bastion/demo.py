"""A small, realistic sample attack surface (acme.example), loaded through the library.

`bastion demo` calls `run()`: it applies the surface twice (the second apply changes nothing),
triages one risk (one `risk.status_changed` event) and reports what the tenant holds. Running it
again changes nothing at all: the surface keeps a risk's stored status, as a scanner re-reporting
a finding would not undo a person's triage.

Addresses are from the documentation ranges (RFC 5737) and the domain is reserved (RFC 2606).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bastion.schema.batch import Batch, key_for
from bastion.schema.kinds import SEVERITIES
from bastion.store.store import Event, Record, TenantStore
from bastion.store.writer import ApplyResult

DOMAIN = "acme.example"
SOURCE = "demo"

# name → (IP it resolves to, exposure, criticality)
HOSTS: dict[str, tuple[str, str, str | None]] = {
    "www.acme.example": ("203.0.113.10", "external", "medium"),
    "api.acme.example": ("203.0.113.10", "external", "high"),
    "vpn.acme.example": ("203.0.113.20", "external", "high"),
    "mail.acme.example": ("198.51.100.25", "external", "medium"),
    # The crown jewel: the payment system.
    "billing.acme.example": ("203.0.113.30", "external", "critical"),
}

# (IP, protocol, port, service, CPE of what answers there or None, banner)
PORTS: list[tuple[str, str, int, str, str | None, str | None]] = [
    ("203.0.113.10", "tcp", 80, "http", "cpe:2.3:a:apache:http_server:2.4.49", "Apache/2.4.49 (Unix)"),
    ("203.0.113.10", "tcp", 443, "https", "cpe:2.3:a:apache:http_server:2.4.49", "Apache/2.4.49 (Unix)"),
    ("203.0.113.20", "tcp", 443, "https", "cpe:2.3:o:fortinet:fortios:6.0.4", None),
    ("203.0.113.20", "udp", 500, "isakmp", None, None),
    ("198.51.100.25", "tcp", 25, "smtp", "cpe:2.3:a:exim:exim:4.94", "ESMTP Exim 4.94"),
    ("203.0.113.30", "tcp", 443, "https", "cpe:2.3:a:f5:nginx:1.18.0", "nginx/1.18.0"),
    ("203.0.113.30", "tcp", 22, "ssh", "cpe:2.3:a:openbsd:openssh:8.9p1", "SSH-2.0-OpenSSH_8.9p1"),
]

TECHNOLOGIES = {
    "cpe:2.3:a:apache:http_server:2.4.49": ("Apache HTTP Server", "apache"),
    "cpe:2.3:o:fortinet:fortios:6.0.4": ("FortiOS", "fortinet"),
    "cpe:2.3:a:exim:exim:4.94": ("Exim", "exim"),
    "cpe:2.3:a:f5:nginx:1.18.0": ("nginx", "f5"),
    "cpe:2.3:a:openbsd:openssh:8.9p1": ("OpenSSH", "openbsd"),
}

# (IP, protocol, port of the target; values of the risk)
RISKS: list[tuple[str, str, int, dict[str, Any]]] = [
    ("203.0.113.20", "tcp", 443, dict(
        cve="CVE-2018-13379", severity="critical", cvss=9.8, status="open",
        title="FortiOS SSL VPN path traversal exposes session files (credentials)")),
    ("203.0.113.10", "tcp", 443, dict(
        cve="CVE-2021-41773", severity="high", cvss=7.5, status="triage",
        title="Apache HTTP Server 2.4.49 path traversal and file disclosure")),
    ("203.0.113.30", "tcp", 22, dict(
        cve="CVE-2024-6387", severity="high", cvss=8.1, status="open",
        title="OpenSSH signal handler race condition (regreSSHion)")),
    ("198.51.100.25", "tcp", 25, dict(
        name="smtp-weak-tls-ciphers", severity="medium", status="triage",
        title="SMTP STARTTLS accepts weak cipher suites")),
    ("203.0.113.10", "tcp", 443, dict(
        name="missing-hsts-header", severity="low", status="triage",
        title="HTTP Strict-Transport-Security header is missing")),
    ("203.0.113.10", "tcp", 80, dict(
        name="http-server-version-disclosure", severity="info", status="accepted",
        reason="other", title="Server header discloses the Apache version")),
]

# The risk the demo triages: CVE-2021-41773 goes from triage to open.
TRIAGED = ("203.0.113.10", "tcp", 443, "CVE-2021-41773")

CAPABILITIES = {
    "subfinder": ("discovery", "2.6.6"),
    "nmap": ("scanner", "7.94"),
    "httpx": ("enrichment", "1.6.0"),
    "nuclei": ("scanner", "3.2.4"),
}

# A fixed time, so that re-running the demo does not change the job.
JOB_TIME = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)


def _asset_key(identifier: str) -> str:
    return key_for("asset", identifier=identifier)


def _port_key(ip: str, protocol: str, number: int) -> str:
    return key_for("port", asset=_asset_key(ip), protocol=protocol, number=number)


def _risk_values(ip: str, protocol: str, number: int, values: dict[str, Any]) -> dict[str, Any]:
    return {"target": _port_key(ip, protocol, number), **values}


def surface(tenant: TenantStore | None = None) -> Batch:
    """The sample attack surface as one batch. With `tenant`, risks keep their stored status."""
    b = Batch()
    seed = b.add("seed", identifier=DOMAIN)
    cidr_seed = b.add("seed", identifier="203.0.113.0/24")
    caps = {name: b.add("capability", name=name, category=cat, version=ver)
            for name, (cat, ver) in CAPABILITIES.items()}

    root = b.add("asset", identifier=DOMAIN, exposure="external", criticality="medium")
    b.link("DISCOVERED", seed, root)
    net = b.add("asset", identifier="203.0.113.0/24", exposure="external")
    b.link("DISCOVERED", cidr_seed, net)
    b.add("job", target=seed, capability="subfinder", status="passed",
          started_at=JOB_TIME, finished_at=JOB_TIME.replace(minute=34))

    ips: dict[str, str] = {}
    for host, (ip, exposure, criticality) in HOSTS.items():
        name = b.add("asset", {"source": "subfinder"}, identifier=host, exposure=exposure,
                     criticality=criticality, **{"class": "subdomain"})
        b.link("SUBDOMAIN_OF", name, root)
        b.link("DISCOVERED", caps["subfinder"], name)
        if ip not in ips:
            ips[ip] = b.add("asset", identifier=ip, exposure="external")
            b.link("DISCOVERED", caps["nmap"], ips[ip])
        b.link("RESOLVES_TO", name, ips[ip])

    techs = {}
    for cpe, (product, vendor) in TECHNOLOGIES.items():
        techs[cpe] = b.add("technology", cpe=cpe, name=product, vendor=vendor)
        b.link("DISCOVERED", caps["httpx"], techs[cpe])

    for ip, protocol, number, service, cpe, banner in PORTS:
        props = {"banner": banner} if banner else None
        port = b.add("port", props, asset=ips[ip], protocol=protocol, number=number,
                     service=service, state="open")
        b.link("DISCOVERED", caps["nmap"], port)
        b.link("SCANNED_BY", ips[ip], caps["nmap"])
        if cpe:
            b.link("HAS_TECHNOLOGY", port, techs[cpe])

    for ip, protocol, number, values in RISKS:
        values = _risk_values(ip, protocol, number, values)
        if tenant is not None:
            stored = tenant.get(key_for("risk", **values))
            if stored is not None:  # a person's triage outlives the scanner's report
                values["status"] = stored.values["status"]
                values["reason"] = stored.values["reason"]
        risk = b.add("risk", **values)
        b.link("DISCOVERED", caps["nuclei"], risk)

    billing = _asset_key("billing.acme.example")
    # Behind the billing front end, inside the network: the card database (a crown jewel that
    # no scanner sees; a CMDB would bring these relationships with `bastion import`).
    card_db = b.add("asset", identifier="10.20.0.5", exposure="internal", criticality="critical")
    b.add("attribute", parent=card_db, name="tag", value="critical")
    b.link("CONNECTS_TO", key_for("port", asset=ips["203.0.113.30"], number=443), card_db)
    b.link("DEPENDS_ON", billing, card_db)
    b.add("attribute", parent=billing, name="owner", value="payments-team")
    b.add("attribute", parent=billing, name="compliance", value="pci-dss")
    b.add("attribute", parent=ips["203.0.113.10"], name="cloud", value="aws")
    b.add("integration", type="aws", name="acme-prod", status="enabled")
    return b


def _triaged_values() -> dict[str, Any]:
    return next(_risk_values(ip, protocol, number, values) for ip, protocol, number, values in RISKS
                if (ip, protocol, number, values.get("cve")) == TRIAGED)


def triaged_risk_key() -> str:
    return key_for("risk", **_triaged_values())


@dataclass
class DemoReport:
    first: ApplyResult
    second: ApplyResult
    triage: ApplyResult | None  # None when an earlier run already triaged the risk
    triaged_key: str
    triaged_status: str
    counts: dict[str, int]
    risks: dict[str, list[Record]]  # by severity, most severe first
    last_events: list[Event] = field(default_factory=list)
    crown_jewels: list[Record] = field(default_factory=list)


def run(tenant: TenantStore, *, actor: str, events: int = 8) -> DemoReport:
    """Load the surface twice, triage one risk, and collect what the tenant holds."""
    first = tenant.apply(surface(tenant), actor=actor, source=SOURCE)
    second = tenant.apply(surface(tenant), actor=actor, source=SOURCE)

    key = triaged_risk_key()
    current = tenant.get(key)
    assert current is not None  # the surface just wrote it
    triage = None
    if current.values["status"] == "triage":
        values = _triaged_values()
        values["status"] = "open"
        b = Batch()
        b.add("risk", expected_version=current.version, **values)
        triage = tenant.apply(b, actor=actor, source=SOURCE)
        current = tenant.get(key)
        assert current is not None

    risks = {sev: tenant.list("risk", where={"severity": sev}, order_by="cvss",
                              descending=True).records
             for sev in reversed(SEVERITIES)}
    jewels = tenant.list("asset", where={"criticality": "critical"}).records
    return DemoReport(first, second, triage, key, current.values["status"], tenant.counts(),
                      risks, _last_events(tenant, events), jewels)


def _last_events(tenant: TenantStore, n: int) -> list[Event]:
    """The last `n` entity events (edge events are most of the log and say less)."""
    tail: list[Event] = []
    after = 0
    while True:
        page = tenant.events(after_seq=after, limit=1000)
        if not page:
            return tail
        tail = (tail + [ev for ev in page if ev.entity_kind != "edge"])[-n:]
        after = page[-1].seq
