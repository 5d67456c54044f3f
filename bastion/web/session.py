"""The console's session cookie: the API key and a CSRF token, encrypted and authenticated
(Fernet: AES-128-CBC + HMAC-SHA256), HttpOnly and SameSite=Strict, so neither page scripts nor
other sites can read or send it. Every request re-authenticates the key, so a revoked key ends
its sessions at once.

The cookie's secret comes from BASTION_SESSION_SECRET (any string; set the same one for every
worker of `bastion serve --workers N`), else a random one per process: sessions then end when
the server restarts."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from dataclasses import dataclass

import orjson
from cryptography.fernet import Fernet, InvalidToken

COOKIE = "bastion_session"
PATH = "/console"
LIFETIME = 12 * 3600  # seconds a sign-in lasts


@dataclass(frozen=True)
class Session:
    token: str  # the API key
    csrf: str  # the token every console POST must carry
    expires: int  # Unix time


class Sessions:
    def __init__(self, secret: str | None = None):
        secret = secret or os.environ.get("BASTION_SESSION_SECRET") or secrets.token_urlsafe(32)
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))

    def new(self, token: str) -> tuple[Session, str]:
        """A session for an authenticated key, and its cookie value."""
        session = Session(token, secrets.token_urlsafe(24), int(time.time()) + LIFETIME)
        value = self._fernet.encrypt(orjson.dumps(session.__dict__)).decode()
        return session, value

    def read(self, value: str | None) -> Session | None:
        """The session a cookie holds; None when missing, forged, tampered with or expired."""
        if not value:
            return None
        try:
            data = orjson.loads(self._fernet.decrypt(value.encode(), ttl=LIFETIME))
            session = Session(str(data["token"]), str(data["csrf"]), int(data["expires"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        return session if session.expires > time.time() else None
