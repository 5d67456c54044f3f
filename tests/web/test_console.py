"""The console in headless Chromium on both engines: a few broad tests, several assertions each,
against the library's answers (same filters, same masking, the events written)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from bastion.ingest.runner import Options, import_inputs
from bastion.risks import lifecycle
from bastion.store import edits

SCAN = Path(__file__).parent / "fixtures" / "scan.jsonl"
OPEN = ["status=" + ",".join(lifecycle.OPEN_STATES)]


def seed(console) -> None:
    """Five findings on two hosts (info to critical), imported as `bastion import` does."""
    import_inputs(console.tenant, [str(SCAN)], Options(actor="seed", source="weekly"))


def test_sign_in_and_out(console, page):
    page.goto(console.url("/risks"))
    assert page.url.startswith(console.url("/signin"))  # no session: to the sign-in page
    page.fill("#key", "bst_1_nope_wrong")
    page.click("button[type=submit]")
    assert "not accepted" in page.inner_text("[role=alert]")
    console.shot(page, "signin")

    console.sign_in(page, "reader")
    cookie = next(c for c in page.context.cookies() if c["name"] == "bastion_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert console.tokens["reader"] not in cookie["value"]  # encrypted, not the key in clear
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    nav = page.locator("header nav a").all_inner_texts()
    assert nav == ["Overview", "Risks", "Assets", "Imports", "Coverage", "Graph"]  # no Administration
    assert page.inner_text(".key-name") == "reader-key"
    assert page.goto(console.url("/admin")).status == 403  # refused by the server, not only hidden

    page.goto(console.url("/"))
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/console/signin$"))
    assert not [c for c in page.context.cookies() if c["name"] == "bastion_session"]
    page.goto(console.url("/"))
    assert page.url.startswith(console.url("/signin"))

    # A revoked key's session ends at once.
    console.sign_in(page, "uploader")
    console.tenant.keys.revoke("uploader-key", actor="test", source="test")
    page.goto(console.url("/imports"))
    assert page.url.startswith(console.url("/signin"))


def test_overview_risks_triage_and_csv(console, page):
    seed(console)
    console.sign_in(page, "analyst")
    open_by_sev = {s: console.tenant.count("risk", where=[*OPEN, f"severity={s}"])
                   for s in ("critical", "high", "medium", "low", "info")}
    for sev, n in open_by_sev.items():
        assert page.inner_text(f"[data-severity={sev}]") == str(n)
    assert page.inner_text("#open-risks") == str(sum(open_by_sev.values()))
    trend = page.get_attribute("svg.chart", "aria-label")  # today's end of the event-log walk
    assert trend.startswith("Open risks: 0 on") and f", {sum(open_by_sev.values())} on" in trend
    assert page.locator("#last-imports tbody tr").count() == 1
    console.shot(page, "overview")

    # Filtered (high and up) and sorted by priority, as the library answers.
    page.goto(console.url("/risks"))
    page.check("input[name=severity][value=critical]")
    page.check("input[name=severity][value=high]")
    page.click("form.filters button[type=submit]")
    expected = console.tenant.list("risk", where=[*OPEN, "severity=high,critical"],
                                   order_by="priority", descending=True).records
    keys = page.locator("#risks tbody tr").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert keys == [r.key for r in expected] and len(keys) == 2
    priorities = [r.values["priority"] for r in expected]
    assert priorities == sorted(priorities, reverse=True)
    console.shot(page, "risks")

    # The CSV has exactly the filtered rows, in the same order.
    with page.expect_download() as download:
        page.click("text=Download CSV")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["key"] for r in rows] == keys
    assert {r["severity"] for r in rows} == {"high", "critical"}

    # An analyst's status change, with a comment: an event whose actor is the key's name.
    critical = expected[0]
    page.click(f"#risks tbody tr[data-key='{critical.key}'] a")
    page.select_option("#status", "accepted")
    page.fill("#comment", "compensating WAF rule")
    page.click("#triage button[type=submit]")
    assert page.inner_text("#risk-status").startswith("accepted")
    stored = console.tenant.get(critical.key)
    assert stored.values["status"] == "accepted" and stored.values["comment"] == "compensating WAF rule"
    last = console.tenant.history(critical.key)[-1]
    assert (last.actor, last.source, last.diff["status"]) == ("analyst-key", "console", ["triage", "accepted"])
    assert "analyst-key" in page.inner_text("#history")
    console.shot(page, "risk")


def test_asset_page_and_set_exposure(console, page):
    seed(console)
    console.sign_in(page, "analyst")
    page.goto(console.url("/assets"))
    console.shot(page, "assets")
    asset = next(a for a in console.tenant.list("asset").records
                 if a.values["identifier"] == "shop.example.com")
    edits.put(console.tenant, "port", {"asset": asset.key, "number": 8443, "service": "https"},
              actor="seed", source="test")
    page.click("#assets a:text-is('shop.example.com')")
    page.wait_for_selector("#ports tbody td.num")  # the asset page, not the list still showing
    ports = page.locator("#ports tbody td.num").all_inner_texts()
    assert "8443" in ports
    shown = page.locator("#asset-risks tbody a").all_inner_texts()
    assert set(shown) == {"Exposed .git directory", "Apache path traversal RCE"}
    page.select_option("#exposure", "external")
    page.select_option("#criticality", "critical")
    page.fill("#note", "payment front end")
    page.click("#asset-form button[type=submit]")
    assert page.inner_text("#asset-exposure") == "external"
    stored = console.tenant.get(asset.key)
    assert (stored.values["exposure"], stored.values["criticality"]) == ("external", "critical")
    ev = console.tenant.history(asset.key)[-1]
    assert (ev.actor, ev.source, ev.note) == ("analyst-key", "console", "payment front end")
    console.shot(page, "asset")


def test_upload_scan_shows_counts(console, page):
    console.sign_in(page, "analyst")
    page.goto(console.url("/imports"))
    page.set_input_files("#upload-files", str(SCAN))
    page.click("#upload-form button[type=submit]")
    counts = page.wait_for_selector("#upload-counts").inner_text()
    run = console.tenant.runs.list(1)[0]
    assert (run.actor, run.status) == ("analyst-key", "succeeded")
    assert f"Import {run.id} succeeded" in counts
    assert f"{run.counts['records']} records, {run.counts['created']} new" in counts
    console.shot(page, "imports-uploaded")
    page.click("#upload-counts a")
    assert page.locator("#changes tbody tr").count() == len(
        [e for e in console.tenant.events(limit=10000) if e.correlation_id == run.correlation_id])
    console.shot(page, "import-run")


def test_reader_sees_no_triage_and_is_refused(console, page):
    seed(console)
    risk = console.tenant.list("risk", where=["severity=critical"]).records[0]
    lifecycle.set_status(console.tenant, risk.key, "open", reason=None, comment="secret plan", actor="seed",
                         source="test")
    before = console.tenant.get(risk.key)
    console.sign_in(page, "reader")
    page.goto(console.url("/risk") + "?key=" + _quote(risk.key))
    assert page.locator("#triage").count() == 0  # no triage control for a reader
    evidence = page.inner_text("#evidence")
    stored_evidence = str(before.values["evidence"])
    assert "8443/apache-rce" in stored_evidence  # what the reader may not see
    assert "Masked for the reader role" in evidence and "8443/apache-rce" not in page.content()
    assert "secret plan" not in page.content()  # the comment is confidential too
    console.shot(page, "risk-reader")

    # A forged POST with the reader's valid session and CSRF token: 403, nothing written.
    csrf = page.evaluate("document.body.dataset.csrf")
    assert csrf
    answer = page.request.post(console.url("/risk/status"), form={
        "csrf": csrf, "key": risk.key, "status": "remediated", "reason": "other",
        "comment": "forged"})
    assert answer.status == 403
    after = console.tenant.get(risk.key)
    assert after.version == before.version and after.values["status"] == "open"
    # Without the token, even an analyst's session is refused.
    page.goto(console.url("/"))
    page.click("text=Sign out")
    console.sign_in(page, "analyst")
    assert page.request.post(console.url("/risk/status"), form={
        "key": risk.key, "status": "remediated", "reason": "other"}).status == 403
    assert console.tenant.get(risk.key).version == before.version


def test_admin_creates_and_revokes_a_key(console, page):
    console.sign_in(page, "admin")
    page.goto(console.url("/admin"))
    page.fill("#create-key input[name=name]", "ci-reader")
    page.click("#create-key button[type=submit]")
    token = page.inner_text("#new-key code")
    assert token.startswith("bst_") and console.store.authenticator().authenticate(token).name == "ci-reader"
    console.shot(page, "admin")
    page.goto(console.url("/admin"))
    assert token not in page.content()  # shown once
    page.on("dialog", lambda d: d.accept())
    page.click("tr[data-name=ci-reader] button.danger")
    assert page.inner_text("tr[data-name=ci-reader] .state") == "revoked"
    revoked = [e for e in console.tenant.events(limit=10000) if e.event_type == "api_key.revoked"]
    assert [(e.actor, e.source) for e in revoked] == [("admin-key", "console")]


def _quote(key: str) -> str:
    from urllib.parse import quote
    return quote(key, safe="")
