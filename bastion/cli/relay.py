"""`bastion relay`: deliver the event log to webhooks and NATS JetStream (bastion.feed.relay)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Optional

import typer

from bastion.cli.common import console, echo_json, session
from bastion.feed import relay as relay_lib
from bastion.feed.jetstream import DEFAULT_STREAM


def relay(
    ctx: typer.Context,
    nats: Annotated[Optional[str], typer.Option(
        "--nats", metavar="URL", envvar="BASTION_NATS_URL",
        help="Also publish every event to NATS JetStream (nats://127.0.0.1:4222).")] = None,
    stream: Annotated[str, typer.Option(
        "--stream", metavar="NAME", help="The JetStream stream (created when missing).")] = DEFAULT_STREAM,
    once: Annotated[bool, typer.Option(
        "--once", help="Deliver what is pending, then exit (default: run until stopped).")] = False,
    poll: Annotated[float, typer.Option(
        "--poll", min=0.05, metavar="SECONDS",
        help="SQLite: how often to look for new events (PostgreSQL is woken by NOTIFY).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the totals as JSON.")] = False,
) -> None:
    """Deliver every tenant's events to its webhook subscriptions and, with --nats, to
    JetStream subjects bastion.<tenant>.<kind>.<event_type>; resumes where it stopped."""
    store = session(ctx).ready_store()
    totals = asyncio.run(relay_lib.run(store, nats_url=nats, stream=stream, once=once, poll=poll))
    if as_json:
        echo_json(totals.__dict__)
        return
    line = f"published {totals.published} event(s)" if nats else ""
    line += ("; " if line else "") + (f"delivered {totals.delivered} event(s) to webhooks in "
                                      f"{totals.requests} request(s), {totals.failed} failed")
    console(stderr=True).print(line)
    for tenant, sub_id in totals.paused:
        console(stderr=True).print(f"paused webhook {sub_id} of tenant {tenant} after repeated "
                                   "failures (bastion webhook deliveries / resume)")


def register(root: typer.Typer) -> None:
    root.command("relay", rich_help_panel="Feed")(relay)
