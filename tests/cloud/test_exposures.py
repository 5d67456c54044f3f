"""`bastion enrich techniques` and `bastion exposures` on a fixture tenant worked out by hand.

Tenant: account aws:111 with a healthy detection of T1190 and a broken one of T1059; the default
account with a healthy detection of T1078. Risks (CTID KEV fixture: CVE-2024-34102 → T1190
exploitation, T1059 primary, T1005 secondary; CVE-2021-44228 → T1190, T1562.001 = T1685 in ATT&CK
19; CVE-2020-0001 → T1078):

    R1 CVE-2024-34102 on web (aws:111, critical), priority 80: T1190 watched, T1059 (broken
       detection) and T1005 not            → listed, score 80 × 4 = 320
    R2 CVE-2021-44228 on api (account written aws:111, high), priority 70: T1190 watched, T1685
       not                                → listed, score 70 × 3 = 210
    R3 CVE-2020-0001 on legacy (no account: default), T1078 watched there → not listed
    R4 CVE-2024-34102 on web, remediated   → not listed (closed)
    R5 nuclei finding tagged attack.t1190 on legacy (default account, criticality unset: medium),
       priority 50: nobody watches T1190 there → listed, unseen, score 50 × 2 = 100
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.coverage.inventory import DEFAULT_ACCOUNT
from bastion.discovery import reference
from bastion.errors import InvalidValue
from bastion.risks import exposures as ex
from bastion.risks import techniques
from bastion.schema.batch import Batch, key_for

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cloud"
KEV = str(FIXTURES / "ctid-kev-small.json")
AWS = key_for("cloud_account", provider="aws", identifier="111")


def populate(tenant) -> dict[str, str]:
    b = Batch()
    b.add("cloud_account", provider="aws", identifier="111", name="prod")
    b.add("cloud_account", provider="other", identifier="default", name="default")
    d1 = b.add("detection", account=AWS, rule_id="waf-exploit", type="cloud_control", health="healthy")
    b.add("mapping", detection=d1, technique="T1190", confidence=1.0, method="analyst")
    d2 = b.add("detection", account=AWS, rule_id="shell-spawn", type="log_query", health="broken")
    b.add("mapping", detection=d2, technique="T1059", confidence=1.0, method="analyst")
    d3 = b.add("detection", account=DEFAULT_ACCOUNT, rule_id="odd-login", type="log_query", health="healthy")
    b.add("mapping", detection=d3, technique="T1078", confidence=0.9, method="analyst")
    web = b.add("asset", identifier="web.example.com", provider="aws", account="111", criticality="critical")
    api = b.add("asset", identifier="api.example.com", account="aws:111", criticality="high")
    legacy = b.add("asset", identifier="legacy.example.com")
    k = {"R1": b.add("risk", target=web, name="cve-2024-34102", cve="CVE-2024-34102", severity="critical",
                     status="open", priority=80),
         "R2": b.add("risk", target=api, name="cve-2021-44228", cve="CVE-2021-44228", severity="critical",
                     status="triage", priority=70),
         "R3": b.add("risk", target=legacy, name="cve-2020-0001", cve="CVE-2020-0001", severity="high",
                     status="open", priority=60),
         "R4": b.add("risk", target=web, name="old-xxe", cve="CVE-2024-34102", severity="critical",
                     status="remediated", reason="other", priority=90),
         "web": web, "api": api, "legacy": legacy}
    b.entities.append(_nuclei_risk(legacy))
    k["R5"] = b.entities[-1].prepared[1]
    tenant.apply(b, actor="tester", source="test")
    return k


def _nuclei_risk(target: str):
    from bastion.schema.batch import Entity, prepare_values
    from bastion.schema.keys import build_key
    from bastion.schema.kinds import REGISTRY

    values = prepare_values(REGISTRY.entity("risk"), {"target": target, "name": "exposed-panel",
                                                      "severity": "medium", "status": "open", "priority": 50})
    return Entity("risk", values, {"tags": ["panel", "attack.t1190"]}, None,
                  (values, build_key(REGISTRY.entity("risk"), values)))


def test_enrich_techniques_resolves_through_the_crosswalk(attack):
    tenant = attack
    k = populate(tenant)
    got = techniques.import_file(tenant, KEV, "tester")
    assert (got.cves, got.risks, got.matched, got.updated, got.unresolved) == (3, 4, 4, 4, [])
    r2 = tenant.get(k["R2"])
    assert r2.properties["techniques"] == [
        {"id": "T1190", "role": "exploitation_technique", "source": "ctid:kev", "attack_version": "16.1"},
        {"id": "T1685", "role": "primary_impact", "source": "ctid:kev", "attack_version": "16.1",
         "mapped_as": "T1562.001"}]
    history = tenant.history(k["R2"])
    assert history[-1].event_type == "risk.updated" and history[-1].source == "enrich:techniques"
    assert tenant.get(k["R2"]).last_seen == r2.last_seen  # knowledge, not a sighting
    again = techniques.import_file(tenant, KEV, "tester")
    assert again.updated == 0
    assert tenant.runs.get(got.run_id).status == "succeeded"


def test_a_cloud_mapping_file_is_refused_with_one_line(attack):
    with pytest.raises(InvalidValue, match="a CTID mappings file for aws, not for kev"):
        techniques.import_file(attack, str(FIXTURES / "ctid-aws-small.json"), "tester")


def test_unwatched_exposures_worked_out_by_hand(attack):
    tenant = attack
    k = populate(tenant)
    techniques.import_file(tenant, KEV, "tester")
    reference.import_reference(tenant, str(FIXTURES / "ctid-aws-small.json"), actor="tester")
    cat = tenant.coverage.catalog("enterprise")
    items = ex.exposures(tenant, cat)
    assert [(e.risk, e.score, e.account, e.criticality, e.unseen) for e in items] == [
        (k["R1"], 320.0, AWS, "critical", False),
        (k["R2"], 210.0, AWS, "high", False),
        (k["R5"], 100.0, DEFAULT_ACCOUNT, "medium", True)]
    r1, r2, r5 = items
    assert {t.id: t.watched for t in r1.techniques} == {"T1005": False, "T1059": False, "T1190": True}
    assert {t.id: (t.watched, t.roles) for t in r2.techniques} == {
        "T1190": (True, ["exploitation_technique"]), "T1685": (False, ["primary_impact"])}
    assert [t.id for t in r5.unwatched] == ["T1190"] and r5.techniques[0].roles == ["tag"]
    # what would cover: an indicator of T1685 itself first, then what covers its sub-techniques
    # (T1685.002: CTID 16.1 T1562.008 through the crosswalk), at most five
    assert r2.unwatched[0].would_cover == [
        "a rule on aws eventName DeleteDetector", "AWS Config (aws, CTID 1)", "Amazon GuardDuty (aws, CTID 0.6)",
        "a rule on aws eventName StopLogging", "a rule on aws eventName DeleteTrail"]
    assert [e.risk for e in ex.exposures(tenant, cat, account=AWS)] == [k["R1"], k["R2"]]
    assert ex.exposed_techniques(items) == [
        {"technique": "T1005", "name": "Data from Local System", "risks": 1, "accounts": [AWS], "top_score": 320.0},
        {"technique": "T1059", "name": "Command and Scripting Interpreter", "risks": 1, "accounts": [AWS],
         "top_score": 320.0},
        {"technique": "T1685", "name": cat.techniques["T1685"].name, "risks": 1, "accounts": [AWS],
         "top_score": 210.0},
        {"technique": "T1190", "name": "Exploit Public-Facing Application", "risks": 1,
         "accounts": [DEFAULT_ACCOUNT], "top_score": 100.0}]


def test_guardduty_reference_names_the_service_that_would_cover(attack):
    tenant = attack
    k = populate(tenant)
    techniques.import_file(tenant, KEV, "tester")
    b = Batch()
    b.add("risk", target=k["web"], name="cve-2020-0001", cve="CVE-2020-0001", severity="high",
          status="open", priority=40)
    tenant.apply(b, actor="tester", source="test")
    techniques.import_file(tenant, KEV, "tester")
    reference.import_reference(tenant, str(FIXTURES / "ctid-aws-small.json"), actor="tester")
    cat = tenant.coverage.catalog("enterprise")
    [hit] = [e for e in ex.exposures(tenant, cat, account=AWS) if e.cve == "CVE-2020-0001"]
    assert hit.unseen and hit.score == 160.0
    assert [t.id for t in hit.techniques] == ["T1078"]  # nothing of aws:111 watches it
    # services mapped to its sub-technique T1078.004 would cover it (roll-up), best score first
    assert hit.techniques[0].would_cover == ["Amazon GuardDuty (aws, CTID 1)", "AWS Security Hub (aws, CTID 0.6)",
                                             "a rule on aws eventName ConsoleLogin"]


def test_cli_enrich_techniques_and_exposures(cli):
    cli("enrich", "techniques", KEV)
    out = cli.json("exposures")
    assert out["exposures"] == [] and out["techniques"] == []
    result = cli("enrich", "techniques", str(FIXTURES / "ctid-aws-small.json"), code=1)
    assert "not for kev" in result.stderr and "Traceback" not in result.stderr


def test_cli_exposures_lists_the_ranked_risks(cli, database_url):
    from bastion.store.store import Store

    with Store(database_url) as store:
        populate(store.tenant("default"))
    cli("enrich", "techniques", KEV)
    out = cli.json("exposures", "--account", "aws:111")
    assert [(e["cve"], e["score"]) for e in out["exposures"]] == [("CVE-2024-34102", 320.0),
                                                                    ("CVE-2021-44228", 210.0)]
    table = cli("exposures", "--by-technique").stdout
    assert "T1005" in table and "T1685" in table
    assert json.loads(cli("exposures", "--json").stdout)["attack"]["version"] == "19"
