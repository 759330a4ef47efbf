"""The ``uplink:`` block: where the fleet hub's broker is, with which credentials, and which
local vending machines to link to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.machine import protocol
from vendhub.machine.simulate import parse_hub_url

DEFAULT_TELEMETRY_INTERVAL = 60.0
DEFAULT_RESEND_AFTER = 10.0
DEFAULT_KEEPALIVE = 30


def _broker_url(value: Any) -> dict[str, Any]:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (TLS), as the agent takes it."""
    text = cv.string(value)
    if "@" in text:
        # Checked before anything else, so that no message repeats a password in the URL.
        raise vol.Invalid(
            "put the credentials in username and password (password: !secret ...), "
            "not in the broker URL; got a URL with credentials in it"
        )
    try:
        address = parse_hub_url(text)
    except ValueError as error:
        raise vol.Invalid(str(error)) from None
    if address.transport != "mqtt":
        raise vol.Invalid(
            f"the uplink speaks MQTT to the fleet hub's broker; use mqtt:// or mqtts://, "
            f"got {text!r}"
        )
    return {"host": address.host, "port": address.port, "tls": address.tls}


def _prefix(value: Any) -> str:
    text = cv.string(value)
    try:
        protocol.topic_filter("#", prefix=text)
    except ValueError as error:
        raise vol.Invalid(str(error)) from None
    return text


def _machine_id(value: Any) -> str:
    text = cv.slug(value)
    if not protocol.is_machine_id(text):
        raise vol.Invalid(
            f"{text!r} cannot be a machine id on the fleet: 1 to 64 lowercase letters a-z, "
            "digits and '_'"
        )
    return text


TLS_SCHEMA = vol.Schema(
    {
        vol.Optional("ca_certs"): cv.readable_file,
        vol.Optional("certfile"): cv.readable_file,
        vol.Optional("keyfile"): cv.readable_file,
        vol.Optional("insecure", default=False): cv.boolean,
    }
)

MACHINE_CREDENTIALS_SCHEMA = vol.Schema(
    {vol.Optional("username"): cv.string, vol.Optional("password"): cv.string}
)


def _machines(value: Any) -> dict[str, dict[str, Any]] | None:
    """A list of machine ids, or a mapping id → its own username and password."""
    if value is None:
        return None
    if isinstance(value, dict):
        return vol.Schema({_machine_id: vol.Any(None, MACHINE_CREDENTIALS_SCHEMA)})(
            {key: value[key] or {} for key in value}
        )
    ids = vol.Schema([_machine_id])(cv.ensure_list(value))
    if len(set(ids)) != len(ids):
        raise vol.Invalid(f"a machine is listed twice in {ids}")
    return {machine_id: {} for machine_id in ids}


def _check(config: dict[str, Any]) -> dict[str, Any]:
    tls = config.get("tls")
    if tls is not None and "keyfile" in tls and "certfile" not in tls:
        raise vol.Invalid("a keyfile needs its certfile", path=["tls", "keyfile"])
    return config


CONFIG_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("broker"): _broker_url,
            vol.Optional("username"): cv.string,
            vol.Optional("password"): cv.string,
            vol.Optional("tls"): TLS_SCHEMA,
            vol.Optional("machines"): _machines,
            vol.Optional("prefix", default=protocol.DEFAULT_PREFIX): _prefix,
            vol.Optional("telemetry_interval", default=DEFAULT_TELEMETRY_INTERVAL): vol.All(
                cv.time_period, lambda period: period.total_seconds(), vol.Range(min=1)
            ),
            vol.Optional("resend_after", default=DEFAULT_RESEND_AFTER): vol.All(
                cv.time_period, lambda period: period.total_seconds(), vol.Range(min=0.1)
            ),
            vol.Optional("keepalive", default=DEFAULT_KEEPALIVE): vol.All(
                cv.positive_int, vol.Range(min=5, max=65535)
            ),
        }
    ),
    _check,
)


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """How one local machine connects to the fleet's broker (the password is never logged)."""

    machine_id: str
    host: str
    port: int
    username: str | None
    password: str | None
    prefix: str
    tls: dict[str, Any] | None
    telemetry_interval: float
    resend_after: float
    keepalive: int

    def __repr__(self) -> str:
        return (
            f"LinkSettings(machine_id={self.machine_id!r}, broker={self.host}:{self.port}, "
            f"username={self.username!r}, tls={self.tls is not None})"
        )


def link_settings(config: dict[str, Any], machine_ids: list[str]) -> list[LinkSettings]:
    """One ``LinkSettings`` per machine: its own credentials where given, else the block's;
    the username is the machine id when only a password is given."""
    broker = config["broker"]
    tls = config.get("tls")
    if broker["tls"] and tls is None:
        tls = {"insecure": False}
    overrides = config.get("machines") or {}
    links = []
    for machine_id in machine_ids:
        own = overrides.get(machine_id, {})
        password = own.get("password", config.get("password"))
        username = own.get("username", config.get("username"))
        if username is None and password is not None:
            username = machine_id  # the fleet hub issues each machine the user of its id
        links.append(
            LinkSettings(
                machine_id=machine_id,
                host=broker["host"],
                port=broker["port"],
                username=username,
                password=password,
                prefix=config["prefix"],
                tls=tls,
                telemetry_interval=config["telemetry_interval"],
                resend_after=config["resend_after"],
                keepalive=config["keepalive"],
            )
        )
    return links
