"""The API's contract: every route needs a token (but three), the OpenAPI document is the
router, and schemathesis finds no 5xx and nothing the document does not describe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vendhub.http.openapi import openapi_document
from vendhub.http.server import get_http

from .conftest import Api
from .hub_process import HubProcess, request, start_hub

PUBLIC = {
    ("GET", "/api/health"),
    ("GET", "/api/onboarding"),
    ("POST", "/api/onboarding"),
    ("POST", "/api/auth/login"),
}


def concrete(url: str) -> str:
    """A url with every ``{placeholder}`` filled in."""
    parts = [("x" if part.startswith("{") else part) for part in url.split("/")]
    return "/".join(parts)


async def test_every_route_but_health_login_and_onboarding_answers_401_without_a_token(
    api: Api,
) -> None:
    routes = get_http(api.hub).router.routes
    assert len(routes) >= 10
    seen_public = set()
    for route in routes:
        for method, spec in route.operations.items():
            status, body, _ = await api.call(method.upper(), concrete(route.url))
            key = (method.upper(), route.url)
            if key in PUBLIC:
                seen_public.add(key)
                assert spec.public
                assert status != 401, key
            else:
                assert not spec.public, f"{key} is public but not on the list of public routes"
                assert status == 401, (key, status, body)
                assert body["error"]["code"] == "unauthorized"
    assert seen_public == PUBLIC


async def test_an_invalid_token_is_401_everywhere_too(api: Api) -> None:
    for route in get_http(api.hub).router.routes:
        for method in route.operations:
            if (method.upper(), route.url) in PUBLIC:
                continue
            status, _, response = await api.call(
                method.upper(), concrete(route.url), token="not.a.token"
            )
            assert status == 401, route.url
            assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_the_openapi_document_is_the_router(api: Api) -> None:
    token = (await api.onboard())["access_token"]
    status, document, _ = await api.call("GET", "/api/openapi.json", token=token)
    assert status == 200
    assert document == json.loads(
        json.dumps(openapi_document(get_http(api.hub).router, title=api.hub.config.name))
    )
    router = {
        (route.url, method)
        for route in get_http(api.hub).router.routes
        for method, spec in route.operations.items()
        if not spec.websocket
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == router
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for item in document["paths"].values():
        for method, op in item.items():
            assert op["summary"], method
            assert "401" in op["responses"] or op.get("security") == []


SCHEMATHESIS_HUB = """
recorder:
alarm:
automation: []
simulator:
  speed: 60
  seed: 3
  machines:
    - id: lobby_1
      name: Lobby
      slots:
        A1: {product: Cola, price: 180, capacity: 10}
        A2: {product: Water, price: 120, capacity: 10}
    - id: gym_2
      name: Gym
      refrigerated: true
      slots:
        A1: {product: Juice, price: 200, capacity: 8}
"""


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[HubProcess]:
    hub = start_hub(tmp_path / "config", SCHEMATHESIS_HUB)
    yield hub
    hub.stop()


def schemathesis(hub: HubProcess, schema: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert executable, "schemathesis is a dev dependency: ./scripts/setup installs it"
    return subprocess.run(
        [
            executable,
            "run",
            str(schema),
            "--url",
            hub.url,
            "-H",
            f"Authorization: Bearer {hub.token}",
            "--checks",
            "all",
            # Business rules (a par above the capacity, an alarm named neither by id nor by
            # code) refuse some data the schemas allow, with a documented 400.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            os.environ.get("VENDHUB_SCHEMATHESIS_EXAMPLES", "25"),
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "1",
            "--seed",
            "20261126",
            "--no-color",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )


@pytest.mark.timeout(1200)
def test_schemathesis_finds_no_5xx_and_nothing_undocumented(
    hub_process: HubProcess, tmp_path: Path
) -> None:
    status, document = request(hub_process.url + "/api/openapi.json", token=hub_process.token)
    assert status == 200
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(document))
    # First everything that does not take the owner's access away, then the user changes
    # (which may, e.g., make another owner and deactivate this one).
    first = schemathesis(hub_process, schema, "--exclude-path-regex", "^/api/users")
    assert first.returncode == 0, first.stdout[-8000:] + first.stderr[-2000:]
    second = schemathesis(hub_process, schema, "--include-path-regex", "^/api/users")
    assert second.returncode == 0, second.stdout[-8000:] + second.stderr[-2000:]
    log = hub_process.log.read_text()
    assert "Traceback" not in log, log[-5000:]
