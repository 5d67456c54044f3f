"""`bastion import` and `bastion graph …` on both engines: each test drives the CLI with `--db` on
the `database_url` fixture and checks what it prints (JSON, tables, one error line) and what the
store then holds."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from cli_harness import Cli, cli, one_error_line, runner  # noqa: F401 (fixtures)
from bastion.graph.render import graph_id
from test_graph_format import (
    CORP, CORP_NODES, DB, DB_TAG, IP, NMAP, PORT, PORT_RISK, SEED, WEB, WEB_RISK)

# CORP plus a second way from the web server to the database (through its address).
NETWORK = {"nodes": CORP["nodes"],
           "edges": CORP["edges"] + [{"kind": "DEPENDS_ON", "from": IP, "to": DB}]}
NOPE = "#asset#nope.example#nope.example"


@pytest.fixture
def network(cli, tmp_path) -> Cli:
    path = tmp_path / "network.json"
    path.write_text(json.dumps(NETWORK))
    cli("import", str(path))
    return cli


# -- import -----------------------------------------------------------------------------------------


def test_import_is_all_or_nothing_and_idempotent(cli, tmp_path):
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(CORP))
    first = cli.json("import", str(path))
    assert {k: first[k] for k in ("files", "nodes", "edges", "created", "updated", "unchanged",
                                  "edges_added")} == {
        "files": [str(path)], "nodes": len(CORP_NODES), "edges": 4, "created": len(CORP_NODES),
        "updated": 0, "unchanged": 0, "edges_added": 8}  # 4 given, 4 implied by key fields
    again = cli.json("import", str(path))
    assert (again["created"], again["updated"], again["unchanged"], again["edges_unchanged"],
            again["events"]) == (0, 0, len(CORP_NODES), 8, 0)
    db = cli.json("get", DB)
    assert [(l["relationship"], l["source"], l["target"]) for l in db["links"]] == [
        ("HAS_ATTRIBUTE", DB, DB_TAG), ("CONNECTS_TO", WEB, DB)]
    events = cli.json("history", WEB)
    assert {(e["actor"], e["source"]) for e in events} == {("tester", "import:graph")}


def test_import_prints_a_summary_and_records_the_source(cli, tmp_path):
    path = tmp_path / "cmdb.json"
    path.write_text(json.dumps({"nodes": [{"kind": "asset", "name": "db1.corp.example",
                                           "tags": ["critical"]}]}))
    out = cli("import", str(path), "--format", "graph", "--source", "cmdb").stdout
    assert out.splitlines()[:3] == [
        f"imported  {path} (2 node(s), 0 edge(s))",
        "nodes:    2 created, 0 updated, 0 unchanged",
        "edges:    1 added, 0 updated, 0 unchanged"]
    assert [e["source"] for e in cli.json("history", DB)] == ["cmdb", "cmdb"]


def test_import_reads_standard_input(cli):
    result = cli.json("import", "-", input=json.dumps(CORP))
    assert result["files"] == ["<stdin>"] and result["created"] == len(CORP_NODES)
    assert cli.json("stats")["asset"] == 3


def test_import_errors_name_file_and_position_and_write_nothing(cli, tmp_path):
    bad = {"nodes": [{"kind": "asset", "name": "web1.corp.example"},
                     {"kind": "asset", "name": "db1..corp.example"}],
           "edges": [{"kind": "CONNECTS_TO", "from": {"kind": "asset", "name": "web1.corp.example"},
                      "to": {"kind": "asset", "name": "db2.corp.example"}}]}
    good = tmp_path / "good.json"
    good.write_text(json.dumps(CORP))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = cli("import", str(good), str(path), code=2)
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: nodes[1].name: invalid DNS name 'db1..corp.example': empty label"]
    (tmp_path / "bad2.json").write_text(json.dumps({"edges": bad["edges"]}))
    result = cli("import", str(good), str(tmp_path / "bad2.json"), code=2)
    assert one_error_line(result) == (
        f"error: {tmp_path / 'bad2.json'}: edges[0].to: #asset#db2.corp.example#db2.corp.example "
        "is neither defined in the import nor stored in tenant 'default'")
    # Two files, one batch: the good one was not applied either.
    assert cli.json("stats")["asset"] == 0
    msg = one_error_line(cli("import", str(tmp_path / "missing.json"), code=1))
    assert msg == f"error: cannot read {tmp_path / 'missing.json'}: No such file or directory"
    # Not JSON, so not recognised as a graph document: named with --format, it is one error line.
    msg = one_error_line(cli("import", "--format", "graph", "-", input="{nodes: []}", code=2))
    assert msg.startswith("error: <stdin>: not valid JSON: ")


def test_import_merges_unless_replace(cli, tmp_path):
    cli("add", "asset", "--identifier", "db1.corp.example", "--exposure", "internal")
    path = tmp_path / "cmdb.json"
    path.write_text(json.dumps({"nodes": [{"kind": "asset", "name": "db1.corp.example",
                                           "criticality": "critical"}]}))
    cli("import", str(path))
    rec = cli.json("get", DB)
    assert (rec["exposure"], rec["criticality"], rec["entity_version"]) == ("internal", "critical", 2)
    cli("import", str(path), "--replace")
    assert cli.json("get", DB)["exposure"] == "unknown"


# -- queries ----------------------------------------------------------------------------------------


def test_neighbors(network):
    out = network.json("graph", "neighbors", WEB)
    assert out["key"] == WEB
    assert [(n["direction"], n["relationship"], n["key"], n["kind"], n["distance"])
            for n in out["nodes"]] == [
        ("out", "CONNECTS_TO", DB, "asset", 1),
        ("out", "HAS_PORT", PORT, "port", 1),
        ("out", "HAS_VULNERABILITY", WEB_RISK, "risk", 1),
        ("out", "RESOLVES_TO", IP, "asset", 1),
        ("in", "DISCOVERED", SEED, "seed", 1)]
    only = network.json("graph", "neighbors", WEB, "--direction", "in", "--kind", "discovered")
    assert [n["key"] for n in only["nodes"]] == [SEED]
    table = network("graph", "neighbors", WEB).stdout
    assert table.startswith(f"Neighbors of {WEB}\n") and "CONNECTS_TO" in table and "←" in table


def test_reach(network):
    out = network.json("graph", "reach", WEB, "--depth", "1")
    assert [(n["key"], n["distance"]) for n in out["nodes"]] == sorted(
        [(WEB, 0), (DB, 1), (IP, 1), (PORT, 1), (WEB_RISK, 1)], key=lambda p: (p[1], p[0]))
    back = network.json("graph", "reach", DB, "-d", "2", "--direction", "in")
    assert [(n["key"], n["distance"]) for n in back["nodes"]] == [
        (DB, 0), (IP, 1), (WEB, 1), (SEED, 2)]
    only = network.json("graph", "reach", WEB, "--kind", "RESOLVES_TO", "-k", "depends_on")
    assert [(n["key"], n["distance"]) for n in only["nodes"]] == [(WEB, 0), (IP, 1), (DB, 2)]
    table = network("graph", "reach", WEB, "--kind", "RESOLVES_TO").stdout
    assert table.startswith(f"Reachable from {WEB}: 2\n") and IP in table


def test_path(network):
    out = network.json("graph", "path", SEED, DB)
    assert out == {"from": SEED, "to": DB, "paths": [{"length": 2, "path": [SEED, WEB, DB]}]}
    every = network.json("graph", "path", SEED, DB, "--all")
    assert [p["path"] for p in every["paths"]] == [[SEED, WEB, DB], [SEED, WEB, IP, DB]]
    one = network.json("graph", "path", SEED, DB, "--all", "--max", "1")
    assert [p["path"] for p in one["paths"]] == [[SEED, WEB, DB]]
    assert network.json("graph", "path", DB, SEED)["paths"] == []
    assert network.json("graph", "path", DB, SEED, "--direction", "in")["paths"] == [
        {"length": 2, "path": [DB, WEB, SEED]}]
    assert network.json("graph", "path", SEED, DB, "--depth", "1")["paths"] == []
    text = network("graph", "path", SEED, DB, "--all").stdout
    assert "Path 1 of 2: 2 step(s)" in text and "Path 2 of 2: 3 step(s)" in text
    assert network("graph", "path", DB, SEED).stdout.strip() == (
        f"no path from {DB} to {SEED} within depth 6")


def test_provenance(network):
    web = network.json("graph", "provenance", WEB)
    web.pop("runs")  # which import runs recorded it: tests/test_graph_queries.py
    assert web == {"key": WEB, "found_on": None, "tools": [], "seed_reachable": True,
                   "stranded": [], "truncated": False,
                   "chains": [{"path": [SEED, WEB], "steps": [
                       {"position": 0, "key": SEED, "kind": "seed", "capabilities": []},
                       {"position": 1, "key": WEB, "kind": "asset", "capabilities": []}]}]}
    # a port: found on its asset (and that from the seed), by nmap
    port = network.json("graph", "provenance", PORT)
    assert (port["found_on"], port["tools"]) == (WEB, [NMAP])
    assert [c["path"] for c in port["chains"]] == [[SEED, WEB, PORT]]
    risk = network.json("graph", "provenance", PORT_RISK)
    assert (risk["found_on"], [c["path"] for c in risk["chains"]]) == (
        PORT, [[SEED, WEB, PORT, PORT_RISK]])
    text = network("graph", "provenance", PORT).stdout
    assert text.startswith(f"Provenance of {PORT}\nfound on:    {WEB}\nfound by:    {NMAP}\n")


def test_provenance_in_a_cycle_without_a_seed(cli, tmp_path):
    """BBOT's speculate events make DISCOVERED cycles: none of their members is a root."""
    a, b, c = ("#asset#a.example#a.example", "#asset#b.example#b.example",
               "#asset#c.example#c.example")
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps({"nodes": [{"key": k} for k in (a, b, c)], "edges": [
        {"kind": "DISCOVERED", "from": a, "to": b}, {"kind": "DISCOVERED", "from": b, "to": a},
        {"kind": "DISCOVERED", "from": c, "to": b}, {"kind": "DISCOVERED", "from": a, "to": c}]}))
    cli("import", str(path))
    out = cli.json("graph", "provenance", a)
    assert (out["chains"], out["seed_reachable"], out["stranded"]) == ([], False, [a, b, c])
    text = cli("graph", "provenance", a).stdout
    assert (f"no seed reachable: {a} was found only from inside a cycle of 3 entities that were "
            f"found from one another ({a}, {b}, {c})") in " ".join(text.split())


def test_attack_paths_say_when_no_crown_jewel_is_defined(cli, tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"nodes": [
        {"kind": "asset", "name": "www.plain.example", "exposure": "external"}]}))
    cli("import", str(path))
    text = " ".join(cli("graph", "attack-paths").stdout.split())
    assert text.startswith("no attack paths: no crown jewel is defined. Mark an asset as one by "
                           "tagging it (`bastion add attribute --name tag --value critical "
                           "--parent ASSET_KEY`)")
    assert cli.json("graph", "attack-paths") == {"to": None, "crown_jewels": 0, "paths": []}
    assert " ".join(cli("graph", "attack-paths", "--to", "tag=pci").stdout.split()) == (
        "no attack paths: no asset matches --to tag=pci")


def test_attack_paths_and_blast_radius(network):
    out = network.json("graph", "attack-paths")
    assert out["paths"] == [{"entry": WEB, "crown_jewel": DB, "length": 1,
                             "worst_severity": "critical", "risks": [WEB_RISK],
                             "path": [WEB, DB]}]
    assert network.json("graph", "attack-paths", "--to", f"{IP}")["paths"][0]["path"] == [WEB, IP]
    assert network.json("graph", "attack-paths", "--to", "tag=payments")["paths"] == []
    # a crown jewel out of reach is not a missing one
    assert network.json("graph", "attack-paths", "--to", DB, "--depth", "0") == {
        "to": DB, "crown_jewels": 1, "paths": []}
    assert " ".join(network("graph", "attack-paths", "--depth", "0").stdout.split()) == (
        "no attack paths: none of the 1 crown jewel(s) is reachable from an internet-exposed "
        "entry point within depth 0")
    table = network("graph", "attack-paths").stdout
    assert "Attack paths (1)" in table and "critical" in table
    blast = network.json("graph", "blast-radius", PORT_RISK)
    assert blast == {"risk": PORT_RISK, "crown_jewels": [DB], "nodes": [
        {"key": WEB, "kind": "asset", "distance": 0, "crown_jewel": False},
        {"key": IP, "kind": "asset", "distance": 1, "crown_jewel": False},
        {"key": DB, "kind": "asset", "distance": 1, "crown_jewel": True}]}
    assert network("graph", "blast-radius", PORT_RISK).stdout.startswith(
        f"Blast radius of {PORT_RISK}: 3 asset(s), 1 crown jewel(s)\n")


def test_capability_impact(network, tmp_path):
    path = tmp_path / "found.json"
    path.write_text(json.dumps({"edges": [{"kind": "DISCOVERED", "from": NMAP, "to": WEB}]}))
    network("import", str(path))
    out = network.json("graph", "capability-impact")
    assert out == {"capabilities": [{"capability": NMAP, "assets": 1, "high": 1, "critical": 1}]}
    assert NMAP in network("graph", "capability-impact").stdout


def test_query_errors_are_one_line(network):
    assert one_error_line(network("graph", "reach", NOPE, code=4)) == f"error: no entity {NOPE}"
    msg = one_error_line(network("graph", "neighbors", "#asset", code=1))
    assert msg == "error: invalid asset key '#asset': no parts after the kind"
    msg = one_error_line(network("graph", "reach", WEB, "--kind", "LIKES", code=1))
    assert msg.startswith("error: unknown relationship 'LIKES'; relationships: DISCOVERED")
    msg = one_error_line(network("graph", "blast-radius", WEB, code=1))
    assert msg == f"error: {WEB} is not a risk key"
    result = network("graph", "reach", WEB, "--depth", "13", code=2)
    assert "Input should be less than or equal to 12" in result.stderr
    # Over a limit: exit code 5, and the message says how to narrow the query.
    msg = one_error_line(network("graph", "--budget", "1", "reach", WEB, code=5))
    assert "exceeds the budget of 1" in msg and "--depth" in msg
    msg = one_error_line(network("graph", "--max-rows", "2", "reach", WEB, code=5))
    assert "more than 2 rows" in msg


# -- export -----------------------------------------------------------------------------------------


def test_export_json_round_trips_through_import(network, tmp_path):
    exported = network("graph", "export", WEB, "--depth", "3").stdout
    doc = json.loads(exported)
    assert doc["root"] == WEB and doc["depth"] == 3
    assert {n["key"] for n in doc["nodes"]} == CORP_NODES
    path = tmp_path / "export.json"
    out = network("graph", "export", WEB, "--depth", "3", "-o", str(path)).stdout
    assert out.strip() == (f"wrote {path}: {len(CORP_NODES)} node(s) within depth 3, "
                           f"{len(doc['edges'])} relationship(s)")
    assert path.read_text() == exported
    network("tenant", "add", "copy")
    network("import", str(path), tenant="copy")
    assert network("graph", "export", WEB, "--depth", "3", tenant="copy").stdout == exported
    assert network.json("stats", tenant="copy") == network.json("stats")


def test_export_drawings(network, tmp_path):
    mermaid = network("graph", "export", DB, "-d", "1", "--format", "mermaid").stdout
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart LR"
    assert f'    {graph_id(DB)}["asset<br/>#35;asset#35;db1.corp.example#35;db1.corp.example"]' \
        in lines
    assert f"    {graph_id(WEB)} -->|CONNECTS_TO| {graph_id(DB)}" in lines
    assert f"    {graph_id(IP)} -->|DEPENDS_ON| {graph_id(DB)}" in lines
    # and HAS_ATTRIBUTE to the tag, and RESOLVES_TO between the two neighbours
    assert sum("-->" in line for line in lines) == 4
    path = tmp_path / "db.dot"
    network("graph", "export", DB, "-d", "1", "-f", "dot", "-o", str(path))
    dot = path.read_text()
    assert dot.startswith("digraph bastion {\n") and dot.endswith("}\n")
    assert f'    {graph_id(WEB)} -> {graph_id(DB)} [label="CONNECTS_TO"];' in dot.splitlines()
    only = network("graph", "export", DB, "-d", "2", "-k", "CONNECTS_TO", "-f", "dot").stdout
    assert sum(" -> " in line for line in only.splitlines()) == 1


def test_help_lists_the_graph_commands(runner):
    out = runner.invoke(app, ["graph", "--help"]).stdout
    for name in ("neighbors", "reach", "provenance", "path", "attack-paths", "blast-radius",
                 "capability-impact", "export"):
        assert f" {name} " in out
    top = runner.invoke(app, ["--help"]).stdout
    assert " import " in top and " graph " in top
