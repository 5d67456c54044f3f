"""Security Hub (type cloud_control, service securityhub, mapped through CTID
`aws_security_hub`): one detection per region where the account is subscribed, with its enabled
standards and, per standard, the controls switched off. Healthy when at least one standard is
ready; degraded when none is enabled or one is not ready (incomplete, failed). A region that is
not subscribed has no detection (not an error).
"""

from __future__ import annotations

from typing import Any, Iterator

from bastion.discovery import reference as ref
from bastion.discovery.aws import Clients, Collected, detection, guarded, pages, without
from bastion.discovery.chain import Chain

SERVICE = "securityhub"


def collect(clients: Clients, region: str, collected: Collected) -> None:
    from botocore.exceptions import ClientError

    def run():
        client = clients.client("securityhub", region)
        try:
            hub = without(client.describe_hub(), "SubscribedAt")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("InvalidAccessException", "ResourceNotFoundException"):
                return  # not subscribed in this region
            raise
        standards = []
        for sub in pages(client, "get_enabled_standards", "StandardsSubscriptions"):
            entry = {"StandardsArn": sub.get("StandardsArn"), "StandardsStatus": sub.get("StandardsStatus"),
                     "StandardsSubscriptionArn": sub.get("StandardsSubscriptionArn")}
            if sub.get("StandardsStatus") == "READY":
                entry["DisabledControls"] = sorted(
                    c.get("ControlId") or c.get("StandardsControlArn") for c in pages(
                        client, "describe_standards_controls", "Controls",
                        StandardsSubscriptionArn=sub["StandardsSubscriptionArn"])
                    if c.get("ControlStatus") == "DISABLED")
            standards.append(entry)
        collected.hubs[region] = {**hub, "Standards": sorted(standards, key=lambda s: s["StandardsArn"] or "")}

    guarded(collected, SERVICE, region, run)


def detections(collected: Collected, reference) -> Iterator[tuple[str, str, Any]]:
    mappings = ref.mapped(reference, "aws_security_hub", "aws")
    for region, hub in sorted(collected.hubs.items()):
        chain = Chain()
        standards = hub["Standards"]
        if not standards:
            chain.degraded("standards", "no security standard is enabled (no control is evaluated)")
        for s in standards:
            if s.get("StandardsStatus") not in ("READY", "PENDING"):
                chain.degraded("standards", f"standard {s['StandardsArn']} is {str(s.get('StandardsStatus')).lower()}")
        arn = hub.get("HubArn") or f"arn:aws:securityhub:{region}:{collected.account_id}:hub/default"
        yield SERVICE, region, detection(
            region=region, rule_id=arn, name=f"Security Hub {region}", type="cloud_control",
            service=SERVICE, config=hub, chain=chain, mappings=mappings)
