"""The web console's static files, served from ``frontend/`` (no build step).

Routes (public: the pages hold no data; the data comes from the authenticated API):

- ``/`` → ``frontend/console/index.html`` (the console is one page; its routes are ``#/...``)
- ``/kiosk/<machine_id>`` (and ``/kiosk``) → ``frontend/kiosk/index.html``, the customer kiosk
- ``/static/<path>`` → ``frontend/<path>`` (``common/``, ``console/``, later ``kiosk/``)
- ``/static/v/<build>/<path>`` → the same file, cached for good: ``<build>`` is a digest of
  every file's name, size and modification time, so it changes whenever a file does. The
  index page is served with its ``/static/`` references rewritten to the current build, and
  the modules' relative imports stay inside it: a reload asks the hub for nothing but the
  index page.
- ``/sw.js`` → the console's service worker, served from the root so its scope is ``/``
- ``/manifest.webmanifest`` → the PWA manifest; ``/favicon.ico`` → the console's icon

Everything else carries an ETag and ``Cache-Control: no-cache``: the browser keeps the files
and asks whether they changed, so an upgraded hub never leaves an old console in a browser.
Only files inside the folder are served: no dotfiles, no ``..``, no symlinks out of it.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from vendhub.http.server import HttpServer

_LOGGER = logging.getLogger(__name__)

FRONTEND_ENV: Final = "VENDHUB_FRONTEND_DIR"
"""Serve the console from another folder (a packaged install, a development copy)."""

CONTENT_TYPES: Final[dict[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".webmanifest": "application/manifest+json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}
CACHE_CONTROL: Final = "no-cache"
IMMUTABLE: Final = "public, max-age=31536000, immutable"
VERSIONED_PREFIX: Final = "/static/v/"
BUILD_TTL: Final = 1.0


def default_frontend_dir() -> Path:
    """``$VENDHUB_FRONTEND_DIR``, else ``frontend/`` beside the ``vendhub`` package."""
    configured = os.environ.get(FRONTEND_ENV)
    if configured:
        return Path(configured).resolve()
    return Path(__file__).resolve().parents[2] / "frontend"


def content_type(path: Path) -> str:
    known = CONTENT_TYPES.get(path.suffix.lower())
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


class Frontend:
    """The static file handlers over one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._etags: dict[Path, tuple[float, int, str]] = {}
        self._build: tuple[float, str] | None = None

    @property
    def available(self) -> bool:
        return (self.root / "console" / "index.html").is_file()

    def resolve(self, relative: str) -> Path | None:
        """The file ``relative`` names inside the folder, or None (missing, hidden, outside)."""
        parts = [part for part in relative.split("/") if part]
        if not parts or any(part.startswith(".") or "\\" in part for part in parts):
            return None
        candidate = self.root.joinpath(*parts)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_file() or not resolved.is_relative_to(self.root):
            return None
        return resolved

    def build_id(self) -> str:
        """A digest of every file's path, size and modification time (stats only, and at
        most once per ``BUILD_TTL`` seconds: a page's dozen module requests share one)."""
        now = time.monotonic()
        if self._build is not None and now - self._build[0] < BUILD_TTL:
            return self._build[1]
        digest = hashlib.blake2b(digest_size=6)
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root).as_posix()
            if any(part.startswith(".") for part in relative.split("/")):
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            if path.is_file():
                digest.update(f"{relative}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        self._build = (now, digest.hexdigest())
        return self._build[1]

    def _etag(self, path: Path) -> tuple[str, os.stat_result]:
        stat = path.stat()
        known = self._etags.get(path)
        if known is not None and known[0] == stat.st_mtime and known[1] == stat.st_size:
            return known[2], stat
        digest = hashlib.blake2b(path.read_bytes(), digest_size=12).hexdigest()
        etag = f'"{digest}"'
        self._etags[path] = (stat.st_mtime, stat.st_size, etag)
        return etag, stat

    def file_response(
        self, request: web.Request, path: Path | None, cache_control: str = CACHE_CONTROL
    ) -> web.StreamResponse:
        if path is None:
            raise web.HTTPNotFound(text="not found")
        etag, _ = self._etag(path)
        headers = {
            "Content-Type": content_type(path),
            "Cache-Control": cache_control,
            "ETag": etag,
        }
        if etag in {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}:
            return web.Response(status=304, headers=headers)
        body = path.read_bytes()
        return web.Response(body=body, headers=headers)

    # ---- handlers ------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self.page(request, "console/index.html", "The console's")

    async def kiosk(self, request: web.Request) -> web.StreamResponse:
        """The customer kiosk of a machine: one page; it reads the machine id from the URL."""
        return self.page(request, "kiosk/index.html", "The kiosk's")

    def page(self, request: web.Request, relative: str, what: str) -> web.StreamResponse:
        """An HTML page with its ``/static/`` references rewritten to the current build."""
        path = self.resolve(relative)
        if path is None:
            return web.Response(
                status=503,
                text=f"{what} files are not installed (looked in {self.root}); the "
                "API is at /api.\n",
                content_type="text/plain",
            )
        build = self.build_id()
        html = path.read_text(encoding="utf-8").replace('"/static/', f'"{VERSIONED_PREFIX}{build}/')
        etag = f'"{build}"'
        headers = {"Cache-Control": CACHE_CONTROL, "ETag": etag}
        if etag in {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}:
            return web.Response(status=304, headers=headers)
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers=headers)

    async def static(self, request: web.Request) -> web.StreamResponse:
        return self.file_response(request, self.resolve(request.match_info["path"]))

    async def versioned(self, request: web.Request) -> web.StreamResponse:
        """A file of build ``<build>``: cached for good when it is the current build (an old
        page asking for an old build gets today's file, revalidated as usual)."""
        current = request.match_info["build"] == self.build_id()
        return self.file_response(
            request,
            self.resolve(request.match_info["path"]),
            IMMUTABLE if current else CACHE_CONTROL,
        )

    async def service_worker(self, request: web.Request) -> web.StreamResponse:
        response = self.file_response(request, self.resolve("console/sw.js"))
        response.headers["Service-Worker-Allowed"] = "/"
        return response

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        return self.file_response(request, self.resolve("console/manifest.webmanifest"))

    async def favicon(self, request: web.Request) -> web.StreamResponse:
        return self.file_response(request, self.resolve("console/icons/icon.svg"))


def register_frontend(server: HttpServer, root: Path | None = None) -> Frontend:
    """Add the console's routes to ``server`` (before it starts listening)."""
    frontend = Frontend(root or default_frontend_dir())
    if not frontend.available:
        _LOGGER.warning(
            "The console's files are missing from %s: / answers 503, the API works",
            frontend.root,
        )
    router = server.app.router
    router.add_get("/", frontend.index)
    router.add_get("/kiosk", frontend.kiosk)
    router.add_get("/kiosk/", frontend.kiosk)
    router.add_get("/kiosk/{machine_id:[a-z0-9_]{1,64}}", frontend.kiosk)
    router.add_get(VERSIONED_PREFIX + "{build:[0-9a-f]{1,32}}/{path:.+}", frontend.versioned)
    router.add_get("/static/{path:.+}", frontend.static)
    router.add_get("/sw.js", frontend.service_worker)
    router.add_get("/manifest.webmanifest", frontend.manifest)
    router.add_get("/favicon.ico", frontend.favicon)
    return frontend
