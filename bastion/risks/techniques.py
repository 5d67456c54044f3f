"""The ATT&CK techniques an attacker would use with a risk (docs/cloud.md#unwatched-exposures).

`read_kev_mappings` reads the CTID Mappings Explorer KEV file (`metadata.mapping_framework: kev`:
CVE → technique rows whose `mapping_type` is exploitation_technique, primary_impact or
secondary_impact). `apply` writes them on every risk of the tenant whose CVE the file maps, as
the risk property `techniques`: a list of `{id, role, source, attack_version[, mapped_as]}`, the
id resolved to the active ATT&CK release through the crosswalk (CTID maps ATT&CK 16.1: T1562.001
becomes T1685 in 19, `mapped_as` keeps what CTID wrote). Entries of other sources on the risk
are kept; the file's replace the previous `ctid:kev` ones. A CVE the file does not map keeps what
it had (the file covers a few hundred KEV CVEs, not every CVE). Each changed risk is one
`risk.updated` event (source `enrich:techniques`), not a sighting. `import_file` is what
`bastion enrich techniques FILE` runs: a recorded import run of kind `kev` (format `ctid:kev`).

`of_risk` lists a risk's techniques: those written here and, for nuclei findings, the ATT&CK
ids its template tags name (`attack.t1190`, `t1190`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bastion.errors import InvalidValue
from bastion.schema import normalize as norm
from bastion.risks.enrich import pages_with_cve
from bastion.schema.batch import Batch, Entity

SOURCE = "ctid:kev"
EVENT_SOURCE = "enrich:techniques"
ROLES = ("exploitation_technique", "primary_impact", "secondary_impact", "uncategorized")
_TAG = re.compile(r"^(?:attack\.)?(t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)


class KevMappings(dict):
    """CVE → [(technique as CTID wrote it, role)], with the file's name and ATT&CK version."""

    def __init__(self, name: str, attack_version: str | None):
        super().__init__()
        self.name, self.attack_version = name, attack_version


def read_kev_mappings(path: str, name: str | None = None) -> KevMappings:
    """Read a CTID KEV mappings file; anything else is refused with one line naming it."""
    label = name or path
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidValue(f"{label}: cannot open: {exc.strerror or exc}") from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"{label}: not valid JSON ({exc})") from None
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    rows = doc.get("mapping_objects") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or not isinstance(rows, list):
        raise InvalidValue(f"{label}: not a CTID mappings file (no metadata and mapping_objects)")
    framework = str(meta.get("mapping_framework") or "")
    if framework.lower() != "kev":
        raise InvalidValue(f"{label}: a CTID mappings file for {framework or 'an unnamed framework'}, "
                           "not for kev (CVE → techniques); cloud control mappings are imported "
                           "with `bastion discover reference`")
    out = KevMappings(label, str(meta["attack_version"]) if meta.get("attack_version") else None)
    for i, row in enumerate(rows):
        where = f"{label}: mapping_objects[{i}]"
        if not isinstance(row, dict):
            raise InvalidValue(f"{where}: not a JSON object")
        if row.get("status") == "non_mappable" or row.get("mapping_type") == "non_mappable":
            continue
        try:
            cve = norm.cve(row.get("capability_id"))
        except (InvalidValue, TypeError):
            raise InvalidValue(f"{where}: capability_id {row.get('capability_id')!r} is not a CVE id") from None
        try:
            tid = norm.attack_technique(row.get("attack_object_id"))
        except (InvalidValue, TypeError):
            raise InvalidValue(f"{where}: attack_object_id {row.get('attack_object_id')!r} is not an "
                               "ATT&CK technique id") from None
        role = str(row.get("mapping_type") or "uncategorized")
        if role not in ROLES:
            raise InvalidValue(f"{where}: mapping_type {role!r} is not one of {', '.join(ROLES)}")
        entries = out.setdefault(cve, [])
        if (tid, role) not in entries:
            entries.append((tid, role))
    return out


@dataclass
class TechniquesResult:
    file: str
    attack_version: str | None
    cves: int  # CVEs the file maps
    risks: int  # risks that name a CVE
    matched: int  # of them, those whose CVE the file maps
    updated: int  # risks written
    unresolved: list[str]  # ids the active release does not know (not written)
    correlation_id: str = ""
    run_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def entries_for(mapped: list[tuple[str, str]], catalog, attack_version: str | None,
                unresolved: set[str]) -> list[dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for tid, role in mapped:
        rid = catalog.resolve(tid) if catalog is not None else tid
        if rid is None:
            unresolved.add(tid)
            continue
        entry = {"id": rid, "role": role, "source": SOURCE, "attack_version": attack_version}
        if rid != tid:
            entry["mapped_as"] = tid
        out.setdefault((rid, role), entry)
    return sorted(out.values(), key=lambda e: (ROLES.index(e["role"]), e["id"]))


def apply(tenant, mappings: KevMappings, actor: str, *, catalog=None, at=None,
          correlation_id: str | None = None) -> TechniquesResult:
    """Write the techniques of every risk whose CVE `mappings` maps (see the module doc)."""
    result = TechniquesResult(mappings.name, mappings.attack_version, len(mappings), 0, 0, 0, [])
    unresolved: set[str] = set()
    with tenant.writing(actor=actor, source=EVENT_SOURCE, at=at, correlation_id=correlation_id) as session:
        result.correlation_id = session.correlation_id
        for page in pages_with_cve(session):
            batch = Batch()
            for rec in page:
                result.risks += 1
                mapped = mappings.get(rec.values["cve"])
                if mapped is None:
                    continue
                result.matched += 1
                props = dict(rec.properties or {})
                kept = [e for e in props.get("techniques") or () if e.get("source") != SOURCE]
                new = kept + entries_for(mapped, catalog, mappings.attack_version, unresolved)
                if new != (props.get("techniques") or []):
                    props["techniques"] = new
                    batch.entities.append(Entity("risk", dict(rec.values), props, None,
                                                 (dict(rec.values), rec.key),
                                                 f"techniques from CTID KEV mappings {mappings.name}"))
            if batch.entities:
                session.apply(batch, observed=False)  # knowledge about the CVE, not a sighting
                result.updated += len(batch.entities)
    result.unresolved = sorted(unresolved)
    return result


def import_file(tenant, path: str, actor: str) -> TechniquesResult:
    """`bastion enrich techniques FILE`: read and apply, recorded as an import run."""
    from bastion.coverage.inventory import active_catalog
    from bastion.ingest.files import FileResult, Run

    if not Path(path).is_file():
        raise InvalidValue(f"{path}: cannot open: No such file or directory")
    catalog = active_catalog(tenant)
    with Run(tenant, "kev", actor=actor, source=EVENT_SOURCE, paths=[path],
             options={"format": SOURCE}) as run:
        fr = run.add(FileResult(path, format=SOURCE))
        try:
            mappings = read_kev_mappings(path)
        except InvalidValue as exc:
            fr.reject(str(exc).removeprefix(f"{path}: "))
            raise
        result = apply(tenant, mappings, actor, catalog=catalog, at=run.at,
                       correlation_id=run.correlation_id)
        result.run_id = run.id
        run.counts = {**run.totals(), "records": len(mappings), "matched": result.matched,
                      "updated": result.updated}
        if result.unresolved:
            run.notes.append("not in the active ATT&CK release (not written): " + ", ".join(result.unresolved))
    return result


def of_risk(values: dict[str, Any], properties: dict[str, Any] | None, catalog=None) -> dict[str, list[str]]:
    """technique id (active release) → the roles it plays for this risk: the written techniques
    and the ATT&CK ids a nuclei template's tags name (role `tag`)."""
    out: dict[str, list[str]] = {}
    props = properties or {}
    for e in props.get("techniques") or ():
        if isinstance(e, dict) and e.get("id"):
            roles = out.setdefault(str(e["id"]).upper(), [])
            if e.get("role") not in roles:
                roles.append(e.get("role") or "uncategorized")
    for tag in props.get("tags") or ():
        m = _TAG.match(str(tag).strip())
        if m:
            tid = m.group(1).upper()
            tid = (catalog.resolve(tid) if catalog is not None else tid) or None
            if tid and "tag" not in out.setdefault(tid, []):
                out[tid].append("tag")
    return out
