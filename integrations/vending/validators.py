"""Validators the ``vending:`` block and its built-in platforms share."""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.vending.planogram import SLOT_CODE


def slot_code(value: Any) -> str:
    """A slot code: 1 to 8 letters and digits such as ``A1``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not SLOT_CODE.fullmatch(value):
        raise vol.Invalid(
            f"expected a slot code of 1 to 8 letters and digits such as 'A1', "
            f"got {cv.describe_value(value)}"
        )
    return value


def seconds(value: Any) -> float:
    """A time period longer than 0 (``30``, ``'5min'``, ``{minutes: 5}``) as seconds."""
    result = cv.time_period(value).total_seconds()
    if result <= 0:
        raise vol.Invalid(f"expected a time period longer than 0, got {cv.describe_value(value)}")
    return result


def seconds_or_zero(value: Any) -> float:
    """A time period of 0 or more, as seconds."""
    result = cv.time_period(value).total_seconds()
    if result < 0:
        raise vol.Invalid(f"expected a time period of 0 or more, got {cv.describe_value(value)}")
    return result
