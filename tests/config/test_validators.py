"""validators: each accepts what it documents and refuses the rest with a clear message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.config.nodes import NodeStr


def invalid_message(validator: Callable[[Any], Any], value: Any) -> str:
    with pytest.raises(vol.Invalid) as caught:
        validator(value)
    return caught.value.error_message


@pytest.mark.parametrize(
    ("validator", "value", "expected"),
    [
        (cv.positive_int, 1, 1),
        (cv.positive_int, "12", 12),
        (cv.positive_int, 3.0, 3),
        (cv.non_negative_int, 0, 0),
        (cv.non_negative_int, " 7 ", 7),
        (cv.port, 1, 1),
        (cv.port, 65535, 65535),
        (cv.port, "1883", 1883),
        (cv.money_minor_units, 0, 0),
        (cv.money_minor_units, 150, 150),
        (cv.money_minor_units, "250", 250),
        (cv.money_minor_units, 1_000_000_000, 1_000_000_000),
        (cv.slot_capacity, 10_000, 10_000),
        (cv.slot_capacity, "12", 12),
        (cv.integer, -4, -4),
    ],
)
def test_integers_accept(validator: Callable[[Any], int], value: Any, expected: int) -> None:
    result = validator(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("validator", "value", "message"),
    [
        (cv.positive_int, 0, "expected a positive integer (1 or more), got 0"),
        (cv.positive_int, "abc", "expected a positive integer (1 or more), got 'abc' (str)"),
        (cv.positive_int, True, "got true (a boolean)"),
        (cv.positive_int, 2.5, "got 2.5 (float)"),
        (cv.non_negative_int, -1, "expected a non-negative integer (0 or more), got -1"),
        (cv.non_negative_int, None, "got nothing (an empty value)"),
        (cv.port, 0, "expected a port number from 1 to 65535, got 0"),
        (cv.port, 65536, "got 65536"),
        (cv.port, [1], "got a list"),
        (cv.money_minor_units, -5, "got -5"),
        (
            cv.money_minor_units,
            1.5,
            "minor units (cents) as a whole number, got 1.5; did you mean 150?",
        ),
        (cv.money_minor_units, "1.50", "got '1.50' (str)"),
        # More than the ledger's columns hold: refused here, not when the sale is recorded.
        (cv.money_minor_units, 10**23, "0 to 1,000,000,000, got 100000000000000000000000"),
        (cv.money_minor_units, 1_000_000_001, "0 to 1,000,000,000, got 1000000001"),
        (cv.slot_capacity, 0, "a slot capacity from 1 to 10,000, got 0"),
        (cv.slot_capacity, 99999999999999, "a slot capacity from 1 to 10,000, got 99999999999999"),
        (cv.money_minor_units, 2.0, "got 2.0; did you mean 200 (2.00) or 2 (cents)?"),
        (cv.integer, {"a": 1}, "expected an integer, got a mapping"),
    ],
)
def test_integers_refuse(validator: Callable[[Any], int], value: Any, message: str) -> None:
    assert message in invalid_message(validator, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("lobby_1", "lobby_1"),
        ("a1", "a1"),
        (12, "12"),
        (NodeStr("gym"), "gym"),
    ],
)
def test_slug_accepts(value: Any, expected: str) -> None:
    assert cv.slug(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Lobby 1", "got 'Lobby 1' (str), did you mean 'lobby_1'?"),
        ("A1", "did you mean 'a1'?"),
        ("", "expected a slug (lowercase letters a-z, digits and _), got '' (str)"),
        ("café-north", "did you mean 'cafe_north'?"),
        (None, "got nothing (an empty value)"),
    ],
)
def test_slug_refuses(value: Any, message: str) -> None:
    assert message in invalid_message(cv.slug, value)


def test_entity_id() -> None:
    assert cv.entity_id("slot.lobby_1_a1") == "slot.lobby_1_a1"
    assert "did you mean 'slot.lobby_1_a1'?" in invalid_message(cv.entity_id, "Slot.Lobby 1 A1")
    assert "domain.object_id" in invalid_message(cv.entity_id, "lobby_1")
    assert "domain.object_id" in invalid_message(cv.entity_id, "slot.")
    assert "got 5 (int)" in invalid_message(cv.entity_id, 5)


def test_currency() -> None:
    assert cv.currency("EUR") == "EUR"
    assert cv.currency("RUB") == "RUB"
    assert "got 'eur' (str), did you mean 'EUR'?" in invalid_message(cv.currency, "eur")
    assert "ISO 4217" in invalid_message(cv.currency, "EURO")
    assert "did you mean" not in invalid_message(cv.currency, "E1R")
    assert "got 978 (int)" in invalid_message(cv.currency, 978)


def test_time_zone() -> None:
    assert cv.time_zone("Europe/Berlin") == "Europe/Berlin"
    assert cv.time_zone("UTC") == "UTC"
    message = invalid_message(cv.time_zone, "Europe/Berln")
    assert "got 'Europe/Berln' (str)" in message
    assert "did you mean 'Europe/Berlin'?" in message
    assert "did you mean 'America/New_York'?" in invalid_message(cv.time_zone, "america/new york")
    assert "IANA time zone" in invalid_message(cv.time_zone, "../../etc/passwd")
    assert "got nothing" in invalid_message(cv.time_zone, None)


@pytest.mark.parametrize("value", ["en", "ru", "pt_BR", "fil"])
def test_language_accepts(value: str) -> None:
    assert cv.language(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("pt-BR", "did you mean 'pt_BR'?"),
        ("EN", "got 'EN' (str), did you mean 'en'?"),
        ("english", "expected a language code such as 'en', 'ru' or 'pt_BR', got 'english'"),
        (1, "got 1 (int)"),
    ],
)
def test_language_refuses(value: Any, message: str) -> None:
    assert message in invalid_message(cv.language, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, timedelta(seconds=30)),
        (1.5, timedelta(seconds=1.5)),
        ("30", timedelta(seconds=30)),
        ("00:05:00", timedelta(minutes=5)),
        ("01:30", timedelta(hours=1, minutes=30)),
        ("00:00:01.5", timedelta(seconds=1.5)),
        ({"minutes": 5}, timedelta(minutes=5)),
        ({"hours": 1, "seconds": "30"}, timedelta(hours=1, seconds=30)),
        ({"days": 1, "milliseconds": 250}, timedelta(days=1, milliseconds=250)),
        ("5min", timedelta(minutes=5)),
        ("10s", timedelta(seconds=10)),
        ("500ms", timedelta(milliseconds=500)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30min", timedelta(hours=1, minutes=30)),
        ("1.5 hours", timedelta(hours=1, minutes=30)),
        ("10 Seconds", timedelta(seconds=10)),
        (timedelta(minutes=2), timedelta(minutes=2)),
    ],
)
def test_time_period_forms(value: Any, expected: timedelta) -> None:
    assert cv.time_period(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "expected a time period such as 30 (seconds), '10s', '5min'"),
        ("5 fortnights", "unknown unit 'fortnights'"),
        (-5, "cannot be negative, got -5 (int)"),
        ("-10", "cannot be negative"),
        ({"minuts": 5}, "unknown time period key 'minuts', did you mean 'minutes'?"),
        ({"minutes": "x"}, "expected a number for 'minutes', got 'x' (str)"),
        ({}, "give at least one of days, hours, minutes"),
        (True, "got true (a boolean)"),
        (None, "got nothing (an empty value)"),
        ([5], "got a list"),
        # Too long for a timedelta: refused by name, not an OverflowError (a 500 in the API).
        (1e308, "must be at most 36,500 days, got 1e+308 (float)"),
        (float("inf"), "must be at most 36,500 days"),
        (float("nan"), "must be at most 36,500 days"),
        (10**400, "must be at most 36,500 days"),
        ("99999999999999h", "must be at most 36,500 days"),
        ("9" * 400 + ":00", "must be at most 36,500 days"),
        ({"days": 1e12}, "must be at most 36,500 days, got a mapping"),
        ({"days": 10**400}, "must be at most 36,500 days"),
    ],
)
def test_time_period_refuses(value: Any, message: str) -> None:
    assert message in invalid_message(cv.time_period, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("yes", True),
        ("No", False),
        ("on", True),
        ("OFF", False),
        ("true", True),
        ("false", False),
        ("enable", True),
        (1, True),
        (0, False),
    ],
)
def test_boolean_accepts(value: Any, expected: bool) -> None:
    assert cv.boolean(value) is expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [("maybe", "'maybe' (str)"), (2, "2 (int)"), (None, "nothing (an empty value)")],
)
def test_boolean_refuses(value: Any, shown: str) -> None:
    message = invalid_message(cv.boolean, value)
    assert message == f"expected a boolean (true/false, yes/no, on/off), got {shown}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("50%", 0.5), ("100%", 1.0), ("0%", 0.0), (0.25, 0.25), (1, 1.0), (" 12.5 % ", 0.125)],
)
def test_percentage_accepts(value: Any, expected: float) -> None:
    assert cv.percentage(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (50, "a fraction from 0 to 1, got 50; did you mean '50%'?"),
        ("150%", "from 0% to 100%, got '150%' (str)"),
        (-0.1, "from 0% to 100%"),
        ("half", "expected a percentage such as '50%' or 0.5, got 'half' (str)"),
        ("x%", "got 'x%' (str)"),
        (True, "got true (a boolean)"),
    ],
)
def test_percentage_refuses(value: Any, message: str) -> None:
    assert message in invalid_message(cv.percentage, value)


def test_ensure_list() -> None:
    assert cv.ensure_list(None) == []
    assert cv.ensure_list("en") == ["en"]
    assert cv.ensure_list({"a": 1}) == [{"a": 1}]
    items = ["en", "ru"]
    assert cv.ensure_list(items) is items


def test_string() -> None:
    assert cv.string("Lobby") == "Lobby"
    assert cv.string(42) == "42"
    assert "put the text in quotes" in invalid_message(cv.string, True)
    assert "expected text, got a mapping" in invalid_message(cv.string, {"a": 1})
    assert "expected text, got nothing" in invalid_message(cv.string, None)


def test_url() -> None:
    assert cv.url("http://192.168.1.10:8123") == "http://192.168.1.10:8123"
    assert cv.url("https://hub.example.com/") == "https://hub.example.com/"
    assert "did you mean 'http://hub.local:8123'?" in invalid_message(cv.url, "hub.local:8123")
    assert "got 'ftp://x' (str)" in invalid_message(cv.url, "ftp://x")
    assert "got 5 (int)" in invalid_message(cv.url, 5)


def test_one_of() -> None:
    units = cv.one_of("metric", "imperial")
    assert units("metric") == "metric"
    assert units("Imperial") == "imperial"
    assert (
        invalid_message(units, "metrik")
        == "expected one of 'metric', 'imperial', got 'metrik' (str), did you mean 'metric'?"
    )
    assert invalid_message(units, 3) == "expected one of 'metric', 'imperial', got 3 (int)"


def test_describe_value() -> None:
    assert cv.describe_value("abc") == "'abc' (str)"
    assert cv.describe_value(NodeStr("abc")) == "'abc' (str)"
    assert cv.describe_value(5) == "5 (int)"
    assert cv.describe_value(None) == "nothing (an empty value)"
    assert cv.describe_value(False) == "false (a boolean)"
    assert cv.describe_value([1]) == "a list"


def test_number_accepts_numbers_within_bounds() -> None:
    assert cv.number(0)(4) == 4.0
    assert cv.number(-30, 30)("-2.5") == -2.5
    assert cv.number(0, above=True)(0.01) == 0.01


@pytest.mark.parametrize(
    ("validator", "value", "message"),
    [
        (cv.number(0), -1, "expected a number 0 or more, got -1"),
        (cv.number(0, above=True), 0, "expected a number more than 0, got 0"),
        (cv.number(None, 30), 31, "expected a number of at most 30, got 31"),
        (cv.number(), "warm", "expected a number, got 'warm'"),
        (cv.number(), True, "expected a number"),
        (cv.number(), "nan", "expected a finite number"),
    ],
)
def test_number_refuses(validator: Any, value: Any, message: str) -> None:
    assert message in invalid_message(validator, value)
