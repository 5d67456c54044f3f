"""Hostile inputs: refused (or accepted) in bounded time and memory, with one line naming the file,
the position and the limit, and nothing written but the run record (issue 11, point 6; the
limits are bastion/ingest/limits.py, docs/formats.md "Limits").

Every hostile file is generated here in tmp_path. `make test` uses small sizes (the limits that
are proportional are lowered through their BASTION_MAX_* variables); `make reliability`
(BASTION_RELIABILITY_FULL=1) uses the sizes of the issue with the default limits. No timings are
asserted; docs/performance.md ("Hostile inputs") has the figures measured at full size.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tracemalloc
import zlib

import pytest

from bastion.cli.main import app
from bastion.ingest import limits
from cli_harness import Cli, cli, runner  # noqa: F401 (fixtures)

FULL = os.environ.get("BASTION_RELIABILITY_FULL") == "1"
MiB = 1 << 20


def _gzip_repeated(path, chunk: bytes, total: int) -> None:
    """A gzip file expanding to `total` bytes of `chunk` repeated, written without holding it."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = chunk * (MiB // len(chunk))
    with open(path, "wb") as out:
        left = total
        while left > 0:
            piece = block[:min(left, len(block))]
            out.write(comp.compress(piece))
            left -= len(piece)
        out.write(comp.flush())


def _nothing_written(cli: Cli) -> None:
    assert cli.json("changes")["events"] == []


def _run_errors(cli: Cli, run_id: int) -> list[str]:
    return cli.json("imports", "show", str(run_id))["errors"]


def _last_run(cli: Cli) -> dict:
    runs = cli.json("imports", "list")
    runs = runs["runs"] if isinstance(runs, dict) else runs
    return max(runs, key=lambda r: r["id"])


def _one_problem(cli: Cli, name: str, *needles: str) -> str:
    run = _last_run(cli)
    assert run["status"] == "failed"
    errors = _run_errors(cli, run["id"])
    assert len(errors) == 1, errors
    line = errors[0]
    assert line.startswith(name + ": "), line
    for needle in needles:
        assert needle in line, line
    assert "\n" not in line and len(line) < 600, line
    return line


# -- nesting depth ---------------------------------------------------------------------------


def test_nested_arrays_refused_by_every_json_reader(cli, tmp_path):
    path = tmp_path / "nested.json"
    path.write_bytes(b"[" * 200_000)
    name = str(path)
    # Format detection sees no format in it (it used to need more than 3 GiB to say so).
    cli("import", name, code=2)
    _one_problem(cli, name, "unknown format")
    # Read as nuclei (a JSON array): the depth limit, at the element.
    cli("import", name, "--format", "nuclei", code=2)
    _one_problem(cli, name, "item 1", "nested deeper than 100 levels", "BASTION_MAX_DEPTH=100")
    # KEV (JSON), EPSS (CSV: the header line, quoted as an excerpt)
    kev = cli("enrich", "kev", name, code=1)
    assert "nested deeper than 100 levels" in kev.stderr or "not a KEV catalog" in kev.stderr
    assert len(kev.stderr.strip().splitlines()) == 1
    epss = cli("enrich", "epss", name, code=1)
    assert len(epss.stderr.strip().splitlines()) == 1 and len(epss.stderr) < 400
    _nothing_written(cli)


def test_nested_objects_refused_in_a_kev_catalog(cli, tmp_path):
    path = tmp_path / "kev.json"
    path.write_bytes(b'{"vulnerabilities": [' + b'{"a":' * 100_000)
    result = cli("enrich", "kev", str(path), code=1)
    line = result.stderr.strip()
    assert "\n" not in line
    assert str(path) in line and "BASTION_MAX_DEPTH=100" in line, line
    _nothing_written(cli)


def test_depth_check_bounds_memory():
    """The depth check stops before ijson builds the deep prefixes (quadratic memory)."""
    tracemalloc.start()
    try:
        with pytest.raises(limits.LimitExceeded, match="nested deeper than 100"):
            list(limits.json_items(io.BytesIO(b"[" * 200_000), "item"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * MiB, peak


def test_depth_at_the_limit_is_read():
    deep = b"[" * 100 + b"]" * 100
    assert list(limits.json_items(io.BytesIO(deep), "")) == [
        json.loads(deep)]


# -- YAML aliases ----------------------------------------------------------------------------

BOMB = """title: bomb
id: 11111111-1111-1111-1111-111111111111
logsource:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
detection:
  sel: {a: b}
  condition: sel
tags: [attack.t1059]
"""


def test_yaml_alias_bomb_refused(cli, tmp_path):
    path = tmp_path / "bomb.yml"
    path.write_text(BOMB)
    cli("detections", "import", str(path), code=2)
    _one_problem(cli, str(path), "line 5", "YAML alias *a", "BASTION_MAX_YAML_ALIASES=0")
    _nothing_written(cli)


# -- gzip: one long line, a flood of newlines ------------------------------------------------


def test_gzip_of_one_long_line_refused(cli, tmp_path, monkeypatch):
    path = tmp_path / "line.jsonl.gz"
    size = 2048 * MiB if FULL else 24 * MiB  # beyond the 16 MiB line limit either way
    _gzip_repeated(path, b"a", size)
    cli("import", str(path), "--format", "nuclei", code=2)
    line = _one_problem(cli, str(path))
    assert ("line 1: a line longer than 16,777,216 bytes (limit BASTION_MAX_LINE=16777216)" in line
            or "BASTION_MAX_RATIO=200" in line), line
    _nothing_written(cli)


def test_gzip_of_newlines_refused_by_ratio(cli, tmp_path, monkeypatch):
    path = tmp_path / "newlines.jsonl.gz"
    size = 1536 * MiB if FULL else 8 * MiB  # checked once 4 MiB are expanded
    _gzip_repeated(path, b"\n", size)
    cli("import", str(path), "--format", "nuclei", code=2)
    _one_problem(cli, str(path), "(decompressed)", "expands more than 200 times",
                 "BASTION_MAX_RATIO=200")
    _nothing_written(cli)


def test_gzip_decompressed_size_limit(cli, tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl.gz"
    record = json.dumps({"host": "a.example", "port": 443}).encode() + b"\n"
    with gzip.open(path, "wb") as f:
        f.write(record * 10_000)
    monkeypatch.setenv("BASTION_MAX_DECOMPRESSED", "100000")
    cli("import", str(path), "--format", "naabu", code=2)
    _one_problem(cli, str(path), "expands beyond 100,000 bytes", "BASTION_MAX_DECOMPRESSED=100000")
    _nothing_written(cli)


# -- long strings and fields -----------------------------------------------------------------


def test_kev_long_string_refused(cli, tmp_path):
    path = tmp_path / "kev.json"
    size = 64 * MiB if FULL else 17 * MiB  # beyond the 16 MiB string limit
    with open(path, "wb") as f:
        f.write(b'{"vulnerabilities": [{"cveID": "CVE-2020-0001", "notes": "')
        f.write(b"a" * size)
        f.write(b'"}]}')
    result = cli("enrich", "kev", str(path), code=1)
    line = result.stderr.strip()
    assert "\n" not in line and len(line) < 600, line
    assert str(path) in line and "longer than 16,777,216 bytes" in line
    assert "BASTION_MAX_STRING=16777216" in line
    _nothing_written(cli)


def test_csv_field_beyond_the_csv_module_limit(cli, tmp_path, monkeypatch):
    path = tmp_path / "rules.csv"
    path.write_text("rule_id,technique\nr1,T1059\nr2," + "x" * 140_000 + "\n")
    # Beyond the csv module's own 131,072: read (and the bad technique quoted as an excerpt).
    cli("detections", "import", str(path), code=2)
    line = _one_problem(cli, str(path), "rule r2", "characters)")
    # Beyond the field limit: refused, naming the line and the limit.
    monkeypatch.setenv("BASTION_MAX_FIELD", "100000")
    cli("detections", "import", str(path), code=2)
    _one_problem(cli, str(path), "line 3", "CSV field longer than 100,000 characters",
                 "BASTION_MAX_FIELD=100000")
    kev = tmp_path / "kev.csv"
    kev.write_text("cveID,dueDate,knownRansomwareCampaignUse,notes\n"
                   "CVE-2020-0001,2021-01-01,Known," + "y" * 140_000 + "\n")
    result = cli("enrich", "kev", str(kev), code=1)
    assert "line 2" in result.stderr and "BASTION_MAX_FIELD=100000" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    _nothing_written(cli)
    assert line


def test_huge_nmap_host_name_refused_and_never_echoed(cli, tmp_path, monkeypatch):
    path = tmp_path / "nmap.xml"
    name = "h" * (100 * MiB if FULL else 2 * MiB)
    if not FULL:
        monkeypatch.setenv("BASTION_MAX_STRING", str(MiB))
    limit = 16 * MiB if FULL else MiB
    path.write_text(
        '<?xml version="1.0"?>\n<nmaprun scanner="nmap" args="nmap" start="1700000000">\n'
        '<host><status state="up"/><address addr="10.0.0.1" addrtype="ipv4"/>'
        f'<hostnames><hostname name="{name}" type="user"/></hostnames>'
        '<ports><port protocol="tcp" portid="22"><state state="open"/></port></ports></host>\n'
        "</nmaprun>\n")
    result = cli.runner.invoke(app, ["--db", cli.url, "import", str(path)])
    assert "Traceback" not in result.output
    assert len(result.output) < 20_000  # not echoed whole
    _one_problem(cli, str(path), f"an XML tag or text longer than {limit:,} bytes",
                 f"BASTION_MAX_STRING={limit}")
    _nothing_written(cli)
    assert len(cli("imports", "show", str(_last_run(cli)["id"])).stdout) < 20_000


# -- format detection ------------------------------------------------------------------------


def test_nuclei_first_record_beyond_the_sample_is_recognised(cli, tmp_path):
    path = tmp_path / "big-first.jsonl"
    record = {"template-id": "big", "info": {"name": "Big", "severity": "high",
                                             "description": "d" * 100_000},
              "host": "a.example", "matched-at": "https://a.example/", "type": "http"}
    path.write_text(json.dumps(record) + "\n")
    cli("import", str(path))
    run = _last_run(cli)
    assert run["status"] == "succeeded"
    assert cli.json("imports", "show", str(run["id"]))["files"][0]["format"] == "nuclei"


# -- NUL characters (point 7) ----------------------------------------------------------------


def _nuclei(host: str, name: str = "Exposed panel", **extra) -> str:
    return json.dumps({"template-id": "panel", "info": {"name": name, "severity": "medium", **extra},
                       "host": host, "matched-at": f"https://{host}/", "type": "http"}) + "\n"


def test_nul_refused_alike_and_later_files_still_imported(cli, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.jsonl").write_text(_nuclei("a.example"))
    (scans / "b.jsonl").write_text(_nuclei("b.example", name="bad\u0000name"))  # in a property
    (scans / "c.jsonl").write_text(_nuclei("c.example"))
    (scans / "d.jsonl").write_text(_nuclei("d\u0000.example"))  # in a key field
    cli("import", str(scans), code=2)
    run = _last_run(cli)
    assert run["status"] == "partial"
    shown = cli.json("imports", "show", str(run["id"]))
    assert [(f["name"].rsplit("/", 1)[-1], f["status"]) for f in shown["files"]] == [
        ("a.jsonl", "imported"), ("b.jsonl", "rejected"), ("c.jsonl", "imported"),
        ("d.jsonl", "rejected")]
    assert len(shown["errors"]) == 2
    assert all("NUL character (U+0000)" in e for e in shown["errors"]), shown["errors"]
    assert "d.jsonl: line 1" in shown["errors"][1]
    assets = {e["entity_key"] for e in cli.json("changes")["events"]
              if e["event_type"] == "asset.created"}
    assert any("c.example" in k for k in assets) and not any("b.example" in k for k in assets)


def test_nul_refused_by_the_write_path_on_both_engines(tenant):
    from bastion.errors import ValidationFailed
    from bastion.schema.batch import Batch

    batch = Batch()
    batch.add("asset", {"owner": {"team\u0000": "x"}, "tags": ["ok", "b\u0000d"]},
              identifier="a.example")
    with pytest.raises(ValidationFailed) as info:
        tenant.apply(batch, actor="t", source="test")
    fields = sorted(p.field for p in info.value.problems)
    assert fields == ["properties.owner.team\\u0000", "properties.tags[1]"]
    assert tenant.events() == []  # refused whole, on both engines
    with pytest.raises(ValidationFailed, match="NUL character"):
        Batch().add("asset", identifier="a\u0000.example")


# -- control characters on the terminal (point 8) ---------------------------------------------


def test_bidi_and_control_characters_shown_escaped(cli, tmp_path):
    path = tmp_path / "scan\u202egpj.jsonl"
    path.write_text(_nuclei("a.example", name="panel \x1b[31mred\u2066"))
    out = cli("import", str(path)).stdout
    assert "\u202e" not in out and "scan\\u202egpj.jsonl" in out
    listed = cli("list", "risk").stdout
    assert "\x1b" not in listed and "\u2066" not in listed
    assert "\\u001b[31mred\\u2066" in listed, listed
