"""``time``: every day at given local times (``at: "07:30"`` or a list), in the hub's time zone."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.automation.template import hub_time_zone
from vendhub.config import validators as cv

from . import options
from .base import AttachedTrigger, combine_unsubscribes
from .clock import get_trigger_clock, next_daily_time

if TYPE_CHECKING:
    from vendhub.core.events import Unsubscribe
    from vendhub.core.hub import Hub

PLATFORM = "time"
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def time_of_day(value: Any) -> time:
    """A local time of day 'HH:MM' or 'HH:MM:SS' (24-hour clock)."""
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 10:30 as the base-60 number 630.
        hours, minutes = divmod(value, 60)
        guess = f", did you mean '{hours:02d}:{minutes:02d}'" if hours < 24 else ""
        raise vol.Invalid(
            f"expected a time of day in quotes such as '07:30', got the number {value}: YAML "
            f"reads an unquoted 10:30 as a number{guess} (in quotes)?"
        )
    match = _TIME_OF_DAY.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise vol.Invalid(
            f"expected a time of day such as '07:30' or '22:15:30', got {cv.describe_value(value)}"
        )
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    if hours > 23 or minutes > 59 or seconds > 59:
        raise vol.Invalid(
            f"expected a time of day from 00:00:00 to 23:59:59, got {cv.describe_value(value)}"
        )
    return time(hours, minutes, seconds)


def _times_of_day(value: Any) -> list[time]:
    items = cv.ensure_list(value)
    if not items:
        raise vol.Invalid("expected at least one time of day, got an empty list")
    return sorted(set(time_of_day(item) for item in items))


SCHEMA = options.PlatformSchema(PLATFORM, {vol.Required("at"): _times_of_day})


async def async_attach(hub: Hub, config: dict[str, Any], trigger: AttachedTrigger) -> Unsubscribe:
    """Schedule each time of day; after it fires, schedule the next day's."""
    clock = get_trigger_clock(hub)
    zone = hub_time_zone(hub)
    cancels: dict[time, Unsubscribe] = {}
    detached = False

    def schedule(at: time, after: datetime) -> None:
        due = next_daily_time(after, at, zone)

        def reached(now: datetime) -> None:
            if detached:
                return
            schedule(at, max(now, due))
            trigger.fire(
                {
                    "now": now.astimezone(zone),
                    "at": at.isoformat(),
                    "description": f"time {at.isoformat()}",
                },
                None,
            )

        cancels[at] = clock.call_at(hub, due, reached)

    now = clock.now()
    for at in config["at"]:
        schedule(at, now)

    def detach() -> None:
        nonlocal detached
        detached = True
        for cancel in cancels.values():
            cancel()

    return combine_unsubscribes(detach)
