"""Coverage gaps (with a risk score and an analyst workflow) and overlaps (with a stated
classification). docs/coverage.md#gaps and #overlaps.

Gaps. A gap is a technique counted for an account (active, applicable to its platforms, in
scope) that the account's detections do not cover (default method).

    risk = criticality weight (low 1, medium 2, high 3, critical 4) × (1 + threat groups using
           the technique)

Severity, when the catalog has group data: critical when risk >= 60, high >= 25, medium >= 8,
low otherwise. When the release carries no groups at all, risk is the weight alone and the
severity is the account's criticality.

Status: open unless an analyst recorded a decision (a `gap` entity keyed by technique and
account: acknowledged, accepted_risk, remediated, open), which recomputation never changes.
A technique with a recorded decision that is covered now is reported among `remediated`
(effective status remediated); a recorded `remediated` whose technique is uncovered again is
reported open again (`reopened`). The stored entity changes only when asked (`update=True`,
`bastion coverage gaps --update`), once, through the write path — the event names the reason.

Overlaps. A technique of one account with two or more counting detections (a counting
detection beside only non-counting ones is no overlap). Classified, first rule that applies:

1. conflicting — the detections disagree about the technique: the counting detections sit
   beside one that is disabled or deprecated, broken or degraded, or mapped with a disputed mapping;
2. excessive — more than `max_same` (default 5) counting detections share the same level and
   type (redundant rules to maintain);
3. beneficial — otherwise: several counting detections of different types, services or levels
   (defence in depth).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

from bastion.coverage.catalog import Catalog
from bastion.coverage.compute import DEFAULT_MIN_CONFIDENCE, _account_arg, compute_accounts
from bastion.errors import InvalidValue, NotFound
from bastion.schema.batch import Batch
from bastion.schema.kinds import GAP_STATES
from bastion.schema.normalize import attack_technique
from bastion.store.coverage import COUNTED_HEALTH, Qualify

CRITICALITY_WEIGHT = {"low": 1, "medium": 2, "high": 3, "critical": 4}
SEVERITY_BUCKETS = ((60, "critical"), (25, "high"), (8, "medium"), (0, "low"))
GAP_SOURCE = "coverage"
MAX_SAME = 5

OVERLAP_RULES = {
    "conflicting": "two or more counting detections beside one that is disabled/deprecated, "
                   "broken or degraded, or mapped with a disputed mapping",
    "excessive": "more than {max_same} counting detections of the same level and type",
    "beneficial": "otherwise: several counting detections (different types, services or levels)",
}


@dataclass
class Gap:
    account: str
    account_name: str
    criticality: str
    technique: str
    name: str
    tactics: list[str]
    groups: int
    risk: int
    severity: str
    status: str  # effective status
    stored_status: str | None  # the analyst's recorded decision, if any
    comment: str | None = None
    note: str | None = None  # "covered now", "uncovered again"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class GapReport:
    gaps: list[Gap]  # uncovered, highest risk first
    remediated: list[Gap]  # recorded decisions whose technique is covered now
    updated: int = 0  # stored statuses changed by update=True

    def as_dict(self) -> dict[str, Any]:
        return {"gaps": [g.as_dict() for g in self.gaps],
                "remediated": [g.as_dict() for g in self.remediated], "updated": self.updated,
                "risk": "criticality weight (low 1, medium 2, high 3, critical 4) x "
                        "(1 + threat groups using the technique)"}


def risk_score(criticality: str, groups: int, has_groups: bool) -> tuple[int, str]:
    weight = CRITICALITY_WEIGHT.get(criticality, 2)
    if not has_groups:
        return weight, criticality if criticality in CRITICALITY_WEIGHT else "medium"
    risk = weight * (1 + max(groups, 0))
    return risk, next(sev for floor, sev in SEVERITY_BUCKETS if risk >= floor)


def gaps(tenant, catalog: Catalog, *, account=None, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
         include=None, ignore=None, update: bool = False, actor: str = "coverage") -> GapReport:
    """Gaps of one account or of every account, ranked by risk (then account, technique)."""
    acct = _account_arg(tenant, account)
    keys = [acct.key] if acct is not None else None
    per = compute_accounts(tenant, catalog, accounts=keys, min_confidence=min_confidence,
                           include=include, ignore=ignore)
    accts = {a.key: a for a in tenant.coverage.accounts(keys)}
    decisions = {(d.account, d.technique): d for d in tenant.coverage.gap_decisions(keys)}
    has_groups = any(t.groups for t in catalog.techniques.values())
    found: list[Gap] = []
    remediated: list[Gap] = []
    changes: list[tuple[Any, str, str]] = []  # (decision, new status, note)
    for key, cov in per.items():
        a = accts.get(key)
        crit = a.criticality if a else "medium"
        label = a.label if a else key
        for tid, r in cov.techniques.items():
            d = decisions.get((key, tid))
            if r.covered and d is None:
                continue
            risk, sev = risk_score(crit, r.groups, has_groups)
            g = Gap(key, label, crit, tid, r.name, list(r.tactics), r.groups, risk, sev,
                    d.status if d else "open", d.status if d else None, d.comment if d else None)
            if r.covered:
                g.status, g.note = "remediated", "covered now"
                remediated.append(g)
                if d.status != "remediated":
                    changes.append((d, "remediated", f"covered now ({r.count} detection(s))"))
            else:
                if d is not None and d.status == "remediated":
                    g.status, g.note = "open", "uncovered again"
                    changes.append((d, "open", "uncovered again"))
                found.append(g)
    found.sort(key=lambda g: (-g.risk, g.account, g.technique))
    remediated.sort(key=lambda g: (g.account, g.technique))
    report = GapReport(found, remediated)
    if update and changes:
        batch = Batch()
        for d, status, note in changes:
            batch.add("gap", account=d.account, technique=d.technique, status=status,
                      comment=d.comment, expected_version=d.version, note=note)
        tenant.apply(batch, actor=actor, source=GAP_SOURCE, observed=False)
        report.updated = len(changes)
    return report


def set_gap_status(tenant, account, technique: str, status: str, *, comment: str | None = None,
                   actor: str, catalog: Catalog | None = None, source: str = "cli"):
    """Record an analyst's decision on a gap (an event; the comment is its note)."""
    status = (status or "").strip().lower()
    if status not in GAP_STATES:
        raise InvalidValue(f"gap status cannot be {status!r}; one of: {', '.join(GAP_STATES)}")
    acct = _account_arg(tenant, account)
    if acct is None:
        raise InvalidValue("a gap decision names one account")
    tid = attack_technique(technique)
    if catalog is not None and tid not in catalog.techniques:
        raise NotFound(f"no technique {tid} in ATT&CK {catalog.domain} {catalog.version}")
    key = Batch().add("gap", account=acct.key, technique=tid)
    old = tenant.get(key)
    note = comment
    if comment is None and old is not None:
        comment = old.values.get("comment")  # a status change alone keeps the comment
    batch = Batch()
    batch.add("gap", account=acct.key, technique=tid, status=status, comment=comment,
              note=note, expected_version=old.version if old else None)
    tenant.apply(batch, actor=actor, source=source, observed=False)
    return tenant.get(key)


# -- overlaps -------------------------------------------------------------------------------------


@dataclass
class Overlap:
    account: str
    technique: str
    name: str
    classification: str
    reason: str
    detections: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _counts(d: dict[str, Any], q: Qualify) -> bool:
    ok = d["status"] == "enabled" and d["health"] in COUNTED_HEALTH and d["validation"] != "disputed"
    return ok and (d["confidence"] >= q.min_confidence or d["validation"] == "validated")


def classify(dets: Sequence[dict[str, Any]], q: Qualify, max_same: int = MAX_SAME) -> tuple[str, str]:
    counting = [d for d in dets if d["counts"]]
    off = [d for d in dets if d["status"] in ("disabled", "deprecated")]
    broken = [d for d in dets if d["health"] == "broken"]
    degraded = [d for d in dets if d["health"] == "degraded"]
    disputed = [d for d in dets if d["validation"] == "disputed"]
    if counting and (off or broken or degraded or disputed):
        parts = []
        if off:
            parts.append(f"{len(off)} disabled/deprecated")
        if broken:
            parts.append(f"{len(broken)} broken")
        if degraded:
            parts.append(f"{len(degraded)} degraded")
        if disputed:
            parts.append(f"{len(disputed)} with a disputed mapping")
        return "conflicting", f"{len(counting)} counting beside " + ", ".join(parts)
    same: dict[tuple, int] = defaultdict(int)
    for d in counting:
        same[(d["level"], d["type"])] += 1
    (level, typ), n = max(same.items(), key=lambda kv: kv[1])
    if n > max_same:
        return "excessive", f"{n} counting detections of level {level or 'unset'} and type {typ} (> {max_same})"
    kinds = sorted({d["type"] for d in counting})
    services = sorted({d["service"] or "-" for d in counting})
    return "beneficial", (f"{len(counting)} counting detections; types {', '.join(kinds)}; "
                          f"services {', '.join(services)}")


def overlaps(tenant, catalog: Catalog, *, account=None,
             min_confidence: float = DEFAULT_MIN_CONFIDENCE, max_same: int = MAX_SAME) -> list[Overlap]:
    """Techniques (as mapped, resolved to the active release; no roll-up) with several
    detections in one account, classified (module docstring)."""
    acct = _account_arg(tenant, account)
    keys = [acct.key] if acct is not None else None
    q = Qualify(min_confidence=min_confidence)
    pairs = [(tid, r) for tid in catalog.known_ids() if (r := catalog.resolve(tid))]  # crosswalk ids too
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in tenant.coverage.detections(pairs, None, accounts=keys, min_per_technique=2):
        dets = groups[(row.account, row.technique)]
        d = dets.get(row.key)
        entry = {"key": row.key, "rule_id": row.rule_id, "name": row.name, "type": row.type,
                 "service": row.service, "level": row.level, "status": row.status,
                 "health": row.health, "confidence": row.confidence,
                 "validation": row.validation, "mapped": [row.mapped]}
        entry["counts"] = _counts(entry, q)
        if d is None:
            dets[row.key] = entry
        else:  # one detection mapped twice (old and new id): it counts if any mapping does
            d["mapped"].append(row.mapped)
            if entry["counts"] and not d["counts"]:
                entry["mapped"] = d["mapped"]
                dets[row.key] = entry
    out = []
    for (acct_key, tid), dets in groups.items():
        listed = list(dets.values())
        if sum(d["counts"] for d in listed) < 2:  # one counting detection overlaps nothing
            continue
        cls, reason = classify(listed, q, max_same)
        t = catalog.techniques.get(tid)
        out.append(Overlap(acct_key, tid, t.name if t else tid, cls, reason, listed))
    order = {"conflicting": 0, "excessive": 1, "beneficial": 2}
    out.sort(key=lambda o: (order[o.classification], o.account, o.technique))
    return out
