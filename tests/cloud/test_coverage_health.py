"""Coverage counts only healthy detections — and those of unknown health (file-imported rules
nothing checked) — in coverage, gaps, detection snapshots and exposures; and the coverage
report's section "techniques exposed by open risks" (text and --json). Both engines.

GCP project acme-prod, from the exports in fixtures/ (test_gcp_azure.py has every state):
iam-policy-changes healthy → T1098.003; sa-key-created degraded (no notification channel) →
T1098.001; firewall-changes broken → T1686.001; a simple-format rule, health unknown → T1136.003.
Risks on an asset of that project (priority 60, criticality high: score 60 × 3 = 180):
R1 T1098.001 (only a degraded detection) → exposed; R2 T1136.003 (unknown counts) → watched;
R3 T1098.003 (healthy) → watched. So exactly T1098.001 is exposed, by one risk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.coverage.compute import compute
from bastion.coverage.detections import add_account
from bastion.coverage.gaps import gaps
from bastion.coverage.inventory import Options, account_key, import_detections
from bastion.risks.exposures import exposed_techniques, exposures
from bastion.schema.batch import Batch, Entity, prepare_values
from bastion.schema.keys import build_key
from bastion.schema.kinds import REGISTRY

FIXTURES = Path(__file__).parent / "fixtures"
GCP = "gcp:acme-prod"
KEY = account_key(GCP)
RISK = REGISTRY.entity("risk")


def _risk(target: str, name: str, technique: str) -> Entity:
    values = prepare_values(RISK, {"target": target, "name": name, "severity": "high", "status": "open",
                                   "priority": 60})
    return Entity("risk", values, {"techniques": [{"id": technique, "role": "exploitation_technique",
                                                   "source": "test"}]}, None, (values, build_key(RISK, values)))


@pytest.fixture
def project(attack, tmp_path):
    tenant = attack
    add_account(tenant, actor="tester", provider="gcp", identifier="acme-prod", platforms=["IaaS"])
    rule = tmp_path / "rules.json"
    rule.write_text(json.dumps([{"rule_id": "new-service-account", "name": "New service account",
                                 "type": "log_query", "technique": "T1136.003"}]))
    opts = Options(actor="tester", account=GCP)
    catalog = tenant.coverage.catalog("enterprise")
    for paths in ([FIXTURES / "gcp-logging-metrics.json", FIXTURES / "gcp-alert-policies.json"], [rule]):
        res = import_detections(tenant, [str(p) for p in paths], opts, catalog=catalog)
        assert res.status == "succeeded"
    b = Batch()
    web = b.add("asset", identifier="console.acme.example", provider="gcp", account="acme-prod",
                criticality="high")
    b.entities += [_risk(web, "r1", "T1098.001"), _risk(web, "r2", "T1136.003"), _risk(web, "r3", "T1098.003")]
    tenant.apply(b, actor="tester", source="test")
    return tenant


def test_degraded_and_broken_do_not_count_unknown_does(project):
    catalog = project.coverage.catalog("enterprise")
    health = {r.values["name"]: r.values["health"] for r in project.list("detection", limit=100).records}
    assert (health["iam-policy-changes"], health["sa-key-created"], health["firewall-changes"],
            health["New service account"]) == ("healthy", "degraded", "broken", "unknown")
    covered = compute(project, catalog, account=GCP).covered()
    assert {"T1098.003", "T1136.003"} <= covered
    assert not covered & {"T1098.001", "T1686.001"}
    gap_ids = {g.technique for g in gaps(project, catalog, account=GCP).gaps}
    assert {"T1098.001", "T1686.001"} <= gap_ids and not gap_ids & {"T1098.003", "T1136.003"}
    # the detection snapshot keeps the ids each detection counted through: none for degraded
    inventory = next(s["detections"] for s in project.coverage.detection_snapshots(account=KEY, with_detections=True)
                     if s["source"] == "gcp:logging-metrics")
    by_rule = {k.rsplit("#", 1)[-1]: v for k, v in inventory.items()}
    assert by_rule["logging.googleapis.com/user/sa-key-created"][2:] == ["degraded", []]
    assert by_rule["logging.googleapis.com/user/iam-policy-changes"][2:] == ["healthy", ["T1098.003"]]


def test_exposures_count_only_what_can_fire(project):
    catalog = project.coverage.catalog("enterprise")
    items = exposures(project, catalog)
    assert [(e.name, e.account, e.score, e.unseen) for e in items] == [("r1", KEY, 180.0, True)]
    assert exposed_techniques(items) == [{"technique": "T1098.001", "name": catalog.techniques["T1098.001"].name,
                                          "risks": 1, "accounts": [KEY], "top_score": 180.0}]


def test_coverage_report_has_the_exposed_techniques(project, cli):
    doc = cli.json("coverage", "report", "--account", GCP)
    assert [(r["technique"], r["risks"], r["accounts"]) for r in doc["exposed_techniques"]] == [
        ("T1098.001", 1, [KEY])]
    assert cli.json("coverage", "report")["exposed_techniques"][0]["technique"] == "T1098.001"  # tenant
    text = cli("coverage", "report", "--account", GCP).stdout
    assert "Techniques exposed by open risks: 1" in text and "T1098.001" in text


def test_coverage_report_without_open_risks(attack, cli):
    assert cli.json("coverage", "report")["exposed_techniques"] == []
    assert "Techniques exposed by open risks: none" in cli("coverage", "report").stdout
