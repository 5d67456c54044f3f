"""GuardDuty detectors (type cloud_control, service guardduty, mapped through CTID
`amazon_guardduty`): healthy when enabled; degraded when a protection feature is off (the
`Features` GetDetector returns, such as S3_DATA_EVENTS or RUNTIME_MONITORING, named); a
suspended detector is disabled and broken. A region without a detector has no detection: its
techniques show as gaps.
"""

from __future__ import annotations

from typing import Any, Iterator

from bastion.discovery import reference as ref
from bastion.discovery.aws import Clients, Collected, detection, guarded, pages, without
from bastion.discovery.chain import Chain

SERVICE = "guardduty"


def collect(clients: Clients, region: str, collected: Collected) -> None:
    def run():
        client = clients.client("guardduty", region)
        found = []
        for detector_id in pages(client, "list_detectors", "DetectorIds"):
            got = without(client.get_detector(DetectorId=detector_id), "UpdatedAt", "CreatedAt")
            found.append({"DetectorId": detector_id, **got})
        collected.detectors[region] = found

    guarded(collected, SERVICE, region, run)


def detections(collected: Collected, reference) -> Iterator[tuple[str, str, Any]]:
    mappings = ref.mapped(reference, "amazon_guardduty", "aws")
    for region in collected.regions:
        for det in collected.detectors.get(region) or ():
            chain = Chain()
            enabled = det.get("Status") == "ENABLED"
            if not enabled:
                chain.broken("detector", f"detector is {str(det.get('Status')).lower()} (suspended)")
            off = sorted(f["Name"] for f in det.get("Features") or () if f.get("Status") == "DISABLED")
            if off:
                chain.degraded("features", "protection feature(s) off: " + ", ".join(off))
            arn = f"arn:aws:guardduty:{region}:{collected.account_id}:detector/{det['DetectorId']}"
            yield SERVICE, region, detection(
                region=region, rule_id=arn, name=f"GuardDuty {region}", type="cloud_control",
                service=SERVICE, config=det, chain=chain, mappings=mappings,
                status="enabled" if enabled else "disabled")
