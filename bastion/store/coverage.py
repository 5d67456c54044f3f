"""The SQL of detection coverage (bastion.coverage): set-based aggregates of the qualifying
mappings, the detections behind techniques, accounts, gap decisions and coverage snapshots.

Shape of the main statement (`aggregates`), one pass for every account of a tenant:

    mapping m                                      -- 2 mappings per detection
      JOIN edge e  ON e.target_id = m.node_id      -- MAPS_TO, (tenant_id, target_id, kind,
                  AND e.kind = 'MAPS_TO'           --  source_id) index: integer join
      JOIN detection d ON d.node_id = e.source_id  -- primary key
      JOIN roll r  ON r.raw = m.technique          -- the catalog's id map, ONE parameter
    WHERE <qualifying conditions>
    SELECT DISTINCT account, r.target, d.node_id, level rank      -- a detection once per target
    GROUP BY account, target → count, max rank, sum of ranks

`roll` maps every technique id a mapping may carry (revoked and old ids included) to the
active technique(s) it counts for: itself resolved through revoked-by links, and for a
sub-technique also its parent (the roll-up). It is passed as one array per column (PostgreSQL,
`unnest`) or one JSON parameter (SQLite, `json_each`), so the statement is the same size for ten
or a thousand techniques. No Python loop runs per detection or per mapping: the store returns one
row per (account, technique).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

import orjson
from sqlalchemy import (Column, MetaData, String, Table, and_, any_, case, delete, func, insert,
                        literal, or_, select)
from sqlalchemy.dialects.postgresql import ARRAY

from bastion.schema.keys import node_id
from bastion.store.query import Scope, insert_numbered
from bastion.store.tables import coverage_snapshot, detection_snapshot, edge, node, typed

LEVEL_RANK = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
UNSET_LEVEL_RANK = 1  # a detection without a level weighs as an informational one
STREAM = 5000  # rows fetched per round trip when streaming
# The health of a detection that counts as coverage: healthy, or unknown (a file-imported rule
# whose health nothing checked). Degraded and broken ones do not count (docs/coverage.md).
COUNTED_HEALTH = ("healthy", "unknown")


@dataclass(frozen=True)
class Qualify:
    """Which mappings count as coverage.

    default method: detection enabled, health healthy or unknown (COUNTED_HEALTH), mapping not
    disputed, and confidence >= min_confidence or validated. plain method: detection enabled and
    confidence >= 0.6, health and validation ignored."""

    min_confidence: float = 0.6
    enabled_only: bool = True
    healthy_only: bool = True  # health in COUNTED_HEALTH
    exclude_disputed: bool = True
    validated_counts: bool = True

    @classmethod
    def plain(cls) -> "Qualify":
        return cls(0.6, True, False, False, False)


@dataclass(frozen=True)
class Aggregate:
    account: str  # account key
    technique: str  # active technique id (after resolution and roll-up)
    count: int  # distinct detections
    max_rank: int  # highest level rank (1 informational … 5 critical)
    weighted: int  # sum of the detections' level ranks


@dataclass(frozen=True)
class DetectionRow:
    account: str
    technique: str  # active technique id the row counts for
    mapped: str  # the technique id as the mapping stores it
    key: str  # detection key
    rule_id: str
    name: str | None
    type: str
    service: str | None
    status: str
    health: str
    level: str | None
    confidence: float
    validation: str
    method: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _rank(level_col):
    return case(*((level_col == lvl, r) for lvl, r in LEVEL_RANK.items()), else_=UNSET_LEVEL_RANK)


# SQLite: the technique id map goes into a temporary table with a primary key (per connection,
# refilled per statement), so the join probes an index; json_each has no index and SQLite would
# rescan it for every mapping row. PostgreSQL hash-joins the unnest() of two arrays.
_roll_meta = MetaData()
_roll_table = Table("bastion_coverage_roll", _roll_meta, Column("raw", String, primary_key=True),
                    Column("target", String, primary_key=True), prefixes=["TEMPORARY"],
                    sqlite_with_rowid=False)


def _roll(scope: Scope, conn, pairs: Sequence[tuple[str, str]]):
    """The (raw, target) technique id map as a FROM item."""
    pairs = sorted(set(pairs)) or [("", "")]  # an empty map still has to render
    if scope.postgres:
        raws, targets = [p[0] for p in pairs], [p[1] for p in pairs]
        return (func.unnest(literal(raws, ARRAY(String)), literal(targets, ARRAY(String)))
                .table_valued("raw", "target").render_derived(name="roll"))
    _roll_table.create(conn, checkfirst=True)
    conn.execute(delete(_roll_table))
    conn.execute(insert(_roll_table), [{"raw": r, "target": t} for r, t in pairs])
    return _roll_table.alias("roll")


def _in(scope: Scope, column, values: Sequence[str]):
    if scope.postgres:
        return column == any_(literal(list(values), ARRAY(String)))
    each = func.json_each(literal(orjson.dumps(list(values)).decode())).table_valued("value")
    return column.in_(select(each.c.value))


def _mapped(scope: Scope, conn, pairs, accounts: Sequence[str] | None, q: Qualify | None, cols,
            with_node: bool = False):
    """SELECT cols FROM mapping → MAPS_TO edge → detection → roll, tenant-scoped; `q` None
    selects every mapping whatever its state."""
    m, d, roll = typed["mapping"], typed["detection"], _roll(scope, conn, pairs)
    if accounts is None:  # the whole tenant: scan the mappings
        stmt = (select(*cols(m, d, roll))
                .select_from(m)
                .join(edge, and_(edge.c.tenant_id == m.c.tenant_id, edge.c.target_id == m.c.node_id,
                                 edge.c.kind == "MAPS_TO"))
                .join(d, and_(d.c.tenant_id == edge.c.tenant_id, d.c.node_id == edge.c.source_id)))
    else:  # some accounts: account → HAS_DETECTION → detection → MAPS_TO → mapping, all by key
        has = edge.alias("has")
        stmt = (select(*cols(m, d, roll))
                .select_from(has)
                .join(d, and_(d.c.tenant_id == has.c.tenant_id, d.c.node_id == has.c.target_id))
                .join(edge, and_(edge.c.tenant_id == d.c.tenant_id, edge.c.source_id == d.c.node_id,
                                 edge.c.kind == "MAPS_TO"))
                .join(m, and_(m.c.tenant_id == edge.c.tenant_id, m.c.node_id == edge.c.target_id))
                .where(has.c.tenant_id == scope.tenant_id, has.c.kind == "HAS_DETECTION",
                       scope.id_in(has.c.source_id, [node_id(a) for a in accounts])))
    stmt = (stmt.join(roll, roll.c.raw == m.c.technique)
            .where(scope.where(m), scope.where(edge), scope.where(d)))
    if with_node:  # the detection's key
        stmt = stmt.join(node, and_(node.c.tenant_id == d.c.tenant_id, node.c.id == d.c.node_id)
                         ).where(scope.where(node))
    if q is not None:
        if q.enabled_only:
            stmt = stmt.where(d.c.status == "enabled")
        if q.healthy_only:
            stmt = stmt.where(d.c.health.in_(COUNTED_HEALTH))
        if q.exclude_disputed:
            stmt = stmt.where(m.c.validation != "disputed")
        enough = m.c.confidence >= q.min_confidence
        if q.validated_counts:
            enough = or_(enough, m.c.validation == "validated")
        stmt = stmt.where(enough)
    return stmt


def aggregates(scope: Scope, pairs: Sequence[tuple[str, str]], q: Qualify, *,
               accounts: Sequence[str] | None = None) -> Iterator[Aggregate]:
    """Per (account, active technique): distinct qualifying detections, highest level rank and
    the sum of level ranks. One statement, streamed."""
    with scope.transaction() as conn:
        inner = _mapped(scope, conn, pairs, accounts, q, lambda m, d, r: (
            d.c.account.label("account"), r.c.target.label("technique"),
            d.c.node_id.label("detection"), _rank(d.c.level).label("rank"))).distinct().subquery("q")
        stmt = (select(inner.c.account, inner.c.technique, func.count(), func.max(inner.c.rank),
                       func.sum(inner.c.rank))
                .group_by(inner.c.account, inner.c.technique))
        for row in conn.execution_options(yield_per=STREAM).execute(stmt):
            yield Aggregate(row[0], row[1], int(row[2]), int(row[3]), int(row[4]))


def _detail_cols(m, d, r):
    return (d.c.account, r.c.target, m.c.technique, node.c.key, d.c.rule_id, d.c.name, d.c.type,
            d.c.service, d.c.status, d.c.health, d.c.level, m.c.confidence, m.c.validation,
            m.c.method)


def detections(scope: Scope, pairs: Sequence[tuple[str, str]], q: Qualify | None, *,
               accounts: Sequence[str] | None = None,
               techniques: Sequence[str] | None = None,
               min_per_technique: int = 1) -> Iterator[DetectionRow]:
    """The detections behind techniques (one row per detection, technique and mapped id), for
    the listed accounts and techniques. `q` None: every mapped detection whatever its state
    (overlaps). `min_per_technique` > 1 keeps only (account, technique) groups with at least
    that many distinct detections, counted in the database (a window function)."""
    if techniques is not None:
        wanted = set(techniques)
        pairs = [p for p in pairs if p[1] in wanted]

    with scope.transaction() as conn:
        base = _mapped(scope, conn, pairs, accounts, q, _detail_cols, with_node=True)
        if min_per_technique > 1:
            d = typed["detection"]
            part = (d.c.account, base.selected_columns[1])
            ranked = base.add_columns(func.dense_rank().over(
                partition_by=part, order_by=d.c.node_id).label("nth")).subquery("ranked")
            # a group's highest dense rank is its number of distinct detections
            sized = select(ranked, func.max(ranked.c.nth).over(
                partition_by=(ranked.c.account, ranked.c.target)).label("n")).subquery("sized")
            stmt = (select(*(c for c in sized.c if c.name not in ("nth", "n")))
                    .where(sized.c.n >= min_per_technique)
                    .order_by(sized.c.account, sized.c.target, sized.c.key, sized.c.technique))
        else:
            stmt = base.order_by(typed["detection"].c.account, base.selected_columns[1],
                                 node.c.key, typed["mapping"].c.technique)
        for row in conn.execution_options(yield_per=STREAM).execute(stmt):
            yield DetectionRow(*row[:14])


# -- accounts and gap decisions -------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    key: str
    provider: str
    identifier: str
    name: str | None
    environment: str | None
    criticality: str
    platforms: list[str] | None

    @property
    def label(self) -> str:
        return self.name or f"{self.provider}/{self.identifier}"


def accounts(scope: Scope, keys: Sequence[str] | None = None) -> list[Account]:
    a = typed["cloud_account"]
    stmt = (select(node.c.key, a.c.provider, a.c.identifier, a.c.name, a.c.environment,
                   a.c.criticality, a.c.platforms)
            .join(a, and_(a.c.tenant_id == node.c.tenant_id, a.c.node_id == node.c.id))
            .where(scope.where(node), scope.where(a)).order_by(node.c.key))
    if keys is not None:
        stmt = stmt.where(_in(scope, node.c.key, keys))
    with scope.transaction() as conn:
        return [Account(r[0], r[1], r[2], r[3], r[4], r[5] or "medium",
                        list(r[6]) if r[6] else None) for r in conn.execute(stmt)]


@dataclass(frozen=True)
class GapDecision:
    key: str
    account: str
    technique: str
    status: str
    comment: str | None
    version: int
    updated_at: datetime


def gap_decisions(scope: Scope, accounts: Sequence[str] | None = None) -> list[GapDecision]:
    g = typed["gap"]
    stmt = (select(node.c.key, g.c.account, g.c.technique, g.c.status, g.c.comment,
                   node.c.version, node.c.updated_at)
            .join(g, and_(g.c.tenant_id == node.c.tenant_id, g.c.node_id == node.c.id))
            .where(scope.where(node), scope.where(g)).order_by(g.c.account, g.c.technique))
    if accounts is not None:
        stmt = stmt.where(_in(scope, g.c.account, accounts))
    with scope.transaction() as conn:
        return [GapDecision(*r) for r in conn.execute(stmt)]


# -- snapshots ------------------------------------------------------------------------------------


def _snapshot_dict(r) -> dict[str, Any]:
    return {"id": r.id, "account": r.account, "taken_at": r.taken_at, "method": r.method,
            "attack_domain": r.attack_domain, "attack_version": r.attack_version,
            "detection_snapshot": r.detection_snapshot, "overall": r.overall,
            "tactics": r.tactics, "techniques": r.techniques}


def add_coverage_snapshot(scope: Scope, *, account: str, taken_at: datetime, method: str,
                          attack_domain: str, attack_version: str,
                          detection_snapshot_id: int | None, overall: dict, tactics: dict,
                          techniques: dict) -> int:
    """Store one coverage snapshot; its id is the tenant's next snapshot number."""
    return insert_numbered(scope, coverage_snapshot, "a coverage snapshot", account=account,
                           taken_at=taken_at, method=method, attack_domain=attack_domain,
                           attack_version=attack_version, detection_snapshot=detection_snapshot_id,
                           overall=overall, tactics=tactics, techniques=techniques)


def coverage_snapshots(scope: Scope, *, account: str | None = None, method: str | None = None,
                       detection_snapshot_ids: Iterable[int] | None = None,
                       with_techniques: bool = True,
                       attack_domain: str | None = None) -> list[dict[str, Any]]:
    """Coverage snapshots in id order (oldest first), of one account (`*`: tenant-level), of
    one ATT&CK domain when `attack_domain` is given."""
    c = coverage_snapshot
    cols = [c.c.id, c.c.account, c.c.taken_at, c.c.method, c.c.attack_domain, c.c.attack_version,
            c.c.detection_snapshot, c.c.overall, c.c.tactics,
            c.c.techniques if with_techniques else literal(None).label("techniques")]
    stmt = select(*cols).where(scope.where(c)).order_by(c.c.id)
    if account is not None:
        stmt = stmt.where(c.c.account == account)
    if method is not None:
        stmt = stmt.where(c.c.method == method)
    if attack_domain is not None:
        stmt = stmt.where(c.c.attack_domain == attack_domain)
    if detection_snapshot_ids is not None:
        stmt = stmt.where(c.c.detection_snapshot.in_(list(detection_snapshot_ids)))
    with scope.transaction() as conn:
        return [_snapshot_dict(r) for r in conn.execute(stmt)]


def detection_snapshots(scope: Scope, *, account: str | None = None,
                        ids: Iterable[int] | None = None,
                        with_detections: bool = False) -> list[dict[str, Any]]:
    """Detection inventory snapshots (written by imports) in id order; read only here."""
    s = detection_snapshot
    cols = [s.c.id, s.c.account, s.c.taken_at, s.c.source,
            s.c.detections if with_detections else literal(None).label("detections")]
    stmt = select(*cols).where(scope.where(s)).order_by(s.c.id)
    if account is not None:
        stmt = stmt.where(s.c.account == account)
    if ids is not None:
        stmt = stmt.where(s.c.id.in_(list(ids)))
    with scope.transaction() as conn:
        return [{"id": r.id, "account": r.account, "taken_at": r.taken_at, "source": r.source,
                 "detections": r.detections} for r in conn.execute(stmt)]


# -- the tenant's interface -----------------------------------------------------------------------


class CoverageStore:
    """Coverage reads and snapshots of one tenant: `TenantStore.coverage`. Callers outside the
    store use these methods and never a scope or a connection; each opens its own transaction
    bound to the tenant. The inventory reads and writes an import makes inside its write
    transaction are `WriteSession.coverage` (bastion.store.snapshots.SessionCoverage)."""

    def __init__(self, scope: Scope):
        self._scope = scope

    # the ATT&CK catalog (shared reference data), read in a transaction of this tenant

    def catalog(self, domain: str = "enterprise", *, version: str | None = None,
                others: bool = False):
        """A stored ATT&CK release as a Catalog (the domain's active one when `version` is
        None; NotFound when there is none). `others`: with the other domains' active releases
        in its `others`, so ids resolve in their own domain (detection imports)."""
        from bastion.store import catalog as store_catalog

        with self._scope.transaction() as conn:
            if others:
                return store_catalog.load_active(conn, domain)
            return store_catalog.load(conn, domain, version)

    # accounts, mappings, decisions

    def accounts(self, keys: Sequence[str] | None = None) -> list[Account]:
        """The tenant's cloud accounts (those of `keys` when given), in key order."""
        return accounts(self._scope, keys)

    def gap_decisions(self, accounts: Sequence[str] | None = None) -> list[GapDecision]:
        """Analysts' gap decisions (of these accounts), by account and technique."""
        return gap_decisions(self._scope, accounts)

    def aggregates(self, pairs: Sequence[tuple[str, str]], q: Qualify, *,
                   accounts: Sequence[str] | None = None) -> Iterator[Aggregate]:
        """See `aggregates`: one row per (account, active technique), streamed."""
        return aggregates(self._scope, pairs, q, accounts=accounts)

    def detections(self, pairs: Sequence[tuple[str, str]], q: Qualify | None, *,
                   accounts: Sequence[str] | None = None, techniques: Sequence[str] | None = None,
                   min_per_technique: int = 1) -> Iterator[DetectionRow]:
        """See `detections`: the detections behind techniques, streamed."""
        return detections(self._scope, pairs, q, accounts=accounts, techniques=techniques,
                          min_per_technique=min_per_technique)

    # snapshots

    def add_snapshot(self, *, account: str, taken_at: datetime, method: str, attack_domain: str,
                     attack_version: str, detection_snapshot_id: int | None, overall: dict,
                     tactics: dict, techniques: dict) -> int:
        """Store a coverage snapshot in a transaction of its own; returns its id."""
        return add_coverage_snapshot(
            self._scope, account=account, taken_at=taken_at, method=method,
            attack_domain=attack_domain, attack_version=attack_version,
            detection_snapshot_id=detection_snapshot_id, overall=overall, tactics=tactics,
            techniques=techniques)

    def snapshots(self, *, account: str | None = None, method: str | None = None,
                  detection_snapshot_ids: Iterable[int] | None = None,
                  with_techniques: bool = True,
                  attack_domain: str | None = None) -> list[dict[str, Any]]:
        """Coverage snapshots in id order (see `coverage_snapshots`)."""
        return coverage_snapshots(self._scope, account=account, method=method,
                                  detection_snapshot_ids=detection_snapshot_ids,
                                  with_techniques=with_techniques, attack_domain=attack_domain)

    def detection_snapshots(self, *, account: str | None = None, ids: Iterable[int] | None = None,
                            with_detections: bool = False) -> list[dict[str, Any]]:
        """Detection inventory snapshots in id order (see `detection_snapshots`)."""
        return detection_snapshots(self._scope, account=account, ids=ids,
                                   with_detections=with_detections)
