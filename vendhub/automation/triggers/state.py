"""``state``: an entity's state (or one attribute) changes, optionally from/to given values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.core.timers import async_track_state_change

from . import options
from .base import AttachedTrigger, ForTimers, combine_unsubscribes

if TYPE_CHECKING:
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub
    from vendhub.core.states import State

PLATFORM = "state"
_MISSING = object()
_MATCH_OPTIONS = ("from", "to", "not_from", "not_to")


def _scalar_list(value: Any) -> list[Any] | None:
    """One value or a list; ``null`` means "any" (the same as leaving the option out)."""
    if value is None:
        return None
    items = cv.ensure_list(value)
    for item in items:
        if isinstance(item, dict | list):
            raise vol.Invalid(
                f"expected a state value or a list of them, got {cv.describe_value(item)}"
            )
    return items


def _states_are_text(config: dict[str, Any]) -> dict[str, Any]:
    """Without ``attribute`` the values are state strings: YAML's 5 is the state "5".

    With ``attribute`` they are compared as they are (an attribute may be a number or a boolean).
    """
    if config.get("attribute") is not None:
        return config
    errors = []
    for option in _MATCH_OPTIONS:
        values = config.get(option)
        if values is None:
            continue
        try:
            config[option] = [cv.string(value) for value in values]
        except vol.Invalid as error:
            errors.append(vol.Invalid(error.error_message, path=[option]))
    if errors:
        raise vol.MultipleInvalid(errors)
    return config


SCHEMA = options.PlatformSchema(
    PLATFORM,
    {
        vol.Required("entity_id"): options.entity_ids,
        vol.Optional("from"): _scalar_list,
        vol.Optional("to"): _scalar_list,
        vol.Optional("not_from"): _scalar_list,
        vol.Optional("not_to"): _scalar_list,
        vol.Optional("attribute"): vol.Any(None, cv.string),
        vol.Optional("for"): options.for_period,
    },
    _states_are_text,
)


def value_matches(value: Any, wanted: list[Any]) -> bool:
    """Whether ``value`` is one of ``wanted`` (as is, or written out as text)."""
    return any(value == item or str(value) == str(item) for item in wanted)


class StateMatcher:
    """The from/to/not_from/not_to tests of a state (or numeric) trigger on one value."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.attribute: str | None = config.get("attribute")
        self.from_values: list[Any] | None = config.get("from")
        self.to_values: list[Any] | None = config.get("to")
        self.not_from_values: list[Any] = config.get("not_from") or []
        self.not_to_values: list[Any] = config.get("not_to") or []

    def value_of(self, state: State | None) -> Any:
        """The watched value: the state string or the attribute; ``_MISSING`` when absent."""
        if state is None:
            return _MISSING
        if self.attribute is None:
            return state.state
        return state.attributes.get(self.attribute, _MISSING)

    def from_ok(self, old_value: Any) -> bool:
        if old_value is not _MISSING and value_matches(old_value, self.not_from_values):
            return False
        if self.from_values is None:
            return True
        return old_value is not _MISSING and value_matches(old_value, self.from_values)

    def to_ok(self, new_value: Any) -> bool:
        if new_value is _MISSING or value_matches(new_value, self.not_to_values):
            return False
        return self.to_values is None or value_matches(new_value, self.to_values)


async def async_attach(hub: Hub, config: dict[str, Any], trigger: AttachedTrigger) -> Unsubscribe:
    """Watch the entities; fire on a matching change (after ``for`` when it is given)."""
    matcher = StateMatcher(config)
    timers = ForTimers(trigger, config.get("for"))
    # The value each running ``for:`` wait started from: without ``to`` it must stay the same.
    started_values: dict[str, Any] = {}

    def still_holds(entity_id: str, new_value: Any) -> bool:
        if not matcher.to_ok(new_value):
            return False
        return matcher.to_values is not None or new_value == started_values.get(entity_id)

    def on_change(event: Event) -> None:
        entity_id: str = event.data["entity_id"]
        old_state: State | None = event.data["old_state"]
        new_state: State | None = event.data["new_state"]
        old_value, new_value = matcher.value_of(old_state), matcher.value_of(new_state)
        if timers.is_pending(entity_id):
            if still_holds(entity_id, new_value):
                return
            timers.cancel(entity_id)
        if new_state is None or old_value == new_value:
            return
        if not (matcher.from_ok(old_value) and matcher.to_ok(new_value)):
            return
        started_values[entity_id] = new_value
        data: dict[str, Any] = {
            "entity_id": entity_id,
            "from_state": old_state,
            "to_state": new_state,
            "attribute": matcher.attribute,
            "description": f"state of {entity_id}",
        }
        timers.start(entity_id, data, event.context)

    return combine_unsubscribes(
        async_track_state_change(hub, config["entity_id"], on_change), timers.cancel_all
    )
