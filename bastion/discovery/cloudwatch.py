"""CloudWatch Logs metric filters and CloudWatch alarms.

A metric filter with the alarms on its metric is one detection (type metric_alarm, service
cloudwatch, rule id the filter's ARN-like id `arn:aws:logs:REGION:ACCOUNT:log-group:G:metric-filter:F`),
healthy only when the whole chain holds:

    trail  a logging trail that records management events delivers to the filter's log group
           (a single-region trail is enough for its own region: degraded otherwise)
    alarm  an alarm watches the filter's metric (namespace and name, also through metric math)
    action that alarm has actions enabled and at least one alarm action (a target)

An alarm on no filter's metric is a detection of its own (type metric_alarm): healthy when its
actions are enabled and it has an alarm action. Metric filters are listed with one paged call
per region (`describe_metric_filters` without a log group), so log groups are never enumerated
one by one. User-written patterns are mapped through the threat indicators (the CloudTrail
`eventName` values the pattern names).
"""

from __future__ import annotations

from typing import Any, Iterator

from bastion.discovery import cloudtrail
from bastion.discovery.aws import Clients, Collected, detection, guarded, pages, without
from bastion.discovery.chain import Chain
from bastion.discovery.eventbridge import indicator_mappings

ALARM_VOLATILE = ("StateValue", "StateReason", "StateReasonData", "StateUpdatedTimestamp",
                  "AlarmConfigurationUpdatedTimestamp", "StateTransitionedTimestamp",
                  "EvaluationState")


def collect(clients: Clients, region: str, collected: Collected) -> None:
    def filters():
        collected.filters[region] = list(pages(clients.client("logs", region),
                                               "describe_metric_filters", "metricFilters"))

    def alarms():
        client = clients.client("cloudwatch", region)
        collected.alarms[region] = list(pages(client, "describe_alarms", "MetricAlarms",
                                              AlarmTypes=["MetricAlarm"]))

    guarded(collected, "logs", region, filters)
    guarded(collected, "cloudwatch", region, alarms)


def metrics_of(alarm: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, metric name) an alarm watches, directly or through metric math."""
    out = set()
    if alarm.get("MetricName"):
        out.add((alarm.get("Namespace") or "", alarm["MetricName"]))
    for q in alarm.get("Metrics") or ():
        metric = (q.get("MetricStat") or {}).get("Metric") or {}
        if metric.get("MetricName"):
            out.add((metric.get("Namespace") or "", metric["MetricName"]))
    return out


def alarm_link(chain: Chain, alarms: list[dict[str, Any]], what: str) -> None:
    """The alarm and action links: some alarm must notify someone."""
    if not alarms:
        chain.broken("alarm", f"no alarm on metric {what}")
        return
    if any(a.get("ActionsEnabled") and a.get("AlarmActions") for a in alarms):
        return
    names = ", ".join(sorted(a["AlarmName"] for a in alarms))
    if not any(a.get("ActionsEnabled") for a in alarms):
        chain.broken("action", f"actions are disabled on alarm {names}")
    else:
        chain.broken("action", f"alarm {names} has no alarm action (nobody is notified)")


def trail_link(chain: Chain, collected: Collected, region: str, group: str) -> None:
    """A logging trail recording management events delivers to `group` in `region`."""
    failed = collected.fails("cloudtrail", region)
    feeding = [t for t in collected.trails.values()
               if cloudtrail.group_of(t.get("CloudWatchLogsLogGroupArn")) == (region, group)]
    if not feeding:
        if failed:
            chain.unknown("trail", f"trails of {region} not readable ({failed})")
        else:
            chain.broken("trail", f"no trail delivers to log group {group} ({region})")
        return
    live = [t for t in feeding if cloudtrail.logging(t)]
    if not live:
        unknown = [t for t in feeding if cloudtrail.logging(t) is None]
        if unknown:
            chain.unknown("trail", f"logging status of trail {unknown[0]['Name']} not readable")
        else:
            names = ", ".join(sorted(t["Name"] for t in feeding))
            chain.broken("trail", f"trail {names} delivering to {group} is not logging (stopped)")
        return
    recording = [t for t in live if cloudtrail.management_events(t) is not False]
    if not recording:
        names = ", ".join(sorted(t["Name"] for t in live))
        chain.broken("trail", f"trail {names} delivering to {group} records no management events")
        return
    if not any(t.get("IsMultiRegionTrail") for t in recording):
        chain.degraded("trail", f"only single-region trail(s) deliver to {group}: API calls in "
                                "other regions are not seen")


def detections(collected: Collected, reference) -> Iterator[tuple[str, str, Any]]:
    account = collected.account_id
    for region in collected.regions:
        alarms = collected.alarms.get(region) or []
        alarms_failed = collected.fails("cloudwatch", region)
        by_metric: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for alarm in alarms:
            for metric in metrics_of(alarm):
                by_metric.setdefault(metric, []).append(alarm)
        fed: set[str] = set()
        for f in collected.filters.get(region) or ():
            group, name = f["logGroupName"], f["filterName"]
            chain = Chain()
            trail_link(chain, collected, region, group)
            watching: list[dict[str, Any]] = []
            for t in f.get("metricTransformations") or ():
                watching.extend(by_metric.get((t.get("metricNamespace") or "", t.get("metricName")), ()))
            unique = {a["AlarmArn"]: a for a in watching}
            fed.update(unique)
            metric = ", ".join(f"{t.get('metricNamespace')}/{t.get('metricName')}"
                               for t in f.get("metricTransformations") or ()) or "(none)"
            if alarms_failed:
                chain.unknown("alarm", f"alarms of {region} not readable ({alarms_failed})")
            else:
                alarm_link(chain, list(unique.values()), metric)
            config = {"filter": without(f, "creationTime"),
                      "alarms": [without(a, *ALARM_VOLATILE) for _, a in sorted(unique.items())]}
            yield "logs", region, detection(
                region=region, rule_id=f"arn:aws:logs:{region}:{account}:log-group:{group}:metric-filter:{name}",
                name=name, type="metric_alarm", service="cloudwatch", config=config, chain=chain,
                mappings=indicator_mappings(f.get("filterPattern") or ""))
        for alarm in alarms:
            if alarm["AlarmArn"] in fed:
                continue
            chain = Chain()
            alarm_link(chain, [alarm], alarm["AlarmName"])
            yield "cloudwatch", region, detection(
                region=region, rule_id=alarm["AlarmArn"], name=alarm["AlarmName"], type="metric_alarm",
                service="cloudwatch", config=without(alarm, *ALARM_VOLATILE), chain=chain,
                status="enabled" if alarm.get("ActionsEnabled") else "disabled")
