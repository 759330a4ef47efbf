"""What every detector shares: the alarm sink it reports to, its clock, its subscriptions.

A detector listens to the hub's events, decides, and raises or clears alarms through an
``AlarmSink``. The sink is given by whoever sets the detectors up (the ``anomaly``
integration raises them with the ``alarm`` integration's services), so nothing here knows
where alarms end up.

Alarms are keyed by (machine id, code): raising the same key again while it is active
updates that alarm. A condition that lasts (a high failure rate) is an *episode*: it is
raised once when it starts (``raise_once``) and cleared when it ends (``end_episode``). A
one-off incident (a door opened without a login) is raised each time (``raise_again``), so
the active alarm counts its occurrences, and stays until a person clears it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from vendhub.util.dt import as_utc, utcnow

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime (``vendhub.util.dt.utcnow``; tests pass
their own)."""

AlarmKey = tuple[str | None, str]
"""(machine id or None for the hub, alarm code)."""

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class AlarmRequest:
    """An alarm a detector wants raised."""

    code: str
    machine_id: str | None
    severity: str  # info | warning | critical
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> AlarmKey:
        """Machine and code: what identifies the alarm while it is active."""
        return (self.machine_id, self.code)


class AlarmSink(Protocol):
    """Where detectors send their alarms."""

    def is_active(self, machine_id: str | None, code: str) -> bool:
        """True while the alarm (machine_id, code) is raised or acknowledged."""

    def active_keys(self) -> set[AlarmKey]:
        """Every active alarm's key (to pick up alarms raised before a restart)."""

    async def async_raise(self, request: AlarmRequest, context: Context | None = None) -> None:
        """Raise the alarm, or count another occurrence of the active one."""

    async def async_clear(
        self, machine_id: str | None, code: str, context: Context | None = None
    ) -> None:
        """Clear the alarm if it is active; nothing when it is not."""


class Detector:
    """The base of every detector: subscriptions, timers, episodes, alarm calls.

    Subclasses set ``name`` (their key in the ``anomaly:`` block) and ``codes`` (the alarm
    codes they own; a code may be a prefix ending the actual code with ``_<something>``),
    and implement ``_subscribe``.
    """

    name: ClassVar[str] = ""
    codes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, hub: Hub, sink: AlarmSink, *, clock: Clock = utcnow) -> None:
        self.hub = hub
        self.sink = sink
        self.clock = clock
        self.firing: set[AlarmKey] = set()
        self._unsubscribe: list[Unsubscribe] = []
        self.started = False

    # ---- life ----------------------------------------------------------------------------

    async def async_load(self) -> None:
        """Read what the detector saved before a restart (nothing, unless it keeps history)."""

    def async_start(self) -> None:
        """Pick up this detector's alarms that are still active, and start listening."""
        self.firing.update(key for key in self.sink.active_keys() if self.owns(key[1]))
        self._subscribe()
        self.started = True

    async def async_stop(self) -> None:
        """Stop listening and cancel timers."""
        for unsubscribe in reversed(self._unsubscribe):
            unsubscribe()
        self._unsubscribe.clear()
        self.started = False

    def _subscribe(self) -> None:
        """Listen to the events this detector judges (``self.listen``, ``self.track``)."""
        raise NotImplementedError

    def listen(self, event_type: str, callback: Callable[[Event], Any]) -> None:
        """Call ``callback`` for each ``event_type`` event until the detector stops."""
        self._unsubscribe.append(self.hub.bus.async_listen(event_type, callback))

    def track(self, unsubscribe: Unsubscribe) -> None:
        """Call ``unsubscribe`` (a timer's cancel, a tracker's unsubscribe) at stop."""
        self._unsubscribe.append(unsubscribe)

    def owns(self, code: str) -> bool:
        """True for the alarm codes this detector raises."""
        return any(code == own or code.startswith(f"{own}_") for own in self.codes)

    def now(self) -> datetime:
        """The detector's clock, as aware UTC."""
        return as_utc(self.clock())

    # ---- alarms --------------------------------------------------------------------------

    def raise_once(self, request: AlarmRequest, context: Context | None = None) -> bool:
        """Start an episode: raise the alarm unless this episode raised it already."""
        if request.key in self.firing:
            return False
        self.firing.add(request.key)
        self._send(request, context)
        return True

    def raise_again(self, request: AlarmRequest, context: Context | None = None) -> None:
        """Raise an incident; while its alarm is active this counts one more occurrence."""
        self.firing.add(request.key)
        self._send(request, context)

    def end_episode(
        self, machine_id: str | None, code: str, context: Context | None = None
    ) -> bool:
        """The condition passed: clear the episode's alarm (if a person has not already)."""
        key = (machine_id, code)
        if key not in self.firing:
            return False
        self.firing.discard(key)
        if self.sink.is_active(machine_id, code):
            self.hub.async_create_task(
                self.sink.async_clear(machine_id, code, context),
                name=f"anomaly {self.name}: clear {code} on {machine_id or 'the hub'}",
            )
        return True

    def _send(self, request: AlarmRequest, context: Context | None) -> None:
        _LOGGER.debug("Anomaly %s on %s: %s", request.code, request.machine_id, request.message)
        self.hub.async_create_task(
            self.sink.async_raise(request, context),
            name=f"anomaly {self.name}: raise {request.code} on {request.machine_id or 'the hub'}",
        )


def event_time(event: Event) -> datetime:
    """When the event happened: its ``ts`` (the machine's time) if valid, else when fired."""
    stamp = event.data.get("ts")
    if isinstance(stamp, str):
        try:
            return as_utc(datetime.fromisoformat(stamp))
        except ValueError:
            pass
    elif isinstance(stamp, datetime):
        return as_utc(stamp)
    return as_utc(event.time_fired)


def machine_id_of(event: Event) -> str | None:
    """The event's ``machine_id`` when it is non-empty text."""
    machine_id = event.data.get("machine_id")
    return machine_id if isinstance(machine_id, str) and machine_id else None
