"""Google Cloud Monitoring alert policies as `gcloud alpha monitoring policies list
--format=json` writes them.

Every policy is a link of the log-based metrics' chain (a `Context` for
bastion.coverage.importers.gcp_metrics): its name, display name, `enabled`, whether it has
`notificationChannels`, and the log-based metrics (`logging.googleapis.com/user/NAME`) its
conditions use (threshold and absence filters, MQL queries).

A policy with a log-match condition (`conditionMatchedLog`: alert on each log entry its filter
matches) is a detection itself: type log_query, service monitoring, rule id the policy's name
(`projects/P/alertPolicies/ID`), `raw` the canonical JSON of the policy without its creation and
mutation records; techniques from the threat indicators in its filter. Healthy when enabled with
a notification channel; `policy` broken when disabled (status disabled too); `notification`
degraded without a channel. Policies on other metrics (CPU, latency) are links only, counted in
a note.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from bastion.coverage.importers import Context, Invalid, Note, Origin, Parsed
from bastion.coverage.importers.cloudexport import Chain, canonical, items, settle, truthy
from bastion.coverage.importers.gcp_metrics import METRIC_TYPE, POLICY

NAME = "gcp_policies"
DESCRIPTION = "Google Cloud alert policies (gcloud alpha monitoring policies list --format=json)"
SUFFIXES = (".json",)
VOLATILE = ("creationRecord", "mutationRecord")
# a metric type in a filter (metric.type="…") or an MQL query (metric '…'); JSON escapes quotes
_METRIC = re.compile(re.escape(METRIC_TYPE) + r"""[^"'\s\\)|,]+""")


def sniff(name: str, head: bytes) -> bool:
    return head.lstrip()[:1] == b"[" and b'"conditions"' in head and (
        b'"combiner"' in head or b"/alertPolicies/" in head)


def parse(path: Path, text: str, where: str) -> Iterator[Origin | Parsed | Invalid | Context | Note]:
    rows = items(text, "a gcloud alpha monitoring policies list", wrappers=("alertPolicies",))
    yield Origin("gcp:alert-policies", "gcp", "format", "gcloud alpha monitoring policies list")
    links_only = 0
    for place, policy in rows:
        if isinstance(policy, Invalid):
            yield policy
            continue
        name = policy.get("name")
        if not name or not isinstance(name, str):
            yield Invalid(place, "name is missing")
            continue
        conditions = policy.get("conditions")
        if not isinstance(conditions, list):
            yield Invalid(f"policy {name}", "conditions is not a list")
            continue
        raw = canonical(policy, *VOLATILE)
        enabled = truthy(policy.get("enabled"))  # the API's default is enabled
        channels = [c for c in policy.get("notificationChannels") or () if c]
        display = str(policy.get("displayName") or "") or None
        yield Context(POLICY, f"policy {name}", {
            "name": name, "display": display, "enabled": enabled, "channels": bool(channels),
            "metrics": set(_METRIC.findall(canonical(conditions)))})
        if not any(isinstance(c, dict) and c.get("conditionMatchedLog") for c in conditions):
            links_only += 1
            continue
        chain = Chain()
        if not enabled:
            chain.broken("policy", "alert policy is disabled")
        elif not channels:
            chain.degraded("notification", "alert policy has no notification channel "
                                           "(an incident opens, nobody is notified)")
        health, issues = settle(chain, raw)
        yield Parsed(where=f"policy {name}", rule_id=name, raw=raw, type="log_query",
                     name=(display or name)[:500], service="monitoring",
                     status="enabled" if enabled else "disabled", source_path=where,
                     health=health, health_issues=issues)
    if links_only:
        yield Note("", f"{links_only} alert polic{'y' if links_only == 1 else 'ies'} without a log-match "
                       "condition: links of the log-based metrics' health, not detections")
