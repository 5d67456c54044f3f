"""Retention: delete what scanners found and no scan has seen for a while, never what a person
decided (bastion.ops.retention holds the policy; this module reads and deletes under it).

Who decided is read from the event log: an entity qualifies only when a scanner import created
it (`<kind>.created` with source `import:<tool>`, the Bastion graph format excepted) and every
event on it came from a scanner import, enrichment (`enrich:…`) or retention itself. One event by
anything else — `bastion add`, `update`, `risk set-status`, the server, a graph import — keeps it
for good. An entity that another kept entity depends on (a port with an accepted risk on it) is
kept too: deleting it would cascade to what was decided.

The selection and the deletes run in one write transaction holding the tenant's write lock, so a
scan committing meanwhile cannot see an entity that is then deleted; the deletes go through the
write path (`writer.apply(cascade=True)`, as `edits.delete`), one `<kind>.deleted` event each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from sqlalchemy import and_, or_, select

from bastion.schema.batch import Batch
from bastion.store import writer
from bastion.store.query import Scope, chunks
from bastion.store.tables import event, node, typed

SOURCE = "retention"  # the source of the events retention writes
AUTOMATIC_PREFIXES = ("import:", "enrich:", SOURCE)
NOT_A_SCANNER = ("import:graph",)  # Bastion's own graph format: written by people or tools


@dataclass(frozen=True)
class Candidate:
    key: str
    kind: str
    last_seen: datetime


@dataclass
class Selection:
    expired: list[Candidate] = field(default_factory=list)  # would go (or went)
    decided: list[str] = field(default_factory=list)  # not seen, but a person decided: kept
    not_scanned: list[str] = field(default_factory=list)  # not seen, but no scanner created it
    depended_on: list[str] = field(default_factory=list)  # kept: a kept entity depends on it
    cascaded: list[str] = field(default_factory=list)  # deleted with an expired one (run only)
    events: int = 0
    correlation_id: str = ""


def _automatic(source: str) -> bool:
    return source.startswith(AUTOMATIC_PREFIXES) and source not in NOT_A_SCANNER


def _scanner(source: str) -> bool:
    return source.startswith("import:") and source not in NOT_A_SCANNER


def _kind_range(kind: str):
    """Keys of one kind: the `#kind#` prefix as a range of the (tenant_id, key) index."""
    return and_(node.c.key >= f"#{kind}#", node.c.key < f"#{kind}$")


def select_expired(scope: Scope, conn, kinds: Iterable[str], cutoff: datetime) -> Selection:
    """What retention takes in this transaction: entities of `kinds` last seen before `cutoff`
    that scanners alone wrote and nothing kept depends on."""
    kinds = list(kinds)
    stale = conn.execute(
        select(node.c.id, node.c.key, node.c.kind, node.c.version, node.c.last_seen)
        .where(scope.where(node), or_(*(_kind_range(k) for k in kinds)), node.c.last_seen < cutoff)
        .order_by(node.c.key)).all()
    out = Selection()
    sources: dict[str, tuple[bool, bool]] = {}  # key → (created by a scanner, only automatic)
    for chunk in chunks([r.key for r in stale], 5000):
        rows = conn.execute(select(event.c.entity_key, event.c.event_type, event.c.source)
                            .where(scope.where(event), event.c.entity_key.in_(list(chunk))))
        for r in rows:
            created, automatic = sources.get(r.entity_key, (False, True))
            if r.event_type.endswith(".created") and _scanner(r.source):
                created = True
            sources[r.entity_key] = (created, automatic and _automatic(r.source))
    eligible = {}
    for r in stale:
        created, automatic = sources.get(r.key, (False, True))
        if not automatic:
            out.decided.append(r.key)
        elif not created:
            out.not_scanned.append(r.key)
        else:
            eligible[r.id] = r
    # Everything that depends on an eligible entity (transitively) must go too, or it stays; a
    # kept dependent keeps what it references, and so on up.
    deps = writer.dependents_of(scope, conn, list(eligible.values())) if eligible else []
    kept = [d for d in deps if d.id not in eligible]
    involved = {**{i: r.kind for i, r in eligible.items()}, **{d.id: d.kind for d in deps}}
    parents = _references(scope, conn, involved)
    going = {r.key for r in eligible.values()}
    todo = [d.key for d in kept]
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent in going:
                going.discard(parent)
                out.depended_on.append(parent)
                todo.append(parent)
    out.expired = [Candidate(r.key, r.kind, r.last_seen) for r in eligible.values() if r.key in going]
    return out


def _references(scope: Scope, conn, kinds_by_id: dict[int, str]) -> dict[str, set[str]]:
    """key → the keys its reference fields name (what it depends on), for the given nodes."""
    fields: dict[str, list[str]] = {}
    for kind, name, _rel in writer.dependent_fields():
        fields.setdefault(kind, []).append(name)
    out: dict[str, set[str]] = {}
    by_kind: dict[str, list[int]] = {}
    for i, kind in kinds_by_id.items():
        if kind in fields:
            by_kind.setdefault(kind, []).append(i)
    for kind, ids in by_kind.items():
        table = typed[kind]
        for chunk in chunks(sorted(ids)):
            stmt = (select(node.c.key, *(table.c[f] for f in fields[kind]))
                    .join(table, (table.c.tenant_id == node.c.tenant_id) & (table.c.node_id == node.c.id))
                    .where(scope.where(node), scope.id_in(node.c.id, chunk)))
            for r in conn.execute(stmt):
                out[r[0]] = {v for v in r[1:] if v}
    return out


def expire(tenant, kinds: Iterable[str], cutoff: datetime, *, now: datetime, actor: str,
           dry_run: bool, correlation_id: str | None = None) -> Selection:
    """Select (and unless `dry_run`, delete) in one write transaction under the tenant's lock;
    `tenant` is a TenantStore."""
    scope: Scope = tenant.scope
    with scope.transaction(write=True) as conn:
        scope.hold_writes(conn)
        found = select_expired(scope, conn, kinds, cutoff)
        if dry_run or not found.expired:
            return found
        batch = Batch(deletes=[c.key for c in found.expired])
        result = writer.apply(scope, batch, actor=actor, source=SOURCE, at=now, conn=conn,
                              cascade=True, observed=False, correlation_id=correlation_id)
        found.cascaded = list(result.cascaded)
        found.events = result.events
        found.correlation_id = result.correlation_id
        return found
