"""HTTP: the REST API, the WebSocket API and, later, the console; users and their sign-in.

Reads the ``http:`` block, loads the users (``vendhub.auth``), starts ``vendhub.http``'s server
and serves the core resources. Other integrations add their resources with
``get_http(hub).register_view(...)`` (declare ``http`` in ``after_dependencies``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.auth.lockout import LockoutSettings
from vendhub.auth.manager import DATA_AUTH, AuthManager, AuthSettings
from vendhub.config import validators as cv
from vendhub.http.api import all_views
from vendhub.http.frontend import register_frontend
from vendhub.http.server import DATA_HTTP, DEFAULT_PORT, HttpServer, HttpSettings, HttpStartError
from vendhub.plugins import hookimpl

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)


def _seconds(value: Any) -> float:
    seconds = cv.time_period(value).total_seconds()
    if seconds <= 0:
        raise vol.Invalid(f"expected a positive duration, got {value!r}")
    return seconds


def _tls_pair(config: dict[str, Any]) -> dict[str, Any]:
    if ("ssl_certificate" in config) != ("ssl_key" in config):
        raise vol.Invalid(
            "ssl_certificate and ssl_key go together; make a self-signed pair with "
            "`vendhub certs generate --config DIR`",
            path=["ssl_key" if "ssl_certificate" in config else "ssl_certificate"],
        )
    return config


CONFIG_SCHEMA = vol.Schema(
    vol.All(
        vol.Schema(
            {
                vol.Optional("server_host", default="0.0.0.0"): cv.string,
                vol.Optional("server_port", default=DEFAULT_PORT): vol.All(
                    vol.Coerce(int),
                    vol.Range(min=0, max=65535, msg="a port is from 1 to 65535 (0: any free one)"),
                ),
                vol.Optional("ssl_certificate"): cv.string,
                vol.Optional("ssl_key"): cv.string,
                vol.Optional("access_token_lifetime", default="30min"): _seconds,
                vol.Optional("login_attempts_threshold", default=5): vol.All(
                    cv.positive_int, vol.Range(min=1, max=1000)
                ),
                vol.Optional("lockout_duration", default="15min"): _seconds,
            }
        ),
        _tls_pair,
    )
)


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``http:`` block: address, port, TLS certificate and key, token and lockout times."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: Any) -> Any:
    """Load the users and start serving the API."""
    return async_setup(hub, config if config is not None else CONFIG_SCHEMA({}))


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """Stop listening."""
    return async_unload(hub)


def _path(hub: Hub, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else hub.config_dir / path


async def async_setup(hub: Hub, config: dict[str, Any]) -> bool:
    settings = HttpSettings(
        host=config["server_host"],
        port=config["server_port"],
        ssl_certificate=_path(hub, config.get("ssl_certificate")),
        ssl_key=_path(hub, config.get("ssl_key")),
    )
    auth = AuthManager(
        hub,
        AuthSettings(
            access_token_ttl=config["access_token_lifetime"],
            lockout=LockoutSettings(
                failures_per_username=config["login_attempts_threshold"],
                duration=config["lockout_duration"],
            ),
        ),
    )
    await auth.async_load()
    server = HttpServer(hub, settings, auth)
    for view in all_views():
        server.register_view(view)
    register_frontend(server)
    try:
        await server.async_start()
    except HttpStartError as error:
        _LOGGER.error("HTTP API not started: %s", error)
        return False
    hub.data[DATA_AUTH] = auth
    hub.data[DATA_HTTP] = server
    _LOGGER.info(
        "Operator console: %s/%s",
        server.url,
        " (from a phone or another computer: the same port on this machine's address)"
        if settings.host in ("0.0.0.0", "::", "")
        else "",
    )
    if not auth.onboarded:
        _LOGGER.warning(
            "No user yet: open %s/ (or POST %s/api/onboarding) to create the owner",
            server.url,
            server.url,
        )
    return True


async def async_unload(hub: Hub) -> None:
    server: HttpServer | None = hub.data.pop(DATA_HTTP, None)
    auth: AuthManager | None = hub.data.pop(DATA_AUTH, None)
    if auth is not None:
        auth.async_stop()
    if server is not None:
        await server.async_stop()
