"""`bastion discover aws` against moto: every health state of the chain, the mappings, coverage,
drift after a second discovery, a part that fails, throttling retried; Security Hub and GuardDuty
features through botocore's Stubber (moto lacks those APIs)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from aws_account import ACCOUNT, REGION, SNS, api_pattern, build
from cli_harness import one_error_line

from bastion.coverage.compute import compute
from bastion.coverage.history import drift
from bastion.coverage.inventory import account_key
from bastion.discovery import aws, guardduty, reference, securityhub
from bastion.discovery.aws import Clients, Collected

CTID = str(Path(__file__).parent.parent / "fixtures" / "cloud" / "ctid-aws-small.json")
KEY = account_key(f"aws:{ACCOUNT}")


def by_name(tenant) -> dict[str, dict]:
    return {r.values["name"]: r.values for r in tenant.list("detection", limit=1000).records}


def mappings(tenant) -> dict[str, dict[str, tuple]]:
    """detection name → technique → (confidence, method, mapped_by)."""
    names = {r.key: r.values["name"] for r in tenant.list("detection", limit=1000).records}
    out: dict[str, dict[str, tuple]] = {}
    for m in tenant.list("mapping", limit=1000).records:
        v = m.values
        out.setdefault(names[v["detection"]], {})[v["technique"]] = (v["confidence"], v["method"], v["mapped_by"])
    return out


@pytest.fixture
def moto_account(aws_env):
    with mock_aws():
        build()
        yield


def discover(tenant, **kw):
    return aws.discover(tenant, account=f"aws:{ACCOUNT}", actor="tester", **kw)


GD = f"GuardDuty {REGION}"
RECORDER = f"Config recorder default ({REGION})"


def test_every_health_state_with_the_broken_link_named(attack, moto_account):
    tenant = attack
    reference.import_reference(tenant, CTID, actor="tester")
    out = discover(tenant)
    assert out.status == "succeeded" and out.failed == {}
    got = {n: (v["type"], v["service"], v["status"], v["health"], v["health_issues"])
           for n, v in by_name(tenant).items()}
    assert got == {
        "main-trail": ("cloud_control", "cloudtrail", "enabled", "healthy", None),
        "stopped-trail": ("cloud_control", "cloudtrail", "disabled", "broken", [
            "logging: trail is not logging (stopped)",
            "regions: single-region trail (us-east-1): other regions are not logged"]),
        "stop-logging": ("metric_alarm", "cloudwatch", "enabled", "healthy", None),
        "console-login": ("metric_alarm", "cloudwatch", "enabled", "broken", [
            "action: actions are disabled on alarm console-login-alarm"]),
        "create-user": ("metric_alarm", "cloudwatch", "enabled", "broken", [
            "alarm: no alarm on metric CIS/create-user"]),
        "delete-trail": ("metric_alarm", "cloudwatch", "enabled", "broken", [
            "trail: no trail delivers to log group orphan-logs (us-east-1)"]),
        "access-key": ("metric_alarm", "cloudwatch", "enabled", "broken", [
            "trail: trail stopped-trail delivering to stopped-logs is not logging (stopped)"]),
        "cpu-high": ("metric_alarm", "cloudwatch", "enabled", "broken", [
            "action: alarm cpu-high has no alarm action (nobody is notified)"]),
        "new-access-key": ("event_pattern", "eventbridge", "enabled", "healthy", None),
        "trail-deleted": ("event_pattern", "eventbridge", "disabled", "broken", [
            "rule: rule is disabled (State DISABLED)"]),
        "new-user": ("event_pattern", "eventbridge", "enabled", "broken", ["target: rule has no target"]),
        GD: ("cloud_control", "guardduty", "enabled", "healthy", None),
        RECORDER: ("cloud_control", "config", "disabled", "broken", [
            "recorder: configuration recorder default is not recording"]),
        "cloudtrail-enabled": ("cloud_control", "config", "enabled", "broken", [
            "recorder: configuration recorder default is not recording"]),
    }  # the scheduled rule `nightly` is no detection; Security Hub is not subscribed
    assert out.health == {"broken": 10, "healthy": 4}
    # user rules through the indicators (CTID 16.1 ids through the crosswalk to ATT&CK 19)
    m = mappings(tenant)
    assert m["stop-logging"] == {"T1685.002": (0.7, "pattern", "bastion:indicators")}
    assert m["new-access-key"] == {"T1098.001": (0.7, "pattern", "bastion:indicators")}
    assert m["create-user"] == m["new-user"] == {"T1136.003": (0.7, "pattern", "bastion:indicators")}
    assert m[GD] == {"T1078.004": (1.0, "vendor", "ctid:aws"), "T1685.002": (0.6, "vendor", "ctid:aws"),
                     "T1110": (0.3, "vendor", "ctid:aws")}
    assert m["main-trail"] == {"T1530": (0.6, "vendor", "ctid:aws")}
    assert "cpu-high" not in m and "cloudtrail-enabled" not in m
    # coverage counts what can fire: not the broken CreateUser detections, not a minimal score
    cat = tenant.coverage.catalog("enterprise")
    covered = compute(tenant, cat, account=KEY).covered()
    assert {"T1685.002", "T1098.001", "T1078.004", "T1530"} <= covered
    assert not {"T1136.003", "T1136", "T1110"} & covered
    # one call per list operation and region, the trail read once
    assert out.calls["logs:DescribeMetricFilters"] == 1
    assert out.calls["cloudtrail:GetTrailStatus"] == 2  # two trails
    assert out.calls["events:ListTargetsByRule"] == 3  # the rules with a pattern


def test_second_discovery_gives_the_drift(attack, moto_account):
    tenant = attack
    reference.import_reference(tenant, CTID, actor="tester")
    first = discover(tenant)
    boto3.client("cloudtrail", region_name=REGION).start_logging(Name="stopped-trail")
    boto3.client("cloudwatch", region_name=REGION).put_metric_alarm(
        AlarmName="console-login-alarm", MetricName="console-login", Namespace="CIS", Statistic="Sum",
        Period=300, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        ActionsEnabled=True, AlarmActions=[SNS])
    ev = boto3.client("events", region_name=REGION)
    ev.delete_rule(Name="new-user")
    ev.put_rule(Name="root-login", EventPattern=api_pattern("aws.signin", "ConsoleLogin"), State="ENABLED")
    ev.put_targets(Rule="root-login", Targets=[{"Id": "sns", "Arn": SNS}])
    gd = boto3.client("guardduty", region_name=REGION)
    gd.update_detector(DetectorId=gd.list_detectors()["DetectorIds"][0], Enable=False)
    second = discover(tenant)
    assert second.result.removed == 1
    d = drift(tenant, KEY, catalog=tenant.coverage.catalog("enterprise"))
    assert d["source"] == "discovery:aws"
    names = {r.key: r.values["name"] for r in tenant.list("detection", limit=1000).records}
    name = lambda k: names.get(k, k.rsplit("/", 1)[-1])  # noqa: E731 (removed ones by their ARN)
    ch = d["changes"]
    assert [name(c["key"]) for c in ch["added"]] == ["root-login"]
    assert [name(c["key"]) for c in ch["removed"]] == ["new-user"]
    assert sorted(name(c["key"]) for c in ch["modified"]) == sorted([GD, "console-login"])
    assert [name(c["key"]) for c in ch["enabled"]] == ["stopped-trail"]
    assert [name(c["key"]) for c in ch["disabled"]] == [GD]
    assert {name(c["key"]): (c["from"], c["to"]) for c in ch["health"]} == {
        "stopped-trail": ("broken", "degraded"), "access-key": ("broken", "degraded"),
        "console-login": ("broken", "healthy"), GD: ("healthy", "broken")}
    after = by_name(tenant)
    assert after["access-key"]["health_issues"] == [
        "trail: only single-region trail(s) deliver to stopped-logs: API calls in other regions are not seen"]
    assert after["stopped-trail"]["revision"] == 1 and after["console-login"]["revision"] == 2
    # the same account again: nothing changes, no event
    seq = tenant.events(limit=100000)[-1].seq
    third = discover(tenant)
    assert third.result.totals()["unchanged"] == third.result.totals()["detections"]
    assert [e for e in tenant.events(after_seq=seq, limit=1000) if e.entity_kind in ("detection", "mapping")] == []
    assert first.result.snapshots["discovery:aws"] < second.result.snapshots["discovery:aws"]


def _deny(operation: str):
    def handler(**_):
        return AWSResponse("https://x", 403, {}, None), {
            "Error": {"Code": "AccessDeniedException", "Message": f"not allowed to {operation}"}}
    return handler


def test_a_failing_service_is_partial_and_keeps_its_detections(attack, moto_account):
    tenant = attack
    discover(tenant)
    boto3.client("events", region_name=REGION).delete_rule(Name="new-user")
    session = boto3.Session()
    session.events.register("before-call.guardduty.ListDetectors", _deny("ListDetectors"))
    gd = boto3.client("guardduty", region_name=REGION)
    gd.delete_detector(DetectorId=gd.list_detectors()["DetectorIds"][0])
    out = discover(tenant, session=session)
    assert out.status == "partial"
    assert out.failed == {f"aws:{ACCOUNT}/{REGION}/guardduty":
                          "ListDetectors: AccessDeniedException: not allowed to ListDetectors"}
    now = by_name(tenant)
    assert GD in now and "new-user" not in now  # kept: not known; removed: known gone
    run = tenant.runs.get(out.result.run_id)
    assert run.status == "partial"
    assert any("AccessDeniedException" in e for e in run.errors)
    snap = tenant.coverage.detection_snapshots(account=KEY, with_detections=True)[-1]
    kept = next(r.key for r in tenant.list("detection", limit=100).records if r.values["name"] == GD)
    assert [k for k in snap["detections"] if ":guardduty:" in k] == [kept]


def test_throttling_is_retried_with_backoff(attack, moto_account):
    tenant = attack
    session = boto3.Session()
    throttled = []

    def throttle(request=None, **_):
        if "DescribeMetricFilters" in str(request.headers.get("X-Amz-Target")) and len(throttled) < 2:
            throttled.append(1)
            return AWSResponse(request.url, 400, {"x-amzn-RequestId": "t"},
                               _Raw(b'{"__type":"ThrottlingException","message":"Rate exceeded"}'))
        return None

    session.events.register("before-send.cloudwatch-logs", throttle)
    out = discover(tenant, session=session)
    assert len(throttled) == 2 and out.failed == {}
    assert out.calls["logs:DescribeMetricFilters"] == 1
    assert out.requests == sum(out.calls.values()) + 2
    assert "stop-logging" in by_name(tenant)


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def test_credentials_of_another_account_are_refused(cli, aws_env):
    with mock_aws():
        result = cli("discover", "aws", "--account", "aws:999999999999", code=1)
    line = one_error_line(result)
    assert "credentials are for account 123456789012, not 999999999999" in line


def test_cli_discovery_json_and_reference(cli, aws_env):
    got = cli.json("discover", "reference", CTID)
    assert got == {"framework": "aws", "attack_version": "16.1", "capabilities": 4, "mappings": 6,
                   "changed": True}
    with mock_aws():
        build()
        result = cli("discover", "aws", "--account", f"aws:{ACCOUNT}", "--region", REGION, "--json")
    out = json.loads(result.stdout)
    assert out["status"] == "succeeded" and out["regions"] == [REGION]
    assert out["health"] == {"broken": 10, "healthy": 4}
    assert out["totals"]["detections"] == 14 and out["api_calls"] == sum(out["calls"].values())
    listed = cli.json("detections", "list", "--account", f"aws:{ACCOUNT}")
    assert len(listed) == 14


# -- Stubber: what moto does not implement ---------------------------------------------------------


def stubbed(service: str):
    from botocore.stub import Stubber

    client = boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def clients_with(*pairs) -> Clients:
    clients = Clients(boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=REGION))
    for service, client in pairs:
        clients._clients[(service, REGION)] = client
    return clients


def test_security_hub_standards_and_disabled_controls(aws_env):
    client, stub = stubbed("securityhub")
    sub_arn = f"arn:aws:securityhub:{REGION}:{ACCOUNT}:subscription/cis-aws-foundations-benchmark/v/1.4.0"
    std_arn = f"arn:aws:securityhub:{REGION}::standards/cis-aws-foundations-benchmark/v/1.4.0"
    fsbp_sub = f"arn:aws:securityhub:{REGION}:{ACCOUNT}:subscription/aws-foundational-security-best-practices/v/1.0.0"
    fsbp_std = f"arn:aws:securityhub:{REGION}::standards/aws-foundational-security-best-practices/v/1.0.0"
    stub.add_response("describe_hub", {"HubArn": f"arn:aws:securityhub:{REGION}:{ACCOUNT}:hub/default",
                                       "SubscribedAt": "2024-01-01T00:00:00.000Z", "AutoEnableControls": True,
                                       "ControlFindingGenerator": "SECURITY_CONTROL"})
    stub.add_response("get_enabled_standards", {"StandardsSubscriptions": [
        {"StandardsSubscriptionArn": sub_arn, "StandardsArn": std_arn, "StandardsInput": {},
         "StandardsStatus": "READY"},
        {"StandardsSubscriptionArn": fsbp_sub, "StandardsArn": fsbp_std, "StandardsInput": {},
         "StandardsStatus": "INCOMPLETE"}]})
    stub.add_response("describe_standards_controls", {"Controls": [
        {"StandardsControlArn": f"{sub_arn}/1.1", "ControlStatus": "ENABLED", "ControlId": "CIS.1.1"},
        {"StandardsControlArn": f"{sub_arn}/1.14", "ControlStatus": "DISABLED", "ControlId": "CIS.1.14",
         "DisabledReason": "hardware MFA not used"}]},
        {"StandardsSubscriptionArn": sub_arn})
    collected = Collected(ACCOUNT, [REGION])
    with stub:
        securityhub.collect(clients_with(("securityhub", client)), REGION, collected)
        stub.assert_no_pending_responses()
    ref = {"names": {}, "capabilities": {"aws_security_hub": [["T1078.004", 0.6, "CIS controls", "16.1"]]}}
    [(service, region, p)] = list(securityhub.detections(collected, ref))
    assert (service, region, p.type, p.service, p.health) == ("securityhub", REGION, "cloud_control",
                                                               "securityhub", "degraded")
    assert p.health_issues == [f"standards: standard {fsbp_std} is incomplete"]
    assert json.loads(p.raw)["Standards"][1]["DisabledControls"] == ["CIS.1.14"]
    assert [(m.technique, m.confidence, m.mapped_by) for m in p.mappings] == [("T1078.004", 0.6, "ctid:aws")]


def test_guardduty_features_off_degrade_the_detector(aws_env):
    client, stub = stubbed("guardduty")
    stub.add_response("list_detectors", {"DetectorIds": ["12abc34d567e8fa901bc2d34e56789f0"]})
    stub.add_response("get_detector", {
        "CreatedAt": "2024-01-01T00:00:00.000Z", "FindingPublishingFrequency": "SIX_HOURS",
        "ServiceRole": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/guardduty.amazonaws.com/AWSServiceRoleForAmazonGuardDuty",
        "Status": "ENABLED", "UpdatedAt": "2024-01-02T00:00:00.000Z", "Tags": {},
        "Features": [
            {"Name": "CLOUD_TRAIL", "Status": "ENABLED", "UpdatedAt": "2024-01-02T00:00:00Z"},
            {"Name": "S3_DATA_EVENTS", "Status": "DISABLED", "UpdatedAt": "2024-01-02T00:00:00Z"},
            {"Name": "RUNTIME_MONITORING", "Status": "DISABLED", "UpdatedAt": "2024-01-02T00:00:00Z",
             "AdditionalConfiguration": [{"Name": "EKS_ADDON_MANAGEMENT", "Status": "DISABLED"}]}]},
        {"DetectorId": "12abc34d567e8fa901bc2d34e56789f0"})
    collected = Collected(ACCOUNT, [REGION])
    with stub:
        guardduty.collect(clients_with(("guardduty", client)), REGION, collected)
    [(_, _, p)] = list(guardduty.detections(collected, None))
    assert (p.status, p.health, p.health_issues) == (
        "enabled", "degraded", ["features: protection feature(s) off: RUNTIME_MONITORING, S3_DATA_EVENTS"])
    assert p.rule_id == f"arn:aws:guardduty:{REGION}:{ACCOUNT}:detector/12abc34d567e8fa901bc2d34e56789f0"
    assert p.mappings == []  # no CTID reference imported
