"""The console's speed on a generated tenant (issue 13): server time per page (p50/p95 over
--requests requests per view, through the whole ASGI app in process, signed in as an admin) with
a floor measured in the same run (GET /healthz through the same stack), and the time to a usable
page in Chromium per view (Navigation Timing: domInteractive and loadEventEnd, median of 5).

The tenant is bench/api.py's (tenant_batches: risks on assets, severities, statuses, KEV, EPSS,
priorities) at --risks (default 100,000) on SQLite or PostgreSQL (--database-url).

    .venv/bin/python bench/console.py --risks 100000 [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "web"))

from fastapi.testclient import TestClient  # noqa: E402

from bastion.server.app import create_app  # noqa: E402
from bastion.server.context import Settings  # noqa: E402
from bastion.store import migrate  # noqa: E402
from bastion.store.store import Store  # noqa: E402


@functools.cache
def api_bench():
    """bench/api.py, whose tenant this benchmark measures."""
    spec = importlib.util.spec_from_file_location("bench_api", Path(__file__).parent / "api.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_api"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def load(store: Store, risks: int, seed: int = 7) -> float:
    api = api_bench()
    tenant = store.tenant(api.TENANT)
    t0 = time.perf_counter()
    for batch, _a, _r in api.tenant_batches(risks, max(1, risks // 20), seed):
        tenant.apply(batch, actor="bench", source="bench/console")
    return time.perf_counter() - t0


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--risks", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--database-url", default=None, help="default: a SQLite file in a temp dir")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="bastion-bench-console-")
    url = args.database_url or f"sqlite:///{tmp}/bench.db"
    store = Store(url)
    migrate.upgrade(store.engine)
    api = api_bench()
    store.ensure_tenant(api.TENANT)
    tenant = store.tenant(api.TENANT)
    # A database bench/api.py loaded (--database-url of its --reuse database) is used as it is.
    loaded = tenant.count("risk", at_most=1) > 0
    load_s = 0.0 if loaded else load(store, args.risks)
    print(f"tenant: {tenant.count('risk'):,} risks, {tenant.count('asset'):,} assets on "
          f"{store.dialect} " + ("(already loaded)" if loaded else f"(loaded in {load_s:.0f}s)"))
    token = tenant.keys.create(f"bench-admin-{int(time.time())}", "admin", actor="bench",
                               source="bench")[1]
    risk_key = tenant.list("risk", order_by="priority", descending=True, limit=1).records[0].key
    asset_key = tenant.list("asset", limit=1).records[0].key
    views = {
        "overview": "/console/",
        "risks": "/console/risks",
        "risks (high+, KEV)": "/console/risks?severity=high&severity=critical&kev=true",
        "risk": "/console/risk?key=" + quote(risk_key, safe=""),
        "assets": "/console/assets",
        "asset": "/console/asset?key=" + quote(asset_key, safe=""),
        "imports": "/console/imports",
        "coverage": "/console/coverage",
        "graph": "/console/graph",
    }
    app = create_app(store, Settings(rate_limit="none"))
    client = TestClient(app)
    client.post("/console/signin", data={"key": token})

    def timed(path: str) -> tuple[float, int]:
        t = time.perf_counter()
        r = client.get(path)
        return (time.perf_counter() - t) * 1000, r.status_code

    floor = [timed("/healthz")[0] for _ in range(args.requests)]
    floor_p95 = pct(floor, 95)
    print(f"floor GET /healthz: p95 {floor_p95:.2f} ms")
    print(f"{'view':24} {'status':>6} {'p50 ms':>8} {'p95 ms':>8} {'p95/floor':>10}")
    for name, path in views.items():
        timed(path)  # the first request fills caches (the open-risk trend): reported apart
        samples = [timed(path) for _ in range(args.requests)]
        ms = [s[0] for s in samples]
        print(f"{name:24} {samples[-1][1]:>6} {statistics.median(ms):8.1f} {pct(ms, 95):8.1f} "
              f"{pct(ms, 95) / floor_p95:10.0f}")

    # Time to a usable page in Chromium: the app served by uvicorn on localhost.
    from live_server import LiveServer  # tests/web/live_server.py
    from playwright.sync_api import sync_playwright

    with LiveServer(app) as server, sync_playwright() as p:
        port = server.port
        browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        base = f"http://127.0.0.1:{port}"
        page.goto(base + "/console/signin")
        page.fill("#key", token)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/console/")
        print(f"{'view':24} {'domInteractive ms':>18} {'load ms':>9}")
        for name, path in views.items():
            inter, loaded = [], []
            for _ in range(5):
                page.goto(base + path)
                nav = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
                inter.append(nav["domInteractive"])
                loaded.append(nav["loadEventEnd"])
            print(f"{name:24} {statistics.median(inter):18.0f} {statistics.median(loaded):9.0f}")
        browser.close()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
