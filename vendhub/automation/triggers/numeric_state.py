"""``numeric_state``: a number (state, attribute or template) crosses into a range.

It fires when the value enters the range (``above`` < value < ``below``), not again while it
stays inside; after it leaves (or becomes non-numeric) the next entry fires again. An entity
already inside the range when the trigger is attached fires only after leaving and coming back.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.automation.template import Template, TemplateError
from vendhub.config import validators as cv
from vendhub.core.timers import async_track_state_change

from . import options
from .base import AttachedTrigger, ForTimers, combine_unsubscribes

if TYPE_CHECKING:
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub
    from vendhub.core.states import State

PLATFORM = "numeric_state"
_LOGGER = logging.getLogger("vendhub.automation.triggers")


def threshold(value: Any) -> float | str:
    """A number, or the id of an entity whose state is the number (read when checked)."""
    if isinstance(value, bool):
        raise vol.Invalid(f"expected a number or an entity id, got {cv.describe_value(value)}")
    if isinstance(value, int | float):
        return cv.number()(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return cv.entity_id(value)
        except vol.Invalid:
            raise vol.Invalid(
                "expected a number or an entity id whose state is a number, such as "
                f"'sensor.lobby_1_setpoint', got {cv.describe_value(value)}"
            ) from None
    raise vol.Invalid(f"expected a number or an entity id, got {cv.describe_value(value)}")


def _range_is_possible(config: dict[str, Any]) -> dict[str, Any]:
    above, below = config.get("above"), config.get("below")
    if above is None and below is None:
        raise vol.Invalid("a numeric_state trigger needs 'above', 'below' or both; got neither")
    if isinstance(above, float) and isinstance(below, float) and above >= below:
        raise vol.Invalid(
            "'above' must be less than 'below', or no value can be in between; "
            f"got above {above:g} and below {below:g}",
            path=["above"],
            error_type="empty range",
        )
    if config.get("attribute") is not None and config.get("value_template") is not None:
        raise vol.Invalid(
            "give either 'attribute' or 'value_template' (which can read attributes through "
            "state.attributes), not both; got both",
            path=["value_template"],
            error_type="conflicting options",
        )
    return config


SCHEMA = options.PlatformSchema(
    PLATFORM,
    {
        vol.Required("entity_id"): options.entity_ids,
        vol.Optional("above"): threshold,
        vol.Optional("below"): threshold,
        vol.Optional("attribute"): cv.string,
        vol.Optional("value_template"): options.template,
        vol.Optional("for"): options.for_period,
    },
    _range_is_possible,
)


def _as_number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class RangeCheck:
    """Whether an entity's value is inside the configured range right now."""

    def __init__(self, hub: Hub, config: dict[str, Any], trigger: AttachedTrigger) -> None:
        self.hub = hub
        self.trigger = trigger
        self.above: float | str | None = config.get("above")
        self.below: float | str | None = config.get("below")
        self.attribute: str | None = config.get("attribute")
        self.value_template: Template | None = config.get("value_template")

    def value_of(self, state: State) -> float | None:
        """The number to compare, or None when there is none (missing, text, failed template)."""
        if self.value_template is not None:
            try:
                rendered = self.value_template.async_render(
                    self.trigger.template_variables(state=state)
                )
            except TemplateError as error:
                self.trigger.error("its value_template failed for %s: %s", state.entity_id, error)
                return None
            return _as_number(rendered)
        if self.attribute is not None:
            return _as_number(state.attributes.get(self.attribute))
        return _as_number(state.state)

    def _limit(self, limit: float | str | None) -> float | None:
        if limit is None or isinstance(limit, float):
            return limit
        state = self.hub.states.get(limit)
        number = _as_number(state.state) if state is not None else None
        if number is None:
            _LOGGER.debug("%s: limit %s is not a number (%s)", self.trigger.label, limit, state)
        return number

    def holds(self, state: State | None) -> bool:
        """Whether ``state`` puts the value inside the range."""
        if state is None:
            return False
        value = self.value_of(state)
        if value is None:
            return False
        if self.above is not None:
            above = self._limit(self.above)
            if above is None or not value > above:
                return False
        if self.below is not None:
            below = self._limit(self.below)
            if below is None or not value < below:
                return False
        return True


async def async_attach(hub: Hub, config: dict[str, Any], trigger: AttachedTrigger) -> Unsubscribe:
    """Watch the entities; fire when one's value enters the range (after ``for``, if given)."""
    in_range = RangeCheck(hub, config, trigger)
    timers = ForTimers(trigger, config.get("for"))
    # Entities outside the range at the last check: entering the range fires for them.
    armed = {
        entity_id
        for entity_id in config["entity_id"]
        if not in_range.holds(hub.states.get(entity_id))
    }

    def on_change(event: Event) -> None:
        entity_id: str = event.data["entity_id"]
        new_state: State | None = event.data["new_state"]
        if not in_range.holds(new_state):
            armed.add(entity_id)
            timers.cancel(entity_id)
            return
        if entity_id not in armed:
            return
        armed.discard(entity_id)
        data = {
            "entity_id": entity_id,
            "from_state": event.data["old_state"],
            "to_state": new_state,
            "above": config.get("above"),
            "below": config.get("below"),
            "attribute": config.get("attribute"),
            "description": f"numeric state of {entity_id}",
        }
        timers.start(entity_id, data, event.context)

    return combine_unsubscribes(
        async_track_state_change(hub, config["entity_id"], on_change), timers.cancel_all
    )
