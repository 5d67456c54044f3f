"""`bastion import … --account PROVIDER:ID`: the assets an import creates or updates belong to
that cloud account (provider and account fields), so `bastion exposures` finds their account's
detections; without it nothing of the kind is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import InvalidValue
from bastion.ingest.runner import Options, import_paths
from bastion.risks.exposures import account_of
from bastion.schema.batch import key_for

SCANS = Path(__file__).parent.parent / "fixtures" / "scans"
NAABU = str(SCANS / "naabu" / "naabu-host.jsonl")
NUCLEI = str(SCANS / "nuclei" / "v3.jsonl")


def assets(tenant) -> dict[str, tuple]:
    return {r.values["identifier"]: (r.values.get("provider"), r.values.get("account"))
            for r in tenant.list("asset", limit=1000).records}


def test_assets_get_the_account_and_keep_it_without_one(tenant):
    res = import_paths(tenant, [NAABU], Options(actor="tester", account="aws:123456789012"))
    assert res.status == "succeeded"
    got = assets(tenant)
    assert got and set(got.values()) == {("aws", "123456789012")}
    rec = tenant.list("asset", limit=1).records[0]
    assert account_of(rec.values) == key_for("cloud_account", provider="aws", identifier="123456789012")
    # each asset's creation is an event with its account, in the import's transaction
    created = [e for e in tenant.events(limit=1000) if e.entity_kind == "asset"]
    assert len(created) == len(got)
    assert all(e.diff["account"] == [None, "123456789012"] and e.diff["provider"] == [None, "aws"]
               and e.source == "import:naabu" for e in created)
    # another import of other assets without --account sets nothing on them, keeps these
    import_paths(tenant, [NUCLEI], Options(actor="tester"))
    after = assets(tenant)
    assert {k: v for k, v in after.items() if k in got} == got
    assert {v for k, v in after.items() if k not in got} == {(None, None)}


def test_an_import_again_with_another_account_moves_the_assets(tenant):
    import_paths(tenant, [NAABU], Options(actor="tester", account="aws:111111111111"))
    # the same bytes again: not reused (the account is part of what the file imports as)
    res = import_paths(tenant, [NAABU], Options(actor="tester", account="gcp:acme-prod"))
    assert res.files[0].reused_run is None
    assert set(assets(tenant).values()) == {("gcp", "acme-prod")}
    moved = [e for e in tenant.events(limit=1000) if e.event_type == "asset.updated"]
    assert moved and all(e.diff["account"] == ["111111111111", "acme-prod"] for e in moved)


@pytest.mark.parametrize("bad", ["123456789012", "cloud:1", "aws:", ":1"])
def test_a_bad_account_is_refused_in_one_line(tenant, bad):
    with pytest.raises(InvalidValue, match="--account expects PROVIDER:ID"):
        import_paths(tenant, [NAABU], Options(actor="tester", account=bad))
    assert assets(tenant) == {}


def test_cli_import_account(cli):
    out = cli.json("import", NAABU, "--account", "azure:5f1c2a7e-9b3d-4c8e-a2f1-0d6b7e3c9a41")
    assert out["status"] == "succeeded"
    rows = cli.json("list", "assets", "--where", "provider=azure")["items"]
    assert rows and rows == cli.json("list", "assets")["items"]  # every asset of the import
    assert {r["account"] for r in rows} == {"5f1c2a7e-9b3d-4c8e-a2f1-0d6b7e3c9a41"}
    err = cli("import", NAABU, "--account", "nope", code=1)
    assert "--account expects PROVIDER:ID" in err.output
