"""Response models shared by several routes (what /openapi.json promises and schemathesis checks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bastion.store.store import Event


class EntityOut(BaseModel):
    """An entity: its key, kind and version, the kind's fields, properties and times. Values the
    key's role may not see are null and named in `masked`."""

    model_config = ConfigDict(extra="allow")

    key: str
    kind: str
    entity_version: int
    properties: dict[str, Any] | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    updated_at: datetime | None = None
    masked: list[str] | None = None


class EntityPage(BaseModel):
    items: list[EntityOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


@dataclass(frozen=True)
class EventOut(Event):
    """One change, as the event log keeps it (diff values the role may not see are null and
    named in `masked`)."""

    masked: list[str] | None = None


class WriteResult(BaseModel):
    key: str | None = None
    created: int
    updated: int
    unchanged: int
    deleted: int
    events: int
    correlation_id: str
