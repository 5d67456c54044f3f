#!/usr/bin/env python
"""AWS discovery benchmark on moto (in-process `mock_aws`): one account with `--log-groups`
log groups (default 10,000), `--filters` metric filters (5,000) each with an alarm on its metric
(`--alarms`, 5,000), `--rules` EventBridge rules with a target (1,000), two trails.

Measured: the wall time of `bastion.discovery.aws.discover` (reading through boto3 + writing the
snapshot through the detections importer), the API calls and HTTP requests it made, its peak
resident memory (the process's peak RSS after it, and how much it grew: moto's account lives
in the same process), the snapshot's totals; a second discovery of the unchanged account
(nothing to write); then the coverage recompute of the account (`compute`). Floor, measured in the
same run: the same list calls made with plain boto3 and nothing else (what reading the account
costs at the least); the ratio discovery ÷ floor is printed.

    python bench/discover_aws.py [--log-groups 10000] [--filters 5000] [--alarms 5000]
                                 [--rules 1000] [--db URL]

--db: a database URL (default: a fresh SQLite file in a temporary directory). Figures go to
docs/performance.md (AWS discovery).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import resource
from pathlib import Path

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from bastion.coverage.attack import ensure_default_catalog  # noqa: E402
from bastion.coverage.compute import compute  # noqa: E402
from bastion.discovery import aws  # noqa: E402
from bastion.store.store import Store  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"
SNS = f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts"
EVENTS = ("StopLogging", "DeleteTrail", "ConsoleLogin", "CreateAccessKey", "CreateUser", "AttachUserPolicy",
          "GetSecretValue", "SendCommand", "PutEventSelectors", "DeleteFlowLogs")


def build(groups: int, filters: int, alarms: int, rules: int) -> float:
    t0 = time.perf_counter()
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="trail-bucket")
    logs = boto3.client("logs", region_name=REGION)
    for i in range(groups):
        logs.create_log_group(logGroupName=f"/app/group-{i:06d}")
    ct = boto3.client("cloudtrail", region_name=REGION)
    for name, group in (("org-trail", "/app/group-000000"), ("app-trail", "/app/group-000001")):
        ct.create_trail(Name=name, S3BucketName="trail-bucket", IsMultiRegionTrail=True,
                        CloudWatchLogsLogGroupArn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*",
                        CloudWatchLogsRoleArn=f"arn:aws:iam::{ACCOUNT}:role/trail")
        ct.start_logging(Name=name)
    cw = boto3.client("cloudwatch", region_name=REGION)
    for i in range(filters):
        event = EVENTS[i % len(EVENTS)]
        logs.put_metric_filter(logGroupName=f"/app/group-{i % groups:06d}", filterName=f"f-{i:06d}",
                               filterPattern=f"{{ ($.eventName = {event}) && ($.n = {i}) }}",
                               metricTransformations=[{"metricName": f"m-{i:06d}", "metricNamespace": "Bench",
                                                       "metricValue": "1"}])
    for i in range(alarms):
        cw.put_metric_alarm(AlarmName=f"a-{i:06d}", MetricName=f"m-{i:06d}", Namespace="Bench", Statistic="Sum",
                            Period=300, EvaluationPeriods=1, Threshold=1,
                            ComparisonOperator="GreaterThanOrEqualToThreshold", ActionsEnabled=True,
                            AlarmActions=[SNS])
    ev = boto3.client("events", region_name=REGION)
    for i in range(rules):
        pattern = {"source": ["aws.iam"], "detail-type": ["AWS API Call via CloudTrail"],
                   "detail": {"eventName": [EVENTS[i % len(EVENTS)]], "n": [i]}}
        ev.put_rule(Name=f"r-{i:05d}", EventPattern=json.dumps(pattern), State="ENABLED")
        ev.put_targets(Rule=f"r-{i:05d}", Targets=[{"Id": "sns", "Arn": SNS}])
    boto3.client("guardduty", region_name=REGION).create_detector(Enable=True)
    return time.perf_counter() - t0


def floor() -> tuple[float, int]:
    """The same reads with plain boto3: metric filters, alarms, rules and their targets, trails."""
    t0 = time.perf_counter()
    calls = 0
    logs, cw = boto3.client("logs", region_name=REGION), boto3.client("cloudwatch", region_name=REGION)
    ev, ct = boto3.client("events", region_name=REGION), boto3.client("cloudtrail", region_name=REGION)
    for page in logs.get_paginator("describe_metric_filters").paginate():
        calls += 1
    for page in cw.get_paginator("describe_alarms").paginate():
        calls += 1
    for page in ev.get_paginator("list_rules").paginate():
        calls += 1
        for rule in page["Rules"]:
            ev.list_targets_by_rule(Rule=rule["Name"])
            calls += 1
    ct.describe_trails(includeShadowTrails=True)
    calls += 1
    return time.perf_counter() - t0, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log-groups", type=int, default=10_000)
    ap.add_argument("--filters", type=int, default=5_000)
    ap.add_argument("--alarms", type=int, default=5_000)
    ap.add_argument("--rules", type=int, default=1_000)
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mock_aws():
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = Store(url)
        store.upgrade("head")
        store.ensure_tenant("default")
        ensure_default_catalog(store, actor="bench")
        tenant = store.tenant("default")
        built = build(args.log_groups, args.filters, args.alarms, args.rules)
        print(f"moto account: {args.log_groups:,} log groups, {args.filters:,} filters, {args.alarms:,} alarms, "
              f"{args.rules:,} rules built in {built:.1f} s")
        floor_s, floor_calls = floor()
        print(f"floor (plain boto3 list calls): {floor_s:.2f} s, {floor_calls:,} calls")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        out = aws.discover(tenant, account=f"aws:{ACCOUNT}", actor="bench")
        first = time.perf_counter() - t0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = out.result.totals()
        print(f"discovery 1: {first:.2f} s ({first / floor_s:.2f}x floor), {sum(out.calls.values()):,} API calls, "
              f"{out.requests:,} requests, peak RSS {rss1 / 1024:.0f} MiB (+{(rss1 - rss0) / 1024:.0f} MiB); "
              f"{t['detections']:,} detections ({t['added']:,} added), {t['mappings']:,} mappings, "
              f"health {out.health}")
        t0 = time.perf_counter()
        again = aws.discover(tenant, account=f"aws:{ACCOUNT}", actor="bench")
        second = time.perf_counter() - t0
        print(f"discovery 2 (unchanged): {second:.2f} s ({second / floor_s:.2f}x floor), "
              f"{again.result.totals()['unchanged']:,} unchanged")
        catalog = tenant.coverage.catalog("enterprise")
        t0 = time.perf_counter()
        cov = compute(tenant, catalog, account=f"aws:{ACCOUNT}")
        print(f"coverage recompute of the account: {time.perf_counter() - t0:.2f} s "
              f"({cov.overall['covered']}/{cov.overall['total']} techniques, {store.dialect})")
        store.close()


if __name__ == "__main__":
    main()
