"""The JSON of an event as webhooks and NATS carry it. Its `id`, `<tenant>:<seq>`, is unique
and stable: a receiver de-duplicates by it (delivery is at least once)."""

from __future__ import annotations

import orjson


def event_id(tenant_name: str, seq: int) -> str:
    return f"{tenant_name}:{seq}"


def event_json(tenant_name: str, e) -> dict:
    return {"id": event_id(tenant_name, e.seq), "seq": e.seq, "type": e.event_type,
            "kind": e.entity_kind, "key": e.entity_key, "version": e.entity_version,
            "occurred_at": e.occurred_at.isoformat(), "actor": e.actor, "source": e.source,
            "correlation_id": e.correlation_id, "diff": e.diff, "note": e.note}


def webhook_body(tenant_name: str, sub_id: int, events: list[dict]) -> bytes:
    return orjson.dumps({"tenant": tenant_name, "webhook": sub_id, "events": events})


def nats_message(tenant_name: str, e) -> bytes:
    return orjson.dumps({"tenant": tenant_name, **event_json(tenant_name, e)})
