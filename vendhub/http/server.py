"""HttpServer: the aiohttp application, its listener (TLS when configured) and the API router."""

from __future__ import annotations

import errno
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from vendhub.auth.manager import AuthManager
from vendhub.core.errors import VendHubError
from vendhub.http.auth import auth_middleware
from vendhub.http.errors import error_middleware
from vendhub.http.headers import security_headers_middleware
from vendhub.http.router import ApiRouter
from vendhub.http.view import MAX_BODY_BYTES, ApiView

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DATA_HTTP: Final = "http"
DEFAULT_PORT: Final = 8700


class _BadRequestFilter(logging.Filter):
    """aiohttp logs a malformed request (a client's fault, answered 400) as an ERROR with a
    traceback; anyone could fill the log that way. Keep it as one WARNING line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BadHttpMessage):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = (
                "Malformed HTTP request (answered 400): %s",
                (str(error).splitlines()[0] if str(error) else type(error).__name__,),
            )
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("aiohttp.server").addFilter(_BadRequestFilter())


class HttpStartError(VendHubError):
    """The server cannot listen (port taken, bad certificate); the message says what to do."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The validated ``http:`` block."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    ssl_certificate: Path | None = None
    ssl_key: Path | None = None

    @property
    def tls(self) -> bool:
        return self.ssl_certificate is not None


def get_http(hub: Hub) -> HttpServer:
    server: HttpServer | None = hub.data.get(DATA_HTTP)
    if server is None:
        raise VendHubError("the HTTP server is not set up: add an `http:` block")
    return server


class HttpServer:
    """Serves ``/api`` (through ``ApiRouter``) and whatever static routes are added."""

    def __init__(self, hub: Hub, settings: HttpSettings, auth: AuthManager) -> None:
        self.hub = hub
        self.settings = settings
        self.auth = auth
        self.router = ApiRouter(hub)
        self.app = web.Application(
            middlewares=[
                security_headers_middleware(tls=settings.tls),
                error_middleware,
                auth_middleware(auth),
            ],
            client_max_size=MAX_BODY_BYTES,
        )
        self.app.router.add_route("*", "/api", self.router.dispatch)
        self.app.router.add_route("*", "/api/{tail:.*}", self.router.dispatch)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def register_view(self, view_class: type[ApiView]) -> None:
        self.router.register(view_class)

    def unregister_view(self, view_class: type[ApiView]) -> None:
        self.router.unregister(view_class)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(
                str(self.settings.ssl_certificate),
                str(self.settings.ssl_key) if self.settings.ssl_key else None,
            )
        except (OSError, ssl.SSLError) as error:
            raise HttpStartError(
                f"cannot load the TLS certificate {self.settings.ssl_certificate} and key "
                f"{self.settings.ssl_key}: {error}. Make a self-signed pair with "
                "`vendhub certs generate --config DIR`"
            ) from None
        return context

    async def async_start(self) -> None:
        """Listen; raises HttpStartError with one clear sentence when it cannot."""
        context = self._ssl_context()
        # A long query (many entity ids) must reach our handlers, which answer it properly.
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, max_line_size=65536)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port, ssl_context=context)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            if error.errno == errno.EADDRINUSE:
                raise HttpStartError(
                    f"port {self.settings.port} on {self.settings.host} is in use by another "
                    "program; set another one with `http: server_port: <port>`"
                ) from None
            raise HttpStartError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {error.strerror}"
            ) from None
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        _LOGGER.info("HTTP API listening on %s", self.url)

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.tls else "http"
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"{scheme}://{host}:{self.port or self.settings.port}"

    async def async_stop(self) -> None:
        # Open WebSockets would hold the server's shutdown for up to its timeout: close them.
        websockets = self.hub.data.get("http.websocket")
        if websockets is not None:
            await websockets.async_close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
