"""Re-importing a file byte for byte (issue 3): when nothing it wrote changed since, the earlier
import stands for it — no parse, no event, `last_seen` moved on exactly what a full import would
have moved it on. Whenever that cannot be known, the file is imported in full. Both engines."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from bastion.ingest.runner import Options, import_paths
from bastion.risks import lifecycle
from bastion.schema.batch import Batch, Relationship
from bastion.store import runs
from bastion.store.tables import edge, import_file, import_file_node, node

FIXTURES = Path(__file__).parent / "fixtures" / "scans"
WHOLE_FILES = ["nuclei/v3.jsonl", "nmap/scan.xml", "httpx/httpx.jsonl", "naabu/naabu.jsonl",
               "subfinder/subfinder.jsonl", "bbot/bbot-v2.ndjson", "bbot/bbot-v3.ndjson",
               "sarif/codeql.sarif"]
# The parser fixtures' deliberately bad records, left out here: a file is reused only if whole.
BAD_LINES = {"bbot/bbot-v2.ndjson": {13, 15}, "bbot/bbot-v3.ndjson": {8}}


def run(tenant, *paths, **options):
    return import_paths(tenant, [str(p) for p in paths], Options(actor="tester", **options))


def copy(tmp_path: Path, name: str) -> Path:
    path = tmp_path / Path(name).name
    shutil.copyfile(FIXTURES / name, path)
    return path


def whole(tmp_path: Path, name: str) -> Path:
    """A copy of a parser fixture without its bad records."""
    text = (FIXTURES / name).read_text()
    if name in BAD_LINES:
        text = "".join(line for i, line in enumerate(text.splitlines(keepends=True), 1)
                       if i not in BAD_LINES[name])
    elif name.startswith("nmap/"):
        text = re.sub(r"<host\b(?:(?!</host>).)*198\.51\.100\.300.*?</host>", "", text, flags=re.S)
    elif name.startswith("sarif/"):
        data = json.loads(text)
        for r in data["runs"]:
            r["results"] = [x for x in r["results"] if isinstance(x, dict) and "ruleId" in x]
        text = json.dumps(data)
    path = tmp_path / Path(name).name
    path.write_text(text)
    return path


def started(tenant, run_id: int):
    return tenant.runs.get(run_id).started_at


def seen_at(tenant, at) -> tuple[set, set]:
    """Node keys and edges (source key, kind, target key) whose last_seen is `at`."""
    with tenant.scope.transaction() as conn:
        keys = dict(conn.execute(select(node.c.id, node.c.key).where(tenant.scope.where(node))).all())
        nodes = {keys[i] for i, in conn.execute(
            select(node.c.id).where(tenant.scope.where(node), node.c.last_seen == at))}
        edges = {(keys[s], k, keys[t]) for s, k, t in conn.execute(
            select(edge.c.source_id, edge.c.kind, edge.c.target_id)
            .where(tenant.scope.where(edge), edge.c.last_seen == at))}
    return nodes, edges


def state(tenant) -> dict:
    """Every node's content and every edge, without times."""
    with tenant.scope.transaction() as conn:
        nodes = {r.key: (r.version, r.content_hash, r.properties) for r in conn.execute(
            select(node).where(tenant.scope.where(node)))}
        edges = set(conn.execute(select(edge.c.source_id, edge.c.kind, edge.c.target_id, edge.c.properties)
                                 .where(tenant.scope.where(edge))).all())
    return {"nodes": nodes, "edges": edges}


@pytest.fixture
def twin(store):
    """A second tenant of the same store, where the file is imported again in full."""
    store.ensure_tenant("twin")
    return store.tenant("twin")


@pytest.mark.parametrize("name", WHOLE_FILES)
def test_a_reused_import_leaves_what_a_full_import_leaves(tenant, twin, tmp_path, name):
    path = whole(tmp_path, name)
    first = run(tenant, path)
    assert first.status == "succeeded"
    again = run(tenant, path)
    f = again.files[0]
    assert f.reused_run == first.run_id
    assert (f.status, f.format, f.sha256) == ("imported", first.files[0].format, first.files[0].sha256)
    assert (f.records, f.findings, f.created, f.updated, f.reopened) == (
        first.files[0].records, first.files[0].findings, 0, 0, 0)
    assert f.unchanged == len({k for k in state(tenant)["nodes"]} - {f"#capability#{f.format}"})

    run(twin, path)
    full = run(twin, path, reuse=False)
    assert full.files[0].reused_run is None
    # The same rows, the same events (none), last_seen moved on the same nodes and edges.
    assert state(tenant) == state(twin)  # node ids derive from keys: equal across tenants
    assert len(tenant.events(limit=100000)) == len(twin.events(limit=100000))
    assert seen_at(tenant, started(tenant, again.run_id)) == seen_at(twin, started(twin, full.run_id))
    assert all(seen_at(tenant, started(tenant, again.run_id)))


def one_finding(tmp_path: Path, host: str) -> Path:
    path = tmp_path / f"{host}.jsonl"
    path.write_text(json.dumps({"template-id": "exposed-git", "host": f"https://{host}",
                                "matched-at": f"https://{host}/.git/config",
                                "info": {"name": "Git", "severity": "low"}}) + "\n")
    return path


def test_reuse_survives_changes_elsewhere_in_the_tenant(tenant, tmp_path):
    """A directory imported again where other scans came in since: its files are reused unless
    one of those named what they wrote."""
    a, b = copy(tmp_path, "nuclei/v3.jsonl"), one_finding(tmp_path, "other.example.org")
    first = run(tenant, a, b)
    assert run(tenant, one_finding(tmp_path, "third.example.net")).files[0].created > 0
    again = run(tenant, a, b)
    assert [f.reused_run for f in again.files] == [first.run_id, first.run_id]
    # httpx names v3.jsonl's hosts (and may have changed them): that file is imported in full.
    run(tenant, copy(tmp_path, "httpx/httpx.jsonl"))
    assert [f.reused_run for f in run(tenant, a, b).files] == [None, again.run_id]


@pytest.mark.parametrize("change", ["status", "delete", "unlink", "setting", "source", "bytes"])
def test_no_reuse_when_something_it_depends_on_changed(tenant, tmp_path, change):
    path = copy(tmp_path, "nuclei/v3.jsonl")
    run(tenant, path)
    risk = tenant.list("risk").records[0].key
    asset = tenant.get(risk).values["target"]
    discovered = Relationship("DISCOVERED", "#capability#nuclei", asset)
    options = {}
    if change == "status":  # an analyst closed a risk: seeing it again must re-open it
        lifecycle.set_status(tenant, risk, "remediated", reason="other", comment="fixed", actor="ana")
    elif change == "delete":
        tenant.apply(Batch(deletes=[risk]), actor="ana", source="cli")
    elif change == "unlink":  # its event names the capability, not a node the file wrote
        tenant.apply(Batch(unlinks=[discovered]), actor="ana", source="cli")
    elif change == "setting":
        tenant.set_setting(lifecycle.INITIAL_STATUS_SETTING, "open", actor="ana", source="cli")
    elif change == "source":
        options = {"source": "weekly"}
    else:
        path.write_bytes(path.read_bytes() + b"\n")
    again = run(tenant, path, **options)
    f = again.files[0]
    assert f.reused_run is None and f.status == "imported"
    if change == "status":
        assert f.reopened == 1 and tenant.get(risk).values["status"] == "open"
    if change == "delete":
        assert f.created == 1 and tenant.get(risk) is not None
    if change == "unlink":
        assert asset in {link.target for link in tenant.links("#capability#nuclei", "out")}


def test_a_file_read_in_part_is_not_reused(tenant, tmp_path):
    bad = copy(tmp_path, "nuclei/malformed.jsonl")
    first = run(tenant, bad, skip_invalid=True)
    assert first.files[0].skipped > 0
    assert run(tenant, bad, skip_invalid=True).files[0].reused_run is None
    with tenant.scope.transaction() as conn:  # nothing kept for a file read in part
        assert conn.execute(select(import_file.c.id).where(tenant.scope.where(import_file))).all() == []


def test_member_lists_are_kept_for_the_most_recently_used_files(tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "KEEP_MEMBER_SETS", 2)
    a, b, c = (copy(tmp_path, n) for n in ("nuclei/v3.jsonl", "naabu/naabu.jsonl", "httpx/httpx.jsonl"))
    first = run(tenant, a)
    run(tenant, b)
    assert run(tenant, a).files[0].reused_run == first.run_id  # a is now the most recently used
    run(tenant, c)  # b's lists go
    assert run(tenant, b).files[0].reused_run is None
    with tenant.scope.transaction() as conn:
        kept = {m for m, in conn.execute(select(import_file_node.c.file_id)
                                         .where(tenant.scope.where(import_file_node)).distinct())}
    assert len(kept) == 2
