"""Acknowledging machine events: money events only after the recorder's commit.

A machine keeps every event in its outbox until an ``ack`` names it. For the events the
recorder writes to the money ledger (vend_completed, vend_failed, restocked,
cash_collected) the hub acks only after the recorder's ``money_recorded`` for that machine
and event id, so a sale is never dropped between the broker and the database. Other events
are acked once the link has processed them. Acks are gathered for one loop iteration and
sent as one message per machine.

A wait can expire (the database was unreachable for longer than ``wait_timeout``). The
expired event is still not acked: it is acked when the recorder commits it after all, and a
copy the machine sends again hands the first copy's money event to the recorder again (the
ledger's unique keys write it once), so a sale the recorder dropped meanwhile (its backlog
overflowed while the database was away) is written from the copy, and the machine deletes it
only once it is in the database. What this remembers is lost with a restart of the hub; the
runtime then asks the ledger about a machine's copies (``MqttRuntime._async_recorded_earlier``):
one it holds is a duplicate, acked at once; the ledger's keys write any other once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from vendhub.const import EVENT_MONEY_RECORDED
from vendhub.core.errors import HubNotRunning
from vendhub.core.timers import async_track_time_interval
from vendhub.machine import protocol
from vendhub.recorder.ledger import MONEY_EVENTS

from .const import ACK_WAIT_TIMEOUT

if TYPE_CHECKING:
    from datetime import datetime

    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

Publisher = Callable[[str, list[str]], Awaitable[None]]
Rerecorder = Callable[["Event"], bool]
"""Hands a money event to the recorder again; False when no recorder runs."""

MAX_EXPIRED = 50_000
"""Expired waits remembered (with their money events) for a copy the machine sends again;
the recorder's money backlog keeps as many."""


@dataclass(slots=True)
class AckStats:
    """What the acknowledger did."""

    sent: int = 0  # event ids acked
    messages: int = 0  # ack messages published
    failed: int = 0  # ids whose ack could not be published (the machine sends them again)
    expired: int = 0  # money events not recorded within the wait (not acked then)
    rerecorded: int = 0  # copies of expired money events handed to the recorder again
    forgotten: int = 0  # expired waits dropped past MAX_EXPIRED (a copy is then acked)


@dataclass(slots=True)
class _Wait:
    since: float
    """Loop time at which it began waiting."""
    event: Event | None = None
    """The money event the machine's event fired on the bus, once it has."""


class Acknowledger:
    """Sends ``ack`` messages; holds back money events until the recorder has them."""

    def __init__(
        self,
        hub: Hub,
        publish: Publisher,
        rerecord: Rerecorder,
        wait_timeout: float = ACK_WAIT_TIMEOUT,
    ) -> None:
        self.hub = hub
        self._publish = publish
        self._rerecord = rerecord
        self.wait_timeout = wait_timeout
        self.stats = AckStats()
        self._waiting: dict[tuple[str, str], _Wait] = {}
        self._expired: OrderedDict[tuple[str, str], Event | None] = OrderedDict()
        self._batch: dict[str, list[str]] = {}
        self._flush_scheduled = False
        self._unsubscribe: list[Unsubscribe] = [
            hub.bus.async_listen(EVENT_MONEY_RECORDED, self._on_money_recorded),
            *(
                hub.bus.async_listen(event_type, self._on_money_event)
                for event_type in MONEY_EVENTS
            ),
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
        self._expired.clear()
        self._batch.clear()

    # ---- money events ---------------------------------------------------------------------

    def expect_recorded(self, machine_id: str, event_id: str) -> None:
        """Ack ``event_id`` once the recorder has committed it (call before the event fires)."""
        key = (machine_id, event_id)
        if key not in self._waiting:
            self._waiting[key] = _Wait(self.hub.loop.time())

    def copy_received(self, machine_id: str, event_id: str) -> None:
        """The machine sent ``event_id`` again, a money event the link has handled already.

        Acked now when its first copy was recorded. While the first copy waits, the ack goes
        out with it. When that wait expired, the first copy's money event goes to the
        recorder again and the ack waits for its commit (a duplicate in the ledger is
        recorded as one, and acked).
        """
        key = (machine_id, event_id)
        if key in self._waiting:
            return
        if key not in self._expired:
            self.ack(machine_id, event_id)
            return
        event = self._expired.pop(key)
        if event is None or not self._rerecord(event):
            self.ack(machine_id, event_id)  # no money event was fired: nothing to record
            return
        self.stats.rerecorded += 1
        self._waiting[key] = _Wait(self.hub.loop.time(), event)
        _LOGGER.info(
            "Machine %s sent %s event %s again, whose recording was not confirmed in time: "
            "handed to the recorder again",
            machine_id,
            event.event_type,
            event_id,
        )

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

    def _on_money_event(self, event: Event) -> None:
        wait = self._waiting.get(
            (str(event.data.get("machine_id")), str(event.data.get("event_id")))
        )
        if wait is not None and wait.event is None:
            wait.event = event

    def _on_money_recorded(self, event: Event) -> None:
        key = (str(event.data.get("machine_id")), str(event.data.get("event_id")))
        if self._waiting.pop(key, None) is not None:
            self.ack(*key)
        elif key in self._expired:
            del self._expired[key]
            self.ack(*key)  # recorded late: the machine may delete it now

    def _expire(self, _now: datetime) -> None:
        deadline = self.hub.loop.time() - self.wait_timeout
        expired = [key for key, wait in self._waiting.items() if wait.since < deadline]
        for key in expired:
            self._expired[key] = self._waiting.pop(key).event
        if not expired:
            return
        self.stats.expired += len(expired)
        _LOGGER.warning(
            "%d money events were not recorded within %g s and are not acknowledged; they "
            "will be once recorded, and a copy a machine sends again goes to the recorder "
            "again (first: %s from %s)",
            len(expired),
            self.wait_timeout,
            expired[0][1],
            expired[0][0],
        )
        excess = len(self._expired) - MAX_EXPIRED
        if excess > 0:
            for _ in range(excess):
                self._expired.popitem(last=False)
            self.stats.forgotten += excess
            _LOGGER.error(
                "Over %d money events wait for the recorder: forgot the %d oldest; a copy of "
                "one that a machine sends again is acknowledged without being recorded again",
                MAX_EXPIRED,
                excess,
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
