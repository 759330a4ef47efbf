"""``async_attach_triggers``: attach all triggers of an automation, isolating failures."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.automation.template import Template, TemplateError

from .base import AttachedTrigger, ForPeriod, TriggerAction, combine_unsubscribes
from .registry import TRIGGER_PLATFORMS, validate_trigger

if TYPE_CHECKING:
    from vendhub.core.events import Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger("vendhub.automation.triggers")


async def async_attach_triggers(
    hub: Hub,
    configs: list[dict[str, Any]],
    action: TriggerAction,
    *,
    name: str,
    variables: Mapping[str, Any] | None = None,
) -> Unsubscribe:
    """Attach every enabled trigger in ``configs``; return one callable that detaches them all.

    ``action(trigger, context)`` is called with the trigger variables each time one fires.
    A trigger that is invalid or fails to attach is logged with the automation ``name`` and
    its index; the others attach regardless. ``variables`` are available to the triggers'
    templates.
    """
    unsubscribes: list[Unsubscribe] = []
    for index, raw_config in enumerate(configs):
        try:
            config = validate_trigger(raw_config)
        except vol.Invalid as error:
            _LOGGER.error(
                "automation '%s' trigger %d is invalid and was not attached: %s",
                name,
                index,
                _describe_invalid(error),
            )
            continue
        if not config["enabled"]:
            _LOGGER.debug("automation '%s' trigger %d is disabled (enabled: false)", name, index)
            continue
        platform = TRIGGER_PLATFORMS[config["platform"]]
        trigger = AttachedTrigger(
            hub=hub,
            automation_name=name,
            index=index,
            trigger_id=str(config.get("id", index)),
            platform=platform.name,
            action=action,
            variables=variables or {},
            trigger_variables=config.get("variables"),
        )
        _bind_templates(hub, config, f"{name} trigger/{index}")
        try:
            unsubscribes.append(await platform.async_attach(hub, config, trigger))
        except (vol.Invalid, TemplateError, ValueError) as error:
            _LOGGER.error("%s could not be attached: %s", trigger.label, error)
        except Exception:
            _LOGGER.exception("%s could not be attached", trigger.label)
        else:
            _LOGGER.debug("Attached %s", trigger.label)
    return combine_unsubscribes(*unsubscribes)


def _bind_templates(hub: Hub, value: Any, where: str) -> None:
    """Attach every template in a validated config to ``hub`` and name it after its place."""
    if isinstance(value, Template):
        value.attach(hub)
        value.name = where
    elif isinstance(value, ForPeriod):
        for template in value.templates():
            _bind_templates(hub, template, where)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _bind_templates(hub, item, f"{where}/{key}")
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            _bind_templates(hub, item, f"{where}/{position}")


def _describe_invalid(error: vol.Invalid) -> str:
    errors = error.errors if isinstance(error, vol.MultipleInvalid) else [error]
    parts = []
    for item in errors:
        where = "/".join(str(step) for step in item.path)
        parts.append(f"{where}: {item.error_message}" if where else item.error_message)
    return "; ".join(parts)
