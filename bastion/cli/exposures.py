"""`bastion exposures`: open risks whose techniques no working detection of their asset's
account would see (docs/cloud.md#unwatched-exposures). No SQL: bastion.risks.exposures."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from bastion.cli.common import console, echo_json, session
from bastion.coverage.inventory import account_key
from bastion.errors import NotFound
from bastion.risks.exposures import exposed_techniques, exposures


def exposures_command(
    ctx: typer.Context,
    account: Annotated[Optional[str], typer.Option(
        metavar="aws:ID|KEY", help="Only the risks on assets of this account.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many risks.")] = 50,
    by_technique: Annotated[bool, typer.Option(
        "--by-technique", help="One row per unwatched technique: how many open risks expose it.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (every risk, and the techniques).")] = False,
) -> None:
    """Open risks (triage, open) whose ATT&CK techniques — from the CTID KEV mappings of their
    CVE (`bastion enrich techniques`) or their template's tags — have no working detection in
    the asset's cloud account, ranked by priority × asset criticality (low 1 … critical 4); for
    each unwatched technique, what would cover it (CTID reference services, indicators)."""
    tenant = session(ctx).tenant()
    try:
        catalog = tenant.coverage.catalog("enterprise")
    except (NotFound, LookupError):
        raise NotFound("no ATT&CK Enterprise release is active (`bastion init` loads the default one)") from None
    items = exposures(tenant, catalog, account=account_key(account) if account else None)
    techniques = exposed_techniques(items)
    if as_json:
        echo_json({"attack": {"domain": catalog.domain, "version": catalog.version},
                   "account": account_key(account) if account else None,
                   "exposures": [e.as_dict() for e in items], "techniques": techniques})
        return
    out = console()
    if by_technique:
        table = Table(title=f"techniques exposed by open risks (ATT&CK {catalog.version})")
        for col in ("technique", "name", "risks", "top score", "accounts"):
            table.add_column(col)
        for r in techniques[:limit]:
            table.add_row(r["technique"], r["name"] or "", str(r["risks"]), f"{r['top_score']:g}",
                          ", ".join(r["accounts"]))
        out.print(table)
        return
    table = Table(title=f"unwatched exposures: {len(items)} open risk(s) (ATT&CK {catalog.version})")
    for col in ("score", "risk", "asset", "account", "unwatched techniques", "would cover"):
        table.add_column(col, overflow="fold")
    for e in items[:limit]:
        unwatched = e.unwatched
        table.add_row(f"{e.score:g}", f"{e.cve or e.name} ({e.severity}, priority {e.priority:g})"
                      + (" unseen" if e.unseen else ""),
                      f"{e.asset or ''} ({e.criticality})", e.account,
                      "\n".join(f"{t.id} {t.name or ''} [{', '.join(t.roles)}]" for t in unwatched),
                      "\n".join("; ".join(t.would_cover[:2]) or "-" for t in unwatched))
    out.print(table)
    if len(items) > limit:
        out.print(f"… {len(items) - limit} more (--limit, --json)")


def register(root: typer.Typer) -> None:
    root.command("exposures", rich_help_panel="Coverage")(exposures_command)
