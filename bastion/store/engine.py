"""Engines: SQLite (embedded default) and PostgreSQL, chosen by URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import orjson

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from bastion.errors import Busy, ConfigError

APP_ROLE = "bastion_app"  # non-owner role every tenant transaction runs as on PostgreSQL
LOCK_TIMEOUT = 30.0  # seconds a writer waits for the tenant's write lock (BASTION_LOCK_TIMEOUT)
FIRST_WAIT = 0.25  # seconds waited before the writer is told who it waits for


@dataclass(frozen=True)
class Holder:
    """The running import a writer waits for (its `import_run` row)."""

    run_id: int
    kind: str
    actor: str
    started_at: datetime

    def __str__(self) -> str:
        since = self.started_at.strftime("%Y-%m-%d %H:%M:%SZ")
        what = "import" if self.kind == "scan" else f"{self.kind} import"
        return f"{what} {self.run_id} by {self.actor}, running since {since}"


# Called once when a writer starts to wait: (the running import or None, the timeout in seconds).
OnWait = Callable[["Holder | None", float], None]


def resolve_lock_timeout(value: float | str | None = None) -> float:
    """The lock timeout in seconds: `value`, else BASTION_LOCK_TIMEOUT, else 30."""
    if value is None:
        value = os.environ.get("BASTION_LOCK_TIMEOUT") or LOCK_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise ConfigError(f"invalid lock timeout {value!r}: give seconds, more than 0 (BASTION_LOCK_TIMEOUT)")
    return seconds


def busy(holder: Holder | None, timeout: float) -> Busy:
    """The error of a writer that waited `timeout` seconds for the write lock in vain."""
    who = str(holder) if holder else "another writer"
    return Busy(f"busy: {who} holds the write lock; gave up after {timeout:g} s (nothing was "
                "written; retry later or raise BASTION_LOCK_TIMEOUT)", holder)


def first_wait(timeout: float) -> float:
    """How long a writer waits before it is told whom it waits for."""
    return min(FIRST_WAIT, timeout / 2)


def bastion_home() -> Path:
    return Path(os.environ.get("BASTION_HOME") or Path.home() / ".bastion")


def default_url() -> str:
    """`BASTION_DATABASE_URL`, else the SQLite file under `$BASTION_HOME`."""
    return os.environ.get("BASTION_DATABASE_URL") or f"sqlite:///{bastion_home() / 'bastion.db'}"


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:` spellings; use psycopg 3 for PostgreSQL."""
    try:
        u = make_url(url)
    except ArgumentError:
        raise ConfigError(f"invalid database URL {url!r}") from None
    if u.get_backend_name() == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    elif u.get_backend_name() != "sqlite":
        raise ConfigError(f"unsupported database {u.get_backend_name()!r}: use sqlite or postgresql")
    return u.render_as_string(hide_password=False)


def _json_dumps(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC).decode()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Own the transaction boundaries (pysqlite's implicit BEGIN would defer locking).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")  # statements outside a write transaction
    # 16 MiB of pages, not the 2 MiB default: large imports re-read indexes (32 MiB was no faster
    # on a 1M-finding import and pushed its peak RSS past 300 MB)
    cur.execute("PRAGMA cache_size=-16384")
    cur.close()


def _sqlite_begin(conn) -> None:
    # A write transaction takes the write lock at BEGIN (IMMEDIATE), so a read-then-write batch
    # cannot deadlock; reads begin DEFERRED and never wait for, or block, each other.
    opts = conn.get_execution_options()
    if not opts.get("bastion_write", False):
        conn.exec_driver_sql("BEGIN")
        return
    # Bounded wait for the write lock: a short first wait, then the writer is told whom it waits
    # for (`bastion_waiting`, set by Scope.transaction), then the rest of the timeout; then Busy.
    timeout = opts.get("bastion_lock_timeout") or resolve_lock_timeout()
    first = first_wait(timeout)
    if _begin_immediate(conn, first):
        return
    waiting = opts.get("bastion_waiting")
    holder = waiting(timeout) if waiting else None
    if not _begin_immediate(conn, timeout - first):
        raise busy(holder, timeout)


def _begin_immediate(conn, seconds: float) -> bool:
    """BEGIN IMMEDIATE, waiting at most `seconds` for the lock; False when it stayed locked."""
    conn.exec_driver_sql(f"PRAGMA busy_timeout={max(1, int(seconds * 1000))}")
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return True
    except OperationalError as exc:
        if "database is locked" not in str(exc.orig):
            raise
        return False
    finally:
        conn.exec_driver_sql("PRAGMA busy_timeout=10000")


def make_engine(url: str | None = None, *, echo: bool = False, create: bool = True,
                lock_timeout: float | None = None, on_wait: OnWait | None = None) -> Engine:
    """`create=False`: a SQLite file that does not exist is a ConfigError, and neither it nor its
    directory is created (every command but `init`, `demo` and `db upgrade` only uses a
    database that is there).

    `lock_timeout`: seconds a writer waits for the tenant's write lock (default
    BASTION_LOCK_TIMEOUT, else 30) before it fails with Busy; `on_wait` is called once when a
    writer starts to wait, with the running import it waits for (Holder, or None) and the timeout
    (the CLI prints it). Kept as the engine's execution options `bastion_lock_timeout` and
    `bastion_on_wait`."""
    return _make_engine(url, echo=echo, create=create).execution_options(
        bastion_lock_timeout=resolve_lock_timeout(lock_timeout), bastion_on_wait=on_wait)


def _make_engine(url: str | None, *, echo: bool, create: bool) -> Engine:
    url = normalize_url(url or default_url())
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            path = Path(u.database).expanduser()
            if not create and not path.exists():
                raise ConfigError(f"no database at {path}; run `bastion init`")
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, json_serializer=_json_dumps)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url, echo=echo, json_serializer=_json_dumps, pool_size=5, max_overflow=10, pool_pre_ping=True,
        # Always a plan for the parameters at hand: psycopg prepares a statement at its 5th run
        # and PostgreSQL then switches to a generic plan, which for a tenant's filtered list
        # scanned every node of the kind (1.1 s instead of 44 ms at 200k risks, bench/api.py).
        connect_args={"connect_timeout": 10, "application_name": "bastion",
                      "options": "-c plan_cache_mode=force_custom_plan"},
    )


def database_error(exc: Exception, url: str) -> Exception:
    """The user-facing error (ConfigError) for a database that cannot be used — missing tables,
    missing privileges, unreachable, not a database — or `exc` itself when it is a bug. Every front
    end maps the driver's errors through this one function."""
    orig = getattr(exc, "orig", None)
    text = str(orig or exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    undefined_table = (getattr(orig, "sqlstate", None) == "42P01"  # PostgreSQL undefined_table
                       or reason.startswith("no such table"))  # SQLite
    if undefined_table:
        return ConfigError(f"database {url} is not initialized: run `bastion init` first")
    if getattr(orig, "sqlstate", None) == "55P03" or reason == "database is locked":
        # a lock wait that ran out outside the write path's own bounded wait
        return Busy("busy: another writer held a lock for longer than the lock timeout "
                    "(nothing was written; retry later or raise BASTION_LOCK_TIMEOUT)")
    if getattr(orig, "sqlstate", None) == "42501":  # PostgreSQL insufficient_privilege
        return ConfigError(f"database {url}: {reason} (tenant administration, `init` and "
                           "migrations need the owner login; after a restore without grants run "
                           "`bastion db grants` as the owner)")
    # A bare DatabaseError is SQLite's "file is not a database" (a subclass would be a bug).
    if isinstance(exc, OperationalError) or type(exc) is DatabaseError:
        return ConfigError(f"cannot open database {url}: {reason}")
    return exc
