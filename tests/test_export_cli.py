"""One --format (table, json, csv, ndjson) and one --where syntax on every list command, on both
engines: each command's CSV and NDJSON rows equal its --json rows, every page is exported (pages
of two rows here), and filters select the right rows."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from bastion.store import export
from cli_harness import cli, one_error_line, runner  # noqa: F401  (fixtures)

FIXTURES = Path(__file__).parent / "fixtures"
SIGMA = str(FIXTURES / "sigma")
AWS = "#cloud_account#aws#123456789012"


@pytest.fixture(autouse=True)
def small_pages(monkeypatch):
    """Exports read two rows a page, so every export here spans several pages."""
    monkeypatch.setattr(export, "PAGE_SIZE", 2)


def exported(cli, *args: str) -> tuple[list[str], list[dict], list[dict]]:
    """(CSV header, CSV rows, NDJSON rows) of a list command."""
    text = cli(*args, "--format", "csv").stdout
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    lines = cli(*args, "--format", "ndjson").stdout.splitlines()
    return list(reader.fieldnames or []), rows, [json.loads(line) for line in lines]


def assert_same_rows(cli, args: tuple[str, ...], json_rows: list[dict], columns) -> None:
    """The command's CSV and NDJSON exports hold exactly `json_rows` (its --json rows), the CSV
    under the stable `columns`, which name every field of a row."""
    header, csv_rows, nd_rows = exported(cli, *args)
    assert nd_rows == json_rows
    assert header == list(columns)
    assert csv_rows == [{c: export.cell(row.get(c)) for c in columns} for row in json_rows]
    for row in json_rows:
        assert set(row) <= set(columns), set(row) - set(columns)


def sigma_account(cli) -> None:
    cli("account", "add", "--provider", "aws", "--identifier", "123456789012", "--name", "prod",
        "--platform", "IaaS")
    cli("detections", "import", SIGMA, "--account", AWS)


# -- entity lists: SQL filters, keyset pages -------------------------------------------------------


def test_list_pages_and_export_agree(cli):
    for i in range(5):
        cli("add", "asset", "--identifier", f"h{i}.acme.example", "--exposure",
            "internal" if i % 2 else "external")
    pages, after = [], []
    while True:
        page = cli.json("list", "assets", "--limit", "2", *after)
        pages.extend(page["items"])
        if not page["next_cursor"]:
            break
        after = ["--after", page["next_cursor"]]
    assert len(pages) == 5
    assert_same_rows(cli, ("list", "assets"), pages, export.columns("asset"))
    assert cli.json("list", "assets", "--format", "json", "--limit", "2")["items"] == pages[:2]
    _h, _c, external = exported(cli, "list", "assets", "--where", "exposure=external")
    assert [r["identifier"] for r in external] == ["h0.acme.example", "h2.acme.example",
                                                   "h4.acme.example"]


def test_detections_accounts_and_mappings(cli):
    sigma_account(cli)
    rows = cli.json("detections", "list")
    assert len(rows) == 9 and all("raw" not in r for r in rows)
    assert_same_rows(cli, ("detections", "list"), rows,
                     [c for c in export.columns("detection") if c != "raw"])
    # --where in the one syntax, with the older options beside it
    high = cli.json("detections", "list", "--where", "level>=high", "--status", "enabled")
    assert high and all(r["level"] in ("high", "critical") and r["status"] == "enabled" for r in high)
    assert {r["key"] for r in high} < {r["key"] for r in rows}
    _h, _c, searched = exported(cli, "detections", "list", "--account", "aws:123456789012",
                                "--where", "~console")
    assert [r["name"] for r in searched] == [r["name"] for r in rows if "console" in r["name"].lower()]
    assert searched

    accounts = cli.json("account", "list")
    assert accounts[0]["detections"] == 9
    assert_same_rows(cli, ("account", "list"), accounts, [*export.columns("cloud_account"), "detections"])
    assert cli.json("account", "list", "--where", "provider=azure") == []

    maps = cli.json("map", "list")
    assert len(maps) > 2
    assert_same_rows(cli, ("map", "list"), maps, export.columns("mapping"))
    t1078 = cli.json("map", "list", "--where", "technique=t1078,t1078.004", "--where", "confidence>=0")
    assert t1078 and {m["technique"] for m in t1078} <= {"T1078", "T1078.004"}
    assert t1078 == [m for m in maps if m["technique"] in ("T1078", "T1078.004")]
    msg = one_error_line(cli("detections", "list", "--format", "csv", "--limit", "3", code=1))
    assert msg == "error: --format csv exports every row: leave out --limit"
    msg = one_error_line(cli("map", "list", "--where", "confidence>high", code=1))
    assert msg == "error: mapping.confidence: 'high' is not a number"


# -- rows that are not entities: the same syntax over their dict form ------------------------------


def test_changes_pages_filters_and_export(cli):
    for i in range(3):
        cli("add", "asset", "--identifier", f"h{i}.acme.example")
    cli("add", "risk", "--target", "#asset#h0.acme.example#h0.acme.example", "--name", "weak-tls",
        "--severity", "high", "--title", "Weak TLS")
    events, after = [], []
    while True:
        page = cli.json("changes", "--limit", "2", *after)
        events.extend(page["events"])
        if page["next_after"] is None:
            break
        after = ["--after", str(page["next_after"])]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)) and len(events) >= 5
    assert_same_rows(cli, ("changes",), events, export.EVENTS.columns)
    created = cli.json("changes", "--where", "event_type=asset.created")["events"]
    assert [e["entity_key"] for e in created] == [f"#asset#h{i}.acme.example#h{i}.acme.example"
                                                  for i in range(3)]
    # a filtered page is filled from the next pages, and continues after its last row
    page = cli.json("changes", "--where", "!entity_kind=asset", "--limit", "1")
    others = [e for e in events if e["entity_kind"] != "asset"]
    assert page["events"] == others[:1] and page["next_after"] == others[0]["seq"]
    _h, _c, later = exported(cli, "changes", "--where", "seq>2", "--where", "~weak")
    assert later == [e for e in events if e["seq"] > 2 and "weak" in e["entity_key"]]
    assert later
    msg = one_error_line(cli("changes", "--where", "colour=red", code=1))
    assert msg.startswith("error: event has no field 'colour'; fields: seq, occurred_at")
    msg = one_error_line(cli("changes", "--run", "1", "--summary", "--format", "csv", code=1))
    assert "--summary lists no events" in msg


def test_coverage_lists(cli):
    sigma_account(cli)
    body = cli.json("coverage", "techniques", "--account", AWS, "--covered")
    techniques = body["techniques"]
    assert techniques and all(t["covered"] for t in techniques)
    args = ("coverage", "techniques", "--account", AWS, "--covered")
    assert_same_rows(cli, args, techniques, export.TECHNIQUES.columns)
    t1078 = cli.json(*args, "--where", "id=t1078,t1078.004")["techniques"]
    assert [t["id"] for t in t1078] == ["T1078", "T1078.004"]
    name = techniques[-1]["tactics"][0]
    tactic = cli.json(*args, "--where", f"tactics={name}")["techniques"]
    assert tactic == [t for t in techniques if name in t["tactics"]] and tactic

    gaps = cli.json("coverage", "gaps", "--account", AWS, "--limit", "10000")
    assert gaps["total"] == len(gaps["gaps"]) > 50
    assert_same_rows(cli, ("coverage", "gaps", "--account", AWS), gaps["gaps"], export.GAPS.columns)
    assert len(cli.json("coverage", "gaps", "--account", AWS)["gaps"]) == 50  # the table's default
    high = cli.json("coverage", "gaps", "--account", AWS, "--where", "severity>=high",
                    "--where", "!tactics=impact", "--limit", "10000")
    expected = [g for g in gaps["gaps"] if g["severity"] in ("high", "critical")
                and "impact" not in g["tactics"]]
    assert high["gaps"] == expected and high["total"] == len(expected) and expected

    overlaps = cli.json("coverage", "overlaps", "--account", AWS)["overlaps"]
    assert overlaps
    assert_same_rows(cli, ("coverage", "overlaps", "--account", AWS), overlaps,
                     export.OVERLAPS.columns)
    beneficial = cli.json("coverage", "overlaps", "--account", AWS, "--where",
                          "classification=beneficial")["overlaps"]
    assert beneficial == [o for o in overlaps if o["classification"] == "beneficial"]

    for _ in range(3):
        cli("coverage", "snapshot", "--account", AWS)
    history = cli.json("coverage", "history", "--account", AWS)
    ids = [s["id"] for s in history]
    assert len(ids) >= 3 and ids == sorted(ids)
    assert_same_rows(cli, ("coverage", "history", "--account", AWS), history,
                     export.COVERAGE_HISTORY.columns)
    assert [s["id"] for s in cli.json("coverage", "history", "--account", AWS,
                                      "--where", f"id>={ids[1]}")] == ids[1:]


def test_attack_versions_and_tenants(cli):
    cli("attack", "import", str(FIXTURES / "attack" / "ics-18.1.json"))
    releases = cli.json("attack", "versions")["releases"]
    assert {r["domain"] for r in releases} == {"enterprise", "ics"}
    assert_same_rows(cli, ("attack", "versions"), releases, export.ATTACK_RELEASES.columns)
    ics = cli.json("attack", "versions", "--where", "domain=ICS", "--where", "active=true")
    assert [r["domain"] for r in ics["releases"]] == ["ics"]

    for name in ("acme", "beta", "corp"):
        cli("tenant", "add", name, "--display-name", f"{name.title()} Inc")
    tenants = cli.json("tenant", "list")
    assert sorted(t["name"] for t in tenants) == ["acme", "beta", "corp", "default"]
    assert_same_rows(cli, ("tenant", "list"), tenants, export.TENANTS.columns)
    assert [t["name"] for t in cli.json("tenant", "list", "--where", "~inc",
                                        "--where", "!name=beta")] == \
        [t["name"] for t in tenants if t["name"] in ("acme", "corp")]
    msg = one_error_line(cli("tenant", "list", "--where", "created_at>=yesterday", code=1))
    assert msg.startswith("error: tenant.created_at: 'yesterday' is not a time")


def test_format_and_json_alias_are_one_option(cli):
    assert cli.json("tenant", "list") == json.loads(cli("tenant", "list", "--format", "json").stdout)
    msg = one_error_line(cli("tenant", "list", "--format", "xml", code=1))
    assert msg == "error: --format 'xml': one of table, json, csv, ndjson"
    msg = one_error_line(cli("tenant", "list", "--json", "--format", "csv", code=1))
    assert msg == "error: --json means --format json: leave out one of them"
    assert "default" in cli("tenant", "list", "--format", "TABLE").stdout


def test_import_runs(cli):
    for name in ("aws_console_login.yml", "aws_s3_object_read.yml", "aws_old_root_login.yml"):
        cli("detections", "import", str(Path(SIGMA) / name))
    cli("import", str(FIXTURES / "scans" / "naabu" / "naabu.jsonl"))
    runs = cli.json("imports", "list")
    assert [r["id"] for r in runs] == [4, 3, 2, 1]
    assert_same_rows(cli, ("imports", "list"), runs, export.IMPORT_RUNS.columns)
    assert cli.json("imports", "list", "--limit", "2") == runs[:2]
    # filtered rows fill the page from the next pages (newest first)
    detections = cli.json("imports", "list", "--where", "kind=detections", "--limit", "2")
    assert [r["id"] for r in detections] == [3, 2]
    _h, _c, rows = exported(cli, "imports", "list", "--where", "id<=3", "--where", "!id=2")
    assert [r["id"] for r in rows] == [3, 1]
    assert exported(cli, "imports", "list", "--kind", "scan")[2] == runs[:1]
    msg = one_error_line(cli("imports", "list", "--where", "status=done", code=1))
    assert msg.startswith("error: import_run.status cannot be 'done'; one of: running")


def test_overdue_risks(cli):
    cli("risk", "sla", "--set", "critical=0,high=0,medium=0,low=0")
    cli("add", "asset", "--identifier", "app.acme.example")
    host = "#asset#app.acme.example#app.acme.example"
    for i, (sev, cvss) in enumerate([("low", 3.1), ("high", 7.5), ("critical", 9.8), ("high", 5.0),
                                     ("medium", 6.0)]):
        cli("add", "risk", "--target", host, "--name", f"finding {i}", "--title", f"Weak SSH {i}",
            "--severity", sev, "--cvss", str(cvss))
    cli("add", "risk", "--target", host, "--name", "closed", "--severity", "critical",
        "--status", "accepted")
    rows = cli.json("risk", "overdue")
    assert [r["key"].rpartition("#")[2] for r in rows] == [f"finding-{i}" for i in range(5)]
    # days_overdue is computed at each command's now: the same in a run of this test
    assert_same_rows(cli, ("risk", "overdue"), rows, export.OVERDUE_COLUMNS)
    assert cli.json("risk", "overdue", "--limit", "2") == rows[:2]
    high = cli.json("risk", "overdue", "--where", "severity>=high", "--where", "cvss>=7")
    assert [r["key"].rpartition("#")[2] for r in high] == ["finding-1", "finding-2"]
    _h, _c, ssh = exported(cli, "risk", "overdue", "--where", "~ssh 3", "--where", "!severity=low")
    assert [r["key"].rpartition("#")[2] for r in ssh] == ["finding-3"]


def test_history_of_an_entity(cli):
    key = "#asset#app.acme.example#app.acme.example"
    cli("add", "asset", "--identifier", "app.acme.example")
    for exposure in ("internal", "external", "internal"):
        cli("add", "asset", "--identifier", "app.acme.example", "--exposure", exposure)
    events = cli.json("history", key)
    assert [e["entity_version"] for e in events] == [1, 2, 3, 4]
    assert_same_rows(cli, ("history", key), events, export.EVENTS.columns)
    updated = cli.json("history", key, "--where", "event_type=asset.updated", "--where",
                       "entity_version>=3")
    assert updated == events[2:]
