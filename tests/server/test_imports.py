"""Imports over HTTP on both engines: scanner uploads (the library of `bastion import`), the
record of runs and their changes, detection inventories, ATT&CK bundles, KEV/EPSS; the hostile
inputs the CLI refuses, through the upload; the upload size limit; the 202 path."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
import zlib
from pathlib import Path

import pytest

from bastion.server.context import Settings
from bastion.server.routes import imports as imports_routes
from bastion.store import changes
from server.conftest import make_api

FIXTURES = Path(__file__).parent.parent / "fixtures"
MiB = 1 << 20


def _nuclei(host: str, name: str = "Exposed panel", template: str = "panel") -> str:
    return json.dumps({"template-id": template, "info": {"name": name, "severity": "high"},
                       "host": host, "matched-at": f"https://{host}/", "type": "http"}) + "\n"


def _upload(api, content: bytes | str, name: str = "scan.jsonl", *, path: str = "/v1/imports",
            role: str = "uploader", data: dict | None = None, headers: dict | None = None,
            field: str = "files"):
    body = content.encode() if isinstance(content, str) else content
    return api.post(path, role, files=[(field, (name, body, "application/octet-stream"))],
                    data=data or {}, headers=headers)


def _events(api, run_id: int):
    return changes.changes(api.tenant, run=run_id)


def _all_events(tenant) -> int:
    return len(changes.changes(tenant, limit=10000))


def _risk(api, host: str):
    [rec] = [r for r in api.tenant.list("risk", limit=100).records if host in r.key]
    return rec


# -- scanner output ---------------------------------------------------------------------------


def test_nuclei_upload_creates_risks_as_the_uploader(api):
    res = _upload(api, _nuclei("a.example.com") + _nuclei("b.example.com"),
                  data={"source": "external"}, headers={"X-Request-Id": "ci-run-42"})
    assert res.status_code == 201, res.text
    run = res.json()
    assert res.headers["Location"] == f"/v1/imports/{run['id']}"
    assert run["status"] == "succeeded" and run["kind"] == "scan" and run["actor"] == "uploader-key"
    assert run["correlation_id"] == res.headers["X-Request-Id"] == "ci-run-42"
    assert run["options"]["paths"] == ["scan.jsonl"] and run["options"]["source"] == "external"
    [f] = run["files"]
    assert (f["name"], f["format"], f["status"], f["records"], f["findings"]) == (
        "scan.jsonl", "nuclei", "imported", 2, 2)
    assert run["counts"]["findings"] == 2 and run["counts"]["created"] >= 4  # assets and risks
    risks = api.tenant.list("risk", limit=10).records
    assert sorted(r.values["source"] for r in risks) == ["nuclei:external"] * 2
    events = _events(api, run["id"])
    assert {e.entity_key for e in events if e.event_type == "risk.created"} == {r.key for r in risks}
    assert {(e.actor, e.source, e.correlation_id) for e in events} == {("uploader-key", "api", "ci-run-42")}
    # the changes of the run, over HTTP, in order
    shown = api.get(f"/v1/imports/{run['id']}/changes", "reader").json()
    assert [e["seq"] for e in shown["items"]] == [e.seq for e in events]
    assert shown["next_after"] is None


def test_second_upload_with_close_missing_closes_what_is_gone(api):
    first = _upload(api, _nuclei("a.example.com") + _nuclei("b.example.com"), data={"source": "weekly"})
    assert first.status_code == 201
    second = _upload(api, _nuclei("a.example.com"), name="again.jsonl",
                     data={"source": "weekly", "close_missing": "true"}, headers={"X-Request-Id": "week-2"})
    assert second.status_code == 201, second.text
    run = second.json()
    assert run["counts"]["closed"] == 1 and run["counts"]["created"] == 0
    gone, kept = _risk(api, "b.example.com"), _risk(api, "a.example.com")
    assert (gone.values["status"], gone.values["reason"]) == ("remediated", "not_observed")
    assert kept.values["status"] != "remediated"
    [closing] = [e for e in _events(api, run["id"]) if e.entity_key == gone.key]
    assert (closing.actor, closing.source, closing.correlation_id) == ("uploader-key", "api", "week-2")
    assert closing.diff["status"][1] == "remediated"
    # the first run is seen again as is, and re-opening counts on the next sighting
    third = _upload(api, _nuclei("a.example.com") + _nuclei("b.example.com"), data={"source": "weekly"})
    assert third.json()["counts"]["reopened"] == 1


def test_gzip_upload_reads_like_the_cli(api):
    res = _upload(api, gzip.compress(_nuclei("gz.example.com").encode()), name="scan.jsonl.gz")
    assert res.status_code == 201, res.text
    [f] = res.json()["files"]
    assert (f["name"], f["format"], f["findings"]) == ("scan.jsonl.gz", "nuclei", 1)
    assert _risk(api, "gz.example.com").values["severity"] == "high"


def test_several_files_and_a_skipped_record(api):
    no_target = json.dumps({"template-id": "dns", "info": {"name": "x", "severity": "low"},
                            "type": "dns"}) + "\n"
    res = api.post("/v1/imports", "analyst", files=[
        ("files", ("a.jsonl", _nuclei("a.example.com").encode(), "application/x-ndjson")),
        ("files", ("b.jsonl", (_nuclei("b.example.com") + no_target).encode(), "application/x-ndjson"))])
    assert res.status_code == 201, res.text
    run = res.json()
    assert [f["name"] for f in run["files"]] == ["a.jsonl", "b.jsonl"]
    assert run["status"] == "partial" and run["counts"]["skipped"] == 1
    assert len(run["errors"]) == 1 and run["errors"][0].startswith("b.jsonl: line 2: ")


def test_uploader_imports_but_cannot_read(api):
    done = _upload(api, _nuclei("a.example.com"))
    assert done.status_code == 201
    # ... except the run it was answered with (CI polls the URL a 202 gives)
    polled = api.get(f"/v1/imports/{done.json()['id']}", "uploader")
    assert polled.status_code == 200 and polled.json()["status"] == "succeeded"
    assert api.get("/v1/entities/risk", "uploader").status_code == 403
    assert api.get("/v1/imports", "uploader").status_code == 403
    assert _upload(api, _nuclei("a.example.com"), role="reader").status_code == 403
    assert api.post("/v1/imports", None, files=[("files", ("x", b"{}"))]).status_code == 401


def test_unknown_format_named_is_a_bad_request(api):
    res = _upload(api, _nuclei("a.example.com"), data={"format": "nessus"})
    assert res.status_code == 422 and res.json()["errors"][0]["where"].endswith("format")


# -- hostile inputs through the upload (tests/reliability/test_hostile_inputs.py) ---------------


def _gzip_repeated(chunk: bytes, total: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = chunk * (MiB // len(chunk))
    out, left = [], total
    while left > 0:
        piece = block[:min(left, len(block))]
        out.append(comp.compress(piece))
        left -= len(piece)
    out.append(comp.flush())
    return b"".join(out)


HOSTILE = {
    "nested": ("nested.json", lambda: b"[" * 100_000, {"format": "nuclei"},
               ("item 1", "nested deeper than 100 levels", "BASTION_MAX_DEPTH=100")),
    "gzip-bomb": ("newlines.jsonl.gz", lambda: _gzip_repeated(b"\n", 8 * MiB), {"format": "nuclei"},
                  ("expands more than 200 times", "BASTION_MAX_RATIO=200")),
    "nul": ("nul.jsonl", lambda: _nuclei("d\u0000.example.com").encode(), {},
            ("line 1", "NUL character (U+0000)")),
    "long-line": ("long.jsonl", lambda: b"a" * 5000 + b"\n", {"format": "nuclei"},
                  ("line 1", "a line longer than 1,000 bytes", "BASTION_MAX_LINE=1000")),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_upload_refused_with_one_message(api, monkeypatch, case):
    monkeypatch.setenv("BASTION_MAX_LINE", "1000")
    name, content, data, needles = HOSTILE[case]
    before = _all_events(api.tenant)
    res = _upload(api, content(), name=name, data=data)
    assert res.status_code == 422, res.text
    assert res.headers["content-type"].startswith("application/problem+json")
    problem = res.json()
    detail = problem["detail"]
    assert detail.startswith(f"{name}: ") and "\n" not in detail and len(detail) < 600, detail
    for needle in needles:
        assert needle in detail, detail
    assert [e["file"] for e in problem["errors"]] == [name]
    # nothing written but the run record
    assert _all_events(api.tenant) == before
    assert api.tenant.count("risk") == 0 and api.tenant.count("asset") == 0
    run = api.get(res.headers["Location"], "reader").json()
    assert run["status"] == "failed" and run["errors"] == [problem["errors"][0]["reason"]]
    assert [f["status"] for f in run["files"]] == ["rejected"]


def test_upload_over_the_size_limit_is_413(store):
    api = make_api(store, Settings(rate_limit="none", max_upload=4096))
    try:
        res = _upload(api, b"x" * 8192)
        assert res.status_code == 413
        assert "BASTION_MAX_UPLOAD" in res.json()["detail"]
        assert api.tenant.runs.list() == []  # refused before anything was recorded
        assert _upload(api, _nuclei("small.example.com")).status_code == 201
    finally:
        api.client.close()


def test_large_upload_is_imported_in_the_background(api, monkeypatch):
    monkeypatch.setenv("BASTION_ASYNC_IMPORT_BYTES", "10")
    res = _upload(api, _nuclei("a.example.com") + _nuclei("b.example.com"),
                  headers={"X-Request-Id": "big-upload"})
    assert res.status_code == 202, res.text
    run = res.json()
    assert run["status"] == "running" and run["files"] == []
    assert res.headers["Location"] == f"/v1/imports/{run['id']}"
    for thread in list(imports_routes.BACKGROUND):
        thread.join(120)
    done = api.get(res.headers["Location"], "reader").json()
    assert done["status"] == "succeeded" and done["counts"]["findings"] == 2
    assert done["correlation_id"] == "big-upload" and done["files"][0]["name"] == "scan.jsonl"
    assert {(e.actor, e.source, e.correlation_id) for e in _events(api, run["id"])} == {
        ("uploader-key", "api", "big-upload")}
    assert api.tenant.count("risk") == 2


# -- the record of runs -----------------------------------------------------------------------


def test_runs_listed_paged_and_filtered(api):
    for host in ("a", "b", "c"):
        assert _upload(api, _nuclei(f"{host}.example.com")).status_code == 201
    assert _upload(api, b"[" * 1000, data={"format": "nuclei"}).status_code == 422
    page = api.get("/v1/imports", "reader", params={"limit": 2}).json()
    assert [r["id"] for r in page["items"]] == [4, 3] and page["next_cursor"] == 3
    rest = api.get("/v1/imports", "reader", params={"limit": 2, "before": 3}).json()
    assert [r["id"] for r in rest["items"]] == [2, 1] and rest["next_cursor"] is None
    failed = api.get("/v1/imports", "reader", params={"status": "failed"}).json()
    assert [r["id"] for r in failed["items"]] == [4]
    assert api.get("/v1/imports", "reader", params={"kind": "kev"}).json()["items"] == []
    assert api.get("/v1/imports/99", "reader").status_code == 404
    assert api.get("/v1/imports/99/changes", "reader").status_code == 404


def test_another_tenant_cannot_see_the_runs(api):
    res = _upload(api, _nuclei("a.example.com"))
    run_id = res.json()["id"]
    globex = {"Authorization": f"Bearer {api.other_token}"}
    assert api.client.get(f"/v1/imports/{run_id}", headers=globex).status_code == 404
    assert api.client.get(f"/v1/imports/{run_id}/changes", headers=globex).status_code == 404
    assert api.client.get("/v1/imports", headers=globex).json()["items"] == []
    # globex's own run 1 is its own
    mine = api.client.post("/v1/imports", headers=globex,
                           files=[("files", ("g.jsonl", _nuclei("g.example.org").encode()))])
    assert mine.status_code == 201 and mine.json()["id"] == run_id
    assert mine.json()["actor"] == "globex-admin"
    assert api.get(f"/v1/imports/{run_id}", "reader").json()["actor"] == "uploader-key"
    assert api.tenant.count("risk") == 1 and api.other.count("risk") == 1


# -- detections, ATT&CK, KEV/EPSS ----------------------------------------------------------------


def test_detection_inventory_upload(api):
    res = _upload(api, (FIXTURES / "detections" / "simple.csv").read_bytes(), name="simple.csv",
                  path="/v1/detections/imports", headers={"X-Request-Id": "detections-1"})
    assert res.status_code == 201, res.text
    run = res.json()
    assert run["kind"] == "detections" and run["status"] == "succeeded"
    assert run["files"][0]["name"] == "simple.csv" and run["summary"]["account"]
    assert api.tenant.count("detection") == run["counts"]["detections"] > 0
    assert {(e.actor, e.source, e.correlation_id) for e in _events(api, run["id"])} == {
        ("uploader-key", "api", "detections-1")}
    bad = _upload(api, (FIXTURES / "detections" / "bad" / "invalid.yml").read_bytes(),
                  name="rule.yml", path="/v1/detections/imports", data={"format": "sigma"})
    assert bad.status_code == 422, bad.text
    assert bad.json()["detail"].startswith("rule.yml: ") and "line" in bad.json()["detail"]
    assert api.get(bad.headers["Location"], "reader").json()["status"] == "failed"


def test_kev_and_epss_uploads(api):
    assert _upload(api, _nuclei("a.example.com", template="CVE-2021-44228")).status_code == 201
    kev = _upload(api, (FIXTURES / "enrich" / "kev.json").read_bytes(), name="kev.json",
                  path="/v1/enrich/kev", field="file")
    assert kev.status_code == 201, kev.text
    assert kev.json()["kind"] == "kev" and kev.json()["summary"]["entries"] == 3
    assert {(e.actor, e.source) for e in _events(api, kev.json()["id"])} == {("uploader-key", "api")}
    assert _risk(api, "a.example.com").values["kev"] is True
    epss = _upload(api, gzip.compress((FIXTURES / "enrich" / "epss.csv").read_bytes()),
                   name="epss.csv.gz", path="/v1/enrich/epss", field="file", role="analyst")
    assert epss.status_code == 201 and epss.json()["files"][0]["name"] == "epss.csv.gz"
    hostile = _upload(api, b'{"vulnerabilities": [' + b'{"a":' * 100_000, name="kev.json",
                      path="/v1/enrich/kev", field="file")
    assert hostile.status_code == 422
    assert hostile.json()["detail"].startswith("kev.json") and "BASTION_MAX_DEPTH=100" in hostile.json()["detail"]
    assert "bastion-upload" not in hostile.text
    assert _upload(api, b"x", path="/v1/enrich/kev", field="file", role="reader").status_code == 403


def test_attack_bundle_upload_needs_admin(api):
    bundle = (FIXTURES / "attack-mini-stix.json").read_bytes()
    assert _upload(api, bundle, name="mini.json", path="/v1/attack/imports", field="file",
                   role="analyst").status_code == 403
    res = _upload(api, bundle, name="mini.json", path="/v1/attack/imports", field="file",
                  role="admin")
    assert res.status_code == 201, res.text
    run = res.json()
    assert run["kind"] == "attack" and run["summary"]["release"]["version"] == "19.0"
    assert run["files"][0]["name"] == "mini.json"
    bad = _upload(api, b'{"type": "bundle", "objects": []}', name="empty.json",
                  path="/v1/attack/imports", field="file", role="admin")
    assert bad.status_code == 422 and "empty.json" in bad.json()["detail"]
    assert "bastion-upload" not in bad.text


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_sigma_rules_zip_upload(api):
    from bastion.coverage import detections as ops

    ops.add_account(api.tenant, actor="test", provider="aws", identifier="123456789012")
    rules = sorted((FIXTURES / "sigma").glob("aws_*.yml"))
    content = _zip({f"rules/cloud/aws/{p.name}": p.read_bytes() for p in rules})
    res = _upload(api, content, name="sigma.zip", path="/v1/detections/imports",
                  data={"format": "sigma", "account": "aws:123456789012"})
    assert res.status_code == 201, res.text
    run = res.json()
    assert [f["name"] for f in run["files"]] == [f"sigma.zip/rules/cloud/aws/{p.name}" for p in rules]
    assert run["options"]["paths"] == ["sigma.zip"]
    assert api.tenant.count("detection") == run["counts"]["detections"] > 0


@pytest.mark.parametrize("members, needles", [
    ({"../escape.yml": b"title: x\n"}, ("../escape.yml", "outside the archive")),
    ({"bomb.yml": b"\n" * (8 * MiB)}, ("bomb.yml", "expands more than 200 times", "BASTION_MAX_RATIO=200")),
])
def test_hostile_zip_refused(api, members, needles):
    before = _all_events(api.tenant)
    res = _upload(api, _zip(members), name="rules.zip", path="/v1/detections/imports")
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert detail.startswith("rules.zip: ") and "\n" not in detail, detail
    for needle in needles:
        assert needle in detail, detail
    assert _all_events(api.tenant) == before and api.tenant.count("detection") == 0
