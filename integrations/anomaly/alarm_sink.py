"""The detectors' alarms, raised and cleared through the ``alarm`` integration's services."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from vendhub.anomaly.base import AlarmKey, AlarmRequest
from vendhub.const import EVENT_ALARM_CLEARED, EVENT_ALARM_RAISED
from vendhub.core.errors import InvalidServiceData

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

ALARM_DOMAIN = "alarm"


class ServiceAlarmSink:
    """Calls ``alarm.raise`` and ``alarm.clear``; knows which alarms are active."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.active: set[AlarmKey] = set()
        self._unsubscribe: list[Unsubscribe] = []

    async def async_start(self) -> None:
        """Learn the active alarms (some may be from before a restart) and follow changes."""
        listed = await self.hub.services.async_call(ALARM_DOMAIN, "list", {})
        self.active = {(alarm["machine_id"], alarm["code"]) for alarm in listed["active"]}
        self._unsubscribe = [
            self.hub.bus.async_listen(EVENT_ALARM_RAISED, self._on_raised),
            self.hub.bus.async_listen(EVENT_ALARM_CLEARED, self._on_cleared),
        ]

    def stop(self) -> None:
        """Stop following alarm changes."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    def _on_raised(self, event: Event) -> None:
        self.active.add(_key(event.data))

    def _on_cleared(self, event: Event) -> None:
        self.active.discard(_key(event.data))

    # ---- AlarmSink -----------------------------------------------------------------------

    def is_active(self, machine_id: str | None, code: str) -> bool:
        """True while the alarm is raised or acknowledged."""
        return (machine_id, code) in self.active

    def active_keys(self) -> set[AlarmKey]:
        """Every active alarm's key."""
        return set(self.active)

    async def async_raise(self, request: AlarmRequest, context: Context | None = None) -> None:
        """``alarm.raise`` (counts another occurrence when the alarm is active)."""
        if not self.hub.services.has_service(ALARM_DOMAIN, "raise"):
            _LOGGER.warning("No alarm service; anomaly not raised: %s", request.message)
            return
        await self.hub.services.async_call(
            ALARM_DOMAIN,
            "raise",
            {
                "code": request.code,
                "machine_id": request.machine_id,
                "severity": request.severity,
                "message": request.message,
                "data": dict(request.data),
            },
            context=context,
        )
        self.active.add(request.key)

    async def async_clear(
        self, machine_id: str | None, code: str, context: Context | None = None
    ) -> None:
        """``alarm.clear`` when the alarm is active (a person may have cleared it already)."""
        if (machine_id, code) not in self.active:
            return
        with contextlib.suppress(InvalidServiceData):  # a person cleared it meanwhile
            await self.hub.services.async_call(
                ALARM_DOMAIN, "clear", {"machine_id": machine_id, "code": code}, context=context
            )
        self.active.discard((machine_id, code))


def _key(data: Any) -> AlarmKey:
    return (data.get("machine_id"), str(data.get("code")))
