"""Imports: every run with its counts (new, updated, closed, re-opened …) and the changes it
made; a scan uploaded from the browser with a progress bar (XMLHttpRequest to
/console/imports/upload, which runs the API's POST /v1/imports code with the console's context)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile

from bastion.ingest import FORMAT_NAMES
from bastion.schema import roles
from bastion.server.context import Context
from bastion.server.routes import imports as api_imports
from bastion.store import changes as changes_lib
from bastion.store import export
from bastion.web.app import event, READ, READ_OR_IMPORT, console_write, csv_response, render

router = APIRouter()

PAGE = 50
CHANGES_SHOWN = 500
RUN_KINDS = ("", *api_imports.KINDS)


def _runs(ctx: Context, kind: str | None, before: int | None, size: int):
    return [r.as_dict() for r in ctx.tenant.runs.list(size, kind=kind or None, before=before)]


@router.get("/imports")
def imports(request: Request, kind: str = "", before: int | None = Query(default=None, ge=1),
            ctx: Context = Depends(READ_OR_IMPORT)):
    kind = kind if kind in RUN_KINDS else ""
    runs = _runs(ctx, kind, before, PAGE + 1) if roles.allowed(ctx.role, roles.READ) else []
    return render(request, ctx, "imports.html", runs=runs[:PAGE], kind=kind, kinds=RUN_KINDS,
                  next_before=runs[PAGE - 1]["id"] if len(runs) > PAGE else None,
                  before=before, formats=("auto", "graph", *FORMAT_NAMES))


@router.get("/imports.csv")
def imports_csv(kind: str = "", ctx: Context = Depends(READ)):
    kind = kind if kind in RUN_KINDS else ""
    rows = (r.as_dict() for r in export.pages(
        lambda after, n: ctx.tenant.runs.list(n, kind=kind or None, before=after),
        lambda r: r.id))
    return csv_response("imports.csv", rows, export.IMPORT_RUNS.columns)


@router.get("/imports/{run_id}")
def run_page(request: Request, run_id: int, ctx: Context = Depends(READ)):
    run = ctx.tenant.runs.get(run_id).as_dict()
    events = changes_lib.changes(ctx.tenant, run=run_id, limit=CHANGES_SHOWN + 1)
    return render(request, ctx, "run.html", run=run,
                  changes=[event(ctx, e) for e in events[:CHANGES_SHOWN]],
                  more=len(events) > CHANGES_SHOWN)


@router.get("/imports/{run_id}/changes.csv")
def run_changes_csv(run_id: int, ctx: Context = Depends(READ)):
    ctx.tenant.runs.get(run_id)  # 404 for an unknown run
    rows = (event(ctx, e) for e in export.pages(
        lambda after, n: changes_lib.changes(ctx.tenant, run=run_id, after_seq=after or 0, limit=n),
        lambda e: e.seq))
    return csv_response(f"import-{run_id}-changes.csv", rows, export.EVENTS.columns)


@router.post("/imports/upload", status_code=201)
def upload(request: Request, response: Response, files: list[UploadFile] = File(),
           source: str = Form(default="", max_length=200), close_missing: bool = Form(default=False),
           fmt: str = Form(default="auto", alias="format"),
           ctx: Context = Depends(console_write(roles.IMPORT))) -> Any:
    return api_imports.post_import(request, response, files=files, source=source.strip() or None,
                                   close_missing=close_missing, fmt=fmt, strict=False,
                                   skip_invalid=False, repository=None, ctx=ctx)
