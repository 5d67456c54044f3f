"""BBOT NDJSON parser: 2.x and 3.0 events, findings, parent (DISCOVERED) links."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from bastion.ingest import bbot
from bastion.ingest.records import Invalid, Record, Sample

FIXTURES = Path(__file__).parent.parent / "fixtures" / "scans"
BBOT = FIXTURES / "bbot"

EXAMPLE = "#asset#example.com#example.com"
WWW = "#asset#www.example.com#www.example.com"
LOGIN = "#asset#www.example.com#https://www.example.com/login"
SHOP = "#asset#shop.example.org#shop.example.org"
ADMIN = "#asset#shop.example.org#https://shop.example.org:8443/admin"
SHOP_IP = "#asset#198.51.100.7#198.51.100.7"
SEED = "#seed#domain#example.com"


def parse(path: Path) -> list:
    with open(path, "rb") as fh:
        return list(bbot.parse(io.BufferedReader(fh)))


def keys(rec: Record) -> list[str]:
    return [e.prepared[1] for e in rec.entities]


def edges(rec: Record) -> set[tuple[str, str, str]]:
    return {(r.kind, r.source, r.target) for r in rec.relationships}


@pytest.fixture(scope="module")
def v2() -> dict:
    return {r.where: r for r in parse(BBOT / "bbot-v2.ndjson")}


@pytest.fixture(scope="module")
def v3() -> dict:
    return {r.where: r for r in parse(BBOT / "bbot-v3.ndjson")}


def test_v2_skipped_types_give_no_record(v2):
    # line 4 URL_UNVERIFIED, line 11 ASN
    assert list(v2) == ["line 1", "line 2", "line 3", "line 5", "line 6", "line 7", "line 8",
                        "line 9", "line 10", "line 12", "line 13", "line 14", "line 15"]


def test_v2_scan_seeds_become_seed_entities_linked_to_the_targets(v2):
    # the SCAN event: one seed per target seed; the target event (parent: the scan) is found
    # from its seed
    assert keys(v2["line 1"]) == [SEED] and edges(v2["line 1"]) == set()
    assert ("DISCOVERED", SEED, EXAMPLE) in edges(v2["line 2"])
    assert ("DISCOVERED", SEED, WWW) not in edges(v2["line 3"])  # found from example.com


def test_v2_dns_name_and_resolved_hosts(v2):
    rec = v2["line 2"]
    assert keys(rec) == [EXAMPLE, "#asset#203.0.113.10#203.0.113.10",
                         "#asset#2001:db8::10#2001:db8::10", SEED]
    assert edges(rec) == {("RESOLVES_TO", EXAMPLE, "#asset#203.0.113.10#203.0.113.10"),
                          ("RESOLVES_TO", EXAMPLE, "#asset#2001:db8::10#2001:db8::10"),
                          ("DISCOVERED", SEED, EXAMPLE)}
    assert all(set(e.values) == {"identifier"} for e in rec.entities)
    # parent DNS_NAME → child DNS_NAME (name normalized)
    assert ("DISCOVERED", EXAMPLE, WWW) in edges(v2["line 3"])


def test_v2_open_ports(v2):
    assert keys(v2["line 5"]) == [WWW, f"#port#tcp#443{WWW}"]
    assert edges(v2["line 5"]) == set()  # parent is a URL_UNVERIFIED: skipped, no edge
    v6 = "#asset#2001:db8::10#2001:db8::10"
    assert keys(v2["line 6"]) == [v6, f"#port#tcp#8443{v6}"]
    assert edges(v2["line 6"]) == {("DISCOVERED", EXAMPLE, v6)}


def test_v2_url_technology(v2):
    assert keys(v2["line 7"]) == [LOGIN, WWW]
    assert edges(v2["line 7"]) == {("RESOLVES_TO", LOGIN, WWW), ("DISCOVERED", WWW, LOGIN)}
    nginx = "#technology#cpe:2.3:a:*:nginx:*:*:*:*:*:*:*:*"
    assert keys(v2["line 8"]) == [WWW, nginx]
    assert edges(v2["line 8"]) == {("HAS_TECHNOLOGY", WWW, nginx), ("DISCOVERED", LOGIN, WWW)}


def test_v2_finding_named_by_a_stable_slug(v2):
    (f,) = v2["line 9"].findings
    assert (f.target, f.name, f.severity) == (WWW, "potentially-sprayable-oauth-endpoint", "info")
    assert f.evidence == ["https://www.example.com/oauth2/token"]
    assert f.properties == {"module": "oauth"}
    assert f.cve is None


def test_v2_vulnerability_with_cve_in_description(v2):
    (f,) = v2["line 10"].findings
    assert (f.target, f.name, f.cve, f.severity) == (WWW, "CVE-2021-44228", "CVE-2021-44228",
                                                     "critical")
    assert f.evidence == ["https://www.example.com/login"]


def test_v2_siem_friendly_data_and_invalid_lines(v2):
    assert keys(v2["line 12"]) == ["#asset#203.0.113.10#203.0.113.10"]
    assert v2["line 13"] == Invalid(
        "line 13", "OPEN_TCP_PORT 'www.example.com' is not host:port or [IPv6]:port")
    # the parent (line 13) was invalid: no DISCOVERED edge from it
    assert keys(v2["line 14"]) == ["#asset#mail.example.com#mail.example.com"]
    assert edges(v2["line 14"]) == set()
    assert isinstance(v2["line 15"], Invalid)
    assert v2["line 15"].reason.startswith("not valid JSON")


def test_v3_data_json_and_epoch_timestamps(v3):
    # the SCAN event names no seed: no record; its target is seeded by itself
    assert list(v3) == ["line 2", "line 3", "line 4", "line 5", "line 6", "line 7", "line 8"]
    shop_seed = "#seed#domain#shop.example.org"
    assert edges(v3["line 2"]) == {("RESOLVES_TO", SHOP, SHOP_IP), ("DISCOVERED", shop_seed, SHOP)}
    assert keys(v3["line 3"]) == [ADMIN, SHOP]
    assert edges(v3["line 3"]) == {("RESOLVES_TO", ADMIN, SHOP), ("DISCOVERED", SHOP, ADMIN)}


def test_v3_finding_name_severity_confidence(v3):
    (f,) = v3["line 4"].findings
    assert (f.target, f.name, f.severity) == (SHOP, "exposed-admin-panel", "high")
    assert f.properties == {"module": "badsecrets", "confidence": "confirmed"}
    assert f.evidence == ["https://shop.example.org:8443/admin"]


def test_v3_finding_with_cves_gives_one_finding_per_cve(v3):
    rec = v3["line 5"]
    assert [(f.name, f.cve, f.severity, f.target) for f in rec.findings] == [
        ("CVE-2022-0778", "CVE-2022-0778", "medium", SHOP_IP),
        ("CVE-2023-0286", "CVE-2023-0286", "medium", SHOP_IP)]
    assert rec.findings[0].properties["bbot_name"] == "Outdated OpenSSL"
    assert ("DISCOVERED", SHOP, SHOP_IP) in edges(rec)  # parent found by parent_uuid


def test_v3_udp_port_and_cpe_technology_on_url(v3):
    assert keys(v3["line 6"]) == [SHOP_IP, f"#port#udp#161{SHOP_IP}"]
    tech = "#technology#cpe:2.3:a:f5:nginx:1.25.3:*:*:*:*:*:*:*"
    assert keys(v3["line 7"]) == [ADMIN, tech]
    assert edges(v3["line 7"]) == {("HAS_TECHNOLOGY", ADMIN, tech)}  # no self DISCOVERED


def test_v3_finding_without_host(v3):
    assert v3["line 8"] == Invalid("line 8", "FINDING event has no 'host' (nor a 'url' with a host)")


def test_scan_targets_of_every_shape_become_seeds():
    recs = {r.where: r for r in parse(BBOT / "bbot-cycle.ndjson")}
    cidr = "#seed#cidr#192.0.2.0/30"
    assert keys(recs["line 1"]) == [SEED, cidr]
    assert keys(recs["line 3"]) == [cidr]  # an IP_RANGE target is its seed
    ip = "#asset#192.0.2.1#192.0.2.1"
    assert edges(recs["line 10"]) == {("DISCOVERED", cidr, ip)}
    # a target named as a URL or host:port is seeded by its host; what is no DNS name, IP or
    # CIDR (an organisation, an e-mail address) gives no seed
    rec = Record("x")
    assert [bbot._seed(rec, t) for t in ("https://App.example.com:8443/x", "example.org:443",
                                         "[2001:db8::1]:80", "ORG:evilcorp", "a@b.example", "", None)] == [
        "#seed#domain#app.example.com", "#seed#domain#example.org", "#seed#ip#2001:db8::1",
        None, None, None, None]


def test_slug_is_stable_across_targets():
    a = bbot._slug("Potentially Sprayable OAUTH Endpoint (domain: a.com) at https://x/1")
    b = bbot._slug("Potentially Sprayable OAUTH Endpoint (domain: b.org) at https://y/2")
    assert a == b == "potentially-sprayable-oauth-endpoint"
    assert bbot._slug("Open redirect. Details follow.") == "open-redirect"


def _sample(path: Path) -> Sample:
    head = path.read_bytes()[:65536]
    try:
        first = orjson.loads(head.splitlines()[0]) if head.strip()[:1] in (b"{", b"[") else None
    except (orjson.JSONDecodeError, IndexError):
        first = None
    return Sample(head, first)


def test_sniff():
    for name in ("bbot-v2.ndjson", "bbot-v3.ndjson"):
        assert bbot.sniff(_sample(BBOT / name)), name
    assert not bbot.sniff(Sample(b"", {"type": "x", "data": "y"}))  # no module/parent/…
