"""``/api/users``: people and their roles (owners and admins manage them)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vendhub.auth.identity import Identity
from vendhub.auth.manager import AuthError, get_auth
from vendhub.auth.roles import Permission, Role
from vendhub.auth.users import User
from vendhub.http.api.auth import auth_error
from vendhub.http.api.schemas import MACHINE_ID, NEW_PASSWORD, NEW_USERNAME, OK, ROLE, USER
from vendhub.http.errors import forbidden, not_found
from vendhub.http.keys import BODY_KEY, PARAMS_KEY
from vendhub.http.view import ApiView, identity_of, operation, require

USER_CHANGES: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 128},
    "role": ROLE,
    "active": {"type": "boolean"},
    "machine_ids": {"type": "array", "items": MACHINE_ID, "maxItems": 10000},
    "password": NEW_PASSWORD,
}


def _may_manage(identity: Identity, role: Role) -> None:
    """Only the owner manages owners and admins; an admin manages the roles below admin."""
    assert identity.role is not None
    if identity.role is not Role.owner and role.rank >= identity.role.rank:
        raise forbidden(f"only an owner may manage {role.value} users")


class UsersView(ApiView):
    url = "/api/users"
    name = "api:users"

    @operation(
        summary="Every user (never a password hash).",
        permission=Permission.manage_users,
        responses={200: {"type": "array", "items": USER}},
        tags=("users",),
    )
    async def get(self, request: web.Request) -> web.Response:
        return web.json_response([user.public() for user in get_auth(self.hub).users])

    @operation(
        summary="Create a user with a role (technicians: with their machines).",
        permission=Permission.manage_users,
        body={
            "type": "object",
            "required": ["username", "password", "role"],
            "additionalProperties": False,
            "properties": {"username": NEW_USERNAME, **USER_CHANGES},
        },
        responses={201: USER, 409: None},
        tags=("users",),
    )
    async def post(self, request: web.Request) -> web.Response:
        body = request[BODY_KEY]
        role = Role(body["role"])
        _may_manage(identity_of(request), role)
        try:
            user = await get_auth(self.hub).async_create_user(
                body["username"],
                body["password"],
                role,
                name=body.get("name", ""),
                machine_ids=body.get("machine_ids"),
            )
        except AuthError as error:
            raise auth_error(error) from None
        return web.json_response(user.public(), status=201)


class UserView(ApiView):
    url = "/api/users/{user_id}"
    name = "api:user"
    path_params = {"user_id": {"type": "string"}}

    def _user(self, request: web.Request) -> User:
        identity = identity_of(request)
        user = get_auth(self.hub).user(request[PARAMS_KEY]["user_id"])
        if user is None or (
            user.id != identity.user_id and not identity.has(Permission.manage_users)
        ):
            raise not_found("no such user")
        return user

    @operation(
        summary="One user (yourself, or anyone if you manage users).",
        responses={200: USER},
        tags=("users",),
    )
    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(self._user(request).public())

    @operation(
        summary="Change a user; you may change your own name and password.",
        body={
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": USER_CHANGES,
        },
        responses={200: USER, 409: None},
        tags=("users",),
    )
    async def patch(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        user = self._user(request)
        body = request[BODY_KEY]
        if set(body) - {"name", "password"} or user.id != identity.user_id:
            require(request, Permission.manage_users)
            _may_manage(identity, user.role)
            if "role" in body:
                _may_manage(identity, Role(body["role"]))
        try:
            updated = await get_auth(self.hub).async_update_user(
                user.id,
                name=body.get("name"),
                role=Role(body["role"]) if "role" in body else None,
                active=body.get("active"),
                machine_ids=body.get("machine_ids"),
                password=body.get("password"),
            )
        except AuthError as error:
            raise auth_error(error) from None
        return web.json_response(updated.public())

    @operation(
        summary="Delete a user and every token of theirs.",
        permission=Permission.manage_users,
        responses={200: OK, 409: None},
        tags=("users",),
    )
    async def delete(self, request: web.Request) -> web.Response:
        user = self._user(request)
        _may_manage(identity_of(request), user.role)
        try:
            await get_auth(self.hub).async_delete_user(user.id)
        except AuthError as error:
            raise auth_error(error) from None
        return web.json_response({"ok": True})


VIEWS = (UsersView, UserView)
