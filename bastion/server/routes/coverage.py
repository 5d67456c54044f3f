"""Coverage: cloud accounts, the ATT&CK coverage report, techniques, gaps and the analyst's
decisions on them, overlaps, drift, history, the Navigator layer, the CI gate and mapping
validation, per account and ATT&CK domain, with the options of `bastion coverage …`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from bastion.coverage import ATTRIBUTION
from bastion.coverage import detections as ops
from bastion.coverage.attack import normalize_domain
from bastion.coverage.compute import AGGREGATIONS, DEFAULT_MIN_CONFIDENCE, METHODS, compute
from bastion.coverage.gaps import OVERLAP_RULES, gaps, overlaps, set_gap_status
from bastion.coverage.gate import check as gate_check
from bastion.coverage.history import drift, history
from bastion.coverage.layer import layer
from bastion.errors import InvalidValue, NotFound
from bastion.schema import roles
from bastion.schema.kinds import GAP_STATES
from bastion.server.context import READ, TRIAGE, Context
from bastion.server.problems import responses
from bastion.server.schemas import EntityOut
from bastion.store import export, filters

router = APIRouter(prefix="/coverage", tags=["coverage"])

Domain = Literal["enterprise", "ics", "mobile"]
Method = Literal[METHODS]  # type: ignore[valid-type]
Aggregation = Literal[AGGREGATIONS]  # type: ignore[valid-type]

ACCOUNT = Query(default=None, max_length=300, description="Account key, provider/identifier, "
                "identifier or name; default: the whole tenant")
WHERE = Query(default=[], description="Filters on the rows, as the CLI's `--where`; repeat for AND")
LIMIT = Query(default=None, ge=1, le=10000, description="Page size (capped by the server)")
MAX_ID = 2**31 - 1  # snapshot ids are 32-bit


@dataclass
class Options:
    """What a coverage computation measures (the CLI's --account, --domain, --method …)."""

    account: str | None = ACCOUNT
    domain: Domain = Query(default="enterprise", description="The ATT&CK domain (its active release)")
    method: Method = Query(default="default", description="default (health, validation, roll-up, "
                           "platforms) or plain (the classic count)")
    aggregation: Aggregation = Query(default="count", description="Technique score: count, max or weighted")
    min_confidence: float = Query(default=DEFAULT_MIN_CONFIDENCE, ge=0, le=1, description=
                                  "Mappings below count only when validated (default method)")
    include: list[str] = Query(default=[], description="Count only these techniques (with their "
                               "sub-techniques) and/or tactics; repeatable")
    ignore: list[str] = Query(default=[], description="Leave out these techniques and/or tactics")


def _catalog(ctx: Context, domain: str):
    return ctx.tenant.coverage.catalog(normalize_domain(domain))


def _compute(ctx: Context, o: Options, details: bool = False):
    return compute(ctx.tenant, _catalog(ctx, o.domain), account=o.account, method=o.method,
                   aggregation=o.aggregation, min_confidence=o.min_confidence,
                   include=o.include or None, ignore=o.ignore or None, details=details)


def _key(ctx: Context, key: str) -> str:
    """An account key as the role may see it (its identifier is confidential: `***`)."""
    return roles.mask_key(key, ctx.role)


def _page(rows: Iterable[dict[str, Any]], ident: Callable[[dict[str, Any]], str],
          cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """A page of computed rows in their order: `cursor` is the id of the last row of the
    previous page."""
    rows = list(rows)
    start = 0
    if cursor is not None:
        ids = [ident(r) for r in rows]
        if cursor not in ids:
            raise InvalidValue(f"invalid page cursor {cursor!r}: no such row (any more)", "cursor")
        start = ids.index(cursor) + 1
    page = rows[start:start + limit]
    more = start + limit < len(rows)
    return page, ident(page[-1]) if more and page else None


# -- accounts ---------------------------------------------------------------------------------


class AccountOut(EntityOut):
    detections: int = Field(description="Detections in the account")


class AccountPage(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None


@router.get("/accounts", response_model=AccountPage, summary="Cloud accounts and their detection "
            "counts", responses=responses())
def accounts(where: list[str] = WHERE, cursor: str | None = None, limit: int | None = LIMIT,
             ctx: Context = Depends(READ)) -> dict[str, Any]:
    page = ctx.tenant.list("cloud_account", where=where or None, after=cursor, limit=ctx.limit(limit))
    return {"items": [{**ctx.record(a), "detections": ctx.tenant.count("detection", where={"account": a.key})}
                      for a in page.records], "next_cursor": page.next_cursor}


# -- report, techniques -------------------------------------------------------------------------


class AttackRelease(BaseModel):
    domain: str
    version: str


class Figures(BaseModel):
    covered: int
    total: int
    percent: float


class TacticOut(Figures):
    id: str
    shortname: str
    name: str


class ReportOut(BaseModel):
    account: str = Field(description="The account's key, or `*` for the whole tenant")
    accounts: list[str]
    method: str
    aggregation: str
    min_confidence: float
    attack: AttackRelease
    platforms: list[str] | None
    include: list[str]
    ignore: list[str]
    overall: Figures
    tactics: list[TacticOut]
    attribution: str


@router.get("/report", response_model=ReportOut, summary="Coverage per tactic and overall",
            responses=responses(404))
def report(o: Options = Depends(), ctx: Context = Depends(READ)) -> dict[str, Any]:
    out = _compute(ctx, o).as_dict()
    out["account"], out["accounts"] = _key(ctx, out["account"]), [_key(ctx, a) for a in out["accounts"]]
    return roles.mask_deep({**out, "attribution": ATTRIBUTION}, ctx.role)


class DetectionRow(BaseModel):
    """A detection mapped to a technique, with its mappings' confidence and validation."""

    key: str
    rule_id: str
    name: str | None = None
    type: str | None = None
    service: str | None = None
    level: str | None = None
    health: str | None = None
    status: str | None = None
    mapped: list[str] = Field(description="The technique ids its mappings carry")
    confidence: float
    validation: str | None = None


class DetectionBehind(DetectionRow):
    """A detection a covered technique counts through."""

    account: str


class TechniqueOut(BaseModel):
    id: str
    name: str
    parent: str | None
    tactics: list[str]
    groups: int
    covered: bool
    score: float
    count: int
    max_level: str | None
    weighted: int
    detections: list[DetectionBehind] | None = None


class TechniquesOut(BaseModel):
    account: str
    method: str
    aggregation: str
    attack: AttackRelease
    techniques: list[TechniqueOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")
    attribution: str


@router.get("/techniques", response_model=TechniquesOut, summary="Per technique: covered or not, "
            "its score and the detections behind it", responses=responses(404))
def techniques(o: Options = Depends(), covered: bool = Query(default=False, description="Only covered techniques"),
               where: list[str] = WHERE, cursor: str | None = Query(default=None, description="A technique id: the page after it"),
               limit: int | None = LIMIT, ctx: Context = Depends(READ)) -> dict[str, Any]:
    flt = filters.parse_rows(export.TECHNIQUES, where or None)
    cov = _compute(ctx, o, details=True)
    rows = flt.select(r.as_dict() for r in cov.techniques.values() if r.covered or not covered)
    page, nxt = _page(rows, lambda r: r["id"], cursor, ctx.limit(limit, 1000))
    for r in page:
        for d in r.get("detections") or ():
            d["account"] = _key(ctx, d["account"])
    return roles.mask_deep({
        "account": _key(ctx, cov.account), "method": cov.method, "aggregation": cov.aggregation,
        "attack": {"domain": cov.domain, "version": cov.version}, "techniques": page,
        "next_cursor": nxt, "attribution": ATTRIBUTION}, ctx.role)


# -- gaps ---------------------------------------------------------------------------------------


class GapOut(BaseModel):
    risk: int
    severity: str
    account: str
    account_name: str | None = Field(description="Its name (else provider/identifier: masked "
                                     "for roles that may not see the identifier)")
    criticality: str
    technique: str
    name: str
    tactics: list[str]
    groups: int
    status: str = Field(description="The effective status")
    stored_status: str | None = Field(description="The analyst's recorded decision, if any")
    comment: str | None = Field(description="Confidential: null for reader and uploader keys")
    note: str | None = None
    masked: list[str] | None = None


class GapsOut(BaseModel):
    gaps: list[GapOut] = Field(description="Uncovered techniques, highest risk first")
    remediated: list[GapOut] = Field(description="Recorded decisions whose technique is covered now")
    total: int = Field(description="Gaps matching the filters (all pages)")
    risk: str
    next_cursor: str | None
    attribution: str


def _gap_id(g) -> str:
    """An opaque cursor for a gap: its account's key may be masked for the role."""
    return hashlib.sha256(f"{g.account}|{g.technique}".encode()).hexdigest()[:24]


def _mask_gap(ctx: Context, g: dict[str, Any], unnamed: set[str]) -> dict[str, Any]:
    out = roles.mask_record({**g, "kind": "gap"}, ctx.role)
    out.pop("kind")
    out["account"] = _key(ctx, g["account"])
    if g["account"] in unnamed:  # the label is provider/identifier
        shown = roles.mask_record({"kind": "cloud_account", "identifier": g["account_name"]}, ctx.role)
        if shown.get("masked"):
            out["account_name"] = None
            out["masked"] = [*(out.get("masked") or []), "account_name"]
    return out


@router.get("/gaps", response_model=GapsOut, summary="Uncovered techniques, highest risk first "
            "(criticality × (1 + groups using it)), with the analysts' decisions",
            responses=responses(404))
def gaps_route(account: str | None = ACCOUNT, domain: Domain = "enterprise",
               min_confidence: float = Query(default=DEFAULT_MIN_CONFIDENCE, ge=0, le=1),
               include: list[str] = Query(default=[]), ignore: list[str] = Query(default=[]),
               where: list[str] = WHERE,
               cursor: str | None = Query(default=None, description="`next_cursor` of the previous page"),
               limit: int | None = LIMIT, ctx: Context = Depends(READ)) -> dict[str, Any]:
    flt = filters.parse_rows(export.GAPS, where or None)
    rep = gaps(ctx.tenant, _catalog(ctx, domain), account=account, min_confidence=min_confidence,
               include=include or None, ignore=ignore or None)
    unnamed = {a.key for a in ctx.tenant.coverage.accounts() if not a.name}
    # masked before filtering: a filter on a masked value matches nothing
    masked = [_mask_gap(ctx, g.as_dict(), unnamed) for g in rep.gaps]
    ids = {id(row): _gap_id(g) for row, g in zip(masked, rep.gaps)}
    rows = list(flt.select(masked))
    page, nxt = _page(rows, lambda row: ids[id(row)], cursor, ctx.limit(limit, 50))
    return roles.mask_deep({
        "gaps": page, "remediated": [_mask_gap(ctx, g.as_dict(), unnamed) for g in rep.remediated],
        "total": len(rows), "risk": rep.as_dict()["risk"], "next_cursor": nxt,
        "attribution": ATTRIBUTION}, ctx.role)


class GapDecisionIn(BaseModel):
    account: str = Field(max_length=300, description="Account key, provider/identifier, identifier or name")
    technique: str = Field(max_length=20, description="T1078 or T1078.004")
    status: Literal[GAP_STATES]  # type: ignore[valid-type]
    comment: str | None = Field(default=None, max_length=4000, description="Why (kept on the gap and its event)")
    domain: Domain = "enterprise"


@router.post("/gaps/status", response_model=EntityOut, summary="Record a decision on a gap (an "
             "event); kept across recomputations", responses=responses(404, 409))
def gap_status(body: GapDecisionIn = Body(), ctx: Context = Depends(TRIAGE)) -> dict[str, Any]:
    try:
        catalog = _catalog(ctx, body.domain)
    except NotFound:  # as the CLI: without a catalog the technique is checked for shape only
        catalog = None
    rec = set_gap_status(ctx.tenant, body.account, body.technique, body.status, comment=body.comment,
                         actor=ctx.actor, catalog=catalog, source=ctx.source)
    return ctx.record(rec)


# -- overlaps -----------------------------------------------------------------------------------


class OverlapDetection(DetectionRow):
    counts: bool = Field(description="Whether it counts as coverage")


class OverlapOut(BaseModel):
    account: str
    technique: str
    name: str
    classification: Literal["conflicting", "excessive", "beneficial"]
    reason: str
    detections: list[OverlapDetection]


class OverlapsOut(BaseModel):
    overlaps: list[OverlapOut]
    rules: dict[str, str]


@router.get("/overlaps", response_model=OverlapsOut, summary="Techniques with several detections: "
            "conflicting, excessive or beneficial", responses=responses(404))
def overlaps_route(account: str | None = ACCOUNT, domain: Domain = "enterprise",
                   min_confidence: float = Query(default=DEFAULT_MIN_CONFIDENCE, ge=0, le=1),
                   max_same: int = Query(default=5, ge=1, le=10000, description="More counting "
                                         "detections of one level and type than this is excessive"),
                   where: list[str] = WHERE, ctx: Context = Depends(READ)) -> dict[str, Any]:
    flt = filters.parse_rows(export.OVERLAPS, where or None)
    found = overlaps(ctx.tenant, _catalog(ctx, domain), account=account,
                     min_confidence=min_confidence, max_same=max_same)
    return roles.mask_deep({
        "overlaps": list(flt.select({**o.as_dict(), "account": _key(ctx, o.account)} for o in found)),
        "rules": {k: v.format(max_same=max_same) for k, v in OVERLAP_RULES.items()}}, ctx.role)


# -- drift and history --------------------------------------------------------------------------


class DriftEnd(BaseModel):
    id: int
    taken_at: datetime
    source: str
    coverage_snapshot: int | None
    attack_version: str | None
    recomputed: bool | None = None


class Between(BaseModel):
    id: int
    source: str
    taken_at: datetime


class DriftOut(BaseModel):
    account: str
    source: str
    attack_domain: str
    from_: DriftEnd = Field(alias="from")
    to: DriftEnd
    changes: dict[str, list[dict[str, Any]]] = Field(description="added, removed, modified, "
                                                     "disabled, enabled, health: detection keys")
    counts: dict[str, int]
    source_delta: dict[str, Any] | None = Field(description="The coverage of the source's "
                                                "inventory alone, before → after")
    coverage_delta: dict[str, Any] | None = Field(description="The account's coverage at the two "
                                                  "instants (coverage snapshots), before → after")
    between: list[Between]

    model_config = ConfigDict(populate_by_name=True)


@router.get("/drift", response_model=DriftOut, response_model_by_alias=True,
            summary="What changed between two detection inventories of an account, and the "
            "coverage delta", responses=responses(404))
def drift_route(account: str | None = ACCOUNT, domain: Domain = "enterprise",
                from_id: int | None = Query(default=None, alias="from", ge=1, le=MAX_ID, description="Older detection snapshot"),
                to_id: int | None = Query(default=None, alias="to", ge=1, le=MAX_ID, description="Newer detection snapshot"),
                ctx: Context = Depends(READ)) -> dict[str, Any]:
    try:
        catalog = _catalog(ctx, domain)
    except NotFound:
        catalog = None
    out = drift(ctx.tenant, account, from_id, to_id, catalog=catalog, domain=domain)
    return roles.mask_deep({**out, "account": _key(ctx, out["account"])}, ctx.role)


class TacticPoint(Figures):
    shortname: str
    name: str


class HistoryPoint(BaseModel):
    id: int
    account: str
    taken_at: datetime
    method: str
    attack_domain: str
    attack_version: str
    detection_snapshot: int | None
    overall: Figures
    tactics: dict[str, TacticPoint] = Field(description="By tactic id")
    techniques: dict[str, float] | None = Field(description="Covered techniques' scores "
                                                "(with `techniques=true`)")


@router.get("/history", response_model=list[HistoryPoint], summary="Coverage over time on one "
            "ATT&CK domain, oldest first", responses=responses(404))
def history_route(account: str | None = ACCOUNT, domain: Domain = "enterprise",
                  method: Method | None = Query(default=None, description="Only this method"),
                  where: list[str] = WHERE,
                  techniques: bool = Query(default=False, description="Each snapshot's techniques too"),
                  ctx: Context = Depends(READ)) -> list[dict[str, Any]]:
    flt = filters.parse_rows(export.COVERAGE_HISTORY, where or None)
    return [{**p, "account": _key(ctx, p["account"])}
            for p in flt.select(history(ctx.tenant, account, method=method, domain=domain,
                                        techniques=techniques))]


# -- layer and gate -----------------------------------------------------------------------------


class LayerOut(BaseModel):
    """An ATT&CK Navigator layer (format 4.5), as `bastion coverage layer` writes it."""

    model_config = ConfigDict(extra="allow")

    name: str
    versions: dict[str, str]
    domain: str
    description: str
    techniques: list[dict[str, Any]]
    gradient: dict[str, Any]
    metadata: list[dict[str, Any]]


@router.get("/layer", response_model=LayerOut, summary="The ATT&CK Navigator layer of the coverage",
            responses=responses(404))
def layer_route(o: Options = Depends(), name: str | None = Query(default=None, max_length=200,
                                                                    description="Layer name"),
                ctx: Context = Depends(READ)) -> dict[str, Any]:
    cov = _compute(ctx, o, details=True)
    masked = _key(ctx, cov.account)
    out = layer(cov, name=name, account_label=masked if masked != cov.account else None)
    for item in out["metadata"]:
        if item.get("name") == "account":
            item["value"] = masked
    return roles.mask_deep(out, ctx.role)


class Checked(BaseModel):
    what: str
    tactic: str | None
    covered: int
    total: int
    percent: float
    passed: bool


class GateOut(BaseModel):
    passed: bool = Field(description="A failed gate is an answer (200), not an error")
    min_percent: float
    message: str = Field(description="The line `bastion coverage check` prints")
    checked: list[Checked]


def _gate(ctx: Context, o: Options, min_percent: float, tactic: list[str]) -> dict[str, Any]:
    o.aggregation = "count"  # as the CLI: the gate counts techniques
    return gate_check(_compute(ctx, o), min_percent, tactic).as_dict()


MIN_PERCENT = Query(ge=0, le=100, description="Fail below this percentage")
TACTIC = Query(default=[], description="Check these tactics (id or short name) instead of the "
               "overall figure; repeatable")


@router.get("/check", response_model=GateOut, summary="The CI gate: coverage at or above a "
            "minimum, overall or per tactic", responses=responses(404))
def check_get(min_percent: float = MIN_PERCENT, tactic: list[str] = TACTIC, o: Options = Depends(),
              ctx: Context = Depends(READ)) -> dict[str, Any]:
    return _gate(ctx, o, min_percent, tactic)


@router.post("/check", response_model=GateOut, summary="The CI gate (as GET, for CI tools that POST)",
             responses=responses(404))
def check_post(min_percent: float = MIN_PERCENT, tactic: list[str] = TACTIC, o: Options = Depends(),
               ctx: Context = Depends(READ)) -> dict[str, Any]:
    return _gate(ctx, o, min_percent, tactic)


# -- mapping validation ---------------------------------------------------------------------------


class ValidationIn(BaseModel):
    key: str = Field(max_length=2000, description="The mapping's key")
    validation: Literal["validated", "disputed", "pending"]
    rationale: str | None = Field(default=None, max_length=2000, description="Why (kept on the "
                                  "mapping and its event)")


@router.post("/mappings/validation", response_model=EntityOut, summary="Validate or dispute a "
             "detection's ATT&CK mapping (an event)", responses=responses(404, 409))
def validate_mapping(body: ValidationIn = Body(), ctx: Context = Depends(TRIAGE)) -> dict[str, Any]:
    rec = ops.set_validation(ctx.tenant, body.key, body.validation, actor=ctx.actor,
                             rationale=body.rationale, source=ctx.source)
    return ctx.record(rec)
