"""Alarms as first-class objects: integrations and automations raise, people acknowledge and clear.

Services: ``alarm.raise``, ``alarm.acknowledge``, ``alarm.clear``, ``alarm.list``. Events:
``alarm_raised``, ``alarm_updated`` (raised again while active), ``alarm_acknowledged``,
``alarm_cleared``. Each active alarm is also the state of ``alarm.<machine>_<code>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.core.errors import InvalidServiceData
from vendhub.plugins import hookimpl

from .alarms import SEVERITIES, AlarmError, AlarmManager

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall

DOMAIN = "alarm"

RAISE_SCHEMA = vol.Schema(
    {
        vol.Required("code"): cv.slug,
        vol.Required("message"): cv.string,
        vol.Optional("machine_id"): vol.Any(None, cv.string),
        vol.Optional("severity", default="warning"): vol.In(SEVERITIES),
        vol.Optional("data", default=dict): dict,
        vol.Optional("threshold"): {
            vol.Required("count"): cv.positive_int,
            vol.Required("within"): cv.time_period,
        },
    }
)
TARGET_SCHEMA = vol.Schema(
    vol.All(
        {
            vol.Optional("alarm_id"): cv.string,
            vol.Optional("machine_id"): vol.Any(None, cv.string),
            vol.Optional("code"): cv.slug,
        },
        vol.Any(
            vol.Schema({vol.Required("alarm_id"): object}, extra=vol.ALLOW_EXTRA),
            vol.Schema({vol.Required("code"): object}, extra=vol.ALLOW_EXTRA),
            msg="name the alarm: alarm_id, or code (with machine_id for a machine's alarm)",
        ),
    )
)
LIST_SCHEMA = vol.Schema({vol.Optional("include_cleared", default=False): cv.boolean})


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``alarm:`` block takes no options yet."""
    return vol.Schema({})


@hookimpl
def vendhub_setup(hub: Hub) -> Any:
    """Load the active alarms and register the services."""
    return _async_setup(hub)


async def _async_setup(hub: Hub) -> None:
    manager = AlarmManager(hub)
    await manager.async_load()
    hub.data[DOMAIN] = manager

    def target(call: ServiceCall) -> Any:
        try:
            return manager.find(
                call.data.get("alarm_id"),
                machine_id=call.data.get("machine_id"),
                code=call.data.get("code"),
            )
        except AlarmError as error:
            raise InvalidServiceData(DOMAIN, call.service, str(error)) from None

    def raise_alarm(call: ServiceCall) -> dict[str, Any] | None:
        """Raise an alarm (or count another occurrence of the active one)."""
        threshold = call.data.get("threshold")
        alarm = manager.async_raise(
            call.data["code"],
            call.data["message"],
            machine_id=call.data.get("machine_id"),
            severity=call.data["severity"],
            data=call.data["data"],
            threshold=(threshold["count"], threshold["within"]) if threshold else None,
            context=call.context,
        )
        return alarm.as_dict() if alarm else None

    def acknowledge(call: ServiceCall) -> dict[str, Any]:
        """Acknowledge an active alarm; the caller's user is recorded."""
        return manager.async_acknowledge(target(call), call.context).as_dict()

    def clear(call: ServiceCall) -> dict[str, Any]:
        """Clear an active alarm."""
        return manager.async_clear(target(call), call.context).as_dict()

    def list_alarms(call: ServiceCall) -> dict[str, Any]:
        """Active alarms, and the recently cleared ones when asked."""
        result: dict[str, Any] = {"active": [a.as_dict() for a in manager.active.values()]}
        if call.data["include_cleared"]:
            result["cleared"] = [alarm.as_dict() for alarm in reversed(manager.history)]
        return result

    hub.services.async_register(DOMAIN, "raise", raise_alarm, RAISE_SCHEMA)
    hub.services.async_register(DOMAIN, "acknowledge", acknowledge, TARGET_SCHEMA)
    hub.services.async_register(DOMAIN, "clear", clear, TARGET_SCHEMA)
    hub.services.async_register(DOMAIN, "list", list_alarms, LIST_SCHEMA, read_only=True)


@hookimpl
def vendhub_unload(hub: Hub) -> None:
    """Forget the manager; the alarms stay saved for the next start."""
    hub.data.pop(DOMAIN, None)
