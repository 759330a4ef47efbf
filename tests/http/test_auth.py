"""Onboarding, sign-in, lockout, tokens, sessions with CSRF, and the users API."""

from __future__ import annotations

import asyncio
import json as json_text
import logging
from pathlib import Path

import pytest

from vendhub.auth.manager import get_auth
from vendhub.http.server import get_http
from vendhub.machine.credentials import CredentialStore

from .conftest import OWNER, Api, start_api


async def test_onboarding_creates_the_owner_once(api: Api) -> None:
    status, body, _ = await api.call("GET", "/api/onboarding")
    assert (status, body) == (200, {"onboarded": False})
    grant = await api.onboard()
    assert grant["token_type"] == "Bearer" and grant["refresh_token"] and grant["access_token"]
    status, me, _ = await api.call("GET", "/api/auth/me", token=grant["access_token"])
    assert status == 200
    assert me["kind"] == "user" and me["name"] == "olga" and me["role"] == "owner"
    status, body, _ = await api.call("POST", "/api/onboarding", json={**OWNER, "username": "eve"})
    assert status == 409 and body["error"]["code"] == "already_onboarded"
    status, body, _ = await api.call("GET", "/api/onboarding")
    assert body == {"onboarded": True}


async def test_onboarding_refuses_weak_passwords_and_bad_names(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/api/onboarding", json={"username": "olga", "password": "short"}
    )
    assert status == 400 and "at least 10 characters" in body["error"]["message"]
    assert "short" not in str(body)
    status, body, _ = await api.call(
        "POST", "/api/onboarding", json={"username": "Olga Owner!", "password": "long enough pw"}
    )
    assert status == 400 and "body/username: must match" in body["error"]["message"]
    assert not get_auth(api.hub).onboarded


async def test_users_and_tokens_survive_a_restart_and_only_hashes_are_stored(
    tmp_path: Path,
) -> None:
    first = await start_api(tmp_path)
    grant = await first.onboard()
    await first.session.close()
    await first.hub.async_stop()
    stored = (tmp_path / ".storage" / "auth").read_text()
    assert OWNER["password"] not in stored
    assert grant["refresh_token"].split(".")[1] not in stored
    assert "$argon2id$" in stored
    assert (tmp_path / ".storage" / "auth").stat().st_mode & 0o777 == 0o600

    second = await start_api(tmp_path)
    try:
        status, _, _ = await second.call("GET", "/api/auth/me", token=grant["access_token"])
        assert status == 200
        status, _body = await second.login(OWNER["username"], OWNER["password"])
        assert status == 200
    finally:
        await second.session.close()
        await second.hub.async_stop()


async def test_wrong_password_then_lockout_with_retry_after(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    await api.onboard()
    for _ in range(5):
        status, body = await api.login("olga", "wrong password!")
        assert status == 401 and body["error"]["code"] == "invalid_credentials"
    status, body, response = await api.call(
        "POST",
        "/api/auth/login",
        json={"grant_type": "password", "username": "olga", "password": OWNER["password"]},
    )
    assert status == 429 and body["error"]["code"] == "login_locked"
    assert int(response.headers["Retry-After"]) > 0
    assert "wrong password!" not in caplog.text


async def test_unknown_user_and_wrong_password_answer_alike(api: Api) -> None:
    await api.onboard()
    wrong_password = await api.login("olga", "not her password")
    no_such_user = await api.login("nobody", "not her password")
    assert wrong_password == no_such_user


async def test_refresh_and_logout(api: Api) -> None:
    grant = await api.onboard()
    status, refreshed, _ = await api.call(
        "POST",
        "/api/auth/login",
        json={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
    )
    assert status == 200 and "refresh_token" not in refreshed
    status, _, _ = await api.call("POST", "/api/auth/logout", token=refreshed["access_token"])
    assert status == 200
    for token in (grant["access_token"], refreshed["access_token"]):
        status, body, _ = await api.call("GET", "/api/auth/me", token=token)
        assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body, _ = await api.call(
        "POST",
        "/api/auth/login",
        json={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
    )
    assert status == 401 and body["error"]["code"] == "invalid_grant"


async def test_access_tokens_expire(tmp_path: Path) -> None:
    api = await start_api(tmp_path, {"access_token_lifetime": 1})
    try:
        grant = await api.onboard()
        assert grant["expires_in"] == 1
        status, _, _ = await api.call("GET", "/api/auth/me", token=grant["access_token"])
        assert status == 200
        await asyncio.sleep(2.1)
        status, body, _ = await api.call("GET", "/api/auth/me", token=grant["access_token"])
        assert status == 401 and "expired" in body["error"]["message"]
    finally:
        await api.session.close()
        await api.hub.async_stop()


async def test_long_lived_token_works_until_revoked(api: Api) -> None:
    owner = (await api.onboard())["access_token"]
    status, body, _ = await api.call(
        "POST", "/api/auth/tokens", token=owner, json={"name": "grafana", "days": 30}
    )
    assert status == 201
    long_lived = body["access_token"]
    status, me, _ = await api.call("GET", "/api/auth/me", token=long_lived)
    assert me["kind"] == "token" and me["name"] == "grafana" and me["role"] == "owner"
    status, body, _ = await api.call(
        "POST", "/api/auth/tokens", token=owner, json={"name": "grafana"}
    )
    assert status == 409
    status, tokens, _ = await api.call("GET", "/api/auth/tokens", token=owner)
    assert {t["kind"] for t in tokens} == {"normal", "long_lived"}
    assert all("secret" not in str(t) for t in tokens)
    token_id = next(t["id"] for t in tokens if t["kind"] == "long_lived")
    status, _, _ = await api.call("DELETE", f"/api/auth/tokens/{token_id}", token=owner)
    assert status == 200
    status, _, _ = await api.call("GET", "/api/auth/me", token=long_lived)
    assert status == 401


async def test_console_session_cookie_needs_csrf_to_change_things(api: Api) -> None:
    await api.onboard()
    status, _grant = await api.login("olga", OWNER["password"], session=True)
    assert status == 200
    cookies = {c.key: c for c in api.session.cookie_jar}
    session_cookie = cookies["vendhub_session"]
    assert session_cookie["httponly"] and session_cookie["samesite"] == "Strict"
    assert not cookies["vendhub_csrf"]["httponly"]
    status, me, _ = await api.call("GET", "/api/auth/me")
    assert status == 200 and me["name"] == "olga"
    body = {"username": "vic", "password": "viewer-password", "role": "viewer"}
    status, error, _ = await api.call("POST", "/api/users", json=body)
    assert status == 403 and error["error"]["code"] == "csrf_failed"
    csrf = cookies["vendhub_csrf"].value
    status, created, _ = await api.call(
        "POST", "/api/users", json=body, headers={"X-CSRF-Token": csrf}
    )
    assert status == 201 and created["role"] == "viewer"
    status, _, _ = await api.call("POST", "/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert status == 200
    status, _, _ = await api.call("GET", "/api/auth/me")
    assert status == 401


async def test_users_api_and_role_limits(api: Api) -> None:
    owner = (await api.onboard())["access_token"]
    admin = await api.add_user(owner, "ada", "admin")
    viewer = await api.add_user(owner, "vic", "viewer")
    status, body, _ = await api.call("GET", "/api/users", token=viewer)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, users, _ = await api.call("GET", "/api/users", token=admin)
    assert status == 200 and {u["username"] for u in users} == {"olga", "ada", "vic"}
    assert all("password_hash" not in u for u in users)
    status, body, _ = await api.call(
        "POST",
        "/api/users",
        token=admin,
        json={"username": "otto", "password": "otto-password", "role": "owner"},
    )
    assert status == 403
    olga_id = next(u["id"] for u in users if u["username"] == "olga")
    status, body, _ = await api.call("DELETE", f"/api/users/{olga_id}", token=owner)
    assert status == 409 and body["error"]["code"] == "last_owner"
    vic_id = next(u["id"] for u in users if u["username"] == "vic")
    status, body, _ = await api.call(
        "PATCH", f"/api/users/{vic_id}", token=viewer, json={"role": "admin"}
    )
    assert status == 403
    status, body, _ = await api.call(
        "PATCH", f"/api/users/{vic_id}", token=viewer, json={"name": "Victor"}
    )
    assert status == 200 and body["name"] == "Victor"
    status, body, _ = await api.call(
        "PATCH", f"/api/users/{vic_id}", token=admin, json={"active": False}
    )
    assert status == 200
    status, _, _ = await api.call("GET", "/api/auth/me", token=viewer)
    assert status == 401


async def test_a_machine_signs_in_and_cannot_call_user_apis(api: Api) -> None:
    owner = (await api.onboard())["access_token"]
    _, password = await CredentialStore(api.hub).async_add_machine("lobby_1")
    status, grant, _ = await api.call(
        "POST",
        "/api/auth/login",
        json={"grant_type": "machine", "machine_id": "lobby_1", "password": password},
    )
    assert status == 200
    machine = grant["access_token"]
    status, me, _ = await api.call("GET", "/api/auth/me", token=machine)
    assert me["kind"] == "machine" and me["machine_id"] == "lobby_1"
    for method, path in (("GET", "/api/users"), ("GET", "/api/auth/tokens")):
        status, _, _ = await api.call(method, path, token=machine)
        assert status == 403, path
    status, _body, _ = await api.call(
        "POST",
        "/api/auth/login",
        json={"grant_type": "machine", "machine_id": "lobby_1", "password": "guess"},
    )
    assert status == 401
    assert owner


async def test_errors_have_one_shape(api: Api) -> None:
    owner = (await api.onboard())["access_token"]
    status, body, _ = await api.call("GET", "/api/no/such/thing", token=owner)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, response = await api.call("DELETE", "/api/health")
    assert status == 405 and response.headers["Allow"] == "GET"
    status, body, _ = await api.call("POST", "/api/auth/login", json={"grant_type": "magic"})
    assert status == 400 and body["error"]["code"] == "invalid_request"
    assert body["error"]["details"]
    status, body, _ = await api.call("GET", "/api/users?limit=3", token=owner)
    assert status == 400 and "limit" in body["error"]["message"]
    async with api.session.post(
        api.url + "/api/auth/login", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        assert "not valid JSON" in (await response.json())["error"]["message"]


async def test_security_headers(api: Api) -> None:
    status, _, response = await api.call("GET", "/api/health")
    assert status == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in response.headers


async def test_a_taken_port_is_one_clear_line(api: Api, tmp_path: Path, caplog) -> None:
    port = get_http(api.hub).port
    from vendhub.core.hub import Hub
    from vendhub_integrations.http import CONFIG_SCHEMA, async_setup

    other = Hub(tmp_path / "other")
    caplog.set_level(logging.ERROR)
    ok = await async_setup(other, CONFIG_SCHEMA({"server_host": "127.0.0.1", "server_port": port}))
    assert ok is False
    lines = [r for r in caplog.records if r.name.startswith("vendhub_integrations.http")]
    assert len(lines) == 1
    assert f"port {port}" in lines[0].getMessage() and "server_port" in lines[0].getMessage()
    assert lines[0].exc_info is None
    await other.async_stop()


async def test_a_machine_added_while_the_hub_runs_can_sign_in(api: Api) -> None:
    await api.onboard()
    body = {"grant_type": "machine", "machine_id": "late_1", "password": "x" * 20}
    status, _, _ = await api.call("POST", "/api/auth/login", json=body)
    assert status == 401
    from vendhub.machine.credentials import add_machine

    _, password = await asyncio.to_thread(add_machine, api.hub.config_dir, "late_1")
    status, grant, _ = await api.call(
        "POST", "/api/auth/login", json={**body, "password": password}
    )
    assert status == 200 and grant["access_token"]


LOGIN_MISTAKES = {
    "machine grant without a password": (
        {"grant_type": "machine", "machine_id": "demo_kiosk"},
        "body: 'password' is a required property",
    ),
    "unknown grant type": (
        {"grant_type": "foo"},
        'body/grant_type: must be one of "password", "refresh_token", "machine"',
    ),
    "no grant type": (
        {"username": "olga", "password": "x"},
        "body: 'grant_type' is a required property",
    ),
    "machine id against the pattern": (
        {"grant_type": "machine", "machine_id": "DEMO", "password": "x"},
        "body/machine_id: must match ^[a-z0-9_]{1,64}$",
    ),
    "session not a boolean": (
        {"grant_type": "password", "username": "owner", "password": "pw", "session": "yes"},
        "body/session: must be of type boolean",
    ),
    "password over the limit": (
        {"grant_type": "password", "username": "owner", "password": "p" * 100_000},
        "body/password: must have at most 1024 characters",
    ),
}


@pytest.mark.parametrize("mistake", LOGIN_MISTAKES)
async def test_a_login_error_names_what_is_wrong_with_the_grant_given(
    api: Api, mistake: str
) -> None:
    body, problem = LOGIN_MISTAKES[mistake]
    status, answer, _ = await api.call("POST", "/api/auth/login", json=body)
    assert status == 400, answer
    assert answer["error"]["message"] == f"invalid request body: {problem}"
    assert answer["error"]["details"] == [problem]


async def test_a_login_error_lists_every_problem_of_the_grant_given(api: Api) -> None:
    body = {"grant_type": "password", "username": "", "password": "pw", "session": 1}
    status, answer, _ = await api.call("POST", "/api/auth/login", json=body)
    assert status == 400
    assert answer["error"]["details"] == [
        "body/session: must be of type boolean",
        "body/username: must have at least 1 character",
    ]


LONG = "a" * 60_000
"""Longer than any error should quote (the request line takes up to 64 KiB)."""
SHOWN = "a" * 79 + "…"  # vendhub.util.text.shorten: 80 characters in all


async def _refused_at_length(api: Api, method: str, path: str, json: object = None) -> str:
    token = (await api.onboard())["access_token"]
    status, answer, _ = await api.call(method, path, token=token, json=json)
    assert 400 <= status < 500, answer
    assert len(json_text.dumps(answer)) < 1000
    return answer["error"]["message"]


async def test_an_unexpected_body_property_is_quoted_short(api: Api) -> None:
    message = await _refused_at_length(
        api, "POST", "/api/auth/tokens", {"name": "ci", LONG: 1, "other": 2}
    )
    assert message == f"invalid request body: body: unexpected properties '{SHOWN}', 'other'"


async def test_too_many_body_properties_do_not_echo_the_body(api: Api) -> None:
    secret = "s3cret" * 100
    body = {f"key{number}": secret for number in range(65)}
    message = await _refused_at_length(api, "POST", "/api/machines/lobby_1/commands/ping", body)
    assert message == "invalid request body: body: must have at most 64 properties"


async def test_a_path_parameter_is_quoted_short(api: Api) -> None:
    message = await _refused_at_length(api, "GET", f"/api/machines/{LONG.upper()}")
    assert message == f"no such machine: '{SHOWN.upper()}'"


async def test_an_unexpected_query_parameter_is_quoted_short(api: Api) -> None:
    message = await _refused_at_length(api, "GET", f"/api/transactions?{LONG}=1")
    assert message == f"invalid query parameters: query: unexpected parameter '{SHOWN}'"


async def test_a_query_where_none_is_taken_is_named_short(api: Api) -> None:
    message = await _refused_at_length(api, "GET", f"/api/auth/me?{LONG}=1&b=2")
    assert message == f"unexpected query parameters: {SHOWN}, b"


async def test_a_machine_token_does_not_read_the_api_description(api: Api) -> None:
    owner = (await api.onboard())["access_token"]
    _, password = await CredentialStore(api.hub).async_add_machine("lobby_1")
    status, grant, _ = await api.call(
        "POST",
        "/api/auth/login",
        json={"grant_type": "machine", "machine_id": "lobby_1", "password": password},
    )
    assert status == 200, grant
    status, body, _ = await api.call("GET", "/api/openapi.json", token=grant["access_token"])
    assert status == 403, body
    assert body["error"]["message"] == "machine credentials cannot call this API"
    status, document, _ = await api.call("GET", "/api/openapi.json", token=owner)
    assert status == 200 and document["openapi"] == "3.1.0"
