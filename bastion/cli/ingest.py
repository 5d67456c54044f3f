"""`bastion import` (scanner output, or Bastion's JSON graph), `bastion imports` (the record of
every run) and `bastion risk` (the risk lifecycle: status, SLA). No SQL: bastion.ingest,
bastion.risks and bastion.store do the work."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from itertools import islice
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from bastion.errors import ImportRejected
from bastion.graph import jsonformat
from bastion.ingest import FORMAT_NAMES
from bastion.ingest.runner import FileResult, ImportResult, Options, import_inputs
from bastion.risks import lifecycle
from bastion.schema.kinds import RISK_REASONS, RISK_STATES
from bastion.store import export, filters
from bastion.store.runs import KINDS
from bastion.cli.common import (FormatOpt, JsonOpt, emit, exporting, key_column, list_format,
                                rows_where_option, where_option)
from bastion.cli.common import (ProgressBar, console, echo_json, files_table, fmt_time,
                                print_notes_and_problems, session, short_label)

ImportKind = enum.Enum("ImportKind", {n: n for n in KINDS}, type=str)
ImportFormat = enum.Enum("ImportFormat", {n: n for n in ("auto", "graph", *FORMAT_NAMES)}, type=str)


# -- import ---------------------------------------------------------------------------------------

IMPORT_HELP = (
    "Import scanner output — nuclei, nmap, httpx, naabu, subfinder, BBOT, SARIF — or Bastion's JSON "
    "graph (a CMDB, cloud inventory or network map: docs/graph.md).\n\n"
    "PATH is a file, a directory (every file below it) or '-' for standard input; gzip is read "
    "as is. The format is recognised from the content (--format names it). A file that cannot be "
    "parsed is refused whole. A result that names no target (a DNS template run without a host) "
    "is skipped and listed with its file, line and reason, and the rest of the file imports "
    "(--strict refuses the file instead). A record that cannot be read is reported the same way "
    "and nothing from its file is written, unless --skip-invalid. An empty file is a clean scan: "
    "zero findings, with a warning. Findings become risks, one per asset group "
    "and finding name; seeing one again adds evidence, re-opens it if it was remediated and never "
    "overrides an analyst's decision. Every run is recorded (`bastion imports list`). "
    "Importing the same files again changes nothing but last-seen times; a file identical to "
    "one imported before, when nothing that import wrote has changed since, is not even parsed "
    "again.\n\n"
    "Mappings of every format: docs/formats.md."
)


def import_command(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(
        metavar="PATH...", help="Files or directories to import; '-' reads standard input.")],
    fmt: Annotated[ImportFormat, typer.Option(
        "--format", "-f", help="Input format; auto recognises it from each file's content.")] = "auto",
    source: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="Name of the scan (its scope, e.g. 'external-weekly'): risks are "
                             "filed under TOOL:NAME, and --close-missing closes only those.")] = None,
    close_missing: Annotated[bool, typer.Option(
        "--close-missing", help="Remediate (reason not_observed) the open risks of the same tool "
                                "and --source that this import did not observe.")] = False,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Import the valid records of a file with bad ones, and list "
                               "what was skipped.")] = False,
    repository: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="SARIF: the repository the code was scanned in (e.g. "
                             "https://github.com/acme/shop), for logs that name none (semgrep). "
                             "Without it such a log's files are filed under the tool and "
                             "--source.")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="All or nothing: a result that names no target rejects its file too "
                         "(by default it is skipped and listed).")] = False,
    no_reuse: Annotated[bool, typer.Option(
        "--no-reuse", help="Parse every file, even one whose same bytes were imported before with "
                           "nothing they wrote changed since (such a file is otherwise only "
                           "recorded as seen again).")] = False,
    replace: Annotated[bool, typer.Option(
        "--replace", help="JSON graph only: replace stored nodes (what the file leaves out takes "
                          "its default) instead of merging.")] = False,
    account: Annotated[Optional[str], typer.Option(
        metavar="PROVIDER:ID", help="The cloud account of the scanned assets (e.g. aws:123456789012): "
                                    "sets the provider and account of every asset the import "
                                    "creates or updates, for `bastion exposures`.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    sess = session(ctx)
    fmt = fmt.value if isinstance(fmt, enum.Enum) else fmt
    tenant = sess.tenant()
    options = Options(actor=sess.actor, format=fmt, source=source, close_missing=close_missing,
                      skip_invalid=skip_invalid, strict=strict, reuse=not no_reuse,
                      repository=repository, replace=replace, account=account)
    with _Bar(enabled=not as_json) as bar:
        result = import_inputs(tenant, paths, options, bar.callback)
    if isinstance(result, jsonformat.ImportReport):
        _graph_summary(result, as_json)
        return
    if as_json:
        echo_json(import_json(result))
    else:
        _summary(result)
    if result.rejected:
        raise ImportRejected(f"{len(result.rejected)} of {len(result.files)} input(s) rejected "
                             f"(import {result.run_id}; `bastion imports show {result.run_id}`)")


def _graph_summary(report: jsonformat.ImportReport, as_json: bool) -> None:
    run_id = report.run_id
    r = report.result
    if as_json:
        echo_json({"files": report.documents, "nodes": report.nodes, "edges": report.edges,
                   "created": r.created, "updated": r.updated, "unchanged": r.unchanged,
                   "edges_added": r.edges_added, "edges_updated": r.edges_updated,
                   "edges_unchanged": r.edges_unchanged, "events": r.events,
                   "correlation_id": r.correlation_id, "import": run_id})
        return
    out = console()
    out.print(Text("imported  ", style="green") + Text(", ".join(report.documents))
              + Text(f" ({report.nodes} node(s), {report.edges} edge(s))", style="dim"),
              soft_wrap=True)
    out.print(f"nodes:    {r.created} created, {r.updated} updated, {r.unchanged} unchanged",
              soft_wrap=True)
    out.print(f"edges:    {r.edges_added} added, {r.edges_updated} updated, "
              f"{r.edges_unchanged} unchanged", soft_wrap=True)
    out.print(f"events:   {r.events} (correlation id {r.correlation_id}; import {run_id})",
              soft_wrap=True)


class _Bar(ProgressBar):
    """A progress bar per file: bytes read, rate, records so far."""

    def __init__(self, enabled: bool):
        super().__init__(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                         TransferSpeedColumn(), TextColumn("{task.fields[records]} records"),
                         TimeElapsedColumn(), enabled=enabled)

    def start(self, name: str, size: int | None) -> None:
        self.task = self.progress.add_task(short_label(name), total=size, records=0)

    def advance(self, nbytes: int) -> None:
        self.progress.advance(self.task, nbytes)

    def records(self, count: int) -> None:
        self.progress.update(self.task, records=f"{count:,}")

    def done(self, result: FileResult) -> None:
        self.progress.remove_task(self.task)


COLUMNS = ("records", "findings", "created", "updated", "unchanged", "reopened", "skipped")


def _summary(result: ImportResult) -> None:
    out = console()
    out.print(files_table(f"import {result.run_id}: {result.status}", result.files, COLUMNS,
                          result.totals()))
    for f in result.files:
        if f.reused_run is not None:
            out.print(f"{f.name}: the same bytes as in import {f.reused_run} and nothing that import "
                      "wrote has changed since: recorded as seen again without parsing",
                      style="dim", soft_wrap=True)
    if result.closed:
        out.print(f"closed:   {result.closed} risk(s) not observed by this import "
                  "(remediated, reason not_observed)")
    print_notes_and_problems(result.notes, result.files, "errors", "more_errors")


def import_json(result: ImportResult) -> dict[str, Any]:
    return {"import": result.run_id, "status": result.status, "correlation_id": result.correlation_id,
            "totals": result.totals(), "notes": result.notes,
            "files": [{**f.__dict__} for f in result.files]}


# -- imports --------------------------------------------------------------------------------------

imports_app = typer.Typer(no_args_is_help=True,
                          help="The record of every `bastion import`: files and their SHA-256, "
                               "counts, errors.")


ImportsWhere = rows_where_option(export.IMPORT_RUNS)
IMPORTS_SHOWN = 20


@imports_app.command("list")
def imports_list(
    ctx: typer.Context,
    limit: Annotated[Optional[int], typer.Option(
        metavar="N", help=f"How many, newest first (default {IMPORTS_SHOWN}; csv and ndjson "
                          "export every run).", show_default=False)] = None,
    kind: Annotated[Optional[ImportKind], typer.Option(
        "--kind", help="Only runs of this kind: scanner output (scan), JSON graph (graph), "
                       "detections, ATT&CK bundles (attack), KEV catalog (kev), EPSS scores "
                       "(epss).")] = None,
    where: ImportsWhere = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """List import runs of every kind, newest first."""
    fmt = list_format(fmt, as_json, limit=limit)
    kind = kind.value if isinstance(kind, enum.Enum) else kind
    flt = filters.parse_rows(export.IMPORT_RUNS, where)
    tenant = session(ctx).tenant()
    shown = None if exporting(fmt) else limit or IMPORTS_SHOWN
    runs = export.pages(lambda before, n: tenant.runs.list(n, kind=kind, before=before),
                        lambda r: r.id, page_size=shown)
    rows = flt.select(r.as_dict() for r in runs)
    if shown is not None:
        rows = islice(rows, shown)
    emit(fmt, rows, export.IMPORT_RUNS.columns, table=_imports_table)


def _imports_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console().print("no imports yet", style="dim")
        return
    table = Table("Id", "Kind", "Started", "Status", "Source", "Files", "Records", "Created",
                  "Updated", "Closed", "Actor")
    for r in rows:
        c = r["counts"]
        table.add_row(str(r["id"]), r["kind"], fmt_time(r["started_at"]), r["status"], r["source"] or "-",
                      str(c.get("files", len(r["files"]))), f"{c.get('records', 0):,}",
                      f"{c.get('created', 0):,}", f"{c.get('updated', 0):,}", f"{c.get('closed', 0):,}",
                      r["actor"])
    console().print(table)


@imports_app.command("show")
def imports_show(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="ID", help="Import run id (`bastion imports list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one import run: options, every file with its hash and counts, the errors."""
    r = session(ctx).tenant().runs.get(run_id)
    if as_json:
        echo_json(r.as_dict())
        return
    out = console()
    out.print(f"import {r.id}: {r.status}", style="bold")
    finished = fmt_time(r.finished_at) if r.finished_at else "-"
    out.print(f"started {fmt_time(r.started_at)}, finished {finished}, by {r.actor}; "
              f"correlation id {r.correlation_id}", soft_wrap=True)
    opts = ", ".join(f"{k}={v}" for k, v in r.options.items() if v not in (None, False, []))
    out.print(f"options: {opts}", soft_wrap=True)
    table = Table("File", "Format", "SHA-256", "Bytes", *(c.title() for c in COLUMNS), "Status")
    for f in r.files:
        table.add_row(f["name"], f.get("format") or "-", (f.get("sha256") or "-")[:16],
                      f"{f.get('bytes', 0):,}", *(f"{f.get(c, 0):,}" for c in COLUMNS),
                      f["status"] + (f" (reused import {f['reused_run']})" if f.get("reused_run") else ""))
    out.print(table)
    if r.counts.get("closed"):
        out.print(f"closed: {r.counts['closed']} risk(s) not observed")
    for line in r.errors:
        out.print(Text(line, style="red"), soft_wrap=True)


# -- risk -----------------------------------------------------------------------------------------

risk_app = typer.Typer(no_args_is_help=True,
                       help="The risk lifecycle: analyst decisions, SLA deadlines, what is overdue.")


@risk_app.command("set-status")
def risk_set_status(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The risk's key (`bastion list risks`).")],
    state: Annotated[str, typer.Argument(metavar="STATE", help="One of: " + ", ".join(RISK_STATES) + ".")],
    reason: Annotated[Optional[str], typer.Option(
        metavar="REASON", help="Why it is closed (remediated or deleted): "
                               + ", ".join(RISK_REASONS) + ".")] = None,
    comment: Annotated[Optional[str], typer.Option(
        metavar="TEXT", help="A note kept on the risk and on the event.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the risk as JSON.")] = False,
) -> None:
    """Set a risk's state (triage, open, accepted, remediated, deleted). Accepted and deleted
    risks keep their state whatever scanners report later; a remediated one re-opens when a
    scanner sees it again. Every transition is an event."""
    sess = session(ctx)
    rec = lifecycle.set_status(sess.tenant(), key, state, reason=reason, comment=comment,
                               actor=sess.actor)
    if as_json:
        from bastion.cli.read import record_json

        echo_json(record_json(rec))
        return
    why = f" ({rec.values['reason']})" if rec.values.get("reason") else ""
    console().print(f"{key}: {rec.values['status']}{why}, version {rec.version}", soft_wrap=True)


OverdueWhere = where_option("risk fields (severity, title, cvss, priority, kev …), key, "
                            "first_seen, last_seen; ~TEXT searches title and name")
OVERDUE_SHOWN = 100


@risk_app.command("overdue")
def risk_overdue(
    ctx: typer.Context,
    where: OverdueWhere = None,
    limit: Annotated[Optional[int], typer.Option(
        metavar="N", help=f"At most this many, oldest first (default {OVERDUE_SHOWN}; csv and "
                          "ndjson export every one).", show_default=False)] = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Open risks (triage or open) past their remediate-by date: first seen + the SLA days of
    their severity (`bastion risk sla`)."""
    fmt = list_format(fmt, as_json, limit=limit)
    now = datetime.now(timezone.utc)
    flt = filters.parse("risk", where, now=now)  # parsed once: the same filter on every page
    tenant = session(ctx).tenant()
    if exporting(fmt):
        items = export.pages(lambda after, n: lifecycle.overdue(tenant, now, n, where=flt, after=after),
                             lambda item: (item[0].first_seen, item[0].key))
    else:
        items = lifecycle.overdue(tenant, now, limit or OVERDUE_SHOWN, where=flt)
    rows = ({"key": r.key, "severity": r.values["severity"], "status": r.values["status"],
             "first_seen": r.first_seen, "due": due, "days_overdue": (now - due).days}
            for r, due in items)
    emit(fmt, rows, export.OVERDUE_COLUMNS, table=_overdue_table)


def _overdue_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console().print("no overdue risks", style="green")
        return
    table = Table(key_column(), "Severity", "Status", "First seen", "Due", "Days overdue")
    for r in rows:
        table.add_row(r["key"], r["severity"], r["status"], fmt_time(r["first_seen"]),
                      fmt_time(r["due"]), str(r["days_overdue"]))
    console().print(table)


@risk_app.command("sla")
def risk_sla(
    ctx: typer.Context,
    set_: Annotated[Optional[str], typer.Option(
        "--set", metavar="SEVERITY=DAYS,…", help="Change deadlines, e.g. critical=7,high=30.")] = None,
    initial_status: Annotated[Optional[str], typer.Option(
        metavar="STATE", help="The state new findings start in: triage (default) or open.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show or change the tenant's remediation deadlines per severity and the state new findings
    start in. Changes are events."""
    sess = session(ctx)
    settings = lifecycle.configure(sess.tenant(), sla=set_, initial=initial_status,
                                   actor=sess.actor, source="cli")
    days, initial = settings.sla_days, settings.initial_status
    if as_json:
        echo_json({"sla_days": days, "initial_status": initial})
        return
    table = Table("Severity", "Remediate within")
    for sev in ("critical", "high", "medium", "low", "info"):
        table.add_row(sev, f"{days[sev]} days" if sev in days else "no deadline")
    console().print(table)
    console().print(f"new findings start in: {initial}")


def register(root: typer.Typer) -> None:
    root.command("import", rich_help_panel="Write", help=IMPORT_HELP,
                 epilog="Examples: bastion import nuclei.jsonl scans/ --source external-weekly "
                        "--close-missing; bastion import cmdb.json")(import_command)
    root.add_typer(imports_app, name="imports", rich_help_panel="Read")
    root.add_typer(risk_app, name="risk", rich_help_panel="Write")
