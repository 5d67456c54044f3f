"""`bastion serve` (the HTTP API under uvicorn) and `bastion key create|list|revoke`."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Optional

import typer
from rich.table import Table

from bastion.errors import InvalidValue
from bastion.schema.roles import ROLES
from bastion.cli.common import console, echo_json, fmt_time, session

SOURCE = "cli"

key_app = typer.Typer(help="API keys of the server: shown once, stored as a hash, revocable.",
                      no_args_is_help=True)

TenantOpt = Annotated[Optional[str], typer.Option(
    "--tenant", metavar="NAME", help="The key's tenant (default: the root --tenant).")]


def _tenant(ctx: typer.Context, name: str | None):
    sess = session(ctx)
    if name:
        sess.tenant_name = name.strip().lower()
    return sess, sess.tenant()


def parse_expiry(text: str | None) -> datetime | None:
    """`90d`, `12h`, `2w` or an ISO date/time: when the key stops working."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", text.lower())
    now = datetime.now(timezone.utc)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return now + {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"--expires {text!r}: give 90d, 12h, 2w or an ISO date") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


@key_app.command("create")
def key_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Who uses it (the actor of its events).")],
    role: Annotated[str, typer.Option("--role", help="admin, analyst, uploader or reader.")],
    tenant: TenantOpt = None,
    expires: Annotated[Optional[str], typer.Option(
        "--expires", metavar="WHEN", help="90d, 12h, 2w or an ISO date (default: never).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an API key. The key is printed once: it is stored only as a hash."""
    sess, t = _tenant(ctx, tenant)
    if role not in ROLES:
        raise InvalidValue(f"--role {role!r}: choose one of {', '.join(ROLES)}")
    key, token = t.keys.create(name, role, actor=sess.actor, source=SOURCE,
                               expires_at=parse_expiry(expires))
    if as_json:
        echo_json({**key.as_dict(), "token": token, "tenant": sess.tenant_name})
        return
    out = console()
    out.print(f"created key {key.name} ({key.role}, tenant {sess.tenant_name}, id {key.id}"
              + (f", expires {fmt_time(key.expires_at)}" if key.expires_at else "") + ")")
    out.print("the key (shown only now; store it in a secret manager):")
    print(token)


@key_app.command("list")
def key_list(ctx: typer.Context, tenant: TenantOpt = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The tenant's keys (never their secrets), with state and last use."""
    _, t = _tenant(ctx, tenant)
    keys = t.keys.list()
    if as_json:
        echo_json([k.as_dict() for k in keys])
        return
    table = Table("Name", "Id", "Role", "State", "Created", "Expires", "Last used")
    for k in keys:
        table.add_row(k.name, k.id, k.role, k.state, fmt_time(k.created_at), fmt_time(k.expires_at),
                      fmt_time(k.last_used_at))
    console().print(table)


@key_app.command("revoke")
def key_revoke(ctx: typer.Context,
               key: Annotated[str, typer.Argument(metavar="NAME_OR_ID")],
               tenant: TenantOpt = None) -> None:
    """Revoke a key (by name or id): the server refuses it from now on."""
    sess, t = _tenant(ctx, tenant)
    k = t.keys.revoke(key, actor=sess.actor, source=SOURCE)
    console().print(f"revoked key {k.name} ({k.id})")


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (docs/api.md) and the console at /console (docs/web.md) on this
    database: OpenAPI at /openapi.json, docs at /docs, /healthz, /readyz and /metrics. Clients
    and console users authenticate with keys from `bastion key create`."""
    import uvicorn

    sess = session(ctx)
    store = sess.ready_store()  # refuses a database that is missing or not at the schema's head
    console(stderr=True).print(f"serving {sess.display_url} on http://{host}:{port} "
                               f"(docs: http://{host}:{port}/docs)", soft_wrap=True)
    if workers == 1:
        from bastion.server.app import create_app

        uvicorn.run(create_app(store), host=host, port=port, log_level=log_level,
                    access_log=False)
        return
    # Each worker opens the database itself, from the URL this process resolved.
    os.environ["BASTION_DATABASE_URL"] = store.engine.url.render_as_string(hide_password=False)
    store.close()
    uvicorn.run("bastion.server.app:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, access_log=False)


def register(root: typer.Typer) -> None:
    root.command("serve", rich_help_panel="Serve")(serve)
    root.add_typer(key_app, name="key", rich_help_panel="Serve")
