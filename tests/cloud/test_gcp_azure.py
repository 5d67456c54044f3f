"""GCP and Azure detections from their own CLI exports (fixtures in fixtures/, shaped as the CLIs
write them): each health state with the broken link named, the mappings, coverage, and drift on a
second import — on both engines.

GCP project acme-prod (gcloud logging metrics list + gcloud alpha monitoring policies list):

    iam-policy-changes  SetIamPolicy            enabled policy with a channel  → healthy   T1098.003
    sa-key-created      CreateServiceAccountKey enabled policy, no channel     → degraded  T1098.001
    firewall-changes    compute.firewalls.*     only a disabled policy         → broken    T1686.001
    sink-deleted        DeleteSink              no policy                      → broken    T1685.002
    project-ssh-keys    setCommonInstanceMeta…  metric disabled (MQL policy)   → broken    T1098.004
    Secret accessed     log-match policy        enabled with a channel         → healthy   T1555.006
    High CPU            a CPU threshold policy: a link, not a detection

Azure subscription (az monitor activity-log alert list + az sentinel alert-rule list):

    role-assignment-created   action group             → healthy   T1098.003 (indicator)
    nsg-rule-changed          no action group          → degraded  T1686.001 (indicator)
    diagnostic-setting-deleted disabled                → broken    T1685.002 (indicator)
    service-health            action group             → healthy   no technique
    Sentinel "New access credential…"  enabled         → healthy   T1098 (its own, tag)
    Sentinel "Mass secret retrieval…"  disabled        → broken    T1555 (its own)
    Sentinel "Rare subscription-level…" no incidents   → degraded  T1098.003 (indicator of its query)
    Sentinel Fusion                     enabled        → healthy   no technique (tactics only)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.coverage.compute import compute
from bastion.coverage.detections import add_account
from bastion.coverage.history import drift
from bastion.coverage.importers import detect
from bastion.coverage.inventory import Options, account_key, import_detections

FIXTURES = Path(__file__).parent / "fixtures"
METRICS = FIXTURES / "gcp-logging-metrics.json"
POLICIES = FIXTURES / "gcp-alert-policies.json"
ALERTS = FIXTURES / "az-activity-log-alerts.json"
RULES = FIXTURES / "az-sentinel-alert-rules.json"
ARM = FIXTURES / "sentinel-export-arm.json"
GCP = "gcp:acme-prod"
AZURE = "azure:5f1c2a7e-9b3d-4c8e-a2f1-0d6b7e3c9a41"


@pytest.fixture
def gcp(attack):
    add_account(attack, actor="tester", provider="gcp", identifier="acme-prod", platforms=["IaaS"])
    return attack


@pytest.fixture
def azure(attack):
    add_account(attack, actor="tester", provider="azure", identifier=AZURE.split(":")[1],
                platforms=["IaaS", "Identity Provider"])
    return attack


def run(tenant, account, *paths, **kw):
    return import_detections(tenant, [str(p) for p in paths], Options(actor="tester", account=account, **kw),
                             catalog=tenant.coverage.catalog("enterprise"))


def state(tenant, account) -> dict[str, tuple]:
    """detection name → (type, service, status, health, issues)."""
    recs = tenant.list("detection", where={"account": account_key(account)}, limit=1000).records
    return {r.values["name"]: (r.values["type"], r.values["service"], r.values["status"], r.values["health"],
                               r.values["health_issues"]) for r in recs}


def mapped(tenant, account) -> dict[str, dict[str, tuple]]:
    """detection name → technique → (confidence, method, mapped_by)."""
    recs = tenant.list("detection", where={"account": account_key(account)}, limit=1000).records
    names = {r.key: r.values["name"] for r in recs}
    out: dict[str, dict[str, tuple]] = {}
    for m in tenant.list("mapping", limit=1000).records:
        v = m.values
        if v["detection"] in names:
            out.setdefault(names[v["detection"]], {})[v["technique"]] = (v["confidence"], v["method"], v["mapped_by"])
    return out


def test_formats_are_recognised_from_their_content():
    for path, name in ((METRICS, "gcp_metrics"), (POLICIES, "gcp_policies"), (ALERTS, "azure_alerts"),
                       (RULES, "sentinel"), (ARM, "sentinel")):
        assert detect(path.name, path.read_bytes()[:4096]).NAME == name, path.name


def test_gcp_metric_chain_each_health_state_with_the_link_named(gcp):
    res = run(gcp, GCP, METRICS, POLICIES)
    assert res.status == "succeeded"
    assert sorted(res.snapshots) == ["gcp:alert-policies", "gcp:logging-metrics"]
    assert any("5 alert policies without a log-match condition" in n for f in res.files for n in f.notes)
    user = "logging.googleapis.com/user/"
    assert state(gcp, GCP) == {
        "iam-policy-changes": ("metric_alarm", "logging", "enabled", "healthy", None),
        "sa-key-created": ("metric_alarm", "logging", "enabled", "degraded", [
            "notification: alert policy Service account key created has no notification channel "
            "(an incident opens, nobody is notified)"]),
        "firewall-changes": ("metric_alarm", "logging", "enabled", "broken", [
            f"alert: alert policy Firewall rule changed using metric {user}firewall-changes is disabled"]),
        "sink-deleted": ("metric_alarm", "logging", "enabled", "broken", [
            f"alert: no alert policy uses metric {user}sink-deleted"]),
        "project-ssh-keys": ("metric_alarm", "logging", "disabled", "broken", [
            "metric: log-based metric is disabled"]),
        "Secret accessed": ("log_query", "monitoring", "enabled", "healthy", None),
    }
    ind = (0.7, "pattern", "bastion:indicators")
    assert mapped(gcp, GCP) == {
        "iam-policy-changes": {"T1098.003": ind}, "sa-key-created": {"T1098.001": ind},
        "firewall-changes": {"T1686.001": ind}, "sink-deleted": {"T1685.002": ind},
        "project-ssh-keys": {"T1098.004": ind}, "Secret accessed": {"T1555.006": ind}}
    rec = gcp.get(account_key(GCP))
    assert rec is not None
    det = {r.values["name"]: r for r in gcp.list("detection", limit=100).records}
    assert det["iam-policy-changes"].values["rule_id"] == f"{user}iam-policy-changes"
    assert "createTime" not in json.loads(det["iam-policy-changes"].values["raw"])  # volatile fields out


def test_gcp_metrics_without_their_policies_are_unknown(gcp):
    run(gcp, GCP, METRICS)
    got = state(gcp, GCP)
    assert got["iam-policy-changes"][3:] == ("unknown", [
        "alert: no alert policies in this import (gcloud alpha monitoring policies list --format=json): "
        "the chain cannot be checked"])
    assert got["project-ssh-keys"][3] == "broken"  # a disabled metric is broken whatever the policies


def test_azure_activity_log_alerts_and_sentinel_rules(azure):
    res = run(azure, AZURE, ALERTS, RULES)
    assert res.status == "succeeded"
    assert sorted(res.snapshots) == ["azure:activity-log-alerts", "azure:sentinel"]
    assert state(azure, AZURE) == {
        "role-assignment-created": ("event_pattern", "activitylog", "enabled", "healthy", None),
        "nsg-rule-changed": ("event_pattern", "activitylog", "enabled", "degraded", [
            "action: no action group (the alert fires in Azure Monitor, nobody is notified)"]),
        "diagnostic-setting-deleted": ("event_pattern", "activitylog", "disabled", "broken", [
            "alert: activity log alert is disabled"]),
        "service-health": ("event_pattern", "activitylog", "enabled", "healthy", None),
        "New access credential added to application": ("log_query", "sentinel", "enabled", "healthy", None),
        "Mass secret retrieval from Key Vault": ("log_query", "sentinel", "disabled", "broken", [
            "rule: analytic rule is disabled"]),
        "Rare subscription-level operations": ("log_query", "sentinel", "enabled", "degraded", [
            "incident: creates alerts but no incidents (createIncident is false)"]),
        "Advanced Multistage Attack Detection": ("cloud_control", "sentinel", "enabled", "healthy", None),
    }
    ind = (0.7, "pattern", "bastion:indicators")
    declared = (1.0, "tag", "import:sentinel")
    assert mapped(azure, AZURE) == {
        "role-assignment-created": {"T1098.003": ind}, "nsg-rule-changed": {"T1686.001": ind},
        "diagnostic-setting-deleted": {"T1685.002": ind},
        "New access credential added to application": {"T1098": declared},
        "Mass secret retrieval from Key Vault": {"T1555": declared},
        "Rare subscription-level operations": {"T1098.003": ind}}
    recs = {r.values["name"]: r.values for r in azure.list("detection", limit=100).records}
    rule = recs["New access credential added to application"]
    assert rule["rule_id"] == "6b8a4c11-2f0e-4d57-9a3b-1c7d5e2f8a90" and rule["level"] == "high"
    assert rule["rule_tags"] == ["Persistence", "PrivilegeEscalation", "T1098"]


def test_coverage_counts_what_can_fire(gcp):
    run(gcp, GCP, METRICS, POLICIES)
    cov = compute(gcp, gcp.coverage.catalog("enterprise"), account=GCP)
    covered = cov.covered()
    # healthy: the IAM policy metric and the secret log-match policy (sub-techniques roll up)
    assert {"T1098.003", "T1098", "T1555.006", "T1555"} <= covered
    # broken: firewall, sink, SSH keys never count
    assert not covered & {"T1686.001", "T1685.002", "T1098.004"}


def test_second_import_gives_the_drift(azure):
    first = run(azure, AZURE, ALERTS, RULES)
    alerts = json.loads(ALERTS.read_text())
    alerts[1]["actions"]["actionGroups"] = alerts[0]["actions"]["actionGroups"]  # nsg: now notifies
    alerts[2]["enabled"] = True  # diagnostic-setting-deleted: switched on
    del alerts[3]  # service-health: deleted
    alerts.append({**alerts[0], "name": "keyvault-deleted",
                   "id": alerts[0]["id"].rsplit("/", 1)[0] + "/keyvault-deleted",
                   "condition": {"allOf": [{"equals": "Administrative", "field": "category"},
                                           {"equals": "Microsoft.KeyVault/vaults/delete", "field": "operationName"}]}})
    changed = ALERTS.parent.parent / "changed-alerts.json"
    try:
        changed.write_text(json.dumps(alerts))
        second = run(azure, AZURE, changed)
    finally:
        changed.unlink()
    assert second.removed == 1
    assert first.snapshots["azure:activity-log-alerts"] < second.snapshots["azure:activity-log-alerts"]
    d = drift(azure, AZURE, catalog=azure.coverage.catalog("enterprise"))
    assert d["source"] == "azure:activity-log-alerts"
    tail = lambda key: key.rsplit("/", 1)[-1]  # noqa: E731 (a detection key ends with the alert's name)
    ch = d["changes"]
    assert [tail(c["key"]) for c in ch["added"]] == ["keyvault-deleted"]
    assert [tail(c["key"]) for c in ch["removed"]] == ["service-health"]
    assert sorted(tail(c["key"]) for c in ch["modified"]) == ["diagnostic-setting-deleted", "nsg-rule-changed"]
    assert [tail(c["key"]) for c in ch["enabled"]] == ["diagnostic-setting-deleted"]
    health = {tail(c["key"]): (c["from"], c["to"]) for c in ch["health"]}
    assert health == {"nsg-rule-changed": ("degraded", "healthy"), "diagnostic-setting-deleted": ("broken", "healthy")}
    assert mapped(azure, AZURE)["keyvault-deleted"] == {"T1485": (0.7, "pattern", "bastion:indicators")}
    # the same export again changes nothing
    seq = azure.events(limit=100000)[-1].seq
    changed.write_text(json.dumps(alerts))
    try:
        third = run(azure, AZURE, changed)
    finally:
        changed.unlink()
    assert third.totals()["unchanged"] == third.totals()["detections"] == 4
    assert [e for e in azure.events(after_seq=seq, limit=1000) if e.entity_kind in ("detection", "mapping")] == []


def test_arm_export_states_sub_techniques(azure):
    run(azure, AZURE, ARM)
    assert mapped(azure, AZURE) == {"New access credential added to application": {
        "T1098": (1.0, "tag", "import:sentinel"), "T1098.001": (1.0, "tag", "import:sentinel")}}


def test_an_export_for_another_cloud_is_refused(gcp):
    res = run(gcp, GCP, ALERTS)
    assert res.status == "failed" and state(gcp, GCP) == {}
    assert res.files[0].problems == [
        f"{ALERTS}: a Azure activity log alerts file for azure (format: az monitor activity-log alert "
        "list), not for gcp account #cloud_account#gcp#acme-prod; import it into an account of provider azure"]
    res = run(gcp, GCP, ALERTS, skip_invalid=True)
    assert res.files[0].status == "ignored"
    assert "for azure" in res.files[0].problems[0]


def test_a_bad_item_names_the_file_item_and_reason(gcp, tmp_path):
    bad = tmp_path / "metrics.json"
    items = json.loads(METRICS.read_text())
    del items[1]["filter"]
    bad.write_text(json.dumps(items))
    assert run(gcp, GCP, bad).files[0].problems == [f"{bad}: metric sa-key-created: filter is missing"]
    res = run(gcp, GCP, bad, POLICIES, skip_invalid=True)
    assert res.files[0].problems == [f"{bad}: metric sa-key-created: filter is missing"]
    assert "sa-key-created" not in state(gcp, GCP)


def test_cli_imports_gcp_exports(cli, gcp, tmp_path):
    out = cli("detections", "import", str(METRICS), str(POLICIES), "--account", GCP, "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["totals"]["detections"] == 6
    assert {f["format"] for f in doc["files"]} == {"gcp_metrics", "gcp_policies"}
