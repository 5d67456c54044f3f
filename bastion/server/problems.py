"""One error format for every client: RFC 9457 `application/problem+json`, carrying the same
messages the CLI prints. A user mistake is a 4xx; anything else is a 500 whose body says only
that it was logged under the request id."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion.errors import (BastionError, Busy, ConfigError, ConflictError, CostExceeded,
                            ImportRejected, InvalidValue, Malformed, NotFound, ValidationFailed)
from bastion.schema.roles import mask_deep
from bastion.store.keys import Unauthenticated

log = logging.getLogger("bastion.server")

MEDIA_TYPE = "application/problem+json"


class ProblemDetail(BaseModel):
    """RFC 9457 problem details (with Bastion's `request_id` and item-level `errors`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class Forbidden(Exception):
    """The key's role may not do this."""


class PreconditionFailed(Exception):
    """If-Match named a version that is no longer current."""


class TooLarge(Exception):
    """A body or upload over its limit."""


class RateLimited(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"too many requests for this key: retry after {retry_after} s")
        self.retry_after = retry_after


# Most specific first: an error class's status is the first entry it is an instance of.
STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (Unauthenticated, 401, "unauthenticated"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not-found"),
    (PreconditionFailed, 412, "precondition-failed"),
    (ConflictError, 409, "conflict"),
    (TooLarge, 413, "too-large"),
    (ValidationFailed, 422, "invalid-input"),
    (Malformed, 422, "invalid-input"),
    (ImportRejected, 422, "invalid-input"),
    (CostExceeded, 422, "cost-exceeded"),
    (RateLimited, 429, "rate-limited"),
    (Busy, 503, "busy"),
    (InvalidValue, 400, "bad-request"),
    (ConfigError, 400, "bad-request"),
    (BastionError, 400, "bad-request"),
)
TITLES = {400: "Bad request", 401: "Unauthenticated", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 409: "Conflict", 412: "Precondition failed",
          413: "Content too large", 415: "Unsupported media type", 422: "Unprocessable content",
          429: "Too many requests", 500: "Internal server error", 503: "Service unavailable"}
TYPE_BASE = "https://bastion.dev/problems/"


def problem(request: Request, status: int, detail: str | None, *, slug: str | None = None,
            errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
            ) -> JSONResponse:
    body = {"type": TYPE_BASE + slug if slug else "about:blank",
            "title": TITLES.get(status, "Error"), "status": status, "detail": detail,
            "instance": request.url.path, "request_id": getattr(request.state, "request_id", None)}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _status_of(exc: Exception) -> tuple[int, str]:
    for cls, status, slug in STATUS:
        if isinstance(exc, cls):
            return status, slug
    return 500, "internal"


def _errors(exc: Exception) -> list[dict[str, Any]] | None:
    if isinstance(exc, ValidationFailed):
        return [{"where": p.where, "field": p.field, "reason": p.reason} for p in exc.problems]
    if isinstance(exc, InvalidValue) and exc.field:
        return [{"field": exc.field, "reason": str(exc)}]
    items = getattr(exc, "dependents", None)  # DependentsExist: what depends on it
    if isinstance(items, list) and items and all(isinstance(i, str) for i in items):
        return [{"key": i} for i in items[:100]]
    return None


def install(app: FastAPI) -> None:
    async def known(request: Request, exc: Exception):
        status, slug = _status_of(exc)
        headers = {}
        if status == 401:
            log.info("request %s refused: %s", getattr(request.state, "request_id", "-"), exc)
            detail = "a valid API key is required: `Authorization: Bearer <key>`"
            headers["WWW-Authenticate"] = 'Bearer realm="bastion"'
        else:  # a message may quote keys of what the role may not see (an account's id)
            detail = mask_deep(str(exc), getattr(request.state, "role", None))
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, Busy):
            headers["Retry-After"] = "5"
        return problem(request, status, detail, slug=slug, errors=_errors(exc), headers=headers)

    async def validation(request: Request, exc: RequestValidationError):
        errors = [{"where": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("msg")}
                  for e in exc.errors()]
        first = errors[0] if errors else {"where": "request", "reason": "invalid"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return problem(request, 422, f"{first['where']}: {first['reason']}{more}",
                       slug="invalid-request", errors=errors)

    async def http(request: Request, exc: StarletteHTTPException):
        return problem(request, exc.status_code, str(exc.detail) if exc.detail else None,
                       headers=getattr(exc, "headers", None))

    async def unexpected(request: Request, exc: Exception):
        rid = getattr(request.state, "request_id", None)
        log.exception("request %s %s %s failed", rid, request.method, request.url.path)
        # Outside the middleware (Starlette answers 500s from its outermost layer): the
        # request id header is set here.
        return problem(request, 500, f"an internal error, logged under request id {rid}",
                       slug="internal", headers={"X-Request-Id": rid} if rid else None)

    for cls in (BastionError, Unauthenticated, Forbidden, PreconditionFailed, TooLarge, RateLimited):
        app.add_exception_handler(cls, known)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, unexpected)


# The problem responses every route may give, for the OpenAPI document.
def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for status in (400, 401, 403, 422, 429, *statuses):
        out[status] = {"model": ProblemDetail, "description": TITLES.get(status, "Error"),
                       "content": {MEDIA_TYPE: {}}}
    return out
