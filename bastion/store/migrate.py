"""Alembic, driven from the library and the CLI (`bastion db upgrade|downgrade|current`).

A downgrade never loses data silently. Every revision module declares what undoing it destroys,
`lost_on_downgrade(bind) -> [(what, count, unit, note)]`, measured on the database as it is; a
downgrade that would destroy anything raises `LossyDowngrade` (listing it, changing nothing)
unless forced. A forced downgrade removes entities through events (`<kind>.deleted`,
`edge.removed`, `<kind>.updated` for dropped fields, `setting.changed`) numbered with the
tenant's event counter, so history stays true, and invalidates the content hash of every node
that lost a field, so the next import of the same data writes the fields again.

The helpers below are used by the revisions: they are frozen on purpose (plain SQL on the tables
as revision 0001 created them, no import of the live write path, which follows the head schema).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from alembic import command, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Boolean, Connection, DateTime, Engine, JSON, inspect, text

from bastion.errors import ConfigError, LossyDowngrade, NotFound

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_ACTOR = "bastion db downgrade"
# Stored as a node's content hash when a downgrade removed some of its fields: no real hash
# (BLAKE2b-128) is all zeros, so the next write of the entity compares unequal and rewrites it.
INVALID_HASH = bytes(16)


@dataclass(frozen=True)
class Loss:
    """What undoing `revision` destroys: `count` rows or values of `what`."""

    revision: str
    what: str
    count: int
    unit: str  # "rows" or "values"
    note: str = ""

    def __str__(self) -> str:
        note = f" ({self.note})" if self.note else ""
        unit = self.unit[:-1] if self.count == 1 and self.unit.endswith("s") else self.unit
        return f"{self.what}: {self.count:,} {unit}{note}"


def _config(conn=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _alembic(fn, cfg: Config, revision: str) -> None:
    try:
        fn(cfg, revision)
    except Exception as exc:  # alembic reports unknown revisions with its own errors
        if type(exc).__name__ in ("CommandError", "ResolutionError"):
            raise NotFound(f"migration: {exc}") from None
        raise


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        _alembic(command.upgrade, _config(conn), revision)


def downgrade(engine: Engine, revision: str = "-1", *, force: bool = False,
              actor: str = DEFAULT_ACTOR) -> list[Loss]:
    """Downgrade to `revision` (an id, `-N` steps back, or `base`) in one transaction.

    Refuses with `LossyDowngrade` (nothing changed) when it would destroy data, unless `force`;
    returns what it destroyed. Forced removals are recorded as events by `actor`."""
    with engine.begin() as conn:
        target, steps = _steps(conn, revision)
        lost = _measure(conn, steps)
        if lost and not force:
            raise LossyDowngrade(
                f"downgrade to {target or 'base'} would destroy data {_summary(lost)}; nothing "
                f"was changed: run it again with --force to downgrade anyway", lost)
        cfg = _config(conn)
        cfg.attributes["actor"] = actor
        _alembic(command.downgrade, cfg, revision)
    return lost


def losses(engine: Engine, revision: str = "-1") -> list[Loss]:
    """What a downgrade to `revision` would destroy, without changing anything."""
    with engine.connect() as conn:
        return _measure(conn, _steps(conn, revision)[1])


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_head(engine: Engine, where: str) -> None:
    """Refuse, with what to run, a database that is not initialized or not at the revision this
    code expects (every command but init and db; a server's readiness)."""
    now = current(engine)
    if now is None:
        raise ConfigError(f"database {where} is not initialized: run `bastion init` first")
    if now != head():
        raise ConfigError(f"database {where} is at schema revision {now}, this Bastion needs "
                          f"{head()}: run `bastion db upgrade`")


def head() -> str:
    return _script().get_current_head()


def revisions() -> list[str]:
    """All revisions, oldest first."""
    return [r.revision for r in reversed(list(_script().walk_revisions()))]


def _steps(conn: Connection, revision: str) -> tuple[str | None, list[str]]:
    """The target of a downgrade and the revisions it undoes, newest first."""
    order = revisions()
    now = MigrationContext.configure(conn).get_current_revision()
    at = order.index(now) if now in order else -1
    if revision == "base":
        to = -1
    elif re.fullmatch(r"-\d+", revision):
        to = at + int(revision)
        if now is None or to < -1:
            raise NotFound(f"migration: cannot go {revision[1:]} revision(s) back from "
                           f"{now or 'an empty database'}")
    else:
        try:
            found = _script().get_revision(revision)
        except Exception as exc:
            raise NotFound(f"migration: {exc}") from None
        if found is None:
            raise NotFound(f"migration: no such revision {revision!r}")
        to = order.index(found.revision)
    return (order[to] if to >= 0 else None), list(reversed(order[to + 1:at + 1]))


def _measure(conn: Connection, steps: list[str]) -> list[Loss]:
    """Each undone revision's declared losses, measured now (before anything changes)."""
    script = _script()
    out: list[Loss] = []
    for rev in steps:
        declared = getattr(script.get_revision(rev).module, "lost_on_downgrade", None)
        if declared is None:
            out.append(Loss(rev, "everything this revision created", 1, "revision",
                            "it does not declare what its downgrade removes"))
            continue
        for what, count, unit, *note in declared(conn):
            if count:
                out.append(Loss(rev, what, count, unit, *note))
    return out


def _summary(lost: list[Loss]) -> str:
    tables = dict.fromkeys(loss.what.split(".")[0] for loss in lost)
    return f"in {', '.join(tables)}"


# -- helpers for the revisions: measuring ---------------------------------------------------------


def count(bind: Connection, sql: str) -> int:
    return int(bind.execute(text(sql)).scalar_one() or 0)


def rows_of(bind: Connection, tables: Iterable[str], note: str = "") -> list[tuple]:
    """(table, rows, "rows", note) for each table a downgrade drops."""
    return [(t, count(bind, f'SELECT count(*) FROM "{t}"'), "rows", note) for t in tables]


def values_of(bind: Connection, table: str, columns: Iterable[str], note: str = "") -> list[tuple]:
    """(table.column, non-null values, "values", note) for each column a downgrade drops."""
    columns = list(columns)
    counts = bind.execute(text(
        "SELECT " + ", ".join(f'count("{c}")' for c in columns) + f' FROM "{table}"')).one()
    return [(f"{table}.{c}", int(n), "values", note) for c, n in zip(columns, counts)]


# -- helpers for the revisions: removing through events --------------------------------------------


class _Events:
    """Events a forced downgrade appends, per tenant, numbered with the tenant's counter (from
    revision 0012 on: one committed transaction of the tenant's log)."""

    def __init__(self, bind: Connection, reason: str):
        cfg = op.get_context().config
        self.bind, self.reason = bind, reason
        self.actor = (cfg.attributes.get("actor") if cfg is not None else None) or DEFAULT_ACTOR
        self.at = datetime.now(timezone.utc)
        self.cid = f"downgrade-{uuid.uuid4().hex[:16]}"
        self.rows: dict[int, list[dict[str, Any]]] = {}

    def add(self, tenant_id: int, key: str, kind: str, version: int | None, event_type: str,
            diff: dict) -> None:
        self.rows.setdefault(tenant_id, []).append({
            "entity_key": key, "entity_kind": kind, "entity_version": version,
            "event_type": event_type, "diff": diff})

    def write(self) -> None:
        bind, sqlite = self.bind, self.bind.dialect.name == "sqlite"
        columns = {c["name"] for c in inspect(bind).get_columns("event")}
        has_note, numbered_at_commit = "note" in columns, "txn" in columns  # revision 0012 on
        at = _stored_time(bind, self.at)
        number = ["txn", "pos"] if numbered_at_commit else ["seq"]
        cols = ["tenant_id", *number, "occurred_at", "entity_key", "entity_kind", "entity_version",
                "event_type", "diff", "actor", "source", "correlation_id", *(["note"] if has_note else [])]
        marks = [f"CAST(:{c} AS JSONB)" if c == "diff" and not sqlite else f":{c}" for c in cols]
        sql = text(f"INSERT INTO event ({', '.join(cols)}) VALUES ({', '.join(marks)})")
        for tid, rows in sorted(self.rows.items()):
            # Lock the tenant's counter (as the write path does) and take the numbers after it.
            last = bind.execute(text("UPDATE tenant SET event_seq = event_seq + :n WHERE id = :t "
                                     "RETURNING event_seq"), {"n": len(rows), "t": tid}).scalar_one()
            base = last - len(rows)
            if numbered_at_commit:  # one committed transaction of the tenant's log
                txn = bind.execute(text(
                    "SELECT coalesce(max(txn), 0) + 1 FROM event_commit WHERE tenant_id = :t" if sqlite
                    else "SELECT nextval('event_txn')"), {"t": tid}).scalar_one()
                bind.execute(text("INSERT INTO event_commit (tenant_id, txn, base, last) "
                                  "VALUES (:t, :x, :b, :l)"), {"t": tid, "x": txn, "b": base, "l": last})
                numbers = [{"txn": txn, "pos": i} for i in range(1, len(rows) + 1)]
            else:
                numbers = [{"seq": base + i} for i in range(1, len(rows) + 1)]
            params = [{**r, "tenant_id": tid, **n, "occurred_at": at,
                       "diff": json.dumps(r["diff"], separators=(",", ":")), "actor": self.actor,
                       "source": "migration", "correlation_id": self.cid,
                       **({"note": self.reason} if has_note else {})}
                      for r, n in zip(rows, numbers)]
            bind.execute(sql, params)
        self.rows.clear()


def _stored_time(bind: Connection, at: datetime) -> Any:
    """A UTC instant as the tables store it (SQLite: SQLAlchemy's text format)."""
    if bind.dialect.name == "sqlite":
        return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return at


def _reader(bind: Connection, table: str):
    """Row values of `table` as the write path would put them in a diff (JSON decoded, booleans
    as booleans, datetimes as ISO 8601 UTC)."""
    sqlite = bind.dialect.name == "sqlite"
    kinds = {c["name"]: c["type"] for c in inspect(bind).get_columns(table)}

    def value(name: str, v: Any) -> Any:
        t = kinds.get(name)
        if v is None or t is None:
            return v
        if isinstance(t, DateTime):
            if isinstance(v, str):
                v = datetime.fromisoformat(v)
            v = v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)
            return v.isoformat()
        if isinstance(t, JSON) and sqlite and isinstance(v, str):
            return json.loads(v)
        if isinstance(t, Boolean):
            return bool(v)
        return v
    return value


def _json(bind: Connection, v: Any) -> Any:
    return json.loads(v) if bind.dialect.name == "sqlite" and isinstance(v, str) else v


def delete_nodes(bind: Connection, kinds: Iterable[str], reason: str) -> None:
    """Delete every node of `kinds` (their typed rows and edges by cascade) the way the write
    path deletes: an `edge.removed` event per edge touching them, then a `<kind>.deleted` event
    per node with the values it had; graph_stats counts follow (when the table exists)."""
    kinds = list(kinds)
    names = ", ".join(f"'{k}'" for k in kinds)
    ev = _Events(bind, reason)
    removed: dict[tuple[int, str], int] = {}
    for tid, source, rel, target, props, skind, tkind in bind.execute(text(
            "SELECT e.tenant_id, s.key, e.kind, t.key, e.properties, s.kind, t.kind FROM edge e "
            "JOIN node s ON s.tenant_id = e.tenant_id AND s.id = e.source_id "
            "JOIN node t ON t.tenant_id = e.tenant_id AND t.id = e.target_id "
            f"WHERE e.source_kind IN ({names}) OR e.target_kind IN ({names}) "
            "ORDER BY e.tenant_id, s.key, e.kind, t.key")):
        ev.add(tid, source, "edge", None, "edge.removed",
               {"relationship": rel, "target": target, "properties": [_json(bind, props), None]})
        removed[(tid, rel)] = removed.get((tid, rel), 0) + 1
    for kind in kinds:
        value = _reader(bind, kind)
        for row in bind.execute(text(
                f'SELECT n.key, n.version, n.properties, k.* FROM node n JOIN "{kind}" k '
                "ON k.tenant_id = n.tenant_id AND k.node_id = n.id ORDER BY n.tenant_id, n.key")):
            m = dict(row._mapping)
            key, version, props, tid = m.pop("key"), m.pop("version"), m.pop("properties"), m.pop("tenant_id")
            m.pop("node_id")
            diff = {k: [value(k, v), None] for k, v in m.items() if v is not None}
            if _json(bind, props):
                diff["properties"] = [_json(bind, props), None]
            ev.add(tid, key, kind, version + 1, f"{kind}.deleted", diff)
            removed[(tid, kind)] = removed.get((tid, kind), 0) + 1
    ev.write()
    if removed and inspect(bind).has_table("graph_stats"):
        bind.execute(text("UPDATE graph_stats SET count = count - :n WHERE tenant_id = :t AND name = :k"),
                     [{"n": n, "t": t, "k": k} for (t, k), n in sorted(removed.items())])
    bind.execute(text(f"DELETE FROM node WHERE kind IN ({names})"))


def drop_fields(bind: Connection, kind: str, fields: Iterable[str], reason: str) -> None:
    """Before a downgrade drops `fields` of `kind`: a `<kind>.updated` event (diff
    {field: [value, null]}, version + 1) for every node with a value in them, and its content
    hash invalidated so that writing the same data again restores the fields."""
    fields = list(fields)
    value = _reader(bind, kind)
    cols = ", ".join(f'k."{f}"' for f in fields)
    any_set = " OR ".join(f'k."{f}" IS NOT NULL' for f in fields)
    ev = _Events(bind, reason)
    changed = []
    for row in bind.execute(text(
            f"SELECT n.tenant_id, n.id, n.key, n.version, {cols} FROM node n JOIN \"{kind}\" k "
            f"ON k.tenant_id = n.tenant_id AND k.node_id = n.id WHERE {any_set} "
            "ORDER BY n.tenant_id, n.key")):
        tid, nid, key, version, *values = row
        diff = {f: [value(f, v), None] for f, v in zip(fields, values) if v is not None}
        ev.add(tid, key, kind, version + 1, f"{kind}.updated", diff)
        changed.append({"t": tid, "id": nid, "v": version + 1, "h": INVALID_HASH,
                        "at": _stored_time(bind, ev.at)})
    ev.write()
    if changed:
        bind.execute(text("UPDATE node SET version = :v, content_hash = :h, updated_at = :at "
                          "WHERE tenant_id = :t AND id = :id"), changed)


def remove_settings(bind: Connection, reason: str) -> None:
    """Before a downgrade drops the setting table: a `setting.changed` event to null for every
    stored setting, as removing it through the library records."""
    ev = _Events(bind, reason)
    for tid, name, value in bind.execute(text(
            "SELECT tenant_id, name, value FROM setting ORDER BY tenant_id, name")):
        ev.add(tid, f"setting:{name}", "setting", None, "setting.changed",
               {name: [_json(bind, value), None]})
    ev.write()
