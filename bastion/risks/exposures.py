"""Unwatched exposures: open risks whose techniques no working detection of their asset's cloud
account would see (docs/cloud.md#unwatched-exposures).

For every open risk (status triage or open) with techniques (bastion.risks.techniques.of_risk:
the CTID KEV mappings of its CVE, the ATT&CK tags of its nuclei template), on an asset:

- the asset's account is `#cloud_account#<provider>#<account>` from the asset's `provider` and
  `account` fields (`account` may also be written `aws:123456789012`; set by discovery, by
  `bastion import … --account` or by an analyst); an asset without one belongs to the tenant's
  default account `other:default`, where detections imported without `--account` land;
- a technique is watched in that account when a detection there counts for it under the
  coverage rule (`bastion coverage report`: enabled, healthy or unknown, the mapping not disputed and
  confident or validated; revoked ids resolved; a sub-technique's detection covers its parent);
- the risk is listed when at least one of its techniques is unwatched (`unseen` when none is
  watched), each unwatched technique with what would cover it: the services of the account's
  cloud the stored CTID reference maps to it (`bastion discover reference`), best score first,
  and the indicators (API events) a rule could match — a sub-technique's also for its parent.

Ranked by score = priority × criticality weight (low 1, medium 2, high 3, critical 4; the
asset's criticality, else medium), then risk key. `exposed_techniques` is the same answer per
technique: how many open risks (and which accounts) expose it unwatched — the coverage report's
section "techniques exposed by open risks".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bastion.coverage import indicators as ind
from bastion.coverage.compute import DEFAULT_MIN_CONFIDENCE, technique_map
from bastion.coverage.inventory import DEFAULT_ACCOUNT
from bastion.discovery import reference
from bastion.risks.priority import asset_of
from bastion.risks.techniques import of_risk
from bastion.schema.batch import key_for
from bastion.schema.kinds import CLOUD_PROVIDERS
from bastion.store.coverage import Qualify

OPEN = ("triage", "open")
WEIGHT = {"low": 1, "medium": 2, "high": 3, "critical": 4}
HINTS = 5  # services and indicators named per technique


@dataclass
class Technique:
    id: str
    name: str | None
    roles: list[str]
    watched: bool
    would_cover: list[str] = field(default_factory=list)


@dataclass
class Exposure:
    risk: str
    name: str
    title: str | None
    cve: str | None
    severity: str
    priority: float
    status: str
    asset: str | None
    criticality: str
    account: str
    score: float
    unseen: bool  # no technique of the risk is watched
    techniques: list[Technique]

    @property
    def unwatched(self) -> list[Technique]:
        return [t for t in self.techniques if not t.watched]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def account_of(asset_values: dict[str, Any] | None) -> str:
    """The cloud account key an asset belongs to (the default account when it names none)."""
    if not asset_values or not asset_values.get("account"):
        return DEFAULT_ACCOUNT
    ident = str(asset_values["account"]).strip()
    provider = asset_values.get("provider")
    head, sep, rest = ident.partition(":")
    if sep and head.lower() in CLOUD_PROVIDERS and rest:
        provider, ident = head.lower(), rest
    return key_for("cloud_account", provider=provider or "other", identifier=ident)


def _watched(tenant, catalog, accounts: list[str], min_confidence: float) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {a: set() for a in accounts}
    if not accounts:
        return out
    for agg in tenant.coverage.aggregates(technique_map(catalog), Qualify(min_confidence=min_confidence),
                                          accounts=accounts):
        out.setdefault(agg.account, set()).add(agg.technique)
    return out


class _Hints:
    """What would cover a technique, per provider: CTID reference services, indicators."""

    def __init__(self, tenant, catalog):
        self.tenant, self.catalog = tenant, catalog
        self._by_provider: dict[str, dict[str, list[str]]] = {}

    def _load(self, provider: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        via_sub: dict[str, list[str]] = {}  # a sub-technique's detection covers its parent: after

        def add(rid: str, hint: str) -> None:
            out.setdefault(rid, []).append(hint)
            parent = self.catalog.techniques[rid].parent
            if parent:
                via_sub.setdefault(parent, []).append(hint)

        providers = [p for p in ("aws", "azure", "gcp") if provider in (p, "other")]
        for p in providers:
            for tid, services in reference.covering(reference.load(self.tenant, p)).items():
                rid = self.catalog.resolve(tid)
                for name, conf in services if rid else ():
                    add(rid, f"{name} ({p}, CTID {conf:g})")
        for rule in ind.shipped():
            if provider in (rule.provider, "other"):
                rid = rule.technique_in(self.catalog)
                if rid:
                    add(rid, f"a rule on {rule.provider} {rule.field} {rule.value}")
        for parent, hints in via_sub.items():
            out.setdefault(parent, []).extend(hints)
        return out

    def of(self, provider: str, tid: str) -> list[str]:
        if provider not in self._by_provider:
            self._by_provider[provider] = self._load(provider)
        seen = dict.fromkeys(self._by_provider[provider].get(tid, ()))
        return list(seen)[:HINTS]


def exposures(tenant, catalog, *, account: str | None = None,
              min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[Exposure]:
    """Open risks with unwatched techniques, highest score first; `account` (a key) keeps the
    risks of that account's assets only."""
    found: list[tuple[Any, dict[str, list[str]]]] = []
    for rec in tenant.iterate("risk", where=["status=triage,open"]):
        techniques = of_risk(rec.values, rec.properties, catalog)
        if techniques:
            found.append((rec, techniques))
    assets = tenant.get_many(sorted({a for rec, _ in found if (a := asset_of(rec.values.get("target")))}))
    placed = []
    for rec, techniques in found:
        asset_key = asset_of(rec.values.get("target"))
        asset = assets.get(asset_key) if asset_key else None
        acct = account_of(asset.values if asset else None)
        if account is None or acct == account:
            placed.append((rec, techniques, asset_key, asset, acct))
    accounts = sorted({p[4] for p in placed})
    stored = {a.key: a for a in tenant.coverage.accounts(accounts)} if accounts else {}
    watched = _watched(tenant, catalog, [a for a in accounts if a in stored], min_confidence)
    hints = _Hints(tenant, catalog)
    out = []
    for rec, techniques, asset_key, asset, acct in placed:
        seen = watched.get(acct, set())
        provider = stored[acct].provider if acct in stored else "other"
        rows = []
        for tid, roles in sorted(techniques.items()):
            t = catalog.techniques.get(tid)
            is_watched = tid in seen
            rows.append(Technique(tid, t.name if t else None, roles, is_watched,
                                  [] if is_watched else hints.of(provider, tid)))
        if all(r.watched for r in rows):
            continue
        v = rec.values
        crit = (asset.values.get("criticality") if asset else None) or "medium"
        priority = float(v.get("priority") or 0)
        out.append(Exposure(rec.key, v["name"], v.get("title"), v.get("cve"), v["severity"], priority,
                            v["status"], asset_key, crit, acct, round(priority * WEIGHT[crit], 1),
                            not any(r.watched for r in rows), rows))
    out.sort(key=lambda e: (-e.score, e.risk))
    return out


def exposed_techniques(items: list[Exposure]) -> list[dict[str, Any]]:
    """Per unwatched technique: the open risks exposing it and their accounts, most risks first."""
    per: dict[str, dict[str, Any]] = {}
    for e in items:
        for t in e.unwatched:
            row = per.setdefault(t.id, {"technique": t.id, "name": t.name, "risks": 0, "accounts": set(),
                                        "top_score": 0.0})
            row["risks"] += 1
            row["accounts"].add(e.account)
            row["top_score"] = max(row["top_score"], e.score)
    rows = sorted(per.values(), key=lambda r: (-r["risks"], -r["top_score"], r["technique"]))
    for r in rows:
        r["accounts"] = sorted(r["accounts"])
    return rows
