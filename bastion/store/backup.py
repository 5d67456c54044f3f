"""Whole-database backups: SQLite's online backup API, PostgreSQL's `pg_dump` custom format, and
the per-table content digests a backup is verified with (bastion.ops.backup drives these).

A digest is engine-independent: every row of a table, ordered by primary key in byte order
(COLLATE "C" on PostgreSQL, SQLite's BINARY), each value in a canonical form (UTC ISO times,
hex bytes, JSON with sorted keys), hashed with BLAKE2b. The same function compares a tenant moved
between engines (bastion.store.portable).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import orjson
from sqlalchemy import Connection, Engine, MetaData, String, Table, Text, create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from bastion.errors import ConfigError
from bastion.store import eventlog
from bastion.store.tables import event, event_commit, metadata

if TYPE_CHECKING:
    from bastion.store.store import Store

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_CUSTOM_MAGIC = b"PGDMP"
PAGE = 5000


@dataclass(frozen=True)
class TableDigest:
    rows: int
    sha: str  # BLAKE2b-128 of the canonical rows, hex


# -- canonical content ------------------------------------------------------------------------------


def canonical(value: Any) -> Any:
    """A value as both engines agree on it (JSON-serializable)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "hex:" + bytes(value).hex()
    if isinstance(value, Decimal):
        return str(value)
    return value


def reflected(conn: Connection, name: str) -> Table:
    """The table as the database has it (any revision, declared or not)."""
    return Table(name, MetaData(), autoload_with=conn)


def ordered_rows(conn: Connection, table: Table, columns: list[str] | None = None, where=None
                 ) -> Iterator[tuple]:
    """Rows of `table` (the named columns, default all) in primary-key byte order, streamed."""
    cols = [table.c[c] for c in (columns or [c.name for c in table.columns])]
    pk = list(table.primary_key.columns) or cols
    order = [c.collate("C") if conn.dialect.name == "postgresql" and isinstance(c.type, (String, Text))
             else c for c in pk]
    stmt = select(*cols).order_by(*order)
    if where is not None:
        stmt = stmt.where(where)
    result = conn.execution_options(stream_results=True, yield_per=PAGE).execute(stmt)
    for row in result:
        yield tuple(row)


def tenant_tables() -> list[Table]:
    """The declared tables holding a tenant's rows, parents first, as its portable export and
    its digests show them: without `event_commit`, whose numbers the events carry
    (tenant_columns)."""
    return [t for t in metadata.sorted_tables if "tenant_id" in t.c and t is not event_commit]


def tenant_columns(table: Table) -> list[str]:
    """A tenant table's columns as its export and digest show them, sorted, without tenant_id;
    `event` with its number `seq` instead of where it is stored (txn, pos)."""
    if table is event:
        return list(eventlog.PORTABLE_COLUMNS)
    return sorted(str(c.name) for c in table.columns if c.name != "tenant_id")


def tenant_rows(conn: Connection, table: Table, tenant_id: int, columns: list[str]) -> Iterator[tuple]:
    """One tenant's rows of a table of tenant_tables(), in primary-key order (events by `seq`)."""
    if table is event:
        return eventlog.portable_rows(conn, tenant_id, columns)
    return ordered_rows(conn, table, columns, table.c.tenant_id == tenant_id)


def table_digest(conn: Connection, table: Table, *, tenant_id: int | None = None) -> TableDigest:
    """Count and hash of a table's rows; `tenant_id`: only that tenant's rows as tenant_columns
    shows them (so the same tenant under another id, or on the other engine, hashes the same)."""
    if tenant_id is not None:
        columns = tenant_columns(table)
        rows = tenant_rows(conn, table, tenant_id, columns)
    else:
        columns = sorted(str(c.name) for c in table.columns)
        rows = ordered_rows(conn, table, columns)
    h = hashlib.blake2b(orjson.dumps(columns), digest_size=16)
    n = 0
    for row in rows:
        h.update(orjson.dumps([canonical(v) for v in row], option=orjson.OPT_SORT_KEYS))
        h.update(b"\n")
        n += 1
    return TableDigest(n, h.hexdigest())


def database_tables(conn: Connection) -> list[str]:
    return sorted(inspect(conn).get_table_names())


def digests(conn: Connection) -> dict[str, TableDigest]:
    """Every table of the database as it is (declared or not, alembic_version included): compares
    a database with its copy on the same engine."""
    return {name: table_digest(conn, reflected(conn, name)) for name in database_tables(conn)}


def tenant_digests(conn: Connection, tenant_id: int) -> dict[str, TableDigest]:
    """Every table of tenant_tables(), restricted to one tenant."""
    return {t.name: table_digest(conn, t, tenant_id=tenant_id) for t in tenant_tables()}


def shared_digests(engine: "Store | Engine") -> dict[str, TableDigest]:
    """Every declared table shared by all tenants (no tenant_id; the tenant list aside)."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    with _snapshot(engine) as conn:
        return {t.name: table_digest(conn, t) for t in metadata.sorted_tables
                if "tenant_id" not in t.c and t.name != "tenant"}


def tenant_digests_by_name(engine: "Store | Engine", name: str) -> dict[str, TableDigest]:
    """tenant_digests of the tenant called `name`, read as the owner."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    with _snapshot(engine) as conn:
        tenant_id = conn.execute(text("SELECT id FROM tenant WHERE name = :n"), {"n": name}).scalar_one()
        return tenant_digests(conn, tenant_id)


def database_digests(engine: "Store | Engine") -> dict[str, TableDigest]:
    """Digests of the whole database in one consistent read (as the owner: on PostgreSQL an
    unbound transaction of the table owner sees every tenant's rows)."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    with _snapshot(engine) as conn:
        return digests(conn)


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction that sees one instant of the whole database."""
    opts = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**opts) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET TRANSACTION READ ONLY"))
        yield conn


# -- SQLite -----------------------------------------------------------------------------------------


def sqlite_path(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ConfigError("backup needs a SQLite database file, not an in-memory database")
    return Path(database).expanduser()


def sqlite_backup(engine: "Store | Engine", target: Path) -> dict[str, TableDigest]:
    """Copy the live database to `target` with SQLite's online backup API (writers may go on;
    the copy is one consistent instant) and return the copy's digests."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    tmp = target.with_name(target.name + ".partial")
    tmp.unlink(missing_ok=True)
    source = sqlite3.connect(sqlite_path(engine))
    try:
        dest = sqlite3.connect(tmp)
        try:
            source.backup(dest)
            dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            dest.close()
    finally:
        source.close()
    os.replace(tmp, target)
    return sqlite_file_digests(target)


def sqlite_file_digests(path: Path) -> dict[str, TableDigest]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return digests(conn)
    finally:
        engine.dispose()


def sqlite_integrity(path: Path) -> str:
    """`PRAGMA integrity_check` of a SQLite file: "ok" or the first problem."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


def sqlite_restore(engine: "Store | Engine", source: Path) -> None:
    """Replace the live database's content with the backup's, through the backup API (it takes
    the database's locks, so no reader sees half of it)."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    engine.dispose()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dest = sqlite3.connect(sqlite_path(engine))
        try:
            src.backup(dest)
            dest.execute("PRAGMA journal_mode=WAL")
        finally:
            dest.close()
    finally:
        src.close()


def has_tenants(engine: "Store | Engine") -> bool:
    """Whether the database holds any tenant (what a restore would replace)."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    with engine.connect() as conn:
        if "tenant" not in inspect(conn).get_table_names():
            return False
        return conn.execute(text("SELECT EXISTS (SELECT 1 FROM tenant)")).scalar()


# -- PostgreSQL -------------------------------------------------------------------------------------


def libpq(engine: Engine, database: str | None = None) -> tuple[str, dict[str, str]]:
    """(connection string without password, environment with PGPASSWORD) for pg_dump/pg_restore."""
    u = engine.url.set(drivername="postgresql")
    if database is not None:
        u = u.set(database=database)
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return u.set(password=None).render_as_string(hide_password=False), env


def server_major(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000


def pg_tool(name: str, major: int) -> str:
    """`pg_dump`/`pg_restore` of at least the server's major version: the one of that version
    under /usr/lib/postgresql (Debian), else the one on PATH if it is new enough."""
    candidates = [Path(f"/usr/lib/postgresql/{major}/bin/{name}")]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.exists():
            out = subprocess.run([str(path), "--version"], capture_output=True, text=True).stdout
            m = re.search(r"(\d+)(?:\.\d+)?", out)
            if m and int(m.group(1)) >= major:
                return str(path)
    raise ConfigError(f"{name} {major} or newer is needed for a PostgreSQL {major} server and was "
                      f"not found (install postgresql-client-{major})")


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = [x for x in done.stderr.strip().splitlines() if x.strip()]
        reason = lines[0] if lines else f"exit code {done.returncode}"
        raise ConfigError(f"{what} failed: {reason}")


def pg_backup(engine: "Store | Engine", target: Path) -> dict[str, TableDigest]:
    """`pg_dump -Fc` of the database, taken from the same snapshot the digests are read in
    (an exported snapshot: the dump and its digests describe one instant)."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    dump = pg_tool("pg_dump", server_major(engine))
    conninfo, env = libpq(engine)
    tmp = target.with_name(target.name + ".partial")
    with _snapshot(engine) as conn:
        snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        # --enable-row-security: the owner reads under its own policy (every row when unbound)
        # instead of pg_dump failing on tables with forced row-level security
        _run([dump, "--format=custom", "--no-owner", "--no-privileges", "--enable-row-security",
              f"--snapshot={snapshot}", f"--file={tmp}", f"--dbname={conninfo}"], env, "pg_dump")
        found = digests(conn)
    os.replace(tmp, target)
    return found


def pg_restore(engine: "Store | Engine", source: Path, database: str | None = None) -> None:
    """Restore a custom-format dump into the database (or `database` on the same server), all or
    nothing, owned by the connecting login; grants are re-applied by the caller."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    restore = pg_tool("pg_restore", server_major(engine))
    conninfo, env = libpq(engine, database)
    engine.dispose()
    _run([restore, "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
          "--exit-on-error", f"--dbname={conninfo}", str(source)], env, "pg_restore")


@contextmanager
def scratch_database(engine: "Store | Engine") -> Iterator[Engine]:
    """An empty database on the same PostgreSQL server, dropped afterwards."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    name = f"bastion_verify_{os.getpid()}_{os.urandom(4).hex()}"
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        scratch = create_engine(engine.url.set(database=name))
        try:
            yield scratch
        finally:
            scratch.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def is_postgres_url(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"
