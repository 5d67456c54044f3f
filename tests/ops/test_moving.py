"""A tenant moves between engines through the portable export: SQLite → PostgreSQL → SQLite (and
the reverse), every read the same, the event counter continuing after the imported events, row-
level security respected on import, and bad files refused whole."""

from __future__ import annotations

import gzip

import orjson
import pytest

from bastion.errors import ConfigError, Malformed
from bastion.ops import moving
from bastion.schema.batch import Batch
from bastion.store import backup as native
from bastion.store.store import Store

from ops.reads import reads
from cli_harness import Cli
from reliability.test_migration_roundtrip import populate


def digests(store: Store, name: str):
    return native.tenant_digests_by_name(store.engine, name)


def test_a_tenant_goes_to_the_other_engine_and_back_with_every_read_the_same(
        store, engine_name, other_engine, make_database, tmp_path):
    populate(store)
    populate_second = store.add_tenant("bystander")  # another tenant stays where it is
    assert populate_second.name == "bystander"
    first = tmp_path / "acme.ndjson.gz"
    exported = moving.export_tenant(store, "acme", first)
    assert exported.tenants == ["acme"] and exported.tables["acme"]["event"].rows > 0
    assert gzip.open(first).readline().startswith(b'{"engine":"%s"' % engine_name.encode())

    there = Store(make_database(other_engine))
    back = Store(make_database(engine_name))
    try:
        imported = moving.import_tenant(there, first)
        assert imported.tenants == {"acme": exported.tables["acme"]["event"].rows}
        assert [t.name for t in there.tenants()] == ["acme"]
        assert reads(there, "acme") == reads(store, "acme")
        assert digests(there, "acme") == digests(store, "acme") == exported.tables["acme"]

        second = tmp_path / "acme-again.ndjson"
        moving.export_tenant(there, "acme", second)
        moving.import_tenant(back, second)
        assert reads(back, "acme") == reads(store, "acme")
        assert digests(back, "acme") == digests(store, "acme")
    finally:
        there.close()
        back.close()


def test_the_event_sequence_continues_after_the_imported_events(store, other_engine, make_database,
                                                                 tmp_path):
    t = store.ensure_tenant("acme") and store.tenant("acme")
    b = Batch()
    b.add("asset", identifier="www.acme.example")
    t.apply(b, actor="tester", source="test")
    t.set_setting("risk_initial_status", "open", actor="tester", source="test")
    top = t.events()[-1].seq
    path = tmp_path / "acme.ndjson"
    moving.export_tenant(store, "acme", path, shared=False)
    there = Store(make_database(other_engine))
    try:
        moving.import_tenant(there, path, rename="acme-moved")
        moved = there.tenant("acme-moved")
        b = Batch()
        b.add("asset", identifier="api.acme.example")
        moved.apply(b, actor="tester", source="test")  # PostgreSQL: only reserved numbers may be used
        assert [e.seq for e in moved.events()] == list(range(1, top + 2))
        assert moved.events()[-1].event_type == "asset.created"
    finally:
        there.close()


def test_an_import_refuses_a_tenant_with_data_and_bad_files_whole(store, engine_name, make_database,
                                                                    tmp_path):
    populate(store)
    path = tmp_path / "acme.ndjson"
    moving.export_tenant(store, "acme", path)
    with pytest.raises(ConfigError, match="tenant 'acme' already exists with data: import it under "
                                          r"another name \(--as NAME\)"):
        moving.import_tenant(store, path)

    target = Store(make_database(engine_name))
    try:
        lines = path.read_bytes().splitlines(keepends=True)
        cut = tmp_path / "cut.ndjson"
        cut.write_bytes(b"".join(lines[:-40]))
        with pytest.raises(Malformed, match=r"cut.ndjson, line \d+: "):
            moving.import_tenant(target, cut)
        assert target.tenants() == []  # all or nothing: not even the tenant stays

        # a file that names tenant_id columns cannot place rows in another tenant
        sneaky = tmp_path / "sneaky.ndjson"
        out = []
        for line in lines:
            item = orjson.loads(line)
            if isinstance(item, dict) and item.get("table") == "setting":
                item["columns"] = ["tenant_id", *item["columns"]]
            out.append(orjson.dumps(item) + b"\n")
        sneaky.write_bytes(b"".join(out))
        with pytest.raises(Malformed, match=r"table setting: columns \['tenant_id'\] are not in"):
            moving.import_tenant(target, sneaky)
        assert target.tenants() == []

        # events out of their order (two swapped) or missing: refused, nothing stays
        header = next(i for i, line in enumerate(lines)
                      if isinstance(item := orjson.loads(line), dict) and item.get("table") == "event")
        swapped = [*lines[:header + 1], lines[header + 2], lines[header + 1], *lines[header + 3:]]
        unordered = tmp_path / "unordered.ndjson"
        unordered.write_bytes(b"".join(swapped))
        with pytest.raises(Malformed, match=r"event 2 where 1 was due: the events must be numbered"):
            moving.import_tenant(target, unordered)
        assert target.tenants() == []

        with pytest.raises(ConfigError, match="no tenant named 'nobody'"):
            moving.export_tenant(store, "nobody", tmp_path / "x.ndjson")
    finally:
        target.close()


def test_import_as_a_non_superuser_owner_runs_under_row_level_security(store, owned, runner, tmp_path):
    populate(store)
    path = tmp_path / "acme.ndjson.gz"
    moving.export_tenant(store, "acme", path)
    owner_url, app_url = owned()
    Cli(runner, owner_url)("init")
    owner = Store(owner_url)
    try:
        imported = moving.import_tenant(owner, path)
        # `init` activated its default ATT&CK release; the imported one is added, not activated
        assert imported.shared_added["attack_release"] == 1
        here, there = reads(owner, "acme"), reads(store, "acme")
        assert here.pop("catalog") != there.pop("catalog")
        assert here == there
        # the application login sees the imported tenant's rows only when bound to it
        app = Store(app_url)
        try:
            assert app.tenant("default").count("asset") == 0
            assert app.tenant("acme").count("asset") == store.tenant("acme").count("asset") > 0
        finally:
            app.close()
    finally:
        owner.close()
