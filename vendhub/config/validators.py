"""Reusable voluptuous validators whose errors say what was expected and what was given."""

from __future__ import annotations

import difflib
import math
import os
import re
import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol

from vendhub.core.states import valid_entity_id
from vendhub.util.slug import slugify
from vendhub.util.text import shorten


def describe_value(value: Any) -> str:
    """`'abc' (str)`, `5 (int)`, `a mapping` ... for the "got ..." part of a message."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{str(value)!r} (str)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r} ({type(value).__name__})"


def _did_you_mean(suggestion: str | None) -> str:
    return f", did you mean '{suggestion}'?" if suggestion else ""


def _integer(value: Any, expected: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise vol.Invalid(f"expected {expected}, got {describe_value(value)}")


def integer(value: Any) -> int:
    """Any whole number; digit strings such as "42" are accepted."""
    return _integer(value, "an integer")


def _integer_at_least(value: Any, minimum: int, expected: str) -> int:
    number = _integer(value, expected)
    if number < minimum:
        raise vol.Invalid(f"expected {expected}, got {number}")
    return number


def positive_int(value: Any) -> int:
    """A whole number of 1 or more."""
    return _integer_at_least(value, 1, "a positive integer (1 or more)")


def non_negative_int(value: Any) -> int:
    """A whole number of 0 or more."""
    return _integer_at_least(value, 0, "a non-negative integer (0 or more)")


MAX_SLOT_CAPACITY = 10_000
"""The most items one slot may hold (a spiral holds tens; a bulk slot hundreds)."""


def slot_capacity(value: Any) -> int:
    """How many items a slot holds: 1 to ``MAX_SLOT_CAPACITY``."""
    expected = f"a slot capacity from 1 to {MAX_SLOT_CAPACITY:,}"
    number = _integer(value, expected)
    if not 1 <= number <= MAX_SLOT_CAPACITY:
        raise vol.Invalid(f"expected {expected}, got {shorten(str(number))}")
    return number


def port(value: Any) -> int:
    """A TCP/UDP port number, 1 to 65535."""
    expected = "a port number from 1 to 65535"
    number = _integer(value, expected)
    if not 1 <= number <= 65535:
        raise vol.Invalid(f"expected {expected}, got {number}")
    return number


MAX_MONEY_MINOR_UNITS = 1_000_000_000
"""The largest amount of money a service or configuration takes, in minor units: ten million
in a currency of cents, and within the ledger's money columns (32-bit on PostgreSQL and
MariaDB), so an amount that is let in can always be recorded."""


def money_minor_units(value: Any) -> int:
    """An amount of money in minor units (cents), 0 to ``MAX_MONEY_MINOR_UNITS``: 150 means
    1.50."""
    if isinstance(value, float):
        suggestion = f"{round(value * 100)}"
        if value.is_integer():
            suggestion += f" ({value:.2f}) or {int(value)} (cents)"
        raise vol.Invalid(
            f"money is written in minor units (cents) as a whole number, got {value!r}; "
            f"did you mean {suggestion}?"
        )
    expected = f"an amount in minor units (cents) as a whole number, 0 to {MAX_MONEY_MINOR_UNITS:,}"
    amount = _integer(value, expected)
    if not 0 <= amount <= MAX_MONEY_MINOR_UNITS:
        raise vol.Invalid(f"expected {expected}, got {shorten(str(amount))}")
    return amount


def number(
    minimum: float | None = None, maximum: float | None = None, *, above: bool = False
) -> Callable[[Any], float]:
    """A validator for a real number within bounds (``above``: strictly above ``minimum``)."""

    def validate(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise vol.Invalid(f"expected a number, got {describe_value(value)}")
        try:
            result = float(value)
        except ValueError:
            raise vol.Invalid(f"expected a number, got {describe_value(value)}") from None
        if not math.isfinite(result):
            raise vol.Invalid(f"expected a finite number, got {describe_value(value)}")
        if minimum is not None and (result <= minimum if above else result < minimum):
            bound = f"more than {minimum:g}" if above else f"{minimum:g} or more"
            raise vol.Invalid(f"expected a number {bound}, got {result:g}")
        if maximum is not None and result > maximum:
            raise vol.Invalid(f"expected a number of at most {maximum:g}, got {result:g}")
        return result

    return validate


def percentage(value: Any) -> float:
    """A share as a fraction 0.0-1.0; accepts "50%" as well as 0.5."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            fraction = float(value.strip()[:-1]) / 100
        except ValueError:
            raise vol.Invalid(
                f"expected a percentage such as '50%' or 0.5, got {describe_value(value)}"
            ) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        fraction = float(value)
        if 1 < fraction <= 100:
            raise vol.Invalid(
                f"a percentage without '%' is a fraction from 0 to 1, got {value}; "
                f"did you mean '{value}%'?"
            )
    else:
        raise vol.Invalid(
            f"expected a percentage such as '50%' or 0.5, got {describe_value(value)}"
        )
    if not 0.0 <= fraction <= 1.0:
        raise vol.Invalid(f"expected a percentage from 0% to 100%, got {describe_value(value)}")
    return fraction


_BOOLEAN_WORDS = {
    "true": True,
    "yes": True,
    "on": True,
    "enable": True,
    "false": False,
    "no": False,
    "off": False,
    "disable": False,
}


def boolean(value: Any) -> bool:
    """true/false, yes/no, on/off, enable/disable (any case), or 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[value.strip().lower()]
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise vol.Invalid(
        f"expected a boolean (true/false, yes/no, on/off), got {describe_value(value)}"
    )


def readable_file(value: Any) -> str:
    """The path of a file that exists and that the hub's user can read (a certificate, a key)."""
    path = string(value)
    if not os.path.isfile(path):
        raise vol.Invalid(f"no such file: {path}")
    if not os.access(path, os.R_OK):
        raise vol.Invalid(f"the file {path} cannot be read by the hub's user")
    return path


def string(value: Any) -> str:
    """Text; numbers are turned into text, but mappings, lists and booleans are refused."""
    if isinstance(value, bool):
        raise vol.Invalid(
            f"expected text, got {describe_value(value)}: YAML reads unquoted "
            "yes/no/on/off/true/false as a boolean; put the text in quotes"
        )
    if isinstance(value, str | int | float):
        return str(value)
    raise vol.Invalid(f"expected text, got {describe_value(value)}")


def ensure_list(value: Any) -> list[Any]:
    """A list as is, nothing as [], anything else as a one-item list."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


class ListOf:
    """Like `[item_schema]`, but reports the errors of every item, not only the first bad one.

    (voluptuous stops a list at the first item whose error lies deeper than the item.)
    """

    def __init__(self, item_schema: Any) -> None:
        self.item_schema = vol.Schema(item_schema)

    def __call__(self, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise vol.Invalid(f"expected a list ('- item' lines), got {describe_value(value)}")
        validated: list[Any] = []
        errors: list[vol.Invalid] = []
        for index, item in enumerate(value):
            try:
                validated.append(self.item_schema(item))
            except vol.MultipleInvalid as err:
                for error in err.errors:
                    error.prepend([index])
                    errors.append(error)
            except vol.Invalid as err:
                err.prepend([index])
                errors.append(err)
        if errors:
            raise vol.MultipleInvalid(errors)
        return validated

    def __repr__(self) -> str:
        return f"list_of({self.item_schema.schema!r})"


def list_of(item_schema: Any) -> ListOf:
    """A list whose every item must match `item_schema`; all bad items are reported."""
    return ListOf(item_schema)


def one_of(*choices: str) -> Callable[[Any], str]:
    """A validator that accepts exactly one of `choices` (compared case-insensitively)."""
    by_lower_case = {choice.lower(): choice for choice in choices}
    listed = ", ".join(repr(choice) for choice in choices)

    def validate_choice(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in by_lower_case:
            return by_lower_case[value.strip().lower()]
        close = (
            difflib.get_close_matches(value.lower(), list(by_lower_case), n=1)
            if isinstance(value, str)
            else []
        )
        suggestion = by_lower_case[close[0]] if close else None
        raise vol.Invalid(
            f"expected one of {listed}, got {describe_value(value)}{_did_you_mean(suggestion)}"
        )

    return validate_choice


_SLUG_PATTERN = re.compile(r"[a-z0-9_]+")


def slug(value: Any) -> str:
    """An identifier of lowercase letters a-z, digits and underscores."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    expected = "a slug (lowercase letters a-z, digits and _)"
    if not isinstance(value, str):
        raise vol.Invalid(f"expected {expected}, got {describe_value(value)}")
    if not _SLUG_PATTERN.fullmatch(value):
        raise vol.Invalid(
            f"expected {expected}, got {describe_value(value)}{_did_you_mean(slugify(value))}"
        )
    return str(value)


def entity_id(value: Any) -> str:
    """`domain.object_id`, both parts slugs, e.g. `slot.lobby_1_a1`."""
    expected = "an entity id such as 'slot.lobby_1_a1' (domain.object_id, lowercase a-z0-9_)"
    if not isinstance(value, str):
        raise vol.Invalid(f"expected {expected}, got {describe_value(value)}")
    domain, dot, object_id = value.partition(".")
    if valid_entity_id(value):
        return str(value)
    suggestion = None
    if dot:
        suggestion = f"{slugify(domain)}.{slugify(object_id)}"
    raise vol.Invalid(
        f"expected {expected}, got {describe_value(value)}{_did_you_mean(suggestion)}"
    )


_CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")


def currency(value: Any) -> str:
    """An ISO 4217 currency code: three upper-case letters such as EUR or USD."""
    expected = "an ISO 4217 currency code of three capital letters such as 'EUR'"
    if isinstance(value, str) and _CURRENCY_PATTERN.fullmatch(value):
        return str(value)
    suggestion = None
    if isinstance(value, str) and _CURRENCY_PATTERN.fullmatch(value.strip().upper()):
        suggestion = value.strip().upper()
    raise vol.Invalid(
        f"expected {expected}, got {describe_value(value)}{_did_you_mean(suggestion)}"
    )


@cache
def _time_zones_by_lower_case() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def time_zone(value: Any) -> str:
    """An IANA time zone name such as 'Europe/Berlin' (checked against the tz database)."""
    expected = "an IANA time zone name such as 'Europe/Berlin' or 'UTC'"
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid(f"expected {expected}, got {describe_value(value)}")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zones = _time_zones_by_lower_case()
        suggestion = zones.get(value.strip().lower().replace(" ", "_"))
        if suggestion is None:
            close = difflib.get_close_matches(value.lower(), list(zones), n=1)
            suggestion = zones[close[0]] if close else None
        raise vol.Invalid(
            f"expected {expected}, got {describe_value(value)}, which is not in the time zone "
            f"database{_did_you_mean(suggestion)}"
        ) from None
    return str(value)


_LANGUAGE_PATTERN = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")


def language(value: Any) -> str:
    """A language code such as 'en', 'ru' or with a region 'pt_BR'."""
    expected = "a language code such as 'en', 'ru' or 'pt_BR'"
    if isinstance(value, str) and _LANGUAGE_PATTERN.fullmatch(value):
        return str(value)
    suggestion = None
    if isinstance(value, str):
        base, _, region = value.strip().replace("-", "_").partition("_")
        candidate = base.lower() + (f"_{region.upper()}" if region else "")
        if _LANGUAGE_PATTERN.fullmatch(candidate):
            suggestion = candidate
    raise vol.Invalid(
        f"expected {expected}, got {describe_value(value)}{_did_you_mean(suggestion)}"
    )


def url(value: Any) -> str:
    """An http:// or https:// address with a host."""
    expected = "a URL such as 'http://192.168.1.10:8123'"
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if parts.scheme in ("http", "https") and parts.netloc:
            return value.strip()
        if "://" not in value and value.strip():
            raise vol.Invalid(
                f"expected {expected}, got {describe_value(value)}; "
                f"did you mean 'http://{value.strip()}'?"
            )
    raise vol.Invalid(f"expected {expected}, got {describe_value(value)}")


# -- time periods ---------------------------------------------------------------------------

_TIME_PERIOD_EXAMPLES = "30 (seconds), '10s', '5min', '1h30min', '00:05:00' or {minutes: 5}"

_SECONDS_PER_UNIT = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}

_SECONDS_PER_DICT_KEY = {
    "days": 86400,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
    "milliseconds": 0.001,
}

_CLOCK_PATTERN = re.compile(r"(\d+):([0-5]?\d)(?::([0-5]?\d(?:\.\d+)?))?")
_UNIT_PART = r"(\d+(?:\.\d+)?)\s*([a-z]+)"
_UNITS_PATTERN = re.compile(rf"(?:\s*{_UNIT_PART}\s*)+")
_UNIT_PART_PATTERN = re.compile(_UNIT_PART)


def _time_period_invalid(value: Any, detail: str = "") -> vol.Invalid:
    return vol.Invalid(
        f"expected a time period such as {_TIME_PERIOD_EXAMPLES}, got {describe_value(value)}"
        + detail
    )


def _seconds_from_text(text: str) -> float | None:
    stripped = text.strip().lower()
    try:
        return float(stripped)
    except ValueError:
        pass
    clock = _CLOCK_PATTERN.fullmatch(stripped)
    if clock:
        hours, minutes, seconds = clock.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds or 0)
    if not _UNITS_PATTERN.fullmatch(stripped):
        return None
    total = 0.0
    for amount, unit in _UNIT_PART_PATTERN.findall(stripped):
        if unit not in _SECONDS_PER_UNIT:
            known_units = ", ".join(sorted(set(_SECONDS_PER_UNIT), key=_SECONDS_PER_UNIT.get))
            raise _time_period_invalid(text, f"; unknown unit '{unit}', known: {known_units}")
        total += float(amount) * _SECONDS_PER_UNIT[unit]
    return total


def _seconds_from_mapping(value: dict[Any, Any]) -> float:
    if not value:
        raise _time_period_invalid(
            value, "; give at least one of " + ", ".join(_SECONDS_PER_DICT_KEY)
        )
    total = 0.0
    for key, amount in value.items():
        if key not in _SECONDS_PER_DICT_KEY:
            close = difflib.get_close_matches(str(key), list(_SECONDS_PER_DICT_KEY), n=1)
            raise vol.Invalid(
                f"unknown time period key {str(key)!r}{_did_you_mean(close[0] if close else None)}"
                f" (known: {', '.join(_SECONDS_PER_DICT_KEY)})"
            )
        if isinstance(amount, bool):
            raise vol.Invalid(f"expected a number for {str(key)!r}, got {describe_value(amount)}")
        try:
            total += float(amount) * _SECONDS_PER_DICT_KEY[key]
        except OverflowError:
            total = float("inf")
        except (TypeError, ValueError):
            raise vol.Invalid(
                f"expected a number for {str(key)!r}, got {describe_value(amount)}"
            ) from None
    return total


MAX_TIME_PERIOD_SECONDS = 100 * 365 * 86400
"""The longest time period taken: a hundred years (``timedelta`` itself ends at 999,999,999 days,
and an infinite or larger number would overflow it)."""


def time_period(value: Any) -> timedelta:
    """A duration: seconds as a number, '10s' / '5min' / '1h30min', 'HH:MM[:SS]', or a mapping
    of days / hours / minutes / seconds / milliseconds. Never negative."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or value is None:
        raise _time_period_invalid(value)
    elif isinstance(value, int | float):
        seconds = float(value) if abs(value) < 1e300 else float("inf")
    elif isinstance(value, str):
        try:
            parsed = _seconds_from_text(value)
        except OverflowError:
            parsed = float("inf")
        if parsed is None:
            raise _time_period_invalid(value)
        seconds = parsed
    elif isinstance(value, dict):
        seconds = _seconds_from_mapping(value)
    else:
        raise _time_period_invalid(value)
    if seconds < 0:
        raise vol.Invalid(f"a time period cannot be negative, got {describe_value(value)}")
    if not seconds <= MAX_TIME_PERIOD_SECONDS:  # also NaN
        raise vol.Invalid(
            f"a time period must be at most {MAX_TIME_PERIOD_SECONDS // 86400:,} days, "
            f"got {shorten(describe_value(value))}"
        )
    return timedelta(seconds=seconds)


def aware_datetime(value: Any) -> datetime:
    """A moment as ISO 8601 (``2024-05-06T12:00:00+02:00``); without an offset it is UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise vol.Invalid(
                f"expected a date and time such as '2024-05-06T12:00:00+02:00', "
                f"got {describe_value(value)}"
            ) from None
    else:
        raise vol.Invalid(f"expected a date and time, got {describe_value(value)}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
