"""Cloud accounts, hand-made mappings and their validation, detection health and the
deprecated-API check: the changes an analyst makes, each through the one write path (so each is
an event with its actor), each refusing a concurrent change (expected_version)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bastion.coverage.catalog import Catalog
from bastion.coverage.inventory import account_key
from bastion.errors import InvalidValue, NotFound
from bastion.schema import normalize as norm
from bastion.schema.batch import Batch, Entity, key_for, prepare_values
from bastion.schema.keys import parse_key
from bastion.schema.kinds import HEALTH_STATES, REGISTRY

SOURCE = "cli"


def _get(tenant, key: str, kind: str):
    try:
        if parse_key(key).kind != kind:
            raise InvalidValue(f"{key} is not a {kind} key")
    except InvalidValue:
        raise
    rec = tenant.get(key)
    if rec is None:
        raise NotFound(f"no {kind} {key}")
    return rec


def _write(tenant, kind: str, key: str, values: dict[str, Any], props, *, actor: str, version: int | None,
           note: str | None = None, source: str = SOURCE):
    prepared = prepare_values(REGISTRY.entity(kind), values)
    batch = Batch(entities=[Entity(kind, prepared, props, version, (prepared, key), note)])
    tenant.apply(batch, actor=actor, source=source, observed=False)
    return tenant.get(key)


# -- accounts -----------------------------------------------------------------------------------


def add_account(tenant, *, actor: str, provider: str, identifier: str, name: str | None = None,
                environment: str | None = None, criticality: str | None = None,
                regions: list[str] | None = None, platforms: list[str] | None = None):
    """Create a cloud account, or update the fields given of an existing one."""
    key = key_for("cloud_account", provider=provider, identifier=identifier)
    old = tenant.get(key)
    given = {"name": name, "environment": environment, "criticality": criticality,
             "regions": list(regions) if regions else None,
             "platforms": list(platforms) if platforms else None}
    values = dict(old.values) if old else {"provider": provider, "identifier": identifier}
    values.update({k: v for k, v in given.items() if v is not None})
    return _write(tenant, "cloud_account", key, values, old.properties if old else None, actor=actor,
                  version=old.version if old else None)


# -- mappings -----------------------------------------------------------------------------------


def check_technique(technique: str, catalog: Catalog | None) -> tuple[str, str | None]:
    """(normalized id, note): unknown ids are refused; revoked ones resolve to their successor."""
    tid = norm.attack_technique(technique)
    if catalog is None:
        return tid, None
    r = catalog.lookup(tid)  # its own domain, revoked-by links and the crosswalk
    if r.status == "unknown":
        raise InvalidValue(f"unknown ATT&CK technique {tid} (" + (
            f"not in ATT&CK {r.domain} {r.version})" if r.version else f"no active ATT&CK {r.domain} release)"))
    if r.id and r.id != tid:
        return r.id, r.describe()
    return tid, None


def add_mapping(tenant, detection: str, technique: str, *, actor: str, confidence: float = 1.0,
                rationale: str | None = None, catalog: Catalog | None = None):
    """An analyst's mapping (method analyst, mapped_by the actor, validation pending). A mapping
    made by hand is never changed or removed by imports."""
    _get(tenant, detection, "detection")
    tid, note = check_technique(technique, catalog)
    if note:
        rationale = f"{rationale}; {note}" if rationale else note
    values = {"detection": detection, "technique": tid, "confidence": confidence, "method": "analyst",
              "mapped_by": actor, "rationale": rationale, "validation": "pending",
              "attack_version": catalog.version if catalog else None}
    key = key_for("mapping", **values)
    old = tenant.get(key)
    if old is not None and old.values.get("attack_version") and values["attack_version"] is None:
        values["attack_version"] = old.values["attack_version"]
    return _write(tenant, "mapping", key, values, old.properties if old else None, actor=actor,
                  version=old.version if old else None)


def set_validation(tenant, key: str, state: str, *, actor: str, rationale: str | None = None,
                   source: str = SOURCE):
    """validated | disputed | pending, with the reason kept on the event (and in the rationale
    when given)."""
    if state not in ("pending", "validated", "disputed"):
        raise InvalidValue("validation must be pending, validated or disputed")
    rec = _get(tenant, key, "mapping")
    values = dict(rec.values, validation=state)
    if rationale:
        values["rationale"] = rationale[:2000]
    return _write(tenant, "mapping", key, values, rec.properties, actor=actor, version=rec.version,
                  note=f"{state} by {actor}" + (f": {rationale}" if rationale else ""), source=source)


# -- health -------------------------------------------------------------------------------------


def set_health(tenant, key: str, health: str, *, actor: str, issues: list[str] | None = None,
               at: datetime | None = None):
    """Record a detection's health (healthy/degraded/broken/unknown), its issues (replacing the
    list; none given keeps it unless healthy) and when it was checked."""
    if health not in HEALTH_STATES:
        raise InvalidValue(f"health must be one of {', '.join(HEALTH_STATES)}")
    rec = _get(tenant, key, "detection")
    values = dict(rec.values, health=health, last_validated=at or datetime.now(timezone.utc))
    if issues:
        values["health_issues"] = list(issues)
    elif health == "healthy":
        values["health_issues"] = None
    return _write(tenant, "detection", key, values, rec.properties, actor=actor, version=rec.version,
                  note="; ".join(issues) if issues else None)


@dataclass(frozen=True)
class DeprecatedApi:
    id: str
    provider: str
    pattern: str
    regex: bool
    retired: str
    replacement: str
    reference: str

    def matches(self, raw: str) -> bool:
        if self.regex:
            return re.search(self.pattern, raw, re.IGNORECASE) is not None
        return self.pattern.lower() in raw.lower()

    def issue(self) -> str:
        return (f"uses deprecated API {self.id} (retired {self.retired}; replacement: "
                f"{self.replacement}; {self.reference})")


def parse_registry(text: str, origin: str) -> list[DeprecatedApi]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidValue(f"{origin}: invalid YAML ({str(exc).splitlines()[0]})") from None
    items = doc.get("apis") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InvalidValue(f"{origin}: expected a list under `apis:`")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("id") or not item.get("pattern"):
            raise InvalidValue(f"{origin}: apis[{i}]: needs at least id and pattern")
        if item.get("regex"):
            try:
                re.compile(item["pattern"])
            except re.error as exc:
                raise InvalidValue(f"{origin}: apis[{i}]: bad regular expression ({exc})") from None
        out.append(DeprecatedApi(str(item["id"]), str(item.get("provider") or ""), str(item["pattern"]),
                                 bool(item.get("regex")), str(item.get("retired") or "?"),
                                 str(item.get("replacement") or "-"), str(item.get("reference") or "-")))
    return out


@cache
def shipped_registry() -> tuple[DeprecatedApi, ...]:
    text = resources.files("bastion.coverage").joinpath("data/deprecated_apis.yaml").read_text("utf-8")
    return tuple(parse_registry(text, "deprecated_apis.yaml"))


def check_deprecated(tenant, *, actor: str, registry: str | None = None, apply: bool = False,
                     account: str | None = None) -> list[tuple[Any, list[DeprecatedApi]]]:
    """Detections whose raw configuration mentions a deprecated API: (record, apis). With
    `apply`, each is marked degraded (broken stays broken) with one issue per API, as events."""
    apis = (parse_registry(Path(registry).read_text("utf-8"), registry) if registry
            else list(shipped_registry()))
    where = {"account": account_key(account)} if account else None
    found = []
    after = None
    while True:
        page = tenant.list("detection", where=where, after=after, limit=1000)
        for rec in page.records:
            raw = rec.values.get("raw") or ""
            hits = [a for a in apis if a.matches(raw)]
            if hits:
                found.append((rec, hits))
        if page.next_cursor is None:
            break
        after = page.next_cursor
    if apply:
        batch = Batch()
        now = datetime.now(timezone.utc)
        for rec, hits in found:
            issues = list(rec.values.get("health_issues") or [])
            new = [h.issue() for h in hits if h.issue() not in issues]
            health = "broken" if rec.values.get("health") == "broken" else "degraded"
            if not new and rec.values.get("health") == health:
                continue
            values = dict(rec.values, health=health, health_issues=issues + new, last_validated=now)
            prepared = prepare_values(REGISTRY.entity("detection"), values)
            batch.entities.append(Entity("detection", prepared, rec.properties, rec.version,
                                         (prepared, rec.key), "deprecated API: " + ", ".join(h.id for h in hits)))
        if batch.entities:
            tenant.apply(batch, actor=actor, source="detections:check-deprecated", observed=False)
    return found
