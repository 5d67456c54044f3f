"""`bastion backup FILE`, `bastion restore FILE`, `bastion backup verify FILE`.

Three kinds of backup file, told apart by their first bytes:
- `sqlite`: a SQLite database file, copied by SQLite's online backup API (writers go on);
- `pg_custom`: `pg_dump --format=custom` of a PostgreSQL database (restored by `pg_restore`);
- `portable`: the portable export (bastion.store.portable) of every tenant and the shared reference
  data; restorable into either engine (`--portable`).

A native backup is written with a manifest beside it (`FILE.manifest.json`): the engine, the
schema revision, the file's SHA-256 and, per table, the row count and content digest read in the
same instant the backup was taken. `verify` restores the file into a scratch database (a temporary
SQLite file, or a scratch database on the PostgreSQL server) and compares every table with the
manifest; a portable export carries its digests in the file itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson

from sqlalchemy.exc import IntegrityError

from bastion.errors import BastionError, ConfigError
from bastion.store import backup as native
from bastion.store import portable
from bastion.store.backup import TableDigest
from bastion.store.store import Store

MANIFEST_SUFFIX = ".manifest.json"


@dataclass
class Manifest:
    kind: str  # sqlite | pg_custom | portable
    engine: str
    revision: str | None
    created_at: str
    sha256: str
    bytes: int
    tables: dict[str, TableDigest]  # portable: "<tenant>/<table>" and "shared/<table>"

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["tables"] = {k: {"rows": v.rows, "sha": v.sha} for k, v in sorted(self.tables.items())}
        return d

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        try:
            d = orjson.loads(path.read_bytes())
            d["tables"] = {k: TableDigest(v["rows"], v["sha"]) for k, v in d["tables"].items()}
            return cls(**d)
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a readable backup manifest ({exc})") from None


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def kind_of_file(path: Path) -> str:
    """sqlite, pg_custom or portable (by content), else a ConfigError naming the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise ConfigError(f"cannot read backup {path}: {exc.strerror or exc}") from None
    if head.startswith(native.SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(native.PG_CUSTOM_MAGIC):
        return "pg_custom"
    if portable.is_export(path):
        return "portable"
    raise ConfigError(f"{path}: not a Bastion backup (neither a SQLite file, a pg_dump custom "
                      "archive nor a portable export)")


def _flatten(sections: dict[str, dict[str, TableDigest]]) -> dict[str, TableDigest]:
    return {f"{section or 'shared'}/{table}": d for section, tables in sections.items()
            for table, d in tables.items()}


def backup(store: Store, path: str | Path, *, portable_format: bool = False) -> Manifest:
    """Back the whole database up to `path` (its manifest beside it). `portable_format`: the
    portable export of every tenant instead of the engine's native format."""
    path = Path(path)
    store.require_owner("bastion backup")
    if path.exists() and path.is_dir():
        raise ConfigError(f"{path} is a directory: give the backup file's name")
    revision = store.revision()
    if portable_format:
        tmp = path.with_name(path.name + ".partial")
        with portable.gzip_writer(tmp, path.name.endswith(".gz")) as out:
            done = portable.export(store, out, portable.tenant_ids(store, None))
        os.replace(tmp, path)
        kind, tables = "portable", _flatten(done.tables)
    elif store.dialect == "sqlite":
        kind, tables = "sqlite", native.sqlite_backup(store, path)
    else:
        kind, tables = "pg_custom", native.pg_backup(store, path)
    manifest = Manifest(kind, store.dialect, revision,
                        datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        file_sha256(path), path.stat().st_size, tables)
    manifest_path(path).write_bytes(orjson.dumps(manifest.as_dict(), option=orjson.OPT_INDENT_2))
    return manifest


@dataclass
class Restored:
    kind: str
    revision: str | None
    tenants: list[str] = field(default_factory=list)


def restore(store: Store, path: str | Path, *, replace: bool = False) -> Restored:
    """Restore a backup into the store's database. A database that holds tenants is replaced only
    with `replace` (native backups replace everything; a portable export adds its tenants to an
    initialized database and refuses tenants that exist with data)."""
    path = Path(path)
    kind = kind_of_file(path)
    store.require_owner("bastion restore")
    if kind == "portable":
        store.require_head(store.url)
        with portable.open_export(path) as stream:
            done = portable.import_export(store, stream, str(path))
        return Restored(kind, store.revision(), list(done.tenants))
    expected = "sqlite" if kind == "sqlite" else "postgresql"
    if store.dialect != expected:
        raise ConfigError(f"{path} is a {expected} backup and cannot be restored into "
                          f"{store.dialect}; move between engines with a portable backup "
                          "(`bastion backup --portable`) or `bastion tenant export`")
    if not replace and native.has_tenants(store):
        raise ConfigError(f"database {store.url} holds tenants: restoring replaces all of it; "
                          "give --replace to do so")
    if kind == "sqlite":
        native.sqlite_restore(store, path)
    else:
        native.pg_restore(store, path)
        store.apply_grants("bastion restore")  # the dump carries no grants (--no-privileges)
    return Restored(kind, store.revision())


@dataclass
class TableCheck:
    table: str
    expected: TableDigest | None
    found: TableDigest | None

    @property
    def ok(self) -> bool:
        return self.expected == self.found


@dataclass
class Verification:
    path: str
    kind: str
    sha256_ok: bool | None  # None: no manifest to compare with
    integrity: str  # "ok" or the problem (SQLite's integrity check, pg_restore's error)
    checks: list[TableCheck]

    @property
    def ok(self) -> bool:
        return self.sha256_ok is not False and self.integrity == "ok" and all(c.ok for c in self.checks)

    def as_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "ok": self.ok, "sha256_ok": self.sha256_ok,
                "integrity": self.integrity,
                "tables": [{"table": c.table, "ok": c.ok,
                            "expected_rows": c.expected.rows if c.expected else None,
                            "rows": c.found.rows if c.found else None} for c in self.checks]}


def _compare(expected: dict[str, TableDigest], found: dict[str, TableDigest]) -> list[TableCheck]:
    return [TableCheck(t, expected.get(t), found.get(t)) for t in sorted(expected.keys() | found.keys())]


def verify(path: str | Path, *, store: Store | None = None) -> Verification:
    """Restore the backup into a scratch database and compare every table's count and digest
    with what was backed up. A pg_dump archive needs `store` on a PostgreSQL server (the
    scratch database is created there and dropped); the others need nothing."""
    path = Path(path)
    kind = kind_of_file(path)
    if kind == "portable":
        return _verify_portable(path)
    mpath = manifest_path(path)
    if not mpath.exists():
        raise ConfigError(f"{path}: its manifest {mpath.name} is missing; without it there is "
                          "nothing to compare the restored tables with")
    manifest = Manifest.load(mpath)
    sha_ok = file_sha256(path) == manifest.sha256
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bastion-verify-") as tmp:
            scratch = Path(tmp) / "scratch.db"
            shutil.copyfile(path, scratch)  # the check must not touch the backup itself
            integrity = native.sqlite_integrity(scratch)
            found = native.sqlite_file_digests(scratch) if integrity == "ok" else {}
        return Verification(str(path), kind, sha_ok, integrity, _compare(manifest.tables, found))
    if store is None or store.dialect != "postgresql":
        raise ConfigError(f"{path} is a PostgreSQL dump: verify it against a PostgreSQL server "
                          "(--db postgresql://…), where a scratch database is created and dropped")
    with native.scratch_database(store) as scratch:
        try:
            native.pg_restore(scratch, path)
            integrity = "ok"
            found = native.database_digests(scratch)
        except ConfigError as exc:
            integrity, found = str(exc), {}
    return Verification(str(path), kind, sha_ok, integrity, _compare(manifest.tables, found))


def _verify_portable(path: Path) -> Verification:
    """Import the export into a scratch SQLite database and digest what arrived."""
    with tempfile.TemporaryDirectory(prefix="bastion-verify-") as tmp:
        scratch = Store(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        try:
            scratch.upgrade()
            try:
                with portable.open_export(path) as stream:
                    done = portable.import_export(scratch, stream, str(path))
                integrity = "ok"
            except (BastionError, IntegrityError) as exc:  # a damaged file: what verify is for
                return Verification(str(path), "portable", None, str(exc).splitlines()[0], [])
            expected = _flatten(done.digests)
            found = _flatten({"": native.shared_digests(scratch),
                              **{name: native.tenant_digests_by_name(scratch, name)
                                 for name in done.tenants}})
        finally:
            scratch.close()
    return Verification(str(path), "portable", None, integrity, _compare(expected, found))
