"""The JSON graph format (bastion.graph.jsonformat) and the drawings (bastion.graph.render).

Imports run on both engines through the `tenant` fixture and are checked by what the store then
holds (values, edges, events); bad documents by the exact problem lines and by nothing written.
Export is checked by a round trip: a subgraph exported from one tenant and imported into an
empty one reproduces the same nodes, values, properties and edges.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import pytest

from bastion.errors import ValidationFailed
from bastion.graph import jsonformat as jf
from bastion.graph.render import graph_id, to_dot, to_mermaid
from bastion.schema.batch import Batch, key_for
from bastion.schema.kinds import REGISTRY
from bastion.store.traversal import GraphEdge, Hop, Subgraph

# The kinds the registry declares, in its order, as the messages list them.
NODE_KINDS = ", ".join(REGISTRY.node_kinds)
RELATIONSHIPS = ", ".join(REGISTRY.relationships)

WEB = key_for("asset", identifier="web1.corp.example")
IP = key_for("asset", identifier="10.0.0.5")
DB = key_for("asset", identifier="db1.corp.example")
PORT = key_for("port", asset=WEB, number=443)
PORT_RISK = key_for("risk", target=PORT, cve="CVE-2021-41773", severity="high")
WEB_RISK = key_for("risk", target=WEB, name="exposed-admin-panel", severity="critical")
SEED = key_for("seed", identifier="corp.example")
NMAP = key_for("capability", name="nmap")
DB_TAG = key_for("attribute", name="tag", value="critical", parent=DB)

# A small network as a CMDB might describe it: the minimal form (kind + name), fields, nested
# references inside key fields, properties and tags.
CORP = {
    "nodes": [
        {"kind": "asset", "name": "web1.corp.example", "exposure": "external",
         "properties": {"owner": "web-team"}},
        {"kind": "asset", "name": "10.0.0.5"},
        {"kind": "asset", "name": "db1.corp.example", "tags": ["critical"]},
        {"kind": "port", "asset": {"kind": "asset", "name": "web1.corp.example"}, "number": 443,
         "service": "https"},
        {"kind": "risk",
         "target": {"kind": "port", "asset": {"kind": "asset", "name": "web1.corp.example"},
                    "number": 443},
         "cve": "CVE-2021-41773", "severity": "high", "status": "open"},
        {"kind": "risk", "target": {"key": WEB}, "name": "exposed-admin-panel",
         "severity": "critical", "status": "open"},
        {"kind": "seed", "name": "corp.example"},
        {"kind": "capability", "name": "nmap", "category": "scanner"},
    ],
    "edges": [
        {"kind": "RESOLVES_TO", "from": {"kind": "asset", "name": "web1.corp.example"},
         "to": {"kind": "asset", "name": "10.0.0.5"}},
        {"kind": "CONNECTS_TO", "from": {"kind": "asset", "name": "web1.corp.example"},
         "to": {"kind": "asset", "name": "db1.corp.example"}, "properties": {"port": 5432}},
        {"kind": "DISCOVERED", "from": {"key": SEED}, "to": WEB},
        {"kind": "discovered", "from": {"kind": "capability", "name": "nmap"}, "to": {"key": PORT}},
    ],
}
CORP_NODES = {WEB, IP, DB, PORT, PORT_RISK, WEB_RISK, SEED, NMAP, DB_TAG}


def corp_json() -> bytes:
    return json.dumps(CORP).encode()


def load(tenant, *docs, merge: bool = True, source: str = jf.SOURCE):
    """Import documents (dicts or JSON text) named graph.json, or g0.json, g1.json … if several."""
    parsed = []
    for i, doc in enumerate(docs):
        name = f"g{i}.json" if len(docs) > 1 else "graph.json"
        text = doc if isinstance(doc, (bytes, str)) else json.dumps(doc)
        parsed.append(jf.parse_document(text, name))
    return jf.import_documents(tenant, parsed, actor="tester", source=source, merge=merge)


def problems_of(exc_info) -> list[str]:
    return [str(p) for p in exc_info.value.problems]


def all_keys(tenant) -> set[str]:
    keys = set()
    for kind in ("asset", "port", "technology", "attribute", "risk", "seed", "capability", "job",
                 "integration"):
        keys.update(r.key for r in tenant.list(kind, limit=10000).records)
    return keys


def all_edges(tenant) -> dict[tuple[str, str, str], dict | None]:
    return {(l.source, l.relationship, l.target): l.properties
            for key in all_keys(tenant) for l in tenant.links(key, "out")}


# -- import ---------------------------------------------------------------------------------------


def test_import_resolves_names_nested_references_and_tags(tenant):
    report = load(tenant, CORP)
    assert report.nodes == len(CORP_NODES) and report.edges == 4
    assert all_keys(tenant) == CORP_NODES
    web = tenant.get(WEB)
    assert web.values["identifier"] == "web1.corp.example"
    assert web.values["exposure"] == "external"
    assert web.properties == {"owner": "web-team"}
    assert tenant.get(IP).values["class"] == "ipv4"
    assert tenant.get(SEED).values["class"] == "domain"
    tag = tenant.get(DB_TAG)
    assert (tag.values["name"], tag.values["value"], tag.values["parent"]) == ("tag", "critical", DB)
    assert tenant.get(PORT_RISK).values["status"] == "open"
    edges = all_edges(tenant)
    assert edges == {
        (WEB, "RESOLVES_TO", IP): None,
        (WEB, "CONNECTS_TO", DB): {"port": 5432},
        (SEED, "DISCOVERED", WEB): None,
        (NMAP, "DISCOVERED", PORT): None,
        # implied by the entities' key fields
        (WEB, "HAS_PORT", PORT): None,
        (PORT, "HAS_VULNERABILITY", PORT_RISK): None,
        (WEB, "HAS_VULNERABILITY", WEB_RISK): None,
        (DB, "HAS_ATTRIBUTE", DB_TAG): None,
    }
    # One event per change, all with the import's actor, source and one correlation id.
    events = tenant.events()
    assert len(events) == report.result.events == len(CORP_NODES) + len(edges)
    assert {(e.actor, e.source, e.correlation_id) for e in events} == {
        ("tester", "import:graph", report.result.correlation_id)}


def test_tag_critical_makes_a_crown_jewel_for_attack_paths(tenant):
    load(tenant, CORP)
    paths = tenant.graph().attack_paths()
    assert [(p.entry, p.crown_jewel, p.path, p.worst_severity) for p in paths] == [
        (WEB, DB, [WEB, DB], "critical")]


def test_reimport_changes_nothing(tenant):
    first = load(tenant, CORP)
    seq = tenant.events()[-1].seq
    again = load(tenant, CORP)
    r = again.result
    assert (r.created, r.updated, r.unchanged) == (0, 0, len(CORP_NODES))
    assert (r.edges_added, r.edges_updated, r.edges_unchanged) == (0, 0, first.result.edges_added)
    assert r.events == 0 and tenant.events(after_seq=seq) == []


def test_source_is_recorded(tenant):
    load(tenant, {"nodes": [{"kind": "asset", "name": "a.corp.example"}]}, source="cmdb")
    assert [e.source for e in tenant.events()] == ["cmdb"]


def test_asset_name_is_the_display_name_when_identifier_is_given(tenant):
    load(tenant, {"nodes": [{"kind": "asset", "identifier": "web1.corp.example",
                             "name": "Public web server"}]})
    rec = tenant.get(WEB)
    assert (rec.values["identifier"], rec.values["name"]) == ("web1.corp.example",
                                                              "Public web server")


def test_node_by_key_alone_and_key_checked_against_fields(tenant):
    load(tenant, {"nodes": [{"key": IP}, {"kind": "asset", "key": WEB,
                                          "identifier": "WEB1.corp.example."}]})
    assert tenant.get(IP).values["identifier"] == "10.0.0.5"
    assert tenant.get(WEB).values["identifier"] == "web1.corp.example"
    with pytest.raises(ValidationFailed) as exc:
        jf.parse_document(json.dumps({"nodes": [{"key": WEB, "identifier": "db1.corp.example"}]}),
                          "x.json")
    assert problems_of(exc) == [f"x.json: nodes[0].key: does not match the node's fields, which "
                                f"make the key {DB}"]


def test_existing_nodes_are_merged_unless_replacing(tenant):
    batch = Batch()
    batch.add("asset", {"scanner": "nmap"}, identifier="db1.corp.example", exposure="external",
              criticality="high")
    tenant.apply(batch, actor="scanner", source="nmap")
    # A CMDB that knows the owner and tags it, but nothing about exposure or criticality.
    report = load(tenant, {"nodes": [{"kind": "asset", "name": "db1.corp.example",
                                      "properties": {"owner": "dba"}, "tags": ["critical"]}]})
    rec = tenant.get(DB)
    assert (rec.values["exposure"], rec.values["criticality"]) == ("external", "high")
    assert rec.properties == {"scanner": "nmap", "owner": "dba"}
    assert rec.version == 2 and report.result.created == 1  # the tag
    assert [e for e in tenant.history(DB) if e.entity_kind == "asset"][-1].diff == {"properties": [{"scanner": "nmap"},
                                                          {"scanner": "nmap", "owner": "dba"}]}
    # Replacing: what the document leaves out takes its default.
    load(tenant, {"nodes": [{"kind": "asset", "name": "db1.corp.example"}]}, merge=False)
    rec = tenant.get(DB)
    assert (rec.values["exposure"], rec.values["criticality"], rec.properties) == (
        "unknown", None, None)
    assert tenant.get(DB_TAG) is not None  # tags are entities of their own: never removed


def test_merge_keeps_stored_text_fields_named_version(tenant):
    # capability.version and technology.version are fields, not the entity's version number.
    batch = Batch()
    batch.add("capability", name="nmap", version="7.94")
    tenant.apply(batch, actor="t", source="t")
    report = load(tenant, {"nodes": [{"kind": "capability", "name": "nmap",
                                      "category": "discovery"}]})
    rec = tenant.get(NMAP)
    assert (rec.values["version"], rec.values["category"]) == ("7.94", "discovery")
    assert report.result.updated == 1


def test_edge_properties_are_merged_unless_replacing(tenant):
    load(tenant, CORP)
    edge = {"kind": "CONNECTS_TO", "from": WEB, "to": DB}
    r = load(tenant, {"edges": [edge]}).result
    assert (r.edges_unchanged, r.events) == (1, 0)
    load(tenant, {"edges": [{**edge, "properties": {"protocol": "postgres"}}]})
    assert all_edges(tenant)[(WEB, "CONNECTS_TO", DB)] == {"port": 5432, "protocol": "postgres"}
    load(tenant, {"edges": [edge]}, merge=False)
    assert all_edges(tenant)[(WEB, "CONNECTS_TO", DB)] is None


def test_edges_may_reference_stored_nodes(tenant):
    load(tenant, CORP)
    r = load(tenant, {"edges": [{"kind": "DEPENDS_ON", "from": {"kind": "asset",
                                                                "name": "web1.corp.example"},
                                 "to": {"key": DB}}]}).result
    assert (r.created, r.edges_added) == (0, 1)
    assert (WEB, "DEPENDS_ON", DB) in all_edges(tenant)


def test_documents_import_together_and_may_reference_each_other(tenant):
    nodes = {"nodes": CORP["nodes"]}
    edges = {"edges": CORP["edges"]}
    load(tenant, edges, nodes)  # edges first: order does not matter within one import
    assert all_keys(tenant) == CORP_NODES
    assert (WEB, "CONNECTS_TO", DB) in all_edges(tenant)


def test_the_same_node_twice(tenant):
    node = {"kind": "asset", "name": "web1.corp.example", "exposure": "external"}
    # Given again, or again without properties (say, in a second file): one node.
    load(tenant, {"nodes": [node, {**node, "properties": {"owner": "web"}}, dict(node)]})
    assert all_keys(tenant) == {WEB}
    assert tenant.get(WEB).properties == {"owner": "web"}
    with pytest.raises(ValidationFailed) as exc:
        load(tenant, {"nodes": [node]}, {"nodes": [{**node, "exposure": "internal"}]})
    assert problems_of(exc) == [f"g1.json: nodes[0]: defines {WEB} again, differently from "
                                "g0.json: nodes[0]"]


# -- bad documents ----------------------------------------------------------------------------------


@pytest.mark.parametrize("doc, expected", [
    (b'{"nodes": [', ["graph.json: not valid JSON: "]),
    (b'[]', ["graph.json: a graph document is a JSON object, not a list"]),
    (b'{}', ["graph.json: a graph document has a 'nodes' list, an 'edges' list or both"]),
    (b'{"nodes": {}, "edge": []}', [
        "graph.json: edge: unknown member; a graph document has: format, version, root, depth, "
        "nodes, edges",
        "graph.json: nodes: expected a list, got an object"]),
    (b'{"version": 2, "nodes": []}', ["graph.json: version: this Bastion reads version 1, not 2"]),
    ({"nodes": [{"kind": "asset", "name": "web1.corp.example"}, 7,
                {"kind": "host", "name": "x"}, {"kind": "asset", "name": "bad name!.example"},
                {"name": "x"}]}, [
        "graph.json: nodes[1]: a node is an object, not a number",
        f"graph.json: nodes[2].kind: unknown entity kind 'host'; kinds: {NODE_KINDS}",
        "graph.json: nodes[3].name: invalid DNS name 'bad name!.example': label 'bad name!' "
        "may hold only letters, digits, '-' and '_' and may not start or end with '-'",
        f"graph.json: nodes[4]: needs a 'kind' (one of: {NODE_KINDS}) or a 'key'"]),
    ({"nodes": [{"kind": "port", "asset": {"kind": "asset", "name": "-"}, "number": 70000,
                 "colour": "red"},
                {"kind": "asset", "name": 5, "tags": ["ok", ""], "properties": []}]}, [
        "graph.json: nodes[0].asset.name: invalid DNS name '-': label '-' may hold only "
        "letters, digits, '-' and '_' and may not start or end with '-'",
        "graph.json: nodes[0].colour: unknown field of port; fields: asset, protocol, number, "
        "state, service",
        "graph.json: nodes[1].name: expected text, got a number",
        "graph.json: nodes[1].properties: expected an object, got a list"]),
    ({"nodes": [{"kind": "asset", "name": "web1.corp.example", "tags": ["ok", ""]}]}, [
        "graph.json: nodes[0].tags[1]: a tag cannot be empty"]),
    ({"edges": [{"kind": "LIKES", "from": WEB, "to": DB},
                {"kind": "CONNECTS_TO", "from": {"key": PORT_RISK}, "to": DB},
                {"kind": "CONNECTS_TO", "from": "#asset#", "to": {"kind": "asset"}},
                {"kind": "HAS_PORT", "from": WEB},
                {"kind": "RESOLVES_TO", "from": {"key": WEB, "tags": []}, "to": IP,
                 "weight": 3}]}, [
        f"graph.json: edges[0].kind: unknown relationship 'LIKES'; relationships: {RELATIONSHIPS}",
        "graph.json: edges[1].kind: CONNECTS_TO cannot join a risk to an asset: it goes from "
        "asset or port to asset or port",
        "graph.json: edges[2].from: invalid asset key '#asset#': expected 2 parts",
        "graph.json: edges[2].to.identifier: required field is missing",
        "graph.json: edges[3].to: required member is missing",
        "graph.json: edges[4].weight: unknown member; an edge has: kind, from, to, properties",
        "graph.json: edges[4].from.tags: a reference by key has only 'key' (and 'kind')"]),
])
def test_bad_documents_name_file_and_position(doc, expected):
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(ValidationFailed) as exc:
        jf.parse_document(data, "graph.json")
    got = problems_of(exc)
    if expected[0].endswith("not valid JSON: "):
        assert len(got) == 1 and got[0].startswith(expected[0]) and "line 1" in got[0]
    else:
        assert got == expected


def test_a_bad_document_writes_nothing(tenant):
    bad = copy.deepcopy(CORP)
    bad["nodes"][2]["name"] = "db1..corp.example"
    with pytest.raises(ValidationFailed) as exc:
        load(tenant, bad)
    assert problems_of(exc)[0].startswith("graph.json: nodes[2].name: ")
    assert all_keys(tenant) == set() and tenant.events() == []


def test_references_outside_the_import_must_be_stored(tenant):
    load(tenant, {"nodes": [{"kind": "asset", "name": "web1.corp.example"}]})
    with pytest.raises(ValidationFailed) as exc:
        load(tenant, {"nodes": [{"kind": "port", "asset": DB, "number": 22}],
                      "edges": [{"kind": "CONNECTS_TO", "from": WEB, "to": IP},
                                {"kind": "DEPENDS_ON", "from": WEB, "to": {"key": DB}}]})
    assert problems_of(exc) == [
        f"graph.json: nodes[0].asset: {DB} is neither defined in the import nor stored in "
        "tenant 'default'",
        f"graph.json: edges[1].to: {DB} is neither defined in the import nor stored in "
        "tenant 'default'",
        f"graph.json: edges[0].to: {IP} is neither defined in the import nor stored in "
        "tenant 'default'"]
    assert all_keys(tenant) == {WEB}


def test_problems_are_capped():
    doc = {"nodes": [{"kind": "asset", "name": f"bad_{i}!"} for i in range(jf.MAX_PROBLEMS + 7)]}
    with pytest.raises(ValidationFailed) as exc:
        jf.parse_document(json.dumps(doc), "big.json")
    got = problems_of(exc)
    assert len(got) == jf.MAX_PROBLEMS + 1
    assert got[-1] == "(and 7 more problems): fix the ones above and import again"


# -- export round trip ------------------------------------------------------------------------------


def _surface(tenant) -> None:
    """CORP plus what an export must carry: a job with times, a technology with a version field,
    an integration, properties on nodes and edges."""
    load(tenant, CORP)
    batch = Batch()
    tech = batch.add("technology", {"banner": "Apache/2.4.49"},
                     cpe="cpe:2.3:a:apache:http_server:2.4.49", vendor="apache")
    job = batch.add("job", target=WEB, capability="nmap", status="passed",
                    started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    integ = batch.add("integration", type="aws", name="prod", endpoint="https://aws.example")
    batch.link("HAS_TECHNOLOGY", PORT, tech, confidence=0.9)
    batch.link("DISCOVERED", job, IP)
    batch.link("ACCESSIBLE_BY", DB, integ, role="admin")
    tenant.apply(batch, actor="t", source="t")


def _round_trip(store, tenant, root: str, depth: int) -> tuple[dict, dict]:
    sub = tenant.graph().subgraph(root, depth)
    doc = jf.export_document(tenant, sub, root=root, depth=depth)
    text = jf.dumps(doc)
    store.add_tenant("copy")
    copy_tenant = store.tenant("copy")
    jf.import_documents(copy_tenant, [jf.parse_document(text, "export.json")], actor="t")
    again = jf.export_document(copy_tenant, copy_tenant.graph().subgraph(root, depth),
                               root=root, depth=depth)
    return doc, again


def test_export_imports_into_an_empty_tenant_as_the_same_graph(store, tenant):
    _surface(tenant)
    doc, again = _round_trip(store, tenant, WEB, 6)
    copy_tenant = store.tenant("copy")
    keys = {n["key"] for n in doc["nodes"]}
    assert keys == all_keys(tenant) == all_keys(copy_tenant)
    for key in keys:
        a, b = tenant.get(key), copy_tenant.get(key)
        assert (b.values, b.properties) == (a.values, a.properties), key
    assert all_edges(copy_tenant) == all_edges(tenant)
    assert len(doc["edges"]) == len(all_edges(tenant))
    assert again == doc
    tech = next(n for n in doc["nodes"] if n["kind"] == "technology")
    assert tech["version"] == "2.4.49" and tech["properties"] == {"banner": "Apache/2.4.49"}
    job = next(n for n in doc["nodes"] if n["kind"] == "job")
    assert job["started_at"] == "2026-01-02T03:04:05Z"


def test_export_of_a_small_subgraph_carries_the_entities_keys_reference(store, tenant):
    _surface(tenant)
    # Depth 0 around the port's risk is the risk alone; its key names the port, whose key names
    # the asset: both come along (distance null) with the edges that join them.
    doc, again = _round_trip(store, tenant, PORT_RISK, 0)
    assert [(n["key"], n["distance"]) for n in doc["nodes"]] == [
        (PORT_RISK, 0), (WEB, None), (PORT, None)]
    assert [(e["from"]["key"], e["kind"], e["to"]["key"]) for e in doc["edges"]] == [
        (WEB, "HAS_PORT", PORT), (PORT, "HAS_VULNERABILITY", PORT_RISK)]
    copy_tenant = store.tenant("copy")
    assert all_keys(copy_tenant) == {PORT_RISK, WEB, PORT}
    assert set(all_edges(copy_tenant)) == {(PORT, "HAS_VULNERABILITY", PORT_RISK),
                                           (WEB, "HAS_PORT", PORT)}
    assert tenant.get(WEB).values == copy_tenant.get(WEB).values
    assert again == doc


def test_export_document_shape(tenant):
    load(tenant, CORP)
    doc = jf.export_document(tenant, tenant.graph().subgraph(DB, 1), root=DB, depth=1)
    assert {k: doc[k] for k in ("format", "version", "root", "depth")} == {
        "format": "bastion-graph", "version": 1, "root": DB, "depth": 1}
    assert doc["nodes"] == [
        {"key": DB, "kind": "asset", "distance": 0, "identifier": "db1.corp.example",
         "class": "domain", "group": "db1.corp.example", "name": "db1.corp.example",
         "status": "active", "exposure": "unknown"},
        {"key": WEB, "kind": "asset", "distance": 1, "identifier": "web1.corp.example",
         "class": "domain", "group": "web1.corp.example", "name": "web1.corp.example",
         "status": "active", "exposure": "external", "properties": {"owner": "web-team"}},
        {"key": DB_TAG, "kind": "attribute", "distance": 1, "name": "tag", "value": "critical",
         "parent": DB},
    ]
    assert doc["edges"] == [
        {"kind": "HAS_ATTRIBUTE", "from": {"key": DB}, "to": {"key": DB_TAG}},
        {"kind": "CONNECTS_TO", "from": {"key": WEB}, "to": {"key": DB},
         "properties": {"port": 5432}},
    ]


# -- drawings ---------------------------------------------------------------------------------------

QUOTED = key_for("attribute", name="banner", value='say "hi" <b> #1 \\n', parent=WEB)
SUB = Subgraph(
    nodes=[Hop(WEB, "asset", 0), Hop(QUOTED, "attribute", 1), Hop(DB, "asset", 1)],
    edges=[GraphEdge(WEB, "HAS_ATTRIBUTE", QUOTED), GraphEdge(WEB, "CONNECTS_TO", DB)],
)


def test_graph_ids_are_stable_and_distinct():
    assert graph_id(WEB) == graph_id(str(WEB)) and graph_id(WEB) != graph_id(DB)
    assert graph_id(WEB).isidentifier()
    # The same entity keeps its id in another drawing.
    other = Subgraph([Hop(DB, "asset", 0)], [])
    assert f'{graph_id(DB)}["' in to_mermaid(other) and f'{graph_id(DB)}["' in to_mermaid(SUB)


def test_mermaid():
    w, q, d = graph_id(WEB), graph_id(QUOTED), graph_id(DB)
    assert to_mermaid(SUB, root=WEB) == "\n".join([
        "flowchart LR",
        f'    {w}["asset<br/>#35;asset#35;web1.corp.example#35;web1.corp.example"]',
        f'    {d}["asset<br/>#35;asset#35;db1.corp.example#35;db1.corp.example"]',
        f'    {q}["attribute<br/>#35;attribute#35;banner#35;say #quot;hi#quot; #lt;b#gt; %231 '
        f'\\n#35;asset#35;web1.corp.example#35;web1.corp.example"]',
        f"    {w} -->|CONNECTS_TO| {d}",
        f"    {w} -->|HAS_ATTRIBUTE| {q}",
        "    classDef asset fill:#dbeafe,stroke:#6b7280",
        "    classDef attribute fill:#f3f4f6,stroke:#6b7280",
        f"    class {w},{d} asset",
        f"    class {q} attribute",
        "    classDef root stroke:#111827,stroke-width:3px",
        f"    class {w} root",
    ]) + "\n"


def test_dot():
    w, q, d = graph_id(WEB), graph_id(QUOTED), graph_id(DB)
    text = to_dot(SUB, root=WEB)
    assert text.splitlines() == [
        "digraph bastion {",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '    edge [fontname="Helvetica", fontsize=9];',
        f'    {w} [label="asset\\n#asset#web1.corp.example#web1.corp.example", '
        'fillcolor="#dbeafe", penwidth=3];',
        f'    {d} [label="asset\\n#asset#db1.corp.example#db1.corp.example", '
        'fillcolor="#dbeafe"];',
        f'    {q} [label="attribute\\n#attribute#banner#say \\"hi\\" <b> %231 \\\\n'
        '#asset#web1.corp.example#web1.corp.example", fillcolor="#f3f4f6"];',
        f'    {w} -> {d} [label="CONNECTS_TO"];',
        f'    {w} -> {q} [label="HAS_ATTRIBUTE"];',
        "}",
    ]


def test_drawings_do_not_depend_on_input_order():
    shuffled = Subgraph(list(reversed(SUB.nodes)), list(reversed(SUB.edges)))
    assert to_mermaid(shuffled) == to_mermaid(SUB) and to_dot(shuffled) == to_dot(SUB)


# -- the documented example -------------------------------------------------------------------------


def test_the_example_in_docs_imports_and_shows_its_attack_path(tenant):
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "graph.md").read_text()
    example = text.split("### A full example", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    report = load(tenant, example.encode())
    assert (report.nodes, report.edges, report.result.created) == (10, 5, 10)  # 8 + 2 tags
    db = key_for("asset", identifier="db1.corp.example")
    assert tenant.get(key_for("attribute", name="tag", value="pci", parent=db)) is not None
    assert [(p.entry, p.crown_jewel) for p in tenant.graph().attack_paths()] == [(WEB, db)]
