"""Cash collected against cash reported.

Two comparisons, each with its own alarm:

- ``anomaly_cash_box`` — the machine against itself. A ``cash_collected`` event says how much
  was taken out (``amount``) and leaves the machine's cash box (``sensor.<id>_cash_box``) at
  what is left. What the box held before, less what is left, must be the amount taken out.
- ``anomaly_cash_count`` — the machine against the people. The cash taken out is counted
  (at the depot, by a counting machine) and reported with a ``cash_counted`` event: the
  ``anomaly.report_cash_count`` service fires it, and so can the API. The count must match
  the amount the machine said was taken out. A count names its collection by the
  ``cash_collected`` event id, or else goes with the machine's latest collection not yet
  counted; a count that arrives before its collection waits for it up to ``match_window``.

A difference of more than ``tolerance`` (minor units) raises the alarm (critical); each
further difference counts on it. A recount of the same collection that matches clears the
count alarm once no collection of the machine is left with a difference. The box alarm
stays until a person clears it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.const import EVENT_CASH_COLLECTED, EVENT_CASH_COUNTED, EVENT_STATE_CHANGED
from vendhub.util.dt import hub_time_zone, utcnow

from . import text
from .base import AlarmRequest, AlarmSink, Clock, Detector, event_time, machine_id_of
from .validation import period_at_least, severity

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.events import Event
    from vendhub.core.hub import Hub

BOX_CODE = "anomaly_cash_box"
COUNT_CODE = "anomaly_cash_count"
CASH_BOX_PREFIX = "sensor."
CASH_BOX_SUFFIX = "_cash_box"
# Collections and counts kept per machine while they wait for each other.
KEPT_PER_MACHINE = 50
RESULTS_KEPT = 100

SCHEMA: dict[Any, Any] = {
    vol.Optional("enabled", default=True): cv.boolean,
    vol.Optional("tolerance", default=0): cv.money_minor_units,
    vol.Optional("match_window", default="7 days"): period_at_least(timedelta(minutes=1)),
    vol.Optional("severity", default="critical"): severity,
}


@dataclass(frozen=True, slots=True)
class CashSettings:
    """The ``cash:`` settings."""

    enabled: bool = True
    tolerance: int = 0
    match_window: timedelta = timedelta(days=7)
    severity: str = "critical"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CashSettings:
        """From the validated block."""
        return cls(**config)


@dataclass(slots=True)
class _Collection:
    event_id: str
    at: datetime  # when the machine says it happened
    seen: datetime  # when the hub heard of it
    amount: int
    currency: str
    counted: bool = False
    mismatch: bool = False


@dataclass(slots=True)
class _Count:
    count_id: str | None
    seen: datetime
    amount: int
    currency: str
    event_id: str | None
    counted_by: str | None
    context: Context | None = None


@dataclass(slots=True)
class _MachineCash:
    box: int | None = None  # the cash box as last reported
    before: tuple[str, int | None] | None = None  # (context id, box before that change)
    collections: OrderedDict[str, _Collection] = field(default_factory=OrderedDict)
    counts: list[_Count] = field(default_factory=list)


def cash_box_machine(entity_id: str) -> str | None:
    """``lobby_1`` from ``sensor.lobby_1_cash_box``; None for other entities."""
    if entity_id.startswith(CASH_BOX_PREFIX) and entity_id.endswith(CASH_BOX_SUFFIX):
        machine_id = entity_id[len(CASH_BOX_PREFIX) : -len(CASH_BOX_SUFFIX)]
        return machine_id or None
    return None


def _amount(state: Any) -> int | None:
    if state is None:
        return None
    try:
        return int(state.state)
    except (TypeError, ValueError):
        return None  # unknown, unavailable


class CashDetector(Detector):
    """Raises ``anomaly_cash_box`` and ``anomaly_cash_count``."""

    name = "cash"
    codes = (BOX_CODE, COUNT_CODE)

    def __init__(
        self, hub: Hub, sink: AlarmSink, settings: CashSettings, *, clock: Clock = utcnow
    ) -> None:
        super().__init__(hub, sink, clock=clock)
        self.settings = settings
        self.tz = hub_time_zone(hub)
        self.machines: dict[str, _MachineCash] = {}
        self.results: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _machine(self, machine_id: str) -> _MachineCash:
        machine = self.machines.get(machine_id)
        if machine is None:
            machine = self.machines[machine_id] = _MachineCash()
        return machine

    def _subscribe(self) -> None:
        for state in self.hub.states.async_all("sensor"):
            machine_id = cash_box_machine(state.entity_id)
            if machine_id is not None:
                self._machine(machine_id).box = _amount(state)
        self.listen(EVENT_STATE_CHANGED, self._on_state_changed)
        self.listen(EVENT_CASH_COLLECTED, self._on_collected)
        self.listen(EVENT_CASH_COUNTED, self._on_counted)

    # ---- the machine's own figures -------------------------------------------------------

    def _on_state_changed(self, event: Event) -> None:
        machine_id = cash_box_machine(event.data["entity_id"])
        if machine_id is None:
            return
        machine = self._machine(machine_id)
        new_amount = _amount(event.data.get("new_state"))
        if new_amount is None:
            return  # unavailable: the last reported amount stands
        machine.before = (event.context.id, machine.box)
        machine.box = new_amount

    def _on_collected(self, event: Event) -> None:
        machine_id = machine_id_of(event)
        amount = event.data.get("amount")
        event_id = event.data.get("event_id")
        if machine_id is None or not isinstance(amount, int) or not isinstance(event_id, str):
            return
        machine = self._machine(machine_id)
        currency = str(event.data.get("currency") or self.hub.config.currency)
        collection = _Collection(event_id, event_time(event), self.now(), amount, currency)
        machine.collections[event_id] = collection
        while len(machine.collections) > KEPT_PER_MACHINE:
            machine.collections.popitem(last=False)
        self._check_box(machine_id, machine, collection, event.context)
        self._prune(machine)
        for count in list(machine.counts):
            if count.event_id in (None, event_id):
                machine.counts.remove(count)
                self._compare(machine_id, machine, collection, count)
                break

    def _check_box(
        self, machine_id: str, machine: _MachineCash, collection: _Collection, context: Context
    ) -> None:
        if machine.before is not None and machine.before[0] == context.id:
            before = machine.before[1]  # the collection changed the box
        else:
            before = machine.box  # the box did not change (or was never reported)
        left = machine.box
        if before is None or left is None:
            return
        taken = before - left
        if abs(taken - collection.amount) <= self.settings.tolerance:
            return
        currency = collection.currency
        difference = collection.amount - taken
        self.raise_again(
            AlarmRequest(
                BOX_CODE,
                machine_id,
                self.settings.severity,
                f"{machine_id} reported {text.money(collection.amount, currency)} collected at "
                f"{self._when(collection.at)}, but its cash box went from "
                f"{text.money(before, currency)} to {text.money(left, currency)} "
                f"({text.money(taken, currency)}): "
                f"{text.money(abs(difference), currency)} {'more' if difference > 0 else 'less'}"
                " than the box showed.",
                {
                    "event_id": collection.event_id,
                    "reported": collection.amount,
                    "box_before": before,
                    "box_after": left,
                    "currency": currency,
                },
            ),
            context,
        )

    # ---- the count -----------------------------------------------------------------------

    def _on_counted(self, event: Event) -> None:
        machine_id = machine_id_of(event)
        amount = event.data.get("amount")
        if machine_id is None or not isinstance(amount, int) or isinstance(amount, bool):
            return
        machine = self._machine(machine_id)
        self._prune(machine)
        event_id = event.data.get("event_id")
        count = _Count(
            count_id=event.data.get("count_id"),
            seen=self.now(),
            amount=amount,
            currency=str(event.data.get("currency") or self.hub.config.currency),
            event_id=event_id if isinstance(event_id, str) else None,
            counted_by=event.data.get("counted_by"),
            context=event.context,
        )
        collection = self._collection_for(machine, count)
        if collection is None:
            machine.counts.append(count)
            del machine.counts[:-KEPT_PER_MACHINE]
            self._result(
                count,
                {
                    "status": "waiting",
                    "detail": "no collection to compare with yet: the count waits for it",
                },
            )
            return
        self._compare(machine_id, machine, collection, count)

    def _collection_for(self, machine: _MachineCash, count: _Count) -> _Collection | None:
        if count.event_id is not None:
            return machine.collections.get(count.event_id)
        for collection in reversed(machine.collections.values()):
            if not collection.counted:
                return collection
        return None

    def _compare(
        self, machine_id: str, machine: _MachineCash, collection: _Collection, count: _Count
    ) -> None:
        collection.counted = True
        reported = collection.amount
        currency = collection.currency
        result: dict[str, Any] = {
            "event_id": collection.event_id,
            "reported": reported,
            "counted": count.amount,
            "currency": currency,
        }
        if count.currency != currency:
            message = (
                f"{machine_id}: the cash of the collection at {self._when(collection.at)} was "
                f"counted in {count.currency}, but the machine reports {currency} "
                f"({text.money(reported, currency)} collected)."
            )
        else:
            difference = count.amount - reported
            result["difference"] = difference
            if abs(difference) <= self.settings.tolerance:
                collection.mismatch = False
                self._result(count, {**result, "status": "matched"})
                if not any(c.mismatch for c in machine.collections.values()):
                    self.end_episode(machine_id, COUNT_CODE, count.context)
                return
            short = "short" if difference < 0 else "over"
            counted_by = f" by {count.counted_by}" if count.counted_by else ""
            message = (
                f"{machine_id} reported {text.money(reported, currency)} collected at "
                f"{self._when(collection.at)}; {text.money(count.amount, currency)} was "
                f"counted{counted_by} ({text.money(abs(difference), currency)} {short})."
            )
        collection.mismatch = True
        self._result(count, {**result, "status": "mismatch", "detail": message})
        self.raise_again(
            AlarmRequest(
                COUNT_CODE,
                machine_id,
                self.settings.severity,
                message,
                {**result, "counted_currency": count.currency, "counted_by": count.counted_by},
            ),
            count.context,
        )

    def _result(self, count: _Count, result: dict[str, Any]) -> None:
        if count.count_id is None:
            return
        self.results[count.count_id] = result
        while len(self.results) > RESULTS_KEPT:
            self.results.popitem(last=False)

    def _prune(self, machine: _MachineCash) -> None:
        oldest = self.now() - self.settings.match_window
        machine.counts = [count for count in machine.counts if count.seen >= oldest]
        for event_id in [e for e, c in machine.collections.items() if c.seen < oldest]:
            del machine.collections[event_id]

    def _when(self, moment: datetime) -> str:
        return moment.astimezone(self.tz).strftime("%d %b %H:%M")
