"""The ATT&CK catalog as coverage uses it: one release (domain and version) in memory — its
tactics in matrix order and its techniques with parents, tactics, platforms, deprecation,
revocation and how many threat groups use them. Small (about a thousand techniques), so it is
loaded whole; the store keeps every release side by side (bastion.store.catalog).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tactic:
    id: str  # TA0001
    shortname: str  # initial-access
    name: str
    ordinal: int  # position in the matrix, from 0


@dataclass(frozen=True)
class Technique:
    id: str  # T1078 or T1078.004
    name: str
    parent: str | None  # a sub-technique's technique
    tactics: tuple[str, ...]  # tactic short names
    platforms: tuple[str, ...]
    deprecated: bool = False
    revoked: bool = False
    revoked_by: str | None = None  # the technique id that replaced it
    groups: int = 0  # threat groups known to use it (0 when the release has no groups)

    @property
    def active(self) -> bool:
        return not (self.deprecated or self.revoked)


@dataclass
class Catalog:
    domain: str  # enterprise, ics, mobile
    version: str  # "19", "18.1"
    name: str
    tactics: list[Tactic]  # in matrix order
    techniques: dict[str, Technique] = field(default_factory=dict)

    def tactic(self, ref: str) -> Tactic | None:
        """A tactic by id (TA0001) or short name (initial-access)."""
        for t in self.tactics:
            if ref in (t.id, t.shortname) or ref.lower() == t.name.lower():
                return t
        return None

    def active_techniques(self, platforms: list[str] | None = None) -> list[Technique]:
        """Techniques that are neither deprecated nor revoked, on any of `platforms` (all when
        None; platform names compare case-insensitively)."""
        wanted = {p.lower() for p in platforms} if platforms else None
        return [t for t in self.techniques.values() if t.active
                and (wanted is None or wanted & {p.lower() for p in t.platforms})]

    def resolve(self, technique_id: str) -> str | None:
        """The active technique an id stands for now: itself, or where its revoked-by links
        lead; None when unknown or deprecated without a successor."""
        seen = set()
        current = technique_id
        while current not in seen:
            seen.add(current)
            t = self.techniques.get(current)
            if t is None:
                return None
            if t.active:
                return t.id
            if not t.revoked_by:
                return None
            current = t.revoked_by
        return None
