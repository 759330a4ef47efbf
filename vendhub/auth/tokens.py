"""Access tokens (short JWTs) and the refresh-token records that sign them.

Every refresh token has its own signing key, so revoking it (sign-out, a deleted user, a
removed long-lived token) makes its access tokens invalid at once. The refresh token itself is
``<id>.<secret>``; only a SHA-256 of the secret is stored (the secret is 256 random bits, so a
slow hash would add nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

import jwt

ALGORITHM = "HS256"


class TokenKind(StrEnum):
    """What a refresh-token record is for."""

    normal = "normal"
    """From a password sign-in: refreshes short access tokens; expires when unused."""
    long_lived = "long_lived"
    """Made by a user for an integration: its one access token lives for its whole life."""
    machine = "machine"
    """A machine's sign-in; kept in memory only, a machine signs in again after a restart."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A refresh token as stored: never its secret, only a hash of it."""

    id: str
    kind: TokenKind
    secret_hash: str
    jwt_key: str
    created: float
    expires: float | None
    access_token_ttl: float
    user_id: str | None = None
    machine_id: str | None = None
    name: str = ""
    last_used: float | None = None
    last_used_address: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "kind": str(self.kind)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenRecord:
        return cls(**{**data, "kind": TokenKind(data["kind"])})

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def used(self, now: float, address: str | None) -> TokenRecord:
        return replace(self, last_used=now, last_used_address=address)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_record(
    kind: TokenKind,
    *,
    access_token_ttl: float,
    lifetime: float | None,
    user_id: str | None = None,
    machine_id: str | None = None,
    name: str = "",
) -> tuple[TokenRecord, str]:
    """A new record and its refresh token string ``<id>.<secret>`` (shown once)."""
    now = time.time()
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(
        id=secrets.token_hex(16),
        kind=kind,
        secret_hash=_hash_secret(secret),
        jwt_key=secrets.token_hex(32),
        created=now,
        expires=None if lifetime is None else now + lifetime,
        access_token_ttl=access_token_ttl,
        user_id=user_id,
        machine_id=machine_id,
        name=name,
    )
    return record, f"{record.id}.{secret}"


def split_refresh_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a refresh token string, or None if it is not shaped like one."""
    token_id, dot, secret = token.partition(".")
    if not dot or len(token_id) != 32 or not secret or len(secret) > 128:
        return None
    return token_id, secret


def secret_matches(record: TokenRecord, secret: str) -> bool:
    return hmac.compare_digest(record.secret_hash, _hash_secret(secret))


def issue_access_token(record: TokenRecord, ttl: float | None = None) -> tuple[str, float]:
    """A signed access token for ``record`` and the seconds it is valid."""
    now = int(time.time())
    seconds = record.access_token_ttl if ttl is None else ttl
    claims = {"iss": record.id, "iat": now, "exp": now + int(seconds)}
    return jwt.encode(claims, record.jwt_key, algorithm=ALGORITHM), seconds


def access_token_issuer(token: str) -> str | None:
    """The record id an access token claims to come from (not yet verified)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


def verify_access_token(record: TokenRecord, token: str) -> bool:
    """Whether ``token`` was signed by ``record`` and has not expired."""
    try:
        jwt.decode(
            token,
            record.jwt_key,
            algorithms=[ALGORITHM],
            options={"require": ["iss", "exp", "iat"]},
            issuer=record.id,
        )
    except jwt.InvalidTokenError:
        return False
    return True
