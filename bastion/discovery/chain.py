"""Health as a chain of links: a detection is healthy only when every link it needs works.

Each link that fails is named in the issue it leaves (`trail: no trail delivers to log group
/x in us-east-1`). `broken`: the detection cannot fire (a stopped trail, a rule switched off, an
alarm that notifies nobody); `degraded`: it fires but sees or tells less than it should (a
single-region trail, a GuardDuty feature off, a deprecated API); `unknown`: a link could not
be read (an API error). The worst state wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RANK = {"healthy": 0, "unknown": 1, "degraded": 2, "broken": 3}


@dataclass
class Chain:
    issues: list[str] = field(default_factory=list)
    state: str = "healthy"

    def _add(self, state: str, link: str, reason: str) -> None:
        issue = f"{link}: {reason}"
        if issue not in self.issues:
            self.issues.append(issue)
        if RANK[state] > RANK[self.state]:
            self.state = state

    def broken(self, link: str, reason: str) -> None:
        self._add("broken", link, reason)

    def degraded(self, link: str, reason: str) -> None:
        self._add("degraded", link, reason)

    def unknown(self, link: str, reason: str) -> None:
        self._add("unknown", link, reason)

    @property
    def health(self) -> tuple[str, list[str] | None]:
        return self.state, (list(self.issues) if self.issues else None)


def deprecated_apis(chain: Chain, raw: str) -> None:
    """Deprecated or retired APIs a configuration uses (the registry `bastion detections
    check-deprecated` reads) degrade it, one issue each."""
    from bastion.coverage.detections import shipped_registry

    for api in shipped_registry():
        if api.matches(raw):
            chain.degraded("api", api.issue())
