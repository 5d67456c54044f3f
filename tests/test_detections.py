"""Detection inventories through the library, on both engines: imports of every format, mappings,
revisions, snapshots and removals, bad input, indicators, validation and health."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from bastion.coverage import detections as ops
from bastion.coverage import history
from bastion.coverage.catalog import Catalog, Technique
from bastion.coverage.inventory import DEFAULT_ACCOUNT, Options, import_detections
from bastion.errors import InvalidValue
from bastion.schema.batch import key_for
from bastion.store import snapshots

FIXTURES = Path(__file__).parent / "fixtures"
SIGMA = FIXTURES / "sigma"
DET = FIXTURES / "detections"
AWS = "#cloud_account#aws#123456789012"


def _catalog(*ids: str, revoked: dict[str, str] | None = None) -> Catalog:
    cat = Catalog("enterprise", "19", "test", [])
    for tid in ids:
        cat.techniques[tid] = Technique(tid, tid, tid.split(".")[0] if "." in tid else None, (), ())
    for old, new in (revoked or {}).items():
        cat.techniques[old] = Technique(old, old, None, (), (), revoked=True, revoked_by=new)
    return cat


CATALOG = _catalog("T1685.002", "T1078", "T1078.004", "T1098.001", "T1098.003", "T1136.003",
                   "T1059.001", "T1530", "T1537", revoked={"T1562.008": "T1685.002"})


def _import(tenant, *paths, **kw):
    catalog = kw.pop("catalog", CATALOG)
    return import_detections(tenant, [str(p) for p in paths], Options(actor="tester", **kw), catalog=catalog)


def _det(rule_id: str, account: str = DEFAULT_ACCOUNT) -> str:
    return key_for("detection", account=account, rule_id=rule_id)


def _maps(tenant, detection: str) -> dict[str, dict]:
    return {m.values["technique"]: m.values
            for m in tenant.list("mapping", where={"detection": detection}).records}


@pytest.fixture
def aws(tenant):
    ops.add_account(tenant, actor="tester", provider="aws", identifier="123456789012", name="prod",
                    platforms=["IaaS"])
    return AWS


def test_detection_imports_are_recorded_runs_and_read_gzip(tenant, tmp_path):
    import gzip

    rules = tmp_path / "rules"
    rules.mkdir()
    rule = SIGMA / "aws_console_login.yml"
    (rules / "aws_console_login.yml.gz").write_bytes(gzip.compress(rule.read_bytes()))
    (rules / "README.md").write_text("not a rule")  # no detection suffix: not an input
    r = _import(tenant, rules)
    assert (r.status, r.totals()["detections"]) == ("succeeded", 1)
    assert tenant.get(_det("0b1e2d3c-0001-4000-8000-000000000002")) is not None
    bad = _import(tenant, FIXTURES / "detections" / "ctid_azure.json", account=None, format="sigma")
    assert bad.status == "failed"
    runs = tenant.runs.list(kind="detections")
    assert [(x.id, x.status) for x in runs] == [(bad.run_id, "failed"), (r.run_id, "succeeded")]
    [f] = runs[1].files
    assert (f["name"], f["format"], f["detections"]) == (
        str(rules / "aws_console_login.yml.gz"), "sigma", 1)
    assert f["sha256"] == hashlib.sha256((rules / "aws_console_login.yml.gz").read_bytes()).hexdigest()
    assert runs[0].errors and runs[0].errors[0].startswith(str(FIXTURES / "detections" / "ctid_azure.json"))
    # Its events carry the run's correlation id.
    assert {e.correlation_id for e in tenant.history(_det("0b1e2d3c-0001-4000-8000-000000000002"))} == {
        runs[1].correlation_id}


def test_sigma_directory(tenant):
    r = _import(tenant, SIGMA)
    assert r.status == "succeeded" and not r.rejected
    t = r.totals()
    assert t["detections"] == 11 and t["added"] == 11 and t["files"] == 10
    assert tenant.get(DEFAULT_ACCOUNT).values["name"] == "default"
    login = _det("0b1e2d3c-0001-4000-8000-000000000002")
    rec = tenant.get(login)
    assert rec.values["type"] == "sigma_rule" and rec.values["service"] == "cloudtrail"
    assert rec.values["status"] == "enabled" and rec.values["level"] == "medium" and rec.values["revision"] == 1
    assert "attack.initial-access" in rec.values["rule_tags"] and rec.properties == {"source": "sigma"}
    maps = _maps(tenant, login)
    assert set(maps) == {"T1078", "T1078.004"}  # tactic tags map nothing
    assert all(m["method"] == "tag" and m["confidence"] == 1.0 and m["mapped_by"] == "sigma:tags"
               and m["validation"] == "pending" and m["attack_version"] == "19" for m in maps.values())
    # multi-document file: two rules; an upper-case tag maps too; groups, CVEs, software ignored
    assert set(_maps(tenant, _det("0b1e2d3c-0001-4000-8000-000000000008"))) == {"T1136.003", "T1098.003"}
    assert set(_maps(tenant, _det("0b1e2d3c-0001-4000-8000-000000000005"))) == {"T1685.002"}
    assert tenant.get(_det("0b1e2d3c-0001-4000-8000-000000000006")).values["status"] == "deprecated"
    # the untagged CloudTrail rule is mapped by the indicators
    untagged = _maps(tenant, _det("0b1e2d3c-0001-4000-8000-000000000009"))
    assert list(untagged) == ["T1685.002"]
    assert untagged["T1685.002"]["method"] == "pattern" and untagged["T1685.002"]["confidence"] == 0.7
    snap = snapshots.snapshots(tenant.scope)
    assert len(snap) == 1 and snap[0].source == "sigma" and len(snap[0].detections) == 11
    assert snap[0].detections[login][0] == rec.values["content_hash"]
    # ... and the coverage it gives is kept for `bastion coverage history`, tied to it
    [cov] = history.history(tenant, DEFAULT_ACCOUNT)
    assert r.coverage_snapshots == {"sigma": cov["id"]}
    assert cov["detection_snapshot"] == snap[0].id and cov["attack_version"] == "19"


def test_reimport_unchanged_then_revision_then_removal(tenant, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(SIGMA, rules)
    _import(tenant, rules)
    seq = tenant.events(limit=10000)[-1].seq
    again = _import(tenant, rules)
    assert again.totals()["unchanged"] == 11 and again.totals()["added"] == 0
    assert tenant.events(after_seq=seq) == []  # same hashes: no events
    # a changed rule: revision 2, an updated event with the raw/hash diff
    path = rules / "aws_access_key_created.yml"
    path.write_text(path.read_text().replace("level: medium", "level: high"))
    key = _det("0b1e2d3c-0001-4000-8000-000000000003")
    old = tenant.get(key)
    r = _import(tenant, rules)
    assert r.totals()["modified"] == 1
    rec = tenant.get(key)
    assert rec.values["revision"] == 2 and rec.values["level"] == "high"
    ev = [e for e in tenant.history(key) if e.entity_kind == "detection"][-1]
    assert ev.event_type == "detection.updated"
    assert ev.diff["revision"] == [1, 2]
    assert ev.diff["content_hash"] == [old.values["content_hash"], rec.values["content_hash"]]
    assert "raw" in ev.diff
    # a rule removed from the directory: deleted with its mappings, history kept
    (rules / "aws_console_login.yml").unlink()
    login = _det("0b1e2d3c-0001-4000-8000-000000000002")
    mapping_keys = [m.key for m in tenant.list("mapping", where={"detection": login}).records]
    r = _import(tenant, rules, keep_missing=True)
    assert r.removed == 0 and tenant.get(login) is not None
    assert login in snapshots.snapshots(tenant.scope, limit=1)[0].detections  # still in the inventory
    r = _import(tenant, rules)
    assert r.removed == 1 and r.mappings_removed == 2
    assert tenant.get(login) is None and all(tenant.get(k) is None for k in mapping_keys)
    assert tenant.history(login)[-1].event_type == "detection.deleted"
    latest = snapshots.snapshots(tenant.scope, limit=1)[0]
    assert login not in latest.detections and len(latest.detections) == 10


def test_changed_tags_update_mappings_and_keep_manual_ones(tenant, tmp_path):
    rule = tmp_path / "r.yml"
    rule.write_text((SIGMA / "aws_console_login.yml").read_text())
    _import(tenant, rule)
    key = _det("0b1e2d3c-0001-4000-8000-000000000002")
    ops.add_mapping(tenant, key, "T1530", actor="alice", confidence=0.4, rationale="reads", catalog=CATALOG)
    m = key_for("mapping", technique="T1078.004", detection=key)
    ops.set_validation(tenant, m, "validated", actor="bob")
    rule.write_text(rule.read_text().replace("    - attack.t1078\n", ""))
    r = _import(tenant, rule)
    maps = _maps(tenant, key)
    assert set(maps) == {"T1078.004", "T1530"} and r.mappings_removed == 1
    assert maps["T1078.004"]["validation"] == "validated"  # a re-stated mapping keeps it
    assert maps["T1530"]["method"] == "analyst" and maps["T1530"]["mapped_by"] == "alice"


def test_ctid_navigator_simple(tenant, aws):
    r = _import(tenant, DET / "ctid_aws.json", DET / "layer.json", DET / "simple.csv", DET / "simple.json",
                account="aws:123456789012")
    assert not r.rejected, r.as_dict()
    assert set(r.snapshots) == {"ctid:aws", "navigator", "simple"}  # a CTID file names its platform
    gd = _maps(tenant, _det("amazon_guardduty", AWS))
    assert gd["T1078.004"]["confidence"] == 1.0 and gd["T1078.004"]["method"] == "vendor"
    assert gd["T1078.004"]["attack_version"] == "16.1" and gd["T1078.004"]["mapped_by"] == "ctid:aws"
    assert "detect/significant" in gd["T1078.004"]["rationale"] and "respond/minimal" in gd["T1078.004"]["rationale"]
    ct = _maps(tenant, _det("aws_cloudtrail", AWS))
    assert ct["T1078.004"]["confidence"] == 0.6 and ct["T1685.002"]["confidence"] == 0.3
    art = tenant.get(_det("aws_artifact", AWS))
    assert art.values["type"] == "cloud_control" and _maps(tenant, art.key) == {}
    assert any("without a score" in n for f in r.files for n in f.notes)
    # navigator: the scored technique → the layer's detection; metadata rule → its own; disabled skipped
    assert set(_maps(tenant, _det("SOC analytics", AWS))) == {"T1078.004"}
    assert set(_maps(tenant, _det("SIEM-042", AWS))) == {"T1098.001"}
    # CSV: two rows, one rule, confidences as given; a disabled rule without technique
    siem = _maps(tenant, _det("siem-001", AWS))
    assert siem["T1685.002"]["confidence"] == 0.9 and siem["T1078.004"]["confidence"] == 0.5
    assert tenant.get(_det("siem-002", AWS)).values["status"] == "disabled"
    # JSON: an EventBridge pattern without technique → pattern mapping
    eb = _maps(tenant, _det("eb-stop-logging", AWS))
    assert eb["T1685.002"]["method"] == "pattern" and eb["T1685.002"]["mapped_by"] == "bastion:indicators"
    assert _maps(tenant, _det("alarm-root", AWS))["T1078.004"]["confidence"] == 0.8


def test_bad_input_rejects_the_file(tenant):
    r = _import(tenant, DET / "bad", SIGMA / "aws_console_login.yml")
    # An unknown tag never refuses a rule: it is imported as written and reported.
    assert [f.status for f in r.files] == ["rejected", "rejected", "imported", "imported"]
    lines = [p for f in r.files for p in f.problems]
    assert any(p.endswith("invalid.yml: invalid YAML at line 4: did not find expected ',' or ']'") for p in lines)
    assert any("no_id.yml: rule 'Rule Without Id': rule has no id" in p for p in lines)
    assert not any("unknown_technique.yml" in p for p in lines)
    assert any("unknown_technique.yml: tags: T9999 is unknown to ATT&CK enterprise 19 "
               "(imported; counts toward no coverage)" in n for f in r.files for n in f.notes)
    assert set(_maps(tenant, _det("0b1e2d3c-0002-4000-8000-000000000003"))) == {"T1078.004", "T9999"}
    assert tenant.get(_det("0b1e2d3c-0001-4000-8000-000000000002")) is not None


def test_skip_invalid_lists_what_was_skipped(tenant):
    r = _import(tenant, DET / "bad", skip_invalid=True)
    assert not r.rejected and r.totals()["skipped"] == 2
    key = _det("0b1e2d3c-0002-4000-8000-000000000003")
    assert set(_maps(tenant, key)) == {"T1078.004", "T9999"}  # the unknown technique kept, listed
    assert any("T9999 is unknown to ATT&CK enterprise 19" in n for f in r.files for n in f.notes)


def test_wrong_bundle_and_revoked_ids(tenant, tmp_path):
    r = _import(tenant, DET / "stix_bundle.json", format="ctid")
    assert r.rejected and "not a CTID mappings file" in r.files[0].problems[0]
    rule = tmp_path / "old.yml"
    rule.write_text((SIGMA / "aws_cloudtrail_stop_logging.yml").read_text().replace("t1685.002", "t1562.008"))
    r = _import(tenant, rule)
    m = _maps(tenant, _det("0b1e2d3c-0001-4000-8000-000000000001"))
    assert set(m) == {"T1685.002"}
    assert "T1562.008 via revoked-by → T1685.002 (ATT&CK enterprise 19)" in m["T1685.002"]["rationale"]


def test_rejected_file_blocks_removals(tenant, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(SIGMA, rules)
    _import(tenant, rules)
    (rules / "aws_console_login.yml").write_text("title: [broken")
    r = _import(tenant, rules)
    assert r.removed == 0 and r.notes and tenant.get(_det("0b1e2d3c-0001-4000-8000-000000000002"))


def test_validation_health_and_deprecated_apis(tenant, tmp_path):
    _import(tenant, DET / "simple.json")
    m = key_for("mapping", technique="T1078.004", detection=_det("alarm-root"))
    ops.set_validation(tenant, m, "disputed", actor="bob", rationale="alarm is on root only")
    ev = tenant.history(m)[-1]
    assert ev.event_type == "mapping.updated" and ev.diff["validation"] == ["pending", "disputed"]
    assert ev.actor == "bob"
    key = _det("alarm-root")
    rec = ops.set_health(tenant, key, "broken", actor="bob", issues=["log source disabled"])
    assert rec.values["health"] == "broken" and rec.values["health_issues"] == ["log source disabled"]
    assert rec.values["last_validated"] is not None
    doc = tmp_path / "legacy.json"
    doc.write_text('[{"rule_id": "aad-graph", "type": "log_query", "raw": "GET https://graph.windows.net/x/users"},'
                   ' {"rule_id": "gcr", "type": "other", "raw": "image: gcr.io/acme/app:1"},'
                   ' {"rule_id": "fine", "type": "other", "raw": "image: europe-docker.pkg.dev/acme/app"}]')
    _import(tenant, doc, source="legacy")
    found = ops.check_deprecated(tenant, actor="bob")
    assert {r.values["rule_id"]: [a.id for a in apis] for r, apis in found} == {
        "aad-graph": ["azure-ad-graph"], "gcr": ["google-container-registry"]}
    assert tenant.get(_det("gcr")).values["health"] == "unknown"  # listing changes nothing
    ops.check_deprecated(tenant, actor="bob", apply=True)
    rec = tenant.get(_det("gcr"))
    assert rec.values["health"] == "degraded" and "google-container-registry" in rec.values["health_issues"][0]
    seq = tenant.events(limit=10000)[-1].seq
    ops.check_deprecated(tenant, actor="bob", apply=True)
    assert tenant.events(after_seq=seq) == []  # applied once


def test_user_indicators(tenant, tmp_path):
    extra = tmp_path / "ind.yaml"
    extra.write_text("indicators:\n  - {provider: aws, field: eventName, value: GetObject, technique: T1530,"
                     " rationale: reads objects}\n")
    doc = tmp_path / "q.csv"
    doc.write_text('rule_id,name,type,service,status,technique,confidence,owner,raw\n'
                   'q1,Reads,log_query,cloudtrail,enabled,,,soc,"filter eventName = \'GetObject\'"\n')
    _import(tenant, doc, indicators=[str(extra)])
    assert _maps(tenant, _det("q1"))["T1530"]["method"] == "pattern"


# -- detections land in their own cloud; removals stay within their source ------------------------


def test_ctid_file_of_another_provider_is_refused(tenant, aws):
    _import(tenant, DET / "ctid_aws.json", account=AWS)
    before = {r.key for r in tenant.list("detection").records}
    r = _import(tenant, DET / "ctid_azure.json", account=AWS)
    assert [f.status for f in r.files] == ["rejected"] and r.removed == 0
    assert r.files[0].problems == [
        f"{DET / 'ctid_azure.json'}: a CTID Mappings Explorer JSON file for azure "
        f"(metadata.mapping_framework: azure), not for aws account {AWS}; import it into an account of provider azure"]
    assert {r.key for r in tenant.list("detection").records} == before  # the AWS controls stay
    assert tenant.get(_det("microsoft_sentinel", AWS)) is None
    # --skip-invalid skips the file and says so; still nothing lands in the AWS account
    r = _import(tenant, DET / "ctid_azure.json", account=AWS, skip_invalid=True)
    assert [f.status for f in r.files] == ["ignored"] and not r.snapshots
    assert r.files[0].problems[0].endswith("skipped: a CTID Mappings Explorer JSON file for azure "
                                           f"(metadata.mapping_framework: azure), not for aws account {AWS}")
    assert {r.key for r in tenant.list("detection").records} == before
    assert [s.source for s in snapshots.snapshots(tenant.scope, account=AWS)] == ["ctid:aws"]


def test_rules_of_other_providers_are_skipped_and_counted(tenant, aws):
    r = _import(tenant, SIGMA, account=AWS)
    assert r.other_providers() == {"azure": 1, "gcp": 1} and r.totals()["other_providers"] == 2
    assert r.status == "succeeded" and r.totals()["skipped"] == 0
    assert "skipped 2 rule(s) of other providers: azure 1, gcp 1 (not counted as coverage of aws " \
           f"account {AWS})" in r.notes
    services = {d.values["service"] for d in tenant.list("detection", where={"account": AWS}).records}
    assert "cloudtrail" in services and not services & {"activitylogs", "gcp.audit"}
    # the default account (provider other) takes every provider's rules
    r = _import(tenant, SIGMA)
    assert r.other_providers() == {} and r.totals()["detections"] == 11


def test_removals_stay_within_their_source(tenant):
    """Two CTID files of different platforms are two sources: the second removes nothing of the first."""
    _import(tenant, DET / "ctid_aws.json")
    r = _import(tenant, DET / "ctid_azure.json")
    assert r.removed == 0 and set(r.snapshots) == {"ctid:azure"}
    assert tenant.get(_det("amazon_guardduty")) is not None and tenant.get(_det("microsoft_sentinel")) is not None
    # a rule another source brought since is not removed when its first source no longer lists it
    rules = FIXTURES / "sigma" / "aws_console_login.yml"
    _import(tenant, rules)
    _import(tenant, rules, source="custom")
    empty = Path(str(rules)).parent / "win_powershell_encoded.yaml"
    r = _import(tenant, empty)  # the sigma source now lists only another rule
    assert r.removed == 0 and tenant.get(_det("0b1e2d3c-0001-4000-8000-000000000002")) is not None


def test_refused_import_writes_nothing(tenant):
    r = _import(tenant, DET / "bad" / "invalid.yml")
    assert r.status == "failed" and r.rejected
    assert tenant.get(DEFAULT_ACCOUNT) is None  # no account created
    assert snapshots.snapshots(tenant.scope) == [] and tenant.count("detection") == 0


def test_skipped_mappings_counted_per_reason(tenant, aws):
    r = _import(tenant, DET / "ctid_aws_bad_rows.json", account=AWS, skip_invalid=True)
    t = r.totals()
    assert (t["detections"], t["skipped"], t["mappings_skipped"]) == (2, 0, 5)
    assert r.skip_reasons() == {"score_value … is not minimal, partial or significant": 3,
                                "attack_object_id is missing": 1, "invalid ATT&CK technique id": 1}
    assert ("skipped 5 mapping(s): 3 score_value … is not minimal, partial or significant; "
            "1 attack_object_id is missing; 1 invalid ATT&CK technique id") in r.notes
    assert set(_maps(tenant, _det("aws_config", AWS))) == {"T1078.004"}
    assert set(_maps(tenant, _det("aws_macie", AWS))) == {"T1530"}


def test_drift_compares_one_source_at_its_two_instants(tenant, aws, tmp_path):
    """Sigma rules (A), then another source, then the Sigma rules with one rule removed (B): the
    drift's like-with-like delta is Sigma's own coverage at A and at B; the account's coverage at
    the two instants is reported beside it, naming the other source imported in between."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("aws_console_login.yml", "aws_access_key_created.yml", "aws_cloudtrail_stop_logging.yml"):
        shutil.copy(SIGMA / name, rules / name)
    a = _import(tenant, rules, account=AWS).snapshots["sigma"]  # T1078, T1078.004, T1098.001, T1685.002
    siem = tmp_path / "siem.csv"
    siem.write_text("rule_id,name,type,service,status,technique,confidence,owner\n"
                    "q1,S3 reads,log_query,cloudtrail,enabled,T1530,0.9,soc\n"
                    "q2,Snapshot shares,log_query,cloudtrail,enabled,T1537,0.9,soc\n"
                    "q3,New users,log_query,cloudtrail,enabled,T1136.003,0.9,soc\n")
    other = _import(tenant, siem, account=AWS).snapshots["simple"]
    history.snapshot(tenant, CATALOG, AWS, detection_snapshot_id=a)  # tied to A, taken later: not A's instant
    (rules / "aws_cloudtrail_stop_logging.yml").unlink()
    b = _import(tenant, rules, account=AWS).snapshots["sigma"]
    d = history.drift(tenant, AWS, catalog=CATALOG)
    assert (d["from"]["id"], d["to"]["id"], d["source"]) == (a, b, "sigma")
    assert d["counts"]["removed"] == 1 and d["counts"]["added"] == 0
    own = d["source_delta"]["overall"]
    assert (own["covered_before"], own["covered_after"], own["total_after"]) == (4, 3, 9)
    assert own["percent_delta"] == -11.11
    account = d["coverage_delta"]["overall"]
    assert (account["covered_before"], account["covered_after"]) == (4, 6)
    assert [x["id"] for x in d["between"]] == [other] and d["between"][0]["source"] == "simple"
    with pytest.raises(InvalidValue, match="different sources"):
        history.drift(tenant, AWS, from_snapshot=a, to_snapshot=other, catalog=CATALOG)
