"""httpx parser: URL, host name, addresses, port, technologies and DNS edges of each probe."""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from bastion.ingest import httpx
from bastion.ingest.records import Invalid, Record, Sample

SCANS = Path(__file__).parent.parent / "fixtures" / "scans"
FIXTURES = SCANS / "httpx"

SITE = "#asset#www.example.com#https://www.example.com/"
WWW = "#asset#www.example.com#www.example.com"
IP10 = "#asset#203.0.113.10#203.0.113.10"
IP11 = "#asset#203.0.113.11#203.0.113.11"
CDN = "#asset#www.example.com.cdn.example.net#www.example.com.cdn.example.net"
NGINX = "#technology#cpe:2.3:a:*:nginx:1.19.0:*:*:*:*:*:*:*"
PHP = "#technology#cpe:2.3:a:*:php:7.4.3:*:*:*:*:*:*:*"
HSTS = "#technology#cpe:2.3:a:*:hsts:*:*:*:*:*:*:*:*"


def parse_file(path: Path) -> list[Record | Invalid]:
    with open(path, "rb") as fh:
        return list(httpx.parse(io.BufferedReader(fh)))


def parse_one(obj: dict) -> Record | Invalid:
    (r,) = httpx.parse(io.BufferedReader(io.BytesIO(orjson.dumps(obj) + b"\n")))
    return r


def keys(record: Record) -> list[str]:
    return [e.prepared[1] for e in record.entities]


def entity(record: Record, key: str):
    (e,) = [e for e in record.entities if e.prepared[1] == key]
    return e


def edges(record: Record) -> list[tuple[str, str, str]]:
    return [(r.kind, r.source, r.target) for r in record.relationships]


def test_probe_with_host_address_and_string_port():
    records = parse_file(FIXTURES / "httpx.jsonl")
    assert [r.where for r in records] == ["line 1", "line 2", "line 3", "line 4"]
    www = records[0]
    port = "#port#tcp#443" + IP10
    assert keys(www) == [SITE, WWW, IP10, IP11, CDN, port, NGINX, PHP, HSTS]
    assert edges(www) == [
        ("RESOLVES_TO", SITE, WWW),
        ("RESOLVES_TO", WWW, IP10),
        ("RESOLVES_TO", WWW, IP11),
        ("RESOLVES_TO", WWW, CDN),
        ("HAS_TECHNOLOGY", SITE, NGINX),
        ("HAS_TECHNOLOGY", SITE, PHP),
        ("HAS_TECHNOLOGY", SITE, HSTS),
    ]
    # stable facts only on the URL asset; no class, status or other defaults given
    site = entity(www, SITE)
    assert site.properties == {"title": "Example Domain", "status_code": 200,
                               "webserver": "nginx/1.19.0"}
    assert site.values == {"identifier": "https://www.example.com"}
    assert entity(www, WWW).values == {"identifier": "www.example.com"}
    # the port string "443" on the address httpx connected to (`host`), service from scheme
    p = entity(www, port)
    assert p.prepared[0]["number"] == 443
    assert p.values == {"asset": IP10, "protocol": "tcp", "number": 443, "service": "https"}
    nginx = entity(www, NGINX)
    assert nginx.values == {"name": "Nginx", "version": "1.19.0"}
    assert entity(www, HSTS).values == {"name": "HSTS"}
    assert all(e.properties is None for e in www.entities if e.prepared[1] != SITE)


def test_status_code_spelling_aaaa_and_webserver_already_in_tech():
    app = parse_file(FIXTURES / "httpx.jsonl")[1]
    site = "#asset#app.example.com#http://app.example.com:8080/login"
    name = "#asset#app.example.com#app.example.com"
    ip = "#asset#198.51.100.7#198.51.100.7"
    ip6 = "#asset#2001:db8::7#2001:db8::7"
    apache = "#technology#cpe:2.3:a:*:apache_http_server:2.4.41:*:*:*:*:*:*:*"
    ubuntu = "#technology#cpe:2.3:a:*:ubuntu:*:*:*:*:*:*:*:*"
    assert keys(app) == [site, name, ip, ip6, "#port#tcp#8080" + ip, apache, ubuntu]
    assert edges(app) == [
        ("RESOLVES_TO", site, name),
        ("RESOLVES_TO", name, ip),
        ("RESOLVES_TO", name, ip6),
        ("HAS_TECHNOLOGY", site, apache),
        ("HAS_TECHNOLOGY", site, ubuntu),
    ]
    assert entity(app, site).properties == {"title": "Sign in", "status_code": 302,
                                            "webserver": "Apache/2.4.41 (Ubuntu)"}
    assert entity(app, "#port#tcp#8080" + ip).values["service"] == "http"


def test_failed_probe_says_nothing():
    failed = parse_file(FIXTURES / "httpx.jsonl")[2]
    assert isinstance(failed, Record)
    assert (failed.entities, failed.relationships, failed.findings) == ([], [], [])


def test_url_on_an_address():
    bare = parse_file(FIXTURES / "httpx.jsonl")[3]
    site = "#asset#192.0.2.2#http://192.0.2.2/"
    ip = "#asset#192.0.2.2#192.0.2.2"
    nginx = "#technology#cpe:2.3:a:*:nginx:1.31.3:*:*:*:*:*:*:*"
    assert keys(bare) == [site, ip, "#port#tcp#80" + ip, nginx]
    # the address is the URL's host; no DNS name, so no name → address edges
    assert edges(bare) == [("RESOLVES_TO", site, ip), ("HAS_TECHNOLOGY", site, nginx)]


def test_webserver_alone_is_a_technology():
    r = parse_one({"url": "https://api.example.com", "input": "api.example.com",
                   "host": "203.0.113.12", "port": "443", "scheme": "https",
                   "webserver": "Microsoft-IIS/10.0", "status_code": 403})
    iis = "#technology#cpe:2.3:a:*:microsoft-iis:10.0:*:*:*:*:*:*:*"
    assert iis in keys(r)
    assert ("HAS_TECHNOLOGY", "#asset#api.example.com#https://api.example.com/", iis) in edges(r)
    assert entity(r, iis).values == {"name": "Microsoft-IIS", "version": "10.0"}


def test_without_port_and_address():
    r = parse_one({"url": "https://api.example.com:9443/v1", "input": "api.example.com",
                   "title": "API", "status_code": 401})
    name = "#asset#api.example.com#api.example.com"
    # no address known: the port goes on the DNS name, from the URL's port
    assert "#port#tcp#9443" + name in keys(r)


def test_volatile_values_are_not_kept():
    www = parse_file(FIXTURES / "httpx.jsonl")[0]
    text = str([(e.values, e.properties) for e in www.entities])
    for volatile in ("2024-05-14", "112.40213ms", "d41d8cd98f00b204e9800998ecf8427e", "1256",
                     "nonerror"):
        assert volatile not in text


def test_malformed_records():
    records = parse_file(FIXTURES / "malformed.jsonl")
    assert isinstance(records[0], Record)
    assert all(isinstance(r, Invalid) for r in records[1:])
    reasons = {r.where: r.reason for r in records[1:]}
    assert list(reasons) == ["line 2", "line 3", "line 4", "line 5", "line 6"]
    assert reasons["line 2"].startswith("not valid JSON")
    assert reasons["line 3"] == "no 'url' member: nothing to place the result on"
    assert reasons["line 4"].startswith("member 'a[1]': invalid IP address '203.0.113.256'")
    assert reasons["line 5"] == "member 'port' is not a port number: 'https'"
    assert reasons["line 6"].startswith("member 'url': invalid URL 'https://api example.com/'")


def test_sniff_needs_a_probe_member():
    assert not httpx.sniff(Sample(head=b"", first={"url": "https://a.example.com"}))
    assert not httpx.sniff(Sample(head=b"", first=None))
    # a nuclei result carries url and matcher data too
    assert not httpx.sniff(Sample(head=b"", first={"template-id": "x", "url": "https://a",
                                                   "title": "t"}))
