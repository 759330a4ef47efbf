"""A machine's door opened without a service login.

The rule: when a machine's door opens (``binary_sensor.<id>_door`` turns ``on``) while the
machine is not in ``service`` mode (the ``mode`` attribute of ``machine.<id>``) and no
technician is signed in at it (no ``service_login`` event for it that is still running),
the opening is unauthorised. A technician often opens the door to reach the service panel,
so the detector waits ``grace`` for a login or service mode; without one it raises
``anomaly_door_no_login`` (critical) when the grace ends, or at once when the door closes
before it ends. A login after that does not excuse the opening: the alarm stays until a
person clears it, and each further unauthorised opening counts on it.

``service_login`` events carry ``machine_id``, ``user`` and ``duration`` (seconds; missing:
``login_duration``; 0 signs the user out). The ``anomaly.service_login`` service fires
them, and so can the API once technicians sign in there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.const import EVENT_SERVICE_LOGIN, EVENT_STATE_CHANGED
from vendhub.util.dt import hub_time_zone, utcnow

from . import text
from .base import AlarmRequest, AlarmSink, Clock, Detector, machine_id_of
from .validation import period_at_least, severity

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.events import Event
    from vendhub.core.hub import Hub

CODE = "anomaly_door_no_login"
SERVICE_MODE = "service"
DOOR_PREFIX = "binary_sensor."
DOOR_SUFFIX = "_door"

SCHEMA: dict[Any, Any] = {
    vol.Optional("enabled", default=True): cv.boolean,
    vol.Optional("grace", default="2min"): period_at_least(timedelta(0)),
    vol.Optional("login_duration", default="30min"): period_at_least(timedelta(minutes=1)),
    vol.Optional("severity", default="critical"): severity,
}


@dataclass(frozen=True, slots=True)
class DoorSettings:
    """The ``door:`` settings."""

    enabled: bool = True
    grace: timedelta = timedelta(minutes=2)
    login_duration: timedelta = timedelta(minutes=30)
    severity: str = "critical"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DoorSettings:
        """From the validated block."""
        return cls(**config)


@dataclass(slots=True)
class _Opening:
    """A door opening waiting for a login within the grace."""

    opened_at: datetime
    context: Context
    timer: asyncio.TimerHandle | None = None


def door_machine(entity_id: str) -> str | None:
    """``lobby_1`` from ``binary_sensor.lobby_1_door``; None for other entities."""
    if entity_id.startswith(DOOR_PREFIX) and entity_id.endswith(DOOR_SUFFIX):
        machine_id = entity_id[len(DOOR_PREFIX) : -len(DOOR_SUFFIX)]
        return machine_id or None
    return None


class DoorDetector(Detector):
    """Raises ``anomaly_door_no_login`` when a door opens with nobody signed in."""

    name = "door"
    codes = (CODE,)

    def __init__(
        self, hub: Hub, sink: AlarmSink, settings: DoorSettings, *, clock: Clock = utcnow
    ) -> None:
        super().__init__(hub, sink, clock=clock)
        self.settings = settings
        self.tz = hub_time_zone(hub)
        self.logins: dict[str, dict[str, datetime]] = {}  # machine -> user -> signed in until
        self.doors: dict[str, str] = {}  # machine -> last known "on" / "off"
        self.pending: dict[str, _Opening] = {}

    def _subscribe(self) -> None:
        for state in self.hub.states.async_all("binary_sensor"):
            machine_id = door_machine(state.entity_id)
            if machine_id is not None and state.state in ("on", "off"):
                self.doors[machine_id] = state.state
        self.listen(EVENT_STATE_CHANGED, self._on_state_changed)
        self.listen(EVENT_SERVICE_LOGIN, self._on_login)
        self.track(self._cancel_pending)

    def _cancel_pending(self) -> None:
        for opening in self.pending.values():
            if opening.timer is not None:
                opening.timer.cancel()
        self.pending.clear()

    # ---- who may open the door -----------------------------------------------------------

    def mode(self, machine_id: str) -> str | None:
        """The machine's mode, from ``machine.<id>``; None when unknown."""
        state = self.hub.states.get(f"machine.{machine_id}")
        mode = state.attributes.get("mode") if state is not None else None
        return mode if isinstance(mode, str) else None

    def signed_in(self, machine_id: str) -> list[str]:
        """The users whose login at the machine is still running."""
        now = self.now()
        logins = self.logins.get(machine_id, {})
        for user in [user for user, until in logins.items() if until <= now]:
            del logins[user]
        return sorted(logins)

    def authorized(self, machine_id: str) -> bool:
        """True while the machine is in service mode or somebody is signed in at it."""
        return self.mode(machine_id) == SERVICE_MODE or bool(self.signed_in(machine_id))

    def _on_login(self, event: Event) -> None:
        machine_id = machine_id_of(event)
        if machine_id is None:
            return
        user = str(event.data.get("user") or "unknown")
        duration = event.data.get("duration")
        seconds = (
            float(duration)
            if isinstance(duration, int | float) and not isinstance(duration, bool)
            else self.settings.login_duration.total_seconds()
        )
        logins = self.logins.setdefault(machine_id, {})
        if seconds <= 0:
            logins.pop(user, None)
            return
        logins[user] = self.now() + timedelta(seconds=seconds)
        self._excused(machine_id)

    def _excused(self, machine_id: str) -> None:
        """A login or service mode arrived: a door opening within the grace is fine."""
        opening = self.pending.pop(machine_id, None)
        if opening is not None and opening.timer is not None:
            opening.timer.cancel()

    # ---- the door ------------------------------------------------------------------------

    def _on_state_changed(self, event: Event) -> None:
        entity_id: str = event.data["entity_id"]
        new_state = event.data.get("new_state")
        if entity_id.startswith("machine."):
            if new_state is not None and new_state.attributes.get("mode") == SERVICE_MODE:
                self._excused(entity_id.split(".", 1)[1])
            return
        machine_id = door_machine(entity_id)
        if machine_id is None:
            return
        if new_state is None:  # the door entity went away
            self.doors.pop(machine_id, None)
            self._excused(machine_id)
            return
        if new_state.state not in ("on", "off"):
            return  # unavailable or unknown: the last real state stands
        before = self.doors.get(machine_id)
        self.doors[machine_id] = new_state.state
        if new_state.state == "on":
            if before != "on" and event.data.get("old_state") is not None:
                self._opened(machine_id, event.context)
        elif machine_id in self.pending:
            self._closed_in_grace(machine_id)

    def _opened(self, machine_id: str, context: Context) -> None:
        if self.authorized(machine_id):
            return
        opening = _Opening(self.now(), context)
        grace = self.settings.grace.total_seconds()
        if grace <= 0:
            self._report(machine_id, opening, closed_at=None)
            return
        previous = self.pending.pop(machine_id, None)
        if previous is not None and previous.timer is not None:
            previous.timer.cancel()
        opening.timer = self.hub.loop.call_later(grace, self._grace_over, machine_id)
        self.pending[machine_id] = opening

    def _grace_over(self, machine_id: str) -> None:
        opening = self.pending.pop(machine_id, None)
        if opening is not None and not self.authorized(machine_id):
            self._report(machine_id, opening, closed_at=None)

    def _closed_in_grace(self, machine_id: str) -> None:
        opening = self.pending.pop(machine_id)
        if opening.timer is not None:
            opening.timer.cancel()
        if not self.authorized(machine_id):
            self._report(machine_id, opening, closed_at=self.now())

    def _report(self, machine_id: str, opening: _Opening, closed_at: datetime | None) -> None:
        mode = self.mode(machine_id) or "unknown"
        opened = text.clock(opening.opened_at, self.tz)
        if closed_at is None:
            message = (
                f"{machine_id}'s door was opened at {opened} without a service login: the "
                f"machine is in {mode} mode and nobody signed in"
            )
            grace = self.settings.grace.total_seconds()
            message += f" within {text.duration(grace)}." if grace > 0 else "."
        else:
            open_for = (closed_at - opening.opened_at).total_seconds()
            message = (
                f"{machine_id}'s door was opened at {opened} and closed after "
                f"{text.duration(open_for)} without a service login (the machine was in "
                f"{mode} mode and nobody signed in)."
            )
        self.raise_again(
            AlarmRequest(
                CODE,
                machine_id,
                self.settings.severity,
                message,
                {
                    "opened_at": opening.opened_at.isoformat(),
                    "closed_at": closed_at.isoformat() if closed_at else None,
                    "mode": mode,
                },
            ),
            opening.context,
        )
