"""Webhook subscriptions of the tenant (admin): the library of `bastion webhook` (bastion.feed).
A subscription added over HTTP may not point inside the network unless the server allows it
(BASTION_WEBHOOK_ALLOW_PRIVATE); its secret is shown once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from bastion.feed import webhooks
from bastion.server.context import ADMIN, Context
from bastion.server.problems import responses
from bastion.store.feed import Delivery, Subscription

router = APIRouter(tags=["webhooks"])



@dataclass(frozen=True)
class SubscriptionCreated(Subscription):
    secret: str = ""  # the signing secret: shown only now


class SubscriptionIn(BaseModel):
    url: str = Field(max_length=2000)
    events: str = Field(default="*", max_length=1000, description="Event types, e.g. `risk.*,coverage.*`")
    secret: str | None = Field(default=None, max_length=200, description="Generated when left out")
    from_seq: int | None = Field(default=None, ge=1, le=2**62, description="Deliver from this sequence on")


def _id(sub_id: int) -> int:
    from bastion.errors import NotFound

    if not 0 < sub_id < 2**31:
        raise NotFound(f"no webhook subscription {sub_id}")
    return sub_id


@router.get("/webhooks", response_model=list[Subscription], summary="Webhook subscriptions",
            responses=responses())
def list_subscriptions(ctx: Context = Depends(ADMIN)) -> list[dict[str, Any]]:
    return [s.as_dict() for s in webhooks.list_(ctx.tenant)]


@router.post("/webhooks", response_model=SubscriptionCreated, status_code=201,
             summary="Subscribe a URL to events (an event)", responses=responses())
def add_subscription(body: SubscriptionIn = Body(), ctx: Context = Depends(ADMIN)) -> dict[str, Any]:
    webhooks.check_public(webhooks.check_url(body.url))
    sub, secret = webhooks.add(ctx.tenant, body.url, body.events, actor=ctx.actor,
                               source=ctx.source, secret=body.secret, from_seq=body.from_seq)
    return {**sub.as_dict(), "secret": secret}


@router.get("/webhooks/{sub_id}", response_model=Subscription, summary="One subscription",
            responses=responses(404))
def get_subscription(sub_id: int, ctx: Context = Depends(ADMIN)) -> dict[str, Any]:
    return webhooks.get(ctx.tenant, _id(sub_id)).as_dict()


@router.delete("/webhooks/{sub_id}", response_model=Subscription,
               summary="Remove a subscription and its delivery log (an event)", responses=responses(404))
def remove_subscription(sub_id: int, ctx: Context = Depends(ADMIN)) -> dict[str, Any]:
    return webhooks.remove(ctx.tenant, _id(sub_id), actor=ctx.actor, source=ctx.source).as_dict()


class Action(BaseModel):
    action: Literal["pause", "resume", "redeliver"]
    from_seq: int | None = Field(default=None, ge=1, le=2**62, description="For redeliver")


@router.post("/webhooks/{sub_id}/state", response_model=Subscription,
             summary="Pause, resume, or redeliver from a sequence (an event)", responses=responses(404))
def change_subscription(sub_id: int, body: Action = Body(), ctx: Context = Depends(ADMIN)) -> dict[str, Any]:
    sub_id = _id(sub_id)
    if body.action == "pause":
        sub = webhooks.pause(ctx.tenant, sub_id, actor=ctx.actor, source=ctx.source)
    elif body.action == "resume":
        sub = webhooks.resume(ctx.tenant, sub_id, actor=ctx.actor, source=ctx.source)
    else:
        if body.from_seq is None:
            from bastion.errors import InvalidValue

            raise InvalidValue("redeliver needs from_seq", "from_seq")
        sub = webhooks.redeliver(ctx.tenant, sub_id, body.from_seq, actor=ctx.actor, source=ctx.source)
    return sub.as_dict()


@router.get("/webhooks/{sub_id}/deliveries", response_model=list[Delivery],
            summary="The delivery log, newest first", responses=responses(404))
def list_deliveries(sub_id: int, limit: int = Query(default=50, ge=1, le=1000),
                    ctx: Context = Depends(ADMIN)) -> list[dict[str, Any]]:
    return [d.as_dict() for d in webhooks.deliveries(ctx.tenant, _id(sub_id), limit)]


@router.post("/webhooks/{sub_id}/test", response_model=webhooks.Attempt,
             summary="Send a signed test delivery now (moves nothing)", responses=responses(404))
def test_subscription(sub_id: int, ctx: Context = Depends(ADMIN)) -> dict[str, Any]:
    return webhooks.test(ctx.tenant, _id(sub_id)).__dict__
