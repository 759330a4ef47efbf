"""``machine``: a machine goes online or offline (the ``machine_online``/``_offline`` events)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.const import EVENT_MACHINE_OFFLINE, EVENT_MACHINE_ONLINE

from . import options
from .base import AttachedTrigger, combine_unsubscribes

if TYPE_CHECKING:
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

PLATFORM = "machine"
EVENT_BY_STATUS = {"online": EVENT_MACHINE_ONLINE, "offline": EVENT_MACHINE_OFFLINE}


def _statuses(value: Any) -> list[str]:
    pick = cv.one_of(*EVENT_BY_STATUS)
    return list(dict.fromkeys(pick(item) for item in cv.ensure_list(value)))


SCHEMA = options.PlatformSchema(
    PLATFORM,
    {
        vol.Optional("machine_id"): options.text_list,
        vol.Optional("to", default=list(EVENT_BY_STATUS)): _statuses,
    },
)


async def async_attach(hub: Hub, config: dict[str, Any], trigger: AttachedTrigger) -> Unsubscribe:
    """Listen for the machines' online/offline events."""
    machine_ids: list[str] | None = config.get("machine_id")

    def listener(status: str) -> Any:
        def on_event(event: Event) -> None:
            machine_id = event.data.get("machine_id")
            if machine_ids is not None and str(machine_id) not in machine_ids:
                return
            trigger.fire(
                {
                    "machine_id": machine_id,
                    "to": status,
                    "event": event,
                    "description": f"machine {machine_id} went {status}",
                },
                event.context,
            )

        return on_event

    return combine_unsubscribes(
        *(
            hub.bus.async_listen(EVENT_BY_STATUS[status], listener(status))
            for status in config["to"]
        )
    )
