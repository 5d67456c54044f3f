"""The operations commands end to end through the CLI, both engines: what they print, the files
they write, exit codes and one-line errors."""

from __future__ import annotations

from bastion.store.store import Store
from cli_harness import one_error_line


def test_backup_verify_restore_through_the_cli(cli, engine_name, make_database, runner, tmp_path):
    from cli_harness import Cli

    cli("add", "asset", "--identifier", "www.acme.example")
    path = tmp_path / "bastion.backup"
    out = cli("backup", str(path)).stdout
    assert f"to {path} (" in out and ("sqlite" if engine_name == "sqlite" else "pg_custom") in out
    checked = cli.json("backup", "verify", str(path))
    assert checked["ok"] and checked["integrity"] == "ok"
    assert {"table": "node", "ok": True, "expected_rows": 1, "rows": 1} in checked["tables"]

    assert "give --replace" in one_error_line(cli("restore", str(path), code=1))
    target = Cli(runner, make_database(engine_name, migrated=False))
    assert "restored the database" in target("restore", str(path)).stdout
    assert [a["key"] for a in target.json("list", "assets")["items"]] == [
        "#asset#www.acme.example#www.acme.example"]

    junk = tmp_path / "junk"
    junk.write_text("x")
    assert one_error_line(cli("backup", "verify", str(junk), code=1)).endswith(
        "junk: not a Bastion backup (neither a SQLite file, a pg_dump custom archive nor a "
        "portable export)")


def test_tenant_export_import_and_retention_through_the_cli(cli, other_engine, make_database, runner,
                                                           tmp_path):
    from cli_harness import Cli

    cli("add", "asset", "--identifier", "www.acme.example")
    path = tmp_path / "default.ndjson.gz"
    assert "exported tenant default to" in cli("tenant", "export", "default", str(path)).stdout
    other = Cli(runner, make_database(other_engine, migrated=False))
    other("init")
    assert "already exists with data" not in other("tenant", "import", str(path), "--as", "moved").stdout
    assert other.json("list", "assets", tenant="moved")["items"][0]["key"] == \
        "#asset#www.acme.example#www.acme.example"

    assert "no retention" in cli("retention", "show").stdout
    cli("retention", "set", "--days", "30")
    assert cli.json("retention", "show") == {"days": 30}
    report = cli.json("retention", "run", "--dry-run", "--now", "2099-01-01T00:00:00Z")
    # added by hand: a person's doing, never expires
    assert report["expired"] == [] and report["kept_decided"] == [
        "#asset#www.acme.example#www.acme.example"]
    assert "give --days N or --off" in one_error_line(cli("retention", "set", code=1))


def test_db_health_through_the_cli(cli, engine_name, database_url):
    health = cli.json("db", "health")
    assert health["ok"] is True and health["problems"] == []
    tables = {t["name"] for t in health["tables"]}
    assert {"node", "event"} <= tables
    if engine_name == "sqlite":
        assert health["integrity"] == "ok" and health["page_count"] > 0
    else:
        assert 0 <= health["cache_hit_ratio"] <= 1
    assert "healthy" in cli("db", "health").stdout
    Store(database_url).close()
