"""The priority score of a risk, 0-100: how urgently to fix it (docs/formats.md#priority).

    technical  T = max(severity weight, CVSS / 10)       info 0, low .25, medium .5, high .75, critical 1
    likelihood L = 1 when in CISA KEV, else the EPSS percentile, else 0
    exposure   E = external 1.0, unknown 0.85, internal 0.7 (the asset the risk sits on)
    priority     = 100 × E × (0.6 T + 0.4 L), + 5 when KEV says ransomware use, at most 100

Severity and CVSS say how bad it is; KEV and EPSS how likely it is to be exploited; exposure
whether an attacker on the internet can get to it. Each input is stored on the risk (or its asset),
so the score can be recomputed and explained.
"""

from __future__ import annotations

from typing import Any

SEVERITY_WEIGHT = {"info": 0.0, "low": 0.25, "medium": 0.5, "high": 0.75, "critical": 1.0}
EXPOSURE_WEIGHT = {"external": 1.0, "unknown": 0.85, "internal": 0.7}


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
