"""`bastion account|detections|map` end to end, on both engines."""

from __future__ import annotations

import shutil
from pathlib import Path

from cli_harness import cli, runner  # noqa: F401  (fixtures)

FIXTURES = Path(__file__).parent / "fixtures"
SIGMA = str(FIXTURES / "sigma")
DET = FIXTURES / "detections"
AWS = "#cloud_account#aws#123456789012"
LOGIN = "#detection#cloud_account#aws#123456789012#0b1e2d3c-0001-4000-8000-000000000002"


def test_accounts_and_sigma_import(cli, tmp_path):
    cli("account", "add", "--provider", "aws", "--identifier", "123456789012", "--name", "prod",
        "--environment", "prod", "--platform", "IaaS", "--region", "eu-west-1")
    out = cli("detections", "import", SIGMA, "--account", "aws:123456789012").stdout
    assert "succeeded" in out and "snapshot: sigma #1" in out
    # the Azure and GCP rules of the set are not this AWS account's coverage
    assert "skipped 2 rule(s) of other providers: azure 1, gcp 1" in out
    accounts = cli.json("account", "list")
    assert accounts[0]["key"] == AWS and accounts[0]["detections"] == 9
    assert accounts[0]["platforms"] == ["IaaS"]
    again = cli.json("detections", "import", SIGMA, "--account", AWS)
    assert again["totals"]["unchanged"] == 9 and again["totals"]["added"] == 0
    assert again["other_providers"] == {"azure": 1, "gcp": 1}
    listed = cli.json("detections", "list", "--account", "aws:123456789012", "--status", "deprecated")
    assert [d["rule_id"] for d in listed] == ["0b1e2d3c-0001-4000-8000-000000000006"]
    shown = cli.json("detections", "show", LOGIN)
    assert {m["technique"] for m in shown["mappings"]} == {"T1078", "T1078.004"}
    assert shown["history"][0]["event_type"] == "detection.created"
    assert "mappings" in cli("detections", "show", LOGIN).stdout


def test_revision_and_removal_via_cli(cli, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(SIGMA, rules)
    cli("detections", "import", str(rules))
    path = rules / "aws_console_login.yml"
    path.write_text(path.read_text().replace("level: medium", "level: high"))
    (rules / "aws_s3_object_read.yml").unlink()
    res = cli.json("detections", "import", str(rules))
    assert res["totals"]["modified"] == 1 and res["totals"]["removed"] == 1
    key = "#detection#cloud_account#other#default#0b1e2d3c-0001-4000-8000-000000000002"
    shown = cli.json("detections", "show", key)
    assert shown["revision"] == 2
    assert [h["event_type"] for h in shown["history"]] == ["detection.created", "detection.updated"]


def test_rejected_files_exit_2_with_file_item_reason(cli):
    res = cli("detections", "import", str(DET / "bad"), code=2)
    assert "no_id.yml: rule 'Rule Without Id': rule has no id" in res.stdout
    assert "unknown_technique.yml: tags: T9999 is unknown to ATT&CK enterprise 19" in res.stdout
    assert "invalid.yml: invalid YAML at line 4" in res.stdout
    assert "2 of 3 file(s) rejected" in res.stderr
    assert len(cli.json("detections", "list")) == 1  # the rule with an unknown tag is imported
    res = cli.json("detections", "import", str(DET / "bad"), "--skip-invalid")
    assert res["totals"]["skipped"] == 2 and res["status"] == "partial"
    assert len(cli.json("detections", "list")) == 1


def test_map_health_and_deprecated(cli, tmp_path):
    cli("detections", "import", str(DET / "simple.json"))
    det = "#detection#cloud_account#other#default#alarm-root"
    made = cli.json("map", "add", det, "t1098.001", "--confidence", "0.5", "--rationale", "key rotation")
    assert made["method"] == "analyst" and made["mapped_by"] == "tester" and made["technique"] == "T1098.001"
    mkey = made["key"]
    assert cli.json("map", "validate", mkey)["validation"] == "validated"
    assert cli.json("map", "dispute", mkey, "--rationale", "wrong")["validation"] == "disputed"
    hist = cli.json("history", mkey)
    assert [e["event_type"] for e in hist][-2:] == ["mapping.updated", "mapping.updated"]
    assert {m["technique"] for m in cli.json("map", "list", "--detection", det)} == {"T1078.004", "T1098.001"}
    assert [m["detection"] for m in cli.json("map", "list", "--technique", "T1685.002")] == [
        "#detection#cloud_account#other#default#eb-stop-logging"]
    h = cli.json("detections", "health", det, "--set", "broken", "--issue", "log source disabled")
    assert h["health"] == "broken" and h["health_issues"] == ["log source disabled"]
    legacy = tmp_path / "legacy.json"
    legacy.write_text('[{"rule_id": "aad", "type": "log_query", "raw": "https://graph.windows.net/me"}]')
    cli("detections", "import", str(legacy), "--source", "legacy")
    found = cli.json("detections", "check-deprecated", "--apply")
    assert [f["key"] for f in found] == ["#detection#cloud_account#other#default#aad"]
    assert cli.json("detections", "list", "--health", "degraded")[0]["rule_id"] == "aad"


def test_unknown_technique_on_map_add(cli):
    cli("detections", "import", str(DET / "simple.json"))
    res = cli("map", "add", "#detection#cloud_account#other#default#alarm-root", "T9999", code=1)
    assert "unknown ATT&CK technique T9999" in res.stderr


def test_drift_shows_the_source_alone_and_the_account_between(cli, tmp_path):
    cli("account", "add", "--provider", "aws", "--identifier", "123456789012")
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("aws_console_login.yml", "aws_s3_object_read.yml"):
        (rules / name).write_text((Path(SIGMA) / name).read_text())
    cli("detections", "import", str(rules), "--account", AWS)
    siem = tmp_path / "siem.csv"
    siem.write_text("rule_id,name,type,service,status,technique,confidence,owner\n"
                    "q1,Key creation,log_query,cloudtrail,enabled,T1098.001,0.9,soc\n")
    cli("detections", "import", str(siem), "--account", AWS)
    (rules / "aws_s3_object_read.yml").unlink()
    cli("detections", "import", str(rules), "--account", AWS)
    out = cli("coverage", "drift", "--account", AWS).stdout
    assert "detection snapshot 1 → 3" in out and "coverage of sigma alone" in out
    assert "including other sources imported in between: simple #2" in out
    d = cli.json("coverage", "drift", "--account", AWS)
    assert d["source_delta"]["overall"]["covered_before"] - d["source_delta"]["overall"]["covered_after"] == 1
    # the account gained T1098.001 (and its parent) from the other source, lost T1530
    assert d["coverage_delta"]["overall"]["covered_after"] == d["coverage_delta"]["overall"]["covered_before"] + 1
