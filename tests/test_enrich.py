"""`bastion.risks.enrich`: KEV and EPSS files read (and refused with one clear line), and applied to
a tenant's risks through the write path — on both engines."""

from __future__ import annotations

import gzip
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bastion.errors import BastionError, InvalidValue
from bastion.risks import enrich
from bastion.risks.enrich import apply_epss, apply_kev, read_epss, read_kev
from bastion.risks.priority import priority
from bastion.schema.batch import Batch
from bastion.store.store import Store
from cli_harness import Cli, cli, one_error_line, runner  # noqa: F401 (fixtures)

FIXTURES = Path(__file__).parent / "fixtures" / "enrich"
KEV = FIXTURES / "kev.json"
KEV_NEWER = FIXTURES / "kev-newer.json"  # CVE-2023-4966 withdrawn
EPSS = FIXTURES / "epss.csv"
KEV_CSV = FIXTURES / "kev.csv"
UTC = timezone.utc
KEV_FIELDS = ("kev", "kev_due", "kev_ransomware", "epss", "epss_percentile", "priority")


def surface(tenant) -> dict[str, str]:
    """An external web server (a CVE on it and on its port), an internal host (a CVE), a
    technology (a CVE) and a finding without a CVE."""
    b = Batch()
    k = {}
    k["www"] = b.add("asset", identifier="www.acme.example", exposure="external")
    k["db"] = b.add("asset", identifier="10.20.0.5", exposure="internal")
    k["port"] = b.add("port", asset=k["www"], number=443)
    k["tech"] = b.add("technology", name="spring_framework", version="5.3.17", vendor="vmware")
    k["log4shell"] = b.add("risk", target=k["www"], cve="CVE-2021-44228", severity="critical", cvss=10)
    k["citrixbleed"] = b.add("risk", target=k["db"], cve="CVE-2023-4966", severity="high", cvss=9.4)
    k["on_port"] = b.add("risk", target=k["port"], cve="CVE-2024-0001", severity="medium", cvss=5.3)
    k["on_tech"] = b.add("risk", target=k["tech"], cve="CVE-2022-22965", severity="high", cvss=9.8)
    k["no_cve"] = b.add("risk", target=k["www"], name="exposed-git-config", severity="low")
    tenant.apply(b, actor="scanner", source="test")
    return k


def fields(tenant, key: str) -> dict:
    return {f: tenant.get(key).values[f] for f in KEV_FIELDS}


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


# -- reading ------------------------------------------------------------------------------------------


def test_read_kev_streams_the_catalog_plain_or_gzip(tmp_path):
    kev = read_kev(KEV)
    assert (kev.name, kev.version, kev.date) == (str(KEV), "2025.08.25", "2025-08-25T17:04:19.9796Z")
    assert dict(kev) == {"CVE-2021-44228": (day(2021, 12, 24), True),
                         "CVE-2023-4966": (day(2023, 11, 8), False),
                         "CVE-2014-0160": (day(2022, 5, 25), False)}
    gz = tmp_path / "kev.json.gz"  # the name does not matter: the magic bytes do
    gz.write_bytes(gzip.compress(KEV.read_bytes()))
    assert dict(read_kev(gz)) == dict(kev)
    assert dict(read_kev(io.BytesIO(KEV.read_bytes()), "stdin")) == dict(kev)


def test_read_kev_reads_cisas_csv_too(tmp_path):
    csv_kev = read_kev(KEV_CSV)  # quoted commas, a quoted line break
    assert dict(csv_kev) == dict(read_kev(KEV))
    assert (csv_kev.version, csv_kev.date) == (None, None)  # the CSV carries neither
    gz = tmp_path / "kev.csv.gz"
    gz.write_bytes(gzip.compress(KEV_CSV.read_bytes()))
    assert dict(read_kev(gz)) == dict(csv_kev)


def test_read_epss_keeps_the_model_version_and_score_date(tmp_path):
    epss = read_epss(EPSS)
    assert (epss.version, epss.date) == ("v2025.03.14", "2025-08-25T12:55:00Z")
    assert epss["CVE-2021-44228"] == (0.94358, 0.99961)
    assert len(epss) == 4
    gz = tmp_path / "epss_scores-2025-08-25.csv.gz"
    gz.write_bytes(gzip.compress(EPSS.read_bytes()))
    assert dict(read_epss(gz)) == dict(epss)
    bare = tmp_path / "bare.csv"  # no comment line (older files), CRLF, a BOM, quoted fields
    bare.write_bytes(b'\xef\xbb\xbfcve,epss,percentile\r\n"cve-2021-44228","0.5","0.9"\r\n')
    bare_scores = read_epss(bare)
    assert (dict(bare_scores), bare_scores.version) == ({"CVE-2021-44228": (0.5, 0.9)}, None)


def _kev_doc(**entry) -> bytes:
    item = {"cveID": "CVE-2021-44228", "dueDate": "2021-12-24", "knownRansomwareCampaignUse": "Known",
            **entry}
    return json.dumps({"catalogVersion": "1", "vulnerabilities": [item]}).encode()


@pytest.mark.parametrize("content, message", [
    (b"", "kev.json: empty file, expected a KEV catalog (JSON or CSV)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "kev.json: binary file, expected a KEV catalog (JSON or CSV)"),
    (b"cveID,dueDate\nCVE-2021-44228,2021-12-24\n", "kev.json: line 1: not a KEV catalog: expected "
     "JSON, or CSV with the columns cveID, dueDate, knownRansomwareCampaignUse (missing "
     "knownRansomwareCampaignUse)"),
    (b"cveID,dueDate,knownRansomwareCampaignUse\n", "kev.json: the catalog lists no vulnerabilities"),
    (b"cveID,dueDate,knownRansomwareCampaignUse\nCVE-2021-44228,2021-12-24,Known\nCVE-21-1,,\n",
     "kev.json: line 3 (CVE-21-1): invalid CVE id 'CVE-21-1' (expected CVE-YYYY-NNNN)"),
    (b"cveID,dueDate,knownRansomwareCampaignUse\nCVE-2021-44228,2021-12-24\n",
     "kev.json: line 2: expected 3 columns, got 2"),
    (b"[]", "kev.json: not a KEV catalog: expected a JSON object with a 'vulnerabilities' array"),
    (b'{"catalogVersion": "1", "count": 0}', "kev.json: not a KEV catalog: no 'vulnerabilities' array"),
    (b'{"vulnerabilities": {"cveID": "CVE-2021-44228"}}',
     "kev.json: not a KEV catalog: 'vulnerabilities' is not an array"),
    (b'{"vulnerabilities": []}', "kev.json: the catalog lists no vulnerabilities"),
    (b'{"vulnerabilities": [', "kev.json: not valid JSON: parse error: premature EOF"),
    (b'{"vulnerabilities": ["CVE-2021-44228"]}', "kev.json: vulnerability 1: not a JSON object"),
    (_kev_doc(cveID="CVE-21-44228"),
     "kev.json: vulnerability 1 (CVE-21-44228): invalid CVE id 'CVE-21-44228' (expected CVE-YYYY-NNNN)"),
    (_kev_doc(cveID=None), "kev.json: vulnerability 1: no cveID"),
    (_kev_doc(dueDate="2021-12-32"),
     "kev.json: vulnerability 1 (CVE-2021-44228): dueDate '2021-12-32' is not a date (YYYY-MM-DD)"),
    (gzip.compress(_kev_doc())[:-12],
     "kev.json: cannot read: Compressed file ended before the end-of-stream marker was reached"),
])
def test_a_bad_kev_file_is_refused_with_one_line(tmp_path, content, message):
    path = tmp_path / "kev.json"
    path.write_bytes(content)
    with pytest.raises(InvalidValue) as err:
        read_kev(path)
    assert str(err.value) == str(tmp_path / message)
    assert "\n" not in str(err.value) and isinstance(err.value, BastionError)


HEADER = "#model_version:v2025.03.14,score_date:2025-08-25T12:55:00Z\ncve,epss,percentile\n"


@pytest.mark.parametrize("content, message", [
    ("", "epss.csv: empty file, expected EPSS scores (CSV)"),
    ("#model_version:v2025.03.14\n", "epss.csv: no header line 'cve,epss,percentile'"),
    ("cve,score\nCVE-2021-44228,0.5\n",
     "epss.csv: line 1: expected the header 'cve,epss,percentile', got 'cve,score'"),
    ("#model_version:v1\nCVE-2021-44228,0.5,0.9\n",
     "epss.csv: line 2: expected the header 'cve,epss,percentile', got 'CVE-2021-44228,0.5,0.9'"),
    (HEADER, "epss.csv: no scores after the header"),
    (HEADER + "CVE-2021-44228,0.5,0.9\n" * 4 + "CVE-2021-44229,abc,0.9\n",
     "epss.csv: line 7: epss 'abc' is not a number"),
    (HEADER + "CVE-2021-44228,0.5,\n", "epss.csv: line 3: percentile '' is not a number"),
    (HEADER + "CVE-2021-44228,NaN,0.5\n", "epss.csv: line 3: epss 'NaN' is not a number"),
    (HEADER + "CVE-2021-44228,1.5,0.9\n", "epss.csv: line 3: epss 1.5 is outside 0-1"),
    (HEADER + "CVE-2021-44228,0.5,-0.1\n", "epss.csv: line 3: percentile -0.1 is outside 0-1"),
    (HEADER + "\nCVE-2021-44228,0.5,0.9\nCVE-2021-4422X,0.5,0.9\n",
     "epss.csv: line 5: invalid CVE id 'CVE-2021-4422X' (expected CVE-YYYY-NNNN)"),
    (HEADER + "CVE-2021-44228,0.5\n", "epss.csv: line 3: expected 3 columns, got 2"),
])
def test_a_bad_epss_file_is_refused_naming_its_line(tmp_path, content, message):
    path = tmp_path / "epss.csv"
    path.write_text(content)
    with pytest.raises(InvalidValue) as err:
        read_epss(path)
    assert str(err.value) == str(tmp_path / message)


def test_binary_and_non_utf8_epss_files_are_refused(tmp_path):
    path = tmp_path / "epss.csv"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00")
    with pytest.raises(InvalidValue, match=r"epss\.csv: binary file, expected EPSS scores \(CSV\)$"):
        read_epss(path)
    path.write_bytes(HEADER.encode() + b"CVE-2021-44228,0.5,0.9\nCVE-2021-\xff\xfe,0.5,0.9\n")
    with pytest.raises(InvalidValue, match=r"epss\.csv: line 4: not UTF-8 text"):
        read_epss(path)
    with pytest.raises(InvalidValue, match=r"missing\.csv: cannot open: No such file or directory$"):
        read_epss(tmp_path / "missing.csv")


# -- applying (both engines) -------------------------------------------------------------------------


def test_kev_sets_the_fields_and_priority_of_every_risk_with_a_cve(store, tenant):
    k = surface(tenant)
    result = apply_kev(tenant, read_kev(KEV), "analyst")
    assert (result.catalog, result.version, result.date, result.entries) == (
        "kev", "2025.08.25", "2025-08-25T17:04:19.9796Z", 3)
    assert (result.risks, result.matched, result.updated) == (4, 2, 4)
    # T = max(severity weight, CVSS/10); L = 1 in KEV; E by the asset; +5 ransomware; at most 100.
    assert fields(tenant, k["log4shell"]) == {  # 100 × 1.0 × (0.6 + 0.4) + 5 → 100
        "kev": True, "kev_due": day(2021, 12, 24), "kev_ransomware": True, "epss": None,
        "epss_percentile": None, "priority": 100.0}
    assert fields(tenant, k["citrixbleed"]) == {  # 100 × 0.7 (internal) × (0.6 × 0.94 + 0.4)
        "kev": True, "kev_due": day(2023, 11, 8), "kev_ransomware": False, "epss": None,
        "epss_percentile": None, "priority": 67.5}
    assert fields(tenant, k["on_port"]) == {  # not listed: 100 × 1.0 (the port's asset) × 0.6 × 0.53
        "kev": False, "kev_due": None, "kev_ransomware": False, "epss": None,
        "epss_percentile": None, "priority": 31.8}
    assert fields(tenant, k["on_tech"]) == {  # a technology: exposure unknown, 100 × 0.85 × 0.6 × 0.98
        "kev": False, "kev_due": None, "kev_ransomware": False, "epss": None,
        "epss_percentile": None, "priority": 50.0}
    assert fields(tenant, k["no_cve"]) == dict.fromkeys(KEV_FIELDS)  # untouched
    assert len(tenant.history(k["no_cve"])) == 1
    for key in (k["log4shell"], k["citrixbleed"], k["on_port"], k["on_tech"]):
        rec = tenant.get(key)
        assert rec.values["priority"] == priority(rec.values, "external" if key in (
            k["log4shell"], k["on_port"]) else "internal" if key == k["citrixbleed"] else None)


def test_each_change_is_an_event_with_its_diff_and_source(store, tenant):
    k = surface(tenant)
    result = apply_kev(tenant, read_kev(KEV), "analyst")
    last = tenant.history(k["log4shell"])[-1]
    assert (last.event_type, last.entity_version, last.actor, last.source) == (
        "risk.updated", 2, "analyst", "enrich:kev")
    assert last.correlation_id == result.correlation_id
    assert last.note == "KEV catalog 2025.08.25"
    assert last.diff == {"kev": [None, True], "kev_due": [None, "2021-12-24T00:00:00+00:00"],
                         "kev_ransomware": [None, True], "priority": [None, 100.0]}
    # One transaction, one correlation id, one event per changed risk and nothing else.
    new = [e for e in tenant.events() if e.correlation_id == result.correlation_id]
    assert sorted(e.entity_key for e in new) == sorted(
        [k["log4shell"], k["citrixbleed"], k["on_port"], k["on_tech"]])
    assert {e.event_type for e in new} == {"risk.updated"}


def test_enriching_again_with_the_same_file_writes_nothing(store, tenant):
    k = surface(tenant)
    apply_kev(tenant, read_kev(KEV), "analyst")
    apply_epss(tenant, read_epss(EPSS), "analyst")
    count = len(tenant.events())
    before = {key: tenant.get(key) for key in k.values()}
    again = apply_kev(tenant, read_kev(KEV), "analyst")
    assert (again.risks, again.matched, again.updated) == (4, 2, 0)
    scores = apply_epss(tenant, read_epss(EPSS), "analyst")
    assert (scores.risks, scores.matched, scores.updated) == (4, 2, 0)
    assert len(tenant.events()) == count
    for key, rec in before.items():  # not even last_seen moves: nothing was sent to the store
        now = tenant.get(key)
        assert (now.version, now.last_seen) == (rec.version, rec.last_seen)


def test_epss_sets_scores_and_keeps_those_of_cves_it_does_not_list(store, tenant):
    k = surface(tenant)
    apply_kev(tenant, read_kev(KEV), "analyst")
    result = apply_epss(tenant, read_epss(EPSS), "analyst")
    assert (result.version, result.date, result.entries) == ("v2025.03.14", "2025-08-25T12:55:00Z", 4)
    assert (result.risks, result.matched, result.updated) == (4, 2, 2)
    log4shell = fields(tenant, k["log4shell"])  # in KEV: likelihood stays 1, priority 100
    assert (log4shell["epss"], log4shell["epss_percentile"], log4shell["priority"]) == (
        0.94358, 0.99961, 100.0)
    on_port = fields(tenant, k["on_port"])  # 100 × 1.0 × (0.6 × 0.53 + 0.4 × 0.1)
    assert (on_port["kev"], on_port["epss"], on_port["epss_percentile"], on_port["priority"]) == (
        False, 0.00043, 0.1, 35.8)
    last = tenant.history(k["on_port"])[-1]
    assert (last.event_type, last.source) == ("risk.updated", "enrich:epss")
    assert last.diff == {"epss": [None, 0.00043], "epss_percentile": [None, 0.1],
                         "priority": [31.8, 35.8]}
    # Not scored by this file: unchanged, no event.
    assert fields(tenant, k["citrixbleed"])["epss"] is None
    assert tenant.history(k["citrixbleed"])[-1].source == "enrich:kev"
    # A later file without that CVE keeps the scores it had.
    later = read_epss(io.BytesIO(b"cve,epss,percentile\nCVE-2021-44228,0.9,0.99\n"), "later.csv")
    assert apply_epss(tenant, later, "analyst").updated == 1
    assert fields(tenant, k["on_port"])["epss_percentile"] == 0.1


def test_a_cve_withdrawn_from_a_newer_catalog_is_no_longer_known_exploited(store, tenant):
    k = surface(tenant)
    apply_kev(tenant, read_kev(KEV), "analyst")
    result = apply_kev(tenant, read_kev(KEV_NEWER), "analyst")
    assert (result.version, result.matched, result.updated) == ("2025.09.01", 1, 1)
    assert fields(tenant, k["citrixbleed"]) == {  # 100 × 0.7 × 0.6 × 0.94
        "kev": False, "kev_due": None, "kev_ransomware": False, "epss": None,
        "epss_percentile": None, "priority": 39.5}
    last = tenant.history(k["citrixbleed"])[-1]
    assert last.diff == {"kev": [True, False], "kev_due": ["2023-11-08T00:00:00+00:00", None],
                         "priority": [67.5, 39.5]}
    assert last.note == "KEV catalog 2025.09.01"
    assert fields(tenant, k["log4shell"])["kev"] is True


def test_priority_follows_the_assets_exposure_when_enriching(store, tenant):
    k = surface(tenant)
    apply_kev(tenant, read_kev(KEV), "analyst")
    b = Batch()
    b.add("asset", identifier="10.20.0.5", exposure="external")  # the host was put online
    tenant.apply(b, actor="analyst", source="test")  # re-ranks the risks on it (the write path)
    assert fields(tenant, k["citrixbleed"])["priority"] == 96.4  # 100 × 1.0 × (0.564 + 0.4)
    assert apply_kev(tenant, read_kev(KEV), "analyst").updated == 0


def test_pages_are_applied_in_one_transaction(store, tenant, monkeypatch):
    k = surface(tenant)
    monkeypatch.setattr(enrich, "PAGE", 2)  # four risks with a CVE: two full pages and an empty one
    result = apply_kev(tenant, read_kev(KEV), "analyst")
    assert (result.risks, result.matched, result.updated) == (4, 2, 4)
    assert fields(tenant, k["citrixbleed"])["priority"] == 67.5
    # A failure on the second page rolls back the first.
    calls = []

    def failing(values, exposure):
        calls.append(values["cve"])
        if len(calls) == 3:
            raise RuntimeError("boom")
        return priority(values, exposure)

    monkeypatch.setattr(enrich, "priority", failing)
    count = len(tenant.events())
    with pytest.raises(RuntimeError):
        apply_kev(tenant, read_kev(KEV_NEWER), "analyst")
    assert len(tenant.events()) == count
    assert fields(tenant, k["citrixbleed"])["kev"] is True


def test_enrichment_stays_in_its_tenant(store, tenant):
    k = surface(tenant)
    store.add_tenant("other")
    other = store.tenant("other")
    surface(other)
    apply_kev(other, read_kev(KEV), "analyst")
    assert fields(tenant, k["log4shell"])["kev"] is None
    assert fields(other, k["log4shell"])["kev"] is True


def test_no_risk_with_a_cve_writes_nothing(store, tenant):
    b = Batch()
    www = b.add("asset", identifier="www.acme.example")
    b.add("risk", target=www, name="exposed-git-config", severity="low")
    tenant.apply(b, actor="a", source="test")
    count = len(tenant.events())
    result = apply_kev(tenant, read_kev(KEV), "analyst")
    assert (result.risks, result.matched, result.updated) == (0, 0, 0)
    assert len(tenant.events()) == count


# -- the command line (both engines) ------------------------------------------------------------------


@pytest.fixture
def risks(cli, database_url) -> dict[str, str]:
    with Store(database_url) as s:
        return surface(s.tenant("default"))


def test_enrich_kev_prints_one_summary_line(cli, risks):
    out = cli("enrich", "kev", str(KEV)).stdout
    assert out == ("KEV catalog 2025.08.25 (3 CVEs): 2 of 4 risks with a CVE are known exploited; "
                   "4 risks updated\n")
    again = cli("enrich", "kev", str(KEV)).stdout
    assert again.endswith("2 of 4 risks with a CVE are known exploited; 0 risks updated\n")
    log4shell = cli.json("get", risks["log4shell"])
    assert (log4shell["kev"], log4shell["kev_ransomware"], log4shell["priority"]) == (True, True, 100.0)
    history = cli.json("history", risks["log4shell"])
    assert [(e["event_type"], e["actor"], e["source"]) for e in history][-1] == (
        "risk.updated", "tester", "enrich:kev")
    from_csv = cli("enrich", "kev", str(KEV_CSV)).stdout  # the same catalog as CSV
    assert from_csv == (f"KEV catalog {KEV_CSV} (3 CVEs): 2 of 4 risks with a CVE are known "
                        "exploited; 0 risks updated\n")
    newer = cli("enrich", "kev", str(KEV_NEWER)).stdout
    assert newer == ("KEV catalog 2025.09.01 (2 CVEs): 1 of 4 risks with a CVE is known exploited; "
                     "1 risk updated\n")


def test_enrich_epss_json_and_gzip(cli, risks, tmp_path):
    gz = tmp_path / "epss_scores-2025-08-25.csv.gz"
    gz.write_bytes(gzip.compress(EPSS.read_bytes()))
    result = cli.json("enrich", "epss", str(gz))
    assert {k: v for k, v in result.items() if k != "correlation_id"} == {
        "catalog": "epss", "file": str(gz), "version": "v2025.03.14", "date": "2025-08-25T12:55:00Z",
        "cves": 4, "risks_with_cve": 4, "matched": 2, "updated": 4, "unchanged": 0, "import": 1}
    out = cli("enrich", "epss", str(EPSS)).stdout
    assert out == ("EPSS scores v2025.03.14 of 2025-08-25 (4 CVEs): 2 of 4 risks with a CVE have a "
                   "score; 0 risks updated\n")
    on_port = cli.json("get", risks["on_port"])
    assert (on_port["epss"], on_port["epss_percentile"], on_port["priority"]) == (0.00043, 0.1, 35.8)


def test_enrich_reads_standard_input(cli, risks):
    result = cli.json("enrich", "kev", "-", input=KEV.read_bytes())
    assert (result["file"], result["matched"], result["updated"]) == ("<stdin>", 2, 4)


def test_a_bad_file_is_one_error_line_and_writes_nothing(cli, risks, tmp_path):
    before = len(cli.json("history", risks["log4shell"]))
    path = tmp_path / "epss.csv"
    path.write_text(HEADER + "CVE-2021-44228,0.5,0.9\n" * 4 + "CVE-2021-44229,abc,0.9\n")
    result = cli("enrich", "epss", str(path), code=1)
    assert one_error_line(result) == f"error: {path}: line 7: epss 'abc' is not a number"
    path = tmp_path / "not-kev.json"
    path.write_text('{"nodes": []}')
    result = cli("enrich", "kev", str(path), code=1)
    assert one_error_line(result) == f"error: {path}: not a KEV catalog: no 'vulnerabilities' array"
    result = cli("enrich", "kev", str(tmp_path / "nope.json"), code=1)
    assert one_error_line(result).endswith("nope.json: cannot open: No such file or directory")
    assert len(cli.json("history", risks["log4shell"])) == before


def test_no_risk_with_a_cve(cli):
    out = cli("enrich", "kev", str(KEV)).stdout
    assert out == "KEV catalog 2025.08.25 (3 CVEs): no risk names a CVE; nothing updated\n"
