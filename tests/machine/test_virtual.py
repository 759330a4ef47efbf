"""The virtual machine model on its own: sales, faults, temperature, door, commands."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from vendhub.machine.virtual import (
    DEFAULT_DAILY_CURVE,
    UnknownSlot,
    VirtualMachine,
)

START = datetime(2024, 5, 6, tzinfo=UTC)
SLOTS = {
    "A1": {"product": "Cola", "price": 150, "capacity": 10},
    "A2": {"product": "Water", "price": 120, "capacity": 10},
    "A3": {"product": "Crisps", "price": 200, "capacity": 10},
}


def make(**overrides: Any) -> VirtualMachine:
    options: dict[str, Any] = {
        "seed": 7,
        "start": START,
        "sales_per_hour": 6,
        "daily_curve": [1] * 24,
        "jam_rate": 0,
        "failure_rate": 0,
        "door_openings_per_day": 0,
    }
    options.update(overrides)
    slots = options.pop("slots", SLOTS)
    return VirtualMachine("m1", slots, **options)


def events(messages: list[dict[str, Any]], name: str | None = None) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "event" and (name is None or m["event"] == name)]


def test_seeded_sales_are_deterministic_and_stock_matches_completed_vends() -> None:
    first, second = make(), make()
    out_first, out_second = first.step(6 * 3600), second.step(6 * 3600)

    def shape(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(m["event"], m["ts"], m["seq"], m["data"].get("slot")) for m in events(messages)]

    assert shape(out_first) == shape(out_second)
    completed = events(out_first, "vend_completed")
    assert 20 <= len(completed) <= 30  # 36 expected at 6/h, but 30 items run out
    sold = Counter(m["data"]["slot"] for m in completed)
    for code, slot in first.slots.items():
        assert slot.stock == 10 - sold[code]
    assert first.revenue == sum(SLOTS[m["data"]["slot"]]["price"] for m in completed)
    assert first.vends_completed == len(completed)
    last = completed[-1]["data"]  # no sale after it: its stock is the slot's stock now
    assert last["stock"] == first.slots[last["slot"]].stock
    # a different seed gives a different day
    assert shape(make(seed=8).step(6 * 3600)) != shape(out_first)


def test_messages_have_unique_ids_increasing_seq_and_protocol_shape() -> None:
    machine = make(refrigerated=True)
    messages = machine.step(3 * 3600)
    ids = [m["id"] for m in events(messages)]
    assert len(ids) == len(set(ids)) > 0
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(1, len(messages) + 1))
    stamps = [datetime.fromisoformat(m["ts"]) for m in messages]
    assert stamps == sorted(stamps)
    assert stamps[0] >= START and stamps[-1] <= datetime(2024, 5, 6, 3, tzinfo=UTC)
    started = events(messages, "vend_started")[0]
    assert set(started) == {"type", "v", "id", "seq", "ts", "event", "data"}
    assert set(started["data"]) == {"vend_id", "slot", "product", "price", "payment_method"}
    telemetry = [m for m in messages if m["type"] == "telemetry"]
    assert len(telemetry) == 180  # one a minute for three hours
    assert set(telemetry[0]) == {"type", "v", "seq", "ts", "readings"}
    assert set(telemetry[0]["readings"]) == {"temperature", "compressor"}
    # every vend_started is followed by its outcome with the same vend id
    for first, second in itertools.pairwise(messages):
        if first.get("event") == "vend_started":
            assert second["event"] in ("vend_completed", "vend_failed")
            assert second["data"]["vend_id"] == first["data"]["vend_id"]


def test_sold_out_slots_never_sell_and_a_sold_out_machine_sells_nothing() -> None:
    slots = {
        "A1": {"product": "Cola", "price": 150, "capacity": 10, "stock": 0},
        "A2": {"product": "Water", "price": 120, "capacity": 10, "stock": 3},
    }
    machine = make(slots=slots, sales_per_hour=30)
    messages = machine.step(5 * 3600)
    slots_sold = {m["data"]["slot"] for m in events(messages, "vend_started")}
    assert slots_sold == {"A2"}
    assert len(events(messages, "vend_completed")) == 3
    assert machine.slots["A1"].stock == 0 and machine.slots["A2"].stock == 0
    assert machine.sold_out
    assert machine.missed_sales > 50  # 150 customers came; 3 found something

    later = machine.step(24 * 3600)
    assert events(later) == []
    assert machine.vends_completed == 3


def test_jam_fails_the_vend_and_leaves_the_stock() -> None:
    machine = make(jam_rate=1.0)
    messages = machine.step(4 * 3600)
    failed = events(messages, "vend_failed")
    assert len(failed) >= 10
    assert events(messages, "vend_completed") == []
    assert {m["data"]["reason"] for m in failed} == {"jam"}
    assert all(slot.stock == 10 for slot in machine.slots.values())
    assert machine.cash_box == 0 and machine.revenue == 0
    assert machine.vends_failed == len(failed)


def test_failure_rate_fails_with_motor_and_rates_split_the_outcomes() -> None:
    slots = {"A1": {"product": "Cola", "price": 100, "capacity": 100000}}
    machine = make(slots=slots, sales_per_hour=60, jam_rate=0.2, failure_rate=0.3)
    messages = machine.step(7 * 24 * 3600)
    outcomes = Counter(
        m["data"].get("reason", "ok") for m in events(messages) if m["event"] != "vend_started"
    )
    total = sum(outcomes.values())
    assert total > 9000
    assert outcomes["jam"] / total == pytest.approx(0.2, abs=0.03)
    assert outcomes["motor"] / total == pytest.approx(0.3, abs=0.03)
    assert machine.slots["A1"].stock == 100000 - outcomes["ok"]


def test_cash_sales_fill_the_cash_box() -> None:
    machine = make()
    messages = machine.step(4 * 3600)
    cash = [m for m in events(messages, "vend_completed") if m["data"]["payment_method"] == "cash"]
    assert cash, "some customers pay cash"
    assert machine.cash_box == sum(m["data"]["price"] for m in cash)
    assert events(messages, "vend_completed")[-1]["data"]["cash_box"] == machine.cash_box
    methods = {m["data"]["payment_method"] for m in events(messages, "vend_started")}
    assert methods <= {"cash", "card", "mobile"} and len(methods) >= 2
    collected = machine.collect_cash()
    assert collected[0]["event"] == "cash_collected"
    assert collected[0]["data"] == {"amount": sum(m["data"]["price"] for m in cash), "cash_box": 0}
    assert machine.cash_box == 0


def test_temperature_stays_near_target_over_a_day() -> None:
    machine = make(refrigerated=True, target_temperature=4.0, sales_per_hour=0)
    telemetry = [m for m in machine.step(24 * 3600) if m["type"] == "telemetry"]
    temperatures = [m["readings"]["temperature"] for m in telemetry]
    assert len(temperatures) == 1440
    assert 2.0 < min(temperatures) < 4.0 < max(temperatures) < 6.0
    assert sum(temperatures) / len(temperatures) == pytest.approx(4.0, abs=0.6)
    compressor = [m["readings"]["compressor"] for m in telemetry]
    switches = sum(1 for a, b in itertools.pairwise(compressor) if a != b)
    assert switches >= 20  # the thermostat cycles, it does not sit on or off


def test_temperature_drifts_up_toward_ambient_with_the_compressor_off() -> None:
    machine = make(refrigerated=True, ambient_temperature=22.0, sales_per_hour=0)
    machine.step(3600)
    machine.set_compressor(False)
    readings = [
        m["readings"]["temperature"] for m in machine.step(3 * 3600) if m["type"] == "telemetry"
    ]
    assert readings[0] < 6.0
    assert readings[-1] > 10.0  # three hours without cooling
    assert readings[-1] < 22.0
    hourly = readings[59::60]
    assert hourly == sorted(hourly)
    assert machine.compressor_on is False

    machine.set_compressor(True)
    machine.step(6 * 3600)
    assert machine.temperature is not None
    assert abs(machine.temperature - 4.0) < 1.6


def test_daily_curve_puts_more_sales_at_the_peak_than_at_4_am() -> None:
    slots = {"A1": {"product": "Cola", "price": 100, "capacity": 1_000_000}}
    machine = make(slots=slots, daily_curve=list(DEFAULT_DAILY_CURVE), sales_per_hour=6)
    messages = machine.step(60 * 24 * 3600)
    by_hour = Counter(
        datetime.fromisoformat(m["ts"]).hour for m in events(messages, "vend_started")
    )
    assert by_hour[12] == pytest.approx(60 * 6, rel=0.2)  # peak factor 1.0
    assert by_hour[4] < 20  # factor 0.02: about 7
    assert by_hour[12] > 10 * by_hour[4]
    assert by_hour[18] > by_hour[15]  # the evening peak
    # an operator's curve: sales only between 9 and 10
    only_nine = [0.0] * 24
    only_nine[9] = 1.0
    machine = make(slots=slots, daily_curve=only_nine, sales_per_hour=20)
    hours = {
        datetime.fromisoformat(m["ts"]).hour
        for m in events(machine.step(5 * 24 * 3600), "vend_started")
    }
    assert hours == {9}


def test_door_opens_and_closes_at_its_daily_rate_and_blocks_sales() -> None:
    machine = make(door_openings_per_day=4, sales_per_hour=0)
    messages = machine.step(30 * 24 * 3600)
    opened, closed = events(messages, "door_opened"), events(messages, "door_closed")
    assert 80 <= len(opened) <= 160
    assert len(closed) == len(opened)
    kinds = [m["event"] for m in events(messages)]
    assert kinds[::2] == ["door_opened"] * len(opened)  # they alternate
    first_open = datetime.fromisoformat(opened[0]["ts"])
    first_close = datetime.fromisoformat(closed[0]["ts"])
    assert 120 <= (first_close - first_open).total_seconds() <= 600

    shut = make(sales_per_hour=60)
    assert shut.set_door(True)[0]["event"] == "door_opened"
    assert shut.set_door(True) == []
    assert events(shut.step(3600), "vend_started") == []  # stays open: no sales
    assert shut.set_door(False)[0]["event"] == "door_closed"
    assert len(events(shut.step(3600), "vend_started")) > 20


def test_forced_vend_and_restock() -> None:
    machine = make(jam_rate=0)
    messages = machine.vend("A1", "card")
    assert [m["event"] for m in messages] == ["vend_started", "vend_completed"]
    assert messages[1]["data"]["stock"] == 9 and machine.slots["A1"].stock == 9
    assert machine.cash_box == 0  # card
    machine.vend("A1", "cash")
    assert machine.cash_box == 150

    restocked = machine.restock("A1")
    assert restocked[0]["event"] == "restocked"
    assert restocked[0]["data"] == {"slots": {"A1": 10}}
    machine.slots["A2"].stock = 1
    assert machine.restock()[0]["data"] == {"slots": {"A1": 10, "A2": 10, "A3": 10}}

    machine.slots["A3"].stock = 0
    failed = machine.vend("A3")
    assert failed[1]["event"] == "vend_failed" and failed[1]["data"]["reason"] == "sold_out"
    with pytest.raises(UnknownSlot, match="no slot 'Z9'"):
        machine.vend("Z9")
    with pytest.raises(ValueError, match="unknown payment method"):
        machine.vend("A1", "barter")


def test_invalid_model_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="24"):
        make(daily_curve=[1] * 23)
    with pytest.raises(ValueError, match="stock 11"):
        make(slots={"A1": {"product": "x", "price": 1, "capacity": 10, "stock": 11}})
    with pytest.raises(ValueError, match="sum to at most 1"):
        make(jam_rate=0.6, failure_rate=0.6)
    with pytest.raises(ValueError, match="backwards"):
        make().step(-1)


def test_live_machines_stamp_messages_with_the_wall_clock() -> None:
    from datetime import UTC, datetime

    from vendhub.machine.virtual import VirtualMachine

    start = datetime(2024, 5, 6, tzinfo=UTC)
    slots = {"A1": {"product": "Cola", "price": 150, "capacity": 10}}
    replay = VirtualMachine("m", slots, seed=1, start=start)
    live = VirtualMachine("m", slots, seed=1, start=start, wall_clock_timestamps=True)
    [replayed] = replay.vend("A1", "cash")[-1:]
    before = datetime.now(UTC)
    [lived] = live.vend("A1", "cash")[-1:]
    assert datetime.fromisoformat(replayed["ts"]) == start
    assert datetime.fromisoformat(lived["ts"]) >= before.replace(
        microsecond=before.microsecond // 1000 * 1000
    )
