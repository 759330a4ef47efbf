"""Escalation: when nobody acknowledges within a time, send the message to someone else."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from vendhub.core.events import Event, Unsubscribe
from vendhub.notify.models import Notification
from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)
_IDS = itertools.count(1)


def event_matches(event: Event, wanted: Mapping[str, Any]) -> bool:
    """Whether every key of ``wanted`` is in the event's data with an equal value.

    Values also match when their text is equal, so ``alarm_id: 7`` in YAML matches an
    event carrying ``"7"``.
    """
    for key, value in wanted.items():
        if key not in event.data:
            return False
        actual = event.data[key]
        if actual != value and str(actual) != str(value):
            return False
    return True


@dataclass(slots=True)
class Escalation:
    """A pending escalation of one notification."""

    id: str
    key: str
    notification: Notification
    targets: list[str]
    after: timedelta
    unless: Mapping[str, Any] | None
    due: datetime
    handle: asyncio.TimerHandle | None = field(default=None, repr=False)
    unsubscribe: Unsubscribe | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "notification_id": self.notification.id,
            "targets": list(self.targets),
            "after": self.after.total_seconds(),
            "due": self.due.isoformat(),
            "unless": dict(self.unless) if self.unless else None,
        }


EscalationAction = Callable[[Escalation], Awaitable[Any]]


class EscalationScheduler:
    """Keeps pending escalations; each fires ``action`` after its delay unless cancelled
    by its ``unless`` event, by ``cancel`` or by ``cancel_all``."""

    def __init__(self, hub: Hub, action: EscalationAction) -> None:
        self._hub = hub
        self._action = action
        self._pending: dict[str, Escalation] = {}

    @property
    def pending(self) -> list[Escalation]:
        return list(self._pending.values())

    def find(self, key: str) -> Escalation | None:
        """The pending escalation with ``key``, if any."""
        return next((item for item in self._pending.values() if item.key == key), None)

    def schedule(
        self,
        notification: Notification,
        *,
        key: str,
        after: timedelta,
        targets: list[str],
        unless: Mapping[str, Any] | None,
    ) -> tuple[Escalation, bool]:
        """Schedule an escalation; (the pending one, False) when one with ``key`` exists."""
        existing = self.find(key)
        if existing is not None:
            return existing, False
        escalation = Escalation(
            id=f"esc{next(_IDS)}_{notification.id}",
            key=key,
            notification=notification,
            targets=targets,
            after=after,
            unless=dict(unless) if unless else None,
            due=utcnow() + after,
        )
        if unless:
            wanted = {name: value for name, value in unless.items() if name != "event"}
            escalation.unsubscribe = self._hub.bus.async_listen(
                str(unless["event"]),
                lambda event: self.cancel(escalation.id, f"event {event.event_type}"),
                lambda event: event_matches(event, wanted),
            )
        escalation.handle = self._hub.loop.call_later(
            after.total_seconds(), self._fire, escalation.id
        )
        self._pending[escalation.id] = escalation
        _LOGGER.info(
            "Notification %s escalates to %s in %s unless %s",
            notification.id,
            ", ".join(targets),
            after,
            _describe_unless(unless),
        )
        return escalation, True

    def cancel(self, escalation_id: str, reason: str) -> bool:
        """Cancel a pending escalation; False if there is none with that id."""
        escalation = self._pending.pop(escalation_id, None)
        if escalation is None:
            return False
        self._release(escalation)
        _LOGGER.info("Escalation %s cancelled by %s", escalation_id, reason)
        return True

    def cancel_all(self) -> int:
        """Cancel every pending escalation (on unload); return how many there were."""
        pending = list(self._pending.values())
        self._pending.clear()
        for escalation in pending:
            self._release(escalation)
        return len(pending)

    @staticmethod
    def _release(escalation: Escalation) -> None:
        if escalation.handle is not None:
            escalation.handle.cancel()
        if escalation.unsubscribe is not None:
            escalation.unsubscribe()

    def _fire(self, escalation_id: str) -> None:
        escalation = self._pending.pop(escalation_id, None)
        if escalation is None:
            return
        self._release(escalation)
        _LOGGER.warning(
            "Notification %s was not acknowledged within %s; escalating to %s",
            escalation.notification.id,
            escalation.after,
            ", ".join(escalation.targets),
        )
        self._hub.async_create_task(
            self._action(escalation), name=f"notify escalation {escalation.id}"
        )


def _describe_unless(unless: Mapping[str, Any] | None) -> str:
    if not unless:
        return "cancelled with notify.cancel_escalation"
    match = ", ".join(f"{key}={value!r}" for key, value in unless.items() if key != "event")
    return f"event {unless['event']}" + (f" with {match}" if match else "") + " comes"
