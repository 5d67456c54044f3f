"""The web console, mounted at /console by `install(app)` (bastion.server.app).

A sub-application of the API's app, in the same process, over the same store, keys and roles:
- sign-in with an API key keeps it in an encrypted HttpOnly, SameSite=Strict cookie
  (bastion.web.session); every request re-authenticates it as the API does;
- `console(PERMISSION)` is the dependency of every view: the signed-in key's Context (the API's,
  with source "console"); a role without the permission gets 403 whatever the page showed;
- `console_write(PERMISSION)` is the dependency of every POST: the same, after checking the
  CSRF token of the session (form field `csrf` or header X-CSRF-Token);
- views are modules of this package with a `router` (VIEW_MODULES, included when present) that
  render templates with `render(...)`; NAV lists what the navigation shows, by permission;
- `csv_response(...)` streams a table as CSV with the cells of bastion.store.export.
Views call the same library functions as the API routes and mask through bastion.schema.roles
(ctx.record / ctx.event); no SQL here.
"""

from __future__ import annotations

import csv
import hmac
import importlib
import io
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion import __version__
from bastion.errors import BastionError
from bastion.schema import roles
from bastion.schema.kinds import SEVERITIES
from bastion.schema.registry import Classification
from bastion.server.context import Context
from bastion.server.problems import Forbidden, RateLimited, TITLES, _status_of, problem
from bastion.store import export
from bastion.store.keys import Unauthenticated
from bastion.web.session import COOKIE, PATH, Sessions

log = logging.getLogger("bastion.web")

HERE = Path(__file__).parent
SOURCE = "console"  # the `source` of the events the console writes
# View modules (bastion.web.<name>), included in this order when present.
VIEW_MODULES = ("overview", "risks", "assets", "imports", "coverage", "graph", "admin")

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(severities=SEVERITIES, version=__version__)
templates.env.filters["q"] = lambda v: quote(str(v), safe="")


@dataclass(frozen=True)
class NavItem:
    title: str
    path: str  # under /console
    permission: str  # shown to roles that have it
    shortcut: str  # Alt+Shift+<key> (accesskey)


NAV: list[NavItem] = [
    NavItem("Overview", "/", roles.READ, "o"),
    NavItem("Risks", "/risks", roles.READ, "r"),
    NavItem("Assets", "/assets", roles.READ, "a"),
    NavItem("Imports", "/imports", f"{roles.READ}|{roles.IMPORT}", "i"),
    NavItem("Coverage", "/coverage", roles.READ, "c"),
    NavItem("Graph", "/graph", roles.READ, "g"),
    NavItem("Administration", "/admin", roles.ADMIN, "m"),
]


class SignInRequired(Exception):
    """No session, or its key is no longer accepted: to the sign-in page."""


# -- who is asking -------------------------------------------------------------------------------


def _session(request: Request):
    return request.app.state.sessions.read(request.cookies.get(COOKIE))


def _context(request: Request, permission: str) -> Context:
    session = _session(request)
    if session is None:
        raise SignInRequired()
    state = request.app.state
    try:
        principal = state.authenticator.authenticate(session.token)
    except Unauthenticated as exc:
        log.info("console session refused: %s", exc)
        raise SignInRequired() from None
    request.state.actor = principal.name
    request.state.session = session
    state.rate_limit.hit(principal.key_id)
    if not roles.allowed(principal.role, permission):
        raise Forbidden(f"the {principal.role} role may not do this (it needs {permission})")
    tenant = state.store.tenant_by_id(principal.tenant_id)
    return Context(principal, tenant, request.state.request_id, state.settings, source=SOURCE)


# What a page computed from the tenant's data, kept while the tenant's event counter stands still
# (nothing changed since) and for at most a minute (deadlines and trends move with the clock).
_STATE_CACHE: dict[tuple, tuple[tuple[int, int], Any]] = {}
_STATE_LOCK = threading.Lock()


def while_unchanged(ctx: Context, what: tuple, compute: Callable[[], Any]) -> Any:
    """`compute()`, or what it gave for the same tenant, role and `what` while the tenant's data
    has not changed (its event counter) within the same minute."""
    stamp = (ctx.tenant.last_seq(), int(time.time() // 60))
    key = (ctx.tenant.tenant_id, ctx.role, *what)
    with _STATE_LOCK:
        hit = _STATE_CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = compute()
    with _STATE_LOCK:
        if len(_STATE_CACHE) > 256:
            _STATE_CACHE.clear()
        _STATE_CACHE[key] = (stamp, value)
    return value


def event(ctx: Context, ev) -> dict[str, Any]:
    """An event as the role may see it, its note too: a status change keeps the analyst's
    comment (confidential) in the note, which bastion.schema.roles.mask_event leaves as is."""
    out = ctx.event(ev)
    if out.get("note") is not None and not roles.sees_everything(ctx.role) \
            and Classification.CONFIDENTIAL not in roles.VISIBLE[ctx.role]:
        out["note"] = None
        out["masked"] = [*out.get("masked", []), "note"]
    return out


def console(permission: str = roles.READ) -> Callable[..., Context]:
    """The dependency of a view that needs `permission`."""
    def dependency(request: Request) -> Context:
        return _context(request, permission)
    dependency.permission = permission
    return dependency


def console_write(permission: str) -> Callable[..., Context]:
    """The dependency of a console POST: a session, its CSRF token, then the permission (403)."""
    async def dependency(request: Request) -> Context:
        session = _session(request)
        if session is None:
            raise SignInRequired()
        given = request.headers.get("x-csrf-token")
        if given is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            given = (await request.form()).get("csrf")
        if not isinstance(given, str) or not hmac.compare_digest(given, session.csrf):
            raise Forbidden("the form's CSRF token is missing or wrong: reload the page")
        return _context(request, permission)
    dependency.permission = permission
    return dependency


READ = console(roles.READ)
READ_OR_IMPORT = console(f"{roles.READ}|{roles.IMPORT}")


# -- rendering ------------------------------------------------------------------------------------


def url(path: str, **params: Any) -> str:
    """A console URL with its query (None and empty values left out; lists repeated)."""
    query = urlencode([(k, v) for k, vs in params.items()
                       for v in (vs if isinstance(vs, (list, tuple)) else [vs])
                       if v not in (None, "")], doseq=True)
    return PATH + path + (f"?{query}" if query else "")


def render(request: Request, ctx: Context | None, template: str, status_code: int = 200,
           **values: Any) -> HTMLResponse:
    """A page: `template` extends base.html, which gets the key, its role, the navigation its
    role may use, `can(permission)` and the session's CSRF token."""
    session = getattr(request.state, "session", None)
    role = ctx.role if ctx else None
    base = {
        "request": request, "ctx": ctx, "role": role, "url": url,
        "nav": [n for n in NAV if role and roles.allowed(role, n.permission)],
        "can": (lambda permission: bool(role) and roles.allowed(role, permission)),
        "csrf": session.csrf if session else "",
        "path": request.url.path.removeprefix(PATH) or "/",
    }
    return templates.TemplateResponse(request, template, {**base, **values},
                                      status_code=status_code)


def csv_response(filename: str, rows: Iterable[Mapping[str, Any]],
                 names: Sequence[str]) -> StreamingResponse:
    """Rows streamed as CSV (the cells of `bastion export`), one row in memory at a time."""
    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([export.cell(row.get(c)) for c in names])
            if buffer.tell() > 1 << 16:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def redirect(path: str, **params: Any) -> RedirectResponse:
    return RedirectResponse(url(path, **params), status_code=303)


# -- sign-in and out ------------------------------------------------------------------------------

router = APIRouter()


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, next: str = "/"):
    return render(request, None, "signin.html", next=_safe_next(next), error=None)


def _safe_next(value: str) -> str:
    """Only a console path: never an open redirect."""
    return value if value.startswith("/") and not value.startswith("//") else "/"


@router.post("/signin", response_class=HTMLResponse)
def signin(request: Request, key: str = Form(max_length=300), next: str = Form(default="/")):
    state = request.app.state
    try:
        principal = state.authenticator.authenticate(key.strip())
    except Unauthenticated as exc:
        log.info("console sign-in refused: %s", exc)
        return render(request, None, "signin.html", status_code=401, next=_safe_next(next),
                      error="That key was not accepted (unknown, revoked or expired).")
    request.state.actor = principal.name
    _, cookie = state.sessions.new(key.strip())
    response = RedirectResponse(PATH + _safe_next(next), status_code=303)
    response.set_cookie(COOKIE, cookie, path=PATH, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=12 * 3600)
    return response


@router.post("/signout")
def signout(request: Request, ctx: Context = Depends(console_write(roles.READ + "|" + roles.IMPORT))):
    response = RedirectResponse(PATH + "/signin", status_code=303)
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")
    return response


# -- the sub-application --------------------------------------------------------------------------


def _error_page(request: Request, status: int, detail: str) -> Response:
    if "application/json" in request.headers.get("accept", ""):  # the upload's XMLHttpRequest
        return problem(request, status, detail)
    try:
        ctx = _context(request, roles.READ + "|" + roles.IMPORT) if status != 401 else None
    except Exception:  # noqa: BLE001 - the error page shows without the navigation then
        ctx = None
    return render(request, ctx, "error.html", status_code=status, status=status,
                  title=TITLES.get(status, "Error"), detail=detail)


def _install_errors(web: FastAPI) -> None:
    async def sign_in(request: Request, exc: SignInRequired):
        target = request.url.path.removeprefix(PATH) or "/"
        if request.method == "GET" and request.url.query:
            target += "?" + request.url.query
        response = RedirectResponse(url("/signin", next=target), status_code=303)
        response.delete_cookie(COOKIE, path=PATH)
        return response

    async def known(request: Request, exc: Exception):
        status, _ = _status_of(exc)
        response = _error_page(request, status, str(exc))
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error_page(request, 422, f"{where}: {first.get('msg', 'invalid')}")

    async def http(request: Request, exc: StarletteHTTPException):
        return _error_page(request, exc.status_code, str(exc.detail or ""))

    web.add_exception_handler(SignInRequired, sign_in)
    for cls in (BastionError, Forbidden, RateLimited):
        web.add_exception_handler(cls, known)
    web.add_exception_handler(RequestValidationError, invalid)
    web.add_exception_handler(StarletteHTTPException, http)


def create_console(app: FastAPI) -> FastAPI:
    web = FastAPI(title="Bastion console", docs_url=None, redoc_url=None, openapi_url=None)
    web.state.store = app.state.store
    web.state.settings = app.state.settings
    web.state.authenticator = app.state.authenticator
    web.state.rate_limit = app.state.rate_limit
    web.state.sessions = Sessions()
    _install_errors(web)
    web.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    web.include_router(router)
    for name in VIEW_MODULES:
        try:
            module = importlib.import_module(f"bastion.web.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bastion.web.{name}":
                raise
            continue  # a view not built yet: its navigation link answers 404
        web.include_router(module.router)

    @web.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        # Nothing is fetched from elsewhere; no framing; no inline scripts from outside.
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; "
                                    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.url.path.startswith(PATH + "/static"):
            response.headers.setdefault("Cache-Control", "public, max-age=3600")
        else:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return web


def install(app: FastAPI) -> None:
    """Mount the console at /console and send / there."""
    app.mount(PATH, create_console(app))

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse(PATH + "/", status_code=307)
