"""Azure Monitor activity log alerts as `az monitor activity-log alert list` writes them (a JSON
list; the REST API's `{"value": [...]}` with nested `properties` is read too): one detection per
alert, type event_pattern, service activitylog, rule id the alert's resource id, `raw` the
canonical JSON of the alert without its etag. Its `condition` names the operations it watches
(`{"field": "operationName", "equals": "Microsoft.Authorization/roleAssignments/write"}`):
techniques come from the threat indicators.

Health: healthy when enabled with at least one action group; `alert` broken when disabled
(status disabled too); `action` degraded without an action group (the alert fires in Azure
Monitor, nobody is notified).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from bastion.coverage.importers import Invalid, Origin, Parsed
from bastion.coverage.importers.cloudexport import Chain, canonical, flattened, items, settle, truthy

NAME = "azure_alerts"
DESCRIPTION = "Azure activity log alerts (az monitor activity-log alert list)"
SUFFIXES = (".json",)
VOLATILE = ("etag", "systemData")


def sniff(name: str, head: bytes) -> bool:
    low = head.lower()
    return low.lstrip()[:1] in (b"[", b"{") and b"activitylogalerts" in low and b'"condition"' in low


def parse(path: Path, text: str, where: str) -> Iterator[Origin | Parsed | Invalid]:
    rows = items(text, "an az monitor activity-log alert list")
    yield Origin("azure:activity-log-alerts", "azure", "format", "az monitor activity-log alert list")
    for place, resource in rows:
        if isinstance(resource, Invalid):
            yield resource
            continue
        alert = flattened(resource)
        rule_id = alert.get("id") or alert.get("name")
        if not rule_id or not isinstance(rule_id, str):
            yield Invalid(place, "id is missing")
            continue
        if not isinstance(alert.get("condition"), dict):
            yield Invalid(f"alert {alert.get('name') or rule_id}", "condition is missing")
            continue
        enabled = truthy(alert.get("enabled"))
        actions = alert.get("actions") if isinstance(alert.get("actions"), dict) else {}
        groups = [g for g in actions.get("actionGroups") or () if isinstance(g, dict) and g.get("actionGroupId")]
        raw = canonical(alert, *VOLATILE)
        chain = Chain()
        if not enabled:
            chain.broken("alert", "activity log alert is disabled")
        if not groups:
            chain.degraded("action", "no action group (the alert fires in Azure Monitor, nobody is notified)")
        health, issues = settle(chain, raw)
        name = str(alert.get("name") or rule_id.rsplit("/", 1)[-1])
        yield Parsed(where=f"alert {name}", rule_id=rule_id, raw=raw, type="event_pattern",
                     name=name[:500], service="activitylog",
                     status="enabled" if enabled else "disabled", source_path=where,
                     health=health, health_issues=issues)
