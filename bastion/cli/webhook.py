"""`bastion webhook add|list|remove|test|resume|redeliver|deliveries`: the tenant's webhook
subscriptions (bastion.feed.webhooks); `bastion relay` delivers them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from bastion.cli.common import console, echo_json, fmt_time, session
from bastion.feed import webhooks

SOURCE = "cli"

app = typer.Typer(help="Webhook subscriptions: signed, at-least-once deliveries of the tenant's "
                       "events (docs/feed.md); `bastion relay` delivers them.",
                  no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
IdArg = Annotated[int, typer.Argument(metavar="ID", help="The subscription's id (webhook list).")]


def _show(sub, as_json: bool, verb: str, secret: str | None = None) -> None:
    if as_json:
        echo_json({**sub.as_dict(), **({"secret": secret} if secret else {})})
        return
    console().print(f"{verb} webhook {sub.id}: {sub.url} (events {sub.events}, {sub.state}, "
                    f"after event {sub.cursor})", soft_wrap=True)


@app.command("add")
def add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(metavar="URL", help="Where to POST (http or https).")],
    events: Annotated[str, typer.Option(
        "--events", metavar="PATTERNS",
        help="Event types to deliver, comma-separated: risk.*,coverage.* (* for every event).")],
    secret: Annotated[Optional[str], typer.Option(
        "--secret", metavar="SECRET", envvar="BASTION_WEBHOOK_SECRET",
        help="Signs every delivery (16-200 characters). Default: a random one, printed once.")] = None,
    from_seq: Annotated[Optional[int], typer.Option(
        "--from", metavar="SEQ", help="Deliver from this event sequence on (default: new events).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe URL to the tenant's events matching --events."""
    sess = session(ctx)
    generated = secret is None
    sub, secret = webhooks.add(sess.tenant(), url, events, actor=sess.actor, source=SOURCE,
                               secret=secret, from_seq=from_seq)
    _show(sub, as_json, "added", secret if generated else None)
    if generated and not as_json:
        console().print("its signing secret (shown only now):")
        print(secret)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The tenant's subscriptions (never their secrets), with state, cursor and last error."""
    subs = webhooks.list_(session(ctx).tenant())
    if as_json:
        echo_json([s.as_dict() for s in subs])
        return
    table = Table("Id", "URL", "Events", "State", "After event", "Failures", "Next try", "Last error")
    for s in subs:
        table.add_row(str(s.id), s.url, s.events, s.state, str(s.cursor), str(s.failures),
                      fmt_time(s.next_attempt_at), s.last_error or "")
    console().print(table)


@app.command("remove")
def remove(ctx: typer.Context, sub_id: IdArg) -> None:
    """Delete a subscription and its delivery log."""
    sess = session(ctx)
    sub = webhooks.remove(sess.tenant(), sub_id, actor=sess.actor, source=SOURCE)
    console().print(f"removed webhook {sub.id} ({sub.url})", soft_wrap=True)


@app.command("test")
def test(ctx: typer.Context, sub_id: IdArg, as_json: JsonOpt = False) -> None:
    """POST one signed `webhook.test` event now; exits 1 when the receiver does not accept it."""
    attempt = webhooks.test(session(ctx).tenant(), sub_id)
    if as_json:
        echo_json(attempt.__dict__)
    elif attempt.ok:
        console().print(f"delivered: HTTP {attempt.status_code} in {attempt.duration_ms} ms")
    if not attempt.ok:
        if not as_json:
            console(stderr=True).print(f"not delivered: {attempt.error}", soft_wrap=True)
        raise typer.Exit(1)


@app.command("resume")
def resume(ctx: typer.Context, sub_id: IdArg) -> None:
    """Activate a paused subscription: delivery goes on from where it stopped."""
    sess = session(ctx)
    sub = webhooks.resume(sess.tenant(), sub_id, actor=sess.actor, source=SOURCE)
    _show(sub, False, "resumed")


@app.command("redeliver")
def redeliver(
    ctx: typer.Context, sub_id: IdArg,
    from_seq: Annotated[int, typer.Option("--from", metavar="SEQ",
                                          help="The first event sequence to deliver again.")],
) -> None:
    """Deliver the matching events from sequence --from on again (resumes a paused one)."""
    sess = session(ctx)
    sub = webhooks.redeliver(sess.tenant(), sub_id, from_seq, actor=sess.actor, source=SOURCE)
    _show(sub, False, "rewound")


@app.command("deliveries")
def deliveries(ctx: typer.Context, sub_id: IdArg,
               limit: Annotated[int, typer.Option(min=1, max=1000, help="How many.")] = 50,
               as_json: JsonOpt = False) -> None:
    """The subscription's delivery log, newest first."""
    rows = webhooks.deliveries(session(ctx).tenant(), sub_id, limit)
    if as_json:
        echo_json([d.as_dict() for d in rows])
        return
    table = Table("#", "At", "Events", "Seq", "Try", "Status", "Result", "ms")
    for d in rows:
        table.add_row(str(d.id), fmt_time(d.attempted_at), str(d.events), f"{d.seq_from}-{d.seq_to}",
                      str(d.attempt), str(d.status_code or ""), "ok" if d.ok else (d.error or "failed"),
                      str(d.duration_ms))
    console().print(table)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="webhook", rich_help_panel="Feed")
