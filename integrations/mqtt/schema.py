"""The ``mqtt:`` configuration block."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.machine import protocol

from .const import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_HOST,
    DEFAULT_KEEPALIVE,
    DEFAULT_PORT,
    DEFAULT_SESSION_EXPIRY,
)


def topic_prefix(value: Any) -> str:
    """One or more topic levels without wildcards, e.g. ``vendhub`` or ``site1/vendhub``."""
    text = cv.string(value).strip()
    try:
        protocol.topic_filter(prefix=text)
    except ValueError:
        raise vol.Invalid(
            "expected topic levels of letters, digits, '_', '.' or '-' joined by '/', such as "
            f"'vendhub' or 'site1/vendhub', got {text!r}"
        ) from None
    return text


def _seconds(value: Any) -> float:
    seconds = cv.time_period(value).total_seconds()
    if seconds <= 0:
        raise vol.Invalid(f"expected a positive duration, got {value!r}")
    return seconds


def _keepalive(value: Any) -> int:
    seconds = cv.positive_int(value)
    if not 5 <= seconds <= 65535:
        raise vol.Invalid(f"keepalive must be from 5 to 65535 seconds, got {seconds}")
    return seconds


TLS_SCHEMA = vol.Schema(
    {
        vol.Optional("ca_certs"): cv.string,
        vol.Optional("certfile"): cv.string,
        vol.Optional("keyfile"): cv.string,
        vol.Optional("insecure", default=False): cv.boolean,
    }
)

BROKER_SCHEMA = vol.Schema(
    {
        vol.Optional("host", default=DEFAULT_HOST): cv.string,
        vol.Optional("port", default=DEFAULT_PORT): cv.port,
        vol.Optional("username"): cv.string,
        vol.Optional("password"): cv.string,
        vol.Optional("tls"): vol.Any(None, TLS_SCHEMA),
    }
)


def _defaults(config: dict[str, Any]) -> dict[str, Any]:
    broker = config["broker"]
    if "password" in broker and "username" not in broker:
        raise vol.Invalid("a password needs a username", path=["broker", "password"])
    if "client_id" not in config:
        config = {**config, "client_id": default_client_id(config)}
    return config


def default_client_id(config: dict[str, Any]) -> str:
    """``vendhub-hub-<hash>``: stable for one broker and prefix, so the session survives."""
    broker = config["broker"]
    seed = (
        f"{broker['host']}:{broker['port']}/{broker.get('username', '')}/{config['topic_prefix']}"
    )
    return f"vendhub-hub-{hashlib.sha256(seed.encode()).hexdigest()[:10]}"


CONFIG_SCHEMA = vol.Schema(
    vol.All(
        vol.Schema(
            {
                vol.Optional("broker", default=dict): BROKER_SCHEMA,
                vol.Optional("client_id"): vol.All(cv.string, vol.Length(min=1, max=128)),
                vol.Optional("keepalive", default=DEFAULT_KEEPALIVE): _keepalive,
                vol.Optional("topic_prefix", default=protocol.DEFAULT_PREFIX): topic_prefix,
                vol.Optional("auto_adopt", default=False): cv.boolean,
                vol.Optional("command_timeout", default=DEFAULT_COMMAND_TIMEOUT): _seconds,
                vol.Optional("session_expiry", default=DEFAULT_SESSION_EXPIRY): _seconds,
            }
        ),
        _defaults,
    )
)


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """How to reach the broker, from a validated ``mqtt:`` block."""

    host: str
    port: int
    client_id: str
    keepalive: int
    session_expiry: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    tls_insecure: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BrokerSettings:
        broker = config["broker"]
        tls = broker.get("tls")
        return cls(
            host=broker["host"],
            port=broker["port"],
            client_id=config["client_id"],
            keepalive=config["keepalive"],
            session_expiry=int(config["session_expiry"]),
            username=broker.get("username"),
            password=broker.get("password"),
            tls="tls" in broker,
            ca_certs=(tls or {}).get("ca_certs"),
            certfile=(tls or {}).get("certfile"),
            keyfile=(tls or {}).get("keyfile"),
            tls_insecure=bool((tls or {}).get("insecure", False)),
        )

    @property
    def address(self) -> str:
        """``host:port`` for log lines."""
        return f"{self.host}:{self.port}"
