"""The CI gate (`bastion coverage check`, `/v1/coverage/check`): a coverage result against a
minimum percentage, overall or per tactic. A failed gate is an answer, not an error: the CLI
exits with GATE_FAILED, the API answers `passed: false`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from bastion.coverage.compute import Coverage
from bastion.errors import InvalidValue


@dataclass
class Checked:
    what: str  # "overall (4/8)", "tactic persistence (2/4)"
    tactic: str | None  # the tactic's short name; None for the overall figure
    covered: int
    total: int
    percent: float
    passed: bool


@dataclass
class Gate:
    min_percent: float
    checked: list[Checked] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checked)

    @property
    def message(self) -> str:
        """The one line the CLI prints: what failed, or what passed."""
        if self.passed:
            text = "; ".join(f"{c.what} {c.percent:.2f}%" for c in self.checked)
            return f"OK: coverage at or above {self.min_percent:g}%: {text}"
        text = "; ".join(f"{c.what} {c.percent:.2f}%" for c in self.checked if not c.passed)
        return f"FAIL: coverage below {self.min_percent:g}%: {text}"

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "min_percent": self.min_percent, "message": self.message,
                "checked": [dict(c.__dict__) for c in self.checked]}


def check(cov: Coverage, min_percent: float, tactics: Iterable[str] | None = None) -> Gate:
    """The gate on `cov`: each tactic named (id, short name or name) or, without any, the
    overall figure must be at or above `min_percent`. An unknown tactic is InvalidValue."""
    if not 0 <= min_percent <= 100:
        raise InvalidValue(f"the minimum percentage must be between 0 and 100, not {min_percent:g}",
                           "min_percent")
    gate = Gate(min_percent)
    tactics = list(tactics or [])
    for ref in tactics:
        t = cov.tactic(ref)
        if t is None:
            raise InvalidValue(f"unknown tactic {ref!r} (or not counted under these scopes)")
        gate.checked.append(Checked(f"tactic {t.shortname} ({t.covered}/{t.total})", t.shortname,
                                    t.covered, t.total, t.percent, t.percent >= min_percent))
    if not tactics:
        o = cov.overall
        gate.checked.append(Checked(f"overall ({o['covered']}/{o['total']})", None, o["covered"],
                                    o["total"], o["percent"], o["percent"] >= min_percent))
    return gate
