"""The scanner importer on both engines: dedup, the risk lifecycle (re-open, analyst decisions,
close-missing), merge with stored values, all-or-nothing files, --skip-invalid, import runs."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bastion.errors import InvalidValue
from bastion.ingest.runner import Options, import_paths
from bastion.risks import lifecycle
from bastion.schema.batch import Batch

FIXTURES = Path(__file__).parent / "fixtures" / "scans"
HOST = "#asset#app.example.com#app.example.com"
RISK = "#risk#app.example.com#exposed-git"
CVE_RISK = "#risk#app.example.com#CVE-2021-41773"


def nuclei(host: str, template: str, path: str = "/", severity: str = "medium",
           cve: str | None = None, cvss: float | None = None) -> str:
    classification = {"cve-id": [cve] if cve else None, "cvss-score": cvss}
    return json.dumps({
        "template-id": template, "host": f"https://{host}", "matched-at": f"https://{host}{path}",
        "ip": "203.0.113.7", "type": "http", "timestamp": "2026-11-30T10:00:00Z",
        "info": {"name": template.replace("-", " ").title(), "severity": severity,
                 "classification": classification}})


def write(tmp_path: Path, name: str, lines: list[str], gz: bool = False) -> str:
    path = tmp_path / name
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def run(tenant, *paths: str, **options):
    return import_paths(tenant, list(paths), Options(actor="tester", **options))


SCAN = [
    nuclei("app.example.com", "exposed-git", "/.git/config"),
    nuclei("app.example.com", "exposed-git", "/.git/HEAD"),  # same risk: evidence only
    nuclei("app.example.com", "CVE-2021-41773", "/cgi-bin/", "high", "CVE-2021-41773", 7.5),
    nuclei("api.example.com", "exposed-git", "/.git/config", "low"),
]


def test_findings_dedup_into_one_risk_per_group_and_name_with_evidence(tenant, tmp_path):
    result = run(tenant, write(tmp_path, "scan.jsonl", SCAN))
    assert result.status == "succeeded"
    [f] = result.files
    assert (f.format, f.records, f.findings) == ("nuclei", 4, 4)
    risks = {r.key: r.values for r in tenant.list("risk").records}
    assert set(risks) == {RISK, CVE_RISK, "#risk#api.example.com#exposed-git"}
    git = risks[RISK]
    assert git["evidence"] == ["https://app.example.com/.git/config", "https://app.example.com/.git/HEAD"]
    assert (git["status"], git["severity"], git["source"], git["target"]) == (
        "triage", "medium", "nuclei", HOST)
    cve = risks[CVE_RISK]
    assert (cve["cve"], cve["cvss"], cve["severity"]) == ("CVE-2021-41773", 7.5, "high")
    # priority = 100 × 0.85 (exposure unknown) × 0.6 × max(0.75, 0.75)
    assert cve["priority"] == 38.2
    # The tool is a capability that discovered every asset it reported.
    assert {l.target for l in tenant.links("#capability#nuclei", "out")} >= {
        HOST, "#asset#api.example.com#api.example.com"}
    assert [e.event_type for e in tenant.history(RISK)] == ["risk.created"]
    assert tenant.history(RISK)[0].source == "import:nuclei"


def test_reimport_changes_nothing_but_last_seen(tenant, tmp_path):
    path = write(tmp_path, "scan.jsonl", SCAN)
    run(tenant, path)
    before = tenant.events(limit=10000)
    again = run(tenant, path)
    f = again.files[0]
    assert (f.created, f.updated, f.reopened) == (0, 0, 0) and f.unchanged > 0
    assert tenant.events(limit=10000) == before
    assert tenant.get(RISK).last_seen > tenant.get(RISK).first_seen


def test_new_evidence_extends_the_risk(tenant, tmp_path):
    run(tenant, write(tmp_path, "a.jsonl", SCAN[:1]))
    run(tenant, write(tmp_path, "b.jsonl", [nuclei("app.example.com", "exposed-git", "/.git/index")]))
    rec = tenant.get(RISK)
    assert rec.values["evidence"] == ["https://app.example.com/.git/config",
                                      "https://app.example.com/.git/index"]
    assert [e.event_type for e in tenant.history(RISK)] == ["risk.created", "risk.updated"]
    assert set(tenant.history(RISK)[1].diff) == {"evidence"}


def test_remediated_risk_seen_again_reopens_with_a_note(tenant, tmp_path):
    path = write(tmp_path, "scan.jsonl", SCAN)
    run(tenant, path)
    lifecycle.set_status(tenant, RISK, "remediated", reason="other", comment="patched", actor="ana")
    result = run(tenant, path)
    assert result.files[0].reopened == 1
    rec = tenant.get(RISK)
    assert (rec.values["status"], rec.values["reason"]) == ("open", None)
    last = tenant.history(RISK)[-1]
    assert last.event_type == "risk.status_changed"
    assert last.diff["status"] == ["remediated", "open"]
    assert last.note == f"re-opened: observed again by nuclei (import {result.run_id})"


@pytest.mark.parametrize("state, reason", [("accepted", None), ("deleted", "false_positive"),
                                           ("deleted", "out_of_scope")])
def test_analyst_decisions_are_never_overridden_by_scanners(tenant, tmp_path, state, reason):
    run(tenant, write(tmp_path, "a.jsonl", SCAN))
    lifecycle.set_status(tenant, RISK, state, reason=reason, comment="decided", actor="ana")
    run(tenant, write(tmp_path, "b.jsonl", [nuclei("app.example.com", "exposed-git", "/new")]),
        close_missing=True)
    rec = tenant.get(RISK)
    assert (rec.values["status"], rec.values["reason"], rec.values["comment"]) == (state, reason, "decided")
    assert "https://app.example.com/new" in rec.values["evidence"]
    analyst = [e for e in tenant.history(RISK) if e.actor == "ana"]
    assert analyst[0].note == "decided" and analyst[0].diff["status"][1] == state


def test_close_missing_remediates_only_the_same_sources_unobserved_open_risks(tenant, tmp_path):
    run(tenant, write(tmp_path, "full.jsonl", SCAN), source="weekly")
    run(tenant, write(tmp_path, "other.jsonl", [nuclei("other.example.com", "exposed-git")]),
        source="adhoc")
    result = run(tenant, write(tmp_path, "partial.jsonl", SCAN[:2]), source="weekly",
                 close_missing=True)
    assert result.closed == 2
    status = {r.key: (r.values["status"], r.values["reason"]) for r in tenant.list("risk").records}
    assert status == {
        RISK: ("triage", None),
        CVE_RISK: ("remediated", "not_observed"),
        "#risk#api.example.com#exposed-git": ("remediated", "not_observed"),
        "#risk#other.example.com#exposed-git": ("triage", None),  # another source's scope
    }
    last = tenant.history(CVE_RISK)[-1]
    assert last.note == f"not observed by nuclei:weekly in import {result.run_id} (--close-missing)"
    closed = tenant.get(CVE_RISK)
    assert closed.last_seen < closed.updated_at  # closing is not a sighting
    assert tenant.runs.get(result.run_id).counts["closed"] == 2


def test_close_missing_is_skipped_when_a_file_was_rejected(tenant, tmp_path):
    run(tenant, write(tmp_path, "full.jsonl", SCAN))
    bad = write(tmp_path, "bad.jsonl", ["{not json"])
    result = run(tenant, write(tmp_path, "partial.jsonl", SCAN[:1]), bad, close_missing=True)
    assert result.closed == 0 and result.status == "partial"
    assert "--close-missing skipped" in result.notes[0]
    assert tenant.get(CVE_RISK).values["status"] == "triage"


def test_initial_status_is_configurable(tenant, tmp_path):
    tenant.set_setting(lifecycle.INITIAL_STATUS_SETTING, "open", actor="ana", source="cli")
    run(tenant, write(tmp_path, "scan.jsonl", SCAN[:1]))
    assert tenant.get(RISK).values["status"] == "open"
    [ev] = [e for e in tenant.events() if e.entity_kind == "setting"]
    assert (ev.entity_key, ev.diff, ev.actor) == ("setting:risk.initial_status", {
        "risk.initial_status": [None, "open"]}, "ana")


def test_scanner_merges_into_stored_assets_without_resetting_analyst_fields(tenant, tmp_path):
    batch = Batch()
    batch.add("asset", identifier="app.example.com", exposure="external", criticality="critical")
    tenant.apply(batch, actor="ana", source="cli")
    run(tenant, write(tmp_path, "scan.jsonl", SCAN))
    asset = tenant.get(HOST)
    assert (asset.values["exposure"], asset.values["criticality"], asset.version) == (
        "external", "critical", 1)
    # An external asset raises the priority: 100 × 1.0 × 0.6 × 0.75
    assert tenant.get(CVE_RISK).values["priority"] == 45.0


def test_close_missing_is_skipped_when_a_record_could_not_be_read(tenant, tmp_path):
    # --skip-invalid leaves out a record the run cannot read: what it observed is not known, so
    # closing "what this run did not observe" would close the risk that record was about.
    run(tenant, write(tmp_path, "full.jsonl", SCAN), source="weekly")
    cut = SCAN[2][:40]  # the CVE finding, cut off
    result = run(tenant, write(tmp_path, "again.jsonl", [SCAN[0], cut, SCAN[3]]),
                 source="weekly", skip_invalid=True, close_missing=True)
    assert (result.closed, result.status, result.files[0].skipped) == (0, "partial", 1)
    assert any(n.startswith("--close-missing skipped: a record of") for n in result.notes)
    assert tenant.get(CVE_RISK).values["status"] == "triage"
    # A record skipped only because it names no target cannot be a stored risk: closing goes on.
    unplaced = json.dumps({"template-id": "dns-x", "info": {"name": "x", "severity": "low"}})
    result = run(tenant, write(tmp_path, "placed.jsonl", [SCAN[0], unplaced, SCAN[3]]),
                 source="weekly", close_missing=True)
    assert (result.closed, result.files[0].skipped) == (1, 1)
    assert tenant.get(CVE_RISK).values["status"] == "remediated"


def test_a_bad_record_rejects_its_file_and_nothing_of_it_is_written(tenant, tmp_path):
    good = write(tmp_path, "good.jsonl", SCAN[:1])
    bad = write(tmp_path, "bad.jsonl", [SCAN[2], "{oops", json.dumps({"host": "x.example.com"})])
    result = run(tenant, good, bad)
    assert result.status == "partial"
    bad_file = result.files[1]
    assert bad_file.status == "rejected" and bad_file.created == 0
    assert bad_file.errors[0].startswith(f"{bad}: line 2: not valid JSON")
    assert bad_file.errors[1].startswith(f"{bad}: line 3: ")
    assert "template" in bad_file.errors[1]
    assert tenant.get(CVE_RISK) is None  # line 1 of the bad file was not written
    assert tenant.get(RISK) is not None  # the good file was


def test_skip_invalid_imports_the_valid_records_and_lists_the_rest(tenant, tmp_path):
    bad = write(tmp_path, "bad.jsonl", [SCAN[2], "{oops", SCAN[0]])
    result = run(tenant, bad, skip_invalid=True)
    f = result.files[0]
    assert (f.status, f.records, f.skipped, result.status) == ("imported", 2, 1, "partial")
    assert len(f.errors) == 1 and f.errors[0].startswith(f"{bad}: line 2: skipped: not valid JSON (")
    assert tenant.get(CVE_RISK) is not None and tenant.get(RISK) is not None


@pytest.mark.parametrize("content, reason", [
    (b"\x00\x01\x02binary", "binary content"),
    (b"hello, world\n", "unknown format"),
    (gzip.compress(("\n".join(SCAN)).encode(), mtime=0)[:40], "cannot decompress"),  # cut off
], ids=["binary", "unknown", "cut-gzip"])
def test_unusable_files_get_one_clear_line_each(tenant, tmp_path, content, reason):
    path = tmp_path / "input.jsonl"
    path.write_bytes(content)
    result = run(tenant, str(path))
    [f] = result.files
    assert f.status == "rejected" and result.status == "failed"
    assert len(f.errors) == 1 and f.errors[0].startswith(f"{path}: {reason}")
    assert tenant.count("risk") == 0


def test_xxe_is_refused_and_nothing_written(tenant):
    result = run(tenant, str(FIXTURES / "nmap" / "xxe.xml"))
    [f] = result.files
    assert f.status == "rejected"
    assert "entity declarations are refused" in f.errors[0]
    assert tenant.count("asset") == 0


def test_gzip_and_directories_are_read_and_runs_are_recorded(tenant, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    path = write(folder, "scan.jsonl.gz", SCAN, gz=True)
    (folder / "README.md").write_text("# scans of the week\n")
    result = run(tenant, str(folder), source="weekly")
    by_name = {Path(f.name).name: f for f in result.files}
    assert by_name["README.md"].status == "ignored"
    assert by_name["scan.jsonl.gz"].status == "imported" and by_name["scan.jsonl.gz"].findings == 4
    assert result.status == "succeeded"
    stored = tenant.runs.get(result.run_id)
    import hashlib

    gz_row = next(f for f in stored.files if f["name"] == path)
    assert gz_row["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert (stored.source, stored.actor, stored.status) == ("weekly", "tester", "succeeded")
    assert stored.counts["findings"] == 4 and stored.finished_at >= stored.started_at
    assert [r.id for r in tenant.runs.list()] == [result.run_id]
    # Every event the run wrote carries its correlation id.
    assert {e.correlation_id for e in tenant.events(limit=10000)} == {stored.correlation_id}


def test_a_path_that_does_not_exist_fails_before_a_run_is_recorded(tenant, tmp_path):
    with pytest.raises(InvalidValue, match="No such file"):
        run(tenant, str(tmp_path / "nope.jsonl"))
    assert tenant.runs.list() == []


@pytest.mark.parametrize("fixture", sorted(
    str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*")
    if not any(w in p.name for w in ("malformed", "truncated", "xxe", "laughs", "not-nmap", "wrong"))))
def test_every_format_fixture_imports_and_reimports_unchanged(tenant, fixture):
    # Some parser fixtures hold a bad record on purpose: skipped here, tested with the parsers.
    path = str(FIXTURES / fixture)
    first = run(tenant, path, skip_invalid=True).files[0]
    assert first.status == "imported", first.errors
    assert first.format == fixture.split("/")[0]
    assert first.created > 0 and first.skipped == len(first.errors)
    counts = tenant.counts()
    events = len(tenant.events(limit=100000))
    again = run(tenant, path, skip_invalid=True).files[0]
    assert (again.created, again.updated, again.unchanged) == (0, 0, first.created)
    assert tenant.counts() == counts
    assert len(tenant.events(limit=100000)) == events


def test_overdue_risks_follow_the_tenants_sla(tenant, tmp_path):
    run(tenant, write(tmp_path, "scan.jsonl", SCAN))
    now = datetime.now(timezone.utc)
    assert lifecycle.overdue(tenant, now) == []
    later = lifecycle.overdue(tenant, now + timedelta(days=31))
    assert {r.key for r, _due in later} == {CVE_RISK}  # high: 30 days; medium and low not yet
    [(rec, due)] = later
    assert due == rec.first_seen + timedelta(days=30)
    tenant.set_setting(lifecycle.SLA_SETTING, {"medium": 10}, actor="ana", source="cli")
    assert {r.key for r, _ in lifecycle.overdue(tenant, now + timedelta(days=11))} == {RISK}
    lifecycle.set_status(tenant, RISK, "accepted", reason=None, comment=None, actor="ana")
    assert lifecycle.overdue(tenant, now + timedelta(days=11)) == []


def test_risk_settings_merge_sla_days_and_refuse_a_bad_state_before_writing(tenant):
    lifecycle.configure(tenant, sla="critical=3", actor="ana")
    after = lifecycle.configure(tenant, sla={"high": 14}, initial="open", actor="ana")
    assert (after.sla_days, after.initial_status) == (
        {"critical": 3, "high": 14, "medium": 90, "low": 180}, "open")
    assert tenant.settings() == {lifecycle.SLA_SETTING: {"critical": 3, "high": 14},
                                 lifecycle.INITIAL_STATUS_SETTING: "open"}
    events = len(tenant.events())
    with pytest.raises(InvalidValue, match="triage or open"):
        lifecycle.configure(tenant, sla="low=1", initial="accepted", actor="ana")
    assert len(tenant.events()) == events and lifecycle.risk_settings(tenant).sla_days["low"] == 180


def test_the_importer_is_chosen_by_the_library(tenant, tmp_path):
    """`bastion import` and the server call one function: graph documents go to the graph
    reader, scanner output to the scanner importer; both are recorded runs of their kind."""
    from bastion.graph.jsonformat import ImportReport
    from bastion.ingest.runner import import_inputs
    from test_graph_format import CORP

    graph = tmp_path / "corp.json"
    graph.write_text(json.dumps(CORP))
    report = import_inputs(tenant, [str(graph)], Options(actor="tester"))
    assert isinstance(report, ImportReport) and report.result.created > 0
    scan = import_inputs(tenant, [write(tmp_path, "scan.jsonl", SCAN)], Options(actor="tester"))
    assert scan.files[0].format == "nuclei"
    assert [(r.id, r.kind) for r in tenant.runs.list()] == [(scan.run_id, "scan"),
                                                            (report.run_id, "graph")]
    assert [r.id for r in tenant.runs.list(kind="graph")] == [report.run_id]


# -- properties -----------------------------------------------------------------------------------

finding = st.tuples(st.sampled_from(["a.example.com", "B.Example.COM.", "10.0.0.1"]),
                    st.sampled_from(["exposed-git", "weak-tls", "open-redirect"]),
                    st.sampled_from(["/", "/x", "/y?z=1"]))


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(finding, min_size=1, max_size=12), st.integers(min_value=1, max_value=11))
def test_property_split_and_order_do_not_change_the_result(store, tmp_path_factory, findings, cut):
    """Importing findings in one file, or split in two files in either order, gives the same risks
    with the same evidence sets; importing again changes nothing."""
    tmp = tmp_path_factory.mktemp("prop")
    lines = [nuclei(h, t, p) for h, t, p in findings]
    cut = min(cut, len(lines))
    outcomes = []
    for i, parts in enumerate(([lines], [lines[:cut], lines[cut:]], [lines[cut:], lines[:cut]])):
        name = f"t{len(store.tenants())}"
        store.add_tenant(name)
        tenant = store.tenant(name)
        for j, part in enumerate(p for p in parts if p):
            run(tenant, write(tmp, f"{name}-{j}.jsonl", part))
        risks = {r.key: (r.values["target"] if i == 0 else None, frozenset(r.values["evidence"]))
                 for r in tenant.list("risk", limit=1000).records}
        outcomes.append({k: v[1] for k, v in risks.items()})
        events = len(tenant.events(limit=100000))
        for j, part in enumerate(p for p in parts if p):
            again = run(tenant, write(tmp, f"{name}-{j}.jsonl", part)).files[0]
            assert (again.created, again.updated) == (0, 0)
        assert len(tenant.events(limit=100000)) == events
    assert outcomes[0] == outcomes[1] == outcomes[2]


# -- real scanner output that is not quite canonical (issue 10, point 2) ---------------------------


def nuclei_raw(template: str, **members) -> str:
    return json.dumps({"template-id": template, "info": {"name": template, "severity": "low"},
                       "timestamp": "2026-11-30T10:00:00Z", **members})


ODD = [
    nuclei_raw("exposed-env", type="http", url="/http://app_1/"),  # url only, stray leading '/'
    nuclei_raw("open-redis", type="tcp", **{"matched-at": "db_server.internal_net:6379"}),
    nuclei_raw("dns-wildcard", type="dns"),  # a DNS template that names no target
    nuclei_raw("tech-detect", type="http", matched="http://old_v2:8080/"),
    nuclei_raw("nginx-version", type="http", input="web_2"),
]


def test_nuclei_targets_of_every_version_and_compose_host_names_are_accepted(tenant, tmp_path):
    path = write(tmp_path, "odd.jsonl", ODD)
    result = run(tenant, path)
    [f] = result.files
    assert (f.status, f.records, f.skipped, result.status) == ("imported", 4, 1, "partial")
    assert f.errors == [f"{path}: line 3: skipped: no target: none of 'host', 'matched-at', "
                        "'matched', 'url', 'input', 'ip' names a host"]
    assert {r.values["target"] for r in tenant.list("risk").records} == {
        "#asset#app_1#app_1", "#asset#db_server.internal_net#db_server.internal_net",
        "#asset#old_v2#old_v2", "#asset#web_2#web_2"}
    stored = tenant.runs.get(result.run_id)
    assert stored.status == "partial" and stored.errors == f.errors
    assert stored.files[0]["skipped"] == 1
    # A file read in part is never recorded for reuse: imported again, it is parsed again.
    again = run(tenant, path).files[0]
    assert again.reused_run is None and again.skipped == 1 and again.unchanged == f.created


@pytest.mark.parametrize("fmt, content", [
    ("nuclei", nuclei_raw("dns-wildcard", type="dns")),
    ("httpx", json.dumps({"status_code": 200, "title": "x", "webserver": "nginx"})),
    ("naabu", json.dumps({"port": 80, "protocol": "tcp"})),
    ("subfinder", json.dumps({"input": "example.com", "source": "crtsh"})),
])
def test_a_record_that_cannot_be_placed_is_skipped_in_every_format_unless_strict(
        tenant, tmp_path, fmt, content):
    path = write(tmp_path, "scan.jsonl", [content])
    [f] = run(tenant, path, format=fmt).files
    assert (f.status, f.records, f.skipped) == ("imported", 0, 1)
    assert f.errors[0].startswith(f"{path}: line 1: skipped: no ")
    [f] = run(tenant, path, format=fmt, strict=True).files
    assert (f.status, f.skipped) == ("rejected", 0)
    assert f.errors[0].startswith(f"{path}: line 1: no ")


def test_strict_rejects_the_file_with_an_unplaced_record_and_writes_nothing(tenant, tmp_path):
    result = run(tenant, write(tmp_path, "odd.jsonl", ODD), strict=True)
    assert (result.files[0].status, result.status) == ("rejected", "failed")
    assert tenant.count("risk") == 0 and tenant.count("asset") == 0
    with pytest.raises(InvalidValue, match="--strict and --skip-invalid"):
        run(tenant, write(tmp_path, "odd.jsonl", ODD), strict=True, skip_invalid=True)


def test_an_nmap_host_without_an_address_is_skipped_and_listed(tenant, tmp_path):
    path = tmp_path / "scan.xml"
    path.write_text('<?xml version="1.0"?><nmaprun scanner="nmap" start="1700000000">'
                    '<host><status state="up"/></host>'
                    '<host><status state="up"/><address addr="192.0.2.5" addrtype="ipv4"/></host>'
                    '</nmaprun>')
    [f] = run(tenant, str(path)).files
    assert (f.status, f.records, f.skipped) == ("imported", 1, 1)
    assert "host 1 (line 1): skipped: host has no <address>" in f.errors[0]
    assert tenant.get("#asset#192.0.2.5#192.0.2.5") is not None


# -- an empty scan is a result (issue 10, point 3) ------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n  \n", b"[]\n", gzip.compress(b"", mtime=0)],
                         ids=["empty", "blank", "empty-array", "empty-gzip"])
def test_an_empty_file_imports_as_zero_findings_with_a_warning(tenant, tmp_path, content):
    path = tmp_path / "clean.jsonl"
    path.write_bytes(content)
    result = run(tenant, str(path))
    [f] = result.files
    assert (f.status, f.format, f.records, f.empty, result.status) == (
        "imported", None, 0, True, "succeeded")
    assert result.notes == [f"{path}: empty: imported as a clean scan (zero findings)"]
    assert tenant.runs.get(result.run_id).status == "succeeded"


def test_an_empty_scan_closes_what_its_source_no_longer_sees(tenant, tmp_path):
    run(tenant, write(tmp_path, "scan.jsonl", SCAN), source="weekly")
    run(tenant, write(tmp_path, "other.jsonl", SCAN[:1]), source="daily")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = run(tenant, str(empty), source="weekly", close_missing=True)
    # RISK was last reported by the daily scan: it is that scan's to close.
    assert (result.status, result.closed) == ("succeeded", 2)
    status = {r.values["source"]: r.values["status"] for r in tenant.list("risk").records
              if r.key == RISK}
    assert status == {"nuclei:daily": "triage"}  # the other scan's risk stays open
    assert {r.values["status"] for r in tenant.list("risk").records
            if r.values["source"] == "nuclei:weekly"} == {"remediated"}


def test_an_empty_scan_with_its_format_closes_that_tools_risks(tenant, tmp_path):
    run(tenant, write(tmp_path, "scan.jsonl", SCAN))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    unnamed = run(tenant, str(empty), close_missing=True)  # no tool, no --source: nothing known
    assert unnamed.closed == 0 and "give --format or --source" in unnamed.notes[1]
    result = run(tenant, str(empty), format="nuclei", close_missing=True)
    assert (result.files[0].format, result.closed) == ("nuclei", 3)


def test_an_empty_scan_without_its_format_closes_nothing_when_several_tools_share_its_source(
        tenant, tmp_path):
    run(tenant, write(tmp_path, "scan.jsonl", SCAN), source="weekly")
    run(tenant, str(FIXTURES / "sarif" / "version-first.sarif"), source="weekly")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = run(tenant, str(empty), source="weekly", close_missing=True)
    assert (result.status, result.closed) == ("succeeded", 0)
    assert result.notes[1] == (
        f"--close-missing: {empty} is empty and names no tool, and nuclei, sarif have open risks "
        "under --source weekly: nothing closed for it (pass --format to say which tool's scan it is)")
    assert {r.values["status"] for r in tenant.list("risk").records} == {"triage"}
    assert tenant.runs.get(result.run_id).errors[-1] == result.notes[1]
    # Named, the empty scan closes that tool's risks only.
    result = run(tenant, str(empty), source="weekly", format="nuclei", close_missing=True)
    assert result.closed == 3
    status = {r.values["source"]: r.values["status"] for r in tenant.list("risk").records}
    assert status == {"nuclei:weekly": "remediated", "sarif:weekly": "triage"}


# -- SARIF logs that name no repository (issue 10, point 10) --------------------------------------

NO_REPO = str(FIXTURES / "sarif" / "version-first.sarif")  # names no repository, like semgrep


def sarif_risks(tenant) -> set[str]:
    return {r.key for r in tenant.list("risk").records}


def test_sarif_logs_of_two_named_repositories_never_share_a_risk(tenant):
    run(tenant, NO_REPO, repository="https://github.com/acme/shop.git")
    run(tenant, NO_REPO, repository="https://github.com/acme/billing")
    assert sarif_risks(tenant) == {"#risk#https://github.com/acme/shop/src/main.c#la100",
                                   "#risk#https://github.com/acme/billing/src/main.c#la100"}
    stored = tenant.runs.list()[0]
    assert stored.options["repository"] == "https://github.com/acme/billing"


def test_sarif_logs_of_two_named_sources_never_share_a_risk(tenant):
    run(tenant, NO_REPO, source="shop")
    run(tenant, NO_REPO, source="billing")
    assert sarif_risks(tenant) == {"#risk#sarif:lintall:shop/src/main.c#la100",
                                   "#risk#sarif:lintall:billing/src/main.c#la100"}


def test_repository_contradicting_the_logs_own_is_refused(tenant):
    [f] = run(tenant, str(FIXTURES / "sarif" / "codeql.sarif"), repository="other").files
    assert f.status == "rejected"
    assert ("the log names repository 'https://github.com/acme/shop', --repository 'other'"
            in f.errors[0])
    with pytest.raises(InvalidValue, match="--repository"):
        run(tenant, NO_REPO, repository=" / ")


# -- exposure inferred from addresses --------------------------------------------------------------


def test_imports_infer_exposure_from_addresses_and_never_replace_a_value_set_before(tenant, tmp_path):
    batch = Batch()
    batch.add("asset", identifier="10.0.0.6", exposure="external")  # an analyst's call (a NAT)
    tenant.apply(batch, actor="ana", source="cli")
    scan = [nuclei_raw("exposed-env", type="http", host=f"http://{h}:8080", ip=ip)
            for ip in ("10.0.0.5", "10.0.0.6", "100.64.1.1", "fd00::5", "8.8.8.8", "203.0.113.9")
            for h in [f"[{ip}]" if ":" in ip else ip]]
    scan.append(nuclei_raw("exposed-env", type="http", host="http://app.example.com", ip="8.8.4.4"))
    run(tenant, write(tmp_path, "scan.jsonl", scan))
    exposure = {r.values["identifier"]: r.values["exposure"] for r in tenant.list("asset").records}
    assert exposure == {"10.0.0.5": "internal", "10.0.0.6": "external", "100.64.1.1": "internal",
                        "fd00::5": "internal", "8.8.8.8": "external", "8.8.4.4": "external",
                        "203.0.113.9": "unknown",  # documentation range: says neither
                        "app.example.com": "unknown"}  # a name: not inferred from its address
    # Priorities follow: 100 × E × (0.6 × 0.25 (low)); internal 0.7, external 1.0
    prio = {r.values["group"]: r.values["priority"] for r in tenant.list("risk").records}
    assert (prio["10.0.0.5"], prio["8.8.8.8"], prio["10.0.0.6"]) == (10.5, 15.0, 15.0)
    assert [e.event_type for e in tenant.history("#asset#10.0.0.6#10.0.0.6")
            if e.event_type.startswith("asset.")] == ["asset.created"]  # the analyst's, only


# -- first_seen from the scan's own time (issue 10, point 13) ------------------------------------


def test_a_backlog_import_dates_new_entities_and_sla_from_the_scan(tenant, tmp_path):
    old = json.loads(nuclei("app.example.com", "CVE-2021-41773", "/cgi-bin/", "high",
                            "CVE-2021-41773", 7.5))
    old["timestamp"] = "2025-01-10T08:00:00.5Z"
    later = json.loads(nuclei("app.example.com", "exposed-git"))
    later["timestamp"] = "2025-01-12T08:00:00+02:00"
    future = json.loads(nuclei("new.example.com", "exposed-git"))
    future["timestamp"] = "2999-01-01T00:00:00Z"  # a wrong clock never dates anything ahead
    path = write(tmp_path, "backlog.jsonl", [json.dumps(old), json.dumps(later), json.dumps(future)])
    result = run(tenant, path)
    start = tenant.runs.get(result.run_id).started_at
    assert tenant.get(CVE_RISK).first_seen == datetime(2025, 1, 10, 8, 0, 0, 500000, timezone.utc)
    assert tenant.get(RISK).first_seen == datetime(2025, 1, 12, 6, tzinfo=timezone.utc)
    assert tenant.get(HOST).first_seen == datetime(2025, 1, 10, 8, 0, 0, 500000, timezone.utc)
    assert tenant.get(HOST).last_seen == start  # last_seen is the import's
    assert tenant.get("#risk#new.example.com#exposed-git").first_seen == start
    # The SLA runs from the scan: high = 30 days after 2025-01-10, long overdue.
    [(due_risk, due)] = [(r, d) for r, d in lifecycle.overdue(tenant, start, 100) if r.key == CVE_RISK]
    assert due == datetime(2025, 2, 9, 8, 0, 0, 500000, timezone.utc)
    # An entity seen before keeps its first_seen when an older scan is imported after it.
    older = json.loads(nuclei("app.example.com", "exposed-git"))
    older["timestamp"] = "2024-06-01T00:00:00Z"
    run(tenant, write(tmp_path, "older.jsonl", [json.dumps(older)]))
    assert tenant.get(RISK).first_seen == datetime(2025, 1, 12, 6, tzinfo=timezone.utc)


def test_nmap_hosts_are_first_seen_at_their_scan(tenant, tmp_path):
    path = tmp_path / "scan.xml"
    path.write_text('<?xml version="1.0"?><nmaprun scanner="nmap" start="1700000000">'
                    '<host starttime="1700000100"><address addr="192.0.2.5" addrtype="ipv4"/></host>'
                    '<host><address addr="192.0.2.6" addrtype="ipv4"/></host></nmaprun>')
    run(tenant, str(path))
    assert tenant.get("#asset#192.0.2.5#192.0.2.5").first_seen == datetime.fromtimestamp(1700000100, timezone.utc)
    assert tenant.get("#asset#192.0.2.6#192.0.2.6").first_seen == datetime.fromtimestamp(1700000000, timezone.utc)
