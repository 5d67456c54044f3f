"""The priority score of a risk, 0-100: how urgently to fix it (docs/formats.md#priority).

    technical  T = max(severity weight, CVSS / 10)       info 0, low .25, medium .5, high .75, critical 1
    likelihood L = 1 when in CISA KEV, else the EPSS percentile, else 0
    exposure   E = external 1.0, unknown 0.85, internal 0.7 (the asset the risk sits on)
    priority     = 100 × E × (0.6 T + 0.4 L), + 5 when KEV says ransomware use, at most 100

Severity and CVSS say how bad it is; KEV and EPSS how likely it is to be exploited; exposure
whether an attacker on the internet can get to it. Each input is stored on the risk (or its asset),
so the score can be recomputed and explained. The write path keeps it current when an asset's
exposure (ASSET_INPUTS) changes: the risks on the asset and on its ports are re-ranked in the same
transaction. The asset's criticality does not weigh in the score (it marks crown jewels for attack
paths); the score is the urgency of the finding itself.

Sorted by priority, open risks (triage, open) come first, highest first; closed ones (accepted,
remediated, deleted) follow in priority order: they keep their score for when they re-open.
"""

from __future__ import annotations

from typing import Any

SEVERITY_WEIGHT = {"info": 0.0, "low": 0.25, "medium": 0.5, "high": 0.75, "critical": 1.0}
EXPOSURE_WEIGHT = {"external": 1.0, "unknown": 0.85, "internal": 0.7}
ASSET_INPUTS = ("exposure",)  # the asset's fields the score reads: a change re-ranks its risks


def priority(risk: dict[str, Any], exposure: str | None) -> float:
    technical = SEVERITY_WEIGHT.get(risk.get("severity") or "info", 0.0)
    if risk.get("cvss") is not None:
        technical = max(technical, float(risk["cvss"]) / 10)
    if risk.get("kev"):
        likelihood = 1.0
    elif risk.get("epss_percentile") is not None:
        likelihood = float(risk["epss_percentile"])
    else:
        likelihood = 0.0
    score = 100 * EXPOSURE_WEIGHT.get(exposure or "unknown", 0.85) * (0.6 * technical + 0.4 * likelihood)
    if risk.get("kev_ransomware"):
        score += 5
    return round(min(score, 100.0), 1)


def asset_of(target: str | None) -> str | None:
    """The asset whose exposure counts for a risk on `target`: the asset itself, a port's asset;
    none for a technology."""
    from bastion.schema.keys import kind_of, parse_key

    if not target:
        return None
    kind = kind_of(target)
    if kind == "asset":
        return target
    return parse_key(target).parts["asset"] if kind == "port" else None
