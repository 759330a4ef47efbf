"""Onboarding, sign-in (passwords, refresh tokens, machines), sign-out, the caller, tokens."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from aiohttp import web

from vendhub.auth.manager import AuthError, LoginLocked, TokenGrant, get_auth
from vendhub.auth.roles import Permission
from vendhub.auth.tokens import TokenRecord
from vendhub.http.api.schemas import (
    MACHINE_ID,
    NEW_PASSWORD,
    NEW_USERNAME,
    OK,
    PASSWORD,
    TIMESTAMP,
    TOKEN_GRANT,
    USERNAME,
)
from vendhub.http.auth import (
    clear_session_cookies,
    remote_address,
    set_session_cookies,
)
from vendhub.http.errors import ApiError, forbidden, not_found
from vendhub.http.keys import BODY_KEY, PARAMS_KEY, SESSION_KEY
from vendhub.http.server import get_http
from vendhub.http.view import ApiView, identity_of, operation

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_STATUS = {
    "invalid_credentials": 401,
    "invalid_grant": 401,
    "already_onboarded": 409,
    "user_store_damaged": 409,
    "username_taken": 409,
    "name_taken": 409,
    "last_owner": 409,
    "not_found": 404,
}


def auth_error(error: AuthError) -> ApiError:
    """The API answer for an AuthError."""
    if isinstance(error, LoginLocked):
        return ApiError(
            429, error.code, str(error), headers={"Retry-After": str(int(error.retry_after) + 1)}
        )
    return ApiError(_STATUS.get(error.code, 400), error.code, str(error))


def grant_response(hub: Hub, grant: TokenGrant, *, session: bool) -> web.Response:
    """The tokens as JSON; with ``session``, the console's cookies too."""
    response = web.json_response(grant.as_json())
    if session and grant.refresh_token is not None:
        set_session_cookies(response, grant, tls=get_http(hub).settings.tls)
    return response


ONBOARDING_STATUS = {
    "type": "object",
    "required": ["onboarded"],
    "properties": {"onboarded": {"type": "boolean"}},
}


class OnboardingView(ApiView):
    url = "/api/onboarding"
    name = "api:onboarding"

    @operation(
        summary="Whether the owner has been created yet.",
        public=True,
        responses={200: ONBOARDING_STATUS},
        tags=("auth",),
    )
    async def get(self, request: web.Request) -> web.Response:
        return web.json_response({"onboarded": get_auth(self.hub).onboarded})

    @operation(
        summary="Create the owner on the first start, and sign them in.",
        description="Only possible while the hub has no user at all; answers 409 afterwards.",
        public=True,
        body={
            "type": "object",
            "required": ["username", "password"],
            "additionalProperties": False,
            "properties": {
                "username": NEW_USERNAME,
                "password": NEW_PASSWORD,
                "name": {"type": "string", "maxLength": 128},
                "session": {"type": "boolean"},
            },
        },
        responses={200: TOKEN_GRANT, 409: None},
        tags=("auth",),
    )
    async def post(self, request: web.Request) -> web.Response:
        body = request[BODY_KEY]
        try:
            grant = await get_auth(self.hub).async_onboard(
                body["username"], body["password"], body.get("name", "")
            )
        except AuthError as error:
            raise auth_error(error) from None
        return grant_response(self.hub, grant, session=body.get("session", False))


LOGIN_BODY: dict[str, Any] = {
    # grant_type chooses the form; a body that fits none is told what is wrong with the form
    # its grant_type names, or which grant types there are (view.py finds the discriminator).
    "oneOf": [
        {
            "title": "password grant",
            "type": "object",
            "required": ["grant_type", "username", "password"],
            "additionalProperties": False,
            "properties": {
                "grant_type": {"const": "password"},
                "username": USERNAME,
                "password": PASSWORD,
                "session": {
                    "type": "boolean",
                    "description": "Also start a console session (HttpOnly cookie + CSRF).",
                },
            },
        },
        {
            "title": "refresh_token grant",
            "type": "object",
            "required": ["grant_type", "refresh_token"],
            "additionalProperties": False,
            "properties": {
                "grant_type": {"const": "refresh_token"},
                "refresh_token": {"type": "string", "minLength": 1, "maxLength": 256},
            },
        },
        {
            "title": "machine grant",
            "type": "object",
            "required": ["grant_type", "machine_id", "password"],
            "additionalProperties": False,
            "properties": {
                "grant_type": {"const": "machine"},
                "machine_id": MACHINE_ID,
                "password": PASSWORD,
            },
        },
    ]
}


class LoginView(ApiView):
    url = "/api/auth/login"
    name = "api:login"

    @operation(
        summary="Sign in: a password, a refresh token, or a machine's credentials → tokens.",
        description=(
            "grant_type password returns an access token and a refresh token (and with "
            "session: true, the console's session cookies); refresh_token returns a new access "
            "token; machine returns an access token for a machine. Too many failures lock the "
            "username and the address for a while (429 with Retry-After)."
        ),
        public=True,
        body=LOGIN_BODY,
        responses={200: TOKEN_GRANT, 401: None, 429: None},
        tags=("auth",),
    )
    async def post(self, request: web.Request) -> web.Response:
        body = request[BODY_KEY]
        auth = get_auth(self.hub)
        address = remote_address(request)
        try:
            if body["grant_type"] == "password":
                grant = await auth.async_login(body["username"], body["password"], address=address)
                return grant_response(self.hub, grant, session=body.get("session", False))
            if body["grant_type"] == "refresh_token":
                grant = await auth.async_refresh(body["refresh_token"], address=address)
            else:
                grant = await auth.async_login_machine(
                    body["machine_id"], body["password"], address=address
                )
        except AuthError as error:
            raise auth_error(error) from None
        return web.json_response(grant.as_json())


ME = {
    "type": "object",
    "required": ["kind", "name"],
    "properties": {
        "kind": {"enum": ["user", "token", "machine"]},
        "name": {"type": "string"},
        "role": {"type": ["string", "null"]},
        "user_id": {"type": ["string", "null"]},
        "machine_id": {"type": ["string", "null"]},
        "machine_ids": {"type": ["array", "null"], "items": {"type": "string"}},
        "permissions": {"type": "array", "items": {"type": "string"}},
    },
}


class MeView(ApiView):
    url = "/api/auth/me"
    name = "api:me"

    @operation(
        summary="Who the caller is, and what they may do.",
        machines=True,
        responses={200: ME},
        tags=("auth",),
    )
    async def get(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        return web.json_response(
            {
                "kind": str(identity.kind),
                "name": identity.name,
                "role": str(identity.role) if identity.role else None,
                "user_id": identity.user_id,
                "machine_id": identity.machine_id,
                "machine_ids": sorted(identity.machine_ids)
                if identity.machine_ids is not None
                else None,
                "permissions": sorted(identity.role.permissions) if identity.role else [],
            }
        )


class LogoutView(ApiView):
    url = "/api/auth/logout"
    name = "api:logout"

    @operation(
        summary="Sign out: revoke this session's refresh token and clear the cookies.",
        responses={200: OK},
        tags=("auth",),
    )
    async def post(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        auth = get_auth(self.hub)
        if identity.token_id and identity.kind.value == "user":
            with contextlib.suppress(AuthError):
                await auth.async_revoke_token(identity.token_id)
        response = web.json_response({"ok": True})
        if request.get(SESSION_KEY):
            clear_session_cookies(response)
        return response


TOKEN = {
    "type": "object",
    "required": ["id", "kind", "name", "created"],
    "properties": {
        "id": {"type": "string"},
        "kind": {"enum": ["normal", "long_lived"]},
        "name": {"type": "string"},
        "created": TIMESTAMP,
        "expires": {"type": ["number", "null"]},
        "last_used": {"type": ["number", "null"]},
        "last_used_address": {"type": ["string", "null"]},
        "current": {"type": "boolean"},
    },
}


def token_json(record: TokenRecord, current_id: str | None) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": str(record.kind),
        "name": record.name,
        "created": record.created,
        "expires": record.expires,
        "last_used": record.last_used,
        "last_used_address": record.last_used_address,
        "current": record.id == current_id,
    }


class TokensView(ApiView):
    url = "/api/auth/tokens"
    name = "api:tokens"

    @operation(
        summary="The caller's sessions and long-lived tokens (never their secrets).",
        responses={200: {"type": "array", "items": TOKEN}},
        tags=("auth",),
    )
    async def get(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        records = get_auth(self.hub).tokens_of(identity.user_id or "")
        return web.json_response([token_json(r, identity.token_id) for r in records])

    @operation(
        summary="Create a long-lived token for an integration (shown once).",
        body={
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "days": {"type": "integer", "minimum": 1, "maximum": 3650},
            },
        },
        responses={
            201: {
                "type": "object",
                "required": ["token", "access_token"],
                "properties": {"token": TOKEN, "access_token": {"type": "string"}},
            },
            409: None,
        },
        tags=("auth",),
    )
    async def post(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        if identity.kind.value != "user":
            raise forbidden("a long-lived token cannot create another; sign in as the user")
        body = request[BODY_KEY]
        try:
            record, access_token = await get_auth(self.hub).async_create_long_lived_token(
                identity.user_id or "", body["name"], days=body.get("days")
            )
        except AuthError as error:
            raise auth_error(error) from None
        return web.json_response(
            {"token": token_json(record, None), "access_token": access_token}, status=201
        )


class TokenView(ApiView):
    url = "/api/auth/tokens/{token_id}"
    name = "api:token"
    path_params = {"token_id": {"type": "string"}}

    @operation(
        summary="Revoke one of the caller's tokens (users who manage users: anyone's).",
        responses={200: OK},
        tags=("auth",),
    )
    async def delete(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        auth = get_auth(self.hub)
        record = auth.token(request[PARAMS_KEY]["token_id"])
        mine = record is not None and record.user_id == identity.user_id
        if record is None or not (mine or identity.has(Permission.manage_users)):
            raise not_found("no such token")
        await auth.async_revoke_token(record.id)
        return web.json_response({"ok": True})


VIEWS = (OnboardingView, LoginView, LogoutView, MeView, TokensView, TokenView)
