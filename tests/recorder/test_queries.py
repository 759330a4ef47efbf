"""Reading history, statistics, transactions and payments, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from tests.recorder.helpers import RecorderRows, ts, utc
from vendhub.recorder.queries import (
    MAX_PAGE_SIZE,
    HistoryState,
    payments,
    sales_statistics,
    sales_totals,
    sensor_statistics,
    state_history,
    transactions,
)
from vendhub.recorder.statistics import compile_period

# ---- state history -------------------------------------------------------------------------------


def test_history_starts_with_the_state_in_force_and_joins_attributes(
    session: Session, rows: RecorderRows
) -> None:
    door = {"device_class": "door", "machine": "lobby_1"}
    rows.state("binary_sensor.lobby_1_door", "off", ts("2024-05-06T08:00:00"), attributes=door)
    rows.state(
        "binary_sensor.lobby_1_door",
        "on",
        ts("2024-05-06T09:59:59"),
        attributes=door,
        context_id="0123456789abcdef0123456789ab",
    )
    rows.state("binary_sensor.lobby_1_door", "off", ts("2024-05-06T10:15:00"), attributes=door)
    # Only the attributes changed: last_changed stays at 10:15.
    rows.state(
        "binary_sensor.lobby_1_door",
        "off",
        ts("2024-05-06T10:20:00"),
        attributes={**door, "battery": 80},
        last_changed=ts("2024-05-06T10:15:00"),
    )
    rows.state("binary_sensor.lobby_1_door", "on", ts("2024-05-06T11:00:00"), attributes=door)
    rows.state("sensor.lobby_1_temperature", "5.5", ts("2024-05-06T10:30:00"))
    rows.state("sensor.elsewhere", "1", ts("2024-05-06T10:30:00"))
    session.commit()

    history = state_history(
        session,
        ["binary_sensor.lobby_1_door", "sensor.lobby_1_temperature", "sensor.never_recorded"],
        utc("2024-05-06T10:00:00"),
        utc("2024-05-06T11:00:00"),
    )

    assert set(history) == {
        "binary_sensor.lobby_1_door",
        "sensor.lobby_1_temperature",
        "sensor.never_recorded",
    }
    door_states = history["binary_sensor.lobby_1_door"]
    assert [(item.state, item.last_updated) for item in door_states] == [
        ("on", utc("2024-05-06T09:59:59")),  # in force at 10:00
        ("off", utc("2024-05-06T10:15:00")),
        ("off", utc("2024-05-06T10:20:00")),
    ]  # 11:00 is the end: not included
    assert door_states[0] == HistoryState(
        entity_id="binary_sensor.lobby_1_door",
        state="on",
        attributes=door,
        last_changed=utc("2024-05-06T09:59:59"),
        last_updated=utc("2024-05-06T09:59:59"),
        context_id="0123456789abcdef0123456789ab",
    )
    assert door_states[2].attributes == {**door, "battery": 80}
    assert door_states[2].last_changed == utc("2024-05-06T10:15:00")
    assert door_states[2].last_changed.tzinfo is UTC
    # One parsed dict per attribute set, shared by the states that have it.
    assert door_states[0].attributes is door_states[1].attributes
    assert history["sensor.lobby_1_temperature"][0].state == "5.5"
    assert history["sensor.lobby_1_temperature"][0].attributes == {}
    assert history["sensor.never_recorded"] == []
    json.dumps([item.as_dict() for item in door_states])  # JSON-ready


def test_history_without_start_state_attributes_or_end(
    session: Session, rows: RecorderRows
) -> None:
    rows.state("slot.lobby_1_a1", "7", ts("2024-05-06T09:00:00"), attributes={"price": 150})
    rows.state("slot.lobby_1_a1", "6", ts("2024-05-06T10:05:00"), attributes={"price": 150})
    rows.state("slot.lobby_1_a1", "5", ts("2024-05-07T23:00:00"), attributes={"price": 150})
    rows.state("slot.lobby_1_a1", None, ts("2024-05-08T01:00:00"))  # removed
    session.commit()

    history = state_history(
        session,
        ["slot.lobby_1_a1"],
        utc("2024-05-06T10:00:00"),
        include_attributes=False,
        include_start_state=False,
    )

    assert [(item.state, item.attributes) for item in history["slot.lobby_1_a1"]] == [
        ("6", {}),
        ("5", {}),
        (None, {}),
    ]


def test_history_start_state_is_the_latest_before_start_per_entity(
    session: Session, rows: RecorderRows
) -> None:
    for minute in range(0, 60, 10):
        rows.state("sensor.a", str(minute), ts(f"2024-05-06T09:{minute:02d}:00"))
        rows.state("sensor.b", str(100 + minute), ts(f"2024-05-06T08:{minute:02d}:00"))
    session.commit()

    history = state_history(session, ["sensor.a", "sensor.b"], utc("2024-05-06T10:00:00"))

    assert [item.state for item in history["sensor.a"]] == ["50"]
    assert [item.state for item in history["sensor.b"]] == ["150"]
    assert history["sensor.b"][0].last_updated == utc("2024-05-06T08:50:00")


def test_queries_refuse_naive_datetimes(session: Session) -> None:
    with pytest.raises(ValueError, match="start must be an aware datetime"):
        state_history(session, ["sensor.a"], datetime(2024, 5, 6, 10))
    with pytest.raises(ValueError, match="end must be an aware datetime"):
        sales_totals(session, start=utc("2024-05-06T00:00"), end=datetime(2024, 5, 7))


# ---- transactions and payments -------------------------------------------------------------------


def _fill_ledger(rows: RecorderRows) -> None:
    """25 vends: lobby_1 gets 15 (Cola by card, Water by cash, 3 failed), gym_2 gets 10."""
    start = ts("2024-05-06T08:00:00")
    for index in range(15):
        rows.vend(
            start + index * 60,
            product="Cola" if index % 2 == 0 else "Water",
            method="card" if index % 2 == 0 else "cash",
            outcome="failed" if index % 5 == 4 else "completed",
            price=150 if index % 2 == 0 else 100,
        )
    for index in range(10):
        rows.vend(start + 3600 + index * 60, machine_id="gym_2", product="Snack", price=200)


def test_transactions_come_newest_first_in_keyset_pages(
    session: Session, rows: RecorderRows
) -> None:
    _fill_ledger(rows)
    session.commit()

    first = transactions(session, limit=10)
    second = transactions(session, limit=10, before_id=first.next_before_id)
    last = transactions(session, limit=10, before_id=second.next_before_id)

    all_ids = [item.id for page in (first, second, last) for item in page.items]
    assert len(all_ids) == 25 and len(set(all_ids)) == 25
    assert all_ids == sorted(all_ids, reverse=True)
    assert first.next_before_id == first.items[-1].id
    assert len(last.items) == 5 and last.next_before_id is None
    newest = first.items[0]
    assert (newest.machine_id, newest.product, newest.price, newest.outcome) == (
        "gym_2",
        "Snack",
        200,
        "completed",
    )
    assert newest.time == utc("2024-05-06T09:09:00")
    assert newest.recorded == utc("2024-05-06T09:09:01")
    assert newest.context_id is not None and len(newest.context_id) == 28
    exact = transactions(session, limit=25)
    assert len(exact.items) == 25 and exact.next_before_id is None
    payload = json.loads(json.dumps(first.as_dict()))
    assert payload["items"][0]["time"] == "2024-05-06T09:09:00+00:00"


def test_transactions_filters(session: Session, rows: RecorderRows) -> None:
    _fill_ledger(rows)
    session.commit()

    def listed(**filters: object) -> list[tuple[str, str | None, str | None, str]]:
        page = transactions(session, limit=1000, **filters)  # type: ignore[arg-type]
        return [
            (item.machine_id, item.product, item.payment_method, item.outcome)
            for item in page.items
        ]

    assert len(listed(machine_id="gym_2")) == 10
    assert {row[1] for row in listed(machine_id="lobby_1", method="cash")} == {"Water"}
    assert len(listed(machine_id="lobby_1", method="cash")) == 7
    assert len(listed(product="Cola")) == 8
    assert listed(outcome="failed") == [
        ("lobby_1", "Cola", "card", "failed"),
        ("lobby_1", "Water", "cash", "failed"),
        ("lobby_1", "Cola", "card", "failed"),
    ]
    # [08:05, 08:10): the vends at minutes 5 to 9.
    window = transactions(session, start=utc("2024-05-06T08:05:00"), end=utc("2024-05-06T08:10:00"))
    assert [item.time.minute for item in window.items] == [9, 8, 7, 6, 5]
    assert listed(machine_id="nowhere") == []


def test_payments_filters_and_pages(session: Session, rows: RecorderRows) -> None:
    _fill_ledger(rows)  # 22 completed vends with a captured payment from "machine"
    rows.payment(ts("2024-05-06T12:00:00"), provider="stripe", status="refunded", amount=300)
    rows.payment(ts("2024-05-06T12:05:00"), provider="stripe", status="authorized")
    session.commit()

    everything = payments(session, limit=1000)
    assert len(everything.items) == 24
    assert [item.status for item in everything.items[:2]] == ["authorized", "refunded"]
    assert everything.items[1].amount == 300 and everything.items[1].transaction_id is None
    assert len(payments(session, provider="machine", limit=1000).items) == 22
    assert len(payments(session, method="cash", limit=1000).items) == 6
    assert len(payments(session, machine_id="gym_2", limit=1000).items) == 10
    refunded = payments(session, status="refunded")
    assert [(item.provider, item.amount, item.created) for item in refunded.items] == [
        ("stripe", 300, utc("2024-05-06T12:00:00"))
    ]
    late = payments(session, start=utc("2024-05-06T09:00:00"), end=utc("2024-05-06T12:01:00"))
    assert len(late.items) == 11
    first = payments(session, limit=20)
    rest = payments(session, limit=20, before_id=first.next_before_id)
    assert len(first.items) == 20 and len(rest.items) == 4 and rest.next_before_id is None
    assert rest.items[0].id < first.items[-1].id


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_SIZE + 1, 5000, True])
def test_page_limit_is_bounded(session: Session, limit: int) -> None:
    with pytest.raises(ValueError, match="limit must be an integer from 1 to 1000"):
        transactions(session, limit=limit)
    with pytest.raises(ValueError, match="limit must be an integer from 1 to 1000"):
        payments(session, limit=limit)


def test_largest_page_is_allowed(session: Session, rows: RecorderRows) -> None:
    rows.vend(ts("2024-05-06T08:00:00"))
    session.commit()
    assert len(transactions(session, limit=MAX_PAGE_SIZE).items) == 1


# ---- statistics ----------------------------------------------------------------------------------


def test_sales_statistics_and_totals_with_filters(session: Session, rows: RecorderRows) -> None:
    _fill_ledger(rows)
    rows.vend(ts("2024-05-06T08:30:00"), product=None, price=90, currency="CHF")
    session.commit()
    for hour in ("2024-05-06T08:00:00", "2024-05-06T09:00:00"):
        compile_period(session, "hour", ts(hour), ts(hour) + 3600)
    session.commit()
    start, end = utc("2024-05-06T00:00:00"), utc("2024-05-07T00:00:00")

    statistics = sales_statistics(session, period="hour", start=start, end=end)

    assert [
        (row.start.hour, row.machine_id, row.product, row.currency, row.vends, row.failed)
        for row in statistics
    ] == [
        (8, "lobby_1", None, "CHF", 1, 0),
        (8, "lobby_1", "Cola", "EUR", 6, 2),
        (8, "lobby_1", "Water", "EUR", 6, 1),
        (9, "gym_2", "Snack", "EUR", 10, 0),
    ]
    assert statistics[1].revenue == 6 * 150 and statistics[3].revenue == 2000
    assert sales_statistics(session, period="hour", start=start, end=end, product="Water")[
        0
    ].revenue == (600)
    assert [
        row.machine_id
        for row in sales_statistics(
            session, period="hour", start=start, end=end, machine_id="gym_2"
        )
    ] == ["gym_2"]
    assert sales_statistics(session, period="day", start=start, end=end) == []

    totals = {total.currency: total for total in sales_totals(session, start=start, end=end)}
    assert (totals["EUR"].vends, totals["EUR"].failed, totals["EUR"].revenue) == (22, 3, 3500)
    assert (totals["CHF"].vends, totals["CHF"].revenue) == (1, 90)
    by_cash = sales_totals(session, start=start, end=end, machine_id="lobby_1", method="cash")
    assert [(t.currency, t.vends, t.failed, t.revenue) for t in by_cash] == [("EUR", 6, 1, 600)]
    snack = sales_totals(session, start=start, end=end, product="Snack")
    assert [(t.vends, t.revenue) for t in snack] == [(10, 2000)]
    with pytest.raises(ValueError, match="period must be one of hour, day"):
        sales_statistics(session, period="week", start=start, end=end)  # type: ignore[arg-type]


def test_sensor_statistics_per_entity(session: Session, rows: RecorderRows) -> None:
    hour = ts("2024-05-06T10:00:00")
    rows.state("sensor.fridge", "4.0", hour - 600)
    rows.state("sensor.fridge", "6.0", hour + 1800)
    rows.state("sensor.fridge", "3.0", hour + 3600 + 60)
    rows.state("machine.lobby_1", "online", hour + 60)
    session.commit()
    for start in (hour, hour + 3600):
        compile_period(session, "hour", start, start + 3600)
    session.commit()

    result = sensor_statistics(
        session,
        ["sensor.fridge", "machine.lobby_1", "sensor.unknown"],
        period="hour",
        start=utc("2024-05-06T00:00:00"),
        end=utc("2024-05-07T00:00:00"),
    )

    assert result["machine.lobby_1"] == [] and result["sensor.unknown"] == []
    first, second = result["sensor.fridge"]
    assert (first.start, first.min, first.mean, first.max, first.samples) == (
        utc("2024-05-06T10:00:00"),
        4.0,
        5.0,
        6.0,
        2,
    )
    assert second.start == utc("2024-05-06T11:00:00")
    assert (second.min, second.max, second.samples) == (3.0, 6.0, 2)
    assert second.mean == pytest.approx((6.0 * 60 + 3.0 * 3540) / 3600)
    assert json.loads(json.dumps(first.as_dict()))["start"] == "2024-05-06T10:00:00+00:00"


def test_day_statistics_are_found_by_their_utc_start(session: Session, rows: RecorderRows) -> None:
    day_start = datetime(2024, 5, 6, tzinfo=UTC) - timedelta(hours=2)  # Berlin midnight, CEST
    rows.vend(day_start.timestamp() + 3600, price=120)
    session.commit()
    compile_period(session, "day", day_start.timestamp(), day_start.timestamp() + 86400)
    session.commit()

    rows_found = sales_statistics(
        session, period="day", start=day_start, end=day_start + timedelta(days=1)
    )

    assert [(row.period, row.start, row.revenue) for row in rows_found] == [("day", day_start, 120)]
