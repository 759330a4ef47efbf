"""The MQTT link's services: adopt, remove, command, publish_config, pending."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.core.errors import InvalidServiceData
from vendhub.machine import protocol

from .const import (
    DOMAIN,
    SERVICE_ADOPT,
    SERVICE_COMMAND,
    SERVICE_PENDING,
    SERVICE_PUBLISH_CONFIG,
    SERVICE_REMOVE,
)
from .runtime import MqttLinkError

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall

    from .runtime import MqttRuntime


def _machine_id(value: Any) -> str:
    text = cv.string(value)
    if not protocol.is_machine_id(text):
        raise vol.Invalid(
            f"expected a machine id of 1 to 64 lowercase letters, digits and '_', got {text!r}"
        )
    return text


def _command_name(value: Any) -> str:
    text = cv.string(value)
    if protocol.COMMAND_NAME_PATTERN.fullmatch(text) is None:
        raise vol.Invalid(
            f"expected a command name such as 'ping' or 'restock' (lowercase letters, digits, "
            f"'_'), got {text!r}"
        )
    return text


def _positive_seconds(value: Any) -> float:
    seconds = cv.time_period(value).total_seconds()
    if seconds <= 0:
        raise vol.Invalid(f"expected a positive duration, got {value!r}")
    return seconds


def _slot_code(value: Any) -> str:
    text = cv.string(value)
    try:
        return str(protocol.SLOT_CODE(text))
    except vol.Invalid as error:
        raise vol.Invalid(error.error_message) from None


SLOT_CHANGES_SCHEMA = vol.Schema(
    {
        vol.Optional("product"): vol.All(cv.string, vol.Length(min=1, max=255)),
        vol.Optional("price"): cv.money_minor_units,
        vol.Optional("capacity"): cv.slot_capacity,
        vol.Optional("par"): cv.non_negative_int,
    }
)

ADOPT_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): _machine_id,
        vol.Optional("name"): vol.All(cv.string, vol.Length(min=1, max=100)),
        vol.Optional("location"): cv.string,
    }
)
REMOVE_SCHEMA = vol.Schema({vol.Required("machine_id"): _machine_id})
COMMAND_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): _machine_id,
        vol.Required("name"): _command_name,
        vol.Optional("args", default=dict): dict,
        vol.Optional("timeout"): _positive_seconds,
    }
)
PUBLISH_CONFIG_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): _machine_id,
        vol.Optional("mode"): vol.In(
            protocol.MODES, msg=f"expected one of {', '.join(protocol.MODES)}"
        ),
        vol.Optional("slots"): {_slot_code: SLOT_CHANGES_SCHEMA},
    }
)
PENDING_SCHEMA = vol.Schema({})


def register_services(hub: Hub, runtime: MqttRuntime) -> None:
    """Register ``mqtt.adopt``, ``remove``, ``command``, ``publish_config`` and ``pending``."""

    def invalid(call: ServiceCall, error: MqttLinkError) -> InvalidServiceData:
        return InvalidServiceData(DOMAIN, call.service, str(error))

    async def adopt(call: ServiceCall) -> dict[str, Any]:
        """Adopt a machine that announced itself: device, entities and config."""
        try:
            return await runtime.async_adopt(
                call.data["machine_id"],
                call.data.get("name"),
                call.data.get("location"),
                call.context,
            )
        except MqttLinkError as error:
            raise invalid(call, error) from None

    async def remove(call: ServiceCall) -> dict[str, Any]:
        """Forget a machine (adopted or pending) and clear its retained config."""
        try:
            return await runtime.async_remove(call.data["machine_id"], call.context)
        except MqttLinkError as error:
            raise invalid(call, error) from None

    async def command(call: ServiceCall) -> dict[str, Any]:
        """Send a command to a machine and return its result (or raise on timeout)."""
        try:
            return await runtime.async_command(
                call.data["machine_id"],
                call.data["name"],
                call.data["args"],
                call.data.get("timeout"),
            )
        except MqttLinkError as error:
            raise invalid(call, error) from None

    async def publish_config(call: ServiceCall) -> dict[str, Any]:
        """Change a machine's mode or slots and publish its config (retained, new version)."""
        try:
            return await runtime.async_publish_config(
                call.data["machine_id"],
                call.data.get("mode"),
                call.data.get("slots"),
                call.context,
            )
        except MqttLinkError as error:
            raise invalid(call, error) from None

    def pending(call: ServiceCall) -> dict[str, Any]:
        """The machines that announced themselves and wait for adoption."""
        return {"pending": runtime.pending()}

    register = hub.services.async_register
    register(DOMAIN, SERVICE_ADOPT, adopt, ADOPT_SCHEMA)
    register(DOMAIN, SERVICE_REMOVE, remove, REMOVE_SCHEMA)
    register(DOMAIN, SERVICE_COMMAND, command, COMMAND_SCHEMA)
    register(DOMAIN, SERVICE_PUBLISH_CONFIG, publish_config, PUBLISH_CONFIG_SCHEMA)
    register(DOMAIN, SERVICE_PENDING, pending, PENDING_SCHEMA)
