"""`bastion enrich kev|epss FILE`: known-exploited and exploit-probability data on risks.

Like every command: no SQL; bastion.risks.enrich reads the file and writes through the store."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bastion.risks import enrich
from bastion.cli.common import console, echo_json, session

app = typer.Typer(
    no_args_is_help=True,
    help="Enrich risks with known-exploited (CISA KEV) and exploit-probability (FIRST EPSS) data, "
         "and with the ATT&CK techniques of their CVE (CTID KEV mappings).\n\n"
         "Every risk that names a CVE gets the file's values and its priority recomputed; only "
         "risks whose values changed are written, each with a `risk.updated` event (source "
         "`enrich:kev` or `enrich:epss`), all in one transaction. Running a command again with "
         "the same file changes nothing. Files may be gzip-compressed; `-` reads standard input. "
         "Every run is recorded (`bastion imports list --kind kev`).",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")]


@app.command("kev", help=(
    "Mark risks whose CVE is in the Known Exploited Vulnerabilities catalog.\n\n"
    "Sets kev, kev_due (the catalog's due date) and kev_ransomware (known use in ransomware "
    "campaigns), and recomputes priority. The catalog is taken as complete: a risk whose CVE it "
    "does not list gets kev false and no due date."))
def kev_command(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(
        metavar="FILE", show_default=False,
        help="The KEV catalog as JSON (known_exploited_vulnerabilities.json) or CSV "
             "(known_exploited_vulnerabilities.csv), plain or gzip.")],
    as_json: JsonOpt = False,
) -> None:
    sess = session(ctx)
    result = enrich.import_file(sess.tenant(), "kev", file, sess.actor)
    if as_json:
        echo_json(_json(result))
        return
    what = f"KEV catalog {result.version}" if result.version else f"KEV catalog {result.file}"
    _summary(what, result, ("is known exploited", "are known exploited"))


@app.command("epss", help=(
    "Set exploit-probability scores (EPSS) on risks with a CVE.\n\n"
    "Sets epss (the probability of exploitation activity in the next 30 days) and "
    "epss_percentile, and recomputes priority. A risk whose CVE the file does not score keeps "
    "the scores it had."))
def epss_command(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(
        metavar="FILE", show_default=False,
        help="EPSS scores as CSV (epss_scores-YYYY-MM-DD.csv[.gz]): an optional "
             "`#model_version:…,score_date:…` line, the header `cve,epss,percentile`, one row "
             "per CVE.")],
    as_json: JsonOpt = False,
) -> None:
    sess = session(ctx)
    result = enrich.import_file(sess.tenant(), "epss", file, sess.actor)
    if as_json:
        echo_json(_json(result))
        return
    model = f" {result.version}" if result.version else ""
    day = f" of {result.date[:10]}" if result.date else ""
    what = f"EPSS scores{model}{day}" if (model or day) else f"EPSS scores {result.file}"
    _summary(what, result, ("has a score", "have a score"))


@app.command("techniques", help=(
    "Set the ATT&CK techniques of risks with a CVE from the CTID KEV mappings.\n\n"
    "Each risk whose CVE the file maps gets the property `techniques`: the exploitation, "
    "primary and secondary impact techniques, resolved to the active ATT&CK release through the "
    "crosswalk (the file maps ATT&CK 16.1). Other CVEs keep what they had. `bastion exposures` "
    "reads them."))
def techniques_command(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(
        metavar="FILE", show_default=False,
        help="CTID Mappings Explorer KEV file (kev-…_attack-16.1-enterprise.json).")],
    as_json: JsonOpt = False,
) -> None:
    from bastion.risks import techniques

    sess = session(ctx)
    result = techniques.import_file(sess.tenant(), file, sess.actor)
    if as_json:
        echo_json(result.as_dict())
        return
    line = (f"CTID KEV mappings {result.file} (ATT&CK {result.attack_version}, {result.cves:,} CVEs): "
            f"{result.matched:,} of {result.risks:,} risks with a CVE mapped; {result.updated:,} updated")
    if result.unresolved:
        line += f"; not in the active release: {', '.join(result.unresolved)}"
    console().print(line, soft_wrap=True, markup=False)


def _json(result: enrich.EnrichResult) -> dict[str, Any]:
    return {"catalog": result.catalog, "file": result.file, "version": result.version,
            "date": result.date, "cves": result.entries, "risks_with_cve": result.risks,
            "matched": result.matched, "updated": result.updated,
            "unchanged": result.risks - result.updated, "correlation_id": result.correlation_id,
            "import": result.run_id}


def _summary(what: str, result: enrich.EnrichResult, verbs: tuple[str, str]) -> None:
    head = f"{what} ({result.entries:,} CVE{'s' if result.entries != 1 else ''})"
    if not result.risks:
        line = f"{head}: no risk names a CVE; nothing updated"
    else:
        noun = "risk" if result.risks == 1 else "risks"
        updated = f"{result.updated:,} risk{'s' if result.updated != 1 else ''} updated"
        verb = verbs[0] if result.matched == 1 else verbs[1]
        line = (f"{head}: {result.matched:,} of {result.risks:,} {noun} with a CVE {verb}; "
                f"{updated}")
    console().print(line, soft_wrap=True, markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="enrich", rich_help_panel="Write")
