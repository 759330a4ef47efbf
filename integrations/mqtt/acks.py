"""Acknowledging machine events: money events only after the recorder's commit.

A machine keeps every event in its outbox until an ``ack`` names it. For the events the
recorder writes to the money ledger (vend_completed, vend_failed, restocked,
cash_collected) the hub acks only after the recorder's ``money_recorded`` for that machine
and event id, so a sale is never dropped between the broker and the database. Other events
are acked once the link has processed them. Acks are gathered for one loop iteration and
sent as one message per machine.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from vendhub.const import EVENT_MONEY_RECORDED
from vendhub.core.errors import HubNotRunning
from vendhub.core.timers import async_track_time_interval
from vendhub.machine import protocol

from .const import ACK_WAIT_TIMEOUT

if TYPE_CHECKING:
    from datetime import datetime

    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

Publisher = Callable[[str, list[str]], Awaitable[None]]


@dataclass(slots=True)
class AckStats:
    """What the acknowledger did."""

    sent: int = 0  # event ids acked
    messages: int = 0  # ack messages published
    failed: int = 0  # ids whose ack could not be published (the machine sends them again)
    expired: int = 0  # money events never recorded in time (not acked)


class Acknowledger:
    """Sends ``ack`` messages; holds back money events until the recorder has them."""

    def __init__(
        self, hub: Hub, publish: Publisher, wait_timeout: float = ACK_WAIT_TIMEOUT
    ) -> None:
        self.hub = hub
        self._publish = publish
        self.wait_timeout = wait_timeout
        self.stats = AckStats()
        self._waiting: dict[tuple[str, str], float] = {}  # -> loop time it began waiting
        self._batch: dict[str, list[str]] = {}
        self._flush_scheduled = False
        self._unsubscribe: list[Unsubscribe] = [
            hub.bus.async_listen(EVENT_MONEY_RECORDED, self._on_money_recorded),
            async_track_time_interval(
                hub,
                self._expire,
                timedelta(seconds=max(1.0, min(60.0, wait_timeout / 4))),
                name="mqtt ack expiry",
            ),
        ]

    def stop(self) -> None:
        """Stop listening; acks not sent yet are dropped (the machines send those again)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self._waiting.clear()
        self._batch.clear()

    # ---- money events ---------------------------------------------------------------------

    def expect_recorded(self, machine_id: str, event_id: str) -> None:
        """Ack ``event_id`` once the recorder has committed it (call before the event fires)."""
        self._waiting.setdefault((machine_id, event_id), self.hub.loop.time())

    def is_waiting(self, machine_id: str, event_id: str) -> bool:
        """True while ``event_id`` waits for the recorder."""
        return (machine_id, event_id) in self._waiting

    def forget(self, machine_id: str, event_id: str) -> None:
        """Do not ack ``event_id`` after all (its handling failed)."""
        self._waiting.pop((machine_id, event_id), None)

    @property
    def waiting(self) -> int:
        """Money events waiting for the recorder."""
        return len(self._waiting)

    def _on_money_recorded(self, event: Event) -> None:
        key = (str(event.data.get("machine_id")), str(event.data.get("event_id")))
        if self._waiting.pop(key, None) is not None:
            self.ack(*key)

    def _expire(self, _now: datetime) -> None:
        deadline = self.hub.loop.time() - self.wait_timeout
        expired = [key for key, since in self._waiting.items() if since < deadline]
        for key in expired:
            del self._waiting[key]
        if expired:
            self.stats.expired += len(expired)
            _LOGGER.warning(
                "%d money events were not recorded within %g s and are not acknowledged; "
                "their machines will send them again (first: %s from %s)",
                len(expired),
                self.wait_timeout,
                expired[0][1],
                expired[0][0],
            )

    # ---- sending --------------------------------------------------------------------------

    def ack(self, machine_id: str, event_id: str) -> None:
        """Ack ``event_id`` of ``machine_id`` with the next batch (this loop iteration)."""
        ids = self._batch.setdefault(machine_id, [])
        if event_id not in ids:
            ids.append(event_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.hub.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._batch = self._batch, {}
        for machine_id, ids in batch.items():
            for start in range(0, len(ids), protocol.MAX_ACK_IDS):
                chunk = ids[start : start + protocol.MAX_ACK_IDS]
                try:
                    self.hub.async_create_task(
                        self._async_send(machine_id, chunk), name=f"mqtt ack {machine_id}"
                    )
                except HubNotRunning:
                    self.stats.failed += len(chunk)

    async def _async_send(self, machine_id: str, ids: list[str]) -> None:
        try:
            await self._publish(machine_id, ids)
        except Exception as error:
            self.stats.failed += len(ids)
            _LOGGER.debug("Could not ack %d events of %s: %s", len(ids), machine_id, error)
            return
        self.stats.sent += len(ids)
        self.stats.messages += 1
