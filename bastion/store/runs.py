"""Import runs and tenant settings: the store's operational records, beside the entity graph.

An import run is written in transactions of its own (started, then finished), so a failed import
is recorded as well as a good one. A setting change is an event like any other change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from bastion.errors import NotFound
from bastion.store import writer
from bastion.store.query import Scope
from bastion.store.tables import import_run, setting


@dataclass(frozen=True)
class ImportRun:
    id: int
    source: str
    actor: str
    status: str  # running | succeeded | partial | failed
    started_at: datetime
    finished_at: datetime | None
    correlation_id: str
    options: dict[str, Any]
    files: list[dict[str, Any]]
    counts: dict[str, int]
    errors: list[str]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def start_import(scope: Scope, *, source: str, actor: str, correlation_id: str,
                 options: dict[str, Any], started_at: datetime) -> int:
    """Record a run as `running`; its id is the tenant's next run number."""
    for _attempt in range(5):  # two imports starting at once may pick the same number
        try:
            with scope.transaction(write=True) as conn:
                next_id = conn.execute(select(func.coalesce(func.max(import_run.c.id), 0) + 1)
                                       .where(scope.where(import_run))).scalar_one()
                conn.execute(insert(import_run).values(
                    tenant_id=scope.tenant_id, id=next_id, source=source, actor=actor,
                    status="running", started_at=started_at, correlation_id=correlation_id,
                    options=options, files=[], counts={}, errors=[]))
            return next_id
        except IntegrityError:
            continue
    raise RuntimeError("could not allocate an import run id")


def finish_import(scope: Scope, run_id: int, *, status: str, files: list[dict[str, Any]],
                  counts: dict[str, int], errors: list[str]) -> None:
    with scope.transaction(write=True) as conn:
        conn.execute(update(import_run)
                     .where(scope.where(import_run), import_run.c.id == run_id)
                     .values(status=status, files=files, counts=counts, errors=errors,
                             finished_at=datetime.now(timezone.utc)))


def _run(row) -> ImportRun:
    return ImportRun(row.id, row.source, row.actor, row.status, row.started_at, row.finished_at,
                     row.correlation_id, row.options, row.files, row.counts, row.errors)


def import_runs(scope: Scope, limit: int = 50) -> list[ImportRun]:
    """The most recent runs first."""
    stmt = (select(import_run).where(scope.where(import_run))
            .order_by(import_run.c.id.desc()).limit(limit))
    with scope.transaction() as conn:
        return [_run(r) for r in conn.execute(stmt)]


def get_import(scope: Scope, run_id: int) -> ImportRun:
    stmt = select(import_run).where(scope.where(import_run), import_run.c.id == run_id)
    with scope.transaction() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"no import run {run_id} (see `bastion imports list`)")
    return _run(row)


# -- settings -------------------------------------------------------------------------------------


def settings(scope: Scope) -> dict[str, Any]:
    with scope.transaction() as conn:
        return {r.name: r.value for r in conn.execute(select(setting).where(scope.where(setting)))}


def set_setting(scope: Scope, name: str, value: Any, *, actor: str, source: str) -> bool:
    """Store a setting (None removes it), with a `setting.changed` event; False if unchanged."""
    now = datetime.now(timezone.utc)
    with scope.transaction(write=True) as conn:
        where = (scope.where(setting), setting.c.name == name)
        old = conn.execute(select(setting.c.value).where(*where)).scalar_one_or_none()
        if old == value:
            return False
        if value is None:
            conn.execute(setting.delete().where(*where))
        elif old is None:
            conn.execute(insert(setting).values(tenant_id=scope.tenant_id, name=name, value=value,
                                                updated_at=now))
        else:
            conn.execute(update(setting).where(*where).values(value=value, updated_at=now))
        writer.record_event(scope, conn, key=f"setting:{name}", kind="setting",
                            event_type="setting.changed", diff={name: [old, value]},
                            actor=actor, source=source, at=now)
    return True
