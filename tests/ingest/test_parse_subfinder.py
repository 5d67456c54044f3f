"""subfinder parser: subdomains of an input domain, with their addresses when resolved."""

from __future__ import annotations

import io
from pathlib import Path


from bastion.ingest import subfinder
from bastion.ingest.records import Invalid, Record, Sample

SCANS = Path(__file__).parent.parent / "fixtures" / "scans"
FIXTURES = SCANS / "subfinder"

ROOT = "#asset#example.com#example.com"
WWW = "#asset#www.example.com#www.example.com"


def parse_file(path: Path) -> list[Record | Invalid]:
    with open(path, "rb") as fh:
        return list(subfinder.parse(io.BufferedReader(fh)))


def keys(record: Record) -> list[str]:
    return [e.prepared[1] for e in record.entities]


def edges(record: Record) -> list[tuple[str, str, str]]:
    return [(r.kind, r.source, r.target) for r in record.relationships]


def test_subdomains():
    records = parse_file(FIXTURES / "subfinder.jsonl")
    assert [r.where for r in records] == [f"line {n}" for n in range(1, 8)]
    www, api, www_again, root, vpn, other, wildcard = records

    assert keys(www) == [WWW, ROOT]
    assert edges(www) == [("DISCOVERED", ROOT, WWW), ("SUBDOMAIN_OF", WWW, ROOT)]
    # no properties on edges: the source would change from run to run
    assert all(r.properties is None for rec in records for r in rec.relationships)
    assert all(e.properties is None for rec in records for e in rec.entities)
    assert "crtsh" not in str([(e.values, e.properties) for e in www.entities])

    api_key = "#asset#api.example.com#api.example.com"  # from "API.Example.com."
    assert keys(api) == [api_key, ROOT]
    assert edges(api) == [("DISCOVERED", ROOT, api_key), ("SUBDOMAIN_OF", api_key, ROOT)]

    # the same host from another source: the same record content
    assert keys(www_again) == keys(www) and edges(www_again) == edges(www)

    # host == input: one asset, no edge to itself
    assert keys(root) == [ROOT]
    assert edges(root) == []

    vpn_key = "#asset#vpn.example.com#vpn.example.com"
    vpn_ip = "#asset#198.51.100.20#198.51.100.20"
    assert keys(vpn) == [vpn_key, ROOT, vpn_ip]
    assert edges(vpn) == [("DISCOVERED", ROOT, vpn_key), ("SUBDOMAIN_OF", vpn_key, ROOT),
                          ("RESOLVES_TO", vpn_key, vpn_ip)]

    # a related name outside the input domain: discovered, but not a subdomain
    cdn = "#asset#cdn.example.net#cdn.example.net"
    assert edges(other) == [("DISCOVERED", ROOT, cdn)]

    star = "#asset#*.dev.example.com#*.dev.example.com"
    assert edges(wildcard) == [("DISCOVERED", ROOT, star), ("SUBDOMAIN_OF", star, ROOT)]


def test_without_input():
    (r,) = subfinder.parse(io.BufferedReader(io.BytesIO(
        b'{"host":"www.example.com","source":"crtsh"}\n')))
    assert keys(r) == [WWW] and edges(r) == []


def test_malformed_records():
    records = parse_file(FIXTURES / "malformed.jsonl")
    assert isinstance(records[0], Record)
    assert all(isinstance(r, Invalid) for r in records[1:])
    reasons = {r.where: r.reason for r in records[1:]}
    assert list(reasons) == ["line 2", "line 3", "line 4", "line 5"]
    assert reasons["line 2"].startswith("not valid JSON")
    assert reasons["line 3"] == "no 'host' member: nothing to place the result on"
    assert reasons["line 4"].startswith("member 'ip': invalid IP address '198.51.100.300'")
    assert reasons["line 5"].startswith(
        "member 'host': invalid DNS name 'bad_name-.example.com'")


def test_sniff_rejects_a_port():
    first = {"host": "a.example.com", "input": "example.com", "source": "x", "port": 80}
    assert not subfinder.sniff(Sample(head=b"", first=first))
