"""``time_pattern``: local times matching ``hours``/``minutes``/``seconds`` patterns.

Each field is a number (``minutes: 30``), ``"*"`` (any) or ``"/n"`` (every n-th: 0, n, 2n, …).
Fields below the largest one given default to 0, those above it to any: ``minutes: "/15"``
fires at :00, :15, :30 and :45 of every hour, on the full minute.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.automation.template import hub_time_zone
from vendhub.config import validators as cv

from . import options
from .base import AttachedTrigger, combine_unsubscribes
from .clock import TimePattern, get_trigger_clock, next_pattern_time

if TYPE_CHECKING:
    from vendhub.core.events import Unsubscribe
    from vendhub.core.hub import Hub

PLATFORM = "time_pattern"
_FIELDS = {"hours": 23, "minutes": 59, "seconds": 59}


class FieldPattern:
    """The allowed values of one field, parsed from ``5``, ``"*"`` or ``"/5"``."""

    __slots__ = ("text", "values")

    def __init__(self, text: str, values: tuple[int, ...]) -> None:
        self.text = text
        self.values = values

    def __repr__(self) -> str:
        return f"FieldPattern({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldPattern) and other.values == self.values

    def __hash__(self) -> int:
        return hash(self.values)


def field_pattern(name: str) -> Any:
    """A validator for the ``name`` field (hours 0-23, minutes and seconds 0-59)."""
    maximum = _FIELDS[name]
    expected = (
        f"a number from 0 to {maximum}, '*' for any, or '/n' for every n-th (e.g. '/5'), for {name}"
    )

    def validate(value: Any) -> FieldPattern:
        if isinstance(value, FieldPattern):
            return value
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise vol.Invalid(f"expected {expected}, got {cv.describe_value(value)}")
        text = str(value).strip()
        if text == "*":
            return FieldPattern(text, tuple(range(maximum + 1)))
        if text.startswith("/"):
            try:
                step = int(text[1:])
            except ValueError:
                raise vol.Invalid(f"expected {expected}, got {cv.describe_value(value)}") from None
            if not 1 <= step <= maximum:
                raise vol.Invalid(
                    f"the step of '/n' for {name} must be from 1 to {maximum}, got {text!r}"
                )
            return FieldPattern(text, tuple(range(0, maximum + 1, step)))
        try:
            number = int(text)
        except ValueError:
            raise vol.Invalid(f"expected {expected}, got {cv.describe_value(value)}") from None
        if not 0 <= number <= maximum:
            raise vol.Invalid(f"{name} must be from 0 to {maximum}, got {number}")
        return FieldPattern(text, (number,))

    return validate


def _fill_defaults(config: dict[str, Any]) -> dict[str, Any]:
    given = [name for name in _FIELDS if name in config]
    if not given:
        raise vol.Invalid(
            "a time_pattern trigger needs at least one of hours, minutes, seconds; got none"
        )
    largest = list(_FIELDS).index(given[0])
    for position, name in enumerate(_FIELDS):
        if name not in config:
            config[name] = field_pattern(name)("*" if position < largest else 0)
    return config


SCHEMA = options.PlatformSchema(
    PLATFORM,
    {vol.Optional(name): field_pattern(name) for name in _FIELDS},
    _fill_defaults,
)


def pattern_from_config(config: dict[str, Any]) -> TimePattern:
    """The TimePattern a validated config describes."""
    return TimePattern(
        hours=config["hours"].values,
        minutes=config["minutes"].values,
        seconds=config["seconds"].values,
    )


async def async_attach(hub: Hub, config: dict[str, Any], trigger: AttachedTrigger) -> Unsubscribe:
    """Schedule the next matching second; after it fires, the one after that."""
    clock = get_trigger_clock(hub)
    zone = hub_time_zone(hub)
    pattern = pattern_from_config(config)
    description = "time pattern " + " ".join(f"{name}={config[name].text}" for name in _FIELDS)
    cancel: Unsubscribe | None = None
    detached = False

    def schedule(after: datetime) -> None:
        nonlocal cancel
        due = next_pattern_time(after, pattern, zone)

        def reached(now: datetime) -> None:
            if detached:
                return
            schedule(max(now, due))
            trigger.fire({"now": now.astimezone(zone), "description": description}, None)

        cancel = clock.call_at(hub, due, reached)

    schedule(clock.now())

    def detach() -> None:
        nonlocal detached
        detached = True
        if cancel is not None:
            cancel()

    return combine_unsubscribes(detach)
