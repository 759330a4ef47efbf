"""Compiling sales and sensor statistics per hour and local day, on every backend."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tests.recorder.helpers import RecorderRows, count_rows, ts, utc
from vendhub.recorder.models import (
    SalesStatistic,
    SensorStatistic,
    States,
    StatesMeta,
    StatisticsRun,
)
from vendhub.recorder.queries import sales_statistics, sales_totals, sensor_statistics
from vendhub.recorder.statistics import (
    CompileResult,
    compile_missing,
    compile_sales,
    compile_sensors,
    local_day_bounds,
    numeric_value,
    summarize_numeric_states,
)

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0
# Berlin's 2024-03-31 ran from 2024-03-30T23:00Z (CET) to 2024-03-31T22:00Z (CEST): 23 hours.
DST_DAY_START = ts("2024-03-30T23:00:00")
DST_DAY_END = ts("2024-03-31T22:00:00")


def utc_of(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def sales_by_key(
    session: Session, period: str, start_ts: float
) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    found = session.execute(
        select(SalesStatistic).where(
            SalesStatistic.period == period, SalesStatistic.start_ts == start_ts
        )
    ).scalars()
    return {
        (row.machine_id, row.product, row.currency): (row.vends, row.failed, row.revenue)
        for row in found
    }


def sensor_row(
    session: Session, entity_id: str, period: str, start_ts: float
) -> SensorStatistic | None:
    return session.execute(
        select(SensorStatistic)
        .join(StatesMeta, StatesMeta.metadata_id == SensorStatistic.metadata_id)
        .where(
            StatesMeta.entity_id == entity_id,
            SensorStatistic.period == period,
            SensorStatistic.start_ts == start_ts,
        )
    ).scalar_one_or_none()


def compile_until_done(
    session: Session, now_ts: float, max_periods: int = 24
) -> list[CompileResult]:
    results = [compile_missing(session, now_ts, BERLIN, max_periods=max_periods)]
    while results[-1].pending:
        results.append(compile_missing(session, now_ts, BERLIN, max_periods=max_periods))
        assert len(results) < 1000
    return results


# ---- numbers and time weighting (no database) --------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("5", 5.0),
        ("-3.25", -3.25),
        ("1e3", 1000.0),
        ("unknown", None),
        ("unavailable", None),
        ("on", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_numeric_value(state: str | None, expected: float | None) -> None:
    assert numeric_value(state) == expected


def test_mean_is_time_weighted_over_the_time_a_number_was_known() -> None:
    start, end = 0.0, 3600.0
    summary = summarize_numeric_states(
        [(-1800.0, "4.0"), (600.0, "10"), (2400.0, "unavailable"), (3000.0, "7")], start, end
    )
    assert summary is not None
    assert (summary.minimum, summary.maximum, summary.samples) == (4.0, 10.0, 3)
    assert summary.mean == pytest.approx((4 * 600 + 10 * 1800 + 7 * 600) / 3000)


def test_mean_falls_back_to_the_plain_mean_when_no_number_held_for_any_time() -> None:
    summary = summarize_numeric_states([(10.0, "5"), (10.0, "unavailable")], 0.0, 60.0)
    assert summary is not None and (summary.mean, summary.samples) == (5.0, 1)
    assert summarize_numeric_states([(10.0, "unknown")], 0.0, 60.0) is None
    assert summarize_numeric_states([], 0.0, 60.0) is None


# ---- sales ---------------------------------------------------------------------------------------


def test_compile_sales_aggregates_one_hour_per_machine_product_and_currency(
    session: Session, rows: RecorderRows
) -> None:
    hour = ts("2024-05-06T10:00:00")
    for minute in (0, 10, 59):
        rows.vend(hour + minute * 60, product="Cola", price=150)
    rows.vend(hour + 1200, product="Cola", price=150, outcome="failed")
    rows.vend(hour + 1300, product="Water", price=100, method="cash")
    rows.vend(hour + 1400, machine_id="gym_2", product="Cola", price=160)
    rows.vend(hour + 1500, product="Cola", price=300, currency="CHF")
    rows.vend(hour + 1600, product=None, price=90)
    rows.vend(hour - 1, price=999)  # the hour before
    rows.vend(hour + HOUR, price=999)  # the end is not included
    session.commit()

    written = compile_sales(session, "hour", hour, hour + HOUR, compiled_ts=hour + 4000)
    session.commit()

    assert written == 5
    assert sales_by_key(session, "hour", hour) == {
        ("lobby_1", "Cola", "EUR"): (3, 1, 450),
        ("lobby_1", "Water", "EUR"): (1, 0, 100),
        ("gym_2", "Cola", "EUR"): (1, 0, 160),
        ("lobby_1", "Cola", "CHF"): (1, 0, 300),
        ("lobby_1", "", "EUR"): (1, 0, 90),
    }
    run = session.execute(select(StatisticsRun)).scalar_one()
    assert (run.period, run.start_ts, run.compiled_ts) == ("hour", hour, hour + 4000)


def test_compiling_a_period_again_replaces_its_rows(session: Session, rows: RecorderRows) -> None:
    hour = ts("2024-05-06T10:00:00")
    rows.vend(hour + 60, price=150)
    rows.state("sensor.fridge", "5", hour + 60)
    session.commit()
    for _ in range(3):
        compile_sales(session, "hour", hour, hour + HOUR)
        compile_sensors(session, "hour", hour, hour + HOUR)
        session.commit()
    assert sales_by_key(session, "hour", hour) == {("lobby_1", "Cola", "EUR"): (1, 0, 150)}
    assert count_rows(session, SensorStatistic) == 1
    assert count_rows(session, StatisticsRun) == 1

    rows.vend(hour + 120, price=150)
    session.commit()
    compile_sales(session, "hour", hour, hour + HOUR)
    session.commit()

    assert sales_by_key(session, "hour", hour) == {("lobby_1", "Cola", "EUR"): (2, 0, 300)}
    assert count_rows(session, SalesStatistic) == 1


def test_compile_refuses_unknown_periods_and_empty_bounds(session: Session) -> None:
    with pytest.raises(ValueError, match="period must be one of hour, day"):
        compile_sales(session, "minute", 0.0, 60.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must end after it starts"):
        compile_sensors(session, "hour", 3600.0, 3600.0)
    with pytest.raises(ValueError, match="max_periods must be at least 1"):
        compile_missing(session, 0.0, BERLIN, max_periods=0)


# ---- sensors -------------------------------------------------------------------------------------


def test_compile_sensors_carries_the_start_state_and_skips_what_is_not_a_number(
    session: Session, rows: RecorderRows
) -> None:
    hour = ts("2024-05-06T10:00:00")
    rows.state("sensor.fridge", "4.0", hour - 1800)  # in force at 10:00
    rows.state("sensor.fridge", "10.0", hour + 600)
    rows.state("sensor.fridge", "unavailable", hour + 2400)
    rows.state("sensor.fridge", "7", hour + 3000)
    rows.state("sensor.constant", "3.5", hour - 7200)  # nothing new this hour
    rows.state("sensor.broken", "unknown", hour - 100)
    rows.state("sensor.broken", "abc", hour + 100)
    rows.state("sensor.nan", "nan", hour + 5)
    rows.state("machine.lobby_1", "online", hour + 60)
    rows.state("sensor.later", "1", hour + HOUR)
    rows.state("sensor.back", "unavailable", hour - 60)
    rows.state("sensor.back", "2", hour + 1800)
    session.commit()

    written = compile_sensors(session, "hour", hour, hour + HOUR)
    session.commit()

    assert written == 3
    fridge = sensor_row(session, "sensor.fridge", "hour", hour)
    assert fridge is not None
    assert (fridge.min, fridge.max, fridge.samples) == (4.0, 10.0, 3)
    assert fridge.mean == pytest.approx(8.2)  # (4·600 + 10·1800 + 7·600) / 3000 s with a number
    constant = sensor_row(session, "sensor.constant", "hour", hour)
    assert constant is not None
    assert (constant.min, constant.mean, constant.max, constant.samples) == (3.5, 3.5, 3.5, 1)
    back = sensor_row(session, "sensor.back", "hour", hour)
    assert back is not None and (back.min, back.mean, back.max, back.samples) == (2, 2, 2, 1)
    for entity_id in ("sensor.broken", "sensor.nan", "machine.lobby_1", "sensor.later"):
        assert sensor_row(session, entity_id, "hour", hour) is None


def test_day_sensor_statistics_come_from_the_hourly_rows(
    session: Session, rows: RecorderRows
) -> None:
    day_start, day_end = local_day_bounds(date(2024, 5, 6), BERLIN)
    for index in range(24):
        rows.state("sensor.fridge", str(index), day_start + index * HOUR)
    session.commit()
    for index in range(24):
        compile_sensors(session, "hour", day_start + index * HOUR, day_start + (index + 1) * HOUR)
    session.execute(delete(States))  # raw history purged: the day still compiles
    written = compile_sensors(session, "day", day_start, day_end)
    session.commit()

    assert written == 1
    day = sensor_row(session, "sensor.fridge", "day", day_start)
    assert day is not None
    assert (day.min, day.mean, day.max, day.samples) == (0.0, 11.5, 23.0, 24)


# ---- compile_missing -----------------------------------------------------------------------------


def _fill_dst_weekend(rows: RecorderRows) -> None:
    """25 hours from 2024-03-30T22:00Z: vend i at :30 (100+i cents), fridge reads i at :10."""
    first_hour = ts("2024-03-30T22:00:00")
    for index in range(25):
        rows.vend(first_hour + index * HOUR + 1800, price=100 + index)
        rows.state("sensor.fridge", str(index), first_hour + index * HOUR + 600)
    rows.vend(first_hour + 5 * HOUR + 1900, outcome="failed")


def test_compile_missing_compiles_hours_and_the_23_hour_local_day(
    session: Session, rows: RecorderRows
) -> None:
    _fill_dst_weekend(rows)
    session.commit()
    now = ts("2024-03-31T23:05:00")

    result = compile_missing(session, now, BERLIN, max_periods=100)

    first_hour = ts("2024-03-30T22:00:00")
    assert result.hours == tuple(first_hour + index * HOUR for index in range(25))
    assert result.days == (ts("2024-03-29T23:00:00"), DST_DAY_START)
    assert result.pending is False
    assert local_day_bounds(date(2024, 3, 31), BERLIN) == (DST_DAY_START, DST_DAY_END)
    assert sales_by_key(session, "day", DST_DAY_START) == {
        ("lobby_1", "Cola", "EUR"): (23, 1, sum(100 + index for index in range(1, 24)))
    }
    assert sales_by_key(session, "day", ts("2024-03-29T23:00:00")) == {
        ("lobby_1", "Cola", "EUR"): (1, 0, 100)
    }
    assert (
        count_rows(
            session,
            SensorStatistic,
            SensorStatistic.period == "hour",
            SensorStatistic.start_ts >= DST_DAY_START,
            SensorStatistic.start_ts < DST_DAY_END,
        )
        == 23
    )
    day = sensor_row(session, "sensor.fridge", "day", DST_DAY_START)
    assert day is not None
    # Hour k (1..23) holds k-1 for 10 minutes, then k: mean k - 1/6.
    assert (day.min, day.max, day.samples) == (0.0, 23.0, 46)
    assert day.mean == pytest.approx(12 - 1 / 6)
    first = sensor_row(session, "sensor.fridge", "hour", first_hour)
    assert first is not None and (first.min, first.mean, first.max, first.samples) == (0, 0, 0, 1)
    # The next local day (to 2024-04-01T22:00Z) is not over yet; nothing is compiled twice.
    again = compile_missing(session, now, BERLIN)
    assert (again.hours, again.days, again.pending) == ((), (), False)
    assert count_rows(session, StatisticsRun, StatisticsRun.period == "day") == 2
    # The query side finds the day by its UTC start.
    found = sales_statistics(
        session, period="day", start=utc("2024-03-30T23:00:00"), end=utc("2024-03-31T22:00:00")
    )
    assert [(row.start, row.vends) for row in found] == [(utc("2024-03-30T23:00:00"), 23)]
    fridge_days = sensor_statistics(
        session,
        ["sensor.fridge"],
        period="day",
        start=utc("2024-03-29T00:00:00"),
        end=utc("2024-04-02T00:00:00"),
    )["sensor.fridge"]
    assert [row.start for row in fridge_days] == [
        utc("2024-03-29T23:00:00"),
        utc("2024-03-30T23:00:00"),
    ]


def test_compile_missing_waits_for_the_hour_to_settle(session: Session, rows: RecorderRows) -> None:
    rows.state("sensor.fridge", "5", ts("2024-05-06T10:10:00"))
    session.commit()
    assert compile_missing(session, ts("2024-05-06T11:00:30"), BERLIN).hours == ()
    assert compile_missing(session, ts("2024-05-06T11:01:00"), BERLIN).hours == (
        ts("2024-05-06T10:00:00"),
    )


def test_compile_missing_is_bounded_per_call_and_resumes(
    session: Session, rows: RecorderRows
) -> None:
    _fill_dst_weekend(rows)
    session.commit()

    results = compile_until_done(session, ts("2024-03-31T23:05:00"), max_periods=5)

    assert [len(result.hours) + len(result.days) for result in results] == [5, 5, 5, 5, 5, 2]
    assert all(result.pending for result in results[:-1]) and not results[-1].pending
    hours = [hour for result in results for hour in result.hours]
    assert len(hours) == len(set(hours)) == 25
    assert [day for result in results for day in result.days] == [
        ts("2024-03-29T23:00:00"),
        DST_DAY_START,
    ]


def test_compile_missing_skips_empty_hours_before_the_first_state(
    session: Session, rows: RecorderRows
) -> None:
    rows.vend(ts("1970-01-01T00:30:00"))  # a machine whose clock had not been set
    rows.state("sensor.fridge", "4", ts("2024-03-31T00:10:00"))
    session.commit()

    results = compile_until_done(session, ts("2024-03-31T03:05:00"))

    assert [hour for result in results for hour in result.hours] == [
        0.0,
        ts("2024-03-31T00:00:00"),
        ts("2024-03-31T01:00:00"),
        ts("2024-03-31T02:00:00"),
    ]
    assert [day for result in results for day in result.days] == [ts("1969-12-31T23:00:00")]
    assert sales_by_key(session, "day", ts("1969-12-31T23:00:00")) == {
        ("lobby_1", "Cola", "EUR"): (1, 0, 150)
    }


def test_late_sales_recompile_their_hour_and_day(session: Session, rows: RecorderRows) -> None:
    _fill_dst_weekend(rows)
    session.commit()
    compile_until_done(session, ts("2024-03-31T23:05:00"))
    hour = ts("2024-03-31T10:00:00")
    assert sales_by_key(session, "hour", hour) == {("lobby_1", "Cola", "EUR"): (1, 0, 112)}
    # A machine that was offline delivers a sale of 10:15Z at 00:10Z the next night.
    rows.vend(hour + 900, price=500, recorded_at=ts("2024-04-01T00:10:00"))
    session.commit()

    late = compile_missing(session, ts("2024-04-01T00:10:00"), BERLIN)

    assert late.late_sales_hours == (hour,)
    assert late.late_sales_days == (DST_DAY_START,)
    assert late.hours == (ts("2024-03-31T23:00:00"),)
    assert sales_by_key(session, "hour", hour) == {("lobby_1", "Cola", "EUR"): (2, 0, 612)}
    day_total = sum(100 + index for index in range(1, 24)) + 500
    assert sales_by_key(session, "day", DST_DAY_START) == {
        ("lobby_1", "Cola", "EUR"): (24, 1, day_total)
    }
    # A sale recorded within the safety margin before a compile may have been committed after
    # it read the ledger: the next compile counts it once more (same result), then no more.
    again = compile_missing(session, ts("2024-04-01T00:15:00"), BERLIN)
    assert again.late_sales_hours == (hour,)
    assert sales_by_key(session, "hour", hour) == {("lobby_1", "Cola", "EUR"): (2, 0, 612)}
    quiet = compile_missing(session, ts("2024-04-01T00:20:00"), BERLIN)
    assert (quiet.late_sales_hours, quiet.late_sales_days) == ((), ())


def test_statistics_agree_with_the_ledger(session: Session, rows: RecorderRows) -> None:
    generator = random.Random(20240331)
    start, end = ts("2024-03-29T00:00:00"), ts("2024-04-02T00:00:00")
    machines = ("lobby_1", "lobby_2", "gym_3")
    products = {"Cola": 150, "Water": 100, "Snack": 220, None: 80}
    expected = Counter[str]()
    for _ in range(600):
        product = generator.choice(list(products))
        outcome = "failed" if generator.random() < 0.1 else "completed"
        currency = "CHF" if generator.random() < 0.2 else "EUR"
        rows.vend(
            generator.uniform(start, end),
            machine_id=generator.choice(machines),
            product=product,
            price=products[product],
            currency=currency,
            outcome=outcome,
            method=generator.choice(("card", "cash", "mobile")),
        )
        if outcome == "completed":
            expected[currency] += products[product]
    session.commit()

    compile_until_done(session, ts("2024-04-03T00:00:00"))

    period_start, period_end = utc("2024-03-28T00:00:00"), utc("2024-04-03T00:00:00")
    ledger = {
        total.currency: (total.vends, total.failed, total.revenue)
        for total in sales_totals(session, start=period_start, end=period_end)
    }
    assert {currency: values[2] for currency, values in ledger.items()} == dict(expected)
    for period in ("hour", "day"):
        compiled: dict[str, list[int]] = {}
        for row in sales_statistics(session, period=period, start=period_start, end=period_end):
            totals = compiled.setdefault(row.currency, [0, 0, 0])
            totals[0] += row.vends
            totals[1] += row.failed
            totals[2] += row.revenue
        assert {currency: tuple(values) for currency, values in compiled.items()} == ledger
    # Per machine and per local day too.
    for machine_id in machines:
        for day_offset in range(4):
            day_start, day_end = local_day_bounds(
                date(2024, 3, 29) + timedelta(days=day_offset), BERLIN
            )
            day_rows = sales_statistics(
                session,
                period="day",
                start=utc_of(day_start),
                end=utc_of(day_end),
                machine_id=machine_id,
            )
            by_currency = {
                total.currency: (total.vends, total.failed, total.revenue)
                for total in sales_totals(
                    session, start=utc_of(day_start), end=utc_of(day_end), machine_id=machine_id
                )
            }
            from_statistics: dict[str, tuple[int, int, int]] = {}
            for row in day_rows:
                vends, failed, revenue = from_statistics.get(row.currency, (0, 0, 0))
                from_statistics[row.currency] = (
                    vends + row.vends,
                    failed + row.failed,
                    revenue + row.revenue,
                )
            assert from_statistics == by_currency


def test_hours_compiled_in_a_row_match_hours_compiled_alone(
    session: Session, rows: RecorderRows
) -> None:
    # compile_missing carries the states in force from hour to hour instead of querying them.
    first_hour = ts("2024-05-06T08:00:00")
    generator = random.Random(5)
    for entity_id in ("sensor.fridge", "sensor.door_count", "sensor.flaky"):
        for _ in range(40):
            value = generator.choice(["unavailable", "unknown", *map(str, range(-3, 9))])
            rows.state(entity_id, value, first_hour + generator.uniform(0, 6 * HOUR))
    rows.state("sensor.flaky", "unavailable", first_hour + 2 * HOUR - 1)
    session.commit()
    compile_until_done(session, first_hour + 6 * HOUR + 120)

    def hourly_rows() -> list[tuple[int, float, float, float, float, int]]:
        found = session.execute(
            select(SensorStatistic)
            .where(SensorStatistic.period == "hour")
            .order_by(SensorStatistic.start_ts, SensorStatistic.metadata_id)
        ).scalars()
        return [
            (row.metadata_id, row.start_ts, row.min, round(row.mean, 9), row.max, row.samples)
            for row in found
        ]

    in_a_row = hourly_rows()
    for index in range(6):
        compile_sensors(session, "hour", first_hour + index * HOUR, first_hour + (index + 1) * HOUR)
    session.commit()

    assert len(in_a_row) == 18
    assert hourly_rows() == in_a_row


def test_an_empty_database_has_nothing_to_compile(session: Session) -> None:
    result = compile_missing(session, ts("2024-05-06T12:00:00"), BERLIN)
    assert result == CompileResult()
    assert count_rows(session, StatisticsRun) == 0
