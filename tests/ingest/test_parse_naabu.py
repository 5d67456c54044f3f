"""naabu parser: open ports on addresses, host names, repeated lines, both port shapes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bastion.ingest import naabu
from bastion.ingest.records import Invalid, Record

SCANS = Path(__file__).parent.parent / "fixtures" / "scans"
FIXTURES = SCANS / "naabu"

IP3 = "#asset#192.0.2.3#192.0.2.3"
MAIL = "#asset#mail.example.com#mail.example.com"
MAIL_IP = "#asset#203.0.113.25#203.0.113.25"


def parse_file(path: Path) -> list[Record | Invalid]:
    with open(path, "rb") as fh:
        return list(naabu.parse(io.BufferedReader(fh)))


def parse_bytes(data: bytes) -> list[Record | Invalid]:
    return list(naabu.parse(io.BufferedReader(io.BytesIO(data))))


def keys(record: Record) -> list[str]:
    return [e.prepared[1] for e in record.entities]


def edges(record: Record) -> list[tuple[str, str, str]]:
    return [(r.kind, r.source, r.target) for r in record.relationships]


def test_without_host_and_with_repeats():
    records = parse_file(FIXTURES / "naabu.jsonl")
    # lines 4 and 5 repeat lines 1 and 3 exactly (the timestamp aside): skipped
    assert [r.where for r in records] == ["line 1", "line 2", "line 3", "line 6"]
    assert [keys(r) for r in records] == [
        [IP3, "#port#tcp#3000" + IP3],
        [IP3, "#port#tcp#8443" + IP3],
        [IP3, "#port#tcp#80" + IP3],
        ["#asset#2001:db8::5#2001:db8::5", "#port#tcp#22#asset#2001:db8::5#2001:db8::5"],
    ]
    assert all(edges(r) == [] for r in records)
    port = records[0].entities[1]
    assert port.values == {"asset": IP3, "protocol": "tcp", "number": 3000, "state": "open"}
    # the asset is given by identifier only: no class, status or exposure defaults
    assert records[0].entities[0].values == {"identifier": "192.0.2.3"}
    assert "2024" not in str([(e.values, e.properties) for r in records for e in r.entities])


def test_with_host_and_port_object():
    records = parse_file(FIXTURES / "naabu-host.jsonl")
    assert [r.where for r in records] == ["line 1", "line 2", "line 3", "line 4"]
    smtp, smtps, dns, bare = records
    # {"Port": 25, "Protocol": 0}: 0 is tcp
    assert keys(smtp) == [MAIL_IP, MAIL, "#port#tcp#25" + MAIL_IP]
    assert edges(smtp) == [("RESOLVES_TO", MAIL, MAIL_IP)]
    # "MAIL.example.com." is the same host name
    assert keys(smtps) == [MAIL_IP, MAIL, "#port#tcp#465" + MAIL_IP]
    ns = "#asset#ns1.example.com#ns1.example.com"
    ns_ip = "#asset#203.0.113.53#203.0.113.53"
    assert keys(dns) == [ns_ip, ns, "#port#udp#53" + ns_ip]
    assert edges(dns) == [("RESOLVES_TO", ns, ns_ip)]
    # host equal to the address: no second asset, no edge; port as a string
    ip80 = "#asset#203.0.113.80#203.0.113.80"
    assert keys(bare) == [ip80, "#port#tcp#8080" + ip80]
    assert edges(bare) == []


def test_same_port_for_two_host_names_is_not_skipped():
    data = (b'{"host":"a.example.com","ip":"192.0.2.9","port":443}\n'
            b'{"host":"b.example.com","ip":"192.0.2.9","port":443}\n'
            b'{"host":"a.example.com","ip":"192.0.2.9","port":443}\n')
    records = parse_bytes(data)
    assert [r.where for r in records] == ["line 1", "line 2"]
    assert edges(records[1]) == [("RESOLVES_TO", "#asset#b.example.com#b.example.com",
                                  "#asset#192.0.2.9#192.0.2.9")]


def test_malformed_records():
    records = parse_file(FIXTURES / "malformed.jsonl")
    assert isinstance(records[0], Record)
    assert all(isinstance(r, Invalid) for r in records[1:])
    reasons = {r.where: r.reason for r in records[1:]}
    assert list(reasons) == ["line 2", "line 3", "line 4", "line 5", "line 6", "line 7"]
    assert reasons["line 2"].startswith("not valid JSON")
    assert reasons["line 3"] == "no 'port' member"
    assert reasons["line 4"] == ("member 'ip': invalid IP address '10.0.0.300': Octet 300 "
                                 "(> 255) not permitted in '10.0.0.300'")
    assert reasons["line 5"] == "no 'ip' member: nothing to place the result on"
    assert reasons["line 6"] == "member 'port': 70000 is outside 1-65535"
    assert reasons["line 7"] == "member 'protocol': unknown protocol 2 (expected tcp or udp)"


@pytest.mark.parametrize("line, reason", [
    (b'{"ip":"192.0.2.1","port":"ssh"}', "member 'port' is not a port number: 'ssh'"),
    (b'{"ip":"192.0.2.1","port":[22]}', "member 'port' is not a port number: [22]"),
    (b'{"ip":"www.example.com","port":22}',
     "member 'ip': invalid IP address 'www.example.com'"),
    (b'{"ip":"192.0.2.1","port":22,"protocol":"icmp"}',
     "member 'protocol': unknown protocol 'icmp' (expected tcp or udp)"),
])
def test_bad_values(line, reason):
    (r,) = parse_bytes(line + b"\n")
    assert isinstance(r, Invalid) and r.where == "line 1"
    assert r.reason.startswith(reason)
