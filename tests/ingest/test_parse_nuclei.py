"""nuclei parser: v3 and v2 keys, JSON lines and the -je JSON array, malformed records."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from bastion.ingest import nuclei
from bastion.ingest.records import Invalid, Record, Sample

SCANS = Path(__file__).parent.parent / "fixtures" / "scans"
FIXTURES = SCANS / "nuclei"

WWW = "#asset#www.example.com#www.example.com"
WWW_IP = "#asset#203.0.113.10#203.0.113.10"


def parse_file(path: Path) -> list[Record | Invalid]:
    with open(path, "rb") as fh:
        return list(nuclei.parse(io.BufferedReader(fh)))


def parse_bytes(data: bytes) -> list[Record | Invalid]:
    return list(nuclei.parse(io.BufferedReader(io.BytesIO(data))))


def keys(record: Record) -> list[str]:
    return [e.prepared[1] for e in record.entities]


def edges(record: Record) -> list[tuple[str, str, str]]:
    return [(r.kind, r.source, r.target) for r in record.relationships]


def test_v3_lines_current_keys():
    records = parse_file(FIXTURES / "v3.jsonl")
    assert [r.where for r in records] == ["line 1", "line 2", "line 3", "line 4"]
    assert all(isinstance(r, Record) for r in records)

    cve = records[0]
    # host "https://WWW.Example.COM:8443": the DNS name only, normalized
    assert keys(cve) == [WWW, WWW_IP]
    assert edges(cve) == [("RESOLVES_TO", WWW, WWW_IP)]
    (f,) = cve.findings
    assert f.target == WWW
    assert f.name == "CVE-2021-41773"  # named by the (lower-case) cve-id
    assert f.cve == "CVE-2021-41773"
    assert f.cvss == 7.5
    assert f.severity == "high"
    assert f.title == "Apache 2.4.49 - Path Traversal and Remote Code Execution"
    assert f.evidence == ["https://www.example.com:8443/icons/.%2e/%2e%2e/etc/passwd"]
    assert f.properties == {
        "template_id": "CVE-2021-41773",
        "type": "http",
        "cwe": ["CWE-22"],
        "cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
        "tags": ["cve", "cve2021", "lfi", "apache", "rce", "kev"],
        "references": ["https://nvd.nist.gov/vuln/detail/CVE-2021-41773",
                       "https://httpd.apache.org/security/vulnerabilities_24.html"],
        "description": "A flaw was found in a change made to path normalization in Apache "
                       "HTTP Server 2.4.49.",
    }

    tech = records[1]
    assert keys(tech) == [WWW, WWW_IP]
    (f,) = tech.findings
    assert (f.name, f.severity, f.cve, f.cvss) == ("tech-detect", "info", None, None)
    assert f.evidence == ["https://www.example.com/ (matcher: nginx)"]
    assert "matcher" not in str(f.properties)  # one template, many matchers: one risk

    smtp = records[2]
    # host "mail.example.com.:25", severity "unknown", tags as a comma string, cve-id null
    assert keys(smtp) == ["#asset#mail.example.com#mail.example.com",
                          "#asset#203.0.113.25#203.0.113.25"]
    assert edges(smtp) == [("RESOLVES_TO", "#asset#mail.example.com#mail.example.com",
                            "#asset#203.0.113.25#203.0.113.25")]
    (f,) = smtp.findings
    assert (f.name, f.severity, f.cve) == ("smtp-detect", "info", None)
    assert f.evidence == ["mail.example.com:25"]
    assert f.properties["tags"] == ["network", "detect", "smtp", "discovery"]
    assert "cwe" not in f.properties

    v6 = records[3]
    # host "[2001:DB8::10]:8080", cve-id a string, cvss-score a string, cwe-id a string
    assert keys(v6) == ["#asset#2001:db8::10#2001:db8::10"]
    assert edges(v6) == []
    (f,) = v6.findings
    assert (f.name, f.cve, f.cvss, f.severity) == ("CVE-2021-40438", "CVE-2021-40438", 9.0,
                                                   "critical")
    assert f.properties["template_id"] == "apache-cve-string"
    assert f.properties["cwe"] == ["CWE-918"]


def test_no_volatile_values_in_properties():
    for record in parse_file(FIXTURES / "v3.jsonl"):
        for f in record.findings:
            text = str(f.properties)
            assert "2024-05-14" not in text  # timestamp
            assert "curl" not in text and "root:x" not in text  # request, response, extracts


def test_v2_keys():
    records = parse_file(FIXTURES / "v2.jsonl")
    assert [r.where for r in records] == ["line 1", "line 2", "line 3"]
    git, tech, ssh = records

    app = "#asset#app.example.com#app.example.com"
    ip = "#asset#198.51.100.7#198.51.100.7"
    # host is a URL with a port and a path
    assert keys(git) == [app, ip]
    assert edges(git) == [("RESOLVES_TO", app, ip)]
    (f,) = git.findings
    assert (f.target, f.name, f.severity, f.title) == (app, "git-config", "medium",
                                                       "Git Config File")
    assert f.evidence == ["http://app.example.com:8080/.git/config"]
    assert f.properties["tags"] == ["config", "git", "exposure"]
    # a v2 reference string of "- URL" lines
    assert f.properties["references"] == ["https://github.com/arthetox/git-config-exposure",
                                          "https://example.org/git"]

    # host is an address and equals ip: one asset, no edge to itself
    assert keys(tech) == [ip]
    assert edges(tech) == []
    assert tech.findings[0].evidence == ["http://198.51.100.7:8080/WebGoat (matcher: bootstrap)"]

    assert keys(ssh) == ["#asset#ssh.example.com#ssh.example.com"]
    assert ssh.findings[0].evidence == ["ssh.example.com:22"]
    assert ssh.findings[0].severity == "low"


def test_json_array_export():
    records = parse_file(FIXTURES / "export.json")
    assert [r.where for r in records] == ["item 1", "item 2"]
    shop = "#asset#shop.example.com#shop.example.com"
    saas, tls = records
    assert keys(saas) == [shop]
    assert saas.findings[0].name == "dns-saas-service-detection"
    assert saas.findings[0].evidence == ["shop.example.com (matcher: wix)"]
    assert keys(tls) == [shop, "#asset#192.0.2.44#192.0.2.44"]
    assert edges(tls) == [("RESOLVES_TO", shop, "#asset#192.0.2.44#192.0.2.44")]
    assert tls.findings[0].properties["cwe"] == ["CWE-200"]
    assert tls.findings[0].evidence == ["shop.example.com:443"]


def test_without_host():
    exposed, cipher, rebinding = parse_file(FIXTURES / "no-host.jsonl")
    # from matched-at
    assert keys(exposed) == ["#asset#metrics.example.com#metrics.example.com"]
    assert exposed.findings[0].target == "#asset#metrics.example.com#metrics.example.com"
    assert exposed.findings[0].evidence == ["https://metrics.example.com/metrics"]
    # from url
    assert keys(cipher) == ["#asset#legacy.example.com#legacy.example.com"]
    assert cipher.findings[0].evidence == ["https://legacy.example.com:4443"]
    # from ip alone
    assert keys(rebinding) == ["#asset#192.0.2.99#192.0.2.99"]
    assert rebinding.findings[0].severity == "info"


def test_malformed_records():
    records = parse_file(FIXTURES / "malformed.jsonl")
    assert isinstance(records[0], Record)
    invalid = [(r.where, r.reason) for r in records[1:]]
    assert all(isinstance(r, Invalid) for r in records[1:])
    where = [w for w, _ in invalid]
    # line 5 is blank: skipped, and the numbering still counts it
    assert where == ["line 2", "line 3", "line 4", "line 6", "line 7", "line 8", "line 9"]
    reasons = dict(invalid)
    assert reasons["line 2"].startswith("not valid JSON")
    assert reasons["line 3"] == "no template id: neither 'template-id' nor 'templateID' is given"
    assert reasons["line 4"].startswith("member 'ip': invalid IP address '203.0.113.300'")
    assert reasons["line 6"] == "unknown severity 'urgent'"
    assert reasons["line 7"] == ("member 'info.classification.cve-id': invalid CVE id "
                                 "'CVE-21-1' (expected CVE-YYYY-NNNN)")
    assert reasons["line 8"] == "expected a JSON object, got list"
    assert reasons["line 9"] == ("no target: none of 'host', 'matched-at', 'matched', 'url', "
                                 "'input', 'ip' names a host")
    # It was read whole but names nothing to place it on: the importer skips it (not --strict).
    assert [w for w, r in invalid if r.startswith("no target")] == ["line 9"]
    assert [r.unplaced for r in records[1:]] == [False] * 6 + [True]


def test_bad_host_names_the_member():
    (r,) = parse_bytes(b'{"template-id":"x","info":{"severity":"low"},"host":"bad host.example"}\n')
    assert isinstance(r, Invalid)
    assert r.where == "line 1"
    assert r.reason.startswith("member 'host': invalid DNS name 'bad host.example'")


def test_info_not_an_object():
    (r,) = parse_bytes(b'{"templateID":"x","info":"high","host":"a.example.com"}\n')
    assert isinstance(r, Invalid) and r.reason == "member 'info' is not an object"


def test_cve_from_template_id_and_several_cves():
    data = (b'{"template-id":"CVE-2014-0160","info":{"severity":"high"},"host":"a.example.com"}\n'
            b'{"template-id":"multi","info":{"severity":"high","classification":{"cve-id":'
            b'["cve-2021-1111","CVE-2021-2222"]}},"host":"a.example.com"}\n')
    single, multi = parse_bytes(data)
    assert single.findings[0].cve == "CVE-2014-0160"
    assert multi.findings[0].name == "CVE-2021-1111"
    assert multi.findings[0].properties["cves"] == ["CVE-2021-1111", "CVE-2021-2222"]


@pytest.mark.parametrize("host, key", [
    ("https://X.example.com:8443", "#asset#x.example.com#x.example.com"),
    ("x.example.com:8443", "#asset#x.example.com#x.example.com"),
    ("X.EXAMPLE.COM.", "#asset#x.example.com#x.example.com"),
    ("[2001:db8::1]:443", "#asset#2001:db8::1#2001:db8::1"),
    ("2001:DB8:0::1", "#asset#2001:db8::1#2001:db8::1"),
    ("http://[2001:db8::1]:8080/x", "#asset#2001:db8::1#2001:db8::1"),
    ("192.0.2.1:22", "#asset#192.0.2.1#192.0.2.1"),
])
def test_host_spellings(host, key):
    line = orjson.dumps({"template-id": "t", "info": {"severity": "info"}, "host": host})
    (r,) = parse_bytes(line + b"\n")
    assert keys(r) == [key]
    assert r.findings[0].target == key


def test_streams_without_reading_everything():
    # A generator: the first record is available before the rest of the input is consumed.
    stream = io.BufferedReader(io.BytesIO(
        b'{"template-id":"a","info":{},"host":"a.example.com"}\n' * 100000))
    first = next(nuclei.parse(stream))
    assert isinstance(first, Record)
    assert stream.tell() < 1_000_000


def test_sniff_without_a_value():
    assert not nuclei.sniff(Sample(head=b"<?xml version='1.0'?>", first=None))
    assert not nuclei.sniff(Sample(head=b"[1]", first=1))


def test_truncated_json_array():
    records = parse_bytes(b'[{"template-id":"a","info":{},"host":"a.example.com"}, {"template-id":')
    assert isinstance(records[0], Record) and records[0].where == "item 1"
    assert isinstance(records[1], Invalid)
    assert records[1].where == "end of file"
    assert records[1].reason.startswith("not valid JSON")
