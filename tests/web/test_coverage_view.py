"""The coverage view in headless Chromium on both engines: the heat map's coloured cells are the
API's covered techniques for a fixture account, in the API's tactic order; a cell shows the
detections and mappings behind it; gaps, overlaps, drift and history are drawn; the Navigator
layer downloads; a reader never sees the account's identifier."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from bastion.coverage.attack import ensure_default_catalog
from bastion.coverage.compute import compute
from bastion.coverage.history import snapshot
from bastion.coverage.inventory import Options, import_detections
from bastion.coverage.matrix import matrix
from bastion.schema.batch import Batch
from bastion.web.coverage import GAPS_SHOWN
from tests.server.test_coverage import det

IDENTIFIER = "111122223333"  # confidential: never shown to a reader


def build(store, tenant, tmp_path) -> dict[str, str]:
    """A named AWS account with detections (two healthy on T1078.004, one on T1535, a broken and
    a disabled one) and two detection imports of one source (drift, history)."""
    ensure_default_catalog(store, actor="test")
    b = Batch()
    aws = b.add("cloud_account", provider="aws", identifier=IDENTIFIER, name="prod-aws",
                criticality="high", platforms=["IaaS"])
    det(b, aws, "d1", [("T1078.004", 0.9, "validated")], level="high", service="guardduty")
    det(b, aws, "d2", [("T1078.004", 0.8, "pending")], level="high", service="cloudtrail",
        type="log_query")
    det(b, aws, "d3", [("T1190", 1.0, "pending")], status="disabled")
    det(b, aws, "d4", [("T1098", 1.0, "pending")], health="broken")
    det(b, aws, "d6", [("T1535", 0.9, "pending")])
    tenant.apply(b, actor="test", source="test")
    cat = tenant.coverage.catalog("enterprise")
    siem = tmp_path / "siem.json"
    opts = dict(actor="test", format="json", account=aws, source="siem")
    siem.write_text(json.dumps([{"rule_id": "s1", "name": "new region", "techniques": ["T1535"]}]))
    import_detections(tenant, [str(siem)], Options(**opts), catalog=cat)
    snapshot(tenant, cat, aws, at=datetime.now(timezone.utc) - timedelta(days=2))
    siem.write_text(json.dumps([{"rule_id": "s3", "name": "cloud storage", "techniques": ["T1530"]}]))
    import_detections(tenant, [str(siem)], Options(**opts), catalog=cat)
    snapshot(tenant, cat, aws)
    return {"aws": aws}


@pytest.fixture
def accounts(console, tmp_path) -> dict[str, str]:
    return build(console.store, console.tenant, tmp_path)


def api_get(console, role: str, path: str, **params):
    r = httpx.get(console.base_url + path, params=params,
                  headers={"Authorization": f"Bearer {console.tokens[role]}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_matrix_layout(store, tenant, tmp_path):
    """Columns in matrix order, sub-techniques under their technique, only covered cells coloured."""
    aws = build(store, tenant, tmp_path)["aws"]
    cov = compute(tenant, tenant.coverage.catalog("enterprise"), account=aws)
    mx = matrix(cov)
    assert [c.shortname for c in mx.columns] == [t.shortname for t in cov.tactics]
    assert mx.covered() == cov.covered() == {"T1078", "T1078.004", "T1535", "T1530"}
    initial = next(c for c in mx.columns if c.shortname == "initial-access")
    valid = next(c for c in initial.cells if c.id == "T1078")
    assert [s.id for s in valid.subtechniques if s.covered] == ["T1078.004"]
    assert valid.score == 2 and valid.colour == "#8ec843"  # d1 and d2: the highest score
    assert all((cell.colour is None) == (not cell.covered) for _col, cell in mx.cells())


def test_the_heat_map_equals_the_api(console, page, accounts):
    console.sign_in(page, "reader")
    page.goto(console.url("/coverage"))
    page.select_option("#account", label="prod-aws")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("#matrix")

    api = api_get(console, "reader", "/v1/coverage/techniques", account="prod-aws", covered="true")
    covered = {t["id"] for t in api["techniques"]}
    coloured = set(page.eval_on_selector_all(
        "#matrix button.cell[style*=background]", "cells => cells.map(c => c.dataset.technique)"))
    assert coloured == covered and covered >= {"T1078", "T1078.004", "T1535"}
    assert set(page.eval_on_selector_all("#matrix button.cell[data-covered=true]",
                                         "cells => cells.map(c => c.dataset.technique)")) == covered
    report = api_get(console, "reader", "/v1/coverage/report", account="prod-aws")
    assert page.eval_on_selector_all("#matrix section.tactic", "s => s.map(t => t.dataset.tactic)") == [
        t["shortname"] for t in report["tactics"]]
    assert page.inner_text("#overall") == f"{report['overall']['covered']} / {report['overall']['total']}"
    scores = {t["id"]: t["score"] for t in api["techniques"]}
    cell = page.locator("[data-tactic=initial-access] button.cell[data-technique=T1078]")
    assert float(cell.get_attribute("data-score")) == scores["T1078"]

    # sub-techniques expand under their technique
    sub = page.locator("[data-tactic=initial-access] button.cell[data-technique='T1078.004']")
    assert not sub.is_visible()
    page.click("[data-tactic=initial-access] button.subs-toggle[aria-controls$=T1078]")
    assert sub.is_visible()

    # a click shows what covers the cell: detections with their mappings
    cell.click()
    drawer = page.locator("#cell-detail")
    drawer.locator("section.behind").first.wait_for()
    text = drawer.inner_text()
    assert "rule d1" in text and "rule d2" in text and "rule d4" not in text  # d4 is broken
    assert "d1 sees T1078.004" in text and "validated" in text and "healthy" in text
    assert "0.9" in text and "analyst" in text
    assert [k.get_attribute("data-detection") for k in drawer.locator("section.behind").all()][0] \
        .startswith("#detection#cloud_account#aws#***#")
    full = console.shot(page, "coverage-cell")
    page.screenshot(path=str(full.with_name(f"coverage-matrix-{console.engine}.png")))  # docs/web.md
    page.keyboard.press("Escape")
    assert not drawer.is_visible()

    # gaps ranked, overlaps, history, drift
    risks = [int(x) for x in page.locator("#gaps-table tbody td.num:first-child").all_inner_texts()]
    assert risks and risks == sorted(risks, reverse=True)
    gaps = api_get(console, "reader", "/v1/coverage/gaps", account="prod-aws", limit=GAPS_SHOWN)
    assert page.locator("#gaps-table tbody td code").all_inner_texts() == [g["technique"] for g in gaps["gaps"]]
    assert page.inner_text("#gaps + .toolbar").startswith(f"{gaps['total']} gap(s)")
    assert "T1078.004" in page.inner_text("#overlaps-table")  # d1 and d2
    history = api_get(console, "reader", "/v1/coverage/history", account="prod-aws", method="default")
    assert page.locator("#history svg circle").count() == len(history) >= 2
    drift = page.inner_text("#drift")
    assert "added 1" in drift and "removed 1" in drift
    assert IDENTIFIER not in page.content()
    console.shot(page, "coverage")

    # the Navigator layer: the API's, keys masked for the reader
    with page.expect_download() as download:
        page.click("#layer-download")
    layer = json.loads(open(download.value.path()).read())
    assert {t["techniqueID"] for t in layer["techniques"] if t["score"] > 0} == covered
    assert layer["versions"]["layer"] == "4.5" and IDENTIFIER not in json.dumps(layer)


def test_the_layer_download_is_the_apis(console, page, accounts):
    console.sign_in(page, "analyst")
    page.goto(console.url("/coverage"))
    page.select_option("#account", label="prod-aws")
    page.click("form.filters button[type=submit]")
    with page.expect_download() as download:
        page.click("#layer-download")
    assert json.loads(open(download.value.path()).read()) == api_get(
        console, "analyst", "/v1/coverage/layer", account="prod-aws")
