"""`bastion coverage …`: coverage reports, gaps, overlaps, drift, history, Navigator layers and
the CI gate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer
from rich.table import Table
from rich.text import Text

from bastion.coverage import ATTRIBUTION
from bastion.coverage.compute import AGGREGATIONS, DEFAULT_MIN_CONFIDENCE, METHODS, TENANT, compute
from bastion.errors import GATE_FAILED, InvalidValue, NotFound
from bastion.risks.exposures import exposed_techniques, exposures
from bastion.cli.common import (FormatOpt, console, echo_json, emit, exporting, fmt_time,
                                key_column, list_format, rows_where_option, session, shorten)
from bastion.store import export, filters

app = typer.Typer(no_args_is_help=True, help="ATT&CK coverage of your detections, per account and tactic.")

BAR = 30


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="coverage", rich_help_panel="Coverage")


def _catalog(tenant, domain: str = "enterprise"):
    """The active ATT&CK release of `domain`, loaded whole (bastion.store.catalog); NotFound
    when none is active. Tests stub this one function."""
    from bastion.coverage.attack import normalize_domain

    return tenant.coverage.catalog(normalize_domain(domain))


AccountOpt = Annotated[Optional[str], typer.Option(
    "--account", "-a", metavar="ACCOUNT",
    help="Account key, provider/identifier, identifier or name. Default: the whole tenant.")]
MethodOpt = Annotated[str, typer.Option(
    "--method", metavar="METHOD",
    help="default (health, validation, roll-up, platforms) or plain (the classic count).")]
AggOpt = Annotated[str, typer.Option(
    "--aggregation", metavar="AGG", help="Technique score: count, max (level) or weighted.")]
ConfOpt = Annotated[float, typer.Option(
    "--min-confidence", metavar="X", help="Mappings below count only when validated (default method).")]
IncludeOpt = Annotated[Optional[list[str]], typer.Option(
    "--include", metavar="ID", help="Count only these techniques (with their sub-techniques) "
                                     "and/or tactics; repeatable or comma-separated.")]
IgnoreOpt = Annotated[Optional[list[str]], typer.Option(
    "--ignore", metavar="ID", help="Leave out these techniques and/or tactics.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for lists: the same as --format json).")]
DomainOpt = Annotated[str, typer.Option(
    "--domain", metavar="DOMAIN", help="ATT&CK domain measured against (its active release): "
                                       "enterprise, ics or mobile.")]


def _check_choice(value: str, choices, option: str) -> str:
    v = value.strip().lower()
    if v not in choices:
        raise InvalidValue(f"{option} must be one of {', '.join(choices)}, not {value!r}")
    return v


def _compute(ctx, account, method="default", aggregation="count",
             min_confidence=DEFAULT_MIN_CONFIDENCE, include=None, ignore=None, details=False,
             domain="enterprise"):
    method = _check_choice(method, METHODS, "--method")
    aggregation = _check_choice(aggregation, AGGREGATIONS, "--aggregation")
    tenant = session(ctx).tenant()
    catalog = _catalog(tenant, domain)
    cov = compute(tenant, catalog, account=account, method=method, aggregation=aggregation,
                  min_confidence=min_confidence, include=include, ignore=ignore, details=details)
    return tenant, catalog, cov


def _attribution() -> None:
    console().print(Text(ATTRIBUTION, style="dim"), soft_wrap=True)


def _bar(pct: float) -> Text:
    filled = int(round(pct / 100 * BAR))
    style = "green" if pct >= 66 else "yellow" if pct >= 33 else "red"
    return Text("█" * filled, style=style) + Text("░" * (BAR - filled), style="dim")


@app.command("report")
def report(
    ctx: typer.Context,
    account: AccountOpt = None,
    domain: DomainOpt = "enterprise",
    method: MethodOpt = "default",
    aggregation: AggOpt = "count",
    min_confidence: ConfOpt = DEFAULT_MIN_CONFIDENCE,
    include: IncludeOpt = None,
    ignore: IgnoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Coverage per tactic (matrix order) and overall, and the techniques exposed by open risks
    (Enterprise: open risks' techniques no counting detection of their asset's account watches,
    as `bastion exposures --by-technique`)."""
    tenant, catalog, cov = _compute(ctx, account, method, aggregation, min_confidence, include, ignore,
                                    domain=domain)
    exposed = None
    if cov.domain == "enterprise":  # risks' techniques are Enterprise ones
        exposed = exposed_techniques(exposures(tenant, catalog, min_confidence=min_confidence,
                                               account=None if cov.account == TENANT else cov.account))
    if as_json:
        echo_json({**cov.as_dict(), "exposed_techniques": exposed, "attribution": ATTRIBUTION})
        return
    out = console()
    who = "tenant (all accounts)" if cov.account == TENANT else cov.account
    out.print(f"ATT&CK {cov.domain} {cov.version} coverage of {who} — method {cov.method}",
              soft_wrap=True)
    table = Table("Tactic", "", "Covered", "%", box=None, pad_edge=False)
    for t in cov.tactics:
        table.add_row(t.name, _bar(t.percent), f"{t.covered}/{t.total}", f"{t.percent:.1f}")
    o = cov.overall
    table.add_row(Text("Overall", style="bold"), _bar(o["percent"]), f"{o['covered']}/{o['total']}",
                  f"{o['percent']:.1f}")
    out.print(table)
    if exposed is not None:
        _exposed_section(exposed)
    _attribution()


EXPOSED_ROWS = 10


def _exposed_section(rows: list[dict]) -> None:
    out = console()
    if not rows:
        out.print("Techniques exposed by open risks: none")
        return
    table = Table("Technique", "Name", "Risks", "Top score", "Accounts", box=None, pad_edge=False,
                  title=f"Techniques exposed by open risks: {len(rows)}", title_justify="left")
    for r in rows[:EXPOSED_ROWS]:
        table.add_row(r["technique"], r["name"] or "", str(r["risks"]), f"{r['top_score']:g}",
                      ", ".join(r["accounts"]))
    out.print(table)
    if len(rows) > EXPOSED_ROWS:
        out.print(f"… {len(rows) - EXPOSED_ROWS} more (`bastion exposures --by-technique`, --json)")


TechniquesWhere = rows_where_option(export.TECHNIQUES)


@app.command("techniques")
def techniques(
    ctx: typer.Context,
    account: AccountOpt = None,
    domain: DomainOpt = "enterprise",
    method: MethodOpt = "default",
    aggregation: AggOpt = "count",
    min_confidence: ConfOpt = DEFAULT_MIN_CONFIDENCE,
    include: IncludeOpt = None,
    ignore: IgnoreOpt = None,
    covered_only: Annotated[bool, typer.Option("--covered", help="Only covered techniques.")] = False,
    where: TechniquesWhere = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Per technique: covered or not, the score and the detections behind it."""
    fmt = list_format(fmt, as_json)
    flt = filters.parse_rows(export.TECHNIQUES, where)
    _t, _c, cov = _compute(ctx, account, method, aggregation, min_confidence, include, ignore,
                           details=True, domain=domain)
    rows = flt.select(r.as_dict() for r in cov.techniques.values() if r.covered or not covered_only)

    def as_json_(rows):
        return {"account": cov.account, "method": cov.method, "aggregation": cov.aggregation,
                "attack": {"domain": cov.domain, "version": cov.version},
                "techniques": rows, "attribution": ATTRIBUTION}

    def table(rows):
        table = Table("Technique", "Name", "Tactics", "Score", "Detections")
        for r in rows:
            dets = ", ".join(d.get("name") or d["rule_id"] for d in (r.get("detections") or []))
            table.add_row(r["id"], shorten(r["name"], 40), ", ".join(r["tactics"]), f"{r['score']:g}",
                          shorten(dets, 80) if r["covered"] else Text("gap", style="red"))
        console().print(table)
        _attribution()

    emit(fmt, rows, export.TECHNIQUES.columns, json=as_json_, table=table)


GapsWhere = rows_where_option(export.GAPS)
GAPS_SHOWN = 50


@app.command("gaps")
def gaps_cmd(
    ctx: typer.Context,
    account: AccountOpt = None,
    domain: DomainOpt = "enterprise",
    min_confidence: ConfOpt = DEFAULT_MIN_CONFIDENCE,
    include: IncludeOpt = None,
    ignore: IgnoreOpt = None,
    where: GapsWhere = None,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", min=1, help=f"Show at most N gaps (default {GAPS_SHOWN}; csv and ndjson "
                               "export every gap).", show_default=False)] = None,
    update: Annotated[bool, typer.Option(
        "--update", help="Write status changes: recorded gaps covered now → remediated, "
                         "remediated gaps uncovered again → open.")] = False,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Uncovered techniques, highest risk first (criticality × (1 + groups using it))."""
    from bastion.coverage.gaps import gaps

    fmt = list_format(fmt, as_json, limit=limit)
    flt = filters.parse_rows(export.GAPS, where)
    sess = session(ctx)
    tenant = sess.tenant()
    rep = gaps(tenant, _catalog(tenant, domain), account=account, min_confidence=min_confidence,
               include=include, ignore=ignore, update=update, actor=sess.actor)
    rows = flt.select(g.as_dict() for g in rep.gaps)
    if exporting(fmt):
        emit(fmt, rows, export.GAPS.columns)
        return
    rows = list(rows)
    shown = rows[:limit or GAPS_SHOWN]
    if fmt == "json":
        echo_json({**rep.as_dict(), "gaps": shown, "total": len(rows),
                   "attribution": ATTRIBUTION})
        return
    table = Table("Risk", "Severity", "Account", "Technique", "Name", "Tactics", "Groups", "Status")
    for g in shown:
        table.add_row(str(g["risk"]), g["severity"], shorten(g["account_name"], 30), g["technique"],
                      shorten(g["name"], 40), ", ".join(g["tactics"]), str(g["groups"]),
                      g["status"] + (f" ({g['note']})" if g["note"] else ""))
    out = console()
    out.print(table)
    out.print(f"{len(shown)} of {len(rows)} gap(s); {len(rep.remediated)} recorded gap(s) "
              f"covered now" + (f"; {rep.updated} status(es) updated" if update else ""),
              soft_wrap=True)
    _attribution()


@app.command("gap-status")
def gap_status(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(metavar="ACCOUNT", help="Account key, provider/identifier, identifier or name.")],
    technique: Annotated[str, typer.Argument(metavar="TECHNIQUE", help="T1078 or T1078.004.")],
    status: Annotated[str, typer.Argument(metavar="STATUS", help="open, acknowledged, remediated or accepted_risk.")],
    comment: Annotated[Optional[str], typer.Option("--comment", help="Why (kept on the gap and its event).")] = None,
    domain: DomainOpt = "enterprise",
) -> None:
    """Record a decision on a gap; kept across recomputations."""
    from bastion.coverage.gaps import set_gap_status

    sess = session(ctx)
    tenant = sess.tenant()
    try:
        catalog = _catalog(tenant, domain)
    except NotFound:
        catalog = None
    rec = set_gap_status(tenant, account, technique, status, comment=comment, actor=sess.actor,
                         catalog=catalog)
    console().print(Text("recorded ", style="green") + Text(f"{rec.key} status {rec.values['status']}"),
                    soft_wrap=True)


OverlapsWhere = rows_where_option(export.OVERLAPS)


@app.command("overlaps")
def overlaps_cmd(
    ctx: typer.Context,
    account: AccountOpt = None,
    domain: DomainOpt = "enterprise",
    min_confidence: ConfOpt = DEFAULT_MIN_CONFIDENCE,
    max_same: Annotated[int, typer.Option("--max-same", min=1, help="More counting detections "
                                          "of one level and type than this is excessive.")] = 5,
    where: OverlapsWhere = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Techniques with several detections: conflicting, excessive or beneficial."""
    from bastion.coverage.gaps import OVERLAP_RULES, overlaps

    fmt = list_format(fmt, as_json)
    flt = filters.parse_rows(export.OVERLAPS, where)
    tenant = session(ctx).tenant()
    found = overlaps(tenant, _catalog(tenant, domain), account=account, min_confidence=min_confidence,
                     max_same=max_same)
    rules = {k: v.format(max_same=max_same) for k, v in OVERLAP_RULES.items()}

    def table(rows):
        table = Table("Class", key_column("Account"), "Technique", "Detections", "Why")
        for o in rows:
            table.add_row(o["classification"], o["account"], o["technique"],
                          str(len(o["detections"])), o["reason"])
        out = console()
        out.print(table)
        for k, v in rules.items():
            out.print(Text(f"{k}: {v}", style="dim"), soft_wrap=True)

    emit(fmt, flt.select(o.as_dict() for o in found), export.OVERLAPS.columns,
         json=lambda rows: {"overlaps": rows, "rules": rules}, table=table)


@app.command("drift")
def drift_cmd(
    ctx: typer.Context,
    account: AccountOpt = None,
    domain: DomainOpt = "enterprise",
    from_id: Annotated[Optional[int], typer.Option("--from", metavar="ID", help="Older detection snapshot.")] = None,
    to_id: Annotated[Optional[int], typer.Option("--to", metavar="ID", help="Newer detection snapshot.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two detection inventories of an account, and the coverage delta
    (measured on --domain: its active release and its coverage snapshots)."""
    from bastion.coverage.history import drift

    tenant = session(ctx).tenant()
    try:
        catalog = _catalog(tenant, domain)
    except NotFound:
        catalog = None
    d = drift(tenant, account, from_id, to_id, catalog=catalog, domain=domain)
    if as_json:
        echo_json(d)
        return
    out = console()
    out.print(f"drift of {d['account']}: detection snapshot {d['from']['id']} → {d['to']['id']}",
              soft_wrap=True)
    for kind, items in d["changes"].items():
        out.print(f"  {kind}: {len(items)}", soft_wrap=True)
        for item in items[:20]:
            extra = f" ({item.get('from')} → {item.get('to')})" if "from" in item else ""
            out.print(f"    {item['key']}{extra}", soft_wrap=True)
    own, delta = d["source_delta"], d["coverage_delta"]
    if own is None:
        out.print(f"coverage of {d['source']} alone: unavailable (snapshots taken before Bastion kept "
                  "the techniques each detection counts through, or no ATT&CK catalog)", soft_wrap=True)
    else:
        table = Table("Tactic", "Before", "After", "Δ %", title=f"coverage of {d['source']} alone",
                      title_justify="left")
        for t in own["tactics"]:
            table.add_row(t["shortname"] or t["id"], f"{t['covered_before']}/{t['total_before']}",
                          f"{t['covered_after']}/{t['total_after']}", f"{t['percent_delta']:+.2f}")
        o = own["overall"]
        table.add_row("overall", f"{o['covered_before']}/{o['total_before']}",
                      f"{o['covered_after']}/{o['total_after']}", f"{o['percent_delta']:+.2f}")
        out.print(table)
    if delta is None:
        out.print("account coverage at the two instants: unavailable (no coverage snapshot for both "
                  "inventories; take one with `bastion coverage snapshot`)", soft_wrap=True)
        return
    o = delta["overall"]
    between = ", ".join(f"{b['source']} #{b['id']}" for b in d["between"])
    out.print(f"account coverage at the two instants: {o['percent_before']:.2f}% → {o['percent_after']:.2f}% "
              f"({o['percent_delta']:+.2f})" + (f", including other sources imported in between: {between}"
                                                 if between else ""), soft_wrap=True)


@app.command("snapshot")
def snapshot_cmd(
    ctx: typer.Context,
    account: AccountOpt = None,
    domain: DomainOpt = "enterprise",
    method: MethodOpt = "default",
    detection_snapshot: Annotated[Optional[int], typer.Option(
        "--detection-snapshot", metavar="ID",
        help="The inventory it measures. Default: the account's latest.")] = None,
) -> None:
    """Store the current coverage (per tactic and technique) as a history point."""
    from bastion.coverage.history import snapshot

    method = _check_choice(method, METHODS, "--method")
    tenant = session(ctx).tenant()
    catalog = _catalog(tenant, domain)
    sid = snapshot(tenant, catalog, account, detection_snapshot, method=method)
    console().print(Text("stored ", style="green") + Text(
        f"coverage snapshot {sid} (ATT&CK {catalog.domain} {catalog.version}, method {method})"),
        soft_wrap=True)


HistoryWhere = rows_where_option(export.COVERAGE_HISTORY)


@app.command("history")
def history_cmd(
    ctx: typer.Context,
    account: AccountOpt = None,
    domain: Annotated[str, typer.Option(
        "--domain", metavar="DOMAIN", help="Only the snapshots measured on this ATT&CK domain: "
                                           "enterprise, ics or mobile.")] = "enterprise",
    method: Annotated[Optional[str], typer.Option("--method", metavar="METHOD", help="Only this method.")] = None,
    where: HistoryWhere = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Coverage over time on one ATT&CK domain: one row per snapshot, with the ATT&CK version
    it was measured on (json, csv and ndjson rows carry each snapshot's techniques too)."""
    from bastion.coverage.history import history

    fmt = list_format(fmt, as_json)
    flt = filters.parse_rows(export.COVERAGE_HISTORY, where)
    tenant = session(ctx).tenant()
    series = flt.select(history(tenant, account, method=method, domain=domain,
                                techniques=fmt != "table"))

    def table(series):
        shortnames: list[str] = []
        for s in series:
            for t in s["tactics"].values():
                if t["shortname"] not in shortnames:
                    shortnames.append(t["shortname"])
        table = Table("Id", "Taken", "ATT&CK", "Method", "Overall", *shortnames)
        for s in series:
            by = {t["shortname"]: t for t in s["tactics"].values()}
            table.add_row(str(s["id"]), fmt_time(s["taken_at"]), f"{s['attack_domain']} {s['attack_version']}",
                          s["method"], f"{s['overall']['percent']:.1f}%",
                          *(f"{by[n]['percent']:.1f}%" if n in by else "" for n in shortnames))
        console().print(table)

    emit(fmt, series, export.COVERAGE_HISTORY.columns, table=table)


@app.command("layer")
def layer_cmd(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("-o", "--output", metavar="FILE", help="Where to write the layer JSON ('-': stdout).")],
    account: AccountOpt = None,
    domain: DomainOpt = "enterprise",
    method: MethodOpt = "default",
    aggregation: AggOpt = "count",
    min_confidence: ConfOpt = DEFAULT_MIN_CONFIDENCE,
    include: IncludeOpt = None,
    ignore: IgnoreOpt = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Layer name.")] = None,
) -> None:
    """Export an ATT&CK Navigator layer (format 4.5): scores, gradient, rules per technique."""
    from bastion.coverage.layer import layer

    _t, _c, cov = _compute(ctx, account, method, aggregation, min_confidence, include, ignore,
                           details=True, domain=domain)
    data = orjson.dumps(layer(cov, name=name), option=orjson.OPT_INDENT_2)
    if str(output) == "-":
        sys.stdout.write(data.decode() + "\n")
        return
    output.write_bytes(data + b"\n")
    console(stderr=True).print(f"wrote {output} ({len(cov.techniques)} techniques, "
                               f"{cov.overall['covered']} covered)", soft_wrap=True)


@app.command("check")
def check(
    ctx: typer.Context,
    min_percent: Annotated[float, typer.Option("--min-percent", metavar="N", min=0, max=100,
                                               help="Fail below this percentage.")],
    tactic: Annotated[Optional[list[str]], typer.Option(
        "--tactic", metavar="T", help="Check these tactics (id or short name) instead of the "
                                      "overall figure; repeatable.")] = None,
    account: AccountOpt = None,
    domain: DomainOpt = "enterprise",
    method: MethodOpt = "default",
    min_confidence: ConfOpt = DEFAULT_MIN_CONFIDENCE,
    include: IncludeOpt = None,
    ignore: IgnoreOpt = None,
) -> None:
    """CI gate: exit 0 at or above --min-percent, exit 6 below (one line says what)."""
    from bastion.coverage.gate import check as gate_check

    _t, _c, cov = _compute(ctx, account, method, "count", min_confidence, include, ignore,
                           domain=domain)
    gate = gate_check(cov, min_percent, tactic)
    if not gate.passed:
        console(stderr=True).print(Text(gate.message, style="red"), soft_wrap=True)
        raise typer.Exit(GATE_FAILED)
    console().print(Text(gate.message, style="green"), soft_wrap=True)
