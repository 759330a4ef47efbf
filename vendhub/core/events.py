"""The event bus: everything that happens in the hub is an Event fired here."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeAlias

from vendhub.const import MATCH_ALL
from vendhub.core.context import Context
from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

EventListener: TypeAlias = "Callable[[Event], Any]"
EventFilter: TypeAlias = "Callable[[Event], bool]"
Unsubscribe: TypeAlias = Callable[[], None]

_set = object.__setattr__


class EventOrigin(StrEnum):
    """Where an event came from."""

    local = "local"
    remote = "remote"


class Event:
    """An immutable record of something that happened, with the context that caused it."""

    __slots__ = ("context", "data", "event_type", "origin", "time_fired")

    event_type: str
    data: Mapping[str, Any]
    origin: EventOrigin
    time_fired: datetime
    context: Context

    def __init__(
        self,
        event_type: str,
        data: Mapping[str, Any] | None = None,
        origin: EventOrigin = EventOrigin.local,
        time_fired: datetime | None = None,
        context: Context | None = None,
    ) -> None:
        _set(self, "event_type", event_type)
        _set(self, "data", data if data is not None else {})
        _set(self, "origin", origin)
        _set(self, "time_fired", time_fired or utcnow())
        _set(self, "context", context or Context())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Event is immutable; cannot set {name!r}")

    def __repr__(self) -> str:
        return f"<Event {self.event_type}[{self.origin.value[0]}]: {dict(self.data)}>"

    def as_dict(self) -> dict[str, Any]:
        """Return the event as JSON-ready data (states in ``data`` are converted too)."""
        data = {
            key: value.as_dict() if hasattr(value, "as_dict") else value
            for key, value in self.data.items()
        }
        return {
            "event_type": self.event_type,
            "data": data,
            "origin": self.origin.value,
            "time_fired": self.time_fired.isoformat(),
            "context": self.context.as_dict(),
        }


class _Listener:
    __slots__ = ("event_filter", "func", "is_coroutine_function", "once", "removed")

    def __init__(self, func: EventListener, event_filter: EventFilter | None, once: bool) -> None:
        self.func = func
        self.event_filter = event_filter
        self.once = once
        self.removed = False
        self.is_coroutine_function = asyncio.iscoroutinefunction(func)


class EventBus:
    """Delivers events to listeners in the order they were fired and subscribed.

    Plain callbacks run at once, inside ``async_fire``; coroutine listeners run as tracked
    tasks. An event fired from inside a listener is queued and delivered after the current
    one, so every listener sees events in the order they were fired. A listener that raises
    is logged and neither the other listeners nor the code that fired the event notice.
    Typed listeners of an event run first, then match-all listeners.
    """

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        # Tuples, replaced on every (un)subscribe, so delivery iterates without copying.
        self._listeners: dict[str, tuple[_Listener, ...]] = {}
        self._pending: deque[Event] = deque()
        self._dispatching = False
        self.events_fired = 0

    def async_listen(
        self,
        event_type: str,
        listener: EventListener,
        event_filter: EventFilter | None = None,
    ) -> Unsubscribe:
        """Call ``listener`` for every event of ``event_type`` (``MATCH_ALL`` for every event).

        ``event_filter``, when given, is called with the event first; the listener runs only
        when it returns true. Returns a callable that unsubscribes.
        """
        return self._add(event_type, _Listener(listener, event_filter, once=False))

    def async_listen_once(self, event_type: str, listener: EventListener) -> Unsubscribe:
        """Call ``listener`` for the next event of ``event_type`` only."""
        return self._add(event_type, _Listener(listener, None, once=True))

    def _add(self, event_type: str, entry: _Listener) -> Unsubscribe:
        self._listeners[event_type] = (*self._listeners.get(event_type, ()), entry)

        def unsubscribe() -> None:
            self._remove(event_type, entry)

        return unsubscribe

    def _remove(self, event_type: str, entry: _Listener) -> None:
        if entry.removed:
            return
        entry.removed = True
        remaining = tuple(item for item in self._listeners.get(event_type, ()) if item is not entry)
        if remaining:
            self._listeners[event_type] = remaining
        else:
            self._listeners.pop(event_type, None)

    def async_has_listeners(self, event_type: str) -> bool:
        """Whether an event of ``event_type`` fired now would reach any listener (its own or
        a match-all one), so a caller can skip building data nobody would read."""
        listeners = self._listeners
        return event_type in listeners or MATCH_ALL in listeners

    def async_listeners(self) -> dict[str, int]:
        """Return how many listeners each event type has."""
        return {event_type: len(entries) for event_type, entries in self._listeners.items()}

    def async_fire(
        self,
        event_type: str,
        event_data: Mapping[str, Any] | None = None,
        origin: EventOrigin = EventOrigin.local,
        context: Context | None = None,
        time_fired: datetime | None = None,
    ) -> Event:
        """Fire an event from inside the event loop and return it."""
        event = Event(event_type, event_data, origin, time_fired, context)
        self.async_fire_event(event)
        return event

    def async_fire_event(self, event: Event) -> None:
        """Deliver an already built event."""
        self.events_fired += 1
        if self._dispatching:
            self._pending.append(event)
            return
        self._dispatching = True
        try:
            self._deliver(event)
            while self._pending:
                self._deliver(self._pending.popleft())
        finally:
            self._dispatching = False

    def fire(
        self,
        event_type: str,
        event_data: Mapping[str, Any] | None = None,
        origin: EventOrigin = EventOrigin.local,
        context: Context | None = None,
    ) -> None:
        """Fire an event from another thread."""
        self._hub.loop.call_soon_threadsafe(
            self.async_fire, event_type, event_data, origin, context
        )

    def _deliver(self, event: Event) -> None:
        typed = self._listeners.get(event.event_type, ())
        match_all = self._listeners.get(MATCH_ALL, ()) if event.event_type != MATCH_ALL else ()
        for entries in (typed, match_all):
            for entry in entries:
                if entry.removed:
                    continue
                if entry.once:
                    self._remove(event.event_type if entry in typed else MATCH_ALL, entry)
                self._call(entry, event)

    def _call(self, entry: _Listener, event: Event) -> None:
        try:
            if entry.event_filter is not None and not entry.event_filter(event):
                return
            if entry.is_coroutine_function:
                self._hub.async_create_task(
                    entry.func(event), name=f"listener {_name(entry.func)} {event.event_type}"
                )
                return
            result = entry.func(event)
            if result is not None and asyncio.iscoroutine(result):
                self._hub.async_create_task(
                    result, name=f"listener {_name(entry.func)} {event.event_type}"
                )
        except Exception:
            _LOGGER.exception(
                "Listener %s failed on event %s; other listeners were not affected",
                _name(entry.func),
                event.event_type,
            )


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


__all__ = ["Event", "EventBus", "EventOrigin", "Unsubscribe"]
