"""The readable summary `bastion demo` prints (the data work is in bastion/demo.py)."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bastion.cli.common import Session, console, fmt_value
from bastion.demo import DOMAIN, DemoReport
from bastion.schema.keys import parse_key
from bastion.store.writer import ApplyResult

_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan",
                   "info": "dim"}


def apply_line(label: str, r: ApplyResult) -> Text:
    text = Text(f"{label + ':':<14}", style="bold")
    text += Text(f"{r.created} created", style="green" if r.created else "")
    text += Text(f", {r.updated} updated", style="yellow" if r.updated else "")
    text += Text(f", {r.unchanged} unchanged; ")
    text += Text(f"{r.edges_added} links added", style="green" if r.edges_added else "")
    text += Text(f", {r.edges_updated} updated, {r.edges_unchanged} unchanged; {r.events} events")
    return text


def describe(key: str) -> str:
    """A short human label for a key: `203.0.113.10 tcp/443` for a port."""
    parsed = parse_key(key)
    if parsed.kind == "asset":
        return parsed.parts["identifier"]
    if parsed.kind == "port" and parsed.ref is not None:
        host, parts = parsed.ref.parts["identifier"], parsed.parts
        return f"{host} {parts['protocol']}/{parts['number']}"
    return key


def render(report: DemoReport, sess: Session) -> None:
    from bastion.cli.read import counts_tables, events_table

    out = console()
    out.print(Panel.fit(
        Text.assemble(("Bastion demo", "bold"), f": sample attack surface of {DOMAIN}\n",
                       ("database ", "dim"), sess.display_url,
                       ("   tenant ", "dim"), sess.tenant_name),
        border_style="blue"))

    out.print(apply_line("first apply", report.first), soft_wrap=True)
    out.print(apply_line("second apply", report.second), soft_wrap=True)
    second = report.second
    if second.created or second.updated or second.edges_added or second.edges_updated:
        out.print(Text("the second apply changed data: it should not have", style="bold red"))
    else:
        out.print(Text("the second apply changed nothing: applying the same data is idempotent",
                       style="green"))
    if report.triage is not None:
        out.print(Text.assemble(("triaged ", "bold"), report.triaged_key,
                                f": triage → {report.triaged_status} ",
                                (f"({report.triage.events} event)", "dim")), soft_wrap=True)
    else:
        out.print(Text.assemble(("triaged ", "bold"), report.triaged_key,
                                f": already {report.triaged_status} (from an earlier run)"),
                  soft_wrap=True)
    out.print()

    out.print(counts_tables(report.counts))

    risks = Table("Severity", "Risk", "CVSS", "Status", "On", title="Risks by severity",
                  title_justify="left")
    for severity, records in report.risks.items():
        for r in records:
            v = r.values
            risks.add_row(Text(severity, style=_SEVERITY_STYLE.get(severity, "")),
                          v["name"] + (f"\n{v['title']}" if v.get("title") else ""),
                          fmt_value(v.get("cvss")), v["status"], describe(v["target"]))
    out.print(risks)

    if report.crown_jewels:
        out.print(Text.assemble(("crown jewels: ", "bold"),
                                ", ".join(r.values["identifier"] for r in report.crown_jewels)))
    out.print(events_table(report.last_events, with_key=True, compact=True,
                           title="Last events (entities)"))
    out.print(Group(
        Text("Try next:", style="bold"),
        Text("  bastion list risks --where 'severity>=high' --sort priority"),
        Text("  bastion list assets --where criticality=critical"),
        Text(f"  bastion get '{report.triaged_key}'"),
        Text(f"  bastion history '{report.triaged_key}'"),
        Text("  bastion stats"),
        Text("  bastion graph attack-paths"),
    ))
