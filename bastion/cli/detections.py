"""`bastion account …`, `bastion detections …`, `bastion map …`: cloud accounts, their detection
inventories and the detections' ATT&CK mappings. No SQL: bastion.coverage and bastion.store do
the work (docs/coverage.md)."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from bastion.cli.common import key_column
from bastion.cli.common import (FormatOpt, JsonOpt, ProgressBar, console, echo_json, emit,
                                entity_records, files_table, fmt_time, fmt_value, list_format,
                                print_notes_and_problems, session, short_label, shorten,
                                where_option)
from bastion.coverage import detections as ops
from bastion.coverage.importers import FORMAT_CHOICES
from bastion.coverage.inventory import (ImportResult, Options, account_key, active_catalog,
                                        import_detections)
from bastion.errors import ImportRejected
from bastion.schema.kinds import CLOUD_PROVIDERS, HEALTH_STATES
from bastion.store import export

account_app = typer.Typer(no_args_is_help=True, help="Cloud accounts whose detections are measured.")
detections_app = typer.Typer(no_args_is_help=True, help="Detection inventories: import, list, show, health.")
map_app = typer.Typer(no_args_is_help=True, help="Detection → ATT&CK technique mappings.")

DetectionFormat = enum.Enum("DetectionFormat", {n: n for n in FORMAT_CHOICES}, type=str)
JSON_OPT = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _rec(rec) -> dict[str, Any]:
    return rec.as_dict()


# -- account --------------------------------------------------------------------------------------


@account_app.command("add")
def account_add(
    ctx: typer.Context,
    provider: Annotated[str, typer.Option(help="One of: " + ", ".join(CLOUD_PROVIDERS) + ".")],
    identifier: Annotated[str, typer.Option(help="Account id, subscription, project, org or cluster.")],
    name: Annotated[Optional[str], typer.Option(help="Display name.")] = None,
    environment: Annotated[Optional[str], typer.Option(help="prod, staging or dev.")] = None,
    criticality: Annotated[Optional[str], typer.Option(help="low, medium, high or critical.")] = None,
    region: Annotated[Optional[list[str]], typer.Option("--region", help="A region in use (repeat).")] = None,
    platform: Annotated[Optional[list[str]], typer.Option(
        "--platform", help="An ATT&CK platform that applies (IaaS, SaaS, Identity Provider …; repeat).")] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Add a cloud account (or update the fields given of an existing one)."""
    sess = session(ctx)
    rec = ops.add_account(sess.tenant(), actor=sess.actor, provider=provider, identifier=identifier,
                          name=name, environment=environment, criticality=criticality,
                          regions=region, platforms=platform)
    if as_json:
        echo_json(_rec(rec))
        return
    console().print(f"{rec.key} (version {rec.version})", soft_wrap=True)


ACCOUNT_COLUMNS = [*export.columns("cloud_account"), "detections"]
AccountWhere = where_option(
    "cloud_account fields (provider, identifier, name, environment, criticality …), key, "
    "first_seen, last_seen")


@account_app.command("list")
def account_list(
    ctx: typer.Context,
    where: AccountWhere = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """List cloud accounts with their detection counts."""
    fmt = list_format(fmt, as_json)
    tenant = session(ctx).tenant()
    accounts = tenant.iterate("cloud_account", where=where or None, page_size=export.PAGE_SIZE)
    rows = ({**_rec(a), "detections": tenant.count("detection", where={"account": a.key})}
            for a in accounts)
    emit(fmt, rows, ACCOUNT_COLUMNS, table=_accounts_table)


def _accounts_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console().print("no accounts yet (`bastion account add`)", style="dim")
        return
    table = Table(key_column(), "Provider", "Identifier", "Name", "Env", "Criticality", "Platforms", "Detections")
    for v in rows:
        table.add_row(v["key"], v["provider"], v["identifier"], v.get("name") or "", v.get("environment") or "",
                      v.get("criticality") or "", ", ".join(v.get("platforms") or []), str(v["detections"]))
    console().print(table)


# -- detections import ----------------------------------------------------------------------------


class _Bar(ProgressBar):
    def __init__(self, enabled: bool):
        super().__init__(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), enabled=enabled)

    def start(self, total: int) -> None:
        self.task = self.progress.add_task("reading", total=total)

    def file(self, name: str) -> None:
        self.progress.update(self.task, description=short_label(name))
        self.progress.advance(self.task)


MAX_ROWS = 25
COLUMNS = ("detections", "added", "modified", "unchanged", "mappings", "skipped")


@detections_app.command("import")
def detections_import(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help=(
        "Files or directories (recursively); '-' reads standard input; gzip is read as is."))],
    account: Annotated[Optional[str], typer.Option(
        metavar="KEY|PROVIDER:ID", help="The account the detections run in (default: other:default).")] = None,
    fmt: Annotated[DetectionFormat, typer.Option(
        "--format", "-f", help="auto recognises each file from its content.")] = "auto",
    source: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="The snapshot's scope (default: what the file names, e.g. ctid:aws, else "
                             "the format): detections of the same account and source missing from "
                             "this import are removed.")] = None,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Import the valid items of a file with bad ones; list what was skipped.")] = False,
    keep_missing: Annotated[bool, typer.Option(
        "--keep-missing", help="Keep detections the previous snapshot had and this one lacks.")] = False,
    indicators: Annotated[Optional[list[str]], typer.Option(
        "--indicators", metavar="FILE", help="More threat-indicator rules (YAML, repeat).")] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Import a detection inventory — Sigma rules, CTID mappings-explorer JSON, ATT&CK Navigator
    layers, the simple CSV/JSON format, or the GCP and Azure CLI exports (gcloud logging metrics and
    alert policies, az activity-log alerts, Sentinel analytic rules; health checked, docs/cloud.md)
    — as a snapshot of an account's detections. A file with a
    bad item (invalid YAML, a rule without id, an invalid technique id) is rejected whole unless
    --skip-invalid. A changed rule is a new revision; a rule gone from the source is removed.
    Detections land only in the account's own cloud: a CTID file for another provider is refused
    (skipped with --skip-invalid), Sigma rules of other providers are skipped and counted."""
    sess = session(ctx)
    tenant = sess.tenant()
    fmt = fmt.value if isinstance(fmt, enum.Enum) else fmt
    options = Options(actor=sess.actor, format=fmt, account=account, source=source,
                      skip_invalid=skip_invalid, keep_missing=keep_missing, indicators=indicators)
    catalog = active_catalog(tenant)
    with _Bar(enabled=not as_json) as bar:
        result = import_detections(tenant, paths, options, catalog=catalog, progress=bar.callback)
    if as_json:
        echo_json(result.as_dict())
    else:
        _summary(result, catalog is None)
    if result.rejected:
        raise ImportRejected(f"{len(result.rejected)} of {len(result.files)} file(s) rejected")


def _summary(result: ImportResult, no_catalog: bool) -> None:
    out = console()
    many = len(result.files) > MAX_ROWS
    table = files_table(  # a large directory: only the files with something to say
        f"detections import into {result.account}: {result.status}", result.files, COLUMNS,
        result.totals(), lambda f: not many or f.status != "imported" or bool(f.skipped or f.problems))
    if many:
        table.caption = (f"{sum(f.status == 'imported' for f in result.files):,} file(s) imported; "
                         "rows of files imported without problems are left out (--json lists all)")
    out.print(table)
    out.print(f"removed:  {result.removed} detection(s); mappings {result.mappings_added} added, "
              f"{result.mappings_removed} removed", soft_wrap=True)
    if result.snapshots:
        out.print("snapshot: " + ", ".join(f"{s} #{i}" for s, i in result.snapshots.items()), soft_wrap=True)
    if no_catalog:
        out.print(Text("no ATT&CK catalog imported: technique ids were checked for shape only "
                       "(`bastion attack import`)", style="yellow"), soft_wrap=True)
    print_notes_and_problems(result.notes, result.files, "problems", "more_problems")
    for f in result.files:
        for line in f.notes:
            out.print(Text(line, style="dim"), soft_wrap=True)


# -- detections list / show / health ----------------------------------------------------------------


DETECTION_COLUMNS = [c for c in export.columns("detection") if c != "raw"]
LIST_LIMIT = 1000


DetectionWhere = where_option(
    "detection fields (name, type, service, status, health, level, revision …), key, "
    "first_seen, last_seen; ~TEXT searches name")


@detections_app.command("list")
def detections_list(
    ctx: typer.Context,
    account: Annotated[Optional[str], typer.Option(metavar="KEY|PROVIDER:ID", help="Only this account's.")] = None,
    status: Annotated[Optional[str], typer.Option(help="enabled, disabled or deprecated.")] = None,
    health: Annotated[Optional[str], typer.Option(help="One of: " + ", ".join(HEALTH_STATES) + ".")] = None,
    where: DetectionWhere = None,
    limit: Annotated[Optional[int], typer.Option(
        metavar="N", help=f"At most this many (default {LIST_LIMIT}).", show_default=False)] = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """List detections (their fields but the raw rule text)."""
    fmt = list_format(fmt, as_json, limit=limit)
    recs = entity_records(session(ctx).tenant(), "detection", fmt, where, limit=limit or LIST_LIMIT,
                          account=account_key(account) if account else None, status=status,
                          health=health)
    emit(fmt, ({k: v for k, v in _rec(r).items() if k != "raw"} for r in recs), DETECTION_COLUMNS,
         table=_detections_table)


def _detections_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console().print("no detections", style="dim")
        return
    table = Table(key_column(), "Name", "Type", "Service", "Status", "Health", "Rev")
    for v in rows:
        table.add_row(v["key"], shorten(v.get("name") or "", 50), v["type"], v.get("service") or "",
                      v["status"], v["health"], str(v["revision"]))
    console().print(table)


@detections_app.command("show")
def detections_show(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The detection's key.")],
    as_json: JSON_OPT = False,
) -> None:
    """Show a detection: its fields, its mappings and its revision history."""
    tenant = session(ctx).tenant()
    rec = ops._get(tenant, key, "detection")
    maps = tenant.list("mapping", where={"detection": key}, limit=10000).records
    history = [ev for ev in tenant.history(key) if ev.entity_kind == "detection"]
    if as_json:
        echo_json({**_rec(rec), "mappings": [_rec(m) for m in maps],
                   "history": [ev.as_dict() for ev in history]})
        return
    out = console()
    out.print(Text(key, style="bold"), soft_wrap=True)
    for name, value in rec.values.items():
        if name != "raw" and value is not None:
            out.print(f"  {name}: {shorten(fmt_value(value), 160)}", soft_wrap=True)
    table = Table("Technique", "Confidence", "Method", "By", "Validation", "ATT&CK", title="mappings",
                  title_justify="left")
    for m in maps:
        v = m.values
        table.add_row(v["technique"], f"{v['confidence']:.2f}", v["method"], v.get("mapped_by") or "",
                      v["validation"], v.get("attack_version") or "")
    out.print(table)
    hist = Table("When", "Event", "Revision", "Changed", "Actor", "Note", title="history", title_justify="left")
    for ev in history:
        rev = ev.diff.get("revision")
        hist.add_row(fmt_time(ev.occurred_at), ev.event_type, fmt_value(rev[1] if rev else None),
                     ", ".join(sorted(ev.diff)), ev.actor, ev.note or "")
    out.print(hist)


@detections_app.command("health")
def detections_health(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The detection's key.")],
    set_: Annotated[str, typer.Option("--set", metavar="STATE", help=", ".join(HEALTH_STATES) + ".")],
    issue: Annotated[Optional[list[str]], typer.Option("--issue", metavar="TEXT", help="What is wrong (repeat).")] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Record a detection's health (broken detections never count as coverage); an event."""
    sess = session(ctx)
    rec = ops.set_health(sess.tenant(), key, set_, actor=sess.actor, issues=issue)
    if as_json:
        echo_json(_rec(rec))
        return
    console().print(f"{key}: {rec.values['health']}, version {rec.version}", soft_wrap=True)


@detections_app.command("check-deprecated")
def detections_check_deprecated(
    ctx: typer.Context,
    registry: Annotated[Optional[str], typer.Option(metavar="FILE", help="Your own registry (YAML).")] = None,
    account: Annotated[Optional[str], typer.Option(metavar="KEY|PROVIDER:ID")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Mark them degraded with an issue (events).")] = False,
    as_json: JSON_OPT = False,
) -> None:
    """List detections whose configuration uses a deprecated or retired cloud API."""
    sess = session(ctx)
    found = ops.check_deprecated(sess.tenant(), actor=sess.actor, registry=registry, apply=apply,
                                 account=account)
    if as_json:
        echo_json([{"key": r.key, "apis": [a.__dict__ for a in apis], "applied": apply} for r, apis in found])
        return
    if not found:
        console().print("no detection uses a deprecated API", style="green")
        return
    table = Table(key_column("Detection"), "API", "Retired", "Replacement")
    for r, apis in found:
        for a in apis:
            table.add_row(r.key, a.id, a.retired, a.replacement)
    console().print(table)
    if apply:
        console().print(f"{len(found)} detection(s) marked degraded")


# -- map --------------------------------------------------------------------------------------------


@map_app.command("add")
def map_add(
    ctx: typer.Context,
    detection: Annotated[str, typer.Argument(metavar="DETECTION", help="The detection's key.")],
    technique: Annotated[str, typer.Argument(metavar="TECHNIQUE", help="T1078 or T1078.004.")],
    confidence: Annotated[float, typer.Option(min=0, max=1)] = 1.0,
    rationale: Annotated[Optional[str], typer.Option(metavar="TEXT")] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Map a detection to a technique by hand (method analyst; imports never change it)."""
    sess = session(ctx)
    tenant = sess.tenant()
    rec = ops.add_mapping(tenant, detection, technique, actor=sess.actor, confidence=confidence,
                          rationale=rationale, catalog=active_catalog(tenant))
    if as_json:
        echo_json(_rec(rec))
        return
    console().print(f"{rec.key} (version {rec.version})", soft_wrap=True)


def _validation(ctx, key: str, state: str, rationale: str | None, as_json: bool) -> None:
    sess = session(ctx)
    rec = ops.set_validation(sess.tenant(), key, state, actor=sess.actor, rationale=rationale)
    if as_json:
        echo_json(_rec(rec))
        return
    console().print(f"{key}: {state}", soft_wrap=True)


@map_app.command("validate")
def map_validate(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The mapping's key.")],
    rationale: Annotated[Optional[str], typer.Option(metavar="TEXT")] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Mark a mapping validated (an event)."""
    _validation(ctx, key, "validated", rationale, as_json)


@map_app.command("dispute")
def map_dispute(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The mapping's key.")],
    rationale: Annotated[Optional[str], typer.Option(metavar="TEXT", help="Why it is wrong.")] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Mark a mapping disputed (an event)."""
    _validation(ctx, key, "disputed", rationale, as_json)


MappingWhere = where_option(
    "mapping fields (detection, technique, confidence, method, mapped_by, validation, "
    "attack_version …), key, first_seen, last_seen")


@map_app.command("list")
def map_list(
    ctx: typer.Context,
    detection: Annotated[Optional[str], typer.Option(metavar="KEY")] = None,
    technique: Annotated[Optional[str], typer.Option(metavar="ID")] = None,
    validation: Annotated[Optional[str], typer.Option(help="pending, validated or disputed.")] = None,
    where: MappingWhere = None,
    limit: Annotated[Optional[int], typer.Option(
        metavar="N", help=f"At most this many (default {LIST_LIMIT}).", show_default=False)] = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """List mappings."""
    fmt = list_format(fmt, as_json, limit=limit)
    recs = entity_records(session(ctx).tenant(), "mapping", fmt, where, limit=limit or LIST_LIMIT,
                          detection=detection, validation=validation,
                          technique=technique.strip().upper() if technique else None)
    emit(fmt, (_rec(r) for r in recs), export.columns("mapping"), table=_mappings_table)


def _mappings_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console().print("no mappings", style="dim")
        return
    table = Table(key_column(), "Technique", "Confidence", "Method", "By", "Validation")
    for v in rows:
        table.add_row(v["key"], v["technique"], f"{v['confidence']:.2f}", v["method"], v.get("mapped_by") or "",
                      v["validation"])
    console().print(table)


def register(root: typer.Typer) -> None:
    root.add_typer(account_app, name="account", rich_help_panel="Coverage")
    root.add_typer(detections_app, name="detections", rich_help_panel="Coverage")
    root.add_typer(map_app, name="map", rich_help_panel="Coverage")
