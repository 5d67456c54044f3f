"""Engines: SQLite (embedded default) and PostgreSQL, chosen by URL."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from bastion.errors import ConfigError

APP_ROLE = "bastion_app"  # non-owner role every tenant transaction runs as on PostgreSQL


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
    cur.execute("PRAGMA busy_timeout=10000")
    # 16 MiB of pages, not the 2 MiB default: large imports re-read indexes (32 MiB was no faster
    # on a 1M-finding import and pushed its peak RSS past 300 MB)
    cur.execute("PRAGMA cache_size=-16384")
    cur.close()


def _sqlite_begin(conn) -> None:
    # A write transaction takes the write lock at BEGIN (IMMEDIATE), so a read-then-write batch
    # cannot deadlock; reads begin DEFERRED and never wait for, or block, each other.
    write = conn.get_execution_options().get("bastion_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str | None = None, *, echo: bool = False, create: bool = True) -> Engine:
    """`create=False`: a SQLite file that does not exist is a ConfigError, and neither it nor its
    directory is created (every command but `init`, `demo` and `db upgrade` only uses a
    database that is there)."""
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
        connect_args={"connect_timeout": 10, "application_name": "bastion"},
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
    if getattr(orig, "sqlstate", None) == "42501":  # PostgreSQL insufficient_privilege
        return ConfigError(f"database {url}: {reason} (tenant administration, `init` and "
                           "migrations need the owner login; after a restore without grants run "
                           "`bastion db grants` as the owner)")
    # A bare DatabaseError is SQLite's "file is not a database" (a subclass would be a bug).
    if isinstance(exc, OperationalError) or type(exc) is DatabaseError:
        return ConfigError(f"cannot open database {url}: {reason}")
    return exc
