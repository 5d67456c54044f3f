"""Coverage of ATT&CK techniques and tactics by an account's (or a tenant's) detections.

Two methods (docs/coverage.md has the exact definitions):

- `default` counts a mapping when its detection is enabled and healthy — or of unknown health,
  as a file-imported rule nothing checked is (degraded and broken ones do not count) —, the
  mapping is not disputed, and its confidence is >= `min_confidence` (0.6) or it was validated. Mapped ids are
  resolved to the active release (`Catalog.resolve`: a mapping made against an older version
  still counts). A sub-technique's detection also covers its parent, never the reverse. The
  techniques counted are the active (not deprecated, not revoked) ones applicable to the
  account's platforms, narrowed by include/ignore scopes; a technique in several tactics counts
  once in each.
- `plain` is the classic definition, for comparison with other tools: a technique of the active
  release (sub-techniques included) is covered when at least one enabled detection maps to that
  exact id at confidence >= 0.6 (no roll-up, no revoked-id resolution, health and validation
  ignored, all platforms); percentage = covered / all active techniques of the release.

Tenant level (no account): the union over accounts — a technique is covered when any account
covers it (among the techniques applicable to that account), the techniques counted are the
union of the accounts' applicable techniques, and scores add up (a detection belongs to one
account, so detection counts and level-weighted sums add, the highest level is the max).

The store returns one aggregate row per (account, technique) (bastion.store.coverage); this
module only applies the catalog: platforms, scopes, tactics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from bastion.coverage.catalog import Catalog, Technique
from bastion.errors import InvalidValue, NotFound
from bastion.store.coverage import LEVEL_RANK, Account, Qualify

METHODS = ("default", "plain")
AGGREGATIONS = ("count", "max", "weighted")
DEFAULT_MIN_CONFIDENCE = 0.6
TENANT = "*"  # the account of tenant-level results and snapshots
RANK_LEVEL = {r: lvl for lvl, r in LEVEL_RANK.items()}
_TECHNIQUE_ID = re.compile(r"T\d{4}(\.\d{3})?", re.IGNORECASE)


@dataclass
class TechniqueResult:
    id: str
    name: str
    parent: str | None
    tactics: tuple[str, ...]  # the in-scope tactics (short names) it is counted in
    groups: int
    covered: bool = False
    score: float = 0
    count: int = 0  # distinct qualifying detections (sub-techniques' included by roll-up)
    max_level: str | None = None
    weighted: int = 0
    detections: list[dict[str, Any]] | None = None  # the rules behind it, when asked

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["tactics"] = list(self.tactics)
        if self.detections is None:
            del out["detections"]
        return out


@dataclass
class TacticResult:
    id: str
    shortname: str
    name: str
    covered: int
    total: int
    percent: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Coverage:
    method: str
    aggregation: str
    account: str  # an account key, or "*" for the tenant
    accounts: list[str]
    domain: str
    version: str
    min_confidence: float
    platforms: list[str] | None  # None: every platform
    include: list[str]
    ignore: list[str]
    techniques: dict[str, TechniqueResult]  # every counted technique, covered or not
    tactics: list[TacticResult]  # matrix order
    overall: dict[str, Any]  # {covered, total, percent}

    def covered(self) -> set[str]:
        return {t.id for t in self.techniques.values() if t.covered}

    def tactic(self, ref: str) -> TacticResult | None:
        low = ref.strip().lower()
        for t in self.tactics:
            if low in (t.id.lower(), t.shortname, t.name.lower()):
                return t
        return None

    def as_dict(self, techniques: bool = False) -> dict[str, Any]:
        out = {
            "account": self.account, "accounts": self.accounts, "method": self.method,
            "aggregation": self.aggregation, "min_confidence": self.min_confidence,
            "attack": {"domain": self.domain, "version": self.version},
            "platforms": self.platforms, "include": self.include, "ignore": self.ignore,
            "overall": self.overall, "tactics": [t.as_dict() for t in self.tactics],
        }
        if techniques:
            out["techniques"] = [t.as_dict() for t in self.techniques.values()]
        return out


def percent(covered: int, total: int) -> float:
    return round(100.0 * covered / total, 2) if total else 0.0


# -- the technique id map the store aggregates through -------------------------------------------


def technique_map(catalog: Catalog, method: str = "default") -> list[tuple[str, str]]:
    """(id a mapping may carry, active technique it counts for). default: every id of the
    release and of other releases (the crosswalk), revoked ones resolved, and a sub-technique
    also counting for its parent. plain:
    each active id for itself only."""
    if method == "plain":
        return [(t.id, t.id) for t in catalog.techniques.values() if t.active]
    pairs = []
    for tid in catalog.known_ids():  # ids of this release and of others (the crosswalk)
        target = catalog.resolve(tid)
        if target is None:
            continue
        pairs.append((tid, target))
        parent = catalog.techniques[target].parent
        if parent and (up := catalog.resolve(parent)):
            pairs.append((tid, up))
    return pairs


# -- scopes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scopes:
    """include/ignore: technique ids (a technique id also selects its sub-techniques) and
    tactics (id, short name or name). A (technique, tactic) pair is counted when include is
    empty or matches it, and ignore does not."""

    include_techniques: frozenset[str] = frozenset()
    include_tactics: frozenset[str] = frozenset()
    ignore_techniques: frozenset[str] = frozenset()
    ignore_tactics: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.include_techniques or self.include_tactics or self.ignore_techniques
                    or self.ignore_tactics)

    def counts(self, t: Technique, tactic: str | None) -> bool:
        def tech_match(ids):
            return t.id in ids or (t.parent is not None and t.parent in ids)

        if self.include_techniques or self.include_tactics:
            if not (tech_match(self.include_techniques) or tactic in self.include_tactics):
                return False
        return not (tech_match(self.ignore_techniques) or tactic in self.ignore_tactics)


def parse_scopes(catalog: Catalog, include: Iterable[str] | None,
                 ignore: Iterable[str] | None) -> Scopes:
    def split(items):
        techs, tactics = set(), set()
        for raw in items or ():
            for item in filter(None, (p.strip() for p in str(raw).split(","))):
                if _TECHNIQUE_ID.fullmatch(item):
                    tid = item.upper()
                    if tid not in catalog.techniques:
                        raise InvalidValue(f"unknown technique {tid} in ATT&CK {catalog.domain} "
                                           f"{catalog.version}")
                    techs.add(tid)
                    continue
                tactic = catalog.tactic(item) or catalog.tactic(item.lower())
                if tactic is None:
                    raise InvalidValue(f"{item!r} is neither a technique id nor a tactic of "
                                       f"ATT&CK {catalog.domain} {catalog.version}")
                tactics.add(tactic.shortname)
        return frozenset(techs), frozenset(tactics)

    it, ia = split(include)
    gt, ga = split(ignore)
    return Scopes(it, ia, gt, ga)


# -- accounts -------------------------------------------------------------------------------------


def find_account(tenant, ref: str) -> Account:
    """An account by key (`#cloud_account#aws#1234`), `provider/identifier`, identifier or
    name; NotFound when none matches, InvalidValue when several do."""
    ref = ref.strip()
    every = tenant.coverage.accounts()
    for test in (lambda a: a.key == ref,
                 lambda a: f"{a.provider}/{a.identifier}".lower() == ref.lower()
                 or f"{a.provider}:{a.identifier}".lower() == ref.lower(),
                 lambda a: a.identifier == ref,
                 lambda a: (a.name or "").lower() == ref.lower()):
        found = [a for a in every if test(a)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidValue(f"{ref!r} names several accounts: use a key ("
                               + ", ".join(a.key for a in found[:5]) + ")")
    raise NotFound(f"no cloud account {ref!r} (see `bastion account list`)")


def _account_arg(tenant, account) -> Account | None:
    if account is None or account == TENANT:
        return None
    if isinstance(account, Account):
        return account
    return find_account(tenant, account)


# -- computation ----------------------------------------------------------------------------------


def _check(method: str, aggregation: str) -> None:
    if method not in METHODS:
        raise InvalidValue(f"unknown coverage method {method!r}; methods: {', '.join(METHODS)}")
    if aggregation not in AGGREGATIONS:
        raise InvalidValue(f"unknown aggregation {aggregation!r}; aggregations: "
                           + ", ".join(AGGREGATIONS))


class _Plan:
    """What one computation counts: the qualifying rule, the id map, the scopes and the
    applicable techniques per platform set (cached: accounts share a handful of them)."""

    def __init__(self, catalog: Catalog, method: str, aggregation: str, min_confidence: float,
                 include, ignore):
        _check(method, aggregation)
        self.catalog, self.method, self.aggregation = catalog, method, aggregation
        if method == "plain":
            if include or ignore:
                raise InvalidValue("the plain method is the fixed classic definition: it takes "
                                   "no --include/--ignore scopes")
            if min_confidence != DEFAULT_MIN_CONFIDENCE:
                raise InvalidValue("the plain method is the fixed classic definition: its "
                                   "confidence threshold is 0.6")
            self.q = Qualify.plain()
        else:
            if not 0 <= min_confidence <= 1:
                raise InvalidValue("--min-confidence must be between 0 and 1")
            self.q = Qualify(min_confidence=min_confidence)
        self.min_confidence = min_confidence
        self.include = sorted(include or [])
        self.ignore = sorted(ignore or [])
        self.scopes = parse_scopes(catalog, include, ignore)
        self.pairs = technique_map(catalog, method)
        self.tactic_names = [t.shortname for t in catalog.tactics]
        self._applicable: dict[Any, dict[str, tuple[str, ...]]] = {}

    def platforms_of(self, account: Account | None) -> list[str] | None:
        if self.method == "plain" or account is None:
            return None
        return account.platforms or None

    def applicable(self, platforms: list[str] | None) -> dict[str, tuple[str, ...]]:
        """technique id → the in-scope tactics it counts in (an empty tuple: counted overall
        only, when it has no tactic of the matrix), for the techniques of these platforms."""
        cache_key = tuple(sorted(p.lower() for p in platforms)) if platforms else None
        hit = self._applicable.get(cache_key)
        if hit is not None:
            return hit
        known = set(self.tactic_names)
        out: dict[str, tuple[str, ...]] = {}
        for t in self.catalog.techniques.values():
            if not t.active:
                continue
            # A technique listing no platform applies everywhere.
            if platforms and t.platforms and not ({p.lower() for p in platforms}
                                                  & {p.lower() for p in t.platforms}):
                continue
            tactics = [x for x in t.tactics if x in known]
            if tactics:
                counted = tuple(x for x in tactics if self.scopes.counts(t, x))
                if counted:
                    out[t.id] = counted
            elif self.scopes.counts(t, None):
                out[t.id] = ()
        self._applicable[cache_key] = out
        return out

    def score(self, count: int, max_rank: int, weighted: int) -> float:
        return {"count": count, "max": max_rank, "weighted": weighted}[self.aggregation]

    def build(self, account: str, accounts: list[str], platforms: list[str] | None,
              counted: dict[str, tuple[str, ...]], hits: dict[str, list[int]]) -> Coverage:
        cat = self.catalog
        techniques: dict[str, TechniqueResult] = {}
        for tid, tactics in counted.items():
            t = cat.techniques[tid]
            r = TechniqueResult(t.id, t.name, t.parent, tactics, t.groups)
            h = hits.get(tid)
            if h:
                r.covered, r.count, r.weighted = True, h[0], h[2]
                r.max_level = RANK_LEVEL.get(h[1])
                r.score = self.score(*h)
            techniques[tid] = r
        by_tactic = {x: [0, 0] for x in self.tactic_names}
        for r in techniques.values():
            for x in r.tactics:
                by_tactic[x][1] += 1
                by_tactic[x][0] += r.covered
        tactics = []
        for tac in cat.tactics:
            c, n = by_tactic[tac.shortname]
            if n == 0 and not self.scopes.empty:
                continue  # scoped out entirely
            tactics.append(TacticResult(tac.id, tac.shortname, tac.name, c, n, percent(c, n)))
        covered = sum(r.covered for r in techniques.values())
        overall = {"covered": covered, "total": len(techniques),
                   "percent": percent(covered, len(techniques))}
        return Coverage(self.method, self.aggregation, account, accounts, cat.domain, cat.version,
                        self.min_confidence, platforms, self.include, self.ignore, techniques,
                        tactics, overall)


def _union_platforms(accounts: Sequence[Account]) -> list[str] | None:
    if not accounts or any(not a.platforms for a in accounts):
        return None
    seen: dict[str, str] = {}
    for a in accounts:
        for p in a.platforms or ():
            seen.setdefault(p.lower(), p)
    return sorted(seen.values())


def compute_accounts(tenant, catalog: Catalog, *, accounts: Sequence[str] | None = None,
                     method: str = "default", min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                     aggregation: str = "count", include=None, ignore=None,
                     details: bool = False) -> dict[str, Coverage]:
    """Coverage of each account (all of the tenant's, or the listed keys), from one statement."""
    plan = _Plan(catalog, method, aggregation, min_confidence, include, ignore)
    accts = {a.key: a for a in tenant.coverage.accounts(accounts)}
    hits: dict[str, dict[str, list[int]]] = {k: {} for k in accts}
    for agg in tenant.coverage.aggregates(plan.pairs, plan.q, accounts=accounts):
        hits.setdefault(agg.account, {})[agg.technique] = [agg.count, agg.max_rank, agg.weighted]
    out = {}
    for key, account_hits in hits.items():
        acct = accts.get(key) or Account(key, "other", key, None, None, "medium", None)
        platforms = plan.platforms_of(acct)
        counted = plan.applicable(platforms)
        kept = {t: h for t, h in account_hits.items() if t in counted}
        out[key] = plan.build(key, [key], platforms, counted, kept)
    if details:
        _attach_details(tenant, plan, out.values(), list(out))
    return out


def compute(tenant, catalog: Catalog, *, account: str | Account | None = None,
            method: str = "default", min_confidence: float = DEFAULT_MIN_CONFIDENCE,
            aggregation: str = "count", include=None, ignore=None,
            details: bool = False) -> Coverage:
    """Coverage of one account (a key, `provider/identifier`, identifier or name) or, without
    one, of the whole tenant (the union over its accounts). `details` lists the detections
    behind every covered technique."""
    acct = _account_arg(tenant, account)
    if acct is not None:
        return compute_accounts(tenant, catalog, accounts=[acct.key], method=method,
                                min_confidence=min_confidence, aggregation=aggregation,
                                include=include, ignore=ignore, details=details)[acct.key]
    per = compute_accounts(tenant, catalog, method=method, min_confidence=min_confidence,
                           aggregation=aggregation, include=include, ignore=ignore)
    return tenant_union(tenant, catalog, per, method=method, min_confidence=min_confidence,
                        aggregation=aggregation, include=include, ignore=ignore, details=details)


def tenant_union(tenant, catalog: Catalog, per_account: dict[str, Coverage], *,
                 method: str = "default", min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 aggregation: str = "count", include=None, ignore=None,
                 details: bool = False) -> Coverage:
    """The tenant-level coverage from the accounts' results: counted techniques and covered
    techniques are unions; counts and weighted sums add, the highest level is the max."""
    plan = _Plan(catalog, method, aggregation, min_confidence, include, ignore)
    accts = tenant.coverage.accounts(list(per_account)) if per_account else []
    platforms = plan.platforms_of(None) if method == "plain" else _union_platforms(accts)
    counted: dict[str, tuple[str, ...]] = {}
    hits: dict[str, list[int]] = {}
    if not per_account:
        counted = dict(plan.applicable(None))
    for cov in per_account.values():
        for tid, r in cov.techniques.items():
            counted.setdefault(tid, r.tactics)
            if r.covered:
                h = hits.setdefault(tid, [0, 0, 0])
                h[0] += r.count
                h[1] = max(h[1], LEVEL_RANK.get(r.max_level or "", 0))
                h[2] += r.weighted
    # keep the catalog's order of techniques
    counted = {t: counted[t] for t in catalog.techniques if t in counted}
    cov = plan.build(TENANT, sorted(per_account), platforms, counted, hits)
    if details:
        _attach_details(tenant, plan, [cov], None, per_account)
    return cov


def _attach_details(tenant, plan: _Plan, results: Iterable[Coverage],
                    accounts: list[str] | None,
                    per_account: dict[str, Coverage] | None = None) -> None:
    """Fill `detections` of covered techniques: the rules behind each (one entry per
    detection, with the ids its mappings carry)."""
    results = list(results)
    by_account = {c.account: c for c in results}
    for res in results:
        for r in res.techniques.values():
            if r.covered:
                r.detections = []
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in tenant.coverage.detections(plan.pairs, plan.q, accounts=accounts):
        res = by_account.get(row.account) or by_account.get(TENANT)
        if res is None:
            continue
        if res.account == TENANT:  # only where the technique counts for that account
            acct_cov = (per_account or {}).get(row.account)
            if acct_cov is None or not acct_cov.techniques.get(row.technique, None) \
                    or not acct_cov.techniques[row.technique].covered:
                continue
        r = res.techniques.get(row.technique)
        if r is None or not r.covered:
            continue
        ident = (res.account, row.technique, row.key)
        entry = seen.get(ident)
        if entry is None:
            entry = seen[ident] = {
                "key": row.key, "account": row.account, "rule_id": row.rule_id, "name": row.name,
                "type": row.type, "service": row.service, "level": row.level,
                "health": row.health, "status": row.status, "mapped": [],
                "confidence": row.confidence, "validation": row.validation}
            r.detections.append(entry)
        if row.mapped not in entry["mapped"]:
            entry["mapped"].append(row.mapped)
            entry["confidence"] = max(entry["confidence"], row.confidence)
