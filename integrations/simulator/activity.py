"""A periodic log line that shows the demo fleet is alive: vends, revenue, failures."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING

from vendhub.const import EVENT_VEND_COMPLETED, EVENT_VEND_FAILED
from vendhub.core.timers import async_track_time_interval

if TYPE_CHECKING:
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)


class ActivitySummary:
    """Counts vends between log lines; one line every ``interval`` real seconds."""

    def __init__(self, hub: Hub, interval: float, machine_ids: list[str]) -> None:
        self.hub = hub
        self.interval = interval
        self.machine_ids = machine_ids
        self.completed = 0
        self.revenue = 0
        self.failures: Counter[str] = Counter()
        self._unsubscribe: list[Unsubscribe] = [
            hub.bus.async_listen(EVENT_VEND_COMPLETED, self._on_completed, self._ours),
            hub.bus.async_listen(EVENT_VEND_FAILED, self._on_failed, self._ours),
            async_track_time_interval(hub, self._log, timedelta(seconds=interval)),
        ]

    def _ours(self, event: Event) -> bool:
        return event.data.get("machine_id") in self.machine_ids

    def _on_completed(self, event: Event) -> None:
        self.completed += 1
        self.revenue += int(event.data.get("price") or 0)

    def _on_failed(self, event: Event) -> None:
        self.failures[str(event.data.get("reason") or "unknown")] += 1

    def line(self) -> str:
        """The summary of what happened since the last line."""
        currency = self.hub.config.currency
        online = sum(
            1
            for machine_id in self.machine_ids
            if self.hub.states.is_state(f"machine.{machine_id}", "online")
        )
        failed = sum(self.failures.values())
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.failures.most_common())
        return (
            f"Simulator, last {self.interval:g} s: {self.completed} vends "
            f"({currency} {self.revenue / 100:.2f}), {failed} failed"
            f"{f' ({reasons})' if reasons else ''}; "
            f"{online} of {len(self.machine_ids)} machines online"
        )

    def _log(self, _now: object) -> None:
        _LOGGER.info(self.line())
        self.completed = 0
        self.revenue = 0
        self.failures.clear()

    def stop(self) -> None:
        """Stop counting and logging."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
