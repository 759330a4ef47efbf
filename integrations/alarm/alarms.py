"""Alarms: raised, acknowledged, cleared; one per machine and code while it is active."""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from vendhub.const import EVENT_ALARM_CLEARED, EVENT_ALARM_RAISED
from vendhub.core.context import Context
from vendhub.helpers.storage import Store
from vendhub.util.dt import utcnow
from vendhub.util.slug import slugify
from vendhub.util.text import shorten

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)
MAX_MESSAGE_CHARS = 2_000
"""An alarm's message is cut to this (it goes into the state, the log and every trace)."""

EVENT_ALARM_ACKNOWLEDGED = "alarm_acknowledged"
EVENT_ALARM_UPDATED = "alarm_updated"
SEVERITIES = ("info", "warning", "critical")
STORAGE_KEY = "alarm.alarms"
STORAGE_VERSION = 1
HISTORY_SIZE = 500


class AlarmError(LookupError):
    """An alarm that was asked for does not exist or is not active."""


@dataclass(frozen=True)
class Alarm:
    """One alarm: its identity, what it says, and where it is in its life."""

    id: str
    code: str
    machine_id: str | None
    severity: str
    message: str
    status: str  # raised | acknowledged | cleared
    raised_at: str
    count: int = 1
    last_raised_at: str | None = None
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    cleared_at: str | None = None
    cleared_by: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    entity_id: str = ""
    """Where the state of the active alarm lives: ``alarm.<machine>_<code>``, with ``_2``, ...
    when another active alarm has that one already (machine ``lobby_1`` with code ``b2_x``
    and machine ``lobby_1_b2`` with code ``x``); given when it is raised."""

    @property
    def key(self) -> tuple[str | None, str]:
        """Machine and code: while active, raising the same key again updates this alarm."""
        return (self.machine_id, self.code)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return asdict(self)


class AlarmManager:
    """Keeps active alarms (and the last cleared ones), persisted in ``.storage``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.active: dict[tuple[str | None, str], Alarm] = {}
        self.history: deque[Alarm] = deque(maxlen=HISTORY_SIZE)
        self._store: Store[dict[str, Any]] = Store(hub, STORAGE_KEY, STORAGE_VERSION)
        # (machine, code) -> times it was reported, for "raise only after N in T" thresholds
        self._reports: dict[tuple[str | None, str], deque[float]] = {}

    async def async_load(self) -> None:
        """Load the alarms that were active (and the recent history) before a restart."""
        data = await self._store.async_load() or {}
        for raw in data.get("active", []):
            alarm = Alarm(**raw)
            taken = {active.entity_id for active in self.active.values()}
            if not alarm.entity_id or alarm.entity_id in taken:  # stored before it was kept
                alarm = replace(alarm, entity_id=self._free_entity_id(alarm.machine_id, alarm.code))
            self.active[alarm.key] = alarm
            self._write_state(alarm)
        self.history.extend(Alarm(**raw) for raw in data.get("history", []))

    def _save(self) -> None:
        self._store.async_delay_save(
            lambda: {
                "active": [alarm.as_dict() for alarm in self.active.values()],
                "history": [alarm.as_dict() for alarm in self.history],
            },
            1.0,
        )

    def async_raise(
        self,
        code: str,
        message: str,
        *,
        machine_id: str | None = None,
        severity: str = "warning",
        data: Mapping[str, Any] | None = None,
        threshold: tuple[int, timedelta] | None = None,
        context: Context | None = None,
    ) -> Alarm | None:
        """Raise an alarm, or count another occurrence of the active one with the same key.

        With ``threshold`` (count, within) the alarm is raised only once ``count`` reports
        arrived within ``within``; earlier reports return None.
        """
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        key = (machine_id, code)
        now = utcnow()
        message = shorten(message, MAX_MESSAGE_CHARS)
        if threshold is not None and key not in self.active:
            count, within = threshold
            reports = self._reports.setdefault(key, deque())
            reports.append(time.monotonic())
            while reports and reports[0] < time.monotonic() - within.total_seconds():
                reports.popleft()
            if len(reports) < count:
                return None
            reports.clear()
        existing = self.active.get(key)
        if existing is not None:
            worse = SEVERITIES.index(severity) > SEVERITIES.index(existing.severity)
            alarm = replace(
                existing,
                count=existing.count + 1,
                last_raised_at=now.isoformat(),
                message=message,
                severity=_worst(existing.severity, severity),
                data={**existing.data, **(data or {})},
            )
            if worse and existing.status == "acknowledged":
                # Seen at a lower severity: it needs someone's attention again.
                alarm = replace(alarm, status="raised", acknowledged_at=None, acknowledged_by=None)
            self.active[key] = alarm
            self._write_state(alarm, context)
            self.hub.bus.async_fire(EVENT_ALARM_UPDATED, alarm.as_dict(), context=context)
            self._save()
            return alarm
        alarm = Alarm(
            id=uuid.uuid4().hex,
            code=code,
            machine_id=machine_id,
            severity=severity,
            message=message,
            status="raised",
            raised_at=now.isoformat(),
            last_raised_at=now.isoformat(),
            data=dict(data or {}),
            entity_id=self._free_entity_id(machine_id, code),
        )
        self.active[key] = alarm
        self._write_state(alarm, context)
        self.hub.bus.async_fire(EVENT_ALARM_RAISED, alarm.as_dict(), context=context)
        log = _LOGGER.error if severity == "critical" else _LOGGER.warning
        log("Alarm raised (%s) on %s: %s [%s]", severity, machine_id or "the hub", message, code)
        self._save()
        return alarm

    def _free_entity_id(self, machine_id: str | None, code: str) -> str:
        owner = machine_id or "hub"
        base = f"alarm.{slugify(f'{owner}_{code}')}"
        taken = {alarm.entity_id for alarm in self.active.values()}
        entity_id, number = base, 1
        while entity_id in taken:
            number += 1
            entity_id = f"{base}_{number}"
        return entity_id

    def find(
        self, alarm_id: str | None = None, *, machine_id: str | None = None, code: str | None = None
    ) -> Alarm:
        """The active alarm with ``alarm_id``, or with ``machine_id`` and ``code``."""
        for alarm in self.active.values():
            if alarm_id is not None and alarm.id == alarm_id:
                return alarm
            if alarm_id is None and alarm.code == code and alarm.machine_id == machine_id:
                return alarm
        wanted = alarm_id or f"{code} on {machine_id or 'the hub'}"
        raise AlarmError(f"no active alarm {wanted}; active: {len(self.active)}")

    def async_acknowledge(self, alarm: Alarm, context: Context | None = None) -> Alarm:
        """Mark an active alarm as seen by someone (the context's user); an alarm acknowledged
        already keeps who acknowledged it first, and when."""
        if alarm.status == "acknowledged":
            return alarm
        acknowledged = replace(
            alarm,
            status="acknowledged",
            acknowledged_at=utcnow().isoformat(),
            acknowledged_by=context.user_id if context else None,
        )
        self.active[alarm.key] = acknowledged
        self._write_state(acknowledged, context)
        self.hub.bus.async_fire(EVENT_ALARM_ACKNOWLEDGED, acknowledged.as_dict(), context=context)
        self._save()
        return acknowledged

    def async_clear(self, alarm: Alarm, context: Context | None = None) -> Alarm:
        """End an alarm: it leaves the active set and joins the history."""
        cleared = replace(
            alarm,
            status="cleared",
            cleared_at=utcnow().isoformat(),
            cleared_by=context.user_id if context else None,
        )
        self.active.pop(alarm.key, None)
        self.history.append(cleared)
        self.hub.states.async_remove(alarm.entity_id, context=context)
        self.hub.bus.async_fire(EVENT_ALARM_CLEARED, cleared.as_dict(), context=context)
        _LOGGER.info("Alarm cleared on %s: %s", alarm.machine_id or "the hub", alarm.code)
        self._save()
        return cleared

    def _write_state(self, alarm: Alarm, context: Context | None = None) -> None:
        self.hub.states.async_set(
            alarm.entity_id,
            alarm.status,
            {
                "alarm_id": alarm.id,
                "code": alarm.code,
                "machine_id": alarm.machine_id,
                "severity": alarm.severity,
                "message": alarm.message,
                "count": alarm.count,
                "raised_at": alarm.raised_at,
                "acknowledged_by": alarm.acknowledged_by,
                "friendly_name": f"{alarm.machine_id or 'Hub'}: {alarm.message}",
            },
            context=context,
        )


def _worst(first: str, second: str) -> str:
    return max(first, second, key=SEVERITIES.index)
