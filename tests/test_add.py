"""`bastion add` / edits.put: only the fields given change (merge); --replace replaces. Both engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import ConflictError
from bastion.schema.batch import Batch
from bastion.store import edits
from cli_harness import cli, one_error_line, runner  # noqa: F401 (fixtures)

HTTPX = Path(__file__).parent / "fixtures" / "scans" / "httpx" / "httpx.jsonl"
SITE = "#asset#www.example.com#https://www.example.com/"


def imported(tenant) -> str:
    b = Batch()
    key = b.add("asset", {"title": "Example Domain", "webserver": "nginx/1.19.0"},
                identifier="https://www.example.com/", criticality="high")
    tenant.apply(b, actor="httpx", source="import")
    return key


def test_put_merges_the_given_fields_into_the_stored_entity(tenant):
    key = imported(tenant)
    assert key == SITE
    got, res = edits.put(tenant, "asset", {"identifier": "https://www.example.com/",
                                           "exposure": "external"}, actor="ana", source="cli")
    assert got == key and res.outcome[key] == "updated"
    rec = tenant.get(key)
    assert (rec.values["exposure"], rec.values["criticality"]) == ("external", "high")
    assert rec.properties == {"title": "Example Domain", "webserver": "nginx/1.19.0"}
    assert tenant.history(key)[-1].diff == {"exposure": ["unknown", "external"]}
    # A property given is added or replaced; given as None it is removed.
    edits.put(tenant, "asset", {"identifier": "https://www.example.com/"},
              {"owner": "web", "webserver": None}, actor="ana", source="cli")
    assert tenant.get(key).properties == {"title": "Example Domain", "owner": "web"}


def test_put_replace_writes_exactly_what_is_given(tenant):
    key = imported(tenant)
    edits.put(tenant, "asset", {"identifier": "https://www.example.com/", "exposure": "external"},
              actor="ana", source="cli", replace=True)
    rec = tenant.get(key)
    assert (rec.values["exposure"], rec.values["criticality"], rec.properties) == (
        "external", None, None)


def test_a_merge_expects_the_version_it_read(tenant):
    key = imported(tenant)
    with pytest.raises(ConflictError):
        edits.put(tenant, "asset", {"identifier": "https://www.example.com/", "name": "x"},
                  actor="ana", source="cli", expected_version=3)
    assert tenant.get(key).version == 1


def test_cli_add_keeps_what_an_import_wrote(cli, tmp_path):
    cli("import", str(HTTPX))
    before = cli.json("get", SITE)
    assert before["properties"]["title"] == "Example Domain"
    # The example of `bastion add asset --help`, on an imported asset.
    assert cli("add", "asset", "--identifier", "https://www.example.com/", "--exposure",
               "internal").stdout.split() == ["updated", SITE]
    after = cli.json("get", SITE)
    assert after["exposure"] == "internal" and after["properties"] == before["properties"]
    assert cli.json("history", SITE)[-1]["diff"] == {"exposure": [before["exposure"], "internal"]}
    cli("add", "asset", "--identifier", "https://www.example.com/", "--replace")
    after = cli.json("get", SITE)
    assert (after["exposure"], after["properties"]) == ("unknown", None)
    one_error_line(cli("add", "asset", "--identifier", "x.example", "--merge", "--replace", code=1))
    assert "--replace" in cli("add", "asset", "--help").stdout


def test_a_risk_status_given_to_put_follows_the_lifecycle_rules(tenant):
    # Merging `status=open` into a risk closed as not_observed must not keep that reason, and a
    # status is checked as `risk set-status` checks it (deleting needs a reason).
    from bastion.errors import InvalidValue
    from bastion.risks.lifecycle import set_status

    b = Batch()
    asset = b.add("asset", identifier="203.0.113.10")
    key = b.add("risk", target=asset, name="exposed-git", severity="high")
    tenant.apply(b, actor="nuclei", source="import")
    set_status(tenant, key, "remediated", reason="not_observed", comment=None, actor="ana")
    risk = {"target": asset, "name": "exposed-git"}
    edits.put(tenant, "risk", {**risk, "status": "open"}, actor="ana", source="cli")
    rec = tenant.get(key)
    assert (rec.values["status"], rec.values["reason"], rec.values["severity"]) == (
        "open", None, "high")
    version = rec.version
    for values, message in [({"status": "deleted"}, "needs --reason"),
                            ({"status": "open", "reason": "duplicate"}, "a reason is given only")]:
        with pytest.raises(InvalidValue, match=message):
            edits.put(tenant, "risk", {**risk, **values}, actor="ana", source="cli")
    assert tenant.get(key).version == version
