"""A moto AWS account with one of each health state the discovery must tell apart."""

from __future__ import annotations

import json

import boto3

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
SNS = f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts"


def group_arn(name: str) -> str:
    return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"


def api_pattern(source: str, *events: str) -> str:
    return json.dumps({"source": [source], "detail-type": ["AWS API Call via CloudTrail"],
                       "detail": {"eventName": list(events)}})


def filter_with_alarm(logs, cw, group: str, name: str, event: str, *, alarm: str | None,
                      actions_enabled: bool = True, actions: bool = True) -> None:
    logs.put_metric_filter(logGroupName=group, filterName=name,
                           filterPattern=f"{{ ($.eventName = {event}) }}",
                           metricTransformations=[{"metricName": name, "metricNamespace": "CIS",
                                                   "metricValue": "1"}])
    if alarm:
        cw.put_metric_alarm(AlarmName=alarm, MetricName=name, Namespace="CIS", Statistic="Sum",
                            Period=300, EvaluationPeriods=1, Threshold=1,
                            ComparisonOperator="GreaterThanOrEqualToThreshold",
                            ActionsEnabled=actions_enabled, AlarmActions=[SNS] if actions else [])


def build() -> None:
    """The account: call inside mock_aws()."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="trail-bucket")
    logs = boto3.client("logs", region_name=REGION)
    for g in ("trail-logs", "orphan-logs", "stopped-logs"):
        logs.create_log_group(logGroupName=g)
    ct = boto3.client("cloudtrail", region_name=REGION)
    ct.create_trail(Name="main-trail", S3BucketName="trail-bucket", IsMultiRegionTrail=True,
                    CloudWatchLogsLogGroupArn=group_arn("trail-logs"),
                    CloudWatchLogsRoleArn=f"arn:aws:iam::{ACCOUNT}:role/trail")
    ct.start_logging(Name="main-trail")
    ct.create_trail(Name="stopped-trail", S3BucketName="trail-bucket",
                    CloudWatchLogsLogGroupArn=group_arn("stopped-logs"),
                    CloudWatchLogsRoleArn=f"arn:aws:iam::{ACCOUNT}:role/trail")
    cw = boto3.client("cloudwatch", region_name=REGION)
    filter_with_alarm(logs, cw, "trail-logs", "stop-logging", "StopLogging", alarm="stop-logging-alarm")
    filter_with_alarm(logs, cw, "trail-logs", "console-login", "ConsoleLogin", alarm="console-login-alarm",
                      actions_enabled=False)
    filter_with_alarm(logs, cw, "trail-logs", "create-user", "CreateUser", alarm=None)
    filter_with_alarm(logs, cw, "orphan-logs", "delete-trail", "DeleteTrail", alarm="delete-trail-alarm")
    filter_with_alarm(logs, cw, "stopped-logs", "access-key", "CreateAccessKey", alarm="access-key-alarm")
    cw.put_metric_alarm(AlarmName="cpu-high", MetricName="CPUUtilization", Namespace="AWS/EC2",
                        Statistic="Average", Period=300, EvaluationPeriods=1, Threshold=90,
                        ComparisonOperator="GreaterThanThreshold", ActionsEnabled=True)
    ev = boto3.client("events", region_name=REGION)
    ev.put_rule(Name="new-access-key", EventPattern=api_pattern("aws.iam", "CreateAccessKey"), State="ENABLED")
    ev.put_targets(Rule="new-access-key", Targets=[{"Id": "sns", "Arn": SNS}])
    ev.put_rule(Name="trail-deleted", EventPattern=api_pattern("aws.cloudtrail", "DeleteTrail"), State="DISABLED")
    ev.put_targets(Rule="trail-deleted", Targets=[{"Id": "sns", "Arn": SNS}])
    ev.put_rule(Name="new-user", EventPattern=api_pattern("aws.iam", "CreateUser"), State="ENABLED")
    ev.put_rule(Name="nightly", ScheduleExpression="rate(1 day)", State="ENABLED")
    boto3.client("guardduty", region_name=REGION).create_detector(Enable=True)
    cfg = boto3.client("config", region_name=REGION)
    cfg.put_configuration_recorder(ConfigurationRecorder={
        "name": "default", "roleARN": f"arn:aws:iam::{ACCOUNT}:role/config",
        "recordingGroup": {"allSupported": True, "includeGlobalResourceTypes": True}})
    cfg.put_config_rule(ConfigRule={"ConfigRuleName": "cloudtrail-enabled",
                                    "Source": {"Owner": "AWS", "SourceIdentifier": "CLOUD_TRAIL_ENABLED"}})
