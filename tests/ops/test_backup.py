"""Backup → restore → identical reads, and `verify` that catches a damaged backup; both engines."""

from __future__ import annotations

import sqlite3

import pytest

from bastion.errors import ConfigError
from bastion.ops import backup as ops
from bastion.store import backup as native
from bastion.store.store import Store

from ops.reads import reads
from reliability.test_migration_roundtrip import populate


@pytest.fixture
def populated(store):
    populate(store)
    return store


def test_native_backup_restores_every_table_and_read(populated, engine_name, make_database, tmp_path):
    path = tmp_path / "bastion.backup"
    manifest = ops.backup(populated, path)
    assert manifest.kind == ("sqlite" if engine_name == "sqlite" else "pg_custom")
    assert manifest.tables == native.database_digests(populated.engine)  # taken at one instant
    assert manifest.tables["node"].rows > 0 and manifest.tables["event"].rows > 0
    assert ops.manifest_path(path).exists()

    target = Store(make_database(engine_name, migrated=False))
    try:
        restored = ops.restore(target, path)
        assert restored.revision == populated.revision()
        assert native.database_digests(target.engine) == manifest.tables
        assert reads(target, "acme") == reads(populated, "acme")
        # the restored database takes writes (grants re-applied on PostgreSQL) and numbers on
        t = target.tenant("acme")
        top = t.events(after_seq=0, limit=100000)[-1].seq
        t.set_setting("risk_initial_status", "open", actor="tester", source="test")
        assert t.events(after_seq=top)[0].seq == top + 1
    finally:
        target.close()


def test_verify_accepts_a_good_backup_and_names_a_damaged_one(populated, engine_name, tmp_path):
    path = tmp_path / "bastion.backup"
    ops.backup(populated, path)
    good = ops.verify(path, store=populated)
    assert good.ok and good.sha256_ok and good.integrity == "ok"
    assert {c.table for c in good.checks} >= {"node", "event", "tenant", "alembic_version"}
    assert all(c.found == c.expected for c in good.checks)

    if engine_name == "sqlite":  # a node changed inside the copy: its table no longer matches
        conn = sqlite3.connect(path)
        conn.execute("UPDATE node SET version = version + 1 WHERE key = (SELECT min(key) FROM node)")
        conn.commit()
        conn.close()
        bad = ops.verify(path, store=populated)
        assert not bad.ok and bad.sha256_ok is False
        assert [c.table for c in bad.checks if not c.ok] == ["node"]
    else:  # a cut-short archive: pg_restore fails and verify says so
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        bad = ops.verify(path, store=populated)
        assert not bad.ok and bad.sha256_ok is False
        assert bad.integrity.startswith("pg_restore failed")


def test_restore_refuses_to_overwrite_tenants_or_cross_engines(populated, engine_name, other_engine,
                                                                 make_database, tmp_path):
    path = tmp_path / "bastion.backup"
    ops.backup(populated, path)
    with pytest.raises(ConfigError, match="holds tenants: restoring replaces all of it; give --replace"):
        ops.restore(populated, path)
    other = Store(make_database(other_engine))
    try:
        with pytest.raises(ConfigError, match="cannot be restored into .*portable backup"):
            ops.restore(other, path)
    finally:
        other.close()
    # --replace: the database goes back to the backup, a later change undone
    populated.tenant("acme").set_setting("risk_initial_status", "open", actor="tester", source="test")
    ops.restore(populated, path, replace=True)
    assert native.database_digests(populated.engine) == ops.Manifest.load(ops.manifest_path(path)).tables


def test_portable_backup_moves_the_whole_database_to_the_other_engine(populated, other_engine,
                                                                      make_database, tmp_path):
    path = tmp_path / "bastion.export.gz"
    manifest = ops.backup(populated, path, portable_format=True)
    assert manifest.kind == "portable" and manifest.tables["acme/event"].rows > 0
    checked = ops.verify(path)
    assert checked.ok and {c.table for c in checked.checks} == set(manifest.tables)
    target = Store(make_database(other_engine))
    try:
        assert ops.restore(target, path).tenants == ["acme"]
        assert reads(target, "acme") == reads(populated, "acme")
    finally:
        target.close()


def test_not_a_backup_is_one_clear_error(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(ConfigError, match=r"notes.txt: not a Bastion backup"):
        ops.verify(junk)
