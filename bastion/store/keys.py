"""API keys: created (shown once), listed, revoked, and checked on every request of the server.

A token is `bst_<tenant id>_<key id>_<secret>`. The tenant id routes the lookup to the tenant's
rows (on PostgreSQL the lookup runs under that tenant's row-level security, like every other
read); the key id finds the row; the secret — 256 random bits — is stored only as its SHA-256
and compared in constant time. A slow password hash would add nothing against a secret that
cannot be guessed from a dictionary, and would cost every request milliseconds.

Creating and revoking a key are events (`api_key.created`, `api_key.revoked`, filed under
`api_key:<name>`), with the actor who did it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError, ProgrammingError

from bastion.errors import ConflictError, InvalidValue, NotFound
from bastion.schema.roles import check_role
from bastion.store import writer
from bastion.store.query import Scope
from bastion.store.tables import api_key

PREFIX = "bst"
NO_SUCH_TENANT = "P0002"  # bastion_set_tenant(id) of a tenant that does not exist
# `last_used_at` is written at most this often per key (seconds): not one write per request.
LAST_USE_EVERY = 60.0


@dataclass(frozen=True)
class Key:
    """A key as listed: never its secret."""

    id: str
    name: str
    role: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= datetime.now(timezone.utc):
            return "expired"
        return "active"

    def as_dict(self) -> dict:
        return {**self.__dict__, "state": self.state}


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a live key of one tenant."""

    tenant_id: int
    key_id: str
    name: str
    role: str


class Unauthenticated(Exception):
    """No token, a malformed one, or one that is unknown, revoked or expired (the reason is for
    the log; the client is told only that its key was not accepted)."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row) -> Key:
    return Key(row.id, row.name, row.role, row.created_at, row.created_by, row.expires_at,
               row.revoked_at, row.last_used_at)


def parse_token(token: str) -> tuple[int, str, str]:
    """(tenant id, key id, secret) of a token; Unauthenticated when it is not one."""
    parts = token.split("_", 3)
    if len(parts) != 4 or parts[0] != PREFIX or not parts[1].isdigit() or len(parts[1]) > 9 \
            or not parts[3] or len(token) > 200:
        raise Unauthenticated("not a Bastion API key")
    return int(parts[1]), parts[2], parts[3]


class Keys:
    """The API keys of one tenant (`tenant.keys`)."""

    def __init__(self, scope: Scope):
        self.scope = scope

    def create(self, name: str, role: str, *, actor: str, source: str,
               expires_at: datetime | None = None, correlation_id: str | None = None
               ) -> tuple[Key, str]:
        """A new key and its token (the only time the token exists in clear)."""
        name = (name or "").strip()
        if not name or len(name) > 200:
            raise InvalidValue("a key needs a name of 1 to 200 characters", "name")
        check_role(role)
        now = datetime.now(timezone.utc)
        if expires_at is not None and expires_at <= now:
            raise InvalidValue("the expiry must be in the future", "expires")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        with self.scope.transaction(write=True) as conn:
            self.scope.hold_writes(conn)
            if conn.execute(select(api_key.c.id).where(
                    self.scope.where(api_key), api_key.c.name == name,
                    api_key.c.revoked_at.is_(None))).first():
                raise ConflictError(f"a key named {name!r} exists: revoke it first or choose "
                                    "another name")
            conn.execute(api_key.insert().values(
                tenant_id=self.scope.tenant_id, id=key_id, name=name, role=role,
                secret_hash=_hash(secret), created_at=now, created_by=actor, expires_at=expires_at))
            writer.record_event(self.scope, conn, key=f"api_key:{name}", kind="api_key",
                                event_type="api_key.created",
                                diff={"id": [None, key_id], "role": [None, role],
                                      "expires_at": [None, expires_at.isoformat() if expires_at else None]},
                                actor=actor, source=source, at=now, correlation_id=correlation_id)
        key = Key(key_id, name, role, now, actor, expires_at, None, None)
        return key, f"{PREFIX}_{self.scope.tenant_id}_{key_id}_{secret}"

    def list(self, *, include_revoked: bool = True) -> list[Key]:
        stmt = select(api_key).where(self.scope.where(api_key)).order_by(api_key.c.created_at,
                                                                           api_key.c.id)
        if not include_revoked:
            stmt = stmt.where(api_key.c.revoked_at.is_(None))
        with self.scope.transaction() as conn:
            return [_key(r) for r in conn.execute(stmt)]

    def get(self, name_or_id: str) -> Key:
        """The live key of that name, else the key of that id (revoked ones included)."""
        with self.scope.transaction() as conn:
            return _key(self._find(conn, name_or_id))

    def _find(self, conn, name_or_id: str):
        base = select(api_key).where(self.scope.where(api_key))
        row = conn.execute(base.where(api_key.c.name == name_or_id,
                                      api_key.c.revoked_at.is_(None))).first() \
            or conn.execute(base.where(api_key.c.id == name_or_id)).first()
        if row is None:
            raise NotFound(f"no API key named or with id {name_or_id!r}")
        return row

    def revoke(self, name_or_id: str, *, actor: str, source: str,
               correlation_id: str | None = None) -> Key:
        """Revoke a key (by its name, or its id); revoking a revoked key changes nothing."""
        now = datetime.now(timezone.utc)
        with self.scope.transaction(write=True) as conn:
            self.scope.hold_writes(conn)
            row = self._find(conn, name_or_id)
            if row.revoked_at is not None:
                return _key(row)
            conn.execute(update(api_key).where(self.scope.where(api_key), api_key.c.id == row.id)
                         .values(revoked_at=now))
            _revoked_here.add(row.id)
            writer.record_event(self.scope, conn, key=f"api_key:{row.name}", kind="api_key",
                                event_type="api_key.revoked", diff={"revoked_at": [None, now.isoformat()]},
                                actor=actor, source=source, at=now, correlation_id=correlation_id)
        return replace(_key(row), revoked_at=now)


# Keys revoked by this process: never served from an Authenticator's cache again.
_revoked_here: set[str] = set()


class Authenticator:
    """Checks tokens for the server; remembers when it last wrote each key's last use."""

    def __init__(self, engine, cache_seconds: float | None = None):
        self.engine = engine
        self.cache_seconds = float(os.environ.get("BASTION_KEY_CACHE_SECONDS", "5")) \
            if cache_seconds is None else cache_seconds
        self._written: dict[str, float] = {}
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str) -> Principal:
        """The key's principal. A key verified in the last `cache_seconds` is not looked up
        again (a revocation made in this process takes effect at once; one made by another
        process, such as `bastion key revoke`, within `cache_seconds`)."""
        digest = _hash(token)
        now_mono = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[1] > now_mono and hit[0].key_id not in _revoked_here:
            return hit[0]
        principal, expires_at = self._verify(token)
        keep = now_mono + self.cache_seconds
        if expires_at is not None:
            keep = min(keep, now_mono + (expires_at - datetime.now(timezone.utc)).total_seconds())
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 10000:
                    self._cache.clear()
                self._cache[digest] = (principal, keep)
        return principal

    def _verify(self, token: str) -> tuple[Principal, datetime | None]:
        tenant_id, key_id, secret = parse_token(token)
        scope = Scope(self.engine, tenant_id)
        now = datetime.now(timezone.utc)
        try:
            row = self._lookup(scope, key_id)
        except ProgrammingError as exc:  # PostgreSQL: bastion_set_tenant knows no such tenant
            if getattr(exc.orig, "sqlstate", None) == NO_SUCH_TENANT:
                raise Unauthenticated(f"unknown tenant {tenant_id}") from None
            raise
        # Compared even for an unknown id, so timing does not tell which ids exist.
        stored = row.secret_hash if row is not None else "0" * 64
        if not hmac.compare_digest(_hash(secret), stored) or row is None:
            raise Unauthenticated(f"unknown key {key_id} of tenant {tenant_id} or wrong secret")
        if row.revoked_at is not None:
            raise Unauthenticated(f"key {key_id} ({row.name}) is revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise Unauthenticated(f"key {key_id} ({row.name}) expired")
        self._touch(scope, key_id, now)
        return Principal(tenant_id, key_id, row.name, row.role), row.expires_at

    def _lookup(self, scope: Scope, key_id: str):
        with scope.transaction() as conn:
            return conn.execute(select(api_key.c.name, api_key.c.role, api_key.c.secret_hash,
                                      api_key.c.expires_at, api_key.c.revoked_at)
                               .where(scope.where(api_key), api_key.c.id == key_id)).first()

    def _touch(self, scope: Scope, key_id: str, now: datetime) -> None:
        """Record the key's last use, at most every LAST_USE_EVERY seconds; a writer holding
        the database (a long import on SQLite) makes it skip, rather than delay the request."""
        mono = time.monotonic()
        with self._lock:
            if mono - self._written.get(key_id, -LAST_USE_EVERY) < LAST_USE_EVERY:
                return
            self._written[key_id] = mono
        try:
            with scope.transaction() as conn:
                if scope.postgres:
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
                else:
                    conn.exec_driver_sql("PRAGMA busy_timeout=200")
                try:
                    conn.execute(update(api_key).where(scope.where(api_key), api_key.c.id == key_id)
                                 .values(last_used_at=now))
                finally:
                    if not scope.postgres:
                        conn.exec_driver_sql("PRAGMA busy_timeout=10000")
        except OperationalError:  # busy: the next request tries again
            with self._lock:
                self._written.pop(key_id, None)
