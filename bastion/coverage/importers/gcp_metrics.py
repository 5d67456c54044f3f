"""Google Cloud log-based metrics as `gcloud logging metrics list --format=json` writes them: one
metric_alarm detection per metric (service logging, rule id its metric type
`logging.googleapis.com/user/NAME`, `raw` the canonical JSON of the metric without createTime and
updateTime). The metric's `filter` names the audited calls (`protoPayload.methodName=...`):
techniques come from the threat indicators.

Health is a chain (`link`), read with the alert policies of the same import
(`gcloud alpha monitoring policies list --format=json`, bastion.coverage.importers.gcp_policies):
healthy only when an enabled alert policy with a notification channel has a condition on the
metric. `metric` broken: the metric is disabled; `alert` broken: no alert policy uses the metric,
or only disabled ones do; `notification` degraded: the enabled policies using it have no
notification channel (an incident opens, nobody is told); `alert` unknown: no alert policies were
imported with the metrics, so the chain cannot be checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from bastion.coverage.importers import Context, Invalid, Origin, Parsed
from bastion.coverage.importers.cloudexport import Chain, canonical, items, settle, truthy

NAME = "gcp_metrics"
DESCRIPTION = "Google Cloud log-based metrics (gcloud logging metrics list --format=json)"
SUFFIXES = (".json",)
METRIC_TYPE = "logging.googleapis.com/user/"
POLICY = "gcp.alert_policy"  # the Context kind gcp_policies yields
VOLATILE = ("createTime", "updateTime")


def sniff(name: str, head: bytes) -> bool:
    return (head.lstrip()[:1] == b"[" and b'"metricDescriptor"' in head
            and b'"conditions"' not in head)


def parse(path: Path, text: str, where: str) -> Iterator[Origin | Parsed | Invalid]:
    rows = items(text, "a gcloud logging metrics list", wrappers=("metrics",))
    yield Origin("gcp:logging-metrics", "gcp", "format", "gcloud logging metrics list")
    for place, metric in rows:
        if isinstance(metric, Invalid):
            yield metric
            continue
        name = metric.get("name")
        if not name or not isinstance(name, str):
            yield Invalid(place, "name is missing")
            continue
        if not metric.get("filter"):
            yield Invalid(f"metric {name}", "filter is missing")
            continue
        enabled = not truthy(metric.get("disabled"), default=False)
        yield Parsed(where=f"metric {name}", rule_id=METRIC_TYPE + name, raw=canonical(metric, *VOLATILE),
                     type="metric_alarm", name=name[:500], service="logging",
                     status="enabled" if enabled else "disabled", source_path=where)


def link(detections: list[Parsed], contexts: list[Context]) -> None:
    policies = [c.data for c in contexts if c.kind == POLICY]
    for p in detections:
        chain = Chain()
        if p.status == "disabled":
            chain.broken("metric", "log-based metric is disabled")
        if not policies:
            chain.unknown("alert", "no alert policies in this import (gcloud alpha monitoring policies "
                                   "list --format=json): the chain cannot be checked")
        else:
            using = [pol for pol in policies if p.rule_id in pol["metrics"]]
            enabled = [pol for pol in using if pol["enabled"]]
            if not using:
                chain.broken("alert", f"no alert policy uses metric {p.rule_id}")
            elif not enabled:
                chain.broken("alert", "alert policy " + ", ".join(_label(pol) for pol in using)
                             + f" using metric {p.rule_id} is disabled")
            elif not any(pol["channels"] for pol in enabled):
                chain.degraded("notification", "alert policy " + ", ".join(_label(pol) for pol in enabled)
                               + " has no notification channel (an incident opens, nobody is notified)")
        p.health, p.health_issues = settle(chain, p.raw)


def _label(policy: dict) -> str:
    return policy["display"] or policy["name"]
