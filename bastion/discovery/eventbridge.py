"""EventBridge rules with an event pattern (scheduled rules are no detections), on every
event bus of the region.

A rule is a detection (type event_pattern, service eventbridge, rule id its ARN), healthy when
its chain holds:

    rule    enabled (a disabled rule is disabled and broken)
    target  at least one target
    trail   a pattern on `AWS API Call via CloudTrail` events needs a logging trail that records
            management events in the rule's region: EventBridge receives those events only then

Mappings: the threat indicators matching the pattern (CloudTrail `eventName` values …).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Iterator

import orjson

from bastion.coverage import indicators as ind
from bastion.coverage.importers import Mapped
from bastion.discovery import cloudtrail
from bastion.discovery.aws import Clients, Collected, detection, guarded, pages, without
from bastion.discovery.chain import Chain

SERVICE = "eventbridge"
API_CALL = "AWS API Call via CloudTrail"


@cache
def _indicators() -> tuple[ind.Indicator, ...]:
    return tuple(ind.load())


def indicator_mappings(text: str, provider: str = "aws") -> list[Mapped]:
    """Mappings for a user-written pattern from the indicators it matches: method pattern,
    the indicators' confidence; the id is resolved to the active release by the importer."""
    out: dict[str, Mapped] = {}
    for hit in ind.match(text, provider, list(_indicators())):
        out.setdefault(hit.technique, Mapped(hit.technique, ind.CONFIDENCE, "pattern", ind.MAPPED_BY,
                                             f"{hit.field} {hit.value}: {hit.rationale}"[:2000]))
    return list(out.values())


def collect(clients: Clients, region: str, collected: Collected) -> None:
    def run():
        client = clients.client("events", region)
        buses = [b["Name"] for b in pages(client, "list_event_buses", "EventBuses")] or ["default"]
        rules = []
        for bus in buses:
            for rule in pages(client, "list_rules", "Rules", EventBusName=bus):
                if not rule.get("EventPattern"):
                    continue  # a schedule, not a detection
                rule = dict(rule)
                rule["Targets"] = list(pages(client, "list_targets_by_rule", "Targets",
                                             Rule=rule["Name"], EventBusName=bus))
                rules.append(rule)
        collected.rules[region] = rules

    guarded(collected, "events", region, run)


def _pattern(rule: dict[str, Any]) -> Any:
    try:
        return orjson.loads(rule["EventPattern"])
    except orjson.JSONDecodeError:
        return rule["EventPattern"]


def trail_link(chain: Chain, collected: Collected, region: str) -> None:
    failed = collected.fails("cloudtrail", region)
    trails = [t for t in collected.trails.values() if cloudtrail.covers(t, region)]
    if any(cloudtrail.logging(t) and cloudtrail.management_events(t) is not False for t in trails):
        return
    if failed:
        chain.unknown("trail", f"trails of {region} not readable ({failed})")
    elif any(cloudtrail.logging(t) is None for t in trails):
        chain.unknown("trail", f"logging status of the trails of {region} not readable")
    else:
        chain.broken("trail", f"no logging trail records management events in {region}: "
                              f"'{API_CALL}' events never reach EventBridge")


def detections(collected: Collected, reference) -> Iterator[tuple[str, str, Any]]:
    for region in collected.regions:
        for rule in collected.rules.get(region) or ():
            chain = Chain()
            enabled = str(rule.get("State") or "ENABLED").upper().startswith("ENABLED")
            if not enabled:
                chain.broken("rule", f"rule is disabled (State {rule.get('State')})")
            if not rule.get("Targets"):
                chain.broken("target", "rule has no target")
            pattern = _pattern(rule)
            if API_CALL in rule["EventPattern"]:
                trail_link(chain, collected, region)
            config = {**without(rule, "Targets"), "EventPattern": pattern,
                      "Targets": sorted((without(t) for t in rule["Targets"]), key=lambda t: t.get("Id", ""))}
            yield "events", region, detection(
                region=region, rule_id=rule["Arn"], name=rule["Name"], type="event_pattern",
                service=SERVICE, config=config, chain=chain,
                mappings=indicator_mappings(rule["EventPattern"]),
                status="enabled" if enabled else "disabled")
