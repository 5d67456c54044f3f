"""ASGI middleware (plain ASGI, not BaseHTTPMiddleware: it is on every request's path): the
request id, body size limits and the access log (which never contains the Authorization header)."""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson

from bastion.store.writer import request_correlation

log = logging.getLogger("bastion.server.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestContext:
    """Gives every request an id (the client's X-Request-Id when it is a plain token, else a new
    one), returned as X-Request-Id and used as the correlation id of every event it writes;
    refuses bodies over their limit (413) before reading them; logs one line per request."""

    def __init__(self, app, *, max_body: int, max_upload: int, upload_paths: tuple[str, ...]):
        self.app = app
        self.max_body, self.max_upload, self.upload_paths = max_body, max_upload, upload_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = request_correlation.set(rid)
        started = time.perf_counter()
        status = {"code": 500}
        limit = self.max_upload if scope["path"].startswith(self.upload_paths) else self.max_body

        over = {"limit": False, "sent": False}

        async def send_with_id(message):
            if over["limit"]:  # the app saw the body cut short: answer 413 in its place, once
                if not over["sent"]:
                    over["sent"] = True
                    await _too_large(scope, send, rid, limit)
                return
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                status["code"] = 413
                return await _too_large(scope, send, rid, limit)
            received = {"n": 0}

            async def counted_receive():
                message = await receive()
                if message["type"] == "http.request":
                    received["n"] += len(message.get("body", b""))
                    if received["n"] > limit:  # a body without Content-Length, counted as it comes
                        over["limit"] = True
                        status["code"] = 413
                        raise _BodyTooLarge(limit)
                return message

            try:
                await self.app(scope, counted_receive, send_with_id)
            except _BodyTooLarge:
                if not over["sent"]:
                    over["sent"] = True
                    await _too_large(scope, send, rid, limit)
        finally:
            request_correlation.reset(token)
            state = scope.get("state", {})
            log.info("%s %s %s %d %.1fms key=%s", rid, scope["method"], scope["path"], status["code"],
                     (time.perf_counter() - started) * 1000, state.get("actor", "-"))


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope, send, rid: str, limit: int) -> None:
    body = orjson.dumps({"type": "https://bastion.dev/problems/too-large", "title": "Content too large",
                         "status": 413, "detail": f"the body is over the limit of {limit} bytes "
                         "(BASTION_MAX_BODY, or BASTION_MAX_UPLOAD for uploads)",
                         "instance": scope["path"], "request_id": rid})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", rid.encode())]})
    await send({"type": "http.response.body", "body": body})
