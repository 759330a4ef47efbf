"""The wall clock of the time triggers, and when a daily time or a time pattern is next due.

All arithmetic is on aware datetimes: the hub's local time zone decides what "08:00" means,
and the moments are compared and scheduled in UTC, so a daylight-saving change never makes a
trigger fire twice in an hour or silently skip a day (see ``next_daily_time``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from vendhub.core.timers import async_track_point_in_time
from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.events import Unsubscribe
    from vendhub.core.hub import Hub

_CLOCK_KEY = "automation.trigger_clock"
_ONE_SECOND = timedelta(seconds=1)
_ONE_DAY = timedelta(days=1)


class TriggerClock:
    """What time it is for the time triggers, and a way to be called at a given moment.

    The default clock is the system clock. ``offset`` shifts it: a clock with
    ``offset = 08:00 today - now + 0.05 s`` makes a trigger ``at: "08:00"`` fire 50 ms from now,
    which is how the tests exercise time triggers without waiting.
    """

    def __init__(self, offset: timedelta | None = None) -> None:
        self.offset = offset or timedelta()

    @classmethod
    def starting_at(cls, moment: datetime) -> TriggerClock:
        """A clock that reads ``moment`` now and runs on from there at the real pace."""
        return cls(moment - utcnow())

    def now(self) -> datetime:
        """The current moment, aware, in UTC."""
        return utcnow() + self.offset

    def call_at(self, hub: Hub, moment: datetime, action: Callable[[datetime], Any]) -> Unsubscribe:
        """Call ``action(now)`` once when this clock reaches ``moment``."""

        def reached(_real_now: datetime) -> Any:
            return action(self.now())

        return async_track_point_in_time(hub, reached, moment - self.offset)


_SYSTEM_CLOCK = TriggerClock()


def get_trigger_clock(hub: Hub) -> TriggerClock:
    """The clock the time triggers of ``hub`` use (the system clock unless one was set)."""
    clock = hub.data.get(_CLOCK_KEY)
    return clock if isinstance(clock, TriggerClock) else _SYSTEM_CLOCK


def set_trigger_clock(hub: Hub, clock: TriggerClock | None) -> None:
    """Make the time triggers attached from now on read ``clock`` (None: the system clock)."""
    if clock is None:
        hub.data.pop(_CLOCK_KEY, None)
    else:
        hub.data[_CLOCK_KEY] = clock


# -- daily times --------------------------------------------------------------------------------


def next_daily_time(after: datetime, at: time, zone: tzinfo) -> datetime:
    """The first moment strictly after ``after`` at which the local clock in ``zone`` shows ``at``.

    Exactly once per local calendar day, whatever daylight saving does:
    - a time the clock skips (02:30 when it jumps from 02:00 to 03:00) is due at the same
      distance past the jump, 03:30 new time, instead of being lost for the day;
    - a time the clock shows twice (02:30 when it falls back from 03:00 to 02:00) is due at
      its first occurrence only.
    Returns an aware UTC datetime.
    """
    local_day = after.astimezone(zone).date()
    for day in (local_day - _ONE_DAY, local_day, local_day + _ONE_DAY, local_day + 2 * _ONE_DAY):
        candidate = _local_moment(day, at, zone)
        if candidate > after:
            return candidate
    raise AssertionError("unreachable: a daily time is due within two days")  # pragma: no cover


def _local_moment(day: date, at: time, zone: tzinfo) -> datetime:
    # fold=0: the first occurrence of an ambiguous time, and for a skipped time the offset from
    # before the jump, which puts it just as far after the jump.
    return datetime.combine(day, at.replace(tzinfo=None, fold=0), tzinfo=zone).astimezone(UTC)


# -- time patterns -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimePattern:
    """Which local hours, minutes and seconds match (each a sorted tuple of allowed values)."""

    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]

    def matches(self, moment: datetime) -> bool:
        """Whether the (local) ``moment`` is a matching whole second."""
        return (
            moment.hour in self.hours
            and moment.minute in self.minutes
            and moment.second in self.seconds
        )


def next_pattern_time(after: datetime, pattern: TimePattern, zone: tzinfo) -> datetime:
    """The first whole second strictly after ``after`` whose local time in ``zone`` matches.

    Local time that daylight saving skips never matches; local time that it repeats matches
    in both passes (``minutes: "/5"`` keeps firing every five real minutes through the change).
    Returns an aware UTC datetime.
    """
    start = after.astimezone(UTC).replace(microsecond=0) + _ONE_SECOND
    for _ in range(8):  # each round either finds the answer or passes one offset change
        offset = _utc_offset(start, zone)
        local_start = (start + offset).replace(tzinfo=None)
        candidate = (_next_naive_match(local_start, pattern) - offset).replace(tzinfo=UTC)
        if _utc_offset(candidate, zone) == offset:
            return candidate
        start = _offset_change_between(start, candidate, zone)
    raise AssertionError("no match found across eight offset changes")  # pragma: no cover


def _utc_offset(moment: datetime, zone: tzinfo) -> timedelta:
    return moment.astimezone(zone).utcoffset() or timedelta()


def _offset_change_between(start: datetime, end: datetime, zone: tzinfo) -> datetime:
    """The first whole second in (start, end] whose UTC offset differs from that of ``start``."""
    offset = _utc_offset(start, zone)
    low, high = 0, int((end - start).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if _utc_offset(start + timedelta(seconds=middle), zone) == offset:
            low = middle
        else:
            high = middle
    return start + timedelta(seconds=high)


def _first_at_least(values: Sequence[int], minimum: int) -> int | None:
    for value in values:
        if value >= minimum:
            return value
    return None


def _next_naive_match(start: datetime, pattern: TimePattern) -> datetime:
    """The first naive wall-clock second at or after ``start`` that ``pattern`` matches."""
    day = start.date()
    hour, minute, second = start.hour, start.minute, start.second
    while True:
        matched_hour = _first_at_least(pattern.hours, hour)
        if matched_hour is None:
            day, hour, minute, second = day + _ONE_DAY, 0, 0, 0
            continue
        if matched_hour != hour:
            hour, minute, second = matched_hour, 0, 0
        matched_minute = _first_at_least(pattern.minutes, minute)
        if matched_minute is None:
            day, hour, minute, second = _carry(day, hour + 1, 0)
            continue
        if matched_minute != minute:
            minute, second = matched_minute, 0
        matched_second = _first_at_least(pattern.seconds, second)
        if matched_second is None:
            day, hour, minute, second = _carry(day, hour, minute + 1)
            continue
        return datetime.combine(day, time(hour, minute, matched_second))


def _carry(day: date, hour: int, minute: int) -> tuple[date, int, int, int]:
    """Normalise an hour/minute that ran past 59/23 onto the next hour or day."""
    if minute > 59:
        hour, minute = hour + 1, 0
    if hour > 23:
        return day + _ONE_DAY, 0, 0, 0
    return day, hour, minute, 0
