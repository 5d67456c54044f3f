"""The portable export: tenants (and the shared reference data) as a stream of JSON lines that
either engine can read back, so a tenant grown on SQLite moves to PostgreSQL and back.

Format `bastion-export`, version 1 (docs/operations.md describes it line by line):

    {"format": "bastion-export", "version": 1, "revision": "0010", "engine": …, "exported_at": …}
    {"shared": "attack_release", "columns": [...]}          (reference tables, no tenant_id)
    [row values …]                                          one line per row, in primary-key order
    {"end": "attack_release", "rows": n, "sha": "…"}        count and digest (bastion.store.backup)
    {"tenant": {"name": …, "display_name": …, "created_at": …, "event_seq": n}}
    {"table": "node", "columns": [...]}                     every table with a tenant_id column,
    [row values …]                                          tenant_id left out
    {"end": "node", "rows": n, "sha": "…"}
    …
    {"end": "export", "tenants": [...]}                     a file without it was cut short

Tables come from the declared metadata (bastion.store.tables), parents before children, so a
table added later is exported without naming it here. Values are canonical (UTC ISO times, bytes
as "hex:…", JSON as is) and decoded by the target column's type.

The `event` section holds every event with its sequence number `seq` (bastion.store.eventlog
reads them in that order); how the events are stored — by transaction, `event_commit` — is not
exported. An import writes each tenant in one transaction bound to it (row-level security
applies on PostgreSQL: every row goes in under the tenant's own binding, as the application
role), under the tenant's write lock. Its events become one transaction of the tenant's log,
their numbers kept (`pos` = `seq`, base 0, numbered at commit like any other), so the tenant's
counter ends at the exported one and the next change continues after the imported events.
Shared rows are added when missing, never changed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

import orjson
from sqlalchemy import Connection, Engine, LargeBinary, delete, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from bastion.errors import ConfigError, InvalidValue, Malformed
from bastion.store import eventlog, migrate
from bastion.store.backup import (TableDigest, canonical, ordered_rows, tenant_columns, tenant_rows,
                                  tenant_tables)
from bastion.store.query import Scope, bind_tenant, pending
from bastion.store.tables import UTCDateTime, attack_release, event, metadata, tenant

if TYPE_CHECKING:
    from bastion.store.store import Store

FORMAT = "bastion-export"
VERSION = 1
CHUNK = 5000


def shared_tables():
    """Declared reference tables shared by every tenant (the ATT&CK catalog), parents first."""
    return [t for t in metadata.sorted_tables if "tenant_id" not in t.c and t is not tenant]


def _columns(table, tenant_scoped: bool) -> list[str]:
    if tenant_scoped:
        return tenant_columns(table)
    return sorted(str(c.name) for c in table.columns)


class _Digest:
    """The same digest as bastion.store.backup.table_digest, taken while rows stream by."""

    def __init__(self, columns: list[str]):
        self.h = hashlib.blake2b(orjson.dumps(columns), digest_size=16)
        self.rows = 0

    def add(self, line: bytes) -> None:
        self.h.update(line)
        self.h.update(b"\n")
        self.rows += 1

    def result(self) -> TableDigest:
        return TableDigest(self.rows, self.h.hexdigest())


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@dataclass
class Exported:
    tenants: list[str]
    tables: dict[str, dict[str, TableDigest]] = field(default_factory=dict)  # section → table → digest


@contextmanager
def _read(engine: Engine, tenant_id: int | None) -> Iterator[Connection]:
    """One consistent read: REPEATABLE READ on PostgreSQL, bound to the tenant (row-level
    security) when one is given; SQLite's read transaction is a snapshot already."""
    pg = engine.dialect.name == "postgresql"
    opts = {"isolation_level": "REPEATABLE READ"} if pg else {}
    with engine.connect().execution_options(**opts) as conn, conn.begin():
        if pg and tenant_id is not None:  # (binding writes a temporary table: not READ ONLY)
            bind_tenant(conn, tenant_id)
        elif pg:
            conn.execute(text("SET TRANSACTION READ ONLY"))
        yield conn


def _section(conn: Connection, out: IO[bytes], kind: str, table,
             tenant_id: int | None = None) -> TableDigest:
    columns = _columns(table, tenant_id is not None)
    out.write(_dumps({kind: table.name, "columns": columns}) + b"\n")
    digest = _Digest(columns)
    rows = (ordered_rows(conn, table, columns) if tenant_id is None
            else tenant_rows(conn, table, tenant_id, columns))
    for row in rows:
        line = _dumps([canonical(v) for v in row])
        digest.add(line)
        out.write(line + b"\n")
    done = digest.result()
    out.write(_dumps({"end": table.name, "rows": done.rows, "sha": done.sha}) + b"\n")
    return done


def tenant_ids(engine: "Store | Engine", names: list[str] | None) -> list[tuple[int, str]]:
    """(id, name) of the named tenants (all when None), as the owner sees them."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    with engine.connect() as conn:
        rows = conn.execute(select(tenant.c.id, tenant.c.name).order_by(tenant.c.name)).all()
    known = {r.name: r.id for r in rows}
    if names is None:
        return [(r.id, r.name) for r in rows]
    missing = [n for n in names if n not in known]
    if missing:
        raise ConfigError(f"no tenant named {missing[0]!r} (see `bastion tenant list`)")
    return [(known[n], n) for n in names]


def export(engine: "Store | Engine", out: IO[bytes], tenants: list[tuple[int, str]], *,
           shared: bool = True) -> Exported:
    """Write the export of `tenants` ((id, name) pairs) and, with `shared`, the reference data."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    done = Exported([name for _, name in tenants])
    header = {"format": FORMAT, "version": VERSION, "revision": migrate.current(engine),
              "engine": engine.dialect.name, "exported_at": canonical(datetime.now(timezone.utc))}
    out.write(_dumps(header) + b"\n")
    if shared:
        with _read(engine, None) as conn:
            done.tables[""] = {t.name: _section(conn, out, "shared", t) for t in shared_tables()}
    for tenant_id, name in tenants:
        with _read(engine, tenant_id) as conn:
            row = conn.execute(select(tenant).where(tenant.c.id == tenant_id)).one()
            info = {str(c.name): canonical(row._mapping[c]) for c in tenant.columns if c.name != "id"}
            out.write(_dumps({"tenant": info}) + b"\n")
            done.tables[name] = {t.name: _section(conn, out, "table", t, tenant_id)
                                 for t in tenant_tables()}
    out.write(_dumps({"end": "export", "tenants": done.tenants}) + b"\n")
    return done


# -- reading ----------------------------------------------------------------------------------------


def open_export(path: str | Path) -> IO[bytes]:
    """The file, gunzipped when it is gzip."""
    raw = open(path, "rb")
    if raw.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)
    return raw


def is_export(path: str | Path) -> bool:
    try:
        with open_export(path) as f:
            first = f.readline(4096)
        return orjson.loads(first).get("format") == FORMAT
    except (OSError, orjson.JSONDecodeError, AttributeError, EOFError, gzip.BadGzipFile):
        return False


class _Lines:
    """The export's lines, decoded, with the line number for errors."""

    def __init__(self, stream: IO[bytes], name: str):
        self.stream, self.name, self.number = stream, name, 0

    def next(self) -> Any:
        try:
            line = self.stream.readline()
        except (EOFError, gzip.BadGzipFile, OSError) as exc:
            raise self.error(f"unreadable ({exc})") from None
        self.number += 1
        if not line:
            raise self.error("the file ends early (no end-of-export line): it was cut short")
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise self.error(f"not JSON ({exc})") from None

    def error(self, reason: str) -> Malformed:
        return Malformed(f"{self.name}, line {self.number}: {reason}")


def _decoder(column) -> Callable[[Any], Any] | None:
    if isinstance(column.type, UTCDateTime):
        return lambda v: None if v is None else datetime.fromisoformat(v)
    if isinstance(column.type, LargeBinary):
        return lambda v: None if v is None else bytes.fromhex(v.removeprefix("hex:"))
    return None


@dataclass
class Imported:
    tenants: dict[str, int] = field(default_factory=dict)  # name → events imported
    rows: dict[str, int] = field(default_factory=dict)  # table → rows imported (all tenants)
    shared_added: dict[str, int] = field(default_factory=dict)  # reference rows that were missing
    digests: dict[str, dict[str, TableDigest]] = field(default_factory=dict)  # as the file says


def read_header(lines: _Lines) -> dict:
    header = lines.next()
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise lines.error(f"not a Bastion export (no {FORMAT!r} header)")
    if header.get("version") != VERSION:
        raise lines.error(f"export format version {header.get('version')!r}; this Bastion reads "
                          f"version {VERSION}")
    revision = header.get("revision")
    if revision not in migrate.revisions():
        raise lines.error(f"exported at schema revision {revision!r}, which this Bastion does not "
                          "know (upgrade Bastion first)")
    return header


def import_export(engine: "Store | Engine", stream: IO[bytes], name: str, *,
                  rename: str | None = None) -> Imported:
    """Import every section of an export. `rename`: the tenant's name in this database (an
    export of one tenant only). Tenants are created as the owner; their rows are written in a
    transaction bound to each (row-level security). A tenant that exists must be empty."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    lines = _Lines(stream, name)
    read_header(lines)
    done = Imported()
    item = lines.next()
    while True:
        if isinstance(item, dict) and "shared" in item:
            item = _import_shared(engine, lines, item, done)
        elif isinstance(item, dict) and "tenant" in item:
            item = _import_tenant(engine, lines, item["tenant"], done, rename)
        elif isinstance(item, dict) and item.get("end") == "export":
            if rename and len(done.tenants) > 1:
                raise lines.error("--as renames one tenant; this export holds several")
            return done
        else:
            raise lines.error("expected a shared table, a tenant or the end of the export")


def _table_header(lines: _Lines, item: Any, kind: str, tables: dict):
    table = tables.get(item.get(kind)) if isinstance(item, dict) else None
    if table is None:
        raise lines.error(f"unknown {kind} table {item.get(kind) if isinstance(item, dict) else item!r}")
    columns = item.get("columns")
    known = tenant_columns(table) if kind == "table" else [c.name for c in table.c]
    unknown = [c for c in columns or [] if c not in known]
    if not isinstance(columns, list) or unknown:
        raise lines.error(f"table {table.name}: columns {unknown or columns!r} are not in this "
                          "database's schema")
    return table, columns


def _rows(lines: _Lines, table, columns: list[str], digests: dict) -> Iterator[list[dict]]:
    """Chunks of decoded rows of one section, up to its end line, checked against its count."""
    decoders = [(i, d) for i, c in enumerate(columns)
                if c in table.c and (d := _decoder(table.c[c])) is not None]
    chunk: list[dict] = []
    n = 0
    while True:
        item = lines.next()
        if isinstance(item, dict):
            if item.get("end") != table.name or item.get("rows") != n:
                raise lines.error(f"table {table.name}: expected its end line after {n} rows")
            digests[table.name] = TableDigest(item["rows"], item.get("sha", ""))
            break
        if not isinstance(item, list) or len(item) != len(columns):
            raise lines.error(f"table {table.name}: a row of {len(columns)} values expected")
        try:
            for i, decode in decoders:
                item[i] = decode(item[i])
        except (ValueError, TypeError, AttributeError) as exc:
            raise lines.error(f"table {table.name}: bad value ({exc})") from None
        chunk.append(dict(zip(columns, item)))
        n += 1
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _import_shared(engine: Engine, lines: _Lines, item: dict, done: Imported) -> Any:
    """Reference rows the database lacks, by primary key (as the owner: the application may only
    read them). A release already active here stays the active one."""
    tables = {t.name: t for t in shared_tables()}
    table, columns = _table_header(lines, item, "shared", tables)
    pk = [c.name for c in table.primary_key.columns]
    digests = done.digests.setdefault("", {})
    with engine.begin() as conn:
        have = {tuple(r) for r in conn.execute(select(*(table.c[c] for c in pk)))}
        active = ({r.domain for r in conn.execute(select(attack_release.c.domain)
                                                  .where(attack_release.c.active))}
                  if table is attack_release else set())
        for chunk in _rows(lines, table, columns, digests):
            missing = [r for r in chunk if tuple(r[c] for c in pk) not in have]
            for r in missing:
                if table is attack_release and r["active"] and r["domain"] in active:
                    r["active"] = False
            if missing:
                conn.execute(insert(table), missing)
                done.shared_added[table.name] = done.shared_added.get(table.name, 0) + len(missing)
    return lines.next()


def _import_tenant(engine: Engine, lines: _Lines, info: Any, done: Imported,
                   rename: str | None) -> Any:
    if not isinstance(info, dict) or not info.get("name"):
        raise lines.error("a tenant line needs the tenant's name")
    name = rename or info["name"]
    tenant_id, created = _create_tenant(engine, name, info, lines)
    try:
        return _import_rows(engine, lines, info, done, name, tenant_id)
    except BaseException:
        if created:  # all or nothing: the tenant made for the import goes too (it holds nothing)
            with engine.begin() as conn:
                conn.execute(delete(tenant).where(tenant.c.id == tenant_id))
        raise


def _import_rows(engine: Engine, lines: _Lines, info: dict, done: Imported, name: str,
                 tenant_id: int) -> Any:
    tables = {t.name: t for t in tenant_tables()}
    digests = done.digests.setdefault(name, {})
    events = 0
    scope = Scope(engine, tenant_id)
    with scope.transaction(write=True) as conn:  # bound to the tenant: row-level security applies
        scope.hold_writes(conn)
        if eventlog.last_seq(scope, conn):  # written to since it was found empty
            raise ConfigError(f"tenant {name!r} already exists with data: import it under "
                              "another name (--as NAME)")
        # The file's events are one transaction of the tenant's log, in their exported order and
        # numbered as exported (pos = seq, base 0): the counter ends at the exported one, and the
        # next change continues after it.
        top = int(info.get("event_seq") or 0)
        item = lines.next()
        while isinstance(item, dict) and "table" in item:
            table, columns = _table_header(lines, item, "table", tables)
            if table is event and "seq" not in columns:
                raise lines.error("table event: its events need their numbers (column seq)")
            for chunk in _rows(lines, table, columns, digests):
                for r in chunk:
                    r["tenant_id"] = tenant_id
                if table is event:
                    txn = scope.event_txn(conn)
                    for i, r in enumerate(chunk, start=events + 1):
                        if r.get("seq") != i or i > top:
                            raise lines.error(f"event {r.get('seq')!r} where {i} was due: the events "
                                              f"must be numbered 1 … {top} (the exported counter), in order")
                        del r["seq"]
                        r["txn"], r["pos"] = txn, i
                try:
                    conn.execute(insert(table), chunk)
                except IntegrityError as exc:
                    reason = str(exc.orig).strip().splitlines()[0]
                    raise lines.error(f"table {table.name}: rows this database refuses ({reason})") from None
                done.rows[table.name] = done.rows.get(table.name, 0) + len(chunk)
                if table is event:
                    events += len(chunk)
                    pending(conn).events = events
            item = lines.next()
        if events != top:
            raise lines.error(f"{events} events for the exported counter {top}: the file is incomplete")
    done.tenants[name] = events
    return item


def _create_tenant(engine: Engine, name: str, info: dict, lines: _Lines) -> tuple[int, bool]:
    """(the tenant's id, whether it was created now): created as exported (display name, creation time) or, when a tenant of
    that name exists, that one if it is empty."""
    created = info.get("created_at")
    try:
        created_at = datetime.fromisoformat(created) if created else datetime.now(timezone.utc)
    except (TypeError, ValueError):
        raise lines.error(f"tenant {name!r}: bad created_at {created!r}") from None
    with engine.begin() as conn:
        row = conn.execute(select(tenant.c.id, tenant.c.event_seq).where(tenant.c.name == name)).first()
        if row is None:
            try:
                conn.execute(insert(tenant).values(name=name, display_name=info.get("display_name"),
                                                   created_at=created_at))
            except Exception as exc:  # the CHECK on names
                raise InvalidValue(f"cannot create tenant {name!r}: {str(exc).splitlines()[0]}") from None
            return conn.execute(select(tenant.c.id).where(tenant.c.name == name)).scalar_one(), True
    if row.event_seq or count_rows(engine, row.id):
        raise ConfigError(f"tenant {name!r} already exists with data: import it under another "
                          "name (--as NAME)")
    return row.id, False


def count_rows(engine: "Store | Engine", tenant_id: int) -> int:
    """Rows the tenant has in its tables (0: empty)."""
    engine = engine.engine  # a Store, or an Engine (whose .engine is itself)
    with engine.connect() as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            bind_tenant(conn, tenant_id)
        return sum(conn.execute(select(func.count()).select_from(t).where(t.c.tenant_id == tenant_id))
                   .scalar_one() for t in metadata.sorted_tables if "tenant_id" in t.c)


def gzip_writer(path: str | Path, compress: bool) -> IO[bytes]:
    """A writer for the export, gzip-compressed or not."""
    if compress:
        return gzip.open(path, "wb", compresslevel=6)
    return io.BufferedWriter(io.FileIO(str(path), "w"))
