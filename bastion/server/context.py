"""Who a request acts as, and what it may do: the API key (Bearer only), its role's permission
for the route, the per-key rate limit, and the tenant store bound to the key's tenant."""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from bastion.errors import ConfigError
from bastion.schema import roles
from bastion.store.keys import Principal, Unauthenticated
from bastion.store.store import TenantStore
from bastion.server.problems import Forbidden, RateLimited

SOURCE = "api"  # the `source` of every event the server writes

_bearer = HTTPBearer(auto_error=False, description="An API key: `bastion key create`")


def _size(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]?)i?b?\s*", raw.lower())
    if not m:
        raise ConfigError(f"{name}={raw!r}: give a size such as 10M or 1G")
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)]


@dataclass
class Settings:
    """The server's limits, from the environment (docs/api.md#limits)."""

    max_body: int = field(default_factory=lambda: _size("BASTION_MAX_BODY", 10 << 20))
    max_upload: int = field(default_factory=lambda: _size("BASTION_MAX_UPLOAD", 2 << 30))
    page_cap: int = field(default_factory=lambda: int(os.environ.get("BASTION_PAGE_CAP", "1000")))
    # Per key, e.g. "50/second;2000/minute"; "none" turns the limit off.
    rate_limit: str = field(default_factory=lambda: os.environ.get("BASTION_RATE_LIMIT", "100/second;3000/minute"))
    # Where the limit's counters live: per process ("memory://"), or shared by every worker
    # ("redis://127.0.0.1:6379").
    rate_limit_storage: str = field(default_factory=lambda: os.environ.get("BASTION_RATE_LIMIT_STORAGE", "memory://"))
    upload_dir: str | None = field(default_factory=lambda: os.environ.get("BASTION_UPLOAD_DIR"))
    # Graph queries on PostgreSQL stop after this long (the cost guard comes first).
    statement_timeout_ms: int = field(default_factory=lambda: int(os.environ.get("BASTION_STATEMENT_TIMEOUT_MS", "15000")))


class RateLimit:
    def __init__(self, spec: str, storage: str):
        self.items = [] if spec.strip().lower() in ("", "none", "off") else parse_many(spec)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage)) if self.items else None

    def hit(self, key_id: str) -> None:
        for item in self.items:
            if not self.limiter.hit(item, "key", key_id):
                reset, _ = self.limiter.get_window_stats(item, "key", key_id)
                raise RateLimited(max(1, math.ceil(reset - time.time())))


@dataclass
class Context:
    """One request: its key, tenant and id; what every route works with."""

    principal: Principal
    tenant: TenantStore
    request_id: str
    settings: Settings

    @property
    def actor(self) -> str:
        return self.principal.name

    @property
    def role(self) -> str:
        return self.principal.role

    source: str = SOURCE

    def record(self, rec) -> dict[str, Any]:
        """An entity as the role may see it."""
        return roles.mask_record(rec.as_dict(), self.role)

    def event(self, ev) -> dict[str, Any]:
        return roles.mask_event(ev.as_dict(), self.role)

    def limit(self, limit: int | None, default: int = 100) -> int:
        return max(1, min(limit or default, self.settings.page_cap))


def needs(permission: str) -> Callable[..., Context]:
    """The dependency of a route that needs `permission`: authenticates the Bearer key (401),
    checks its role (403) and its rate (429), and gives the request's Context."""
    if not all(p in roles.PERMISSIONS for p in permission.split("|")):
        raise ValueError(permission)

    def dependency(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Context:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthenticated("no Bearer key")
        state = request.app.state
        principal = state.authenticator.authenticate(credentials.credentials)
        request.state.actor = principal.name
        request.state.role = principal.role  # error messages are masked for it too
        state.rate_limit.hit(principal.key_id)
        if not roles.allowed(principal.role, permission):
            raise Forbidden(f"the {principal.role} role may not do this (it needs {permission})")
        tenant = state.store.tenant_by_id(principal.tenant_id)
        return Context(principal, tenant, request.state.request_id, state.settings)

    dependency.permission = permission  # read by the route table (tests, docs)
    return dependency


READ = needs(roles.READ)
IMPORT = needs(roles.IMPORT)
TRIAGE = needs(roles.TRIAGE)
ADMIN = needs(roles.ADMIN)
# What an uploader may read: the runs it started (CI polls the run a 202 names).
READ_OR_IMPORT = needs(f"{roles.READ}|{roles.IMPORT}")


def permission_of(route) -> str | None:
    """The permission a route needs (None: open, like /healthz)."""
    stack = list(getattr(route, "dependant", None).dependencies) if getattr(route, "dependant", None) else []
    while stack:
        dep = stack.pop()
        perm = getattr(dep.call, "permission", None)
        if perm:
            return perm
        stack.extend(dep.dependencies)
    return None
