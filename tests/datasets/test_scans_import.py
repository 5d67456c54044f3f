"""Against the real scanner output in ../shared/datasets (run by `make datasets-check` when the
folder exists): every file under scans/ and bbot/ goes through `bastion import`'s importer on both
engines, and what it stores is checked against what the files contain — the counts DefectDojo's
own parser tests expect and MANIFEST.md states, or counted from the file here. Importing it all
again creates and updates nothing."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import defusedxml.ElementTree as DET
import pytest

from bastion.ingest.runner import Options, import_paths
from bastion.schema.batch import key_for

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
pytestmark = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"{DATASETS} not present")

SCANS = DATASETS / "scans"
BBOT = DATASETS / "bbot"
LIMIT = 10000  # the store's largest page


def run(tenant, *paths: Path, **options):
    return import_paths(tenant, [str(p) for p in paths], Options(actor="datasets", **options))


def keys(tenant, kind: str) -> set[str]:
    page = tenant.list(kind, limit=LIMIT)
    assert page.next_cursor is None
    return {r.key for r in page.records}


def records(tenant, kind: str):
    return tenant.list(kind, limit=LIMIT).records


def json_values(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def asset(identifier: str) -> str:
    return key_for("asset", identifier=identifier)


def port(ip: str, number: int | str, protocol: str = "tcp") -> str:
    return f"#port#{protocol}#{int(number)}#asset#{ip}#{ip}"


def up_hosts(path: Path) -> dict[str, set[int]]:
    """IP address → open TCP ports of every host nmap reports up."""
    root = DET.parse(path).getroot()
    hosts: dict[str, set[int]] = {}
    for host in root.iter("host"):
        if host.find("status").get("state") != "up":
            continue
        [ip] = [a.get("addr") for a in host.iter("address") if a.get("addrtype") in ("ipv4", "ipv6")]
        hosts[ip] = {int(p.get("portid")) for p in host.iter("port")
                     if p.get("protocol") == "tcp" and p.find("state").get("state") == "open"}
    return hosts


# -- naabu ----------------------------------------------------------------------------------------


def test_naabu_repeated_lines_are_four_ports_on_one_ip(tenant):
    path = SCANS / "naabu" / "naabu_many_vuln.json"
    lines = json_values(path)
    assert len(lines) == 8
    expected = {(r["ip"], r["port"]) for r in lines}
    assert len(expected) == 4 and len({ip for ip, _ in expected}) == 1
    [f] = run(tenant, path).files
    assert (f.format, f.status, f.errors) == ("naabu", "imported", [])
    assert keys(tenant, "port") == {port(ip, n) for ip, n in expected}
    assert keys(tenant, "asset") == {asset(ip) for ip, _ in expected}
    assert keys(tenant, "risk") == set()


# -- nmap -----------------------------------------------------------------------------------------


def test_nmap_multiple_port_is_one_host_with_13_open_ports_and_its_names(tenant):
    path = SCANS / "nmap" / "nmap_multiple_port.xml"
    hosts = up_hosts(path)
    assert list(hosts) == ["198.38.82.159"] and len(hosts["198.38.82.159"]) == 13
    [f] = run(tenant, path).files
    assert (f.format, f.status, f.records, f.findings) == ("nmap", "imported", 1, 0)
    assert keys(tenant, "port") == {port("198.38.82.159", n) for n in hosts["198.38.82.159"]}
    # The user-given and the PTR name both name the address.
    assert keys(tenant, "asset") == {asset("198.38.82.159"), asset("joaquinlp.me"),
                                     asset("mocha2005.mochahost.com")}
    resolves = {l.source for l in tenant.links(asset("198.38.82.159"), "in")
                if l.relationship == "RESOLVES_TO"}
    assert resolves == {asset("joaquinlp.me"), asset("mocha2005.mochahost.com")}


def test_nmap_vulners_is_one_port_and_two_cve_risks(tenant):
    path = SCANS / "nmap" / "nmap_script_vulners.xml"
    root = DET.parse(path).getroot()
    cves = {e.text for e in root.iter("elem") if e.get("key") == "id"}
    assert cves == {"CVE-2018-15919", "CVE-2017-15906"}
    [f] = run(tenant, path).files
    assert (f.format, f.status, f.records, f.findings) == ("nmap", "imported", 1, 2)
    assert keys(tenant, "port") == {port("192.168.0.1", 5022)}
    risks = records(tenant, "risk")
    assert {r.values["cve"] for r in risks} == cves
    assert {r.values["cvss"] for r in risks} == {5.0}
    assert {r.values["target"] for r in risks} <= {port("192.168.0.1", 5022), asset("192.168.0.1")}
    [tech] = keys(tenant, "technology")
    assert "openbsd:openssh:7.4" in tech


def test_nmap_fullscan_keeps_the_hosts_that_are_up_with_their_open_ports(tenant):
    path = SCANS / "nmap" / "libnmap" / "fullscan.xml"
    assert path.read_text().count("<host ") + path.read_text().count("<host>") == 256
    hosts = up_hosts(path)
    assert sum(len(p) for p in hosts.values()) == 9  # MANIFEST: 9 open ports
    [f] = run(tenant, path).files
    assert (f.format, f.status, f.records) == ("nmap", "imported", len(hosts))
    assert keys(tenant, "asset") == {asset(ip) for ip in hosts}
    assert keys(tenant, "port") == {port(ip, n) for ip, ports in hosts.items() for n in ports}


def test_an_xml_external_entity_is_refused(tenant):
    path = SCANS / "nmap" / "libnmap" / "defused_et_local_includer.xml"
    [f] = run(tenant, path, format="nmap").files
    assert f.status == "rejected" and len(f.errors) == 1
    assert "entity" in f.errors[0] and "refused" in f.errors[0]
    assert f"{path}: " in f.errors[0]
    [auto] = run(tenant, path).files  # recognised as XML that is nmap's or nothing
    assert auto.status == "rejected" and "entity" in auto.errors[0]
    assert tenant.counts()["asset"] == 0


# -- nuclei ---------------------------------------------------------------------------------------


def _nuclei_risks(path: Path) -> set[str]:
    """One risk per (host's group, template) — host from `host` (a URL or a name), template
    from `template-id` or the legacy `templateID`."""
    out = set()
    for r in json_values(path):
        template = r.get("template-id") or r["templateID"]
        host = r["host"]
        name = urlsplit(host).hostname if "://" in host else host.rsplit(":", 1)[0]
        out.add(key_for("risk", target=asset(name), name=template))
    return out


def test_nuclei_legacy_keys_every_line_read_one_risk_per_host_and_template(tenant):
    path = SCANS / "nuclei" / "many_findings.json"
    lines = json_values(path)
    assert len(lines) == 18 and all("templateID" in r for r in lines)
    expected = _nuclei_risks(path)
    [f] = run(tenant, path).files
    assert (f.format, f.status, f.records, f.findings, f.errors) == ("nuclei", "imported", 18, 18, [])
    assert keys(tenant, "risk") == expected
    assert len(expected) <= 16  # DefectDojo folds these 18 lines to 16 findings; we fold more
    # Every tech-detect line on nuclei-example.com is evidence of its one risk.
    tech = tenant.get(key_for("risk", target=asset("nuclei-example.com"), name="tech-detect"))
    assert tech.values["severity"] == "info" and tech.values["evidence"]


def test_nuclei_new_keys_with_lowercase_cve(tenant):
    path = SCANS / "nuclei" / "many_findings_new.json"
    [f] = run(tenant, path).files
    assert (f.format, f.status, f.records, f.findings) == ("nuclei", "imported", 2, 2)
    assert keys(tenant, "risk") == _nuclei_risks(path)
    assert "CVE-2018-15473" in {r.values["cve"] for r in records(tenant, "risk")}


def test_nuclei_v3_json_array_is_six_records(tenant):
    path = SCANS / "nuclei" / "multiple_v3.json"
    assert isinstance(json.loads(path.read_text()), list) and len(json_values(path)) == 6
    [f] = run(tenant, path).files
    assert (f.format, f.status, f.records, f.findings) == ("nuclei", "imported", 6, 6)
    assert keys(tenant, "risk") == _nuclei_risks(path)  # the two tls-version lines are one risk
    assert len(keys(tenant, "risk")) == 5


def test_an_empty_file_is_a_clean_scan(tenant):
    path = SCANS / "nuclei" / "empty.jsonl"
    assert path.stat().st_size == 0
    result = run(tenant, path)
    [f] = result.files
    assert (f.status, f.empty, f.records, f.findings, f.errors) == ("imported", True, 0, 0, [])
    assert result.notes == [f"{path}: empty: imported as a clean scan (zero findings)"]


# -- httpx ----------------------------------------------------------------------------------------


def test_httpx_urls_become_web_assets_on_their_host(tenant):
    path = SCANS / "httpx" / "httpx_many_vuln.json"
    lines = json_values(path)
    [f] = run(tenant, path).files
    assert (f.format, f.status, f.records) == ("httpx", "imported", len(lines))
    stored = keys(tenant, "asset")
    assert {asset(r["url"]) for r in lines} <= stored
    assert {asset(r["host"]) for r in lines} <= stored
    assert {port(r["host"], r["port"]) for r in lines} == keys(tenant, "port")


# -- SARIF ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, results", [("bash-report.sarif", 27), ("appendix_k2.sarif", 1)])
def test_sarif_every_result_is_read(tenant, name, results):
    path = SCANS / "sarif" / name
    assert sum(len(r.get("results") or []) for r in json.loads(path.read_text())["runs"]) == results
    [f] = run(tenant, path).files
    assert (f.format, f.status, f.records, f.findings, f.errors) == (
        "sarif", "imported", results, results, [])
    assert 1 <= tenant.counts()["risk"] <= results


# -- BBOT -----------------------------------------------------------------------------------------


def _bbot_dns_names(path: Path) -> set[str]:
    names = set()
    for event in json_values(path):
        if event["type"] == "DNS_NAME":
            data = event["data"]
            names.add(data["DNS_NAME"] if isinstance(data, dict) else data)
    return names


@pytest.mark.parametrize("name", ["bbot-v2-logfile.log", "test-bbot-v1-ndjson.log"])
def test_bbot_logs_are_imported_with_their_dns_names(tenant, name):
    path = BBOT / name
    names = _bbot_dns_names(path)
    assert names
    [f] = run(tenant, path).files
    assert (f.format, f.status, f.errors) == ("bbot", "imported", [])
    assert {asset(n) for n in names} <= keys(tenant, "asset")
    if name.startswith("bbot-v2"):
        assert len(names) == 19  # 79 DNS_NAME events of 19 names
        events = json_values(path)
        ports = {e["data"]["OPEN_TCP_PORT"] for e in events if e["type"] == "OPEN_TCP_PORT"}
        assert len(keys(tenant, "port")) == len(ports) == 17


# -- everything, twice ----------------------------------------------------------------------------


def test_both_folders_import_with_licences_ignored_and_again_change_nothing(tenant):
    first = run(tenant, SCANS, BBOT)
    by_name = {Path(f.name).relative_to(DATASETS).as_posix(): f for f in first.files}
    on_disk = {p.relative_to(DATASETS).as_posix() for d in (SCANS, BBOT) for p in d.rglob("*")
               if p.is_file()}
    assert set(by_name) == on_disk
    status = {n: f.status for n, f in by_name.items()}
    assert {n for n, s in status.items() if s == "ignored"} == {
        n for n in on_disk if Path(n).name.startswith("LICENSE")}
    assert {n for n, s in status.items() if s == "rejected"} == {
        "scans/nmap/libnmap/defused_et_local_includer.xml"}
    assert by_name["scans/nuclei/empty.jsonl"].empty  # a clean scan, imported
    assert first.status == "partial"
    semgrep = by_name["scans/sarif/semgrepowasp-benchmark-sample.sarif"]
    assert (semgrep.format, semgrep.records, semgrep.findings) == ("sarif", 1768, 1768)
    formats = {n: f.format for n, f in by_name.items() if f.status == "imported"}
    assert {n.split("/")[1]: v for n, v in formats.items() if n.startswith("scans/")} == {
        "httpx": "httpx", "naabu": "naabu", "nmap": "nmap", "nuclei": "nuclei", "sarif": "sarif"}
    assert {v for n, v in formats.items() if n.startswith("bbot/")} == {"bbot"}
    counts = tenant.counts()
    assert counts["asset"] >= 100 and counts["port"] >= 13 + 9 + 4 and counts["risk"] >= 1768 // 10
    assert first.totals()["created"] == sum(counts[k] for k in (
        "asset", "port", "technology", "attribute", "risk", "seed"))  # BBOT's scan seeds

    events = len(tenant.events(limit=100000))
    again = run(tenant, SCANS, BBOT)
    t = again.totals()
    assert (t["created"], t["updated"], t["reopened"], t["closed"]) == (0, 0, 0, 0)
    # Entities two files share (httpx_one_vuln is a subset of httpx_many_vuln …) count per file.
    assert t["unchanged"] == first.totals()["created"] + first.totals()["unchanged"]
    assert [(f.name, f.status, f.records) for f in again.files] == [
        (f.name, f.status, f.records) for f in first.files]
    assert [f.sha256 for f in again.files] == [f.sha256 for f in first.files]
    assert len(tenant.events(limit=100000)) == events
    assert tenant.counts() == counts
