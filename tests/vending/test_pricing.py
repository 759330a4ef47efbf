"""Time-of-day pricing: window edges, weekdays, midnight, daylight saving time, the book."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
import voluptuous as vol

from vendhub.vending.pricing import (
    PRICE_LISTS_SCHEMA,
    PriceBook,
    PriceList,
    PriceRule,
    book_from_config,
    local_instant,
)

BERLIN = ZoneInfo("Europe/Berlin")
MOSCOW = ZoneInfo("Europe/Moscow")


def at(text: str, tz: ZoneInfo = BERLIN) -> datetime:
    """A local wall time in ``tz`` (the first occurrence of a repeated one)."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


AFTERNOON = PriceRule(time(15), time(17), days=frozenset(range(5)), percent=Fraction(-20))
NIGHT = PriceRule(time(22), time(2), days=frozenset({4}), price=100)  # Friday night, fixed
OFFICE = PriceList("office", BERLIN, rules=(AFTERNOON,))


@pytest.mark.parametrize(
    ("moment", "price"),
    [
        ("2024-05-06 14:59:59", 150),  # Monday, a second before the window
        ("2024-05-06 15:00:00", 120),  # the start belongs to the window
        ("2024-05-06 16:59:59", 120),
        ("2024-05-06 17:00:00", 150),  # the end does not
        ("2024-05-11 15:30:00", 150),  # Saturday: not a weekday
    ],
)
def test_a_weekday_afternoon_discount_holds_from_its_start_up_to_its_end(
    moment: str, price: int
) -> None:
    assert OFFICE.price_at("A1", "Cola", 150, at(moment)) == price


def test_the_same_instant_in_another_zone_gets_the_same_price() -> None:
    inside = at("2024-05-06 15:30:00")
    assert OFFICE.price_at("A1", None, 150, inside.astimezone(UTC)) == 120
    assert OFFICE.price_at("A1", None, 150, inside.astimezone(MOSCOW)) == 120
    with pytest.raises(ValueError, match="aware"):
        OFFICE.price_at("A1", None, 150, datetime(2024, 5, 6, 15, 30))


def test_percentages_round_half_up_to_whole_minor_units() -> None:
    assert AFTERNOON.apply(155) == 124  # 124.0
    assert AFTERNOON.apply(153) == 122  # 122.4 -> 122
    assert AFTERNOON.apply(154) == 123  # 123.2 -> 123
    rule = PriceRule(time(0), time(0), percent=Fraction(-50))
    assert rule.apply(151) == 76  # 75.5 -> 76
    assert rule.apply(0) == 0


@pytest.mark.parametrize(
    ("moment", "price"),
    [
        ("2024-05-10 21:59:59", 150),  # Friday before
        ("2024-05-10 22:00:00", 100),
        ("2024-05-10 23:59:59", 100),
        ("2024-05-11 00:00:00", 100),  # past midnight: still Friday's window
        ("2024-05-11 01:59:59", 100),
        ("2024-05-11 02:00:00", 150),
        ("2024-05-11 22:30:00", 150),  # Saturday night: the rule is Friday's only
        ("2024-05-10 01:00:00", 150),  # early Friday: Thursday had no window
    ],
)
def test_a_window_across_midnight_belongs_to_the_day_it_starts(moment: str, price: int) -> None:
    night = PriceList("night", BERLIN, rules=(NIGHT,))
    assert night.price_at("B2", "Water", 150, at(moment)) == price


def test_the_first_matching_rule_decides_and_rules_can_name_slots_or_products() -> None:
    lunch_cola = PriceRule(time(12), time(14), products=frozenset({"Cola"}), price=99)
    all_day = PriceRule(time(0), time(0), percent=Fraction(10))
    slot_b = PriceRule(time(0), time(0), slots=frozenset({"B1"}), price=1)
    prices = PriceList(
        "p", BERLIN, prices={"A1": 200, "Water": 80}, rules=(lunch_cola, slot_b, all_day)
    )
    noon = at("2024-05-06 12:30:00")
    assert prices.price_at("A1", "Cola", 150, noon) == 99  # product rule first
    assert prices.price_at("a1", "Crisps", 150, noon) == 220  # list's A1 price, +10 %
    assert prices.price_at("B1", "Cola", 150, at("2024-05-06 18:00:00")) == 1
    assert prices.price_at("C3", "Water", 150, noon) == 88  # list's product price, +10 %
    assert prices.price_at("C4", "Tea", 150, noon) == 165  # the slot's own base price


def test_a_whole_day_rule_runs_from_its_start_to_the_same_time_next_day() -> None:
    saturday = PriceList(
        "s", BERLIN, rules=(PriceRule(time(0), time(0), days=frozenset({5}), price=50),)
    )
    assert saturday.price_at("A1", None, 150, at("2024-05-10 23:59:59")) == 150
    assert saturday.price_at("A1", None, 150, at("2024-05-11 00:00:00")) == 50
    assert saturday.price_at("A1", None, 150, at("2024-05-11 23:59:59")) == 50
    assert saturday.price_at("A1", None, 150, at("2024-05-12 00:00:00")) == 150


def test_next_change_is_the_next_window_edge() -> None:
    monday_noon = at("2024-05-06 12:00:00")
    assert OFFICE.next_change(monday_noon) == at("2024-05-06 15:00:00")
    assert OFFICE.next_change(at("2024-05-06 15:00:00")) == at("2024-05-06 17:00:00")
    # Friday after the window: the next is Monday's.
    assert OFFICE.next_change(at("2024-05-10 17:00:00")) == at("2024-05-13 15:00:00")
    assert PriceList("none", BERLIN).next_change(monday_noon) is None


def test_spring_forward_an_edge_in_the_skipped_hour_is_the_jump() -> None:
    # 2024-03-31 in Berlin: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    jump = datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    assert local_instant(date(2024, 3, 31), time(2, 30), BERLIN) == jump
    assert local_instant(date(2024, 3, 31), time(3, 0), BERLIN) == jump
    assert local_instant(date(2024, 3, 31), time(1, 59), BERLIN) == datetime(
        2024, 3, 31, 0, 59, tzinfo=UTC
    )
    early = PriceList("e", BERLIN, rules=(PriceRule(time(2, 30), time(4), price=10),))
    assert early.price_at("A1", None, 150, jump - timedelta(seconds=1)) == 150
    assert early.price_at("A1", None, 150, jump) == 10
    assert early.next_change(jump - timedelta(hours=1)) == jump
    # The window is an hour and a half of wall time but only one hour of real time.
    assert early.next_change(jump) == datetime(2024, 3, 31, 2, 0, tzinfo=UTC)


def test_fall_back_a_repeated_hour_counts_once_and_the_window_is_an_hour_longer() -> None:
    # 2024-10-27 in Berlin: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:xx happens twice.
    first_0230 = datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second_0230 = datetime(2024, 10, 27, 1, 30, tzinfo=UTC)  # 02:30 CET
    assert local_instant(date(2024, 10, 27), time(2, 30), BERLIN) == first_0230
    night = PriceList("n", BERLIN, rules=(PriceRule(time(1), time(4), price=10),))
    for minute in range(0, 4 * 60, 7):  # 01:00 CEST up to 04:00 CET: four real hours
        moment = datetime(2024, 10, 26, 23, 0, tzinfo=UTC) + timedelta(minutes=minute)
        assert night.price_at("A1", None, 150, moment) == 10, moment
    assert night.price_at("A1", None, 150, datetime(2024, 10, 27, 3, 0, tzinfo=UTC)) == 150
    assert night.price_at("A1", None, 150, second_0230) == 10
    assert night.next_change(first_0230) == datetime(2024, 10, 27, 3, 0, tzinfo=UTC)


def test_a_midnight_window_on_a_dst_night_keeps_its_edges_in_local_time() -> None:
    night = PriceList(
        "n", BERLIN, rules=(PriceRule(time(22), time(6), days=frozenset({5}), price=10),)
    )
    start = night.next_change(at("2024-03-30 12:00:00"))
    assert start == datetime(2024, 3, 30, 21, 0, tzinfo=UTC)  # 22:00 CET
    end = night.next_change(start)
    assert end == datetime(2024, 3, 31, 4, 0, tzinfo=UTC)  # 06:00 CEST: 7 real hours
    assert night.price_at("A1", None, 150, end - timedelta(seconds=1)) == 10
    assert night.price_at("A1", None, 150, end) == 150


def test_price_at_is_deterministic_and_agrees_with_next_change_over_a_year() -> None:
    rules = (AFTERNOON, NIGHT, PriceRule(time(2, 30), time(3, 30), days=frozenset({6}), price=7))
    prices = PriceList("year", BERLIN, rules=rules)
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    end = datetime(2025, 1, 1, tzinfo=UTC)
    changes = 0
    while (edge := prices.next_change(moment)) is not None and edge < end:
        before = prices.price_at("A1", None, 150, edge - timedelta(microseconds=1))
        after = prices.price_at("A1", None, 150, edge)
        mid = moment + (edge - moment) / 2
        # Nothing changes between two edges.
        assert prices.price_at("A1", None, 150, mid) == prices.price_at("A1", None, 150, moment)
        assert prices.price_at("A1", None, 150, edge) == after  # same answer asked again
        changes += before != after
        moment = edge
    assert changes > 600  # 261 weekday windows and 52 + 52 night ones, each twice


def test_the_book_gives_each_machine_its_list_or_the_default() -> None:
    tz = BERLIN
    config = PRICE_LISTS_SCHEMA(
        {
            "office": {
                "machines": ["lobby_1", "lobby_2"],
                "prices": {"a1": 200},
                "rules": [
                    {"days": "weekdays", "start": "15:00", "end": "17:00", "discount": 20},
                ],
            },
            "everywhere": {"rules": [{"start": "22:00", "end": "02:00", "price": 100}]},
        }
    )
    book = book_from_config(config, tz)
    monday = at("2024-05-06 15:30:00")
    assert book.price_at("lobby_1", "A1", "Cola", 150, monday) == 160
    assert book.price_at("gym_1", "A1", "Cola", 150, monday) == 150
    assert book.price_at("gym_1", "A1", "Cola", 150, at("2024-05-06 23:00:00")) == 100
    slots = {"A1": {"product": "Cola", "price": 150, "capacity": 10, "par": 3}}
    assert book.effective_slots("lobby_2", slots, monday)["A1"]["price"] == 160
    assert slots["A1"]["price"] == 150  # the plan itself is left alone
    assert book.next_change(["lobby_1"], at("2024-05-06 12:00:00")) == at("2024-05-06 15:00:00")
    assert book.next_change(["gym_1"], at("2024-05-06 12:00:00")) == at("2024-05-06 22:00:00")
    assert PriceBook().next_change(["gym_1"], monday) is None


def test_a_machine_in_two_lists_and_two_defaults_are_refused() -> None:
    one = PriceList("one", BERLIN, machines=frozenset({"lobby_1"}))
    with pytest.raises(ValueError, match="lobby_1 is in price lists 'one' and 'two'"):
        PriceBook([one, PriceList("two", BERLIN, machines=frozenset({"lobby_1"}))])
    with pytest.raises(ValueError, match="only one list may be the default"):
        PriceBook([PriceList("a", BERLIN), PriceList("b", BERLIN)])


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"start": "15:00", "end": "17:00"}, "give one of 'percent'"),
        ({"start": "15:00", "percent": -20, "price": 100}, "one way"),
        ({"start": "25:00", "price": 100}, "time of day such as '15:00'"),
        ({"start": 900, "price": 100}, "in quotes"),
        ({"days": ["mon", "funday"], "price": 100}, "expected a day"),
        ({"percent": -120}, "from -100"),
        ({"price": 1.5}, "whole minor units"),
    ],
)
def test_bad_rules_say_what_is_wrong(rule: dict[str, object], message: str) -> None:
    with pytest.raises(vol.Invalid, match=message):
        PRICE_LISTS_SCHEMA({"office": {"rules": [rule]}})
