"""The ``mqtt:`` configuration block: an external ``broker:``, or the ``embedded_broker:``.

Without a ``broker:`` block the hub runs its own broker (amqtt, in the hub's process) with the
settings of ``embedded_broker:`` (all optional); ``BrokerSettings`` says how the hub's client
reaches whichever broker it uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.machine import protocol

from .const import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONFIG_CONFIRM_TIMEOUT,
    DEFAULT_HOST,
    DEFAULT_KEEPALIVE,
    DEFAULT_PORT,
    DEFAULT_SESSION_EXPIRY,
)

DEFAULT_EMBEDDED_HOST: Final = "0.0.0.0"  # every interface: machines on the LAN must reach it
DEFAULT_EMBEDDED_PORT: Final = 1883
DEFAULT_EMBEDDED_TLS_PORT: Final = 8883
MQTT_V5: Final = 5
MQTT_V311: Final = 4  # the protocol level of MQTT 3.1.1, all amqtt speaks


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


def _empty_is_defaults(value: Any) -> Any:
    """An empty ``broker:`` line means an external broker on the defaults."""
    return {} if value is None else value


def _listen_host(value: Any) -> str:
    """An IPv4 address or a host name to listen on; amqtt cannot listen on IPv6 addresses."""
    host = cv.string(value).strip()
    if not host:
        raise vol.Invalid("expected an IPv4 address or host name, such as 0.0.0.0 (every address)")
    if ":" in host:
        raise vol.Invalid(
            f"the embedded broker (amqtt) cannot listen on an IPv6 address, got {host!r}; use "
            "0.0.0.0 (every IPv4 address) or one IPv4 address of this computer"
        )
    return host


EMBEDDED_TLS_SCHEMA = vol.Schema(
    {
        vol.Optional("host"): _listen_host,  # default: the embedded broker's host
        vol.Optional("port", default=DEFAULT_EMBEDDED_TLS_PORT): cv.port,
        vol.Required("certfile"): cv.readable_file,
        vol.Required("keyfile"): cv.readable_file,
        vol.Optional("cafile"): cv.readable_file,  # client certificates signed by it are checked
    }
)

EMBEDDED_BROKER_SCHEMA = vol.Schema(
    {
        vol.Optional("host", default=DEFAULT_EMBEDDED_HOST): _listen_host,
        # No default here: an unset port means 1883, or the next free port if 1883 is taken;
        # a port that is set is used or the MQTT link fails with a message saying why.
        vol.Optional("port"): cv.port,
        vol.Optional("tls"): EMBEDDED_TLS_SCHEMA,
    }
)


def _defaults(config: dict[str, Any]) -> dict[str, Any]:
    broker = config.get("broker")
    if broker is not None and "embedded_broker" in config:
        raise vol.Invalid(
            "use either 'broker:' (an external broker such as Mosquitto) or 'embedded_broker:' "
            "(the broker inside the hub, used when there is no 'broker:'), not both",
            path=["embedded_broker"],
        )
    if broker is not None and "password" in broker and "username" not in broker:
        raise vol.Invalid("a password needs a username", path=["broker", "password"])
    if broker is None:
        if config.get("embedded_broker") is None:  # absent, or an empty 'embedded_broker:'
            config = {**config, "embedded_broker": EMBEDDED_BROKER_SCHEMA({})}
        tls = config["embedded_broker"].get("tls")
        port = config["embedded_broker"].get("port", DEFAULT_EMBEDDED_PORT)
        if tls is not None and tls["port"] == port:
            raise vol.Invalid(
                f"the TLS listener needs a port of its own; {port} is the plain listener's",
                path=["embedded_broker", "tls", "port"],
            )
    if "client_id" not in config:
        config = {**config, "client_id": default_client_id(config)}
    return config


def uses_embedded_broker(config: dict[str, Any]) -> bool:
    """Whether a validated ``mqtt:`` block runs the embedded broker (it has no ``broker:``)."""
    return config.get("broker") is None


def default_client_id(config: dict[str, Any]) -> str:
    """``vendhub-hub-<hash>``: stable for one broker and prefix, so the session survives."""
    broker = config.get("broker")
    if broker is None:
        seed = f"embedded/{config['topic_prefix']}"
    else:
        seed = (
            f"{broker['host']}:{broker['port']}/{broker.get('username', '')}/"
            f"{config['topic_prefix']}"
        )
    return f"vendhub-hub-{hashlib.sha256(seed.encode()).hexdigest()[:10]}"


CONFIG_SCHEMA = vol.Schema(
    vol.All(
        vol.Schema(
            {
                vol.Optional("broker"): vol.All(_empty_is_defaults, BROKER_SCHEMA),
                vol.Optional("embedded_broker"): vol.Any(None, EMBEDDED_BROKER_SCHEMA),
                vol.Optional("client_id"): vol.All(cv.string, vol.Length(min=1, max=128)),
                vol.Optional("keepalive", default=DEFAULT_KEEPALIVE): _keepalive,
                vol.Optional("topic_prefix", default=protocol.DEFAULT_PREFIX): topic_prefix,
                vol.Optional("auto_adopt", default=False): cv.boolean,
                vol.Optional("command_timeout", default=DEFAULT_COMMAND_TIMEOUT): _seconds,
                vol.Optional(
                    "config_confirm_timeout", default=DEFAULT_CONFIG_CONFIRM_TIMEOUT
                ): _seconds,
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
    protocol_version: int = MQTT_V5
    """``MQTT_V5``, or ``MQTT_V311`` for a broker that speaks only 3.1.1 (the embedded one)."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BrokerSettings:
        """The settings of the external ``broker:`` block."""
        broker = config.get("broker")
        if broker is None:
            raise ValueError(
                "this mqtt: block has no 'broker:'; the hub runs the embedded broker and its "
                "settings come from EmbeddedBroker.hub_settings()"
            )
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
