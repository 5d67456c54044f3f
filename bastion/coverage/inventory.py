"""`bastion detections import`: detection inventories in, per account, as snapshots.

One run is one transaction, and a recorded import run of kind `detections` (bastion.ingest.files:
its files, hashes, counts and problems, a refused one too; the events carry its correlation
id). Files, directories (files with a detection suffix, recursively), `-` for standard input and
gzip are read through the same framework as every import. Every file is read and checked first (format, YAML/JSON, rule ids,
technique ids against the ATT&CK catalog, field values), then everything that passed is written
through the store's one write path together with the snapshot rows, or nothing is. A file with a
bad item is rejected whole — nothing from it is written — and its problems are listed as
`file: item: reason`; with `skip_invalid` the bad items (or the bad mappings of a good rule, such
as an unknown technique) are skipped and listed instead.

Each run is a snapshot of the account's inventory for its scope (account, source), where source
is `--source NAME`, else what the file says it belongs to (a CTID file: `ctid:<framework>`), else
the file's format. Detections of that scope that the previous snapshot listed, this run does not
bring and no other source has brought since are deleted, with all their mappings (their history
stays in the event log), unless `keep_missing`. When a file is rejected, removals are skipped for
its scope (what it holds is not known). The snapshot row lists the scope's inventory after the
run. A run in which no file is imported writes nothing (no account, no snapshot).

Detections land only in their own cloud: a file stating another provider than the account's (a
CTID file's `mapping_framework`) is rejected (skipped with `skip_invalid`), and rules stating
another provider (a Sigma rule's `logsource.product`) are skipped and counted per provider. The
default account (provider `other`) takes every provider's.

A detection's key is (account, rule_id). `content_hash` is the SHA-256 of `raw`; the same hash
again changes nothing, a different one is revision + 1 (a `detection.updated` event whose diff
carries raw, content_hash and revision). Health fields and an owner set by hand are kept.

Mappings the importer makes (tag, vendor, pattern, and the analyst mappings a file states) are
kept in step with the file; mappings made by hand (`bastion map add`) are never changed or
removed by an import, except when their detection is removed. A re-stated mapping keeps its
validation status and the ATT&CK version it was first made against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bastion.coverage import indicators as ind
from bastion.coverage.catalog import Catalog
from bastion.coverage.compute import DEFAULT_MIN_CONFIDENCE
from bastion.coverage.importers import (Context, Invalid, Malformed, Mapped, Note, Origin, Parsed, detect,
                                        expand, format_module)
from bastion.errors import InvalidValue, NotFound, ValidationFailed
from bastion.ingest import files as framework
from bastion.ingest.inputs import Input
from bastion.schema import normalize as norm
from bastion.schema.batch import Batch, Entity, key_for, prepare_values
from bastion.schema.keys import build_key, parse_key
from bastion.schema.kinds import REGISTRY
from bastion.store.coverage import COUNTED_HEALTH

MAX_PROBLEMS = framework.MAX_PROBLEMS
DETECTION = REGISTRY.entity("detection")
MAPPING = REGISTRY.entity("mapping")
ACCOUNT = REGISTRY.entity("cloud_account")
DEFAULT_ACCOUNT = build_key(ACCOUNT, prepare_values(ACCOUNT, {"provider": "other", "identifier": "default"}))
# mapped_by prefixes of the mappings imports make (and keep in step with their files)
IMPORTED = ("sigma:", "ctid:", "navigator:", "import:", "bastion:indicators")
KEPT_FIELDS = ("health", "last_validated", "health_issues")


@dataclass
class Options:
    actor: str
    format: str = "auto"  # auto | sigma | ctid | navigator | csv | json
    account: str | None = None  # a key or provider:identifier; None = the default account
    source: str | None = None  # the snapshot scope's name; default: the file's format
    skip_invalid: bool = False
    keep_missing: bool = False
    indicators: list[str] | None = None  # extra indicator files
    event_source: str | None = None  # the source of the events (default detections:import)


@dataclass
class FileResult(framework.FileResult):
    """One file (status imported | rejected | ignored); `skipped`: detections (rules,
    capabilities, rows) skipped as invalid; its problems are `problems` (the framework's
    `errors`)."""

    source: str | None = None  # the snapshot scope it belongs to (None: its format is unknown)
    detections: int = 0
    added: int = 0
    modified: int = 0
    unchanged: int = 0
    mappings: int = 0
    mappings_skipped: int = 0  # mappings skipped as invalid (their detection may be imported)
    skip_reasons: dict[str, int] = field(default_factory=dict)  # why mappings were skipped → how many
    other_providers: dict[str, int] = field(default_factory=dict)  # rules of another provider, skipped
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.errors

    @property
    def more_problems(self) -> int:
        return self.more_errors

    @property
    def left_out(self) -> bool:
        return bool(self.skipped or self.mappings_skipped)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["problems"], out["more_problems"] = out.pop("errors"), out.pop("more_errors")
        return out

    def note(self, where: str, text: str) -> None:
        if len(self.notes) < MAX_PROBLEMS:
            self.notes.append(f"{self.name}: {where}: {text}" if where else f"{self.name}: {text}")


@dataclass
class ImportResult:
    account: str
    correlation_id: str
    files: list[FileResult]
    snapshots: dict[str, int] = field(default_factory=dict)  # source → snapshot id
    coverage_snapshots: dict[str, int] = field(default_factory=dict)  # source → coverage snapshot id
    # ATT&CK domain → source → coverage snapshot id (the catalog's domain and the others measured)
    domain_snapshots: dict[str, dict[str, int]] = field(default_factory=dict)
    removed: int = 0
    mappings_added: int = 0
    mappings_removed: int = 0
    notes: list[str] = field(default_factory=list)
    run_id: int | None = None  # the import run that recorded it

    @property
    def rejected(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "rejected"]

    @property
    def status(self) -> str:
        return framework.run_status(self.files)

    def other_providers(self) -> dict[str, int]:
        """Rules of other providers skipped, per provider."""
        out: dict[str, int] = {}
        for f in self.files:
            for prov, n in f.other_providers.items():
                out[prov] = out.get(prov, 0) + n
        return dict(sorted(out.items()))

    def skip_reasons(self) -> dict[str, int]:
        """Mappings skipped as invalid, per reason."""
        out: dict[str, int] = {}
        for f in self.files:
            for reason, n in f.skip_reasons.items():
                out[reason] = out.get(reason, 0) + n
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def totals(self) -> dict[str, int]:
        keys = ("detections", "added", "modified", "unchanged", "mappings", "skipped", "mappings_skipped")
        out = {k: sum(getattr(f, k) for f in self.files) for k in keys}
        out["other_providers"] = sum(self.other_providers().values())
        out.update(removed=self.removed, mappings_added=self.mappings_added,
                   mappings_removed=self.mappings_removed, files=len(self.files),
                   rejected=len(self.rejected),
                   problems=sum(len(f.problems) + f.more_problems for f in self.files))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"import": self.run_id, "account": self.account, "status": self.status,
                "correlation_id": self.correlation_id,
                "snapshots": self.snapshots, "coverage_snapshots": self.coverage_snapshots,
                "domain_snapshots": self.domain_snapshots,
                "totals": self.totals(), "other_providers": self.other_providers(),
                "mappings_skipped": self.skip_reasons(), "notes": self.notes,
                "files": [f.as_dict() for f in self.files]}


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def file(self, name: str) -> None: ...


# -- accounts -----------------------------------------------------------------------------------


def account_key(ref: str | None) -> str:
    """An account key from a key (`#cloud_account#aws#123…`) or `provider:identifier`."""
    if ref is None:
        return DEFAULT_ACCOUNT
    ref = ref.strip()
    if ref.startswith("#"):
        if parse_key(ref).kind != "cloud_account":
            raise InvalidValue(f"{ref} is not a cloud account key")
        return ref
    provider, sep, ident = ref.partition(":")
    if not sep or not ident:
        raise InvalidValue(f"--account expects an account key or PROVIDER:IDENTIFIER, got {ref!r}")
    return key_for("cloud_account", provider=provider, identifier=ident)


def resolve_account(tenant, ref: str | None):
    """The stored account `ref` names (the default account is created on demand by imports)."""
    key = account_key(ref)
    rec = tenant.get(key)
    if rec is None and key != DEFAULT_ACCOUNT:
        raise NotFound(f"no cloud account {ref} (see `bastion account list`, `bastion account add`)")
    return key, rec


def default_account_entity() -> Entity:
    values = prepare_values(ACCOUNT, {"provider": "other", "identifier": "default", "name": "default"})
    return Entity("cloud_account", values, None, None, (values, DEFAULT_ACCOUNT))


# -- the ATT&CK catalog -------------------------------------------------------------------------


def active_catalog(tenant) -> Catalog | None:
    """The tenant's active Enterprise ATT&CK catalog, with the other domains' active releases,
    when one was imported (bastion.store.catalog); None when there is none (technique ids are
    then checked for shape only)."""
    try:
        return tenant.coverage.catalog("enterprise", others=True)
    except (NotFound, TypeError, LookupError):
        return None


# -- import -------------------------------------------------------------------------------------


@dataclass
class _Item:
    parsed: Parsed
    file: FileResult
    source: str
    key: str
    values: dict[str, Any]
    mappings: dict[str, Mapped]  # normalized technique → mapping


def import_detections(tenant, paths: list[str], options: Options, *, catalog: Catalog | None = None,
                      progress: Progress | None = None) -> ImportResult:
    """Import detection files into one account of `tenant` (a TenantStore); see the module doc."""
    module = None if options.format == "auto" else format_module(options.format)
    if options.source is not None:
        options.source = options.source.strip()
        if not options.source or len(options.source) > 100:
            raise InvalidValue("--source must be 1-100 characters")
    account, account_rec = resolve_account(tenant, options.account)
    provider = account_rec.values["provider"] if account_rec else "other"
    rules = ind.load(options.indicators)
    inputs = expand(paths)
    with framework.Run(tenant, "detections", actor=options.actor, source=options.source or "",
                       result=FileResult,
                       options={"format": options.format, "account": account,
                                "source": options.source, "skip_invalid": options.skip_invalid,
                                "keep_missing": options.keep_missing, "paths": list(paths)}) as run:
        result = ImportResult(account, run.correlation_id, run.files, run_id=run.id)
        _import(tenant, run, inputs, module, options, catalog, provider, rules, result, progress)
        run.notes.extend(result.notes)
        totals = result.totals()  # with the names `bastion imports list` shows
        run.counts = {**totals, "records": totals["detections"], "created": totals["added"],
                      "updated": totals["modified"]}
    return result


def _import(tenant, run: framework.Run, inputs: list[Input | tuple[str, str]], module,
            options: Options, catalog: Catalog | None, provider: str, rules: list,
            result: ImportResult, progress: Progress | None) -> None:
    account = result.account
    if progress:
        progress.start(len(inputs))
    items: dict[str, _Item] = {}
    contexts: list[Context] = []  # facts files state for other files' detections (formats' link)
    seen_sources: set[str] = set()
    blocked: set[str | None] = set()  # scopes whose removals are skipped (a file was rejected)
    for item in inputs:
        name = item[0] if isinstance(item, tuple) else item.name
        if progress:
            progress.file(name)
        fr = run.add(FileResult(name))
        if isinstance(item, tuple):  # not a regular file
            fr.reject(item[1])
            got = []
        else:
            with run.open(item, fr) as opened:
                data = opened.stream.read()
            got = [] if fr.status == "rejected" else _read_file(
                data, item, module, options, catalog, provider, rules, account, fr, contexts)
        if fr.status == "ignored":
            continue
        source = fr.source
        if fr.status == "rejected":
            blocked.add(source)
            continue
        seen_sources.add(source)
        clash = [it for it in got if it.key in items]
        if clash and not options.skip_invalid:
            for it in clash:
                fr.problem(it.parsed.where, f"duplicate rule id {it.parsed.rule_id!r} "
                                            f"(also in {items[it.key].file.name})")
            fr.status = "rejected"
            blocked.add(source)
            continue
        for it in got:
            if it.key in items:
                fr.problem(it.parsed.where, f"skipped: duplicate rule id {it.parsed.rule_id!r} "
                                            f"(also in {items[it.key].file.name})")
                fr.skipped += 1
                continue
            items[it.key] = it
            fr.detections += 1
            fr.mappings += len(it.mappings)
    _link(items.values(), contexts)
    if None in blocked:
        blocked = {s for s in blocked} | {it.source for it in items.values()}
    if not options.source:  # a file rejected before it said its source blocks its format's sources
        formats = {s for s in blocked if s and ":" not in s}
        blocked |= {s for s in seen_sources if s.partition(":")[0] in formats}
    sources = sorted(seen_sources | {s for s in blocked if s})
    result.notes.extend(_skip_notes(result, account, provider))
    if not any(f.status == "imported" for f in result.files):
        return  # refused whole: nothing is written (no account, no snapshot)
    at = run.at
    with tenant.writing(actor=options.actor, source=options.event_source or "detections:import",
                        correlation_id=result.correlation_id, at=at) as session:
        _write(session, account, items, sources, blocked, options, catalog, result)
    if catalog is not None:  # the coverage this inventory gives, for `bastion coverage history`
        _history_points(tenant, catalog, account, items, result, at)


def _history_points(tenant, catalog: Catalog, account: str, items: dict[str, "_Item"],
                    result: ImportResult, at) -> None:
    """One coverage snapshot per source and ATT&CK domain, tied to the source's new detection
    snapshot: the catalog's domain (Enterprise) always; each other active domain the imported
    detections map into, or that the account already has history in (so that its series goes on,
    a drop included)."""
    from bastion.coverage import history

    domains = {catalog.domain_of(tid) for it in items.values() for tid in it.mappings}
    if catalog.others:
        domains |= {s["attack_domain"] for s in tenant.coverage.snapshots(
            account=account, with_techniques=False)}
    measured = [catalog] + [catalog.others[d] for d in sorted(domains & catalog.others.keys())
                            if d != catalog.domain]
    for cat in measured:
        for source, snapshot_id in sorted(result.snapshots.items()):
            sid = history.snapshot(tenant, cat, account, detection_snapshot_id=snapshot_id, at=at)
            result.domain_snapshots.setdefault(cat.domain, {})[source] = sid
            if cat is catalog:
                result.coverage_snapshots[source] = sid


def _link(items, contexts: list[Context]) -> None:
    """Health that is a chain across files: each format's `link` with its detections and every
    context of the import (bastion.coverage.importers)."""
    by_format: dict[str, list[Parsed]] = {}
    for it in items:
        by_format.setdefault(it.file.format, []).append(it.parsed)
    for name, parsed in by_format.items():
        link = getattr(format_module(name), "link", None)
        if link is not None:
            link(parsed, contexts)


def _skip_mapping(fr: FileResult, reason: str) -> None:
    """Count one mapping skipped as invalid, under its reason (quoted values left out)."""
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "…", reason)
    fr.mappings_skipped += 1
    fr.skip_reasons[reason] = fr.skip_reasons.get(reason, 0) + 1


def _skip_notes(result: ImportResult, account: str, provider: str) -> list[str]:
    """One line for the rules of other providers skipped, one for the mappings skipped."""
    out = []
    other = result.other_providers()
    if other:
        out.append(f"skipped {sum(other.values())} rule(s) of other providers: "
                   + ", ".join(f"{p} {n}" for p, n in other.items())
                   + f" (not counted as coverage of {provider} account {account})")
    reasons = result.skip_reasons()
    if reasons:
        out.append(f"skipped {sum(reasons.values())} mapping(s): "
                   + "; ".join(f"{n} {reason}" for reason, n in reasons.items()))
    return out


def _read_file(data: bytes, item: Input, module, options: Options, catalog: Catalog | None,
               provider: str, rules: list, account: str, fr: FileResult,
               contexts: list[Context]) -> list[_Item]:
    name, in_dir = item.name, item.in_directory
    # A gzip file is read decompressed (bastion.ingest.files): its format by the name without .gz.
    plain = name[:-3] if name.lower().endswith(".gz") else name
    path = Path(plain)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        fr.status = "rejected"
        fr.problem("", "not UTF-8 text")
        return []
    try:
        mod = module or detect(plain, data[:4096])
    except Malformed as exc:
        fr.status = "ignored" if in_dir else "rejected"
        fr.problem("", str(exc) if fr.status == "rejected" else "ignored: not a detection format")
        if fr.status == "ignored":
            fr.problems.clear()
            fr.note("", "ignored: not a detection format")
        return []
    fr.format = mod.NAME
    fr.source = options.source or mod.NAME
    checked = provider != "other"  # the default account takes every provider's detections
    out: list[_Item] = []
    stated: list[Context] = []
    failing = False
    try:
        for got in mod.parse(path, text, name):
            if isinstance(got, Note):
                fr.note(got.where, got.text)
                continue
            if isinstance(got, Context):
                stated.append(got)
                continue
            if isinstance(got, Origin):
                fr.source = options.source or got.source
                if checked and got.provider is not None and got.provider != provider:
                    reason = (f"a {mod.DESCRIPTION.split(' (')[0]} file for {got.provider} "
                              f"({got.where}: {got.stated}), not for {provider} account {account}")
                    if options.skip_invalid:
                        fr.status = "ignored"
                        fr.problem("", f"skipped: {reason}")
                    else:
                        fr.status = "rejected"
                        fr.problem("", f"{reason}; import it into an account of provider {got.provider}")
                    return []
                continue
            if isinstance(got, Parsed) and checked and got.provider not in (None, provider):
                fr.other_providers[got.provider] = fr.other_providers.get(got.provider, 0) + 1
                continue
            if isinstance(got, Invalid):
                fr.problem(got.where, got.reason)
                if options.skip_invalid and getattr(mod, "INVALID_ITEM", "detection") == "mapping":
                    _skip_mapping(fr, got.reason)  # a bad row of a capability or a layer
                elif options.skip_invalid:
                    fr.skipped += 1
                else:
                    failing = True
                continue
            item = _item(got, fr, fr.source, account, catalog, provider, rules, options.skip_invalid)
            if item is None:
                if options.skip_invalid:
                    fr.skipped += 1
                else:
                    failing = True
                continue
            out.append(item)
    except Malformed as exc:
        fr.problem("", str(exc))
        failing = True
    except ValueError as exc:  # a CSV reader error and the like
        fr.problem("", f"cannot read: {exc}")
        failing = True
    if failing:
        fr.status = "rejected"
        return []
    contexts.extend(stated)
    return out


def _item(p: Parsed, fr: FileResult, source: str, account: str, catalog: Catalog | None,
          provider: str, rules: list, skip: bool) -> _Item | None:
    """Check one parsed detection; None (with its problems reported) when it cannot be written."""
    where = p.where
    bad: list[str] = []  # why each bad mapping is bad
    mappings: dict[str, Mapped] = {}
    field_name = "tags" if p.type == "sigma_rule" else "technique"
    for m in p.mappings:
        try:
            tid = norm.attack_technique(m.technique)
        except InvalidValue:
            fr.problem(where, f"{field_name}: invalid ATT&CK technique id {m.technique!r}"
                       + (" (mapping skipped)" if skip else ""))
            bad.append("invalid ATT&CK technique id")
            continue
        rationale = m.rationale
        made_for = m.attack_version
        if catalog is not None:
            # In the id's own domain, through revoked-by links and the crosswalk between
            # releases; an unknown id is imported as written and reported, never refused.
            r = catalog.lookup(tid)
            if r.status == "unknown":
                fr.note(where, f"{field_name}: {r.describe()} (imported; counts toward no coverage)")
            elif r.status == "deprecated":
                fr.note(where, f"{r.describe()} (kept; counts toward no coverage)")
            elif r.id != tid:
                rationale = f"{rationale + '; ' if rationale else ''}{r.describe()}"
                fr.note(where, f"mapped {r.describe()}")
                tid = r.id
            if r.domain != catalog.domain:  # an ICS or Mobile id: that release's version
                made_for = made_for or r.version
        have = mappings.get(tid)
        if have is None or m.confidence > have.confidence:
            mappings[tid] = Mapped(tid, m.confidence, m.method, m.mapped_by, rationale, made_for)
    if bad and not skip:
        return None
    for reason in bad:  # skipped mappings of a detection that is imported
        _skip_mapping(fr, reason)
    if not p.mappings:
        for hit in ind.match(p.raw, provider, rules):
            tid = hit.technique_in(catalog)
            if tid is None:
                fr.note(where, f"indicator {hit.field} {hit.value} → {'/'.join(hit.techniques)}: not in "
                               f"ATT&CK {catalog.version}, not mapped")
                continue
            mappings.setdefault(tid, Mapped(
                tid, ind.CONFIDENCE, "pattern", ind.MAPPED_BY,
                f"{hit.field} {hit.value}: {hit.rationale}"[:2000], None))
    values = {"account": account, "rule_id": p.rule_id, "name": p.name, "type": p.type,
              "service": p.service, "status": p.status, "owner": p.owner, "level": p.level,
              "rule_tags": p.rule_tags, "logsource": p.logsource, "raw": p.raw,
              "content_hash": p.content_hash, "revision": 1, "source_path": p.source_path}
    try:
        prepared = prepare_values(DETECTION, values)
        key = build_key(DETECTION, prepared)
    except ValidationFailed as exc:
        for pr in exc.problems:
            fr.problem(where, f"{pr.field}: {pr.reason}" if pr.field else pr.reason)
        return None
    return _Item(p, fr, source, key, prepared, mappings)


def _imported(rec) -> bool:
    return str(rec.values.get("mapped_by") or "").startswith(IMPORTED)


def _final_mappings(mapped: dict[str, Mapped], have: dict[str, Any], *,
                    kept: bool = False) -> dict[str, tuple[float, str]]:
    """technique → (confidence, validation) of a detection's mappings after the run: the file's
    (keeping a stored validation), the hand-made ones, and all stored ones of a kept detection."""
    out = {}
    for tid, m in mapped.items():
        prev = have.get(tid)
        out[tid] = (m.confidence, prev.values["validation"] if prev else "pending")
    for tid, prev in have.items():
        if kept or not _imported(prev):  # an import never changes a hand-made mapping
            out[tid] = (prev.values["confidence"], prev.values["validation"])
    return out


def _counting(values: dict[str, Any], mappings: dict[str, tuple[float, str]]) -> list[str]:
    """The mapped technique ids through which a detection counts as coverage (default rule):
    enabled, healthy or unknown, the mapping not disputed and confident (>= 0.6) or validated. Kept in
    the snapshot so that drift can measure a source's own coverage at that instant."""
    if values.get("status") != "enabled" or values.get("health") not in COUNTED_HEALTH:
        return []
    return sorted(tid for tid, (conf, validation) in mappings.items() if validation != "disputed"
                  and (conf >= DEFAULT_MIN_CONFIDENCE or validation == "validated"))


def _stated_health(values: dict[str, Any], p: Parsed, old, at) -> None:
    """Health a source states replaces the stored one; last_validated moves only when it
    changed, so that the same inventory again writes nothing."""
    issues = list(p.health_issues) if p.health_issues else None
    if old is None or (old.values.get("health"), old.values.get("health_issues")) != (p.health, issues):
        values.update(health=p.health, health_issues=issues, last_validated=at)


def _write(session, account: str, items: dict[str, _Item], sources: list[str], blocked: set,
           options: Options, catalog: Catalog | None, result: ImportResult,
           keep: frozenset[str] = frozenset()) -> None:
    """`keep`: detections never removed here (a discovery's part that could not be read)."""
    previous = {s: session.coverage.latest_snapshot(account=account, source=s) for s in sources}
    missing: dict[str, set[str]] = {}
    for s, snap in previous.items():
        if snap is not None:
            missing[s] = {k for k in snap.detections if k not in items}
    gone = {k for keys in missing.values() for k in keys}
    stored = session.get_many([*items, *gone, account])
    gone &= stored.keys()
    for s, keys in list(missing.items()):  # a detection another source brought since is that source's
        missing[s] = {k for k in keys if k in stored
                      and (stored[k].properties or {}).get("source") in (None, s)}
    version = catalog.version if catalog is not None else None
    batch = Batch()
    if account not in stored:
        batch.entities.append(default_account_entity())
    existing: dict[str, dict[str, Any]] = {}
    for rec in session.coverage.mappings_of([*items, *gone]):
        existing.setdefault(rec.values["detection"], {})[rec.values["technique"]] = rec
    mapping_keys: set[str] = set()
    written: dict[str, dict[str, Any]] = {}
    for key, it in items.items():
        old = stored.get(key)
        values = dict(it.values)
        if old is not None:
            ov = old.values
            values["revision"] = (ov.get("revision") or 1) + (ov.get("content_hash") != values["content_hash"])
            for f in KEPT_FIELDS:
                values[f] = ov.get(f)
            if values.get("owner") is None:
                values["owner"] = ov.get("owner")
        else:
            values["health"] = "unknown"
        if it.parsed.health is not None:  # the source established it (bastion.discovery)
            _stated_health(values, it.parsed, old, session.at)
        written[key] = values
        props = {**((old.properties or {}) if old else {}), "source": it.source}
        batch.entities.append(Entity("detection", values, props, None, (values, key)))
        have = existing.get(key, {})
        for tid, m in it.mappings.items():
            prev = have.get(tid)
            if prev is not None and not _imported(prev):
                continue  # made by hand: an import never overrides it
            mv = {"detection": key, "technique": tid, "confidence": m.confidence, "method": m.method,
                  "mapped_by": m.mapped_by, "rationale": m.rationale,
                  "validation": prev.values["validation"] if prev else "pending",
                  "attack_version": (prev.values.get("attack_version") if prev else None)
                  or m.attack_version or version}
            prepared = prepare_values(MAPPING, mv)
            mkey = build_key(MAPPING, prepared)
            mapping_keys.add(mkey)
            batch.entities.append(Entity("mapping", prepared, None, None, (prepared, mkey)))
        for tid, prev in have.items():
            if tid not in it.mappings and _imported(prev):
                batch.deletes.append(prev.key)
    removable = {k for s, keys in missing.items() if s not in blocked for k in keys} & stored.keys()
    if options.keep_missing:
        removable = set()
    removable -= keep
    for s in sources:
        if s in blocked and missing.get(s):
            result.notes.append(f"removals skipped for source {s!r}: a file was rejected, so its "
                                "inventory is not known")
    for key in sorted(removable):
        batch.deletes.extend(rec.key for rec in existing.get(key, {}).values())
        batch.deletes.append(key)
    res = session.apply(batch)
    for key, it in items.items():
        outcome = res.outcome.get(key, "unchanged")
        attr = {"created": "added", "updated": "modified"}.get(outcome, "unchanged")
        setattr(it.file, attr, getattr(it.file, attr) + 1)
    result.mappings_added = sum(1 for k in mapping_keys if res.outcome.get(k) == "created")
    result.mappings_removed = sum(1 for k in batch.deletes if k.startswith("#mapping#"))
    result.removed = len(removable)
    # the snapshot rows: each scope's inventory after the run
    for s in sources:
        inventory: dict[str, list[Any]] = {}
        for key, it in items.items():
            if it.source == s:
                v = written[key]
                inventory[key] = [v["content_hash"], v["status"], v.get("health"),
                                  _counting(v, _final_mappings(it.mappings, existing.get(key, {})))]
        for key in missing.get(s, ()):
            if key in stored and key not in removable:
                v = stored[key].values
                inventory[key] = [v.get("content_hash"), v.get("status"), v.get("health"),
                                  _counting(v, _final_mappings({}, existing.get(key, {}), kept=True))]
        if inventory or previous.get(s) is not None:
            result.snapshots[s] = session.coverage.record_snapshot(account=account, source=s,
                                                                   detections=inventory)
