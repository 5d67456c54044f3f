"""Microsoft Sentinel analytic rules: the output of `az sentinel alert-rule list` (a JSON list,
properties on top), the REST API's `{"value": [...]}` and the ARM template the portal exports
(`{"resources": [...]}` of type `…/alertRules`), both with nested `properties`.

One detection per rule: rule id the rule's name (its GUID, also when an ARM template writes it
as an expression), name its displayName, level its severity, type log_query for Scheduled and NRT
rules (their KQL `query`), cloud_control for the managed kinds (Fusion, ML behaviour analytics,
threat intelligence, Microsoft security incident creation), service sentinel, rule_tags its
tactics and techniques, `raw` the canonical JSON of the rule without etag and lastModifiedUtc.

Mappings: the rule's own `techniques` and `subTechniques`, method tag (the rule's own
metadata, as a Sigma rule's tags), confidence 1.0, mapped_by `import:sentinel`; a rule stating
none is mapped through the threat indicators of its query. Health: healthy when enabled;
`rule` broken when disabled (status disabled too); `incident` degraded when a scheduled or NRT
rule creates alerts but no incidents (`incidentConfiguration.createIncident: false`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from bastion.coverage.importers import Invalid, Mapped, Note, Origin, Parsed
from bastion.coverage.importers.cloudexport import Chain, canonical, flattened, items, load, settle, truthy

NAME = "sentinel"
DESCRIPTION = "Microsoft Sentinel analytic rules (az sentinel alert-rule list, ARM JSON)"
SUFFIXES = (".json",)
VOLATILE = ("etag", "lastModifiedUtc", "systemData")
QUERY_KINDS = ("scheduled", "nrt")
LEVELS = {"informational": "informational", "low": "low", "medium": "medium", "high": "high"}
MAPPED_BY = "import:sentinel"


def sniff(name: str, head: bytes) -> bool:
    low = head.lower()
    return low.lstrip()[:1] in (b"[", b"{") and (
        b"microsoft.securityinsights" in low or b"/alertrules" in low
        or (b'"queryfrequency"' in low and b'"tactics"' in low))


def _rules(text: str) -> Iterator[tuple[str, Any]]:
    doc = load(text)
    if isinstance(doc, dict) and isinstance(doc.get("resources"), list):  # an ARM template
        for i, res in enumerate(doc["resources"]):
            place = f"resources[{i}]"
            if not isinstance(res, dict):
                yield place, Invalid(place, "not a JSON object")
            elif str(res.get("type") or "").lower().endswith("/alertrules"):
                yield place, res
            else:
                yield place, Note(place, f"not an analytic rule (type {res.get('type')!r}): skipped")
        return
    yield from items(doc, "a Sentinel analytic rules export", wrappers=("value",))


def _rule_name(rule: dict[str, Any]) -> str | None:
    """The rule's GUID name: `name`, else the last segment of `id` (an ARM template writes both
    as expressions ending in `/<guid>')]`)."""
    for value in (rule.get("name"), rule.get("id")):
        if isinstance(value, str) and value.strip():
            tail = value.strip().rstrip("')]\"").rsplit("/", 1)[-1]
            if tail:
                return tail
    return None


def _ids(value: Any) -> list[str]:
    return [str(v).strip() for v in value if str(v).strip()] if isinstance(value, list) else []


def parse(path: Path, text: str, where: str) -> Iterator[Origin | Parsed | Invalid | Note]:
    rows = _rules(text)
    yield Origin("azure:sentinel", "azure", "format", "Microsoft Sentinel analytic rules")
    for place, resource in rows:
        if isinstance(resource, (Invalid, Note)):
            yield resource
            continue
        rule = flattened(resource)
        rule_id = _rule_name(rule)
        if not rule_id:
            yield Invalid(place, "name is missing")
            continue
        kind = str(rule.get("kind") or "Scheduled")
        display = str(rule.get("displayName") or rule_id)
        here = f"rule {display}"
        if kind.lower() in QUERY_KINDS and not rule.get("query"):
            yield Invalid(here, f"query is missing (a {kind} rule)")
            continue
        techniques = _ids(rule.get("techniques")) + _ids(rule.get("subTechniques"))
        tactics = _ids(rule.get("tactics"))
        severity = str(rule.get("severity") or "").strip().lower()
        enabled = truthy(rule.get("enabled"))
        raw = canonical(rule, *VOLATILE)
        chain = Chain()
        if not enabled:
            chain.broken("rule", "analytic rule is disabled")
        incident = rule.get("incidentConfiguration")
        if kind.lower() in QUERY_KINDS and isinstance(incident, dict) \
                and not truthy(incident.get("createIncident")):
            chain.degraded("incident", "creates alerts but no incidents (createIncident is false)")
        health, issues = settle(chain, raw)
        stated = ", ".join(techniques)
        yield Parsed(where=here, rule_id=rule_id, raw=raw,
                     type="log_query" if kind.lower() in QUERY_KINDS else "cloud_control",
                     name=display[:500], service="sentinel", level=LEVELS.get(severity),
                     status="enabled" if enabled else "disabled",
                     rule_tags=(tactics + techniques) or None, source_path=where,
                     mappings=[Mapped(t, 1.0, "tag", MAPPED_BY, f"Sentinel rule techniques: {stated}")
                               for t in techniques],
                     health=health, health_issues=issues)
