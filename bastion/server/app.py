"""The HTTP server: `create_app(store)` builds the ASGI app; `bastion serve` runs it under uvicorn.

Every route calls the same library functions as the CLI, as the API key's tenant (row-level
security on PostgreSQL), with the key's name as the actor of its events, source `api` and the
request id as their correlation id. docs/api.md describes it for users.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from bastion import __version__
from bastion.server import metrics, problems
from bastion.server.context import RateLimit, Settings
from bastion.server.middleware import RequestContext
from bastion.store.store import Store
from bastion.web import app as web

log = logging.getLogger("bastion.server")

UPLOAD_PATHS = ("/v1/imports", "/console/imports/upload")

DESCRIPTION = """Bastion's HTTP API: the exposure inventory, detection coverage, the graph and
the change feed of one tenant, for the API key's role. Every error is an RFC 9457 problem
(`application/problem+json`). See docs/api.md."""


def create_app(store: Store, settings: Settings | None = None) -> FastAPI:
    """The app on an open store (its schema at head: checked by `bastion serve` and /readyz)."""
    from bastion.server.routes import ROUTERS

    settings = settings or Settings()
    app = FastAPI(title="Bastion", version=__version__, description=DESCRIPTION,
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
                  responses=problems.responses())
    app.state.store = store
    app.state.settings = settings
    app.state.authenticator = store.authenticator()
    app.state.rate_limit = RateLimit(settings.rate_limit, settings.rate_limit_storage)
    problems.install(app)

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="The database is reachable and at the schema's head",
             responses={503: {"model": problems.ProblemDetail, "description": "Not ready"}})
    def readyz(request: Request):
        try:
            store.require_head()
        except Exception as exc:  # noqa: BLE001 - any reason is "not ready", said in the body
            return problems.problem(request, 503, f"not ready: {exc}", slug="not-ready")
        return JSONResponse({"status": "ready", "revision": store.revision()})

    for router in ROUTERS:
        app.include_router(router, prefix="/v1")
    metrics.install(app, store)
    web.install(app)  # the console at /console (bastion.web)
    app.add_middleware(RequestContext, max_body=settings.max_body, max_upload=settings.max_upload,
                       upload_paths=UPLOAD_PATHS)
    return app


def route_table() -> list[tuple[str, str, str | None, APIRoute]]:
    """(method, path, permission, route) of every /v1 route: what the authorization matrix test
    and docs/api.md enumerate."""
    from bastion.server.context import permission_of
    from bastion.server.routes import ROUTERS

    return [(method, "/v1" + route.path, permission_of(route), route)
            for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)
            for method in sorted(route.methods - {"HEAD"})]


def app_from_env() -> FastAPI:
    """The app for uvicorn's workers (`bastion serve --workers N`): the database from
    BASTION_DATABASE_URL as the CLI chooses it."""
    store = Store(os.environ.get("BASTION_DATABASE_URL") or None, create=False)
    store.require_head()
    return create_app(store)
