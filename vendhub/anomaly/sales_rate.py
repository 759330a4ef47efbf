"""Sales per hour against the machine's own history.

Once an hour (``settle`` after it ends, so that late messages are in), the detector takes
each machine's completed vends in the hour that just ended, by the time the machine stamped
on them, and compares the count with the same machine's history: the same local hour on
earlier days (``hour_of_day``, the default), the same hour and weekday (``hour_of_week``)
or the hours just before (``recent_hours``), over ``history``. The history comes from the
recorder's hourly statistics when a recorder runs, otherwise (or when the recorder knows
fewer hours) from the detector's own record, kept in ``.storage``.

The band of usual counts (``vendhub.anomaly.robust.count_band``) is the widest of: what a
Poisson process at the history's rate reaches by chance no more often than ``sensitivity``
standard deviations; the median ± ``sensitivity`` robust standard deviations of the history
(its MAD); the median ± ``min_difference``. A count above the band raises
``anomaly_sales_rate`` on the machine; so does one below it, unless ``direction`` says
otherwise. The next hour inside the band clears it.

Nothing is judged without ``min_samples`` comparable hours of history, nor for an hour the
detector did not watch from start to end, nor for an hour in which the machine was offline
or not in ``normal`` mode (such hours do not become history either).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.const import EVENT_STATE_CHANGED, EVENT_VEND_COMPLETED
from vendhub.core.timers import async_track_point_in_time
from vendhub.recorder.recorder import DATA_RECORDER
from vendhub.util.dt import hub_time_zone, utcnow

from . import text
from .base import AlarmRequest, AlarmSink, Clock, Detector, event_time, machine_id_of
from .robust import Band, count_band
from .sales_history import (
    COMPARE_WITH,
    HOUR,
    CompareWith,
    HourlyCounts,
    MemorySalesHistory,
    RecorderSalesHistory,
    comparable_hours,
    hour_start,
)
from .validation import period_at_least, severity

if TYPE_CHECKING:
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

CODE = "anomaly_sales_rate"
NORMAL_MODE = "normal"
DIRECTIONS = ("both", "high", "low")
# Hours of live counts kept besides the one being judged (late vends of earlier hours).
KEEP_LIVE_HOURS = 6

SCHEMA: dict[Any, Any] = {
    vol.Optional("enabled", default=True): cv.boolean,
    vol.Optional("compare_with", default="hour_of_day"): cv.one_of(*COMPARE_WITH),
    vol.Optional("history", default="28 days"): period_at_least(timedelta(hours=1)),
    vol.Optional("min_samples", default=7): cv.positive_int,
    vol.Optional("sensitivity", default=4.0): cv.number(1, 7),
    vol.Optional("min_difference", default=5): cv.positive_int,
    vol.Optional("direction", default="both"): cv.one_of(*DIRECTIONS),
    vol.Optional("settle", default="2min"): period_at_least(timedelta(0)),
    vol.Optional("severity", default="warning"): severity,
}


@dataclass(frozen=True, slots=True)
class SalesRateSettings:
    """The ``sales_rate:`` settings."""

    enabled: bool = True
    compare_with: CompareWith = "hour_of_day"
    history: timedelta = timedelta(days=28)
    min_samples: int = 7
    sensitivity: float = 4.0
    min_difference: int = 5
    direction: Literal["both", "high", "low"] = "both"
    settle: timedelta = timedelta(minutes=2)
    severity: str = "warning"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SalesRateSettings:
        """From the validated block."""
        return cls(**config)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the detector concluded about one machine in one hour."""

    machine_id: str
    hour: datetime
    sold: int
    band: Band | None
    direction: str | None  # "high", "low" or None (usual, or not judged)
    reason: str  # why it was or was not judged: "usual", "high", "not enough history (3 of 7)"


class SalesRateDetector(Detector):
    """Raises ``anomaly_sales_rate`` when an hour's sales leave the machine's usual band."""

    name = "sales_rate"
    codes = (CODE,)

    def __init__(
        self, hub: Hub, sink: AlarmSink, settings: SalesRateSettings, *, clock: Clock = utcnow
    ) -> None:
        super().__init__(hub, sink, clock=clock)
        self.settings = settings
        self.tz = hub_time_zone(hub)
        self.memory = MemorySalesHistory(hub, settings.history)
        self.recorder_history = RecorderSalesHistory(hub)
        self.sold: dict[str, dict[float, int]] = {}  # live counts: machine -> hour -> items
        self.first_seen: dict[str, float] = {}
        self.disturbed: dict[str, set[float]] = {}  # hours a machine was offline or in service
        self.abnormal: set[str] = set()  # machines offline or not in normal mode right now
        self.watch_start: float | None = None
        self.last_hour: float | None = None
        self.last_source = "memory"
        self._cancel_timer: Unsubscribe | None = None
        self._recorder_failed = False

    async def async_load(self) -> None:
        """Read the history saved before a restart."""
        await self.memory.async_load()

    # ---- listening -----------------------------------------------------------------------

    def _subscribe(self) -> None:
        now = self.now().timestamp()
        self.watch_start = now
        for state in self.hub.states.async_all("machine"):
            machine_id = state.entity_id.split(".", 1)[1]
            self._seen(machine_id, now)
            self._note_state(machine_id, state.state, state.attributes.get("mode"), now)
        self.listen(EVENT_VEND_COMPLETED, self._on_vend)
        self.listen(EVENT_STATE_CHANGED, self._on_state_changed)
        self.track(self._stop_timer)
        self._schedule_next()

    def _seen(self, machine_id: str, now: float) -> None:
        self.first_seen.setdefault(machine_id, now)

    def _on_vend(self, event: Event) -> None:
        machine_id = machine_id_of(event)
        if machine_id is None:
            return
        self._seen(machine_id, self.now().timestamp())
        hour = hour_start(event_time(event).timestamp())
        hours = self.sold.setdefault(machine_id, {})
        hours[hour] = hours.get(hour, 0) + 1

    def _on_state_changed(self, event: Event) -> None:
        entity_id: str = event.data["entity_id"]
        if not entity_id.startswith("machine."):
            return
        machine_id = entity_id.split(".", 1)[1]
        now = self.now().timestamp()
        new_state = event.data.get("new_state")
        self._seen(machine_id, now)
        if new_state is None:
            self._note_state(machine_id, None, None, now)
        else:
            self._note_state(machine_id, new_state.state, new_state.attributes.get("mode"), now)

    def _note_state(self, machine_id: str, state: str | None, mode: Any, now: float) -> None:
        if state == "online" and mode in (None, NORMAL_MODE):
            self.abnormal.discard(machine_id)
            return
        self.abnormal.add(machine_id)
        self.disturbed.setdefault(machine_id, set()).add(hour_start(now))

    # ---- the hourly timer ----------------------------------------------------------------

    def _schedule_next(self) -> None:
        # A real timer on the wall clock (the detector's own clock may be a test's).
        now = utcnow()
        next_hour = datetime.fromtimestamp(hour_start(now.timestamp()) + HOUR, UTC)
        self._cancel_timer = async_track_point_in_time(
            self.hub, self._on_timer, next_hour + self.settings.settle
        )

    def _stop_timer(self) -> None:
        if self._cancel_timer is not None:
            self._cancel_timer()
            self._cancel_timer = None

    def _on_timer(self, _now: datetime) -> None:
        self._schedule_next()
        self.hub.async_create_task(self.async_evaluate(), name="anomaly sales_rate: hourly")

    # ---- judging -------------------------------------------------------------------------

    async def async_evaluate(self, now: datetime | None = None) -> list[Verdict]:
        """Judge the hour that ended ``settle`` before ``now`` (default: the clock) for every
        machine, raise or clear alarms, and remember the hour as history. An hour is judged
        once."""
        moment = (now or self.now()).timestamp()
        hour = hour_start(moment - self.settings.settle.total_seconds()) - HOUR
        if self.last_hour is not None and hour <= self.last_hour:
            return []
        self.last_hour = hour
        observed = self._observed_machines(hour)
        history = await self._history(observed, hour)
        verdicts = [
            self._judge(machine_id, hour, history.get(machine_id, {})) for machine_id in observed
        ]
        for machine_id in observed:
            self.memory.record(machine_id, hour, self._sold_in(machine_id, hour))
        self.memory.prune(moment)
        self._forget_before(hour - KEEP_LIVE_HOURS * HOUR)
        return verdicts

    def _observed_machines(self, hour: float) -> list[str]:
        """Machines watched for the whole hour while online and in normal mode."""
        if self.watch_start is None or self.watch_start > hour:
            return []
        for machine_id in self.abnormal:  # still offline or in service: so was the end of it
            self.disturbed.setdefault(machine_id, set()).update({hour, hour + HOUR})
        return sorted(
            machine_id
            for machine_id, first in self.first_seen.items()
            if first <= hour and hour not in self.disturbed.get(machine_id, ())
        )

    def _sold_in(self, machine_id: str, hour: float) -> int:
        return self.sold.get(machine_id, {}).get(hour, 0)

    async def _history(self, machine_ids: list[str], hour: float) -> HourlyCounts:
        """Counts per machine from the recorder and from memory: whichever knows more hours."""
        if not machine_ids:
            return {}
        hours = comparable_hours(hour, self.settings.compare_with, self.settings.history, self.tz)
        counts = await self.memory.async_counts(machine_ids, hours)
        self.last_source = "memory"
        if self._recorder_running():
            try:
                recorded = await self.recorder_history.async_counts(machine_ids, hours)
            except Exception as error:
                if not self._recorder_failed:
                    _LOGGER.warning(
                        "Sales history from the recorder failed (%s); judging from memory", error
                    )
                self._recorder_failed = True
            else:
                self._recorder_failed = False
                self.last_source = "recorder"
                for machine_id, known in recorded.items():
                    if len(known) >= len(counts.get(machine_id, {})):
                        counts[machine_id] = known
        return counts

    def _recorder_running(self) -> bool:
        return self.hub.data.get(DATA_RECORDER) is not None

    def _judge(self, machine_id: str, hour: float, history: dict[float, int]) -> Verdict:
        sold = self._sold_in(machine_id, hour)
        moment = datetime.fromtimestamp(hour, UTC)
        settings = self.settings
        if len(history) < settings.min_samples:
            reason = f"not enough history ({len(history)} of {settings.min_samples} hours)"
            return Verdict(machine_id, moment, sold, None, None, reason)
        band = count_band(list(history.values()), settings.sensitivity, settings.min_difference)
        direction = band.judge(sold)
        if direction is not None and settings.direction in ("both", direction):
            self.raise_once(
                AlarmRequest(
                    CODE,
                    machine_id,
                    settings.severity,
                    self._message(machine_id, hour, sold, band, direction),
                    {
                        "hour": moment.isoformat(),
                        "sold": sold,
                        "direction": direction,
                        "median": band.median,
                        "usual_low": band.usual_low,
                        "usual_high": band.usual_high,
                        "rate": band.rate,
                        "low": band.low,
                        "high": band.high,
                        "samples": band.samples,
                        "compare_with": settings.compare_with,
                        "source": self.last_source,
                    },
                )
            )
            return Verdict(machine_id, moment, sold, band, direction, direction)
        self.end_episode(machine_id, CODE)
        return Verdict(machine_id, moment, sold, band, None, "usual")

    def _message(self, machine_id: str, hour: float, sold: int, band: Band, direction: str) -> str:
        start = datetime.fromtimestamp(hour, UTC)
        span = f"{text.clock(start, self.tz)}-{text.clock(start + timedelta(hours=1), self.tz)}"
        usual = text.count_range(band.usual_low, band.usual_high)
        median = f"{band.median:g}"
        compare_with = self.settings.compare_with
        if compare_with == "hour_of_day":
            basis = f"its usual for this hour is {usual} (median {median} over {band.samples} days)"
        elif compare_with == "hour_of_week":
            weekday = start.astimezone(self.tz).strftime("%A")
            basis = (
                f"its usual for this hour on a {weekday} is {usual} "
                f"(median {median} over {band.samples} weeks)"
            )
        else:
            basis = (
                f"its usual is {usual} an hour "
                f"(median {median} over the {band.samples} hours before)"
            )
        sold_text = text.plural(sold, "item")
        if direction == "high":
            return (
                f"{machine_id} sold {sold_text} in the last hour ({span}); {basis}. "
                "Check for free vends or a payment fault."
            )
        return (
            f"{machine_id} sold only {sold_text} in the last hour ({span}); {basis}. "
            "Check that it dispenses and takes payment."
        )

    def _forget_before(self, oldest: float) -> None:
        for machine_id in list(self.sold):
            hours = self.sold[machine_id]
            for hour in [hour for hour in hours if hour < oldest]:
                del hours[hour]
            if not hours:
                del self.sold[machine_id]
        for machine_id in list(self.disturbed):
            kept = {hour for hour in self.disturbed[machine_id] if hour >= oldest}
            if kept:
                self.disturbed[machine_id] = kept
            else:
                del self.disturbed[machine_id]
