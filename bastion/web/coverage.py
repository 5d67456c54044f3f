"""Coverage: per account and ATT&CK domain, the matrix as a heat map (bastion.coverage.matrix),
the detections and mappings behind a cell, gaps ranked, overlaps, drift between two detection
snapshots, the coverage history as a chart, and the Navigator layer as a download.

Every figure comes from the functions the API's /v1/coverage routes are (called with the
console's Context): the same computation and the same masking of account keys by role. The
account is chosen by an opaque reference (a hash of its key), so a role that may not see an
account's identifier never finds it in the page."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from bastion.coverage.compute import DEFAULT_MIN_CONFIDENCE
from bastion.coverage.layer import GRADIENT, layer
from bastion.coverage.matrix import behind, matrix
from bastion.errors import BastionError, NotFound
from bastion.schema import roles
from bastion.server.context import Context
from bastion.server.routes import coverage as api
from bastion.store import export
from bastion.web.app import READ, csv_response, render, while_unchanged

router = APIRouter()

GAPS_SHOWN = 25  # the first page of ranked gaps; the CSV has them all
CHART = {"width": 640, "height": 180, "left": 40, "right": 10, "top": 10, "bottom": 28}


def account_ref(key: str) -> str:
    """The opaque reference of an account in console URLs."""
    return "a" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _accounts(ctx: Context) -> list[dict[str, Any]]:
    """The accounts to choose from: reference and a label the role may see."""
    out = []
    for a in ctx.tenant.coverage.accounts():
        shown = roles.mask_record({"kind": "cloud_account", "identifier": a.identifier}, ctx.role)
        label = a.name or f"{a.provider}/{shown['identifier'] or '***'}"
        out.append({"ref": account_ref(a.key), "key": a.key, "label": label,
                    "provider": a.provider})
    return out


def _account_key(ctx: Context, ref: str | None) -> str | None:
    if not ref:
        return None
    for a in _accounts(ctx):
        if a["ref"] == ref:
            return a["key"]
    raise NotFound(f"no cloud account {ref!r} (choose one from the list)")


def _options(account: str | None, domain: str, method: str, aggregation: str) -> api.Options:
    return api.Options(account=account, domain=domain, method=method, aggregation=aggregation,
                       min_confidence=DEFAULT_MIN_CONFIDENCE, include=[], ignore=[])


def history_chart(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Coverage percentages over time as SVG coordinates (x by time, y by percent 0-100)."""
    if not points:
        return None
    points = sorted(points, key=lambda p: p["taken_at"])  # snapshots may be taken back-dated
    c = CHART
    w, h = c["width"] - c["left"] - c["right"], c["height"] - c["top"] - c["bottom"]
    top = next(v for v in (5, 10, 25, 50, 100) if v >= max(p["overall"]["percent"] for p in points))
    times = [p["taken_at"].timestamp() for p in points]
    t0, t1 = min(times), max(times)
    xy = []
    for p, t in zip(points, times):
        x = c["left"] + (w * (t - t0) / (t1 - t0) if t1 > t0 else w / 2)
        y = c["top"] + h * (1 - p["overall"]["percent"] / top)
        xy.append({"x": round(x, 1), "y": round(y, 1), "percent": p["overall"]["percent"],
                   "covered": p["overall"]["covered"], "total": p["overall"]["total"],
                   "taken_at": p["taken_at"]})
    ticks = [{"y": round(c["top"] + h * (1 - v / top), 1), "label": f"{v:g}%"} for v in (0, top / 2, top)]
    return {**c, "points": xy, "line": " ".join(f"{p['x']},{p['y']}" for p in xy),
            "ticks": ticks, "first": points[0]["taken_at"], "last": points[-1]["taken_at"]}


Domain = Query(default="enterprise", pattern="^(enterprise|ics|mobile)$")
Method = Query(default="default", pattern="^(default|plain)$")
Aggregation = Query(default="count", pattern="^(count|max|weighted)$")
Account = Query(default=None, max_length=40, description="An account reference from the list")


def _coverage_data(ctx: Context, key, domain, method, aggregation, from_id, to_id):
    """What the coverage page shows: computed once per state of the tenant (while_unchanged)."""
    cov = api._compute(ctx, _options(key, domain, method, aggregation))
    mx = matrix(cov)
    gaps = api.gaps_route(account=key, domain=domain, min_confidence=DEFAULT_MIN_CONFIDENCE,
                          include=[], ignore=[], where=[], cursor=None, limit=GAPS_SHOWN, ctx=ctx)
    overlaps = api.overlaps_route(account=key, domain=domain, min_confidence=DEFAULT_MIN_CONFIDENCE,
                                  max_same=5, where=[], ctx=ctx)
    points = api.history_route(account=key, domain=domain, method=method, where=[],
                               techniques=False, ctx=ctx)
    snapshots, drift, drift_error = [], None, None
    if key is not None:
        snapshots = ctx.tenant.coverage.detection_snapshots(account=key)
        try:
            drift = api.drift_route(account=key, domain=domain, from_id=from_id, to_id=to_id, ctx=ctx)
            # the detection keys embed the account's identifier
            drift["changes"] = {name: [{**c, "key": roles.mask_key(c["key"], ctx.role)} for c in items]
                                for name, items in drift["changes"].items()}
        except BastionError as exc:  # fewer than two inventories, or two of different sources
            drift_error = str(exc).replace(key, api._key(ctx, key))  # the message names the account
    return mx, gaps, overlaps, points, snapshots, drift, drift_error


@router.get("/coverage")
def coverage_page(request: Request, account: str | None = Account, domain: str = Domain,
                  method: str = Method, aggregation: str = Aggregation,
                  from_id: int | None = Query(default=None, alias="from", ge=1, le=api.MAX_ID),
                  to_id: int | None = Query(default=None, alias="to", ge=1, le=api.MAX_ID),
                  ctx: Context = Depends(READ)):
    key = _account_key(ctx, account)
    data = while_unchanged(ctx, ("coverage", key, domain, method, aggregation, from_id, to_id),
                           lambda: _coverage_data(ctx, key, domain, method, aggregation, from_id, to_id))
    mx, gaps, overlaps, points, snapshots, drift, drift_error = data
    params = {"account": account, "domain": domain, "method": method, "aggregation": aggregation}
    choices = _accounts(ctx)
    return render(request, ctx, "coverage.html", accounts=choices, params=params,
                  account_label=next((a["label"] for a in choices if a["key"] == key), None), matrix=mx, gradient=GRADIENT, gaps=gaps,
                  overlaps=overlaps["overlaps"], overlap_rules=overlaps["rules"],
                  chart=history_chart(points), history=points, snapshots=snapshots,
                  drift=drift, drift_error=drift_error, from_id=from_id, to_id=to_id)


@router.get("/coverage/cell")
def coverage_cell(request: Request, technique: str = Query(max_length=20, pattern=r"^[Tt]\d{4}(\.\d{3})?$"),
                  account: str | None = Account, domain: str = Domain, method: str = Method,
                  aggregation: str = Aggregation, ctx: Context = Depends(READ)):
    """A fragment: the technique's figures and the detections and mappings behind it."""
    key = _account_key(ctx, account)
    cov = api._compute(ctx, _options(key, domain, method, aggregation), details=True)
    result = cov.techniques.get(technique.upper())
    if result is None:
        raise NotFound(f"{technique.upper()} is not counted for this account and domain")
    detections = []
    for d in behind(ctx.tenant, cov, result.id):
        shown = roles.mask_record(d, ctx.role)
        shown["mappings"] = [roles.mask_record(m, ctx.role) for m in d["mappings"]]
        detections.append(shown)
    return render(request, ctx, "coverage_cell.html", technique=result, detections=detections,
                  method=method, aggregation=aggregation)


@router.get("/coverage/layer")
def coverage_layer(account: str | None = Account, domain: str = Domain, method: str = Method,
                   aggregation: str = Aggregation, ctx: Context = Depends(READ)):
    """The Navigator layer GET /v1/coverage/layer answers, as a file; the detection keys its
    rule metadata names are masked for the role too (they embed the account's identifier)."""
    key = _account_key(ctx, account)
    cov = api._compute(ctx, _options(key, domain, method, aggregation), details=True)
    for r in cov.techniques.values():
        for d in r.detections or ():
            d["key"] = roles.mask_key(d["key"], ctx.role)
    shown = api._key(ctx, cov.account)
    body = layer(cov, account_label=shown if shown != cov.account else None)
    for item in body["metadata"]:
        if item.get("name") == "account":
            item["value"] = shown
    name = f"bastion-coverage-{domain}-{account or 'tenant'}.json"
    return Response(json.dumps(body, indent=1), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/coverage/gaps.csv")
def coverage_gaps_csv(account: str | None = Account, domain: str = Domain,
                      ctx: Context = Depends(READ)):
    """Every gap, ranked, as the table shows them (masked for the role)."""
    key = _account_key(ctx, account)
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.gaps_route(account=key, domain=domain, min_confidence=DEFAULT_MIN_CONFIDENCE,
                              include=[], ignore=[], where=[], cursor=cursor,
                              limit=ctx.settings.page_cap, ctx=ctx)
        rows.extend(page["gaps"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return csv_response(f"bastion-gaps-{domain}-{account or 'tenant'}.csv", rows,
                        [c for c in export.GAPS.columns])
