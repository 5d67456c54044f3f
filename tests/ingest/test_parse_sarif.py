"""SARIF 2.1.0 parser: per-file risks, severities, messages, streaming and refusals."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from bastion.ingest import sarif
from bastion.ingest.records import Invalid, Malformed, Record, Sample

FIXTURES = Path(__file__).parent.parent / "fixtures" / "scans"
SARIF = FIXTURES / "sarif"

REPO = "#asset#https://github.com/acme/shop#https://github.com/acme/shop"
QUERY = "#asset#https://github.com/acme/shop/src/db/query.js#https://github.com/acme/shop/src/db/query.js"
USERS = "#asset#https://github.com/acme/shop/src/api/users.js#https://github.com/acme/shop/src/api/users.js"


def parse(path: Path) -> list:
    with open(path, "rb") as fh:
        return list(sarif.parse(io.BufferedReader(fh)))


def keys(rec: Record) -> list[str]:
    return [e.prepared[1] for e in rec.entities]


def edges(rec: Record) -> set[tuple[str, str, str]]:
    return {(r.kind, r.source, r.target) for r in rec.relationships}


@pytest.fixture(scope="module")
def codeql() -> list:
    return parse(SARIF / "codeql.sarif")


def test_places(codeql):
    assert [r.where for r in codeql] == [f"runs[0].results[{i}]" for i in range(5)]


def test_repository_and_file_assets(codeql):
    rec = codeql[0]
    assert keys(rec) == [REPO, QUERY]
    repo, file = rec.entities
    assert repo.values == {"identifier": "https://github.com/acme/shop", "class": "repository",
                           "group": "https://github.com/acme/shop"}  # ".git" removed
    assert file.values["class"] == "repository"
    assert file.values["group"] == "https://github.com/acme/shop/src/db/query.js"
    assert edges(rec) == {("DEPENDS_ON", REPO, QUERY)}


def test_finding_with_security_severity_two_locations_and_fingerprint(codeql):
    (f,) = codeql[0].findings
    assert (f.target, f.name, f.severity) == (QUERY, "js/sql-injection", "high")  # 8.8
    assert f.title == "This query depends on a user-provided value."
    assert f.evidence == ["src/db/query.js:42", "src/db/query.js:57",
                          "fingerprint primaryLocationLineHash=a1b2c3d4e5f60718:1"]
    assert f.properties == {
        "tool": "CodeQL", "security_severity": "8.8",
        "tags": ["security", "external/cwe/cwe-089", "external/cwe/cwe-090"],
        "cwe": ["CWE-89", "CWE-90"],
        "rule_description": "Database query built from user-controlled sources"}
    assert f.cve is None and f.cvss is None


def test_message_id_arguments_rule_index_and_artifact_index(codeql):
    (f,) = codeql[1].findings
    assert f.name == "js/unused-local-variable"  # from rule.index
    assert f.title == "Unused variable tmp in render."  # messageStrings + arguments
    assert f.severity == "low"  # defaultConfiguration.level note
    assert f.target == QUERY  # artifactLocation.index → artifacts[0]
    assert f.evidence == ["src/db/query.js:7", "fingerprint stable/v1=ffee"]


def test_same_rule_in_another_file_is_another_asset_group(codeql):
    (f,) = codeql[2].findings
    assert (f.target, f.name) == (USERS, "js/sql-injection")  # file:///src/api/users.js
    assert f.evidence == ["src/api/users.js:3"]


def test_invalid_results(codeql):
    assert codeql[3] == Invalid("runs[0].results[3]",
                                "result names no rule (no ruleId, rule.id, or ruleIndex of a known rule)")
    assert codeql[4] == Invalid("runs[0].results[4]", "expected a result object, got str")


def test_provenance_after_results_and_runs_without_provenance():
    recs = parse(SARIF / "semgrep-late-provenance.sarif")
    assert [r.where for r in recs] == ["runs[0].results[0]", "runs[0].results[1]",
                                      "runs[1].results[0]"]
    repo = "#asset#https://gitlab.example.com/team/api#https://gitlab.example.com/team/api"
    views = ("#asset#https://gitlab.example.com/team/api/app/views.py"
             "#https://gitlab.example.com/team/api/app/views.py")
    (f,) = recs[0].findings
    assert (f.target, f.severity, f.properties["cwe"]) == (views, "medium", ["CWE-95"])
    (f,) = recs[1].findings  # no location: on the repository
    assert (f.target, f.evidence) == (repo, [])
    assert keys(recs[2]) == ["#asset#sarif:semgrep#sarif:semgrep",
                             "#asset#sarif:semgrep/config/.env#sarif:semgrep/config/.env"]
    assert recs[2].findings[0].severity == "info"  # level none


def test_spooled_results_keep_their_places(monkeypatch):
    monkeypatch.setattr(sarif, "SPOOL_MEMORY", 10)  # force the spool to disk
    assert [r.where for r in parse(SARIF / "semgrep-late-provenance.sarif")][:2] == [
        "runs[0].results[0]", "runs[0].results[1]"]


def test_whole_file_refusals():
    with pytest.raises(Malformed, match=r"^not a SARIF 2.1.0 log: 'version' is '2.0.0'$"):
        parse(SARIF / "wrong-version.sarif")
    with pytest.raises(Malformed, match=r"^not valid JSON \(parse error: premature EOF"):
        parse(SARIF / "truncated.sarif")
    with pytest.raises(Malformed, match="top level is not a JSON object"):
        list(sarif.parse(io.BufferedReader(io.BytesIO(b"[1, 2]"))))
    with pytest.raises(Malformed, match="'runs' member is missing"):
        list(sarif.parse(io.BufferedReader(io.BytesIO(b'{"version": "2.1.0"}'))))
    with pytest.raises(Malformed, match="'version' member is missing"):
        list(sarif.parse(io.BufferedReader(io.BytesIO(b'{"runs": []}'))))


def test_security_severity_scale():
    f = sarif._from_security_severity
    assert [f("9.0"), f("7"), f("4.0"), f("0.1"), f("0"), f(None)] == [
        "critical", "high", "medium", "low", "info", None]
    with pytest.raises(Malformed, match="security-severity 'high' is not a number"):
        f("high")


def _sample(path: Path) -> Sample:
    head = path.read_bytes()[:65536]
    try:
        first = orjson.loads(head.splitlines()[0]) if head.strip()[:1] in (b"{", b"[") else None
    except orjson.JSONDecodeError:
        first = None
    return Sample(head, first)


def test_sniff():
    for name in ("codeql.sarif", "semgrep-late-provenance.sarif", "truncated.sarif"):
        assert sarif.sniff(_sample(SARIF / name)), name
