"""``template``: a template becomes true (from false), optionally for a period.

The template renders again whenever an entity it read changes (``async_track_template_result``),
and once a minute when it calls ``now()``. A template that is already true when the trigger is
attached fires only after it has been false. A render error is logged and leaves the last
good result in place.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.automation.template import (
    RenderInfo,
    Template,
    TemplateError,
    async_track_template_result,
    result_as_boolean,
)
from vendhub.core.timers import async_track_time_interval

from . import options
from .base import AttachedTrigger, ForTimers, combine_unsubscribes

if TYPE_CHECKING:
    from vendhub.core.events import Unsubscribe
    from vendhub.core.hub import Hub
    from vendhub.core.states import State

PLATFORM = "template"
_TIME_REFRESH = timedelta(minutes=1)

SCHEMA = options.PlatformSchema(
    PLATFORM,
    {
        vol.Required("value_template"): options.template,
        vol.Optional("for"): options.for_period,
    },
)


def newest_state_read(hub: Hub, info: RenderInfo | None) -> State | None:
    """The most recently updated state among the entities a render read.

    The tracker renders inside the ``state_changed`` delivery of the change that made the
    template true, so this is that change's new state, and its context is the cause.
    """
    if info is None:
        return None
    states = [state for state in map(hub.states.get, info.entities) if state is not None]
    return max(states, key=lambda state: state.last_updated, default=None)


def uses_the_clock(template: Template) -> bool:
    """Whether the template reads the time, so it must be rendered again as time passes."""
    return "now(" in template.source


async def async_attach(hub: Hub, config: dict[str, Any], trigger: AttachedTrigger) -> Unsubscribe:
    """Track the template; fire on each false → true change."""
    template: Template = config["value_template"]
    timers = ForTimers(trigger, config.get("for"))
    is_true = False

    def on_result(new_result: Any, _old_result: Any) -> None:
        nonlocal is_true
        now_true = result_as_boolean(new_result)
        if now_true == is_true:
            return
        is_true = now_true
        if not now_true:
            timers.cancel(PLATFORM)
            return
        cause = newest_state_read(hub, tracker.info)
        data = {
            "entity_id": cause.entity_id if cause is not None else None,
            "from_state": None,
            "to_state": cause,
            "value": new_result,
            "description": "template",
        }
        timers.start(PLATFORM, data, cause.context if cause is not None else None)

    def on_error(error: TemplateError) -> None:
        trigger.error("its value_template could not be rendered: %s", error)

    tracker = async_track_template_result(
        hub, template, on_result, trigger.template_variables(), on_error=on_error
    )
    is_true = result_as_boolean(tracker.result)
    unsubscribes: list[Unsubscribe] = [tracker, timers.cancel_all]
    if uses_the_clock(template):
        unsubscribes.append(
            async_track_time_interval(
                hub,
                lambda _now: tracker.async_refresh(),
                _TIME_REFRESH,
                name=f"{trigger.label} clock refresh",
            )
        )
    return combine_unsubscribes(*unsubscribes)
