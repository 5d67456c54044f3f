"""The CTID cloud mappings as a tenant's reference data: which techniques each managed service
(capability) protects against or detects, with CTID's score.

`import_reference` reads a Mappings Explorer file (aws, azure, gcp) once per tenant and stores it
as the setting `reference.ctid.<framework>` (a `setting.changed` event with its actor): capability
→ [[technique, confidence, rationale, attack_version], …]. Discovery maps managed services
through it (`mapped`); `bastion exposures` reads it backwards to say which service would cover a
technique (`covering`). Importing a newer file replaces it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bastion.coverage.importers import Invalid, Malformed, Mapped, Origin, Parsed
from bastion.coverage.importers import ctid
from bastion.errors import InvalidValue

SETTING = "reference.ctid."
RATIONALE = 600  # characters of CTID's comments kept per mapping


def import_reference(tenant, path: str, *, actor: str) -> dict[str, Any]:
    """Read a CTID mappings file and store it as the tenant's reference for its framework.
    Returns {framework, attack_version, capabilities, mappings, changed}."""
    p = Path(path)
    if not p.is_file():
        raise InvalidValue(f"{path}: cannot open: No such file or directory")
    try:
        text = p.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidValue(f"{path}: cannot read: {exc}") from None
    framework, version = None, None
    capabilities: dict[str, list[list[Any]]] = {}
    names: dict[str, str] = {}
    try:
        for got in ctid.parse(p, text, path):
            if isinstance(got, Origin):
                framework = got.stated.lower()
            elif isinstance(got, Invalid):
                raise InvalidValue(f"{path}: {got.where}: {got.reason}")
            elif isinstance(got, Parsed):
                names[got.rule_id] = got.name or got.rule_id
                capabilities[got.rule_id] = [
                    [m.technique.upper(), m.confidence, (m.rationale or "")[:RATIONALE], m.attack_version]
                    for m in got.mappings]
                version = version or next((m.attack_version for m in got.mappings), None)
    except Malformed as exc:
        raise InvalidValue(f"{path}: {exc}") from None
    if framework is None:
        raise InvalidValue(f"{path}: no metadata.mapping_framework: not a CTID cloud mappings file")
    value = {"file": p.name, "attack_version": version, "names": names, "capabilities": capabilities}
    changed = tenant.set_setting(SETTING + framework, value, actor=actor, source="reference:ctid")
    return {"framework": framework, "attack_version": version, "capabilities": len(capabilities),
            "mappings": sum(len(v) for v in capabilities.values()), "changed": changed}


def load(tenant, framework: str) -> dict[str, Any] | None:
    """The stored reference of `framework` (aws, azure, gcp), or None."""
    return tenant.settings().get(SETTING + framework)


def mapped(reference: dict[str, Any] | None, capability: str, framework: str) -> list[Mapped]:
    """The mappings of one capability (`amazon_guardduty`): vendor method, CTID's confidence."""
    if not reference:
        return []
    return [Mapped(tid, conf, "vendor", f"ctid:{framework}", rationale or None, version)
            for tid, conf, rationale, version in reference["capabilities"].get(capability, ())]


def covering(reference: dict[str, Any] | None) -> dict[str, list[tuple[str, float]]]:
    """technique id (as CTID wrote it) → [(capability name, confidence)], best first."""
    out: dict[str, list[tuple[str, float]]] = {}
    if not reference:
        return out
    for cap, rows in reference["capabilities"].items():
        for tid, conf, _rationale, _version in rows:
            out.setdefault(tid, []).append((reference["names"].get(cap, cap), conf))
    for rows in out.values():
        rows.sort(key=lambda r: (-r[1], r[0]))
    return out
