"""The console in headless Chromium on both engines: a few broad tests, several assertions each."""

from __future__ import annotations

import re


def test_sign_in_and_out(console, page):
    page.goto(console.url("/"))
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
    assert nav[:6] == ["Overview", "Risks", "Assets", "Imports", "Coverage", "Graph"]
    assert "Administration" not in nav  # a reader's navigation
    assert page.inner_text(".key-name") == "reader-key"

    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/console/signin$"))
    assert not [c for c in page.context.cookies() if c["name"] == "bastion_session"]
    page.goto(console.url("/"))
    assert page.url.startswith(console.url("/signin"))
