"""The `bastion` command line on both engines: each test drives the CLI with `--db` on the
`database_url` fixture and checks what it prints and what the store then holds."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from cli_harness import Cli, cli, one_error_line, runner  # noqa: F401 (fixtures)
from bastion.schema.kinds import REGISTRY, SEVERITIES
from bastion.store import migrate
from bastion.store.store import Store

ASSET = "#asset#www.acme.example#www.acme.example"
IP = "#asset#203.0.113.10#203.0.113.10"
PORT = "#port#tcp#443#asset#203.0.113.10#203.0.113.10"
RISK = "#risk#203.0.113.10#CVE-2021-41773"


def add_surface(cli: Cli) -> None:
    cli("add", "asset", "--identifier", "WWW.Acme.Example.", "--exposure", "external",
        "--property", "owner=web-team", "--property", "tier=2")
    cli("add", "asset", "--identifier", "203.0.113.10")
    cli("add", "port", "--asset", IP, "--number", "443", "--service", "HTTPS")
    cli("add", "risk", "--target", PORT, "--cve", "cve-2021-41773", "--severity", "high",
        "--cvss", "7.5")


# -- init and migrations -----------------------------------------------------------------------


@pytest.mark.unmigrated
def test_init_is_idempotent_and_db_current_shows_head(runner, database_url):
    cli = Cli(runner, database_url)
    if database_url.startswith("sqlite"):
        # A read never creates the file: `db current` on a missing file says so and leaves none.
        path = Path(database_url.removeprefix("sqlite:///"))
        assert not path.exists()
        assert one_error_line(cli("db", "current", code=1)) == (
            f"error: no database at {path}; run `bastion init`")
        assert not path.exists()
        path.touch()  # an empty file is an empty database
    assert "empty database" in cli("db", "current").stdout
    # Before init, data commands say what to do instead of failing on missing tables.
    msg = one_error_line(cli("list", "assets", code=1))
    assert "run `bastion init` first" in msg

    first = cli("init").stdout
    assert f"revision {migrate.head()} (created)" in first
    assert "tenant:   default ready" in first
    second = cli("init").stdout
    assert "(already up to date)" in second
    assert [t["name"] for t in cli.json("tenant", "list")] == ["default"]
    assert cli("db", "current").stdout.strip() == f"revision: {migrate.head()} (head)"


def test_db_downgrade_then_upgrade_reports_revisions(cli):
    revisions = migrate.revisions()
    assert f"revision: {revisions[-2]} (not head" in cli("db", "downgrade").stdout
    # A schema behind the code is refused with the command that fixes it.
    assert "run `bastion db upgrade`" in one_error_line(cli("stats", code=1))
    assert cli("db", "upgrade").stdout.strip() == f"revision: {revisions[-1]} (head)"
    msg = one_error_line(cli("db", "upgrade", "no-such-revision", code=4))
    assert "no-such-revision" in msg


# -- add, get, list, history -------------------------------------------------------------------


def test_add_reports_created_unchanged_updated(cli):
    args = ("add", "asset", "--identifier", "www.acme.example")
    assert cli(*args).stdout.split() == ["created", ASSET]
    assert cli(*args).stdout.split() == ["unchanged", ASSET]
    assert cli(*args, "--exposure", "external").stdout.split() == ["updated", ASSET]


def test_added_entities_read_back_through_get_list_and_history(cli):
    add_surface(cli)

    asset = cli.json("get", ASSET)
    assert asset["key"] == ASSET and asset["entity_version"] == 1
    assert asset["identifier"] == "www.acme.example" and asset["class"] == "domain"
    assert asset["exposure"] == "external"
    assert asset["properties"] == {"owner": "web-team", "tier": 2}  # VALUE parsed as JSON

    port = cli.json("get", PORT)
    assert (port["number"], port["protocol"], port["service"]) == (443, "tcp", "https")
    assert {(l["relationship"], l["source"], l["target"]) for l in port["links"]} == {
        ("HAS_PORT", IP, PORT), ("HAS_VULNERABILITY", PORT, RISK)}

    risk = cli.json("get", RISK)
    assert (risk["cve"], risk["severity"], risk["cvss"], risk["status"]) == (
        "CVE-2021-41773", "high", 7.5, "triage")
    text = cli("get", RISK).stdout
    assert "severity" in text and "high" in text and "HAS_VULNERABILITY" in text

    listed = cli.json("list", "assets")
    assert [i["key"] for i in listed["items"]] == [IP, ASSET]
    assert listed["next_cursor"] is None
    assert listed["items"][1]["first_seen"].endswith("Z")  # datetimes as ISO 8601 text
    table = cli("list", "asset").stdout
    assert ASSET in table and "external" in table

    # --merge changes only the status; severity and cvss are kept.
    assert cli("add", "risk", "--target", PORT, "--cve", "CVE-2021-41773", "--status", "open",
               "--merge").stdout.split() == ["updated", RISK]
    risk = cli.json("get", RISK)
    assert (risk["status"], risk["severity"], risk["cvss"], risk["entity_version"]) == (
        "open", "high", 7.5, 2)
    events = cli.json("history", RISK)
    assert [e["event_type"] for e in events] == ["risk.created", "risk.status_changed"]
    changed = events[-1]
    assert changed["diff"] == {"status": ["triage", "open"]}
    assert (changed["actor"], changed["source"], changed["entity_version"]) == ("tester", "cli", 2)
    assert "status: triage → open" in cli("history", RISK).stdout


def test_get_as_of_rebuilds_the_past_state(cli):
    add_surface(cli)
    created_at = cli.json("history", ASSET)[0]["occurred_at"]
    cli("add", "asset", "--identifier", "www.acme.example", "--exposure", "internal")
    then = cli.json("get", ASSET, "--as-of", created_at)
    assert (then["exposure"], then["entity_version"]) == ("external", 1)
    assert cli.json("get", ASSET)["exposure"] == "internal"
    msg = one_error_line(cli("get", ASSET, "--as-of", "2000-01-01T00:00:00Z", code=4))
    assert msg == f"error: no asset with key {ASSET} at 2000-01-01T00:00:00Z"


def test_add_seed_adds_its_asset_with_a_discovered_edge(cli):
    out = cli("add", "seed", "--identifier", "acme.example").stdout.splitlines()
    assert out[0].split() == ["created", "#seed#domain#acme.example"]
    assert out[1].split()[:2] == ["created", "#asset#acme.example#acme.example"]
    links = cli.json("get", "#asset#acme.example#acme.example")["links"]
    assert [(l["relationship"], l["source"]) for l in links] == [
        ("DISCOVERED", "#seed#domain#acme.example")]

    # An existing asset is linked, not reset to defaults.
    cli("add", "asset", "--identifier", "198.51.100.7", "--criticality", "critical")
    out = cli("add", "seed", "--identifier", "198.51.100.7", "--class", "ip").stdout
    assert "linked    #asset#198.51.100.7#198.51.100.7" in out
    asset = cli.json("get", "#asset#198.51.100.7#198.51.100.7")
    assert asset["criticality"] == "critical" and asset["entity_version"] == 1
    assert [l["source"] for l in asset["links"]] == ["#seed#ip#198.51.100.7"]
    # A cloud-account seed names no asset.
    out = cli("add", "seed", "--identifier", "123456789012", "--class", "cloud_account").stdout
    assert len(out.splitlines()) == 1


def test_list_pages_with_limit_and_after(cli):
    names = [f"h{i}.acme.example" for i in range(7)]
    for name in names:
        cli("add", "asset", "--identifier", name)
    keys, cursor, pages = [], None, 0
    while True:
        page = cli.json("list", "assets", "--limit", "3", *(["--after", cursor] if cursor else []))
        keys += [i["key"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert keys == sorted(f"#asset#{n}#{n}" for n in names)

    # The table view prints the cursor of the next page.
    text = cli("list", "assets", "--limit", "5").stdout
    cursor = text.strip().splitlines()[-1].removeprefix("next page: --after ")
    rest = cli.json("list", "assets", "--after", cursor)
    assert [i["key"] for i in rest["items"]] == keys[5:]

    assert cli("list", "assets", "--count").stdout.strip() == "7"
    assert cli("list", "assets", "--count", "--prefix", "h1.").stdout.strip() == "1"
    top = cli.json("list", "assets", "--sort", "identifier", "--desc", "--limit", "2")
    assert [i["identifier"] for i in top["items"]] == ["h6.acme.example", "h5.acme.example"]


def test_list_filters_and_accepts_plural_kinds(cli):
    add_surface(cli)
    cli("add", "risk", "--target", PORT, "--name", "missing hsts header", "--severity", "low")
    high = cli.json("list", "risks", "--where", "severity=high")["items"]
    assert [r["key"] for r in high] == [RISK]
    either = cli.json("list", "risk", "--where", "severity=high", "--where", "severity=low")
    assert len(either["items"]) == 2
    assert cli.json("list", "ports", "--where", "number=443")["items"][0]["key"] == PORT
    assert cli("list", "technologies", "--count").stdout.strip() == "0"


def test_stats_counts_kinds_and_relationships(cli):
    add_surface(cli)
    counts = cli.json("stats")
    assert {k: counts[k] for k in ("asset", "port", "risk", "technology")} == {
        "asset": 2, "port": 1, "risk": 1, "technology": 0}
    assert counts["HAS_PORT"] == 1 and counts["HAS_VULNERABILITY"] == 1
    assert "HAS_VULNERABILITY" in cli("stats").stdout


def test_link_unlink_and_delete(cli):
    add_surface(cli)
    assert cli("link", "resolves_to", ASSET, IP).stdout.split()[0] == "added"
    assert cli("link", "RESOLVES_TO", ASSET, IP).stdout.split()[0] == "unchanged"
    assert cli("link", "RESOLVES_TO", ASSET, IP, "-p", "ttl=300").stdout.split()[0] == "updated"
    links = cli.json("get", ASSET)["links"]
    assert [(l["relationship"], l["target"], l["properties"]) for l in links] == [
        ("RESOLVES_TO", IP, {"ttl": 300})]

    cli("unlink", "RESOLVES_TO", ASSET, IP)
    assert cli.json("get", ASSET)["links"] == []
    one_error_line(cli("unlink", "RESOLVES_TO", ASSET, IP, code=4))

    assert "and 1 link(s)" in cli("delete", RISK).stdout
    one_error_line(cli("get", RISK, code=4))
    assert cli.json("history", RISK)[-1]["event_type"] == "risk.deleted"
    one_error_line(cli("delete", RISK, code=4))


def test_expected_version_conflict_exits_3(cli):
    cli("add", "asset", "--identifier", "www.acme.example")
    cli("add", "asset", "--identifier", "www.acme.example", "--exposure", "external",
        "--expected-version", "1")
    msg = one_error_line(cli("add", "asset", "--identifier", "www.acme.example",
                             "--expected-version", "1", code=3))
    assert "expected version 1, current is 2" in msg
    assert cli.json("get", ASSET)["exposure"] == "external"


# -- user mistakes -----------------------------------------------------------------------------


@pytest.mark.parametrize("args, code, says", [
    (["add", "asset", "--identifier", "999.1.1.1", "--class", "ipv4"], 2,
     "identifier: invalid IP address '999.1.1.1'"),
    (["add", "risk", "--target", PORT, "--name", "x", "--severity", "urgent"], 2,
     "severity: value 'urgent' is not one of: info, low, medium, high, critical"),
    (["add", "port", "--asset", IP, "--number", "https"], 2, "Invalid value for '--number'"),
    (["add", "widget", "--name", "x"], 2, "No such command 'widget'"),
    (["list", "widgets"], 1, "unknown kind 'widgets'"),
    (["list", "risks", "--where", "severity=urgent"], 1, "risk.severity cannot be 'urgent'"),
    (["get", "asset:www.acme.example"], 1, "invalid key 'asset:www.acme.example'"),
    (["get", "#port#tcp#x"], 1, "invalid port key"),
    (["get", ASSET], 4, f"no asset with key {ASSET}"),
    (["history", ASSET], 4, f"no history for {ASSET}"),
    (["link", "OWNS", ASSET, IP], 1, "unknown relationship 'OWNS'"),
    (["link", "HAS_PORT", ASSET, RISK], 2, "HAS_PORT cannot join a asset to a risk"),
    (["--tenant", "nobody", "stats"], 4, "no tenant named 'nobody'"),
    (["tenant", "add", "bad name!"], 1, "invalid tenant name"),
])
def test_user_mistakes_print_one_error_line(cli, args, code, says):
    result = cli(*args, code=code)
    assert says in one_error_line(result)


def test_several_validation_problems_are_listed_one_per_line(cli):
    # A port needs its asset and number: both problems are reported, each on its own line.
    result = cli("add", "port", "--protocol", "tcp", code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 2 and all(l.startswith("error: ") for l in lines)
    assert any("asset" in l for l in lines) and any("number" in l for l in lines)
    # A link between two keys that do not exist names both ends.
    result = cli("link", "RESOLVES_TO", ASSET, IP, code=2)
    assert result.stderr.strip().splitlines() == [
        f"error: relationship RESOLVES_TO {ASSET} -> {IP}: source {ASSET} does not exist",
        f"error: relationship RESOLVES_TO {ASSET} -> {IP}: target {IP} does not exist"]


def test_unreachable_database_is_one_error_line(runner, engine_name, tmp_path):
    if engine_name == "sqlite":  # a file that is no database (a missing one: see below)
        garbage = tmp_path / "bastion.db"
        garbage.write_bytes(b"not a database" * 100)
        url = f"sqlite:///{garbage}"
    else:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"postgresql://bastion:secret@127.0.0.1:{port}/bastion"
    result = Cli(runner, url)("stats", code=1)
    msg = one_error_line(result)
    assert msg.startswith("error: cannot open database ")
    assert "secret" not in msg  # the password is masked


def test_bad_database_url_is_one_error_line(runner):
    msg = one_error_line(Cli(runner, "mysql://x/y")("stats", code=1))
    assert "unsupported database 'mysql'" in msg


# -- tenants -----------------------------------------------------------------------------------


def test_tenants_are_listed_and_isolated(cli):
    cli("tenant", "add", "Alpha", "--display-name", "Alpha Corp")
    cli("tenant", "add", "beta")
    assert "already exists" in one_error_line(cli("tenant", "add", "alpha", code=1))
    tenants = {t["name"]: t["display_name"] for t in cli.json("tenant", "list")}
    assert tenants == {"alpha": "Alpha Corp", "beta": None, "default": None}

    cli("add", "asset", "--identifier", "www.acme.example", tenant="alpha")
    assert [i["key"] for i in cli.json("list", "assets", tenant="alpha")["items"]] == [ASSET]
    assert cli.json("list", "assets", tenant="beta")["items"] == []
    assert cli.json("list", "assets")["items"] == []  # the default tenant
    one_error_line(cli("get", ASSET, tenant="beta", code=4))
    assert cli.json("stats", tenant="beta")["asset"] == 0
    # The same key in another tenant is a different entity.
    assert cli("add", "asset", "--identifier", "www.acme.example",
               tenant="beta").stdout.split() == ["created", ASSET]


# -- help and demo (no database involved beyond the demo's own) ---------------------------------


def test_add_commands_are_generated_from_the_registry(runner):
    listing = runner.invoke(app, ["add", "--help"]).stdout
    for kind in REGISTRY.node_kinds:
        assert kind in listing
    help_text = runner.invoke(app, ["add", "risk", "--help"], env={"COLUMNS": "200"}).stdout
    for f in REGISTRY.entity("risk").fields:
        assert f"--{f.name.replace('_', '-')}" in help_text
    assert "One of: " + ", ".join(SEVERITIES) in help_text
    asset_help = runner.invoke(app, ["add", "asset", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--class" in asset_help  # a field named like a Python keyword


def test_every_field_type_becomes_a_typed_option(monkeypatch):
    # A kind with one field of each type, run through the same generator as the real kinds.
    import typer

    from bastion.cli import add
    from bastion.schema.registry import EntityKind, Field, FieldType as T

    kind = EntityKind(name="gadget", description="Test kind.", key=("name",), fields=(
        Field("name", required=True), Field("enabled", T.BOOL), Field("seen_at", T.DATETIME),
        Field("blob", T.JSON), Field("score", T.FLOAT), Field("count", T.INT),
        Field("owner", T.KEY, ref_kinds=("asset",)), Field("class", domain=("a", "b"))))
    calls = []
    monkeypatch.setattr(add, "add_entity", lambda sess, k, values, props, version, merge:
                        calls.append((k.name, values, props, version, merge)))
    sub = typer.Typer()
    sub.command("gadget")(add.make_add_command(kind))
    sub.callback()(lambda: None)
    result = CliRunner().invoke(sub, [
        "gadget", "--name", "g", "--no-enabled", "--seen-at", "2026-01-01T00:00:00Z",
        "--blob", '{"a": [1]}', "--score", "1.5", "--count", "3", "--owner", ASSET,
        "--class", "b", "-p", "k=v", "--expected-version", "2", "--merge"])
    assert result.exit_code == 0, result.output
    [(name, values, props, version, merge)] = calls
    assert name == "gadget" and props == {"k": "v"} and version == 2 and merge is True
    assert values == {"name": "g", "enabled": False,
                      "seen_at": datetime(2026, 1, 1, tzinfo=timezone.utc), "blob": {"a": [1]},
                      "score": 1.5, "count": 3, "owner": ASSET, "class": "b"}
    bad = CliRunner().invoke(sub, ["gadget", "--count", "many"])
    assert bad.exit_code == 2


def test_demo_runs_twice_and_the_second_run_changes_nothing(runner, tmp_path):
    home = tmp_path / "home"
    first = runner.invoke(app, ["demo"])
    assert first.exit_code == 0, (first.output, first.exception)
    assert "second apply: 0 created, 0 updated" in first.stdout
    assert "triage → open" in first.stdout
    assert "CVE-2018-13379" in first.stdout and "billing.acme.example" in first.stdout

    with Store(f"sqlite:///{home / 'bastion.db'}") as store:
        tenant = store.tenant("default")
        counts, events = tenant.counts(), len(tenant.events())
        assert counts["asset"] > 5 and counts["risk"] >= 5 and counts["DISCOVERED"] > 0
        assert tenant.count("asset", where={"criticality": "critical"}) == 2

    again = runner.invoke(app, ["demo"])
    assert again.exit_code == 0, (again.output, again.exception)
    assert "first apply:  0 created, 0 updated" in again.stdout
    assert "second apply: 0 created, 0 updated" in again.stdout
    assert "already open" in again.stdout
    with Store(f"sqlite:///{home / 'bastion.db'}") as store:
        tenant = store.tenant("default")
        assert tenant.counts() == counts
        assert len(tenant.events()) == events  # a re-run writes no event at all
        risk = tenant.get("#risk#203.0.113.10#CVE-2021-41773")
        assert risk.values["status"] == "open" and risk.version == 2
        # ... and it ends with how to serve the data, with an admin key kept for the re-runs
        key_file = home / "demo-admin.key"
        assert f"BASTION_HOME={home} .venv/bin/bastion serve" in again.stdout
        assert str(key_file) in again.stdout and oct(key_file.stat().st_mode & 0o777) == "0o600"
        principal = store.authenticator().authenticate(key_file.read_text().strip())
        assert (principal.name, principal.role) == ("demo-admin", "admin")
        assert [k.name for k in tenant.keys.list()] == ["demo-admin"]


# -- issue 10 (13) ------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [("stats",), ("list", "assets"), ("get", ASSET), ("history", ASSET),
                                  ("list", "risks", "--count")])
def test_read_commands_never_create_a_database(runner, tmp_path, args):
    path = tmp_path / "nothing" / "x.db"
    msg = one_error_line(Cli(runner, f"sqlite:///{path}")(*args, code=1))
    assert msg == f"error: no database at {path}; run `bastion init`"
    assert not path.exists() and not path.parent.exists()


def test_get_and_list_accept_non_normalized_keys_and_values(cli):
    add_surface(cli)
    assert cli.json("get", "#asset#WWW.Acme.example#WWW.Acme.example")["key"] == ASSET
    assert cli.json("get", "#risk#203.0.113.10#cve-2021-41773")["key"] == RISK
    assert [r["key"] for r in cli.json("list", "risks", "--where", "cve=cve-2021-41773")["items"]] == [RISK]
    assert cli.json("history", "#asset#WWW.Acme.example#WWW.Acme.example")[0]["entity_key"] == ASSET


def test_history_shows_the_note_of_an_event(cli, database_url):
    from bastion.schema.batch import Batch

    with Store(database_url) as store:
        b = Batch()
        b.add("asset", identifier="www.acme.example", note="re-opened: seen again by nuclei")
        store.tenant().apply(b, actor="a", source="s")
    assert cli.json("history", ASSET)[0]["note"] == "re-opened: seen again by nuclei"
    assert "re-opened: seen again by nuclei" in cli("history", ASSET).stdout


def column_text(out: str, column: int) -> str:
    """The text of one column of a Rich table, its wrapped lines joined."""
    return "".join(line.split("│")[column].strip() for line in out.splitlines()
                   if line.count("│") > column)


def test_tables_never_truncate_keys(runner, database_url, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    cli = Cli(runner, database_url)
    cli("init")
    long = "a-rather-long-host-name-for-a-narrow-terminal.acme.example"
    key = f"#asset#{long}#{long}"
    cli("add", "asset", "--identifier", long, "--exposure", "external")
    cli("add", "port", "--asset", key, "--number", "8443")
    port = f"#port#tcp#8443{key}"
    assert column_text(cli("list", "assets").stdout, 1) == key
    assert port in column_text(cli("get", key).stdout, 3)
    assert port in column_text(cli("list", "ports").stdout, 1)
    assert port in column_text(cli("graph", "neighbors", key).stdout, 3)
