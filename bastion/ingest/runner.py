"""`bastion import`: scanner files in, one deduplicated attack surface out, every run recorded.

Per file, in one transaction (all of it or nothing): records are parsed as a stream and gathered
in chunks; a chunk's entities are merged with what is stored (only the fields a scanner gave
replace stored values, so an analyst's exposure or criticality stays), its findings become risks
(one per asset group and finding name; repeated observations add evidence) through the risk
lifecycle (bastion.risks.lifecycle), and the chunk goes through the store's one write path with
its events. Memory is bounded by the chunk, not the file.

A file that cannot be parsed is rejected whole. A record read whole that cannot be placed (it
names no target: `records.Unplaced`) is skipped and listed (file, place, reason) and the rest
of the file imports, unless `strict`, which rejects the file for it. A record that cannot be read
(not JSON, a bad value) rejects its file (nothing from it is written) unless `skip_invalid`,
which skips and lists it too. A file read in part is never recorded for reuse. After every file was imported,
`close_missing` remediates the open risks of each importing source that this run did not observe.
An empty file names no tool: with `--format` it closes that tool's risks; without, those of the
one tool that has open risks under `--source` — when several have, none (a note says which and to
pass --format).

The run, its inputs (files, directories, stdin, gzip), per-file results and progress are the
framework every import shares (bastion.ingest.files); `import_inputs` is the one entry point of
`bastion import`: it hands Bastion's JSON graph to its reader (bastion.graph.jsonformat) and
scanner output to `import_paths`.

A file (not standard input) imported whole is recorded with the nodes and edges it observed.
Imported again byte for byte — same tool, source, parser code and tenant settings — with none of
those changed since, it is not parsed again: the import is the sighting it would have been
(`last_seen` moves, nothing else changes) and says which earlier run it reused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import orjson

from bastion.errors import InvalidValue, ValidationFailed
from bastion.ingest import FORMAT_NAMES, files, sarif
from bastion.ingest.files import MAX_PROBLEMS, Progress
from bastion.ingest.hosts import inferred_exposure
from bastion.ingest.inputs import (Input, Opened, UnknownFormat, all_graph_documents, check_exist,
                                   chosen, detect, is_empty)
from bastion.ingest.records import Finding, Invalid, Malformed, Record
from bastion.risks import lifecycle
from bastion.risks.priority import priority
from bastion.schema.batch import Batch, Entity, Relationship, validate
from bastion.schema.keys import build_key, kind_of, node_id, parse_key
from bastion.schema.kinds import CLOUD_PROVIDERS, REGISTRY, _group_of
from bastion.store import runs

CHUNK_RECORDS = 5000
MAX_APPLIED = 250_000  # entities and edges remembered per file as already written (~15 MiB)
_RISK = REGISTRY.entity("risk")
_RISK_FIELDS = _RISK.field_names


@dataclass
class Options:
    actor: str
    format: str = "auto"
    source: str | None = None  # the scan's name: risks are filed under "<tool>:<source>"
    close_missing: bool = False
    skip_invalid: bool = False  # skip records that cannot be read too (and list them)
    strict: bool = False  # a record that cannot be placed (no target) rejects its file too
    reuse: bool = True  # an unchanged file imported before stands for itself (see the module doc)
    repository: str | None = None  # SARIF: the repository of logs that name none
    replace: bool = False  # JSON graph: replace stored nodes instead of merging
    # Told the run's id once it is recorded (the server answers 202 with it, importing on)
    started: Callable[[int], None] | None = None
    # The `source` of the events written; default "import:<tool>[:<source>]" (the server: "api")
    event_source: str | None = None
    # PROVIDER:ID (`aws:123456789012`): the cloud account of every asset the import creates or
    # updates (its `provider` and `account` fields), as `bastion update asset --set account=…`
    account: str | None = None

    def events_source(self, source: str) -> str:
        return self.event_source or f"import:{source}"


@dataclass
class FileResult(files.FileResult):
    """A scanner file (status ignored: a file of no known format in a directory)."""

    records: int = 0
    findings: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    reopened: int = 0
    reused_run: int | None = None  # the earlier run whose import of the same bytes stood for this one
    unreadable: int = 0  # of those skipped, records that could not be read (--skip-invalid)
    empty: bool = False  # no records at all (a clean scan): imported as zero findings


@dataclass
class ImportResult:
    run_id: int
    status: str  # succeeded | partial | failed
    correlation_id: str
    files: list[FileResult]
    closed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "rejected"]

    def totals(self) -> dict[str, int]:
        keys = ("records", "findings", "created", "updated", "unchanged", "reopened", "skipped")
        out = {k: sum(getattr(f, k) for f in self.files) for k in keys}
        out["closed"] = self.closed
        out["files"] = len(self.files)
        out["rejected"] = len(self.rejected)
        return out


class _Rejected(Exception):
    pass


def risk_source(tool: str, name: str | None) -> str:
    return f"{tool}:{name}" if name else tool


def import_inputs(tenant, paths: list[str], options: Options, progress: Progress | None = None):
    """`bastion import`: Bastion's JSON graph documents (`--format graph`, or every input one:
    inputs.all_graph_documents) go to the graph reader (jsonformat.import_paths, returning its
    GraphImport), anything else to `import_paths` (returning an ImportResult)."""
    if options.format == "graph" or (options.format == "auto"
                                     and all_graph_documents(paths)):
        from bastion.graph import jsonformat

        if options.account is not None:
            raise InvalidValue("--account sets the account of scanned assets; a JSON graph "
                               "document states its nodes' accounts itself")

        return jsonformat.import_paths(tenant, paths, actor=options.actor,
                                       source=options.source or jsonformat.SOURCE,
                                       merge=not options.replace, progress=progress)
    return import_paths(tenant, paths, options, progress)


def import_paths(tenant, paths: list[str], options: Options, progress: Progress | None = None) -> ImportResult:
    """Import every file named by `paths` into `tenant` (a TenantStore); see the module doc."""
    module = chosen(options.format)
    check_exist(paths)
    if options.strict and options.skip_invalid:
        raise InvalidValue("--strict and --skip-invalid contradict each other; give one")
    if options.source is not None:
        options.source = options.source.strip()
        if not options.source or len(options.source) > 100 or "#" in options.source:
            raise InvalidValue("--source must be 1-100 characters without '#'")
    if options.repository is not None:
        options.repository = sarif.repository_name(options.repository)
        if not options.repository or len(options.repository) > 200 or "#" in options.repository:
            raise InvalidValue("--repository must be 1-200 characters without '#'")
    account = cloud_account(options.account)
    settings = tenant.settings()
    # What the file imports as depends on --repository and --account too (SARIF logs that name
    # none; the assets' account): a file imported before without them is read again.
    given = {k: v for k, v in (("--repository", options.repository), ("--account", account)) if v}
    fingerprint = _fingerprint({**settings, **given} if given else settings)
    with files.Run(tenant, "scan", actor=options.actor, source=options.source or "",
                   paths=paths, progress=progress, result=FileResult,
                   options={"format": options.format, "source": options.source,
                            "close_missing": options.close_missing,
                            "skip_invalid": options.skip_invalid,
                            "strict": options.strict, "reuse": options.reuse,
                            "repository": options.repository,
                            **({"account": options.account} if account else {})}) as run:
        result = ImportResult(run.id, "running", run.correlation_id, run.files, notes=run.notes)
        if options.started is not None:
            options.started(run.id)
        sources: set[str] = set()
        empty: list[FileResult] = []  # empty files that name no tool
        for item in run.inputs(paths):
            fr = run.add(_File(tenant, run, item, module, options, settings, fingerprint).run())
            if fr.empty:
                result.notes.append(f"{fr.name}: empty: imported as a clean scan (zero findings)")
            if fr.status == "imported" and fr.format:
                sources.add(risk_source(fr.format, options.source))
            elif fr.status == "imported":
                empty.append(fr)
        if options.close_missing:
            if result.rejected:
                result.notes.append("--close-missing skipped: a file was rejected, so what this run "
                                    "did not observe is not known")
            elif unread := [f.name for f in result.files if f.unreadable]:
                # a record left out unread may be about any stored risk: it must not be closed
                result.notes.append(f"--close-missing skipped: a record of {', '.join(unread)} could "
                                    "not be read (--skip-invalid), so what this run did not "
                                    "observe is not known")
            else:
                if empty:
                    sources.update(_empty_scan_sources(tenant, empty, options.source, result.notes))
                for source in sorted(sources):
                    result.closed += _close_missing(tenant, source, run.at, run.correlation_id,
                                                    run.id, options.actor,
                                                    options.events_source(source))
        run.counts = result.totals()
    result.status = run.status
    return result


def _empty_scan_sources(tenant, empty: list[FileResult], name: str | None,
                        notes: list[str]) -> list[str]:
    """What empty files that name no tool close (docs/formats.md, "Empty scans"): under
    --source NAME, the risks of the one tool that has open risks filed under NAME; when several
    tools have, nothing (a note names them: --format says which tool the scan was)."""
    files_named = ", ".join(f.name for f in empty)
    if not name:
        notes.append(f"--close-missing: {files_named} is empty and names no tool: nothing closed "
                     "for it (give --format or --source)")
        return []
    tools = [t for t in sorted(FORMAT_NAMES)
             if tenant.count("risk", where={"source": risk_source(t, name),
                                            "status": list(lifecycle.OPEN_STATES)})]
    if len(tools) <= 1:
        return [risk_source(t, name) for t in tools]
    notes.append(f"--close-missing: {files_named} is empty and names no tool, and "
                 f"{', '.join(tools)} have open risks under --source {name}: nothing closed for "
                 "it (pass --format to say which tool's scan it is)")
    return []


class _File:
    """One input file, imported in one transaction."""

    def __init__(self, tenant, run: files.Run, item: Input, module: ModuleType | None,
                 options: Options, settings: dict[str, Any], fingerprint: str):
        self.tenant, self.run_, self.item, self.module, self.options = tenant, run, item, module, options
        self.settings, self.fingerprint = settings, fingerprint
        self.at, self.cid, self.run_id = run.at, run.correlation_id, run.id
        self.progress = run.progress
        self.result = FileResult(item.name)

    def run(self) -> FileResult:
        fr = self.result
        size = None if self.item.is_stdin else self.item.path.stat().st_size
        try:
            with self.run_.open(self.item, fr) as opened:
                self._import(opened, size)
        except _Rejected:
            fr.status = "rejected"
        except UnknownFormat as exc:
            # A README or licence beside the scans in a directory is not the user's mistake.
            fr.status = "ignored" if self.item.in_directory else "rejected"
            fr.problem("", str(exc) if fr.status == "rejected" else "ignored: not a scanner output")
        except Malformed as exc:
            fr.reject(str(exc))
        except ValidationFailed as exc:  # the write path refused a chunk: a parser bug or a race
            fr.status = "rejected"
            for p in exc.problems:
                fr.problem(p.where, f"{p.field}: {p.reason}" if p.field else p.reason)
        if fr.status != "imported":
            fr.created = fr.updated = fr.unchanged = fr.reopened = 0
        return fr

    def _import(self, opened: Opened, size: int | None) -> None:
        fr = self.result
        sample = opened.sample()
        if is_empty(sample.head):  # a clean scan: zero records, of the format named if any
            fr.empty, fr.format = True, self.module.NAME if self.module else None
            return
        module = self.module or detect(sample, self.item.name)
        fr.format = module.NAME
        source = risk_source(module.NAME, self.options.source)
        if self.options.reuse and size is not None and self._reused(module.NAME, source, size):
            return
        with self.tenant.writing(actor=self.options.actor, source=self.options.events_source(source),
                                 correlation_id=self.cid, at=self.at) as session:
            members = None
            if size is not None:
                members = session.runs.file_members(
                    self._identity("", size, module.NAME, source),
                    run_id=self.run_id, name=self.item.name, at=self.at)
            loader = _Loader(session, module.NAME, source, self.settings, self.run_id, fr, members,
                             cloud_account(self.options.account))
            self._read(module, opened, loader)
            loader.flush()
            fr.sha256, fr.bytes = opened.finish()
            if members is not None and fr.skipped:  # a file read in part is not reused
                members.discard()
            elif members is not None:
                members.finish(self._identity(fr.sha256, fr.bytes, module.NAME, source),
                               {"records": fr.records, "findings": fr.findings},
                               node_id(loader.capability))

    def _identity(self, sha256: str, size: int, fmt: str, source: str) -> runs.FileIdentity:
        return runs.FileIdentity(sha256, size, fmt, source, self.fingerprint)

    def _reused(self, fmt: str, source: str, size: int) -> bool:
        """Whether an earlier import of the same bytes stood for this one (see the module doc);
        the file is hashed first only when an earlier file of its size could."""
        if not self.tenant.runs.may_reuse(size=size, format=fmt, source=source,
                                          fingerprint=self.fingerprint):
            return False
        digest = hashlib.sha256()
        with open(self.item.path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        ident = self._identity(digest.hexdigest(), size, fmt, source)
        try:
            with self.tenant.writing(actor=self.options.actor, source=self.options.events_source(source),
                                     correlation_id=self.cid, at=self.at) as session:
                counts = session.runs.reuse_file(ident, run_id=self.run_id, name=self.item.name,
                                                 at=self.at)
        except runs.NotReusable:  # rolled back: nothing of the attempt stays
            return False
        fr = self.result
        fr.sha256, fr.bytes = ident.sha256, size
        fr.records, fr.findings = counts["records"], counts["findings"]
        fr.unchanged, fr.reused_run = counts["nodes"], counts["reused_run"]
        if self.progress:
            self.progress.advance(size)
            self.progress.records(fr.records)
        return True

    def _read(self, module: ModuleType, opened: Opened, loader: "_Loader") -> None:
        fr, skip, strict = self.result, self.options.skip_invalid, self.options.strict
        failing = False
        extra = ({"repository": self.options.repository, "source": self.options.source}
                 if module is sarif else {})
        for rec in module.parse(opened.stream, **extra):
            if isinstance(rec, Invalid):
                if skip or (rec.unplaced and not strict):
                    fr.problem(rec.where, f"skipped: {rec.reason}")
                    fr.skipped += 1
                    fr.unreadable += not rec.unplaced
                    continue
                fr.problem(rec.where, rec.reason)
                failing = True
                if len(fr.errors) >= MAX_PROBLEMS:
                    break
                continue
            fr.records += 1
            if failing:  # read on, only to report the file's other problems
                continue
            loader.add(rec)
            if loader.pending >= CHUNK_RECORDS:
                loader.flush()
                if self.progress:
                    self.progress.records(fr.records)
        if failing:
            raise _Rejected()
        if self.progress:
            self.progress.records(fr.records)


@lru_cache(maxsize=65536)
def _risk_key(target: str, name: str) -> tuple[str, str]:
    group = _group_of(target)
    return build_key(_RISK, {"group": group, "name": name}), group


@lru_cache(maxsize=65536)
def _asset_of(key: str) -> str | None:
    """The asset an entity belongs to (itself, a port's asset), for the risk's exposure."""
    kind = kind_of(key)
    if kind == "asset":
        return key
    return parse_key(key).parts["asset"] if kind == "port" else None


class _Loader:
    """Gathers a chunk of records, merges it with the store and applies it."""

    def __init__(self, session, tool: str, source: str, settings: dict[str, Any], run_id: int,
                 fr: FileResult, members: runs.FileMembers | None = None,
                 account: dict[str, str] | None = None):
        self.session, self.tool, self.source, self.run_id, self.fr = session, tool, source, run_id, fr
        self.members = members
        self.account = account  # provider and account every asset is given (--account)
        self.initial = lifecycle.initial_status(settings)
        self.capability = build_key(REGISTRY.entity("capability"), {"name": tool})
        # What earlier chunks of this file (one transaction, one `at`) already wrote: a scan
        # names its hosts again in every chunk, and writing the same values again would only set
        # `last_seen` to the same instant. Hashes of (key, what was given), and assets' exposure.
        self.applied: set[int] = set()
        self.first = True
        self.exposure: dict[str, str | None] = {}
        self._reset()

    def _reset(self) -> None:
        self.pending = 0
        # key → [kind, given normalized values, all prepared values, properties]
        self.entities: dict[str, list] = {}
        self.edges: dict[tuple[str, str, str], dict | None] = {}
        self.findings: dict[str, list] = {}  # risk key → [group, merged Finding]
        self.seen: dict[str, datetime] = {}  # key → the earliest scan time the records give

    def add(self, rec: Record) -> None:
        self.pending += 1
        entities = self.entities
        if rec.seen is not None:
            seen = self.seen
            for key in [*(e.prepared[1] for e in rec.entities),
                        *(_risk_key(f.target, f.name)[0] for f in rec.findings)]:
                if key not in seen or rec.seen < seen[key]:
                    seen[key] = rec.seen
        for e in rec.entities:
            prepared, key = e.prepared
            given = {f: prepared[f] for f in e.values}
            if self.account and e.kind == "asset":
                given.update(self.account)
                prepared = {**prepared, **self.account}
            have = entities.get(key)
            if have is None:
                entities[key] = [e.kind, given, prepared, e.properties]
            else:
                have[1].update(given)
                have[2] = prepared
                if e.properties:
                    have[3] = {**(have[3] or {}), **e.properties}
        for r in rec.relationships:
            self.edges[(r.kind, r.source, r.target)] = r.properties
        for f in rec.findings:
            self.fr.findings += 1
            rkey, group = _risk_key(f.target, f.name)
            have = self.findings.get(rkey)
            if have is None:
                self.findings[rkey] = [group, f]
            else:
                have[1] = _merge_finding(have[1], f)

    def _new(self, signatures: dict, items: dict) -> dict:
        """The items whose signature no earlier chunk of this file applied."""
        return {k: v for k, v in items.items() if signatures[k] not in self.applied}

    def flush(self) -> None:
        if not self.pending:
            return
        # Findings are not remembered: a risk seen again in a later chunk brings new evidence.
        signature = {k: hash(_sig(k, given, props)) for k, (_, given, _, props) in self.entities.items()}
        entities = self._new(signature, self.entities)
        findings = self.findings
        edges = {e: p for e, p in self.edges.items()
                 if (signature.setdefault(e, hash(_sig(*e, p)))) not in self.applied}
        exposure = self.exposure
        exposure_keys = {a for _, f in findings.values()
                         if (a := _asset_of(f.target)) and a not in exposure and a not in entities}
        first, self.first = self.first, False
        stored = self.session.get_many([*entities, *findings, *exposure_keys,
                                        *([self.capability] if first else [])], times=False)
        batch = Batch()
        add = batch.entities.append
        if first and self.capability not in stored:
            add(_entity("capability", self.capability, {"name": self.tool, "version": None,
                                                         "category": "scanner"}, None))
        for key, (kind, given, prepared, props) in entities.items():
            old = stored.get(key)
            if old is None:
                values = prepared
            else:
                values = {**old.values, **given}
                props = {**old.properties, **props} if (props and old.properties) else (props or old.properties)
            if kind == "asset" and (inferred := inferred_exposure(values, given)):
                values = {**values, "exposure": inferred}  # never over a value set before
            add(_entity(kind, key, values, props, self.seen.get(key) if old is None else None))
            if kind == "asset":
                exposure[key] = values.get("exposure")
                batch.relationships.append(Relationship("DISCOVERED", self.capability, key))
        for key in exposure_keys:
            rec = stored.get(key)
            exposure[key] = rec.values.get("exposure") if rec else None
        reopened = 0
        for key, (group, f) in findings.items():
            entity = self._risk(key, group, f, stored.get(key), exposure.get(_asset_of(f.target)))
            reopened += entity.note is not None
            add(entity)
        batch.relationships.extend(Relationship(k, s, t, p) for (k, s, t), p in edges.items())
        prepared = validate(batch)
        result = self.session.apply(prepared)
        if self.members is not None:  # what this chunk observed: what a reuse will touch again
            # (with the implied edges; not the tool's capability: found stored, it is left as is)
            self.members.add([e.id for k, e in prepared.entities.items() if k != self.capability],
                             list(prepared.edges))
        for key, outcome in result.outcome.items():
            if key != self.capability:
                setattr(self.fr, outcome, getattr(self.fr, outcome) + 1)
        self.fr.reopened += reopened
        if len(self.applied) + len(signature) > MAX_APPLIED:  # memory stays bounded by the chunk
            self.applied.clear()
        if len(exposure) > MAX_APPLIED:
            exposure.clear()
        self.applied.update(signature.values())
        self._reset()

    def _risk(self, key: str, group: str, f: Finding, old, exposure: str | None) -> Entity:
        note = None
        if old is None:
            values = dict.fromkeys(_RISK_FIELDS)
            values.update(target=f.target, group=group, name=f.name, title=f.title, cve=f.cve,
                          severity=f.severity, cvss=f.cvss, status=self.initial, source=self.source,
                          evidence=f.evidence or None)
            props = f.properties
            first_seen = self.seen.get(key)  # a new risk dates (and its SLA runs) from the scan
        else:
            first_seen = None
            values = dict(old.values)
            step = lifecycle.observed(values["status"], values["reason"], self.initial)
            if step.reopened:
                note = f"re-opened: observed again by {self.source} (import {self.run_id})"
            values.update(
                status=step.status, reason=step.reason, severity=f.severity, source=self.source,
                title=f.title or values["title"], cve=f.cve or values["cve"],
                cvss=f.cvss if f.cvss is not None else values["cvss"],
                evidence=lifecycle.merge_evidence(values["evidence"], f.evidence) or None)
            props = ({**old.properties, **f.properties} if (f.properties and old.properties)
                     else (f.properties or old.properties))
        values["priority"] = priority(values, exposure)
        return Entity("risk", values, props, None, (values, key), note, first_seen)


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """The code that turns a file into entities: Bastion's version and the source of its
    parsers, risk rules, schema and write path (a change there may change what a file imports
    as)."""
    import bastion

    root = Path(bastion.__file__).parent
    digest = hashlib.sha256()
    try:
        digest.update(version("bastion").encode())
    except PackageNotFoundError:
        pass
    code = [p for d in ("ingest", "risks", "schema") for p in (root / d).rglob("*.py")]
    for path in sorted([*code, root / "store" / "writer.py"]):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cloud_account(ref: str | None) -> dict[str, str] | None:
    """`--account PROVIDER:ID` as the asset fields it sets ({provider, account}); None without."""
    if ref is None:
        return None
    provider, sep, ident = ref.strip().partition(":")
    provider, ident = provider.strip().lower(), ident.strip()
    if not sep or not ident or provider not in CLOUD_PROVIDERS:
        raise InvalidValue(f"--account expects PROVIDER:ID with a provider of {', '.join(CLOUD_PROVIDERS)} "
                           f"(e.g. aws:123456789012), got {ref!r}")
    if len(ident) > 200:
        raise InvalidValue("--account: the account id is longer than 200 characters")
    return {"provider": provider, "account": ident}


def _fingerprint(settings: dict[str, Any]) -> str:
    """What, beside a file's bytes, decides what importing it writes: the code and the
    tenant's settings (the status new risks start in …)."""
    return hashlib.sha256(_code_digest().encode() + _sig(settings)).hexdigest()


def _sig(*parts: Any) -> bytes:
    return orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_NAIVE_UTC)


def _entity(kind: str, key: str, values: dict[str, Any], props: dict | None,
            first_seen: datetime | None = None) -> Entity:
    return Entity(kind, values, props or None, None, (values, key), first_seen=first_seen)


def _merge_finding(a: Finding, b: Finding) -> Finding:
    """Two observations of one risk in one chunk: the later one's values, both evidences."""
    return Finding(
        a.target, b.name, b.severity, b.title or a.title, b.cve or a.cve,
        b.cvss if b.cvss is not None else a.cvss,
        lifecycle.merge_evidence(a.evidence, b.evidence),
        {**(a.properties or {}), **(b.properties or {})} or None)


def _close_missing(tenant, source: str, at: datetime, cid: str, run_id: int, actor: str,
                   events_source: str) -> int:
    """Remediate (reason not_observed) the open risks of `source` this run did not observe."""
    with tenant.writing(actor=actor, source=events_source, correlation_id=cid, at=at) as session:
        stale = session.open_risks_not_seen(source)
        if not stale:
            return 0
        batch = Batch()
        note = f"not observed by {source} in import {run_id} (--close-missing)"
        for rec in stale:
            values = {**rec.values, "status": "remediated", "reason": "not_observed"}
            batch.entities.append(Entity("risk", values, rec.properties, None, (values, rec.key), note))
        session.apply(batch, observed=False)  # closing is no sighting: last_seen stays
    return len(stale)
