"""Import runs, imported files and tenant settings: the store's operational records, beside the
entity graph. Callers outside bastion/store reach them through the tenant: `TenantStore.runs`
(`ImportRuns`: start, finish, list, get a run; whether a file may be reused),
`WriteSession.runs` (`SessionRuns`: a file's members and its reuse, in the session's
transaction) and `TenantStore.settings()` / `set_setting()`.

Every kind of import is a run (`KINDS`): scanner output (`scan`), Bastion's JSON graph
(`graph`), detections, ATT&CK bundles, the KEV catalog and EPSS scores. The kind is kept in the
run's options (`options["kind"]`); runs recorded before it was are scans, or graphs when their
format was `graph`.

An import run is written in transactions of its own (started, then finished), so a failed import
is recorded as well as a good one. While it runs, its process is known — pid and host, and on
PostgreSQL an advisory lock its process holds on a connection of its own — and each file is
added to the run as its transaction commits (`record_files`). A run whose process died without
finishing it (kill -9, a crash) is found when runs are listed or shown and when an import
starts (`interrupt_dead`): it becomes `interrupted`, with exactly the files that committed (those
recorded, and any whose `import_file` row its transaction wrote). A file is recorded in the transaction that imports it, with
the nodes and edges it observed: a later import of the same bytes, under the same parser code
and settings, with none of those changed since, is then only a sighting (`reuse_file`). A
setting change is an event like any other change.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, case, delete, exists, func, insert, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bastion.errors import NotFound
from bastion.store import eventlog, writer
from bastion.store.query import Scope, insert_numbered, pending
from bastion.store.tables import (edge, event, import_file, import_file_edge, import_file_node,
                                  import_run, node, setting)

KEEP_MEMBER_SETS = 20  # files whose member lists are kept, per tenant (the most recently used)
KINDS = ("scan", "graph", "detections", "attack", "kev", "epss")


@dataclass(frozen=True)
class ImportRun:
    id: int
    source: str
    actor: str
    status: str  # running | succeeded | partial | failed | interrupted (its process died)
    started_at: datetime
    finished_at: datetime | None
    correlation_id: str
    options: dict[str, Any]
    files: list[dict[str, Any]]
    counts: dict[str, int]
    errors: list[str]

    @property
    def kind(self) -> str:
        """What was imported (one of KINDS)."""
        return self.options.get("kind") or ("graph" if self.options.get("format") == "graph"
                                            else "scan")

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "kind": self.kind}


def start_import(scope: Scope, *, source: str, actor: str, correlation_id: str,
                 options: dict[str, Any], started_at: datetime, kind: str = "scan") -> int:
    """Record a run of `kind` as `running`, by this process; its id is the tenant's next run
    number. Runs of the tenant whose process died are marked interrupted first."""
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}")
    interrupt_dead(scope)
    options = {"kind": kind, **options}
    lease = _Lease.take(scope, correlation_id)  # before the row: a visible run has its lock
    try:
        run_id = insert_numbered(scope, import_run, "an import run", source=source, actor=actor,
                                 status="running", started_at=started_at,
                                 correlation_id=correlation_id, options=options, files=[],
                                 counts={}, errors=[], pid=os.getpid(), host=_HOST)
        lease.keep(run_id)
        return run_id
    except BaseException:
        lease.release()
        raise


def record_files(scope: Scope, run_id: int, files: list[dict[str, Any]]) -> None:
    """The files of a running run so far (each added right after its transaction committed):
    what an interrupted run is recorded with."""
    with scope.transaction(write=True) as conn:
        conn.execute(update(import_run)
                     .where(scope.where(import_run), import_run.c.id == run_id,
                            import_run.c.status == "running")
                     .values(files=files, counts=_totals(files)))


def finish_import(scope: Scope, run_id: int, *, status: str, files: list[dict[str, Any]],
                  counts: dict[str, int], errors: list[str]) -> None:
    try:
        with scope.transaction(write=True) as conn:
            conn.execute(update(import_run)
                         .where(scope.where(import_run), import_run.c.id == run_id)
                         .values(status=status, files=files, counts=counts, errors=errors,
                                 finished_at=datetime.now(timezone.utc)))
    finally:
        _Lease.release_run(scope, run_id)


# -- runs whose process died ----------------------------------------------------------------------

_HOST = socket.gethostname()[:255]
SUMMED = ("records", "findings", "created", "updated", "unchanged", "reopened", "closed")


class _Lease:
    """PostgreSQL: a session advisory lock on the run's correlation id, held on a connection of
    its own while the run runs; the server drops it when the process dies. (SQLite: nothing;
    pid and host tell.)"""

    held: dict[tuple[int, int, int], "_Lease"] = {}  # (engine, tenant, run id) → lease

    def __init__(self, scope: Scope, conn: Connection | None, key: int):
        self.scope, self.conn, self.key, self.where = scope, conn, key, None

    @classmethod
    def take(cls, scope: Scope, correlation_id: str) -> "_Lease":
        if not scope.postgres:
            return cls(scope, None, 0)
        key = _lock_key(correlation_id)
        conn = scope.engine.connect()
        try:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return cls(scope, conn, key)

    def keep(self, run_id: int) -> None:
        self.where = (id(self.scope.engine), self.scope.tenant_id, run_id)
        self.held[self.where] = self

    def release(self) -> None:
        if self.where is not None:
            self.held.pop(self.where, None)
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                conn.commit()
            finally:
                conn.close()

    @classmethod
    def release_run(cls, scope: Scope, run_id: int) -> None:
        lease = cls.held.get((id(scope.engine), scope.tenant_id, run_id))
        if lease is not None:
            lease.release()


def _lock_key(correlation_id: str) -> int:
    digest = hashlib.blake2b(f"bastion.import_run:{correlation_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _process_alive(pid: int | None, host: str | None) -> bool:
    """SQLite: whether the process that runs an import still runs (on another host: cannot
    tell, taken as alive)."""
    if pid is None:
        return False  # recorded before runs knew their process (revision 0009)
    if host != _HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def interrupt_dead(scope: Scope) -> list[int]:
    """Mark the tenant's runs whose process died `interrupted`, with exactly the files that
    committed; returns their ids."""
    with scope.transaction() as conn:
        running = conn.execute(
            select(import_run.c.id, import_run.c.correlation_id, import_run.c.pid,
                   import_run.c.host)
            .where(scope.where(import_run), import_run.c.status == "running")).all()
    mine = {run for (engine, t, run) in _Lease.held if engine == id(scope.engine)
            and t == scope.tenant_id}
    running = [r for r in running if r.id not in mine]
    if not scope.postgres:
        running = [r for r in running if not _process_alive(r.pid, r.host)]
    if not running:
        return []
    out = []
    with scope.transaction(write=True) as conn:
        for r in running:
            # PostgreSQL: the lock is free only when its process (its session) is gone; held
            # by this transaction until it ends, so the run is not taken for dead twice.
            if scope.postgres and not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                                   {"k": _lock_key(r.correlation_id)}).scalar_one():
                continue
            if _interrupt(scope, conn, r.id):
                out.append(r.id)
    return out


def _interrupt(scope: Scope, conn: Connection, run_id: int) -> bool:
    row = conn.execute(select(import_run).where(scope.where(import_run),
                                                import_run.c.id == run_id)).first()
    if row is None or row.status != "running":
        return False
    files = list(row.files)
    listed = {f.get("name") for f in files}
    for f in conn.execute(select(import_file).where(scope.where(import_file),
                                                    import_file.c.run_id == run_id)
                          .order_by(import_file.c.id)):
        if f.name not in listed:  # committed, killed before it was added to the run
            files.append({"name": f.name, "format": f.format, "sha256": f.sha256 or None,
                          "bytes": f.bytes, "status": "imported",
                          **{k: v for k, v in (f.counts or {}).items() if k in SUMMED}})
    process = f"pid {row.pid} on {row.host}" if row.pid is not None else "its process"
    imported = [f for f in files if f.get("status") == "imported"]
    note = (f"interrupted: the import ({process}) ended without finishing the run; "
            f"{len(imported)} file(s) committed")
    if not imported and conn.execute(select(exists().where(
            scope.where(event), event.c.correlation_id == row.correlation_id))).scalar_one():
        note += f"; changes were committed (bastion changes --run {run_id})"
    conn.execute(update(import_run)
                 .where(scope.where(import_run), import_run.c.id == run_id,
                        import_run.c.status == "running")
                 .values(status="interrupted", files=files, counts=_totals(files),
                         errors=[*row.errors, note]))
    return True


def _totals(files: list[dict[str, Any]]) -> dict[str, int]:
    out = {k: sum(int(f.get(k) or 0) for f in files) for k in SUMMED}
    out["files"] = len(files)
    out["rejected"] = sum(f.get("status") == "rejected" for f in files)
    return out


def _run(row) -> ImportRun:
    return ImportRun(row.id, row.source, row.actor, row.status, row.started_at, row.finished_at,
                     row.correlation_id, row.options, row.files, row.counts, row.errors)


def _kind_column():
    options = import_run.c.options
    return func.coalesce(options["kind"].as_string(),
                         case((options["format"].as_string() == "graph", "graph"), else_="scan"))


def import_runs(scope: Scope, limit: int = 50, *, kind: str | None = None,
                before: int | None = None) -> list[ImportRun]:
    """The most recent runs first (of one kind, if given); page on with `before`, the last
    run's id. Runs whose process died are marked interrupted first."""
    if before is None:
        interrupt_dead(scope)
    stmt = select(import_run).where(scope.where(import_run))
    if kind is not None:
        stmt = stmt.where(_kind_column() == kind)
    if before is not None:
        stmt = stmt.where(import_run.c.id < before)
    stmt = stmt.order_by(import_run.c.id.desc()).limit(limit)
    with scope.transaction() as conn:
        return [_run(r) for r in conn.execute(stmt)]


def get_import(scope: Scope, run_id: int) -> ImportRun:
    if not 0 < run_id < 2**31:  # run ids are 32-bit: a larger one names no run on either engine
        raise NotFound(f"no import run {run_id} (see `bastion imports list`)")
    interrupt_dead(scope)
    stmt = select(import_run).where(scope.where(import_run), import_run.c.id == run_id)
    with scope.transaction() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"no import run {run_id} (see `bastion imports list`)")
    return _run(row)


# -- imported files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileIdentity:
    """What must be equal for an earlier import of a file to stand for a new one."""

    sha256: str
    bytes: int
    format: str
    source: str  # the risks' source
    fingerprint: str  # parser code and tenant settings


def may_reuse(scope: Scope, *, size: int, format: str, source: str, fingerprint: str) -> bool:
    """Whether an earlier file of this size could be reused: worth hashing the file first."""
    stmt = select(exists().where(
        scope.where(import_file), import_file.c.bytes == size, import_file.c.format == format,
        import_file.c.source == source, import_file.c.fingerprint == fingerprint,
        import_file.c.members.is_not(None)))
    with scope.transaction() as conn:
        return bool(conn.execute(stmt).scalar_one())


class NotReusable(Exception):
    """No earlier import stands for this file: import it in full (and roll back what
    `reuse_file` wrote)."""


def reuse_file(scope: Scope, conn: Connection, ident: FileIdentity, *, run_id: int, name: str,
               at: datetime) -> dict[str, Any]:
    """In a write transaction: if an earlier import of the same file stands for this one, record
    the sighting — `last_seen` of every node and edge it observed moves to `at`, no event, as a
    full import that changes nothing would do — and return its counts; otherwise raise
    NotReusable, after which the caller rolls the transaction back. It stands for this one when
    none of those nodes and edges was changed, added to by another relationship of theirs, or
    deleted since (no later event names one of the nodes, and all of them are still there)."""
    scope.hold_writes(conn)
    # The counter as committed now: every event after it commits after this check, so the
    # sighting recorded at it is checked against them next time.
    seq = eventlog.last_seq(scope, conn)
    earlier = conn.execute(
        select(import_file).where(
            scope.where(import_file), import_file.c.sha256 == ident.sha256,
            import_file.c.bytes == ident.bytes, import_file.c.format == ident.format,
            import_file.c.source == ident.source, import_file.c.fingerprint == ident.fingerprint,
            import_file.c.members.is_not(None))
        .order_by(import_file.c.id.desc()).limit(1)).first()
    if earlier is None:
        raise NotReusable("no earlier import of these bytes")
    members, counts = earlier.members, earlier.counts
    if seq != earlier.event_seq and _named_since(scope, conn, members, earlier.event_seq):
        raise NotReusable("what it wrote was changed since")
    if conn.execute(select(node.c.id).where(scope.where(node),
                                            node.c.id == counts["capability"])).first() is None:
        raise NotReusable("its tool's capability node was deleted")
    nodes = conn.execute(
        update(node).where(scope.where(node), node.c.id.in_(
            select(import_file_node.c.node_id).where(
                scope.where(import_file_node), import_file_node.c.file_id == members)))
        .values(last_seen=at)).rowcount
    key = (edge.c.tenant_id, edge.c.source_id, edge.c.kind, edge.c.target_id)
    edges = conn.execute(
        update(edge).where(scope.where(edge), tuple_(*key).in_(
            select(import_file_edge.c.tenant_id, import_file_edge.c.source_id,
                   import_file_edge.c.kind, import_file_edge.c.target_id).where(
                scope.where(import_file_edge), import_file_edge.c.file_id == members)))
        .values(last_seen=at)).rowcount
    if (nodes, edges) != (counts["nodes"], counts["edges"]):
        raise NotReusable("a node or edge it wrote was deleted since")
    _insert_file(scope, conn, ident, run_id=run_id, name=name, at=at, event_seq=seq,
                 members=members, counts=counts)
    return {**counts, "reused_run": earlier.run_id}


def _named_since(scope: Scope, conn: Connection, members: int, seq: int) -> bool:
    """Whether an event after `seq` names one of the member nodes (an edge's events name its
    source node)."""
    m = import_file_node
    stmt = select(exists().where(
        scope.where(event), eventlog.after(scope, seq),
        node.c.tenant_id == event.c.tenant_id, node.c.key == event.c.entity_key,
        m.c.tenant_id == node.c.tenant_id, m.c.file_id == members, m.c.node_id == node.c.id))
    return bool(conn.execute(stmt).scalar_one())


def _insert_file(scope: Scope, conn: Connection, ident: FileIdentity, *, run_id: int, name: str,
                 at: datetime, event_seq: int, members: int | None, counts: dict[str, Any]) -> int:
    file_id = conn.execute(select(func.coalesce(func.max(import_file.c.id), 0) + 1)
                           .where(scope.where(import_file))).scalar_one()
    conn.execute(insert(import_file).values(
        tenant_id=scope.tenant_id, id=file_id, run_id=run_id, name=name, sha256=ident.sha256,
        bytes=ident.bytes, format=ident.format, source=ident.source, fingerprint=ident.fingerprint,
        imported_at=at, event_seq=event_seq,
        members=file_id if members is None else members, counts=counts))
    return file_id


class FileMembers:
    """The member lists of a file being imported, written as its chunks are (one transaction).
    Ids are added as the importer writes them; one may come again (ignored)."""

    def __init__(self, scope: Scope, conn: Connection, ident: FileIdentity, *, run_id: int,
                 name: str, at: datetime):
        self.scope, self.conn = scope, conn
        scope.hold_writes(conn)  # the file number is allocated under the tenant's lock
        self.file_id = _insert_file(scope, conn, ident, run_id=run_id, name=name, at=at,
                                    event_seq=0, members=None, counts={})

    def add(self, node_ids: list[int], edges: list[tuple[int, str, int]]) -> None:
        t, f = self.scope.tenant_id, self.file_id
        if node_ids:
            _insert_ignoring(self.conn, import_file_node, [(t, f, i) for i in node_ids])
        if edges:
            _insert_ignoring(self.conn, import_file_edge, [(t, f, s, k, d) for s, k, d in edges])

    def discard(self) -> None:
        conn, scope = self.conn, self.scope
        conn.execute(delete(import_file).where(scope.where(import_file), import_file.c.id == self.file_id))

    def finish(self, ident: FileIdentity, counts: dict[str, Any], capability: int) -> None:
        """The file was imported whole: its hash, counts and the tenant's counter after it (set
        as the transaction commits, when its events get their numbers).
        `capability`: the tool's node, which must still exist for a reuse (a full import would
        create it again)."""
        scope, conn, f = self.scope, self.conn, self.file_id
        n = conn.execute(select(func.count()).where(scope.where(import_file_node),
                                                    import_file_node.c.file_id == f)).scalar_one()
        e = conn.execute(select(func.count()).where(scope.where(import_file_edge),
                                                    import_file_edge.c.file_id == f)).scalar_one()
        conn.execute(update(import_file).where(scope.where(import_file), import_file.c.id == f)
                     .values(sha256=ident.sha256, bytes=ident.bytes,
                             counts={**counts, "nodes": n, "edges": e, "capability": capability}))

        def counter_after(conn: Connection, top: int) -> None:
            conn.execute(update(import_file).where(scope.where(import_file), import_file.c.id == f)
                         .values(event_seq=top))
        pending(conn).at_commit.append(counter_after)
        _prune_members(scope, conn)


def _insert_ignoring(conn: Connection, table, rows: list[tuple]) -> None:
    """Insert rows (in column order), skipping those already there."""
    names = ", ".join(c.name for c in table.c)
    if conn.dialect.name == "postgresql":
        types = ", ".join(f"%b::{c.type.compile(dialect=conn.dialect)}[]" for c in table.c)
        sql = (f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({types}) "
               f"ON CONFLICT DO NOTHING")
        with conn.connection.driver_connection.cursor() as cur:
            cur.execute(sql, [list(col) for col in zip(*rows)])
    else:
        marks = ", ".join("?" for _ in table.c)
        conn.exec_driver_sql(f"INSERT OR IGNORE INTO {table.name} ({names}) VALUES ({marks})", rows)


def _prune_members(scope: Scope, conn: Connection) -> None:
    """Keep the member lists of the KEEP_MEMBER_SETS most recently used files."""
    last_use = func.max(import_file.c.id)
    stale = [r.members for r in conn.execute(
        select(import_file.c.members).where(scope.where(import_file), import_file.c.members.is_not(None))
        .group_by(import_file.c.members).order_by(last_use.desc()).offset(KEEP_MEMBER_SETS))]
    for members in stale:
        for table in (import_file_node, import_file_edge):
            conn.execute(delete(table).where(scope.where(table), table.c.file_id == members))
        conn.execute(update(import_file).where(scope.where(import_file),
                                               import_file.c.members == members).values(members=None))


# -- the interface: TenantStore.runs, WriteSession.runs -------------------------------------------


class ImportRuns:
    """A tenant's import runs (`TenantStore.runs`); each call is a transaction of its own."""

    def __init__(self, scope: Scope):
        self._scope = scope

    def start(self, *, kind: str, source: str, actor: str, correlation_id: str,
              options: dict[str, Any], started_at: datetime) -> int:
        return start_import(self._scope, kind=kind, source=source, actor=actor,
                            correlation_id=correlation_id, options=options, started_at=started_at)

    def finish(self, run_id: int, *, status: str, files: list[dict[str, Any]],
               counts: dict[str, int], errors: list[str]) -> None:
        finish_import(self._scope, run_id, status=status, files=files, counts=counts, errors=errors)

    def record_files(self, run_id: int, files: list[dict[str, Any]]) -> None:
        """The files of a running run so far, each added as its transaction commits."""
        record_files(self._scope, run_id, files)

    def interrupt_dead(self) -> list[int]:
        """Mark runs whose process died `interrupted` (done by start, list and get too)."""
        return interrupt_dead(self._scope)

    def list(self, limit: int = 50, *, kind: str | None = None,
             before: int | None = None) -> list[ImportRun]:
        return import_runs(self._scope, limit, kind=kind, before=before)

    def get(self, run_id: int) -> ImportRun:
        return get_import(self._scope, run_id)

    def may_reuse(self, *, size: int, format: str, source: str, fingerprint: str) -> bool:
        return may_reuse(self._scope, size=size, format=format, source=source,
                         fingerprint=fingerprint)


class SessionRuns:
    """Imported files, written in a write session's transaction (`WriteSession.runs`)."""

    def __init__(self, scope: Scope, conn: Connection):
        self._scope, self._conn = scope, conn

    def file_members(self, ident: FileIdentity, *, run_id: int, name: str,
                     at: datetime) -> "FileMembers":
        return FileMembers(self._scope, self._conn, ident, run_id=run_id, name=name, at=at)

    def reuse_file(self, ident: FileIdentity, *, run_id: int, name: str,
                   at: datetime) -> dict[str, Any]:
        return reuse_file(self._scope, self._conn, ident, run_id=run_id, name=name, at=at)


# -- settings -------------------------------------------------------------------------------------


def settings(scope: Scope) -> dict[str, Any]:
    with scope.transaction() as conn:
        return {r.name: r.value for r in conn.execute(select(setting).where(scope.where(setting)))}


# Called in set_setting's transaction after the stored value was read, before the new one is
# written: tests stall a writer there to show a concurrent one waits (None outside tests).
after_setting_read = None


def set_setting(scope: Scope, name: str, value: Any, *, actor: str, source: str,
                merge: bool = False) -> bool:
    """Store a setting (None removes it), with a `setting.changed` event; False if unchanged.
    `merge`: `value` is a mapping merged over the stored one (the keys it does not give keep
    theirs). The stored value is read, merged and written in one transaction under the
    tenant's lock, so of two concurrent changes neither is lost, and the row is upserted (a
    first value written twice at once is not a duplicate key)."""
    now = datetime.now(timezone.utc)
    with scope.transaction(write=True) as conn:
        scope.hold_writes(conn)  # writers of the tenant serialize here, before the read
        where = (scope.where(setting), setting.c.name == name)
        old = conn.execute(select(setting.c.value).where(*where)).scalar_one_or_none()
        if after_setting_read is not None:
            after_setting_read(name, old)
        if merge and value is not None:
            value = {**(old or {}), **value}
        if old == value:
            return False
        if value is None:
            conn.execute(setting.delete().where(*where))
        else:
            _upsert_setting(conn, scope.tenant_id, name, value, now)
        writer.record_event(scope, conn, key=f"setting:{name}", kind="setting",
                            event_type="setting.changed", diff={name: [old, value]},
                            actor=actor, source=source, at=now)
    return True


def _upsert_setting(conn: Connection, tenant_id: int, name: str, value: Any, at: datetime) -> None:
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(setting).values(tenant_id=tenant_id, name=name, value=value, updated_at=at)
    conn.execute(stmt.on_conflict_do_update(index_elements=[setting.c.tenant_id, setting.c.name],
                                            set_={"value": stmt.excluded.value,
                                                  "updated_at": stmt.excluded.updated_at}))
