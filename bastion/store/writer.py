"""The one write path: apply a validated batch in one transaction, with its events."""

from __future__ import annotations

import gc
import uuid
from collections import Counter
from contextvars import ContextVar
from operator import itemgetter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

import orjson
from sqlalchemy import JSON, Connection, bindparam, func, select, update

from bastion.errors import ConflictError, Problem, ValidationFailed
from bastion.risks.priority import ASSET_INPUTS, priority
from bastion.schema.batch import (Batch, PreparedBatch, PreparedEdge, PreparedEntity, content_hash,
                                  validate)
from bastion.schema.keys import node_id
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import FieldType
from bastion.store.query import Scope, chunks, pending
from bastion.store.tables import UTCDateTime, edge, event, node, typed


@dataclass
class ApplyResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    edges_added: int = 0
    edges_updated: int = 0
    edges_unchanged: int = 0
    edges_removed: int = 0
    events: int = 0
    correlation_id: str = ""
    # key → "created" | "updated" | "unchanged", for callers that report per item
    outcome: dict[str, str] = field(default_factory=dict, repr=False)
    # keys deleted because an entity they depend on was (cascade), and risks re-ranked because
    # their asset's exposure changed
    cascaded: list[str] = field(default_factory=list, repr=False)
    reranked: list[str] = field(default_factory=list, repr=False)


class DependentsExist(ConflictError):
    """A delete would leave entities that depend on the deleted ones (their key or a required
    reference names it); nothing was written. `dependents`: their keys."""

    def __init__(self, deleted: list[str], dependents: list[str]):
        self.dependents = dependents
        shown = ", ".join(dependents[:5]) + (f" … ({len(dependents)} in all)" if len(dependents) > 5 else "")
        what = deleted[0] if len(deleted) == 1 else f"{len(deleted)} entities"
        n = len(dependents)
        super().__init__(f"cannot delete {what}: {n} {'entity depends' if n == 1 else 'entities depend'}"
                         f" on it ({shown}); delete with cascade (--cascade, cascade=true) to delete "
                         f"{'it' if n == 1 else 'them'} too")


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC).decode()


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class _Events:
    """Events of one batch, numbered when the batch commits."""

    def __init__(self, at: datetime, actor: str, source: str, correlation_id: str):
        self.rows: list[dict[str, Any]] = []
        self.at, self.actor, self.source, self.cid = at, actor, source, correlation_id

    def add(self, key: str, kind: str, version: int | None, event_type: str, diff: dict,
            note: str | None = None) -> None:
        self.rows.append({
            "occurred_at": self.at, "entity_key": key, "entity_kind": kind,
            "entity_version": version, "event_type": event_type, "diff": diff,
            "actor": self.actor, "source": self.source, "correlation_id": self.cid, "note": note,
        })


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list]:
    return {k: [_jsonable(old.get(k)), _jsonable(new.get(k))]
            for k in new.keys() | old.keys() if old.get(k) != new.get(k)}


def _edge_diff(e: PreparedEdge, old_props: Any, new_props: Any) -> dict[str, Any]:
    return {"relationship": e.kind, "target": e.target, "properties": [old_props, new_props]}

# A server request's id, set for the request: the correlation id of every change it makes
# without one of its own (so a request's events are found by its X-Request-Id).
request_correlation: ContextVar[str | None] = ContextVar("bastion_correlation_id", default=None)


def new_correlation_id() -> str:
    return request_correlation.get() or uuid.uuid4().hex


def apply(scope: Scope, batch: Batch | PreparedBatch, *, actor: str, source: str,
          correlation_id: str | None = None, at: datetime | None = None,
          conn: Connection | None = None, observed: bool = True, cascade: bool = False) -> ApplyResult:
    """Validate and write a batch with its events. In a transaction of its own, or in `conn`'s
    (a `TenantStore.writing()` session: several batches, one commit).

    `observed=False` for a change that is not a sighting (an analyst's decision, enrichment,
    closing what a scan missed): `last_seen` of the batch's nodes and edges stays as it was.

    Deleting an entity that others depend on (see `dependent_fields`) raises DependentsExist
    unless they are deleted in the same batch or `cascade` is true, which deletes them too
    (each with its `<kind>.deleted` event). A change of an asset's exposure re-ranks the risks
    on it and its ports in the same transaction (`risk.updated` events)."""
    with paused_gc():
        pb = batch if isinstance(batch, PreparedBatch) else validate(batch)
        at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        cid = correlation_id or new_correlation_id()
        if conn is not None:
            return _Apply(scope, conn, pb, at, _Events(at, actor, source, cid), observed, cascade).run()
        with scope.transaction(write=True) as conn:
            return _Apply(scope, conn, pb, at, _Events(at, actor, source, cid), observed, cascade).run()


@contextmanager
def paused_gc() -> Iterator[None]:
    """A batch allocates hundreds of thousands of short-lived containers and nothing cyclic:
    the cyclic collector's full passes over them cost ~30% of a large apply, so it waits."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def append_events(scope: Scope, conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Append `rows` (from _Events) to the transaction's events: numbered in the feed when the
    transaction commits (Scope.transaction), after every transaction that committed before."""
    if not rows:
        return
    txn, p = scope.event_txn(conn), pending(conn)
    for i, row in enumerate(rows, start=p.events + 1):
        row["tenant_id"], row["txn"], row["pos"] = scope.tenant_id, txn, i
    _Apply._insert_rows(scope, conn, event, rows)
    p.events += len(rows)


def record_event(scope: Scope, conn: Connection, *, key: str, kind: str, event_type: str,
                 diff: dict, actor: str, source: str, note: str | None = None,
                 at: datetime | None = None, correlation_id: str | None = None) -> None:
    """One event for a change made outside the entity write path (a tenant setting …)."""
    ev = _Events((at or datetime.now(timezone.utc)).astimezone(timezone.utc), actor, source,
                 correlation_id or new_correlation_id())
    ev.add(key, kind, None, event_type, diff, note)
    append_events(scope, conn, ev.rows)


class _Apply:
    def __init__(self, scope: Scope, conn: Connection, pb: PreparedBatch, at: datetime, ev: _Events,
                 observed: bool = True, cascade: bool = False):
        self.scope, self.conn, self.pb, self.at, self.ev = scope, conn, pb, at, ev
        self.observed, self.cascade = observed, cascade
        self.exposure_changed: dict[str, Any] = {}  # asset key → its new values
        self.result = ApplyResult(correlation_id=ev.cid)
        self.counts: Counter[str] = Counter()  # node/edge count changes per kind, for graph_stats

    def run(self) -> ApplyResult:
        rows_only = self._only_updates()
        if not rows_only:
            self.scope.hold_writes(self.conn)
        existing = self._existing_nodes()
        if rows_only and self.pb.edges and len(self._edges_there(lock=True)) != len(self.pb.edges):
            raise ConflictError("a link of the change was removed meanwhile: read it again")
        self._upsert_entities(existing)
        self._upsert_edges(existing)
        self._unlink()
        self._delete(existing)
        self._rerank()
        pending(self.conn).counts.update(self.counts)
        append_events(self.scope, self.conn, self.ev.rows)
        self.result.events = len(self.ev.rows)
        return self.result

    # -- reading what is there ----------------------------------------------------------------

    def _only_updates(self) -> bool:
        """Whether the batch changes entities that exist already and nothing else (an analyst's
        decision): then it locks just their rows, not the tenant (Scope.hold_writes), and does
        not wait for an import that does not touch them. Anything else — creating, deleting,
        linking, a change of an asset that may re-rank risks — takes the tenant's write lock."""
        pb = self.pb
        if (not self.scope.postgres or pending(self.conn).holds_writes or not pb.entities
                or pb.deletes or pb.unlinks or len(pb.entities) + len(pb.edges) > 1000
                or any(e.kind.name == "asset" for e in pb.entities.values())):
            return False
        ids = [e.id for e in pb.entities.values()]
        if self.conn.execute(self.scope.nodes_by_id(ids, func.count())).scalar_one() != len(ids):
            return False
        return not pb.edges or len(self._edges_there(lock=False)) == len(pb.edges)

    def _edges_there(self, *, lock: bool) -> list:
        """The batch's links that exist (the ones its references imply, for a risk its
        HAS_VULNERABILITY); `lock`: kept (FOR SHARE, a delete waits) until the commit. Locked
        after the batch's nodes, in the order an import locks them too: no deadlock."""
        stmt = self.scope.edges_by_ident(list(self.pb.edges), edge.c.source_id)
        if lock:
            stmt = stmt.with_for_update(read=True, of=edge)
        return self.scope.bounded(self.conn, lambda: self.conn.execute(stmt).all())

    def _locked(self, ids, *cols) -> list:
        """The nodes `ids` (their `cols`), locked until the transaction ends — what a write
        depends on, read after no one else can change it (an analyst's change takes no tenant
        lock). In id order: two writers lock in the same order."""
        out: list = []
        for chunk in chunks(sorted(ids)):
            stmt = self.scope.nodes_by_id(chunk, *cols).order_by(node.c.id).with_for_update()
            out.extend(self.scope.bounded(self.conn, lambda stmt=stmt: self.conn.execute(stmt).all()))
        return out

    def _existing_nodes(self) -> dict[int, Any]:
        """The stored state of every node the batch names, the batch's own entities locked until
        the transaction ends (PostgreSQL: so that nobody changes them between this read and the
        write). Entities of the batch were observed again, so their last_seen moves in the same
        statement that reads them (one pass)."""
        seen = {e.id for e in self.pb.entities.values()}
        other = {i for e in self.pb.edges.values() for i in (e.source_id, e.target_id)}
        other.update(node_id(k) for k in self.pb.deletes)
        other -= seen
        found: dict[int, Any] = {}
        cols = (node.c.id, node.c.key, node.c.kind, node.c.version, node.c.content_hash)
        if not self.observed:
            found.update((row.id, row) for row in self._locked(seen, *cols))
        for chunk in chunks(sorted(seen) if self.observed else []):
            stmt = (update(node).where(self.scope.where(node), self.scope.id_in(node.c.id, chunk))
                    .values(last_seen=self.at).returning(*cols))
            found.update((row.id, row) for row in self.scope.bounded(
                self.conn, lambda stmt=stmt: self.conn.execute(stmt).all()))
        for chunk in chunks(sorted(other)):
            found.update((row.id, row) for row in
                         self.conn.execute(self.scope.nodes_by_id(chunk, *cols)))
        for e in self.pb.entities.values():
            row = found.get(e.id)
            if row is not None and row.key != e.key:  # 63-bit id collision: refuse, never merge
                raise ValidationFailed([Problem(e.key, None, f"id collides with {row.key}")])
        return found

    def _stored_state(self, kind: str, ids: list[int]) -> dict[int, tuple[dict[str, Any], Any]]:
        """(typed values, properties) of stored entities, read only for those that change."""
        table = typed[kind]
        names = REGISTRY.entity(kind).field_names
        out: dict[int, tuple[dict[str, Any], Any]] = {}
        for chunk in chunks(ids):
            stmt = (select(table, node.c.properties)
                    .join(node, (node.c.tenant_id == table.c.tenant_id) & (node.c.id == table.c.node_id))
                    .where(self.scope.where(table), self.scope.id_in(table.c.node_id, chunk)))
            for row in self.conn.execute(stmt):
                out[row.node_id] = ({n: getattr(row, n) for n in names}, row.properties)
        return out

    # -- entities -------------------------------------------------------------------------------

    def _upsert_entities(self, existing: dict[int, Any]) -> None:
        new: list[PreparedEntity] = []
        changed: list[tuple[PreparedEntity, Any]] = []
        touched: list[int] = []
        conflicts: list[Problem] = []
        outcome = self.result.outcome
        for e in self.pb.entities.values():
            row = existing.get(e.id)
            current = row.version if row is not None else 0
            if e.expected_version is not None and e.expected_version != current:
                conflicts.append(Problem(e.key, "version",
                                         f"expected version {e.expected_version}, current is {current}"))
            elif row is None:
                new.append(e)
                outcome[e.key] = "created"
            elif row.content_hash != e.content_hash:
                changed.append((e, row))
                outcome[e.key] = "updated"
            else:
                touched.append(e.id)
                outcome[e.key] = "unchanged"
        if conflicts:
            raise ConflictError("; ".join(str(p) for p in conflicts))
        self._insert_entities(new)
        self._update_entities(changed)
        self.result.created += len(new)
        self.result.updated += len(changed)
        self.result.unchanged += len(touched)

    def _insert_entities(self, new: list[PreparedEntity]) -> None:
        if not new:
            return
        tid, at = self.scope.tenant_id, self.at
        node_rows, per_kind = [], {}
        for e in new:
            node_rows.append({
                "tenant_id": tid, "id": e.id, "key": e.key, "kind": e.kind.name, "version": 1,
                "content_hash": e.content_hash,
                "properties": e.properties, "last_seen": at, "updated_at": at,
                "first_seen": min(e.first_seen, at) if e.first_seen else at,  # a scan's own time
            })
            per_kind.setdefault(e.kind.name, []).append({"tenant_id": tid, "node_id": e.id, **e.values})
            diff = {k: [None, _jsonable(v)] for k, v in e.values.items() if v is not None}
            if e.properties:
                diff["properties"] = [None, e.properties]
            self.ev.add(e.key, e.kind.name, 1, f"{e.kind.name}.created", diff, e.note)
        self._insert(node, node_rows)
        for kind, rows in per_kind.items():
            self._insert(typed[kind], rows)
            self.counts[kind] += len(rows)

    def _update_entities(self, changed: list[tuple[PreparedEntity, Any]],
                         observed: bool | None = None) -> None:
        if not changed:
            return
        observed = self.observed if observed is None else observed
        by_kind: dict[str, list[tuple[PreparedEntity, Any]]] = {}
        for e, row in changed:
            by_kind.setdefault(e.kind.name, []).append((e, row))
        node_params = []
        for kind, items in by_kind.items():
            olds = self._stored_state(kind, [e.id for e, _ in items])
            typed_params = []
            for e, row in items:
                old_values, old_props = olds[e.id]
                diff = _diff(old_values, e.values)
                if old_props != e.properties:
                    diff["properties"] = [old_props, e.properties]
                version = row.version + 1
                etype = "status_changed" if "status" in diff else "updated"
                if kind == "asset" and any(f in diff for f in ASSET_INPUTS):
                    self.exposure_changed[e.key] = e.values
                self.ev.add(e.key, kind, version, f"{kind}.{etype}", diff, e.note)
                node_params.append({
                    "b_id": e.id, "version": version, "content_hash": e.content_hash,
                    "properties": e.properties, "updated_at": self.at,
                })
                typed_params.append({"b_id": e.id, **e.values})
            table = typed[kind]
            stmt = (update(table).where(self.scope.where(table), table.c.node_id == bindparam("b_id"))
                    .values({n: bindparam(n) for n in REGISTRY.entity(kind).field_names}))
            self.conn.execute(stmt, typed_params)
        moved = ("version", "content_hash", "properties", "updated_at")
        stmt = (update(node).where(self.scope.where(node), node.c.id == bindparam("b_id"))
                .values({c: bindparam(c) for c in moved}))
        if observed:
            stmt = stmt.values(last_seen=self.at)
        self.conn.execute(stmt, node_params)

    # -- edges ------------------------------------------------------------------------------------

    def _upsert_edges(self, existing_nodes: dict[int, Any]) -> None:
        edges = self.pb.edges
        if not edges:
            return
        batch_ids = {e.id for e in self.pb.entities.values()}
        missing = [
            (e, Problem(f"relationship {e.kind} {e.source} -> {e.target}", None,
                        f"{end} {key} does not exist"))
            for e in edges.values()
            for end, key, nid in (("source", e.source, e.source_id), ("target", e.target, e.target_id))
            if nid not in batch_ids and nid not in existing_nodes
        ]
        if missing:
            kept = self._dangling(existing_nodes, [e for e, _ in missing])
            problems = [p for e, p in missing if e.ident not in kept]
            if problems:
                raise ValidationFailed(problems)
            edges = {i: e for i, e in edges.items() if i not in kept}
        # An edge with an end created by this batch cannot exist yet: look up only the others,
        # moving their last_seen in the same pass.
        maybe = [i for i in edges if i[0] in existing_nodes and i[2] in existing_nodes]
        found = self._existing_edges(maybe, touch=self.observed)
        new, changed, touched = [], [], []
        for ident, e in edges.items():
            if ident not in found:
                new.append(e)
            elif found[ident] != e.properties:
                changed.append((e, found[ident]))
            else:
                touched.append(ident)
        tid, at = self.scope.tenant_id, self.at
        self._insert(edge, [{
            "tenant_id": tid, "source_id": e.source_id, "kind": e.kind, "target_id": e.target_id,
            "source_kind": e.source_kind, "target_kind": e.target_kind,
            "properties": e.properties, "first_seen": at, "last_seen": at,
        } for e in new])
        for e in new:
            self.ev.add(e.source, "edge", None, "edge.added", _edge_diff(e, None, e.properties))
            self.counts[e.kind] += 1
        if changed:
            stmt = (update(edge).where(self.scope.where(edge), edge.c.source_id == bindparam("b_s"),
                                       edge.c.kind == bindparam("b_k"),
                                       edge.c.target_id == bindparam("b_t"))
                    .values(properties=bindparam("properties")))
            if self.observed:
                stmt = stmt.values(last_seen=at)
            self.conn.execute(stmt, [{"b_s": e.source_id, "b_k": e.kind, "b_t": e.target_id,
                                      "properties": e.properties} for e, _ in changed])
            for e, old in changed:
                self.ev.add(e.source, "edge", None, "edge.updated", _edge_diff(e, old, e.properties))
        self.result.edges_added += len(new)
        self.result.edges_updated += len(changed)
        self.result.edges_unchanged += len(touched)

    def _dangling(self, existing_nodes: dict[int, Any], edges: list[PreparedEdge]) -> set[tuple]:
        """Of the edges with a missing end, those implied by a stored entity whose reference did
        not change: it was written before its referenced entity was deleted (without cascade, as
        older versions did). Writing it again (enrichment, a status change) must not fail on
        that: the edge is left out and the reference stays as stored."""
        candidates: dict[tuple, PreparedEntity] = {}
        for e in edges:
            child = self.pb.entities.get(e.target)
            implies = child.kind.implies if child is not None else None
            if (implies is None or implies.relationship != e.kind or child.id not in existing_nodes
                    or child.values.get(implies.field) != e.source):
                continue
            candidates[e.ident] = child
        kept: set[tuple] = set()
        by_kind: dict[str, list[tuple[tuple, PreparedEntity]]] = {}
        for ident, child in candidates.items():
            by_kind.setdefault(child.kind.name, []).append((ident, child))
        for kind, items in by_kind.items():
            stored = self._stored_state(kind, [c.id for _, c in items])
            field_name = REGISTRY.entity(kind).implies.field
            kept.update(ident for ident, c in items
                        if c.id in stored and stored[c.id][0].get(field_name) == c.values[field_name])
        return kept

    def _existing_edges(self, idents: list[tuple[int, str, int]], touch: bool = False) -> dict[tuple, Any]:
        found = {}
        cols = (edge.c.source_id, edge.c.kind, edge.c.target_id, edge.c.properties)
        for chunk in chunks(sorted(idents)):
            if touch:
                _extra, cond = self.scope.edge_match(chunk)
                stmt = (update(edge).where(self.scope.where(edge), cond)
                        .values(last_seen=self.at).returning(*cols))
            else:
                stmt = self.scope.edges_by_ident(chunk, *cols)
            for row in self.conn.execute(stmt):
                found[(row.source_id, row.kind, row.target_id)] = row.properties
        return found

    def _unlink(self) -> None:
        if not self.pb.unlinks:
            return
        found = self._existing_edges(list(self.pb.unlinks))
        gone = [e for ident, e in self.pb.unlinks.items() if ident in found]
        implied = self._implied(gone)
        if implied:
            raise ValidationFailed([Problem(
                f"unlink {e.kind} {e.source} -> {e.target}", None,
                f"the link is implied by the {e.target_kind}'s {field_name}: delete the "
                f"{e.target_kind} instead") for e, field_name in implied])
        self._remove_edges([(e.source, e.kind, e.target, e.ident, found[e.ident]) for e in gone])

    def _implied(self, edges: list[PreparedEdge]) -> list[tuple[PreparedEdge, str]]:
        """The edges that a stored entity's reference implies (its HAS_PORT, HAS_VULNERABILITY …),
        unless this batch deletes that entity: removing one alone would break the reference."""
        deleting = {node_id(k) for k in self.pb.deletes}
        out = []
        for e in edges:
            implies = REGISTRY.entity(e.target_kind).implies
            if implies is None or implies.relationship != e.kind or e.target_id in deleting:
                continue
            stored = self._stored_state(e.target_kind, [e.target_id]).get(e.target_id)
            if stored is not None and stored[0].get(implies.field) == e.source:
                out.append((e, implies.field))
        return out

    def _remove_edges(self, edges: list[tuple[str, str, str, tuple, Any]]) -> None:
        for chunk in chunks([ident for *_, ident, _p in edges]):
            _extra, cond = self.scope.edge_match(chunk)
            self.conn.execute(edge.delete().where(self.scope.where(edge), cond))
        for source, kind, target, _ident, props in edges:
            self.ev.add(source, "edge", None, "edge.removed",
                        {"relationship": kind, "target": target, "properties": [props, None]})
            self.counts[kind] -= 1
        self.result.edges_removed += len(edges)

    # -- deletes ----------------------------------------------------------------------------------

    def _delete(self, existing: dict[int, Any]) -> None:
        rows = [existing[node_id(k)] for k in self.pb.deletes if node_id(k) in existing]
        if not rows:
            return
        dependents = [r for r in dependents_of(self.scope, self.conn, rows)
                      if r.id not in {x.id for x in rows}]
        if dependents and not self.cascade:
            raise DependentsExist([r.key for r in rows], [r.key for r in dependents])
        cause = {r.id: r.key for r in rows}
        rows = rows + dependents
        self.result.cascaded.extend(r.key for r in dependents)
        ids = [r.id for r in rows]
        self._locked(ids, node.c.id)  # their values below are what they were when deleted
        keys = {}
        touching = []
        for chunk in chunks(ids):
            stmt = self.scope.edges_touching(chunk, edge.c.source_id, edge.c.kind, edge.c.target_id,
                                             edge.c.properties)
            touching.extend(self.conn.execute(stmt))
        end_ids = sorted({r.source_id for r in touching} | {r.target_id for r in touching})
        for chunk in chunks(end_ids):
            for r in self.conn.execute(self.scope.nodes_by_id(chunk, node.c.id, node.c.key)):
                keys[r.id] = r.key
        self._remove_edges([(keys[r.source_id], r.kind, keys[r.target_id],
                             (r.source_id, r.kind, r.target_id), r.properties) for r in touching])
        by_kind: dict[str, list] = {}
        for r in rows:
            by_kind.setdefault(r.kind, []).append(r)
        for kind, krows in by_kind.items():
            olds = self._stored_state(kind, [r.id for r in krows])
            for r in krows:
                old_values, old_props = olds[r.id]
                diff = {k: [_jsonable(v), None] for k, v in old_values.items() if v is not None}
                if old_props:
                    diff["properties"] = [old_props, None]
                note = None if r.id in cause else f"deleted with {r.cause}"
                self.ev.add(r.key, kind, r.version + 1, f"{kind}.deleted", diff, note)
            self.counts[kind] -= len(krows)
        for chunk in chunks(ids):
            self.conn.execute(node.delete().where(self.scope.where(node), self.scope.id_in(node.c.id, chunk)))
        self.result.deleted += len(rows)

    # -- priorities -------------------------------------------------------------------------------

    def _rerank(self) -> None:
        """Recompute the priority of the risks on assets whose exposure changed (and on their
        ports): `risk.updated` events noting why; not a sighting of the risks."""
        if not self.exposure_changed:
            return
        assets = {node_id(k): v for k, v in self.exposure_changed.items()}
        ports = _out_edges(self.scope, self.conn, list(assets), "HAS_PORT")
        on = {a: a for a in assets} | {p: a for a, p in ports}
        hits = _out_edges(self.scope, self.conn, list(on), "HAS_VULNERABILITY")
        risk_ids = sorted({r for _, r in hits})
        if not risk_ids:
            return
        rows = {r.id: r for r in self._locked(risk_ids, node.c.id, node.c.key, node.c.kind,
                                              node.c.version, node.c.content_hash)}
        stored = self._stored_state("risk", risk_ids)
        keys = {i: k for k, i in ((k, node_id(k)) for k in self.exposure_changed)}
        changed = []
        for rid, (values, props) in stored.items():
            target = values.get("target")
            asset_id = on.get(node_id(target)) if target else None
            if asset_id is None:  # a HAS_VULNERABILITY link the risk's target does not imply
                continue
            new = {**values, "priority": priority(values, assets[asset_id].get("exposure"))}
            if new["priority"] == values.get("priority"):
                continue
            row = rows[rid]
            changed.append((PreparedEntity(REGISTRY.entity("risk"), row.key, rid, new, props,
                                           content_hash(new, props), None,
                                           f"re-ranked: exposure of {keys[asset_id]} changed"), row))
            self.result.reranked.append(row.key)
        self._update_entities(changed, observed=False)

    # -- bulk insert ------------------------------------------------------------------------------

    def _insert(self, table, rows: list[dict[str, Any]]) -> None:
        self._insert_rows(self.scope, self.conn, table, rows)

    @staticmethod
    def _insert_rows(scope: Scope, conn: Connection, table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        # In primary-key order: B-tree inserts then append instead of splitting random pages.
        pk = [c.name for c in table.primary_key.columns]
        rows.sort(key=itemgetter(*pk))
        if scope.postgres:
            _insert_unnest(conn, table, rows)
        else:
            _insert_executemany(conn, table, rows)


def dependent_fields() -> list[tuple[str, str, str | None]]:
    """(kind, field, implied relationship) of every key-reference field: an entity depends on
    the one its reference names (a port on its asset, a risk on its target, a mapping on its
    detection …). Derived from the registry's KEY fields, never listed by hand."""
    out = []
    for kind in REGISTRY.node_kinds.values():
        for f in kind.fields:
            if f.type is FieldType.KEY:
                rel = kind.implies.relationship if kind.implies and kind.implies.field == f.name else None
                out.append((kind.name, f.name, rel))
    return out


@dataclass(frozen=True)
class _Dependent:
    id: int
    key: str
    kind: str
    version: int
    cause: str  # the key of the entity it depends on


def dependents_of(scope: Scope, conn: Connection, rows: list[Any]) -> list[_Dependent]:
    """Every stored entity that depends, directly or through others, on the nodes `rows` (with
    id, key, kind), nearest first. A reference implied by an edge is found through the edge index,
    then checked against the typed field; one without an edge (a job's target) by its column."""
    fields = dependent_fields()
    found: dict[int, _Dependent] = {}
    frontier = {r.id: (r.key, r.kind) for r in rows}
    seen = set(frontier)
    while frontier:
        candidates: dict[str, dict[int, str]] = {}  # kind → node id → the key it may depend on
        kinds = {k for _, k in frontier.values()}
        for kind, fname, rel in fields:
            ref_kinds = REGISTRY.entity(kind).field(fname).ref_kinds
            if not kinds & set(ref_kinds):
                continue
            parents = {i: key for i, (key, k) in frontier.items() if k in ref_kinds}
            table = typed[kind]
            if rel is not None:
                for src, dst in _out_edges(scope, conn, list(parents), rel, kind):
                    candidates.setdefault(kind, {})[dst] = parents[src]
            else:
                wanted = sorted(parents.values())
                for chunk in chunks(wanted):
                    for r in conn.execute(select(table.c.node_id, table.c[fname]).where(
                            scope.where(table), table.c[fname].in_(list(chunk)))):
                        candidates.setdefault(kind, {})[r.node_id] = r[1]
        nxt: dict[int, tuple[str, str]] = {}
        for kind, cands in candidates.items():
            table = typed[kind]
            ref_fields = [f for k, f, _ in fields if k == kind]
            ids = sorted(i for i in cands if i not in seen)
            for chunk in chunks(ids):
                stmt = (select(node.c.id, node.c.key, node.c.version, *(table.c[f] for f in ref_fields))
                        .join(table, (table.c.tenant_id == node.c.tenant_id) & (table.c.node_id == node.c.id))
                        .where(scope.where(node), scope.id_in(node.c.id, chunk)))
                for r in conn.execute(stmt):
                    refs = set(r[3:])
                    if cands[r.id] in refs:  # the reference names it (not just a manual link)
                        found[r.id] = _Dependent(r.id, r.key, kind, r.version, cands[r.id])
                        nxt[r.id] = (r.key, kind)
                        seen.add(r.id)
        frontier = nxt
    return list(found.values())


def _out_edges(scope: Scope, conn: Connection, sources: list[int], rel: str,
               target_kind: str | None = None) -> list[tuple[int, int]]:
    """(source id, target id) of the `rel` edges leaving `sources` (the edge primary key)."""
    out = []
    for chunk in chunks(sorted(sources)):
        stmt = select(edge.c.source_id, edge.c.target_id).where(
            scope.where(edge), scope.id_in(edge.c.source_id, chunk), edge.c.kind == rel)
        if target_kind is not None:
            stmt = stmt.where(edge.c.target_kind == target_kind)
        out.extend((r.source_id, r.target_id) for r in conn.execute(stmt))
    return out


def _sqlite_value(column) -> Any:
    """How a column's Python value is handed to sqlite3, as SQLAlchemy's own types would."""
    if isinstance(column.type, UTCDateTime):
        memo: dict[datetime, str] = {}  # a batch mostly carries one instant: format it once

        def to_text(v: datetime | None) -> str | None:
            if v is None:
                return None
            text = memo.get(v)
            if text is None:
                # SQLAlchemy's SQLite DateTime storage format, in UTC, so reads round-trip.
                text = memo[v] = v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
            return text
        return to_text
    if isinstance(column.type, JSON) or "JSON" in type(column.type).__name__:
        return lambda v: None if v is None else _dumps(v)
    return None


def _insert_executemany(conn: Connection, table, rows: list[dict[str, Any]]) -> None:
    """SQLite: one prepared INSERT, every row through sqlite3's executemany.

    Values are converted here once per column instead of through SQLAlchemy's per-row
    parameter processing, which cost more than the insert itself."""
    cols = list(rows[0])
    converters = [_sqlite_value(table.c[c]) for c in cols]
    marks = ", ".join("?" for _ in cols)
    names = ", ".join(f'"{c}"' for c in cols)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'
    getter = itemgetter(*cols)
    params = [list(getter(row)) for row in rows]
    for i, convert in enumerate(converters):
        if convert is not None:
            for p in params:
                p[i] = convert(p[i])
    conn.exec_driver_sql(sql, list(map(tuple, params)))


def _insert_unnest(conn: Connection, table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: one INSERT … SELECT FROM unnest(column arrays) per table and chunk.

    COPY would be faster still but PostgreSQL refuses COPY FROM into a table under row-level
    security; unnest keeps the write set-based and lets the policy's WITH CHECK see every row.
    """
    dialect = conn.dialect
    cols = list(rows[0])
    types = [table.c[c].type.compile(dialect=dialect) for c in cols]
    casts = ", ".join(f"%b::{t}[]" for t in types)  # %b: binary arrays, no text escaping
    names = ", ".join(f'"{c}"' for c in cols)
    sql = f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({casts})'
    cur = conn.connection.driver_connection.cursor()
    for chunk in chunks(rows, 20000):
        arrays = []
        for c, t in zip(cols, types):
            values = [row[c] for row in chunk]
            if t == "JSONB":  # sent as text, parsed by the server
                values = [None if v is None else _dumps(v) for v in values]
            arrays.append(values)
        cur.execute(sql, arrays)
