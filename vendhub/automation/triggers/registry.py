"""The trigger platforms by name, and ``TRIGGER_SCHEMA``, which dispatches on ``platform``."""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv

from . import (
    event,
    machine,
    mqtt,
    numeric_state,
    state,
    template,
    time,
    time_pattern,
    vend,
)
from .base import AttachedTrigger

if TYPE_CHECKING:
    from vendhub.core.events import Unsubscribe
    from vendhub.core.hub import Hub

TriggerAttacher = Callable[["Hub", dict[str, Any], AttachedTrigger], Awaitable["Unsubscribe"]]


@dataclass(frozen=True, slots=True)
class TriggerPlatform:
    """A kind of trigger: its options' schema and how to attach one."""

    name: str
    schema: Callable[[Any], dict[str, Any]]
    async_attach: TriggerAttacher


TRIGGER_PLATFORMS: dict[str, TriggerPlatform] = {
    module.PLATFORM: TriggerPlatform(module.PLATFORM, module.SCHEMA, module.async_attach)
    for module in (state, numeric_state, event, time, time_pattern, template, mqtt, machine, vend)
}


def register_trigger_platform(platform: TriggerPlatform) -> None:
    """Add a trigger platform (from an integration); a built-in name cannot be replaced."""
    existing = TRIGGER_PLATFORMS.get(platform.name)
    if existing is not None and existing is not platform:
        raise ValueError(f"a trigger platform named {platform.name!r} exists already")
    TRIGGER_PLATFORMS[platform.name] = platform


def _platform_error(value: Any) -> vol.Invalid:
    known = list(TRIGGER_PLATFORMS)
    close = difflib.get_close_matches(str(value), known, n=1) if isinstance(value, str) else []
    hint = f", did you mean '{close[0]}'?" if close else ""
    return vol.Invalid(
        f"expected a trigger platform, one of {', '.join(known)}; got "
        f"{cv.describe_value(value)}{hint}",
        path=["platform"],
        error_type="unknown trigger platform",
    )


def validate_trigger(value: Any) -> dict[str, Any]:
    """Validate one trigger: find its platform, then check the options that platform knows."""
    if not isinstance(value, Mapping):
        raise vol.Invalid(
            "expected a trigger, a mapping such as {platform: state, entity_id: sensor.x}, "
            f"got {cv.describe_value(value)}"
        )
    config = dict(value)
    if "trigger" in config:  # the newer Home Assistant spelling: `- trigger: state`
        if "platform" in config:
            raise vol.Invalid(
                "give the kind of trigger once, as 'platform' or as 'trigger'; got both",
                path=["trigger"],
                error_type="duplicate platform",
            )
        config["platform"] = config.pop("trigger")
    if "platform" not in config:
        raise vol.RequiredFieldInvalid(
            f"a trigger needs 'platform', one of {', '.join(TRIGGER_PLATFORMS)}",
            path=["platform"],
        )
    platform = (
        TRIGGER_PLATFORMS.get(config["platform"]) if isinstance(config["platform"], str) else None
    )
    if platform is None:
        raise _platform_error(config["platform"])
    return platform.schema(config)


TRIGGER_SCHEMA = validate_trigger
"""Validates one trigger config (voluptuous-style callable): ``TRIGGER_SCHEMA(config) -> dict``."""
