"""Timers and trackers: run something at a time, every interval, or when a state changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from vendhub.const import EVENT_STATE_CHANGED
from vendhub.core.events import Event, Unsubscribe
from vendhub.util.dt import as_utc, utcnow

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)
_STATE_TRACKERS = "core.state_change_trackers"


def _run_action(hub: Hub, action: Callable[..., Any], name: str, *args: Any) -> None:
    """Call a callback or start a coroutine function; failures are logged, never raised."""
    try:
        result = action(*args)
        if asyncio.iscoroutine(result):
            hub.async_create_task(result, name=name)
    except Exception:
        _LOGGER.exception("Error in %s", name)


def async_track_point_in_time(
    hub: Hub, action: Callable[[datetime], Any], point_in_time: datetime
) -> Unsubscribe:
    """Call ``action(now)`` once at ``point_in_time`` (at once if it has passed)."""
    target = as_utc(point_in_time)
    name = f"timer {getattr(action, '__qualname__', action)} at {target.isoformat()}"
    handle: asyncio.TimerHandle | None = None

    def fire() -> None:
        nonlocal handle
        now = utcnow()
        # The loop's clock is monotonic; if the wall clock lags behind it, wait the rest.
        if now < target:
            handle = hub.loop.call_later((target - now).total_seconds(), fire)
            return
        handle = None
        _run_action(hub, action, name, now)

    handle = hub.loop.call_later(max(0.0, (target - utcnow()).total_seconds()), fire)

    def cancel() -> None:
        if handle is not None:
            handle.cancel()

    return cancel


def async_track_time_interval(
    hub: Hub, action: Callable[[datetime], Any], interval: timedelta, *, name: str | None = None
) -> Unsubscribe:
    """Call ``action(now)`` every ``interval``, without drift; returns a cancel callable."""
    seconds = interval.total_seconds()
    if seconds <= 0:
        raise ValueError(f"interval must be positive, got {interval}")
    label = name or f"interval {getattr(action, '__qualname__', action)} every {seconds:g} s"
    next_run = hub.loop.time() + seconds
    handle: asyncio.TimerHandle | None = None
    cancelled = False

    def fire() -> None:
        nonlocal next_run, handle
        if cancelled:
            return
        next_run += seconds
        now_loop = hub.loop.time()
        if next_run <= now_loop:  # the loop was blocked: skip the missed runs, keep the phase
            next_run += seconds * ((now_loop - next_run) // seconds + 1)
        handle = hub.loop.call_at(next_run, fire)
        _run_action(hub, action, label, utcnow())

    handle = hub.loop.call_at(next_run, fire)

    def cancel() -> None:
        nonlocal cancelled
        cancelled = True
        if handle is not None:
            handle.cancel()

    return cancel


class _StateChangeTrackers:
    """One ``state_changed`` listener per hub that routes each change to its entity's trackers."""

    def __init__(self, hub: Hub) -> None:
        self.by_entity: dict[str, list[Callable[[Event], Any]]] = {}
        self.hub = hub
        hub.bus.async_listen(EVENT_STATE_CHANGED, self._dispatch)

    def _dispatch(self, event: Event) -> None:
        actions = self.by_entity.get(event.data["entity_id"])
        if actions:
            for action in tuple(actions):
                _run_action(self.hub, action, f"state tracker {event.data['entity_id']}", event)


def async_track_state_change(
    hub: Hub,
    entity_ids: str | Iterable[str],
    action: Callable[[Event], Any],
    from_state: str | Iterable[str] | None = None,
    to_state: str | Iterable[str] | None = None,
) -> Unsubscribe:
    """Call ``action(event)`` on each ``state_changed`` of the given entities.

    ``from_state`` and ``to_state`` (a state string or several), when given, narrow the calls
    to changes from and to those states.
    """
    ids = [entity_ids] if isinstance(entity_ids, str) else list(entity_ids)
    wanted_from = None if from_state is None else _as_set(from_state)
    wanted_to = None if to_state is None else _as_set(to_state)
    trackers: _StateChangeTrackers = hub.data.get(_STATE_TRACKERS) or hub.data.setdefault(
        _STATE_TRACKERS, _StateChangeTrackers(hub)
    )

    def filtered(event: Event) -> Any:
        old, new = event.data["old_state"], event.data["new_state"]
        if wanted_from is not None and (old is None or old.state not in wanted_from):
            return None
        if wanted_to is not None and (new is None or new.state not in wanted_to):
            return None
        return action(event)

    callback = action if wanted_from is None and wanted_to is None else filtered
    for entity_id in ids:
        trackers.by_entity.setdefault(entity_id, []).append(callback)

    def unsubscribe() -> None:
        for entity_id in ids:
            actions = trackers.by_entity.get(entity_id)
            if actions and callback in actions:
                actions.remove(callback)
                if not actions:
                    del trackers.by_entity[entity_id]

    return unsubscribe


def _as_set(value: str | Iterable[str]) -> frozenset[str]:
    return frozenset([value]) if isinstance(value, str) else frozenset(value)
