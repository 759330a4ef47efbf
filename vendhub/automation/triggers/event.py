"""``event``: an event of a given type, optionally with matching data and user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.automation.template import render_complex
from vendhub.config import validators as cv

from . import options
from .base import AttachedTrigger, combine_unsubscribes

if TYPE_CHECKING:
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

PLATFORM = "event"


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise vol.Invalid(f"expected a mapping (key: value lines), got {cv.describe_value(value)}")
    return dict(value)


SCHEMA = options.PlatformSchema(
    PLATFORM,
    {
        vol.Required("event_type"): options.text_list,
        vol.Optional("event_data"): _mapping,
        vol.Optional("context"): vol.Schema({vol.Optional("user_id"): options.text_list}),
    },
)


def data_matches(data: Any, wanted: Any) -> bool:
    """Whether ``data`` contains ``wanted``: every key of a mapping, recursively; scalars equal
    (or equal written out as text, so YAML's 1 matches "1")."""
    if isinstance(wanted, Mapping):
        return isinstance(data, Mapping) and all(
            key in data and data_matches(data[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(data, list | tuple)
            and len(data) == len(wanted)
            and all(data_matches(item, value) for item, value in zip(data, wanted, strict=True))
        )
    if data == wanted:
        return True
    scalar = (str, int, float)
    return (
        isinstance(data, scalar)
        and isinstance(wanted, scalar)
        and not isinstance(data, bool)
        and not isinstance(wanted, bool)
        and str(data) == str(wanted)
    )


async def async_attach(hub: Hub, config: dict[str, Any], trigger: AttachedTrigger) -> Unsubscribe:
    """Listen for the event types; fire when the data and the user match."""
    wanted_data: dict[str, Any] | None = config.get("event_data")
    if wanted_data:
        wanted_data = _render_values(trigger, wanted_data)
    user_ids: list[str] | None = (config.get("context") or {}).get("user_id")

    def on_event(event: Event) -> None:
        if wanted_data and not data_matches(event.data, wanted_data):
            return
        if user_ids is not None and event.context.user_id not in user_ids:
            return
        trigger.fire({"event": event, "description": f"event '{event.event_type}'"}, event.context)

    return combine_unsubscribes(
        *(hub.bus.async_listen(event_type, on_event) for event_type in config["event_type"])
    )


def _render_values(trigger: AttachedTrigger, value: Any) -> Any:
    """Render the templates in ``event_data`` once, with the automation's variables."""
    return render_complex(value, trigger.template_variables(), trigger.hub)
