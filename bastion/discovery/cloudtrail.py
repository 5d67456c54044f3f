"""CloudTrail trails: the log source the other AWS detections stand on.

A trail is listed in every region it applies to (`describe_trails(includeShadowTrails=True)`:
multi-region and organization trails appear in each); it is read once, by ARN, for its logging
status and event selectors. As a detection (type cloud_control, mapped through CTID
`aws_cloudtrail`): healthy when logging management events; a stopped trail is disabled and
broken; a trail recording no management events is degraded (API calls are not logged).
"""

from __future__ import annotations

from typing import Any, Iterator

from bastion.discovery import reference as ref
from bastion.discovery.aws import Clients, Collected, detection, error_text, guarded, without
from bastion.discovery.chain import Chain

SERVICE = "cloudtrail"
VOLATILE = ("Status", "SelectorsError", "StatusError")


def collect(clients: Clients, region: str, collected: Collected) -> None:
    def run():
        listed = clients.client("cloudtrail", region).describe_trails(includeShadowTrails=True)
        for trail in listed.get("trailList") or ():
            arn = trail["TrailARN"]
            collected.trails.setdefault(arn, dict(trail))
            collected.trail_regions.setdefault(arn, set()).add(region)

    guarded(collected, SERVICE, region, run)


def statuses(clients: Clients, collected: Collected) -> None:
    """Logging status and event selectors of each trail, asked once in its home region."""
    from botocore.exceptions import BotoCoreError, ClientError

    for arn, trail in collected.trails.items():
        client = clients.client("cloudtrail", trail.get("HomeRegion") or next(iter(collected.trail_regions[arn])))
        try:
            trail["Status"] = client.get_trail_status(Name=arn)
        except (ClientError, BotoCoreError) as exc:
            trail["StatusError"] = error_text(exc)
        try:
            sel = client.get_event_selectors(TrailName=arn)
            trail["EventSelectors"] = sel.get("EventSelectors") or []
            trail["AdvancedEventSelectors"] = sel.get("AdvancedEventSelectors") or []
        except (ClientError, BotoCoreError) as exc:
            trail["SelectorsError"] = error_text(exc)


def logging(trail: dict[str, Any]) -> bool | None:
    """Whether the trail is logging (None: its status could not be read)."""
    status = trail.get("Status")
    return None if status is None else bool(status.get("IsLogging"))


def management_events(trail: dict[str, Any]) -> bool | None:
    """Whether the trail records management (API) events; None when unknown. No selector at all
    is CloudTrail's default: all management events."""
    if "SelectorsError" in trail:
        return None
    basic = trail.get("EventSelectors") or []
    advanced = trail.get("AdvancedEventSelectors") or []
    if not basic and not advanced:
        return True
    if any(s.get("IncludeManagementEvents", True) for s in basic):
        return True
    for sel in advanced:
        for f in sel.get("FieldSelectors") or ():
            if f.get("Field") == "eventCategory" and "Management" in (f.get("Equals") or ()):
                return True
    return False


def covers(trail: dict[str, Any], region: str) -> bool:
    return bool(trail.get("IsMultiRegionTrail")) or trail.get("HomeRegion") == region


def group_of(arn: str | None) -> tuple[str, str] | None:
    """(region, log group name) of a trail's CloudWatchLogsLogGroupArn
    (arn:aws:logs:REGION:ACCOUNT:log-group:NAME:*)."""
    if not arn:
        return None
    parts = arn.split(":", 6)
    if len(parts) < 7 or parts[5] != "log-group":
        return None
    name = parts[6]
    return parts[3], name[:-2] if name.endswith(":*") else name


def detections(collected: Collected, reference) -> Iterator[tuple[str, str, Any]]:
    mappings = ref.mapped(reference, "aws_cloudtrail", "aws")
    for arn, trail in sorted(collected.trails.items()):
        home = trail.get("HomeRegion") or sorted(collected.trail_regions[arn])[0]
        if trail.get("IsMultiRegionTrail") is False and home not in collected.regions:
            continue
        chain = Chain()
        on = logging(trail)
        if on is None:
            chain.unknown("logging", f"status not readable ({trail.get('StatusError')})")
        elif not on:
            chain.broken("logging", "trail is not logging (stopped)")
        mgmt = management_events(trail)
        if mgmt is None:
            chain.unknown("selectors", f"event selectors not readable ({trail.get('SelectorsError')})")
        elif not mgmt:
            chain.degraded("selectors", "records no management events (API calls are not logged)")
        if not trail.get("IsMultiRegionTrail"):
            chain.degraded("regions", f"single-region trail ({home}): other regions are not logged")
        yield SERVICE, home, detection(
            region=home, rule_id=arn, name=trail.get("Name") or arn, type="cloud_control",
            service=SERVICE, config=without(trail, *VOLATILE), chain=chain, mappings=mappings,
            status="disabled" if on is False else "enabled")
