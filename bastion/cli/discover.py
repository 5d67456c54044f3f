"""`bastion discover aws|reference`: detection inventories read from the cloud itself
(docs/cloud.md). No SQL and no AWS logic here: bastion.discovery does the work."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.text import Text

from bastion.cli.common import console, echo_json, print_notes_and_problems, session
from bastion.discovery import aws, reference
from bastion.errors import ImportRejected

app = typer.Typer(no_args_is_help=True, help=(
    "Read detections from the cloud accounts themselves, with the health of each (docs/cloud.md)."))


@app.command("aws")
def discover_aws(
    ctx: typer.Context,
    account: Annotated[str, typer.Option(
        metavar="aws:ID|KEY", help="The AWS account to read (created when not stored yet); the "
                                   "credentials must be this account's.")],
    profile: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="A profile of the AWS config files (default: boto3's credential chain).")] = None,
    region: Annotated[Optional[list[str]], typer.Option(
        "--region", metavar="R", help="A region to read (repeat); default: the profile's region.")] = None,
    all_regions: Annotated[bool, typer.Option(
        "--all-regions", help="Every region enabled for the account (ec2 DescribeRegions).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Read CloudTrail trails, CloudWatch Logs metric filters and alarms, EventBridge rules,
    GuardDuty, AWS Config and Security Hub of one account as one snapshot of its inventory (the
    source `discovery:aws`): each becomes a detection whose health is a chain (a metric filter is
    healthy only when a logging trail feeds its log group and an alarm with actions watches its
    metric); the broken link is named. boto3's settings apply, AWS_ENDPOINT_URL included. A
    service that fails in a region makes the run partial (exit 2): its detections are kept as
    they were."""
    if region and all_regions:
        raise typer.BadParameter("give --region or --all-regions, not both")
    sess = session(ctx)
    out = aws.discover(sess.tenant(), account=account, actor=sess.actor, regions_given=region,
                       all_regions=all_regions, profile=profile)
    if as_json:
        echo_json(out.as_dict())
    else:
        _summary(out)
    if out.failed:
        raise ImportRejected(f"{len(out.failed)} part(s) could not be read: "
                             + "; ".join(f"{p}: {e}" for p, e in list(out.failed.items())[:3]))


def _summary(out) -> None:
    con = console()
    res = out.result
    t = res.totals()
    con.print(f"discovery of {res.account} ({', '.join(out.regions)}): {res.status}", soft_wrap=True)
    con.print(f"detections: {t['detections']:,} ({t['added']:,} added, {t['modified']:,} modified, "
              f"{t['unchanged']:,} unchanged, {res.removed:,} removed); mappings {t['mappings']:,}",
              soft_wrap=True)
    con.print("health: " + (", ".join(f"{h} {n:,}" for h, n in out.health.items()) or "none"), soft_wrap=True)
    con.print(f"api calls: {sum(out.calls.values()):,} ({out.requests:,} requests, retries included)",
              soft_wrap=True)
    if res.snapshots:
        con.print("snapshot: " + ", ".join(f"{s} #{i}" for s, i in res.snapshots.items()), soft_wrap=True)
    for part, error in out.failed.items():
        con.print(Text(f"not read: {part}: {error}", style="red"), soft_wrap=True)
    print_notes_and_problems(res.notes, [], "problems", "more_problems")


@app.command("reference")
def discover_reference(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help=(
        "A CTID Mappings Explorer file of a cloud (aws-…_attack-16.1-enterprise.json, azure, gcp)."))],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Store the CTID mappings of a cloud's managed services as the tenant's reference: discovery
    maps GuardDuty, Security Hub, Config and CloudTrail through it, and `bastion exposures` names
    the services that would cover a technique. Import it once; a newer file replaces it."""
    sess = session(ctx)
    got = reference.import_reference(sess.tenant(), file, actor=sess.actor)
    if as_json:
        echo_json(got)
        return
    state = "stored" if got["changed"] else "unchanged"
    console().print(f"CTID {got['framework']} reference (ATT&CK {got['attack_version']}): "
                    f"{got['capabilities']} services, {got['mappings']} mappings, {state}", soft_wrap=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="discover", rich_help_panel="Coverage")
