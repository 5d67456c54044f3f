"""`bastion attack …`: the ATT&CK catalog (import, update, versions, use)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from bastion.cli.common import (FormatOpt, JsonOpt, ProgressBar, console, echo_json, emit,
                                fmt_time, list_format, rows_where_option, session)
from bastion.coverage import ATTRIBUTION
from bastion.coverage import attack as attack_lib
from bastion.store import export, filters

app = typer.Typer(no_args_is_help=True, help="The MITRE ATT&CK catalog: releases side by side, one active per domain.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="attack", rich_help_panel="Coverage")


DOMAIN_HELP = "ATT&CK domain: enterprise, ics or mobile."


class _Bar(ProgressBar):
    """A progress bar while a bundle streams in."""

    def __init__(self, label: str):
        super().__init__(TextColumn(label), BarColumn(), DownloadColumn(), TimeElapsedColumn())
        if self.progress is not None:
            self.task = self.progress.add_task(label, total=None)

    def __call__(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total or None)


def _print_import(result: attack_lib.ImportResult) -> None:
    r = result.release
    c = r.counts
    out = console()
    state = "active" if r.active else "not active"
    out.print(Text("imported  ", style="green")
              + Text(f"ATT&CK {r.domain} {r.version}") + Text(f" ({r.name}, {state})", style="dim"),
              soft_wrap=True)
    out.print(f"tactics {c.get('tactics', 0)}, techniques {c.get('techniques', 0)}, "
              f"sub-techniques {c.get('subtechniques', 0)} (revoked {c.get('revoked', 0)}, "
              f"deprecated {c.get('deprecated', 0)}), groups {c.get('groups', 0)}, "
              f"relations {c.get('relations', 0)}", soft_wrap=True)
    if c.get("detection_strategies") or c.get("data_components"):
        out.print(f"detection strategies {c.get('detection_strategies', 0)}, analytics "
                  f"{c.get('analytics', 0)}, data components {c.get('data_components', 0)}", soft_wrap=True)
    if result.previous and result.previous != r.version and r.active:
        out.print(f"active:   {r.domain} {r.version} (was {result.previous})", soft_wrap=True)
    _print_remap(result.remap)
    out.print(Text(ATTRIBUTION, style="dim"), soft_wrap=True)


def _print_remap(report: attack_lib.RemapReport | None) -> None:
    if report is None:
        return
    out = console()
    if report.remapped:
        out.print(f"remapped: {len(report.remapped)} mapping(s) whose technique was revoked",
                  soft_wrap=True)
        for m in report.remapped:
            how = " (already mapped: old mapping removed)" if m.merged else ""
            out.print(f"  {m.tenant}: {m.old_technique} → {m.new_technique}  {m.old_key}{how}",
                      soft_wrap=True)
    if report.kept:
        out.print(Text(f"kept:     {len(report.kept)} mapping(s) on techniques without a successor "
                       "(review them)", style="yellow"), soft_wrap=True)
        for k in report.kept:
            out.print(f"  {k.tenant}: {k.key} — {k.reason}", soft_wrap=True)


def _result_json(result: attack_lib.ImportResult) -> dict:
    return {"import": result.run_id, "release": result.release.as_dict(), "previous": result.previous,
            "remap": result.remap.as_dict() if result.remap else None, "attribution": ATTRIBUTION}


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(
        metavar="FILE", help="A STIX 2.0 or 2.1 ATT&CK bundle (enterprise-attack.json …), plain or "
                             "gzip; '-' reads standard input.")],
    domain: Annotated[Optional[str], typer.Option(
        "--domain", help=DOMAIN_HELP + " Default: what the bundle says.")] = None,
    version: Annotated[Optional[str], typer.Option(
        "--version", help="ATT&CK version (18.1 …). Required when the bundle has no "
                          "x-mitre-collection object (STIX 2.0 files).")] = None,
    activate: Annotated[bool, typer.Option(
        "--activate/--no-activate", help="Make it the active release of its domain (and remap "
                                         "mappings of revoked techniques).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Import a full ATT&CK release from a STIX bundle; the same domain and version is replaced.
    Every import is recorded (`bastion imports list --kind attack`)."""
    sess = session(ctx)
    store = sess.ready_store()
    with _Bar(f"reading {Path(file).name if file != '-' else '<stdin>'}") as bar:
        result = attack_lib.import_file(store, sess.tenant(), file, domain=domain, version=version,
                                        activate=activate, actor=sess.actor, progress=bar.callback)
    if as_json:
        echo_json(_result_json(result))
    else:
        _print_import(result)


@app.command("update")
def update(
    ctx: typer.Context,
    domain: Annotated[Optional[str], typer.Option(
        "--domain", help=DOMAIN_HELP + " Default: enterprise (with --url: what the bundle says).")] = None,
    url: Annotated[Optional[str], typer.Option(
        "--url", help="Where to download the bundle from. Default: MITRE's attack-stix-data "
                      "repository (the newest release).")] = None,
    sha256: Annotated[Optional[str], typer.Option(
        "--sha256", metavar="HEX", help="The bundle's expected SHA-256; a mismatch imports nothing.")] = None,
    activate: Annotated[bool, typer.Option("--activate/--no-activate",
                                           help="Make it the active release.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Download the official ATT&CK release, check its SHA-256 and import it."""
    sess = session(ctx)
    store = sess.ready_store()
    domain = attack_lib.normalize_domain(domain) if domain else None
    source = url or attack_lib.official_url(domain or "enterprise")
    with _Bar("downloading") as bar:
        path = attack_lib.download(source, sha256=sha256, progress=bar.callback)
    try:
        result = attack_lib.import_file(store, sess.tenant(), str(path), domain=domain,
                                        activate=activate, actor=sess.actor, source=source)
    finally:
        path.unlink(missing_ok=True)
    if as_json:
        echo_json(_result_json(result))
    else:
        _print_import(result)


ReleasesWhere = rows_where_option(export.ATTACK_RELEASES)


@app.command("versions")
def versions(
    ctx: typer.Context,
    domain: Annotated[Optional[str], typer.Option("--domain", help=DOMAIN_HELP + " Default: all.")] = None,
    where: ReleasesWhere = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """List the imported ATT&CK releases; one per domain is active."""
    fmt = list_format(fmt, as_json)
    flt = filters.parse_rows(export.ATTACK_RELEASES, where)
    store = session(ctx).ready_store()
    rows = flt.select(r.as_dict() for r in
                      store.attack.releases(attack_lib.normalize_domain(domain) if domain else None))

    def table(rows):
        out = console()
        if not rows:
            out.print("no ATT&CK release imported (run `bastion init` or `bastion attack import FILE`)"
                      if not flt else "no ATT&CK release matches", soft_wrap=True)
            return
        table = Table("Domain", "Version", "Name", "Active", "Released", "Imported", "Tactics",
                      "Techniques", "Sub-techniques", "Groups", "Source")
        for r in rows:
            c = r["counts"]
            table.add_row(r["domain"], r["version"], r["name"], Text("yes", style="green") if r["active"] else "",
                          r["released"] or "", fmt_time(r["imported_at"]), str(c.get("tactics", "")),
                          str(c.get("techniques", "")), str(c.get("subtechniques", "")),
                          str(c.get("groups", "")), r["source"])
        out.print(table)
        out.print(Text(ATTRIBUTION, style="dim"), soft_wrap=True)

    emit(fmt, rows, export.ATTACK_RELEASES.columns, table=table,
         json=lambda rows: {"releases": rows, "attribution": ATTRIBUTION})


@app.command("use")
def use(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="An imported version (see `bastion attack versions`).")],
    domain: Annotated[str, typer.Option("--domain", help=DOMAIN_HELP)] = "enterprise",
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Make an imported version the active one of its domain; mappings of techniques it revokes
    are re-pointed to their successors (the originals stay in history)."""
    sess = session(ctx)
    result = attack_lib.use_version(sess.ready_store(), domain, version, actor=sess.actor)
    if as_json:
        echo_json(_result_json(result))
        return
    r = result.release
    was = f" (was {result.previous})" if result.previous and result.previous != r.version else ""
    console().print(Text("active    ", style="green") + Text(f"ATT&CK {r.domain} {r.version}{was}"),
                    soft_wrap=True)
    _print_remap(result.remap)
