"""``vend``: a vend starts, completes or fails (the ``vend_*`` events), filtered by machine,
slot and product."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.const import EVENT_VEND_COMPLETED, EVENT_VEND_FAILED, EVENT_VEND_STARTED

from . import options
from .base import AttachedTrigger, combine_unsubscribes

if TYPE_CHECKING:
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

PLATFORM = "vend"
EVENT_BY_STEP = {
    "started": EVENT_VEND_STARTED,
    "completed": EVENT_VEND_COMPLETED,
    "failed": EVENT_VEND_FAILED,
}
_FILTERS = ("machine_id", "slot", "product")


def _steps(value: Any) -> list[str]:
    pick = cv.one_of(*EVENT_BY_STEP)
    return list(dict.fromkeys(pick(item) for item in cv.ensure_list(value)))


SCHEMA = options.PlatformSchema(
    PLATFORM,
    {
        vol.Optional("event", default=list(EVENT_BY_STEP)): _steps,
        **{vol.Optional(name): options.text_list for name in _FILTERS},
    },
)


async def async_attach(hub: Hub, config: dict[str, Any], trigger: AttachedTrigger) -> Unsubscribe:
    """Listen for the vend events of the chosen steps."""
    filters = {name: config[name] for name in _FILTERS if name in config}

    def listener(step: str) -> Any:
        def on_event(event: Event) -> None:
            data = event.data
            for name, wanted in filters.items():
                if name not in data or str(data[name]) not in wanted:
                    return
            machine_id, slot = data.get("machine_id"), data.get("slot")
            trigger.fire(
                {
                    "event": event,
                    "vend_event": step,
                    "machine_id": machine_id,
                    "slot": slot,
                    "product": data.get("product"),
                    "description": f"vend {step} on {machine_id} slot {slot}",
                },
                event.context,
            )

        return on_event

    return combine_unsubscribes(
        *(hub.bus.async_listen(EVENT_BY_STEP[step], listener(step)) for step in config["event"])
    )
