"""`bastion import` of scanner output, `bastion imports` and `bastion risk` on both engines: each
test drives the CLI with `--db` on the `database_url` fixture and checks what it prints (JSON,
the summary table, one error line), the exit code, and what the store then holds."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from cli_harness import Cli, cli, one_error_line, runner  # noqa: F401 (fixtures)
from test_graph_format import CORP, CORP_NODES, DB

APP = "#asset#app.example.com#app.example.com"
GIT = "#risk#app.example.com#exposed-git"
CVE = "#risk#app.example.com#CVE-2021-41773"
API_GIT = "#risk#api.example.com#exposed-git"
BAD_HOST_RISK = "#risk#bad.example.com#exposed-git"


def nuclei(host: str, template: str, path: str = "/", severity: str = "medium",
           cve: str | None = None, cvss: float | None = None) -> str:
    classification = {"cve-id": [cve] if cve else None, "cvss-score": cvss}
    return json.dumps({
        "template-id": template, "host": f"https://{host}", "matched-at": f"https://{host}{path}",
        "ip": "203.0.113.7", "type": "http", "timestamp": "2026-11-30T10:00:00Z",
        "info": {"name": template.replace("-", " ").title(), "severity": severity,
                 "classification": classification}})


SCAN = [
    nuclei("app.example.com", "exposed-git", "/.git/config"),
    nuclei("app.example.com", "exposed-git", "/.git/HEAD"),  # the same risk: evidence only
    nuclei("app.example.com", "CVE-2021-41773", "/cgi-bin/", "high", "CVE-2021-41773", 7.5),
    nuclei("api.example.com", "exposed-git", "/.git/config", "low"),
]
SCAN_RISKS = {GIT, CVE, API_GIT}
# assets app, api, 203.0.113.7 + 3 risks
SCAN_CREATED = 6


def lines(*records: str) -> str:
    return "\n".join(records) + "\n"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Files are named relative to the working directory, as a user types them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def scan(workdir) -> str:
    (workdir / "scan.jsonl").write_text(lines(*SCAN))
    return "scan.jsonl"


def risk_keys(cli: Cli, *where: str) -> set[str]:
    args = [a for w in where for a in ("--where", w)]
    return {r["key"] for r in cli.json("list", "risks", "--limit", "1000", *args)["items"]}


# -- import ---------------------------------------------------------------------------------------


def test_import_json_reports_totals_per_file_and_the_run(cli, scan):
    out = cli.json("import", scan)
    assert out["import"] == 1 and out["status"] == "succeeded" and out["notes"] == []
    assert len(out["correlation_id"]) == 32
    assert out["totals"] == {"records": 4, "findings": 4, "created": SCAN_CREATED, "updated": 0,
                             "unchanged": 0, "reopened": 0, "skipped": 0, "closed": 0,
                             "files": 1, "rejected": 0}
    [f] = out["files"]
    assert (f["name"], f["format"], f["status"], f["records"], f["findings"], f["errors"]) == (
        scan, "nuclei", "imported", 4, 4, [])
    assert f["sha256"] == hashlib.sha256(open(scan, "rb").read()).hexdigest()
    assert risk_keys(cli) == SCAN_RISKS
    git = cli.json("get", GIT)
    assert git["evidence"] == ["https://app.example.com/.git/config",
                               "https://app.example.com/.git/HEAD"]
    assert (git["status"], git["source"], git["target"]) == ("triage", "nuclei", APP)

    again = cli.json("import", scan)
    assert again["import"] == 2
    t = again["totals"]
    assert (t["created"], t["updated"], t["reopened"], t["unchanged"]) == (0, 0, 0, SCAN_CREATED)
    assert [e["event_type"] for e in cli.json("history", GIT)] == ["risk.created"]


def test_import_summary_names_the_bad_file_and_writes_nothing_from_it(cli, scan, workdir):
    (workdir / "bad.jsonl").write_text(
        lines(nuclei("bad.example.com", "exposed-git"), '{"template-id": "x", "info": '))
    result = cli("import", scan, "bad.jsonl", code=2)
    out = result.stdout
    assert out.splitlines()[0].startswith("import 1: partial")
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in out.splitlines() if line.startswith("│")}
    assert rows[scan][0] == "nuclei" and rows[scan][-1] == "imported"
    assert rows[scan][1:3] == ["4", "4"]  # records, findings
    assert rows["bad.jsonl"][-1] == "rejected"
    assert "total" in rows
    bad_lines = [l for l in out.splitlines() if l.startswith("bad.jsonl: ")]
    assert len(bad_lines) == 1 and bad_lines[0].startswith("bad.jsonl: line 2: not valid JSON")
    assert result.stderr.strip().splitlines()[-1] == (
        "error: 1 of 2 input(s) rejected (import 1; `bastion imports show 1`)")
    # The good file went in whole, the bad one not at all (not even its valid first line).
    assert risk_keys(cli) == SCAN_RISKS
    assert BAD_HOST_RISK not in risk_keys(cli)
    run = cli.json("imports", "show", "1")
    assert run["status"] == "partial"
    assert [(f["name"], f["status"]) for f in run["files"]] == [
        (scan, "imported"), ("bad.jsonl", "rejected")]
    assert run["errors"] == [bad_lines[0]]


def test_a_single_good_file_prints_the_table_and_exits_0(cli, scan):
    result = cli("import", scan)
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("import 1: succeeded")
    row = [l for l in out.splitlines() if scan in l]
    assert len(row) == 1 and "nuclei" in row[0] and "imported" in row[0]
    assert "total" not in out  # one file: no total row


def test_skip_invalid_imports_the_rest_and_counts_what_it_skipped(cli, workdir):
    (workdir / "mixed.jsonl").write_text(lines(
        SCAN[0], "{not json", SCAN[2],
        json.dumps({"template-id": "x", "info": {"name": "x", "severity": "urgent"},
                    "host": "https://app.example.com"})))
    out = cli.json("import", "mixed.jsonl", "--skip-invalid")
    assert out["status"] == "partial"
    assert (out["totals"]["records"], out["totals"]["skipped"], out["totals"]["rejected"]) == (2, 2, 0)
    [f] = out["files"]
    assert f["status"] == "imported"
    assert [e.split(": ", 2)[1] for e in f["errors"]] == ["line 2", "line 4"]
    assert "unknown severity 'urgent'" in f["errors"][1]
    assert risk_keys(cli) == {GIT, CVE}
    # Without the flag the same file is rejected (exit 2) and changes nothing.
    result = cli("import", "mixed.jsonl", "--json", code=2)
    assert json.loads(result.stdout)["files"][0]["status"] == "rejected"
    assert one_error_line_of(result.stderr).startswith("error: 1 of 1 input(s) rejected (import 2;")


def one_error_line_of(stderr: str) -> str:
    [line] = stderr.strip().splitlines()
    return line


def test_standard_input_with_detected_and_named_formats(cli):
    out = cli.json("import", "-", input=lines(*SCAN))
    [f] = out["files"]
    assert (f["name"], f["format"], f["status"], f["records"]) == ("<stdin>", "nuclei", "imported", 4)
    assert f["sha256"] == hashlib.sha256(lines(*SCAN).encode()).hexdigest()
    assert risk_keys(cli) == SCAN_RISKS
    named = cli.json("import", "-", "--format", "nuclei",
                     input=lines(nuclei("new.example.com", "exposed-git")))
    assert named["files"][0]["format"] == "nuclei" and named["totals"]["created"] == 2
    assert "#risk#new.example.com#exposed-git" in risk_keys(cli)


def test_named_format_applies_to_a_file(cli, scan):
    out = cli.json("import", scan, "-f", "nuclei")
    assert out["files"][0]["format"] == "nuclei" and out["totals"]["created"] == SCAN_CREATED


def test_the_wrong_named_format_is_rejected_with_the_reason(cli, scan):
    result = cli("import", scan, "--format", "nmap", "--json", code=2)
    out = json.loads(result.stdout)
    assert out["status"] == "failed"
    [f] = out["files"]
    assert (f["format"], f["status"], f["records"]) == ("nmap", "rejected", 0)
    assert f["errors"] == [f"{scan}: not well-formed XML at line 1, column 0: not well-formed "
                           "(invalid token)"]
    assert risk_keys(cli) == set()
    assert one_error_line_of(result.stderr) == (
        "error: 1 of 1 input(s) rejected (import 1; `bastion imports show 1`)")


def test_unknown_format_name_is_a_usage_error(cli, scan):
    result = cli("import", scan, "--format", "masscan", code=2)
    assert "masscan" in result.stderr and result.stdout == ""


def test_gzip_input_is_read_and_hashed_as_stored(cli, workdir):
    data = gzip.compress(lines(*SCAN).encode())
    (workdir / "scan.jsonl.gz").write_bytes(data)
    out = cli.json("import", "scan.jsonl.gz")
    [f] = out["files"]
    assert (f["format"], f["status"], f["records"], f["findings"]) == ("nuclei", "imported", 4, 4)
    assert (f["sha256"], f["bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))
    assert risk_keys(cli) == SCAN_RISKS


def test_a_cut_off_gzip_is_rejected(cli, workdir):
    data = gzip.compress(lines(*SCAN).encode())
    (workdir / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    out = json.loads(cli("import", "cut.jsonl.gz", "--json", code=2).stdout)
    assert out["files"][0]["status"] == "rejected"
    assert risk_keys(cli) == set()


# -- imports list / show --------------------------------------------------------------------------


def test_imports_list_and_show(cli, scan, workdir):
    (workdir / "bad.jsonl").write_text(lines(SCAN[0], "{not json"))
    assert cli.json("imports", "list") == []
    assert "no imports yet" in cli("imports", "list").stdout
    cli("import", scan, "--source", "weekly")
    cli("import", scan, "bad.jsonl", code=2)

    listed = cli.json("imports", "list")
    assert [(r["id"], r["status"], r["source"], r["actor"]) for r in listed] == [
        (2, "partial", "", "tester"), (1, "succeeded", "weekly", "tester")]
    assert listed[1]["counts"]["created"] == SCAN_CREATED
    assert [r["id"] for r in cli.json("imports", "list", "--limit", "1")] == [2]

    first = cli.json("imports", "show", "1")
    assert first["options"]["source"] == "weekly" and first["options"]["paths"] == [scan]
    [f] = first["files"]
    assert f["sha256"] == hashlib.sha256((workdir / scan).read_bytes()).hexdigest()
    assert (f["bytes"], f["records"], f["findings"], f["created"], f["errors"]) == (
        (workdir / scan).stat().st_size, 4, 4, SCAN_CREATED, 0)
    assert first["counts"]["files"] == 1 and first["errors"] == []
    assert first["finished_at"] >= first["started_at"]

    second = cli.json("imports", "show", "2")
    good, bad = second["files"]
    assert good["sha256"] == f["sha256"]
    # Without --source the risks are now filed under "nuclei" instead of "nuclei:weekly".
    assert (good["created"], good["updated"], good["unchanged"]) == (0, 3, 3)
    assert (bad["name"], bad["status"], bad["errors"]) == ("bad.jsonl", "rejected", 1)
    assert second["counts"]["rejected"] == 1
    assert len(second["errors"]) == 1 and second["errors"][0].startswith(
        "bad.jsonl: line 2: not valid JSON")

    text = cli("imports", "show", "2").stdout
    assert text.startswith("import 2: partial") and "bad.jsonl" in text and f["sha256"][:16] in text

    assert one_error_line(cli("imports", "show", "999", code=4)) == (
        "error: no import run 999 (see `bastion imports list`)")


ENRICH = Path(__file__).parent / "fixtures" / "enrich"


def test_imports_list_shows_every_kind_of_import(cli, scan, workdir):
    (workdir / "corp.json.gz").write_bytes(gzip.compress(json.dumps(CORP).encode()))
    (workdir / "empty.json").write_text("")
    cli("import", scan)
    cli("import", "corp.json.gz", "--format", "graph")  # gzip, like every import
    cli("enrich", "kev", str(ENRICH / "kev.json"))
    cli("enrich", "epss", str(ENRICH / "epss.csv"))
    cli("enrich", "kev", "empty.json", code=1)  # refused, and recorded too
    listed = cli.json("imports", "list")
    assert [(r["id"], r["kind"], r["status"]) for r in listed] == [
        (5, "kev", "failed"), (4, "epss", "succeeded"), (3, "kev", "succeeded"),
        (2, "graph", "succeeded"), (1, "scan", "succeeded")]
    assert listed[0]["errors"] == ["empty.json: empty file, expected a KEV catalog (JSON or CSV)"]
    kev = cli.json("imports", "show", "3")
    [f] = kev["files"]
    assert (f["format"], f["status"], f["sha256"]) == (
        "kev", "imported", hashlib.sha256((ENRICH / "kev.json").read_bytes()).hexdigest())
    assert kev["counts"]["records"] == 3
    # The events of a run carry its correlation id.
    assert cli.json("enrich", "kev", str(ENRICH / "kev.json"))["import"] == 6
    graph = cli.json("imports", "show", "2")
    assert graph["files"][0]["name"] == "corp.json.gz" and graph["counts"]["created"] > 0
    assert [r["id"] for r in cli.json("imports", "list", "--kind", "kev")] == [6, 5, 3]
    assert [r["id"] for r in cli.json("imports", "list", "--kind", "scan")] == [1]
    table = cli("imports", "list").stdout
    assert "Kind" in table and "graph" in table and "epss" in table


def test_the_same_file_again_is_reused_and_said_so(cli, scan):
    cli("import", scan)
    out = cli("import", scan).stdout
    assert "scan.jsonl: the same bytes as in import 1 and nothing that import wrote has changed" in out
    [f] = cli.json("imports", "show", "2")["files"]
    assert (f["reused_run"], f["records"], f["findings"], f["created"], f["updated"]) == (1, 4, 4, 0, 0)
    assert "imported (reused import 1)" in cli("imports", "show", "2").stdout
    full = cli.json("import", scan, "--no-reuse")["files"][0]
    assert (full["reused_run"], full["created"], full["updated"], full["unchanged"]) == (None, 0, 0, 6)
    # Standard input cannot be known to be the same: it is always read in full.
    assert cli.json("import", "-", input=lines(*SCAN))["files"][0]["reused_run"] is None


# -- risk set-status ------------------------------------------------------------------------------


def test_set_status_is_an_event_with_actor_and_note(cli, scan):
    cli("import", scan)
    out = cli("risk", "set-status", CVE, "accepted", "--comment", "vendor patch in Q3").stdout
    assert out.strip() == f"{CVE}: accepted, version 2"
    rec = cli.json("get", CVE)
    assert (rec["status"], rec["reason"], rec["comment"]) == ("accepted", None, "vendor patch in Q3")
    last = cli.json("history", CVE)[-1]
    assert (last["event_type"], last["actor"], last["source"], last["note"]) == (
        "risk.status_changed", "tester", "cli", "vendor patch in Q3")
    assert last["diff"]["status"] == ["triage", "accepted"]

    deleted = cli.json("risk", "set-status", GIT, "deleted", "--reason", "false positive")
    assert (deleted["status"], deleted["reason"]) == ("deleted", "false_positive")
    # A scanner seeing them again changes neither decision.
    cli("import", scan)
    assert (cli.json("get", CVE)["status"], cli.json("get", GIT)["status"]) == ("accepted", "deleted")


def test_set_status_errors_are_one_line(cli, scan):
    cli("import", scan)
    assert one_error_line(cli("risk", "set-status", GIT, "deleted", code=1)) == (
        "error: deleting a risk needs --reason (false_positive, out_of_scope, duplicate or other)")
    assert one_error_line(cli("risk", "set-status", GIT, "bogus", code=1)) == (
        "error: unknown risk state 'bogus'; one of: triage, open, accepted, remediated, deleted")
    assert one_error_line(cli("risk", "set-status", APP, "open", code=1)) == (
        f"error: {APP} is not a risk")
    assert one_error_line(cli("risk", "set-status", "#risk#nope.example#x", "open", code=4)) == (
        "error: no risk #risk#nope.example#x")
    msg = one_error_line(cli("risk", "set-status", GIT, "open", "--reason", "duplicate", code=1))
    assert msg == "error: a reason is given only when a risk is remediated or deleted, not open"
    # None of that changed the risk.
    assert [e["event_type"] for e in cli.json("history", GIT)] == ["risk.created"]


# -- risk sla / overdue ---------------------------------------------------------------------------


def test_sla_show_set_and_initial_status(cli, scan):
    assert cli.json("risk", "sla") == {
        "sla_days": {"critical": 7, "high": 30, "medium": 90, "low": 180},
        "initial_status": "triage"}
    out = cli.json("risk", "sla", "--set", "critical=3")
    assert out["sla_days"] == {"critical": 3, "high": 30, "medium": 90, "low": 180}
    out = cli.json("risk", "sla", "--initial-status", "open")
    assert out == {"sla_days": {"critical": 3, "high": 30, "medium": 90, "low": 180},
                   "initial_status": "open"}
    table = cli("risk", "sla").stdout
    assert "3 days" in table and "no deadline" in table and "new findings start in: open" in table
    cli("import", scan)
    assert {r["status"] for r in cli.json("list", "risks")["items"]} == {"open"}

    assert one_error_line(cli("risk", "sla", "--set", "critical=x", code=1)) == (
        "error: invalid SLA 'critical=x': days must be a whole number")
    msg = one_error_line(cli("risk", "sla", "--set", "urgent=3", code=1))
    assert msg.startswith("error: invalid SLA 'urgent=3': use SEVERITY=DAYS")
    assert one_error_line(cli("risk", "sla", "--initial-status", "accepted", code=1)) == (
        "error: --initial-status must be triage or open")
    assert cli.json("risk", "sla")["sla_days"]["critical"] == 3  # the bad ones changed nothing


def test_nothing_is_overdue_right_after_an_import(cli, scan):
    cli("import", scan)
    assert cli.json("risk", "overdue") == []
    assert "no overdue risks" in cli("risk", "overdue").stdout


def test_a_zero_day_sla_makes_a_fresh_risk_overdue(cli, scan):
    cli("import", scan)
    cli("risk", "sla", "--set", "high=0")
    [item] = cli.json("risk", "overdue")
    assert (item["key"], item["severity"], item["status"]) == (CVE, "high", "triage")
    # First seen when the scan saw it (its timestamp), not at the import: due right then.
    assert item["due"] == item["first_seen"] == "2026-11-30T10:00:00Z"
    assert item["days_overdue"] >= 0
    cli("risk", "set-status", CVE, "accepted")
    assert cli.json("risk", "overdue") == []  # only open risks are overdue


# -- list by priority -----------------------------------------------------------------------------


def test_list_risks_by_priority(cli, workdir):
    (workdir / "scan.jsonl").write_text(lines(
        nuclei("a.example.com", "low-one", severity="low"),
        nuclei("b.example.com", "crit-one", severity="critical"),
        nuclei("c.example.com", "info-one", severity="info"),
        nuclei("d.example.com", "cve-one", severity="medium", cve="CVE-2020-0001", cvss=8.8)))
    cli("import", "scan.jsonl")
    desc = cli.json("list", "risks", "--sort", "priority")["items"]
    priorities = [r["priority"] for r in desc]
    assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == 4
    assert desc[0]["key"] == "#risk#b.example.com#crit-one"
    assert desc[-1]["key"] == "#risk#c.example.com#info-one"
    asc = cli.json("list", "risks", "--sort", "priority", "--asc")["items"]
    assert [r["key"] for r in asc] == [r["key"] for r in reversed(desc)]


# -- close-missing --------------------------------------------------------------------------------


def test_close_missing_through_the_cli(cli, scan, workdir):
    cli("import", scan, "--source", "weekly")
    (workdir / "partial.jsonl").write_text(lines(*SCAN[:2]))
    out = cli.json("import", "partial.jsonl", "--source", "weekly", "--close-missing")
    assert out["totals"]["closed"] == 2 and out["status"] == "succeeded"
    assert risk_keys(cli, "status=remediated") == {CVE, API_GIT}
    assert risk_keys(cli, "status=triage") == {GIT}
    assert cli.json("get", CVE)["reason"] == "not_observed"
    assert cli.json("history", CVE)[-1]["note"] == (
        f"not observed by nuclei:weekly in import {out['import']} (--close-missing)")
    assert cli.json("imports", "show", str(out["import"]))["counts"]["closed"] == 2
    # The table says so too; a third run closes nothing more.
    text = cli("import", "partial.jsonl", "--source", "weekly", "--close-missing").stdout
    assert "closed:" not in text
    # Seen again by the full scan: re-opened.
    again = cli.json("import", scan, "--source", "weekly")
    assert again["totals"]["reopened"] == 2
    assert risk_keys(cli, "status=open") == {CVE, API_GIT}


def test_close_missing_is_skipped_when_a_file_is_rejected(cli, scan, workdir):
    cli("import", scan)
    (workdir / "partial.jsonl").write_text(lines(SCAN[0]))
    (workdir / "bad.jsonl").write_text("{not json\n")
    result = cli("import", "partial.jsonl", "bad.jsonl", "--close-missing", "--json", code=2)
    out = json.loads(result.stdout)
    assert out["totals"]["closed"] == 0
    assert out["notes"] == ["--close-missing skipped: a file was rejected, so what this run did "
                            "not observe is not known"]
    assert risk_keys(cli, "status=triage") == SCAN_RISKS


# -- graph documents, missing files ---------------------------------------------------------------


def test_a_bastion_graph_document_is_still_imported(cli, workdir):
    (workdir / "cmdb.json").write_text(json.dumps(CORP))
    out = cli.json("import", "cmdb.json")
    assert out["files"] == ["cmdb.json"] and out["created"] == len(CORP_NODES)
    assert cli.json("get", DB)["key"] == DB
    [run] = cli.json("imports", "list")  # recorded like every import
    assert (run["status"], run["options"]["format"], run["counts"]["created"]) == (
        "succeeded", "graph", len(CORP_NODES))


def test_a_scan_mentioning_nodes_is_not_taken_for_a_graph(cli, workdir):
    (workdir / "k8s.jsonl").write_text(lines(
        nuclei("k8s.example.com", "kube-api-nodes", "/api/v1/nodes")))
    out = cli.json("import", "k8s.jsonl")
    assert out["files"][0]["format"] == "nuclei"


def test_a_missing_file_is_one_error_and_no_run(cli, scan):
    assert one_error_line(cli("import", "nonexistent.json", code=1)) == (
        "error: cannot read nonexistent.json: No such file or directory")
    # Not even with a good file beside it: a typo stops the run before anything is recorded.
    assert one_error_line(cli("import", scan, "nonexistent.json", code=1)) == (
        "error: cannot read nonexistent.json: No such file or directory")
    assert cli.json("imports", "list") == [] and risk_keys(cli) == set()


# -- format detection (issue 10, point 1) ---------------------------------------------------------

VERSION_FIRST = str(Path(__file__).parent / "fixtures" / "scans" / "sarif" / "version-first.sarif")


def test_sarif_starting_with_version_is_sarif_from_a_file_and_from_stdin(cli):
    [f] = cli.json("import", VERSION_FIRST)["files"]
    assert (f["format"], f["status"], f["records"]) == ("sarif", "imported", 1)
    with open(VERSION_FIRST) as fh:
        [f] = cli.json("import", "-", input=fh.read())["files"]
    assert (f["name"], f["format"], f["status"], f["records"]) == ("<stdin>", "sarif", "imported", 1)


def test_a_refused_graph_document_is_recorded_as_a_failed_run(cli, workdir):
    (workdir / "g.json").write_text('{"version": 1, "nodes": [{"kind": "asset", "name": "a.example"}],'
                                    ' "edge": []}')
    result = cli("import", "g.json", code=2)
    assert "edge: unknown member" in result.stderr
    [run] = cli.json("imports", "list")
    assert (run["status"], run["options"]["format"], run["files"][0]["status"]) == (
        "failed", "graph", "rejected")
    assert any("edge: unknown member" in e for e in run["errors"])
    out = cli.json("import", "--format", "graph", "-", input='{"nodes": [{"kind": "asset", "name": "b.example"}]}')
    assert out["import"] == 2 and out["created"] == 1
    assert cli.json("imports", "show", "2")["status"] == "succeeded"


# -- skipped records, --strict, empty scans (issue 10, points 2 and 3) ------------------------------


def test_a_result_without_target_is_skipped_and_listed_and_strict_refuses_it(cli, workdir):
    dns = json.dumps({"template-id": "dns-wildcard", "type": "dns",
                      "info": {"name": "DNS wildcard", "severity": "info"}})
    web = json.dumps({"template-id": "exposed-env", "type": "http", "url": "/http://app_1/",
                      "info": {"name": "Exposed env", "severity": "high"}})
    (workdir / "compose.jsonl").write_text(lines(web, dns))
    result = cli("import", "compose.jsonl")
    assert "compose.jsonl: line 2: skipped: no target" in result.stdout.replace("\n", "")
    [run] = cli.json("imports", "list")
    assert run["status"] == "partial" and run["errors"][0].startswith("compose.jsonl: line 2: skipped:")
    assert risk_keys(cli) == {"#risk#app_1#exposed-env"}
    result = cli("import", "compose.jsonl", "--strict", "--no-reuse", code=2)
    assert "compose.jsonl: line 2: no target" in result.stdout.replace("\n", "")


def test_an_empty_scan_closes_with_source_and_exits_0(cli, scan, workdir):
    cli("import", scan, "--source", "weekly")
    (workdir / "empty.jsonl").write_bytes(b"")
    out = cli.json("import", "empty.jsonl", "--source", "weekly", "--close-missing")
    assert (out["status"], out["totals"]["closed"], out["files"][0]["status"]) == (
        "succeeded", len(SCAN_RISKS), "imported")
    assert out["notes"] == ["empty.jsonl: empty: imported as a clean scan (zero findings)"]
    assert risk_keys(cli, "status=remediated") == SCAN_RISKS
