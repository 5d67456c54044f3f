"""Assets: the inventory by class, exposure and criticality (paged, CSV); an asset's page with its
ports, technologies, risks, attributes, relationships and history, where analysts set exposure
and criticality (bastion.store.edits.put, as POST /v1/entities/asset)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Query, Request

from bastion.errors import InvalidValue, NotFound
from bastion.schema import roles
from bastion.schema.keys import kind_of
from bastion.schema.kinds import ASSET_CLASSES, REGISTRY
from bastion.server.context import Context
from bastion.store import edits, export, filters
from bastion.web.app import event, READ, console_write, csv_response, redirect, render

router = APIRouter()

PAGE = 50
EXPOSURES = REGISTRY.entity("asset").field("exposure").domain
CRITICALITIES = REGISTRY.entity("asset").field("criticality").domain
SORTS = ("identifier", "class", "exposure", "criticality", "last_seen")


def _choice(name: str, value: str, domain) -> str:
    if value and value not in domain:
        raise InvalidValue(f"{name} {value!r}: choose from {', '.join(domain)}", name)
    return value


def asset_filter(ctx: Context, cls: str, exposure: str, criticality: str, q: str) -> filters.Filter:
    expressions = [e for e in (
        f"class={_choice('class', cls, ASSET_CLASSES)}" if cls else "",
        f"exposure={_choice('exposure', exposure, EXPOSURES)}" if exposure else "",
        f"criticality={_choice('criticality', criticality, CRITICALITIES)}" if criticality else "",
        f"~{q}" if q else "") if e]
    flt = filters.parse("asset", expressions)
    roles.check_filterable("asset", flt.conditions, ctx.role)
    return flt


@router.get("/assets")
def assets(request: Request, cls: str = Query(default="", alias="class"), exposure: str = "",
           criticality: str = "", q: str = Query(default="", max_length=200),
           cursor: str | None = None, ctx: Context = Depends(READ)):
    flt = asset_filter(ctx, cls, exposure, criticality, q.strip())
    page = ctx.tenant.list("asset", where=flt, after=cursor, limit=PAGE)
    params = {k: v for k, v in {"class": cls, "exposure": exposure, "criticality": criticality,
                                 "q": q.strip()}.items() if v}
    return render(request, ctx, "assets.html", assets=[ctx.record(r) for r in page.records],
                  next_cursor=page.next_cursor, cursor=cursor, params=params,
                  classes=ASSET_CLASSES, exposures=EXPOSURES, criticalities=CRITICALITIES,
                  total=ctx.tenant.count("asset", where=flt) if cursor is None else None)


@router.get("/assets.csv")
def assets_csv(cls: str = Query(default="", alias="class"), exposure: str = "",
               criticality: str = "", q: str = Query(default="", max_length=200),
               ctx: Context = Depends(READ)):
    flt = asset_filter(ctx, cls, exposure, criticality, q.strip())
    rows = (ctx.record(r) for r in ctx.tenant.iterate("asset", where=flt))
    return csv_response("assets.csv", rows, export.columns("asset"))


@router.get("/asset")
def asset_page(request: Request, key: str = Query(max_length=2000), ctx: Context = Depends(READ)):
    rec = ctx.tenant.get(key) if kind_of(key) == "asset" else None
    if rec is None:
        raise NotFound(f"no asset {key}")
    links = ctx.tenant.links(key)
    near = {link.target if link.source == key else link.source for link in links}
    ports = [k for k in near if kind_of(k) == "port"]
    # Risks sit on the asset or on one of its ports.
    for port in ports:
        near.update(link.target for link in ctx.tenant.links(port, "out")
                    if link.relationship == "HAS_VULNERABILITY")
    found = ctx.tenant.get_many(sorted(near))
    by_kind: dict[str, list] = {}
    for other in found.values():
        by_kind.setdefault(other.kind, []).append(ctx.record(other))
    by_kind.get("risk", []).sort(key=lambda r: -(r.get("priority") or 0))
    by_kind.get("port", []).sort(key=lambda p: (p.get("number") or 0))
    return render(request, ctx, "asset.html", asset=ctx.record(rec), raw_key=key,
                  ports=by_kind.pop("port", []), technologies=by_kind.pop("technology", []),
                  risks=by_kind.pop("risk", []), attributes=by_kind.pop("attribute", []),
                  links=[{"relationship": link.relationship,
                          "source": roles.mask_key(link.source, ctx.role),
                          "target": roles.mask_key(link.target, ctx.role),
                          "first_seen": link.first_seen, "last_seen": link.last_seen}
                         for link in links],
                  history=[event(ctx, e) for e in reversed(ctx.tenant.history(key))],
                  exposures=EXPOSURES, criticalities=CRITICALITIES,
                  saved=request.query_params.get("saved"))


@router.post("/asset/set")
def set_asset(key: str = Form(max_length=2000), exposure: str = Form(default=""),
              criticality: str = Form(default=""), note: str = Form(default="", max_length=4000),
              version: int | None = Form(default=None),
              ctx: Context = Depends(console_write(roles.TRIAGE))):
    rec = ctx.tenant.get(key) if kind_of(key) == "asset" else None
    if rec is None:
        raise NotFound(f"no asset {key}")
    values = {"group": rec.values["group"], "identifier": rec.values["identifier"]}
    if exposure:
        values["exposure"] = _choice("exposure", exposure, EXPOSURES)
    if criticality:
        values["criticality"] = _choice("criticality", criticality, CRITICALITIES)
    edits.put(ctx.tenant, "asset", values, actor=ctx.actor, source=ctx.source,
              expected_version=version, note=note.strip() or None)
    return redirect("/asset", key=key, saved="1")
