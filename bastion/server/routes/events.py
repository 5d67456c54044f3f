"""The change feed: the tenant's events in sequence order, filtered as `bastion changes` filters
them, resumable from the last sequence number a consumer saw. Every event is masked for the
key's role."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from bastion.server.context import READ, Context
from bastion.server.problems import responses
from bastion.server.schemas import EventOut
from bastion.store import changes as lib

router = APIRouter(tags=["events"])

EventKind = Literal[lib.EVENT_KINDS]  # type: ignore[valid-type]


class EventPage(BaseModel):
    events: list[EventOut]
    next_after: int = Field(description="Pass as `after` to continue: the last sequence number "
                                        "returned (the `after` given when there was none)")
    more: bool = Field(description="More events matched past this page")


@router.get("/events", response_model=EventPage, summary="The tenant's change feed, in order",
            responses=responses(404))
def events(
        after: int = Query(default=0, ge=0, le=2**62, description="Only events after this "
                           "sequence number: `next_after` of the previous page"),
        kind: EventKind | None = Query(default=None, description="Only events of this entity "
                                       "kind (or `edge`, `setting`)"),
        event_type: str | None = Query(default=None, min_length=1, max_length=200,
                                       description="Only this event type; `*` matches any "
                                       "text, e.g. `risk.*`"),
        correlation_id: str | None = Query(default=None, min_length=1, max_length=200,
                                           description="Only the events of one write (a "
                                           "request's X-Request-Id, an import's id)"),
        run: int | None = Query(default=None, ge=1, le=2**62,
                                description="Only the events of this import run"),
        since: str | None = Query(default=None, max_length=100, description="From this time "
                                  "(inclusive): ISO 8601 (UTC unless it names a zone) or relative "
                                  "(`-7d`, `-12h`)"),
        until: str | None = Query(default=None, max_length=100, description="Before this time: "
                                  "ISO 8601 or relative"),
        limit: int | None = Query(default=None, ge=1, le=10000, description="Page size (capped)"),
        ctx: Context = Depends(READ)) -> dict[str, Any]:
    size = min(ctx.limit(limit), 10000 - 1)
    found = lib.changes(ctx.tenant, run=run, correlation_id=correlation_id, since=since,
                        until=until, kind=kind, event_type=event_type, after_seq=after,
                        limit=size + 1)
    page = found[:size]
    return {"events": [ctx.event(e) for e in page],
            "next_after": page[-1].seq if page else after, "more": len(found) > size}
