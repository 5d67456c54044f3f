"""The ATT&CK catalog as coverage uses it: one release (domain and version) in memory — its
tactics in matrix order and its techniques with parents, tactics, platforms, deprecation,
revocation and how many threat groups use them. Small (about a thousand techniques), so it is
loaded whole; the store keeps every release side by side (bastion.store.catalog).

`Catalog.lookup` says what a technique id of any release stands for in this one: itself, the
technique its revoked-by links lead to (the release's own links, then the re-IDs between
releases in data/attack_crosswalk.yaml, read in both directions), nothing (deprecated), or that
it is unknown — never an exception. Ids are looked up in their own domain: T0xxx are ICS ids,
an id this release does not know is looked up in the other domains' active releases
(`others`), and a caller may name the domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Iterator

import yaml

ICS_ID = re.compile(r"T0\d{3}(\.\d{3})?")


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


@dataclass(frozen=True)
class Crosswalk:
    """Re-IDs between releases of one domain: `forward` old id → (new id, release that
    revoked it); `backward` new id → (old id, that release)."""

    forward: dict[str, tuple[str, str]]
    backward: dict[str, tuple[str, str]]


@cache
def crosswalk(domain: str) -> Crosswalk:
    """The crosswalk of a domain, from bastion/coverage/data/attack_crosswalk.yaml."""
    data = yaml.safe_load(resources.files("bastion.coverage").joinpath(
        "data/attack_crosswalk.yaml").read_text("utf-8")) or {}
    forward: dict[str, tuple[str, str]] = {}
    backward: dict[str, tuple[str, str]] = {}
    for release, links in (data.get(domain) or {}).items():
        release = str(release)
        merged: dict[str, list[str]] = {}
        for old, new in (links.get("revoked_by") or {}).items():
            forward[old] = (new, release)
            merged.setdefault(new, []).append(old)
        chosen = links.get("replaces") or {}
        for new, olds in merged.items():
            backward[new] = (chosen.get(new) or olds[0], release)
    return Crosswalk(forward, backward)


@dataclass(frozen=True)
class Resolution:
    """What a technique id stands for in a release.

    status: `current` (an active technique of the release), `revoked` (resolved to `id` through
    revoked-by links — `via` says which), `deprecated` (known, but stands for no active
    technique: counts toward nothing) or `unknown` (the release does not know it)."""

    given: str
    id: str | None  # the active technique it counts for
    status: str
    domain: str
    version: str | None  # of the release it was looked up in (None: no such release)
    via: str | None = None  # "T1562.001 via revoked-by → T1685"
    backward: bool = False  # resolved by reading a later release's re-IDs backwards

    @property
    def known(self) -> bool:
        return self.status != "unknown"

    def describe(self) -> str:
        where = f"ATT&CK {self.domain} {self.version}" if self.version else f"ATT&CK {self.domain}"
        if self.status == "unknown":
            return (f"{self.given} is unknown to {where}" if self.version
                    else f"{self.given} is an ATT&CK {self.domain} id and no {self.domain} release is active")
        if self.status == "deprecated":
            return f"{self.given} is deprecated or revoked without a successor in {where}"
        if self.status == "revoked":
            return f"{self.via} ({where})"
        return f"{self.given} ({where})"


@dataclass
class Catalog:
    domain: str  # enterprise, ics, mobile
    version: str  # "19", "18.1"
    name: str
    tactics: list[Tactic]  # in matrix order
    techniques: dict[str, Technique] = field(default_factory=dict)
    # The active releases of the other domains (bastion.store.catalog.load_active), where ids
    # this release does not know are looked up.
    others: dict[str, "Catalog"] = field(default_factory=dict, repr=False, compare=False)

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
        """The active technique of this release an id stands for now: itself, or where its
        revoked-by links (and the crosswalk between releases) lead; None when unknown or
        deprecated without a successor."""
        return self.lookup(technique_id, self.domain).id

    def domain_of(self, technique_id: str) -> str:
        """The domain an id belongs to: ICS for T0xxx; else this release's when it (or the
        crosswalk) knows it; else the first other active domain that knows it; else this one."""
        tid = technique_id.strip().upper()
        if ICS_ID.fullmatch(tid):
            return "ics"
        walk = crosswalk(self.domain)
        if tid in self.techniques or tid in walk.forward or tid in walk.backward:
            return self.domain
        for d, other in self.others.items():
            if tid in other.techniques:
                return d
        return self.domain

    def lookup(self, technique_id: str, domain: str | None = None) -> Resolution:
        """What `technique_id` (of any release) stands for, in `domain` (default: the id's own,
        see `domain_of`): never raises; an id nobody knows is `unknown`."""
        tid = technique_id.strip().upper()
        domain = domain or self.domain_of(tid)
        if domain != self.domain:
            other = self.others.get(domain)
            if other is None:
                return Resolution(tid, None, "unknown", domain, None)
            return other.lookup(tid, domain)
        walk = crosswalk(self.domain)
        steps: list[str] = []
        seen: set[str] = set()
        current = tid
        backward = False
        while current not in seen:
            seen.add(current)
            t = self.techniques.get(current)
            if t is not None and t.active:
                if current == tid:
                    return Resolution(tid, tid, "current", domain, self.version)
                return Resolution(tid, current, "revoked", domain, self.version,
                                  f"{tid} via {' → '.join(steps)}", backward)
            if t is not None and t.revoked_by:
                current = t.revoked_by
                steps.append(f"revoked-by → {current}")
            elif current in walk.forward:
                current, release = walk.forward[current]
                steps.append(f"revoked-by (ATT&CK {release}) → {current}")
            elif current in walk.backward:
                current, release = walk.backward[current]
                steps.append(f"revoked-by (ATT&CK {release}, read backwards) → {current}")
                backward = True
            else:
                break
        if not any(x in self.techniques for x in seen):
            return Resolution(tid, None, "unknown", domain, self.version)
        return Resolution(tid, None, "deprecated", domain, self.version)

    def known_ids(self) -> Iterator[str]:
        """Every id a mapping may carry that this release resolves: its own techniques, then
        the crosswalk's ids of other releases."""
        yield from self.techniques
        walk = crosswalk(self.domain)
        for tid in dict.fromkeys((*walk.forward, *walk.backward)):
            if tid not in self.techniques:
                yield tid
