"""Validators shared by the detectors' settings in the ``anomaly:`` block."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import voluptuous as vol

from vendhub.config import validators as cv

from .base import SEVERITIES

severity = cv.one_of(*SEVERITIES)


def _empty_if_none(value: Any) -> Any:
    return {} if value is None else value


def section(schema: dict[Any, Any], *checks: Callable[[Any], Any]) -> vol.All:
    """A detector's block: a mapping (an empty ``door:`` means all defaults), then ``checks``
    that look at several of its settings together."""
    return vol.All(_empty_if_none, vol.Schema(schema), *checks)


def period_at_least(minimum: timedelta) -> Callable[[Any], timedelta]:
    """A time period of at least ``minimum``."""

    def check(value: Any) -> timedelta:
        period = cv.time_period(value)
        if period < minimum:
            raise vol.Invalid(
                f"expected a time period of at least {_describe(minimum)}, got {_describe(period)}"
            )
        return period

    return check


def _describe(period: timedelta) -> str:
    seconds = period.total_seconds()
    if seconds and seconds % 86400 == 0:
        return f"{seconds / 86400:g} days"
    if seconds and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
