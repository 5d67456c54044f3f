"""Entities: the declared kinds, lists with the CLI's filter syntax and keyset paging, one entity
(now or as of an instant) with its history and links, create/merge with optimistic concurrency
(If-Match), delete with the CLI's cascade rule, and bulk upsert of a graph document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from pydantic import BaseModel, Field

from bastion.errors import ConflictError, InvalidValue, NotFound
from bastion.graph import jsonformat
from bastion.schema.kinds import REGISTRY
from bastion.schema.roles import VISIBLE, check_filterable, mask_key, sees_everything
from bastion.store import filters
from bastion.server.context import ADMIN, READ, TRIAGE, Context
from bastion.server.problems import PreconditionFailed, responses
from bastion.server.schemas import EntityOut, EntityPage, EventOut, WriteResult
from bastion.store import edits

router = APIRouter(tags=["entities"])

KindName = Literal[tuple(REGISTRY.node_kinds)]  # type: ignore[valid-type]


class FieldInfo(BaseModel):
    name: str
    type: str
    required: bool
    domain: list[str] | None = None
    classification: str
    description: str | None = None


class KindInfo(BaseModel):
    name: str
    description: str
    key: list[str]
    fields: list[FieldInfo]
    properties_classification: str


@router.get("/kinds", response_model=list[KindInfo], summary="The declared entity kinds",
            responses=responses())
def kinds(ctx: Context = Depends(READ)) -> list[dict[str, Any]]:
    return [{"name": k.name, "description": k.description, "key": list(k.key),
             "properties_classification": k.properties_classification.value,
             "fields": [{"name": f.name, "type": f.type.value, "required": f.required,
                         "domain": list(f.domain) if f.domain else None,
                         "classification": f.classification.value, "description": f.description}
                        for f in k.fields]}
            for k in REGISTRY.node_kinds.values()]


@router.get("/entities/{kind}", response_model=EntityPage, summary="List entities of one kind",
            responses=responses(404))
def list_entities(
        kind: KindName,
        where: list[str] = Query(default=[], description="Filters as in the CLI's `--where`: "
                                 "`severity>=high`, `status=open`, `~text`, `last_seen>7d` …; "
                                 "repeat for AND"),
        q: str | None = Query(default=None, max_length=200, description="Text search (as `~text`)"),
        sort: str | None = Query(default=None, description="A field of the kind (ties by key)"),
        desc: bool = False,
        cursor: str | None = Query(default=None, description="`next_cursor` of the previous page"),
        limit: int | None = Query(default=None, ge=1, le=10000, description="Page size (capped)"),
        ctx: Context = Depends(READ)) -> dict[str, Any]:
    flt = filters.parse(kind, [*where, *([f"~{q}"] if q else [])])
    check_filterable(kind, flt.conditions, ctx.role)
    if sort and not sees_everything(ctx.role) and kind_classes(kind).get(sort) not in VISIBLE[ctx.role] \
            and sort in kind_classes(kind):
        raise InvalidValue(f"the {ctx.role} role may not sort by {sort} (its values are masked)", "sort")
    page = ctx.tenant.list(kind, where=flt, order_by=sort, descending=desc,
                           after=cursor, limit=ctx.limit(limit))
    return {"items": [ctx.record(r) for r in page.records], "next_cursor": page.next_cursor}


def kind_classes(kind: str):
    return REGISTRY.entity(kind).classes({})


def _get(ctx: Context, key: str, as_of: datetime | None = None):
    rec = ctx.tenant.get(key, as_of=as_of)
    if rec is None:
        raise NotFound(f"no entity {key}" + (f" as of {as_of.isoformat()}" if as_of else ""))
    return rec


@router.get("/entity", response_model=EntityOut, summary="One entity by key",
            responses=responses(404))
def get_entity(response: Response,
               key: str = Query(description="The entity's key, e.g. `#asset#example.com#www.example.com`"),
               as_of: datetime | None = Query(default=None, description="The entity as it was then"),
               ctx: Context = Depends(READ)) -> dict[str, Any]:
    rec = _get(ctx, key, as_of)
    response.headers["ETag"] = f'"{rec.version}"'
    return ctx.record(rec)


@router.get("/entity/history", response_model=list[EventOut], summary="Every change of an entity",
            responses=responses(404))
def entity_history(key: str = Query(), ctx: Context = Depends(READ)) -> list[dict[str, Any]]:
    events = ctx.tenant.history(key)
    if not events and ctx.tenant.get(key) is None:
        raise NotFound(f"no entity {key}")
    return [ctx.event(e) for e in events]


class LinkOut(BaseModel):
    relationship: str
    source: str
    target: str
    properties: dict[str, Any] | None = None
    first_seen: datetime
    last_seen: datetime


@router.get("/entity/links", response_model=list[LinkOut], summary="An entity's relationships",
            responses=responses(404))
def entity_links(key: str = Query(), direction: Literal["both", "in", "out"] = "both",
                 ctx: Context = Depends(READ)) -> list[dict[str, Any]]:
    _get(ctx, key)
    return [{**link.__dict__, "source": mask_key(link.source, ctx.role),
             "target": mask_key(link.target, ctx.role)} for link in ctx.tenant.links(key, direction)]


class EntityIn(BaseModel):
    values: dict[str, Any] = Field(description="The kind's fields (the key's fields at least)")
    properties: dict[str, Any] | None = None
    replace: bool = Field(default=False, description="Write exactly what is given instead of "
                          "merging into the stored entity")
    note: str | None = Field(default=None, max_length=4000, description="Why (kept in the event)")


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InvalidValue(f"If-Match: {value!r} is not an entity version (the ETag of a GET)")
    return int(text)


@router.post("/entities/{kind}", response_model=WriteResult, status_code=200,
             summary="Create an entity, or merge fields into the stored one",
             responses=responses(404, 409, 412))
def put_entity(kind: KindName, response: Response, body: EntityIn = Body(),
               if_match: str | None = Header(default=None, description="The version you read "
                                             "(ETag): the write fails with 412 if it changed"),
               ctx: Context = Depends(TRIAGE)) -> dict[str, Any]:
    expected = _if_match(if_match)
    try:
        key, result = edits.put(ctx.tenant, kind, body.values, body.properties, actor=ctx.actor,
                                source=ctx.source, replace=body.replace, expected_version=expected,
                                note=body.note)
    except ConflictError as exc:
        if expected is not None and "version" in str(exc):
            raise PreconditionFailed(str(exc)) from None
        raise
    rec = ctx.tenant.get(key)
    if rec is not None:
        response.headers["ETag"] = f'"{rec.version}"'
    if result.created:
        response.status_code = 201
    return _write_result(result, key)


def _write_result(result, key: str | None = None) -> dict[str, Any]:
    return {"key": key, "created": result.created, "updated": result.updated,
            "unchanged": result.unchanged, "deleted": result.deleted, "events": result.events,
            "correlation_id": result.correlation_id}


@router.delete("/entity", response_model=WriteResult, summary="Delete an entity",
               responses=responses(404, 409))
def delete_entity(key: str = Query(), cascade: bool = Query(
        default=False, description="Delete what depends on it too (else 409 listing it)"),
        ctx: Context = Depends(ADMIN)) -> dict[str, Any]:
    _get(ctx, key)
    result = edits.delete(ctx.tenant, [key], actor=ctx.actor, source=ctx.source, cascade=cascade)
    return _write_result(result, key)


@router.post("/batch", response_model=WriteResult, summary="Upsert a graph document, all or nothing",
             responses=responses(404))
def batch(document: dict[str, Any] = Body(description="A Bastion graph document (docs/formats.md"
                                          "#graph): nodes and edges; errors name each item"),
          replace: bool = False, ctx: Context = Depends(TRIAGE)) -> dict[str, Any]:
    doc = jsonformat.parse_document(document, "body")
    report = jsonformat.import_documents(ctx.tenant, [doc], actor=ctx.actor, source=ctx.source,
                                         merge=not replace)
    return _write_result(report.result)
