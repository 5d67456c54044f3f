"""Discovery written as one snapshot of an account's inventory, through the detections
importer's own write path (bastion.coverage.inventory): the same keys, revisions (content hash
of the canonical configuration), mappings kept in step, removals, snapshot rows, coverage
history and drift as a file import, recorded as an import run of kind `detections`.

Each (service, region) read is one part of the run (`aws:ACCOUNT/REGION/SERVICE`): its
detections and mappings are counted on it; a part whose API calls failed is rejected with the
error, the run is partial, and the detections that part brought last time are kept (listed in
the snapshot as they were) instead of being removed as missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from bastion.coverage import inventory
from bastion.coverage.importers import Parsed
from bastion.ingest import files as framework
from bastion.schema.keys import parse_key


@dataclass
class DiscoveryResult:
    account: str
    regions: list[str]
    result: inventory.ImportResult
    failed: dict[str, str] = field(default_factory=dict)  # part → error
    calls: dict[str, int] = field(default_factory=dict)  # service:Operation → calls
    requests: int = 0  # HTTP requests sent, retries included
    health: dict[str, int] = field(default_factory=dict)  # health → detections

    @property
    def status(self) -> str:
        return self.result.status

    def as_dict(self) -> dict[str, Any]:
        out = self.result.as_dict()
        out.update(regions=self.regions, failed=self.failed, api_calls=sum(self.calls.values()),
                   calls=dict(sorted(self.calls.items())), requests=self.requests, health=self.health)
        return out


def part_name(account_id: str, region: str, service: str) -> str:
    return f"aws:{account_id}/{region}/{service}"


def _part_of_rule(rule_id: str) -> tuple[str, str] | None:
    """(service, region) of an ARN-like rule id."""
    bits = rule_id.split(":", 5)
    return (bits[2], bits[3]) if len(bits) > 4 and bits[0] == "arn" else None


def write(tenant, *, account: str, account_id: str, regions: list[str], services: Iterable[str],
          found: Iterable[tuple[str, str, Parsed]], failed: dict[tuple[str, str], str],
          source: str, actor: str, notes: list[str], provider: str = "aws") -> DiscoveryResult:
    catalog = inventory.active_catalog(tenant)
    opts = inventory.Options(actor=actor, account=account, source=source)
    with framework.Run(tenant, "detections", actor=actor, source=source, result=inventory.FileResult,
                       options={"format": f"discover:{provider}", "account": account, "source": source,
                                "regions": regions}) as run:
        result = inventory.ImportResult(account, run.correlation_id, run.files, run_id=run.id)
        parts: dict[tuple[str, str], inventory.FileResult] = {}
        for region in regions:
            for service in services:
                fr = run.add(inventory.FileResult(part_name(account_id, region, service), format=provider))
                fr.source = source
                parts[(service, region)] = fr
                if (service, region) in failed:
                    fr.reject(failed[(service, region)])
        items: dict[str, Any] = {}
        health: dict[str, int] = {}
        for service, region, parsed in found:
            fr = parts[(service, region)]
            it = inventory._item(parsed, fr, source, account, catalog, provider, [], True)
            if it is None:
                fr.skipped += 1
                continue
            items[it.key] = it
            fr.detections += 1
            fr.mappings += len(it.mappings)
            health[parsed.health or "unknown"] = health.get(parsed.health or "unknown", 0) + 1
        result.notes.extend(notes)
        if any(f.status == "imported" for f in result.files):
            with tenant.writing(actor=actor, source=f"discover:{provider}",
                                correlation_id=result.correlation_id, at=run.at) as session:
                previous = session.coverage.latest_snapshot(account=account, source=source)
                keep = frozenset(
                    k for k in (previous.detections if previous else ())
                    if _part_of_rule(parse_key(k).parts["rule_id"]) in failed)
                if keep:
                    result.notes.append(f"kept {len(keep)} detection(s) of the parts that could not "
                                        "be read, as the previous discovery found them")
                inventory._write(session, account, items, [source], set(), opts, catalog, result,
                                 keep=keep)
            if catalog is not None:
                inventory._history_points(tenant, catalog, account, items, result, run.at)
        run.notes.extend(result.notes)
        totals = result.totals()
        run.counts = {**totals, "records": totals["detections"], "created": totals["added"],
                      "updated": totals["modified"]}
    return DiscoveryResult(account, regions, result,
                           {part_name(account_id, r, s): e for (s, r), e in sorted(failed.items())},
                           health=dict(sorted(health.items())))
