"""Who is calling: a bearer token, or the console's session cookie (with a CSRF check).

The middleware only finds the identity; ``view.checked_handler`` refuses what needs one.
A session cookie holds a refresh token and is HttpOnly, so page scripts never see it; requests
that change something must then also carry the ``X-CSRF-Token`` header equal to the readable
``vendhub_csrf`` cookie (double submit), which another site's page cannot do.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from aiohttp import web

from vendhub.auth.identity import Identity
from vendhub.auth.manager import AuthManager, TokenGrant
from vendhub.core.context import Context
from vendhub.http.errors import ApiError, unauthorized
from vendhub.http.keys import (
    AUTH_PROBLEM_KEY,
    CSRF_COOKIE,
    CSRF_HEADER,
    IDENTITY_KEY,
    SESSION_COOKIE,
    SESSION_KEY,
)
from vendhub.recorder.audit import audit_remote_address

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_MAX_AGE = 90 * 86_400


def auth_middleware(auth: AuthManager) -> Any:
    """A middleware that puts the caller's ``Identity`` (or None, and why) on every request."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        request[IDENTITY_KEY] = None
        request[SESSION_KEY] = False
        request[AUTH_PROBLEM_KEY] = None
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            identity = None
            if scheme.lower() != "bearer" or not token.strip():
                request[AUTH_PROBLEM_KEY] = unauthorized(
                    "use 'Authorization: Bearer <access token>'"
                )
            elif (identity := auth.validate_access_token(token.strip())) is None:
                request[AUTH_PROBLEM_KEY] = unauthorized(
                    "the access token is invalid or has expired"
                )
            request[IDENTITY_KEY] = identity
        elif (session := request.cookies.get(SESSION_COOKIE)) is not None:
            identity = auth.validate_session(session)
            if identity is None:
                request[AUTH_PROBLEM_KEY] = unauthorized("the session has ended; sign in again")
            elif request.method not in SAFE_METHODS and not _csrf_ok(request):
                request[AUTH_PROBLEM_KEY] = ApiError(
                    403,
                    "csrf_failed",
                    f"a console request that changes something needs the {CSRF_HEADER} "
                    f"header equal to the {CSRF_COOKIE} cookie",
                )
            else:
                request[IDENTITY_KEY] = identity
                request[SESSION_KEY] = True
        # What the request (or its WebSocket) changes is audited with where it came from.
        with audit_remote_address(request.remote):
            return await handler(request)

    return authenticate


def _csrf_ok(request: web.Request) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    return bool(cookie) and hmac.compare_digest(cookie, header)


def set_session_cookies(response: web.StreamResponse, grant: TokenGrant, *, tls: bool) -> None:
    """Start a console session: the refresh token in an HttpOnly cookie, a CSRF cookie beside."""
    assert grant.refresh_token is not None
    response.set_cookie(
        SESSION_COOKIE,
        grant.refresh_token,
        max_age=SESSION_MAX_AGE,
        path="/",
        httponly=True,
        secure=tls,
        samesite="Strict",
    )
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(24),
        max_age=SESSION_MAX_AGE,
        path="/",
        httponly=False,
        secure=tls,
        samesite="Strict",
    )


def clear_session_cookies(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")


def remote_address(request: web.Request) -> str | None:
    return request.remote


def context_for(identity: Identity | None) -> Context:
    """The Context of what a caller does: its actor id is in ``user_id``."""
    return Context(user_id=identity.actor_id if identity is not None else None)


def request_context(request: web.Request) -> Context:
    return context_for(request.get(IDENTITY_KEY))
