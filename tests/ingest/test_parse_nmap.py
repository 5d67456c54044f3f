"""nmap XML parser: mapping, streaming places, and the refusal of DTD entities (XXE)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from bastion.ingest import nmap
from bastion.ingest.records import Invalid, Malformed, Record, Sample

FIXTURES = Path(__file__).parent.parent / "fixtures" / "scans"
NMAP = FIXTURES / "nmap"

IP = "#asset#203.0.113.5#203.0.113.5"
SSH = f"#port#tcp#22{IP}"
HTTPS = f"#port#tcp#443{IP}"
OPENSSH = "#technology#cpe:2.3:a:openbsd:openssh:7.4:*:*:*:*:*:*:*"
KERNEL = "#technology#cpe:2.3:o:linux:linux_kernel:*:*:*:*:*:*:*:*"
NGINX = "#technology#cpe:2.3:a:*:nginx:1.18.0:*:*:*:*:*:*:*"
V6 = "#asset#2001:db8::10#2001:db8::10"


def parse(path: Path) -> list:
    with open(path, "rb") as fh:
        return list(nmap.parse(io.BufferedReader(fh)))


def keys(rec: Record) -> list[str]:
    return [e.prepared[1] for e in rec.entities]


def edges(rec: Record) -> set[tuple[str, str, str]]:
    return {(r.kind, r.source, r.target) for r in rec.relationships}


@pytest.fixture(scope="module")
def scan() -> list:
    return parse(NMAP / "scan.xml")


def test_places_count_every_host_and_skip_down_ones(scan):
    # host 2 is down: no record, but it still counts
    assert [r.where for r in scan] == ["host 1 (line 8)", "host 3 (line 51)", "host 4 (line 61)"]


def test_host_assets_hostnames_and_mac_skipped(scan):
    rec = scan[0]
    assert isinstance(rec, Record)
    ks = keys(rec)
    assert ks[:3] == [IP, "#asset#www.example.com#www.example.com",
                      "#asset#web1.example.com#web1.example.com"]
    assert not any("00:1a:2b" in k.lower() for k in ks)  # the MAC address is not an asset
    assert ("RESOLVES_TO", "#asset#www.example.com#www.example.com", IP) in edges(rec)
    assert ("RESOLVES_TO", "#asset#web1.example.com#web1.example.com", IP) in edges(rec)  # PTR
    for e in rec.entities:  # identity conventions: no class/status/exposure/name given
        if e.kind == "asset":
            assert set(e.values) == {"identifier"}


def test_only_open_ports(scan):
    ports = [k for k in keys(scan[0]) if k.startswith("#port#")]
    assert ports == [SSH, HTTPS]  # closed 80, open|filtered 161/udp and filtered 8080 skipped
    ssh = next(e for e in scan[0].entities if e.prepared[1] == SSH)
    assert ssh.values == {"asset": IP, "protocol": "tcp", "number": 22, "service": "ssh"}
    assert ssh.properties == {"product": "OpenSSH", "version": "7.4", "extrainfo": "protocol 2.0"}


def test_technologies_prefer_cpe_and_os_goes_to_the_host(scan):
    rec = scan[0]
    assert {OPENSSH, KERNEL, NGINX} <= set(keys(rec))
    assert ("HAS_TECHNOLOGY", SSH, OPENSSH) in edges(rec)
    assert ("HAS_TECHNOLOGY", IP, KERNEL) in edges(rec)  # cpe:/o: belongs to the host
    assert ("HAS_TECHNOLOGY", HTTPS, NGINX) in edges(rec)  # no <cpe>: product + version
    # no technology built from the product name when a CPE was given
    assert "#technology#cpe:2.3:a:*:openssh:7.4:*:*:*:*:*:*:*" not in keys(rec)


def test_vulners_findings_on_the_port(scan):
    found = {f.name: f for f in scan[0].findings}
    assert set(found) == {"CVE-2018-15919", "CVE-2023-38408"}  # EDB-ID entry skipped
    low = found["CVE-2018-15919"]
    assert (low.target, low.cve, low.cvss, low.severity) == (SSH, "CVE-2018-15919", 5.0, "medium")
    assert low.evidence == ["cpe:/a:openbsd:openssh:7.4 on tcp/22"]
    assert low.title == "CVE-2018-15919 in OpenSSH 7.4"  # a title, from the port's software
    assert low.properties == {"source": "vulners", "cpe": "cpe:/a:openbsd:openssh:7.4",
                              "is_exploit": False}
    crit = found["CVE-2023-38408"]
    assert (crit.severity, crit.cvss, crit.properties["is_exploit"]) == ("critical", 9.8, True)


def test_ipv6_host_and_udp_port(scan):
    rec = scan[1]
    assert keys(rec)[:2] == [V6, "#asset#v6.example.com#v6.example.com"]
    assert f"#port#tcp#25{V6}" in keys(rec)
    assert f"#port#udp#53{V6}" in keys(rec)
    assert ("RESOLVES_TO", "#asset#v6.example.com#v6.example.com", V6) in edges(rec)
    assert ("HAS_TECHNOLOGY", f"#port#tcp#25{V6}",
            "#technology#cpe:2.3:a:*:postfix_smtpd:*:*:*:*:*:*:*:*") in edges(rec)


def test_bad_address_is_an_invalid_host(scan):
    bad = scan[2]
    assert isinstance(bad, Invalid)
    assert bad.where == "host 4 (line 61)"
    assert bad.reason == "<address addrtype=\"ipv4\"> addr '198.51.100.300' is not an IP address"


@pytest.mark.parametrize("name, entity", [("xxe.xml", "xxe"), ("billion-laughs.xml", "lol")])
def test_entity_declarations_are_refused(name, entity):
    with pytest.raises(Malformed) as err:
        parse(NMAP / name)
    assert str(err.value) == (
        f"refused XML: the document type declares the entity {entity!r}: DTD entity declarations "
        "are refused (possible XXE / entity expansion attack)")


def test_truncated_xml_names_the_line():
    records = []
    with pytest.raises(Malformed) as err:
        with open(NMAP / "truncated.xml", "rb") as fh:
            for rec in nmap.parse(io.BufferedReader(fh)):
                records.append(rec)
    assert str(err.value) == "not well-formed XML at line 10, column 40: unclosed token"
    assert [r.where for r in records] == ["host 1 (line 4)"]  # hosts before the break were read


def test_not_xml_and_not_nmap():
    with pytest.raises(Malformed, match=r"not well-formed XML at line 1, column 0"):
        list(nmap.parse(io.BufferedReader(io.BytesIO(b"host,port\n1.2.3.4,80\n"))))
    with pytest.raises(Malformed, match=r"root element is <report>, expected <nmaprun>"):
        parse(NMAP / "not-nmap.xml")
    with pytest.raises(Malformed, match=r"not well-formed XML at line 1"):
        list(nmap.parse(io.BufferedReader(io.BytesIO(b""))))


def test_host_elements_are_streamed_in_small_chunks(monkeypatch):
    monkeypatch.setattr(nmap, "CHUNK", 7)
    assert [r.where for r in parse(NMAP / "scan.xml")] == [
        "host 1 (line 8)", "host 3 (line 51)", "host 4 (line 61)"]


def _sample(path: Path) -> Sample:
    head = path.read_bytes()[:65536]
    try:
        first = orjson.loads(head.splitlines()[0]) if head.strip()[:1] in (b"{", b"[") else None
    except orjson.JSONDecodeError:
        first = None
    if isinstance(first, list):
        first = first[0] if first else None
    return Sample(head, first)


def test_sniff():
    for name in ("scan.xml", "xxe.xml", "billion-laughs.xml", "truncated.xml", "not-nmap.xml"):
        assert nmap.sniff(_sample(NMAP / name)), name
    assert nmap.sniff(Sample(b"\xef\xbb\xbf  \n<?xml version='1.0'?><nmaprun/>"))
