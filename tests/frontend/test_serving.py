"""The console's static files as the hub serves them: routes, content types, caching,
the versioned build, the service worker and manifest, and nothing outside frontend/."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import REPO_ROOT
from vendhub.http.frontend import IMMUTABLE, Frontend, default_frontend_dir, register_frontend
from vendhub.http.headers import security_headers_middleware

FRONTEND = REPO_ROOT / "frontend"


async def client_for(root: Path) -> TestClient:
    app = web.Application(middlewares=[security_headers_middleware(tls=False)])
    register_frontend(SimpleNamespace(app=app), root)  # type: ignore[arg-type]
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    client = await client_for(FRONTEND)
    yield client
    await client.close()


def build_of(html: str) -> str:
    match = re.search(r'"/static/v/([0-9a-f]+)/console/app\.js"', html)
    assert match, html
    return match.group(1)


def test_the_repository_frontend_is_the_default() -> None:
    assert default_frontend_dir() == FRONTEND.resolve()
    assert Frontend(FRONTEND).available


async def test_the_index_page_is_public_and_points_at_the_current_build(client: TestClient) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-cache"
    assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'self'
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    html = await response.text()
    build = build_of(html)
    # Nothing from another host, and no inline script (the CSP would refuse it).
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)
    for script in re.findall(r"<script([^>]*)>", html):
        assert "src=" in script, script
    # Every file the page names exists, cached for good under its build.
    for url in re.findall(r'(?:src|href)="(/static/v/[^"]+)"', html):
        answer = await client.get(url)
        assert answer.status == 200, url
        assert answer.headers["Cache-Control"] == IMMUTABLE, url
        assert f"/static/v/{build}/" in url
    again = await client.get("/", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/console/app.js", "text/javascript"),
        ("/static/common/api.js", "text/javascript"),
        ("/static/common/base.css", "text/css"),
        ("/static/common/i18n/ru.json", "application/json"),
        ("/static/console/icons/icon.svg", "image/svg+xml"),
        ("/static/console/icons/icon-192.png", "image/png"),
        ("/manifest.webmanifest", "application/manifest+json"),
        ("/sw.js", "text/javascript"),
        ("/favicon.ico", "image/svg+xml"),
    ],
)
async def test_files_have_their_content_types_and_revalidate(
    client: TestClient, path: str, content_type: str
) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    etag = response.headers["ETag"]
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304
    head = await client.head(path)
    assert head.status == 200


async def test_the_service_worker_may_control_the_whole_console(client: TestClient) -> None:
    response = await client.get("/sw.js")
    assert response.headers["Service-Worker-Allowed"] == "/"
    manifest = json.loads(await (await client.get("/manifest.webmanifest")).text())
    assert manifest["scope"] == "/"
    assert manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        assert (await client.get(icon["src"])).status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/pyproject.toml",
        "/static/common/../../pyproject.toml",
        "/static/.gitignore",
        "/static/console",
        "/static/console/",
        "/static/nothing.js",
        "/static/v/0123456789ab/../../pyproject.toml",
    ],
)
async def test_nothing_outside_the_folder_is_served(client: TestClient, path: str) -> None:
    response = await client.get(path, allow_redirects=False)
    assert response.status == 404, path


async def test_a_symlink_out_of_the_folder_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "frontend"
    shutil.copytree(FRONTEND, root)
    (tmp_path / "secret.txt").write_text("secret")
    (root / "common" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    client = await client_for(root)
    try:
        assert (await client.get("/static/common/leak.txt")).status == 404
    finally:
        await client.close()


async def test_the_build_changes_when_a_file_does_and_old_builds_revalidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "frontend"
    shutil.copytree(FRONTEND, root)
    client = await client_for(root)
    try:
        first = build_of(await (await client.get("/")).text())
        css = root / "common" / "base.css"
        css.write_text(css.read_text() + "\n/* changed */\n")
        monkeypatch.setattr("vendhub.http.frontend.BUILD_TTL", 0)
        second = build_of(await (await client.get("/")).text())
        assert second != first
        old: Any = await client.get(f"/static/v/{first}/common/base.css")
        assert old.status == 200
        assert old.headers["Cache-Control"] == "no-cache"
        assert "/* changed */" in await old.text()
    finally:
        await client.close()


async def test_without_the_files_the_index_says_so(tmp_path: Path) -> None:
    client = await client_for(tmp_path / "missing")
    try:
        response = await client.get("/")
        assert response.status == 503
        assert "not installed" in await response.text()
    finally:
        await client.close()
