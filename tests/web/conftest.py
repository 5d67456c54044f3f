"""The console in a real browser: `bastion serve`'s app under uvicorn on a free port (both
engines: the `store` fixture of tests/conftest.py), driven by Playwright for Python in Debian's
headless Chromium (/usr/bin/chromium; scripts/ensure-chromium installs it; no browser download).

- `console`: the running server over a fresh database with tenants acme and globex, a key per
  role of acme (`console.tokens[role]`, named `<role>-key`) and globex's admin key;
- `browser`: one Chromium per test session; `page`: a fresh context (no cookies) per test;
- `console.sign_in(page, role)`, `console.shot(page, name)` (a screenshot per view, kept in
  tests/web/screenshots/, not committed).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bastion.schema.roles import ROLES
from bastion.server.app import create_app
from bastion.server.context import Settings
from bastion.store.store import Store, TenantStore

sys.path.insert(0, str(Path(__file__).parent))
from live_server import LiveServer  # noqa: E402

CHROMIUM = os.environ.get("BASTION_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}  # the laptop screen the console is made for


@dataclass
class Console:
    base_url: str
    store: Store
    tenant: TenantStore
    other: TenantStore
    engine: str
    tokens: dict[str, str] = field(default_factory=dict)  # role → acme's key of that role
    other_token: str = ""

    def url(self, path: str = "/") -> str:
        return self.base_url + "/console" + path

    def sign_in(self, page, role: str) -> None:
        page.goto(self.url("/signin"))
        page.fill("#key", self.tokens[role])
        page.click("button[type=submit]")
        page.wait_for_url(self.url("/"))

    def shot(self, page, name: str) -> Path:
        """A full-page screenshot of a view, named by view and engine."""
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}-{self.engine}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def console(store, engine_name) -> Console:
    acme, globex = store.ensure_tenant("acme"), store.ensure_tenant("globex")
    tenant, other = store.tenant(acme.name), store.tenant(globex.name)
    app = create_app(store, Settings(rate_limit="none"))
    with LiveServer(app) as server:
        c = Console(f"http://127.0.0.1:{server.port}", store, tenant, other, engine_name)
        for role in ROLES:
            c.tokens[role] = tenant.keys.create(f"{role}-key", role, actor="test", source="test")[1]
        c.other_token = other.keys.create("globex-admin", "admin", actor="test", source="test")[1]
        yield c


@pytest.fixture(scope="session")
def playwright_driver():
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium (make test does)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_driver):
    b = playwright_driver.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=["--no-sandbox", "--disable-dev-shm-usage"])
    yield b
    b.close()


@pytest.fixture
def page(browser, console):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(15000)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
