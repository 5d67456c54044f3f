"""Imports over HTTP: scanner files (the library of `bastion import`), detection inventories
(`bastion detections import`), ATT&CK bundles (`bastion attack import`) and KEV/EPSS files
(`bastion enrich kev|epss`), uploaded as multipart/form-data; the record of every run and the
changes of one (`bastion imports list|show`, `bastion changes --run N`).

Each uploaded file is copied in chunks from Starlette's spooled upload to a file of its own in
a temporary directory (BASTION_UPLOAD_DIR, else the system's), named as uploaded: runs, results
and messages name the file as the client sent it (bastion.ingest.inputs.named). The directory
is removed when the import is done. A scanner upload larger than BASTION_ASYNC_IMPORT_BYTES is
imported in a background thread: the answer is 202 with the run's URL, the run `running` until
it is done."""

from __future__ import annotations

import contextvars
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field

from bastion.coverage import attack as attack_lib
from bastion.coverage.inventory import Options as DetectionOptions
from bastion.coverage.inventory import active_catalog, import_detections
from bastion.errors import ImportRejected, InvalidValue
from bastion.ingest import FORMAT_NAMES, archive, inputs
from bastion.ingest.runner import Options, import_inputs
from bastion.risks import enrich
from bastion.server import problems
from bastion.server import metrics
from bastion.server.context import ADMIN, IMPORT, READ, READ_OR_IMPORT, Context, _size
from bastion.server.problems import responses
from bastion.server.schemas import EventOut
from bastion.store import changes as changes_lib
from bastion.store.runs import KINDS

log = logging.getLogger("bastion.server.imports")

router = APIRouter(tags=["imports"])

COPY_CHUNK = 1 << 20
ASYNC_DEFAULT = 50 << 20  # BASTION_ASYNC_IMPORT_BYTES

ScanFormat = Literal[("auto", "graph", *FORMAT_NAMES)]  # type: ignore[valid-type]
DetectionFormat = Literal["auto", "sigma", "ctid", "navigator", "csv", "json"]
RunKind = Literal[KINDS]  # type: ignore[valid-type]
RunStatus = Literal["running", "succeeded", "partial", "failed", "interrupted"]


class RunOut(BaseModel):
    """An import run as recorded: its options, every file (format, SHA-256, bytes, counts,
    status), the totals and the problems (`file: place: reason`)."""

    id: int
    kind: str
    source: str
    actor: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    correlation_id: str
    options: dict[str, Any]
    files: list[dict[str, Any]]
    counts: dict[str, Any]
    errors: list[str]
    summary: dict[str, Any] | None = Field(
        default=None, description="What the importer reports beside the counts (detections: "
        "removals and snapshots; ATT&CK: the release; KEV/EPSS: matches)")


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: int | None = Field(description="Pass as `before` for the next page; null on the last")


class ChangesPage(BaseModel):
    items: list[EventOut]
    next_after: int | None = Field(description="Pass as `after` for the next page; null on the last")


# -- uploads on disk ------------------------------------------------------------------------------


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def _display_name(filename: str | None, index: int) -> str:
    """The name an upload is known by: its file name without any directory, printable."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip()[:200]
    return name if name not in ("", ".", "..") else f"upload-{index + 1}"


@dataclass
class Uploaded:
    root: str  # the temporary directory (removed by `discard`)
    paths: list[str]
    names: dict[str, str]  # path → name as uploaded
    bytes: int

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _save(ctx: Context, uploads: list[UploadFile]) -> Uploaded:
    """Each upload copied in chunks (never whole in memory) to a file of its own."""
    base = ctx.settings.upload_dir or None
    if base:
        os.makedirs(base, exist_ok=True)
    saved = Uploaded(tempfile.mkdtemp(prefix="bastion-upload-", dir=base), [], {}, 0)
    try:
        for i, upload in enumerate(uploads):
            name = _display_name(upload.filename, i)
            folder = os.path.join(saved.root, str(i))  # two uploads may have the same name
            os.mkdir(folder)
            path = os.path.join(folder, name)
            with open(path, "wb") as out:
                upload.file.seek(0)
                shutil.copyfileobj(upload.file, out, COPY_CHUNK)
                saved.bytes += out.tell()
            upload.file.close()
            saved.paths.append(path)
            saved.names[path] = name
    except BaseException:
        saved.discard()
        raise
    return saved


def _run(ctx: Context, run_id: int, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**ctx.tenant.runs.get(run_id).as_dict(), "summary": summary}


def _rejected(request: Request, run: dict[str, Any], files) -> Response:
    """422: the files the importer refused, each problem naming file, place and reason (the run
    is recorded: its URL is the Location)."""
    errors = [{"file": f.name, "reason": e} for f in files for e in (f.errors or [f"{f.name}: rejected"])]
    first = errors[0]["reason"] if errors else "rejected"
    detail = (f"{first} (import {run['id']} {run['status']}: {len(files)} of {len(run['files'])} "
              "file(s) rejected)")
    return problems.problem(request, 422, detail, slug="invalid-input", errors=errors,
                            headers={"Location": f"/v1/imports/{run['id']}"})


def _as_rejected(exc: InvalidValue, saved: Uploaded) -> ImportRejected:
    """A file the importer refused is the client's content (422), named as uploaded."""
    text = str(exc)
    for path, name in saved.names.items():
        text = text.replace(path, name)
    return ImportRejected(text)


# -- scanner output -------------------------------------------------------------------------------


BACKGROUND: set[threading.Thread] = set()  # imports answered with 202 and still running


def _async_threshold() -> int:
    return _size("BASTION_ASYNC_IMPORT_BYTES", ASYNC_DEFAULT)


def _import_in_background(ctx: Context, saved: Uploaded, options: Options) -> dict[str, Any]:
    """Start the import in a thread of its own, as this request (its correlation id and the
    uploads' names), and return the run as soon as it is recorded (`running`). A graph import
    (which records its run when done) and an error before the run began come back here."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    def started(run_id: int) -> None:
        box["run"] = _run(ctx, run_id)
        ready.set()

    def work() -> None:
        try:
            with inputs.named(saved.names):
                box["result"] = import_inputs(ctx.tenant, saved.paths, options)
        except BaseException as exc:  # noqa: BLE001 - told to the request, or logged
            box["error"] = exc
            if "run" in box:
                log.exception("background import %s failed", box["run"]["id"])
        finally:
            saved.discard()
            ready.set()
            BACKGROUND.discard(threading.current_thread())

    options.started = started
    thread = threading.Thread(target=contextvars.copy_context().run, args=(work,),
                              name=f"bastion-import-{ctx.request_id}")
    BACKGROUND.add(thread)
    thread.start()
    ready.wait()
    return box


@router.post("/imports", response_model=RunOut, status_code=201,
             summary="Import scanner output (nuclei, nmap, httpx, naabu, subfinder, BBOT, SARIF) "
                     "or Bastion's JSON graph",
             responses={**responses(413, 503), 202: {"model": RunOut, "description": "Accepted: "
                        "imported in the background; the run (`running`) is at Location"}})
def post_import(
        request: Request, response: Response,
        files: list[UploadFile] = File(description="One or more files (gzip is read as is)"),
        source: str | None = Form(default=None, description="The scan's name (risks are filed "
                                  "under TOOL:NAME; close_missing closes only those)"),
        close_missing: bool = Form(default=False, description="Remediate (not_observed) the "
                                   "open risks of the same tool and source this import did not see"),
        fmt: ScanFormat = Form(default="auto", alias="format",
                               description="auto recognises each file from its content"),
        strict: bool = Form(default=False, description="A result naming no target rejects its "
                            "file too"),
        skip_invalid: bool = Form(default=False, description="Import the valid records of a "
                                  "file with bad ones, listing what was skipped"),
        repository: str | None = Form(default=None, description="SARIF: the repository scanned"),
        ctx: Context = Depends(IMPORT)) -> Any:
    options = Options(actor=ctx.actor, format=fmt, source=source, close_missing=close_missing,
                      skip_invalid=skip_invalid, strict=strict, repository=repository,
                      event_source=ctx.source)
    saved = _save(ctx, files)
    if saved.bytes > _async_threshold():
        box = _import_in_background(ctx, saved, options)
        if "run" in box:
            response.status_code = 202
            response.headers["Location"] = f"/v1/imports/{box['run']['id']}"
            return box["run"]
        if "error" in box:
            raise box["error"]
        result = box["result"]
    else:
        try:
            with inputs.named(saved.names):
                result = import_inputs(ctx.tenant, saved.paths, options)
        finally:
            saved.discard()
    run = _run(ctx, result.run_id, {"notes": getattr(result, "notes", [])})
    metrics.imported(run["kind"], run["status"], int((run.get("counts") or {}).get("records", 0)))
    rejected = getattr(result, "rejected", None)
    if rejected:
        return _rejected(request, run, rejected)
    response.headers["Location"] = f"/v1/imports/{run['id']}"
    return run


# -- detection inventories, ATT&CK, KEV/EPSS ------------------------------------------------------


@router.post("/detections/imports", response_model=RunOut, status_code=201,
             summary="Import a detection inventory (Sigma rules, also zipped; CTID mappings, "
                     "Navigator layers, CSV/JSON) as a snapshot of an account's detections",
             responses=responses(404, 413))
def post_detections(
        request: Request, response: Response,
        files: list[UploadFile] = File(description="One or more files (gzip is read as is)"),
        account: str | None = Form(default=None, description="KEY or PROVIDER:ID (default "
                                   "other:default)"),
        fmt: DetectionFormat = Form(default="auto", alias="format"),
        source: str | None = Form(default=None, description="The snapshot's scope: detections of "
                                  "the same account and source missing from it are removed"),
        skip_invalid: bool = Form(default=False),
        keep_missing: bool = Form(default=False, description="Keep detections this import lacks"),
        ctx: Context = Depends(IMPORT)) -> Any:
    options = DetectionOptions(actor=ctx.actor, format=fmt, account=account, source=source,
                               skip_invalid=skip_invalid, keep_missing=keep_missing,
                               event_source=ctx.source)
    saved = _save(ctx, files)
    try:
        _unzip(saved)
        with inputs.named(saved.names):
            result = import_detections(ctx.tenant, saved.paths, options,
                                       catalog=active_catalog(ctx.tenant))
    finally:
        saved.discard()
    summary = {"account": result.account, "removed": result.removed,
               "mappings_added": result.mappings_added, "mappings_removed": result.mappings_removed,
               "snapshots": result.snapshots, "notes": result.notes}
    run = _run(ctx, result.run_id, summary)
    if result.rejected:
        return _rejected(request, run, result.rejected)
    response.headers["Location"] = f"/v1/imports/{run['id']}"
    return run


def _unzip(saved: Uploaded) -> None:
    """A zip archive (a Sigma rules release) is imported as the directory it unpacks to; its
    files are named under the archive's name (`rules.zip/rules/cloud/aws/x.yml`)."""
    for i, path in enumerate(saved.paths):
        if archive.is_zip(path):
            folder = f"{path}.unpacked"
            archive.unzip(path, folder, saved.names[path])
            saved.paths[i] = folder
            saved.names[folder] = saved.names[path]


@router.post("/attack/imports", response_model=RunOut, status_code=201,
             summary="Import an ATT&CK release from a STIX bundle (shared by every tenant: admin)",
             responses=responses(413))
def post_attack(
        request: Request, response: Response,
        file: UploadFile = File(description="A STIX 2.0 or 2.1 ATT&CK bundle, plain or gzip"),
        domain: Literal["enterprise", "ics", "mobile"] | None = Form(default=None),
        version: str | None = Form(default=None, max_length=50, description="Required for "
                                   "bundles without an x-mitre-collection (STIX 2.0)"),
        activate: bool = Form(default=True, description="Make it its domain's active release"),
        ctx: Context = Depends(ADMIN)) -> Any:
    saved = _save(ctx, [file])
    [path] = saved.paths
    try:
        with inputs.named(saved.names):
            result = attack_lib.import_file(
                request.app.state.store, ctx.tenant, path, domain=domain, version=version,
                activate=activate, actor=ctx.actor, source=saved.names[path])
    except InvalidValue as exc:
        raise _as_rejected(exc, saved) from None
    finally:
        saved.discard()
    remap = result.remap.as_dict() if result.remap else None
    if remap:  # the catalog is shared; its remapping reaches every tenant: show only this one's
        for part in ("remapped", "kept"):
            remap[part] = [m for m in remap[part] if m["tenant"] == ctx.tenant.name]
    summary = {"release": result.release.as_dict(), "previous": result.previous, "remap": remap}
    response.headers["Location"] = f"/v1/imports/{result.run_id}"
    return _run(ctx, result.run_id, summary)


def _enrich(ctx: Context, response: Response, catalog: str, upload: UploadFile) -> dict[str, Any]:
    saved = _save(ctx, [upload])
    try:
        with inputs.named(saved.names):
            result = enrich.import_file(ctx.tenant, catalog, saved.paths[0], ctx.actor,
                                        events_source=ctx.source)
    except InvalidValue as exc:
        raise _as_rejected(exc, saved) from None
    finally:
        saved.discard()
    response.headers["Location"] = f"/v1/imports/{result.run_id}"
    return _run(ctx, result.run_id, result.as_dict())


@router.post("/enrich/kev", response_model=RunOut, status_code=201,
             summary="Mark risks whose CVE is in CISA's Known Exploited Vulnerabilities catalog",
             responses=responses(413))
def post_kev(response: Response,
             file: UploadFile = File(description="known_exploited_vulnerabilities.json or .csv, "
                                     "plain or gzip"),
             ctx: Context = Depends(IMPORT)) -> Any:
    return _enrich(ctx, response, "kev", file)


@router.post("/enrich/epss", response_model=RunOut, status_code=201,
             summary="Set FIRST EPSS exploit-probability scores on risks with a CVE",
             responses=responses(413))
def post_epss(response: Response,
              file: UploadFile = File(description="epss_scores-YYYY-MM-DD.csv, plain or gzip"),
              ctx: Context = Depends(IMPORT)) -> Any:
    return _enrich(ctx, response, "epss", file)


# -- the record of runs ---------------------------------------------------------------------------


@router.get("/imports", response_model=RunPage, summary="Import runs of every kind, newest first",
            responses=responses())
def list_imports(
        kind: RunKind | None = Query(default=None, description="Only runs of this kind"),
        status: RunStatus | None = Query(default=None, description="Only runs in this state"),
        before: int | None = Query(default=None, ge=1, description="`next_cursor` of the previous page"),
        limit: int | None = Query(default=None, ge=1, le=10000, description="Page size (capped)"),
        ctx: Context = Depends(READ)) -> dict[str, Any]:
    size = ctx.limit(limit, 50)
    items: list[dict[str, Any]] = []
    cursor = before
    while len(items) < size:  # a status filter is applied to the pages the store gives
        page = ctx.tenant.runs.list(size, kind=kind, before=cursor)
        for r in page:
            cursor = r.id
            if status is None or r.status == status:
                items.append({**r.as_dict(), "summary": None})
                if len(items) == size:
                    break
        if len(page) < size:
            cursor = None
            break
    more = cursor is not None and bool(ctx.tenant.runs.list(1, kind=kind, before=cursor))
    return {"items": items, "next_cursor": cursor if more else None}


@router.get("/imports/{run_id}", response_model=RunOut, summary="One import run with its files",
            responses=responses(404))
def get_import(run_id: int, ctx: Context = Depends(READ_OR_IMPORT)) -> dict[str, Any]:
    return _run(ctx, run_id)


@router.get("/imports/{run_id}/changes", response_model=ChangesPage,
            summary="The events an import run wrote, in order", responses=responses(404))
def import_changes(
        run_id: int,
        after: int = Query(default=0, ge=0, description="`next_after` of the previous page"),
        limit: int | None = Query(default=None, ge=1, le=10000, description="Page size (capped)"),
        ctx: Context = Depends(READ)) -> dict[str, Any]:
    size = ctx.limit(limit, 1000)
    events = changes_lib.changes(ctx.tenant, run=run_id, after_seq=after, limit=size)
    return {"items": [ctx.event(e) for e in events],
            "next_after": events[-1].seq if len(events) == size else None}
