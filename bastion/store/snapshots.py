"""Detection inventory snapshots (`detection_snapshot`) and the detection reads the importer
needs inside its write transaction. Only the store speaks SQL; the functions take a
`WriteSession` (or, for reads outside a write, a `Scope`), and code outside bastion/store calls
them as methods: `WriteSession.coverage` (`SessionCoverage` below) inside an import's write,
`TenantStore.coverage` (bastion.store.coverage.CoverageStore) outside one.

A snapshot row records, for one account and one import source, the inventory after an import:
`{detection key: [content_hash, status, health, technique ids it counts through]}` (rows written
before the ids were kept have three items). Its id is the tenant's next snapshot number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import func, insert, select

from bastion.store.query import Scope
from bastion.store.store import Record, _record, _with_node
from bastion.store.tables import detection_snapshot, node, typed

_IN_CHUNK = 500


@dataclass(frozen=True)
class Snapshot:
    id: int
    account: str
    taken_at: datetime
    source: str
    detections: dict[str, list[Any]]  # key → [content_hash, status, health, counting technique ids]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _row(r) -> Snapshot:
    return Snapshot(r.id, r.account, r.taken_at, r.source, dict(r.detections or {}))


def record(session, *, account: str, source: str, detections: dict[str, list[Any]]) -> int:
    """Write a snapshot in the session's transaction (the tenant's event counter lock taken by
    the session's writes serializes writers, so max + 1 is safe); returns its id."""
    scope, conn = session.scope, session.conn
    next_id = conn.execute(select(func.coalesce(func.max(detection_snapshot.c.id), 0) + 1)
                           .where(scope.where(detection_snapshot))).scalar_one()
    conn.execute(insert(detection_snapshot).values(
        tenant_id=scope.tenant_id, id=next_id, account=account, taken_at=session.at,
        source=source, detections=detections))
    return next_id


def latest(session, *, account: str, source: str) -> Snapshot | None:
    """The newest snapshot of (account, source), read in the session's transaction."""
    scope, conn = session.scope, session.conn
    stmt = (select(detection_snapshot)
            .where(scope.where(detection_snapshot), detection_snapshot.c.account == account,
                   detection_snapshot.c.source == source)
            .order_by(detection_snapshot.c.id.desc()).limit(1))
    row = conn.execute(stmt).first()
    return _row(row) if row is not None else None


def snapshots(scope: Scope, *, account: str | None = None, limit: int = 50) -> list[Snapshot]:
    """Snapshots, newest first (of one account when given)."""
    stmt = select(detection_snapshot).where(scope.where(detection_snapshot))
    if account is not None:
        stmt = stmt.where(detection_snapshot.c.account == account)
    stmt = stmt.order_by(detection_snapshot.c.id.desc()).limit(limit)
    with scope.transaction() as conn:
        return [_row(r) for r in conn.execute(stmt)]


def mappings_of(session, detections: Sequence[str]) -> list[Record]:
    """Every stored mapping of these detections, in the session's transaction."""
    scope, conn = session.scope, session.conn
    mapping = typed["mapping"]
    out: list[Record] = []
    keys = sorted(set(detections))
    for i in range(0, len(keys), _IN_CHUNK):
        chunk = keys[i:i + _IN_CHUNK]
        stmt = (_with_node("mapping").where(scope.where(node), mapping.c.detection.in_(chunk))
                .order_by(node.c.key))
        out.extend(_record("mapping", r) for r in conn.execute(stmt))
    return out


class SessionCoverage:
    """The detection inventory reads and writes an import makes in its write transaction:
    `WriteSession.coverage` (the reads outside a write are `TenantStore.coverage`)."""

    def __init__(self, session):
        self._session = session

    def latest_snapshot(self, *, account: str, source: str) -> Snapshot | None:
        """The newest detection snapshot of (account, source), as this transaction sees it."""
        return latest(self._session, account=account, source=source)

    def record_snapshot(self, *, account: str, source: str, detections: dict[str, list[Any]]) -> int:
        """Write a detection snapshot taken at the session's instant; returns its id."""
        return record(self._session, account=account, source=source, detections=detections)

    def mappings_of(self, detections: Sequence[str]) -> list[Record]:
        """Every stored mapping of these detections, including this transaction's writes."""
        return mappings_of(self._session, detections)
