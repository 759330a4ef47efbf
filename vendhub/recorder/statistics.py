"""Compiling long-term statistics: sales and sensor min/mean/max per hour and per local day.

Hours are UTC hours (every hour of every zone but the few with half-hour offsets). Days run
from local midnight to local midnight in the hub's time zone, so a day is 23, 24 or 25 hours
long around daylight-saving changes. Every compiled period gets a ``statistics_runs`` row;
compiling a period again replaces its rows, so nothing is ever counted twice.

Where each statistic comes from:

- sales, hour and day: the ledger (``vend_transactions``), which is never purged, so a day is
  exact even in a zone whose midnight is not on a UTC hour;
- sensors, hour: the raw ``states`` of the hour plus the state in force at its start;
- sensors, day: the hourly sensor rows of the hours starting in the day (raw states may be
  purged by then).

All functions are synchronous: run them in the recorder's thread, never in the event loop.
``compile_missing`` commits after each period it compiles; the others leave committing to the
caller.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as wall_time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, delete, func, insert, select

from vendhub.recorder.models.history import States
from vendhub.recorder.models.ledger import VendTransaction
from vendhub.recorder.models.statistics import SalesStatistic, SensorStatistic, StatisticsRun
from vendhub.recorder.queries import (
    STATISTICS_PERIODS,
    UNKNOWN_PRODUCT,
    SessionOrConnection,
    StatisticsPeriod,
    states_in_force,
)

HOUR_SECONDS = 3600.0
# A finished hour is compiled only this long after its end, so that state changes still in the
# writer's batch (``commit_interval``) are in the database by then.
DEFAULT_SETTLE_SECONDS = 60.0
# Periods compiled per ``compile_missing`` call, so the writer can interleave its own commits.
DEFAULT_MAX_PERIODS = 24
# A sale recorded up to this long before an hour was compiled may have been committed after
# the compile read the ledger (clocks of several workers, commit order): it is checked again.
LATE_SALE_MARGIN_SECONDS = 120.0
_LATE_SALE_SCAN_CHUNK = 500

# The state in force per entity (metadata_id): (last_updated_ts, state).
StatesInForce = dict[int, tuple[float, str | None]]

# Writes go through the tables, so a Session and a Connection run the same statements.
_SALES = SalesStatistic.__table__
_SENSORS = SensorStatistic.__table__
_RUNS = StatisticsRun.__table__


@dataclass(frozen=True, slots=True)
class CompileResult:
    """What one ``compile_missing`` call compiled (period start times, epoch seconds)."""

    hours: tuple[float, ...] = ()
    days: tuple[float, ...] = ()
    # Hours (and the days holding them) whose sales were compiled again because sales that
    # happened in them were recorded after they had been compiled (machines that were offline).
    late_sales_hours: tuple[float, ...] = ()
    late_sales_days: tuple[float, ...] = ()
    pending: bool = False  # more finished periods wait: call again

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "hours": list(self.hours),
            "days": list(self.days),
            "late_sales_hours": list(self.late_sales_hours),
            "late_sales_days": list(self.late_sales_days),
            "pending": self.pending,
        }


# ---- time ------------------------------------------------------------------------------------


def hour_start(timestamp: float) -> float:
    """The start of the UTC hour holding ``timestamp``."""
    return math.floor(timestamp / HOUR_SECONDS) * HOUR_SECONDS


def local_midnight(day: date, tz: ZoneInfo) -> float:
    """Epoch seconds of the start of ``day`` in ``tz``.

    Where a zone skips midnight (a DST change at 00:00) this is the moment the day begins.
    """
    return datetime.combine(day, wall_time.min, tzinfo=tz).timestamp()


def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[float, float]:
    """[start, end) of the local ``day`` in epoch seconds: 23, 24 or 25 hours around DST."""
    return local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)


def local_day_of(timestamp: float, tz: ZoneInfo) -> date:
    """The local date in ``tz`` at ``timestamp``."""
    return datetime.fromtimestamp(timestamp, tz).date()


def _check_period(period: str) -> StatisticsPeriod:
    if period not in STATISTICS_PERIODS:
        raise ValueError(f"period must be one of {', '.join(STATISTICS_PERIODS)}, got {period!r}")
    return period  # type: ignore[return-value]


def _check_bounds(start_ts: float, end_ts: float) -> None:
    if not end_ts > start_ts:
        raise ValueError(f"the period must end after it starts, got [{start_ts}, {end_ts})")


# ---- sales -----------------------------------------------------------------------------------


def compile_sales(
    session: SessionOrConnection,
    period: StatisticsPeriod,
    start_ts: float,
    end_ts: float,
    *,
    compiled_ts: float | None = None,
) -> int:
    """Aggregate the vends of [start_ts, end_ts) into ``statistics_sales``; return the row count.

    One row per machine, product and currency: completed vends count in ``vends`` and
    ``revenue`` (their prices), failed ones in ``failed``. A vend without a product counts under
    ``UNKNOWN_PRODUCT`` (""). The period's earlier rows are replaced and the period is recorded
    in ``statistics_runs`` (``compiled_ts``, default now). Does not commit.
    """
    checked_period = _check_period(period)
    _check_bounds(start_ts, end_ts)
    written = _write_sales(session, checked_period, start_ts, end_ts)
    _record_run(session, checked_period, start_ts, compiled_ts)
    return written


def _write_sales(
    session: SessionOrConnection, period: StatisticsPeriod, start_ts: float, end_ts: float
) -> int:
    session.execute(
        delete(_SALES).where(SalesStatistic.period == period, SalesStatistic.start_ts == start_ts)
    )
    completed = VendTransaction.outcome == "completed"
    aggregate = (
        select(
            VendTransaction.machine_id,
            VendTransaction.product,
            VendTransaction.currency,
            func.sum(case((completed, 1), else_=0)).label("vends"),
            func.sum(case((VendTransaction.outcome == "failed", 1), else_=0)).label("failed"),
            func.sum(case((completed, VendTransaction.price), else_=0)).label("revenue"),
        )
        .where(
            VendTransaction.ts >= start_ts,
            VendTransaction.ts < end_ts,
            VendTransaction.outcome.in_(("completed", "failed")),
        )
        .group_by(VendTransaction.machine_id, VendTransaction.product, VendTransaction.currency)
    )
    # NULL and "" products both land on UNKNOWN_PRODUCT: merge them here, not in SQL.
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in session.execute(aggregate):
        key = (row.machine_id, row.product or UNKNOWN_PRODUCT, row.currency)
        total = totals[key]
        # SUM() is a DECIMAL on MariaDB and a NUMERIC/BIGINT on PostgreSQL.
        total[0] += int(row.vends)
        total[1] += int(row.failed)
        total[2] += int(row.revenue)
    rows = [
        {
            "period": period,
            "start_ts": start_ts,
            "machine_id": machine_id,
            "product": product,
            "currency": currency,
            "vends": vends,
            "failed": failed,
            "revenue": revenue,
        }
        for (machine_id, product, currency), (vends, failed, revenue) in sorted(totals.items())
    ]
    if rows:
        session.execute(insert(_SALES), rows)
    return len(rows)


# ---- sensors ---------------------------------------------------------------------------------


def numeric_value(state: str | None) -> float | None:
    """The state as a finite number, or None ("unknown", "unavailable", text, NaN, inf)."""
    if state is None:
        return None
    try:
        value = float(state)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(slots=True)
class _SensorSummary:
    minimum: float
    maximum: float
    mean: float
    samples: int


def summarize_numeric_states(
    timeline: Iterable[tuple[float, str | None]], start_ts: float, end_ts: float
) -> _SensorSummary | None:
    """Min, max, time-weighted mean and sample count of a state timeline within a period.

    ``timeline`` is (timestamp, state) oldest first and may begin with the state in force at
    ``start_ts`` (timestamp before it, counted from ``start_ts``; ignored when another state
    replaced it right at ``start_ts``). Each numeric value weighs as
    long as it held: until the next state or ``end_ts``. A non-numeric state ("unavailable")
    holds too but adds nothing; the mean is over the time a number was known. When no numeric
    value held for any time (all at one instant), the mean is the plain mean. None when the
    period saw no number at all.
    """
    entries = list(timeline)
    values: list[float] = []
    weighted_sum = 0.0
    covered_seconds = 0.0
    for index, (timestamp, state) in enumerate(entries):
        value = numeric_value(state)
        if value is None:
            continue
        held_from = max(timestamp, start_ts)
        held_until = entries[index + 1][0] if index + 1 < len(entries) else end_ts
        duration = min(held_until, end_ts) - held_from
        if timestamp < start_ts and duration <= 0:
            continue  # carried in, but replaced right at the start: never held in the period
        values.append(value)
        if duration > 0:
            weighted_sum += value * duration
            covered_seconds += duration
    if not values:
        return None
    mean = weighted_sum / covered_seconds if covered_seconds > 0 else sum(values) / len(values)
    return _SensorSummary(min(values), max(values), mean, len(values))


def compile_sensors(
    session: SessionOrConnection,
    period: StatisticsPeriod,
    start_ts: float,
    end_ts: float,
    *,
    compiled_ts: float | None = None,
) -> int:
    """Compile min/mean/max/samples of every entity's numeric states; return the row count.

    ``hour``: from the raw ``states`` in [start_ts, end_ts) and the state in force at
    ``start_ts`` (the last one before it), which counts as a sample. States that are not finite
    numbers ("unknown", "unavailable", text) are skipped. The mean is TIME-WEIGHTED: each value
    counts for as long as it held (see ``summarize_numeric_states``).

    ``day``: from the hourly rows starting in [start_ts, end_ts): min of the minimums, max of
    the maximums, the mean of the hourly means (each hour weighs the same, which is the
    time-weighted mean when the entity had a number all day), and the sum of the hourly
    samples (a value carried into an hour counts again there).

    Replaces the period's earlier rows, records the period in ``statistics_runs`` and does not
    commit.
    """
    checked_period = _check_period(period)
    _check_bounds(start_ts, end_ts)
    written, _in_force_at_end = _write_sensors(session, checked_period, start_ts, end_ts)
    _record_run(session, checked_period, start_ts, compiled_ts)
    return written


def _write_sensors(
    session: SessionOrConnection,
    period: StatisticsPeriod,
    start_ts: float,
    end_ts: float,
    in_force_at_start: StatesInForce | None = None,
) -> tuple[int, StatesInForce | None]:
    """Write the period's sensor rows; for an hour also return the states in force at its end."""
    session.execute(
        delete(_SENSORS).where(
            SensorStatistic.period == period, SensorStatistic.start_ts == start_ts
        )
    )
    in_force_at_end = None
    if period == "day":
        rows = _sensor_rows_from_hours(session, start_ts, end_ts)
    else:
        rows, in_force_at_end = _sensor_rows_from_states(
            session, period, start_ts, end_ts, in_force_at_start
        )
    if rows:
        session.execute(insert(_SENSORS), rows)
    return len(rows), in_force_at_end


def _sensor_rows_from_states(
    session: SessionOrConnection,
    period: StatisticsPeriod,
    start_ts: float,
    end_ts: float,
    in_force_at_start: StatesInForce | None,
) -> tuple[list[dict[str, Any]], StatesInForce]:
    """Rows from the raw states; ``in_force_at_start`` (from the previous hour) saves a query."""
    if in_force_at_start is None:
        in_force_at_start = {
            row.metadata_id: (row.last_updated_ts, row.state)
            for row in states_in_force(session, start_ts)
        }
    timelines: dict[int, list[tuple[float, str | None]]] = defaultdict(list)
    for metadata_id, (last_updated_ts, state) in in_force_at_start.items():
        if numeric_value(state) is not None:  # a carried "unavailable" adds nothing
            timelines[metadata_id].append((last_updated_ts, state))
    in_force_at_end = dict(in_force_at_start)
    in_period = (
        select(States.metadata_id, States.last_updated_ts, States.state)
        .where(States.last_updated_ts >= start_ts, States.last_updated_ts < end_ts)
        .order_by(States.metadata_id, States.last_updated_ts, States.state_id)
    )
    for metadata_id, last_updated_ts, state in session.execute(in_period):
        timelines[metadata_id].append((last_updated_ts, state))
        in_force_at_end[metadata_id] = (last_updated_ts, state)
    rows = []
    for metadata_id in sorted(timelines):
        summary = summarize_numeric_states(timelines[metadata_id], start_ts, end_ts)
        if summary is None:
            continue
        rows.append(
            {
                "period": period,
                "start_ts": start_ts,
                "metadata_id": metadata_id,
                "min": summary.minimum,
                "mean": summary.mean,
                "max": summary.maximum,
                "samples": summary.samples,
            }
        )
    return rows, in_force_at_end


def _sensor_rows_from_hours(
    session: SessionOrConnection, start_ts: float, end_ts: float
) -> list[dict[str, Any]]:
    aggregate = (
        select(
            SensorStatistic.metadata_id,
            func.min(SensorStatistic.min).label("minimum"),
            func.avg(SensorStatistic.mean).label("mean"),
            func.max(SensorStatistic.max).label("maximum"),
            func.sum(SensorStatistic.samples).label("samples"),
        )
        .where(
            SensorStatistic.period == "hour",
            SensorStatistic.start_ts >= start_ts,
            SensorStatistic.start_ts < end_ts,
        )
        .group_by(SensorStatistic.metadata_id)
        .order_by(SensorStatistic.metadata_id)
    )
    return [
        {
            "period": "day",
            "start_ts": start_ts,
            "metadata_id": row.metadata_id,
            "min": float(row.minimum),
            "mean": float(row.mean),
            "max": float(row.maximum),
            "samples": int(row.samples),
        }
        for row in session.execute(aggregate)
    ]


# ---- periods and runs ------------------------------------------------------------------------


def compile_period(
    session: SessionOrConnection,
    period: StatisticsPeriod,
    start_ts: float,
    end_ts: float,
    *,
    compiled_ts: float | None = None,
) -> int:
    """Compile sales and sensors of one period and record it once; return the rows written.

    Does not commit.
    """
    return _compile_period(session, period, start_ts, end_ts, compiled_ts)[0]


def _compile_period(
    session: SessionOrConnection,
    period: StatisticsPeriod,
    start_ts: float,
    end_ts: float,
    compiled_ts: float | None,
    in_force_at_start: StatesInForce | None = None,
) -> tuple[int, StatesInForce | None]:
    checked_period = _check_period(period)
    _check_bounds(start_ts, end_ts)
    written = _write_sales(session, checked_period, start_ts, end_ts)
    sensor_rows, in_force_at_end = _write_sensors(
        session, checked_period, start_ts, end_ts, in_force_at_start
    )
    _record_run(session, checked_period, start_ts, compiled_ts)
    return written + sensor_rows, in_force_at_end


def _record_run(
    session: SessionOrConnection,
    period: StatisticsPeriod,
    start_ts: float,
    compiled_ts: float | None,
) -> None:
    session.execute(
        delete(_RUNS).where(StatisticsRun.period == period, StatisticsRun.start_ts == start_ts)
    )
    session.execute(
        insert(_RUNS).values(
            period=period,
            start_ts=start_ts,
            compiled_ts=time.time() if compiled_ts is None else compiled_ts,
        )
    )


def compiled_hours(
    session: SessionOrConnection, first_hour_ts: float, last_hour_ts: float
) -> set[float]:
    """Start times of the compiled hours in [first_hour_ts, last_hour_ts]."""
    return set(
        session.execute(
            select(StatisticsRun.start_ts).where(
                StatisticsRun.period == "hour",
                StatisticsRun.start_ts >= first_hour_ts,
                StatisticsRun.start_ts <= last_hour_ts,
            )
        ).scalars()
    )


def _latest_run_start(session: SessionOrConnection, period: StatisticsPeriod) -> float | None:
    return session.execute(
        select(func.max(StatisticsRun.start_ts)).where(StatisticsRun.period == period)
    ).scalar()


def _earliest_run_start(session: SessionOrConnection, period: StatisticsPeriod) -> float | None:
    return session.execute(
        select(func.min(StatisticsRun.start_ts)).where(StatisticsRun.period == period)
    ).scalar()


def _oldest_data_ts(session: SessionOrConnection) -> float | None:
    oldest_state = session.execute(select(func.min(States.last_updated_ts))).scalar()
    oldest_vend = session.execute(select(func.min(VendTransaction.ts))).scalar()
    candidates = [ts for ts in (oldest_state, oldest_vend) if ts is not None]
    return min(candidates) if candidates else None


# ---- compile what is missing -----------------------------------------------------------------


def compile_missing(
    session: SessionOrConnection,
    now_ts: float,
    tz: ZoneInfo,
    *,
    max_periods: int = DEFAULT_MAX_PERIODS,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
) -> CompileResult:
    """Compile the finished hours and local days that have no ``statistics_runs`` row yet.

    1. Late sales: vends recorded after their hour was compiled (a machine that was offline
       sends its outbox later) get their hour's and local day's sales compiled again. They are
       found by walking the ledger's newest ids back to the last compile time: cheap.
    2. Hours, oldest first, from the hour after the newest compiled one (or from the oldest
       state or vend) up to the last hour that ended ``settle_seconds`` before ``now_ts``.
       Once states exist every hour is compiled, even a quiet one (sensors carry their state
       into it); before the first state, hours without a vend are skipped (a machine whose
       clock said 1970 must not make us compile fifty years of empty hours).
    3. Local days in ``tz`` whose hours are all compiled, from the hourly sensor rows and the
       ledger, from the day of the oldest compiled hour on; days without any compiled hour
       are skipped.

    At most ``max_periods`` hours and days per call (late-sale recompiles are not bounded: they
    must all be caught before the next compile moves the mark they are found by); ``pending``
    says more are waiting. Each period is committed on its own, with ``now_ts`` as its
    compile time.
    """
    if max_periods < 1:
        raise ValueError(f"max_periods must be at least 1, got {max_periods}")
    late_hours, late_days = _recompile_late_sales(session, now_ts, tz)
    hours, hours_compiled_until, hours_pending = _compile_missing_hours(
        session, now_ts, max_periods, hour_start(now_ts - settle_seconds)
    )
    days: list[float] = []
    days_pending = False
    if hours_compiled_until is not None:
        days, days_pending = _compile_missing_days(
            session, now_ts, tz, max_periods - len(hours), hours_compiled_until
        )
    return CompileResult(
        hours=tuple(hours),
        days=tuple(days),
        late_sales_hours=tuple(late_hours),
        late_sales_days=tuple(late_days),
        pending=hours_pending or days_pending,
    )


def _compile_missing_hours(
    session: SessionOrConnection, now_ts: float, budget: int, last_settled_end: float
) -> tuple[list[float], float | None, bool]:
    """Compile hours in order; return them, the end of the compiled stretch, and pending."""
    latest_hour = _latest_run_start(session, "hour")
    oldest_state = session.execute(select(func.min(States.last_updated_ts))).scalar()
    if latest_hour is not None:
        next_hour: float | None = latest_hour + HOUR_SECONDS
    else:
        oldest = _oldest_data_ts(session)
        next_hour = None if oldest is None else hour_start(oldest)
    if next_hour is None:
        return [], None, False
    hours: list[float] = []
    # The states in force at the end of one hour are those at the start of the next: carried
    # from hour to hour, they spare a query per hour (one that MariaDB answers slowly for old
    # hours, see queries.states_in_force).
    in_force: StatesInForce | None = None
    while next_hour + HOUR_SECONDS <= last_settled_end:
        if oldest_state is None or next_hour < hour_start(oldest_state):
            # No state can be in force yet: jump to the next hour that has a vend or a state.
            next_data = _next_data_hour(session, next_hour, oldest_state)
            if next_data is None:
                next_hour = last_settled_end
                break
            if next_data > next_hour:
                next_hour = next_data
                in_force = None
                continue
        if len(hours) == budget:
            return hours, next_hour, True
        _written, in_force = _compile_period(
            session, "hour", next_hour, next_hour + HOUR_SECONDS, now_ts, in_force
        )
        session.commit()
        hours.append(next_hour)
        next_hour += HOUR_SECONDS
    if latest_hour is None and not hours:
        return [], None, False
    return hours, min(next_hour, last_settled_end), False


def _next_data_hour(
    session: SessionOrConnection, from_ts: float, oldest_state: float | None
) -> float | None:
    next_vend = session.execute(
        select(func.min(VendTransaction.ts)).where(VendTransaction.ts >= from_ts)
    ).scalar()
    candidates = [ts for ts in (next_vend, oldest_state) if ts is not None]
    return hour_start(min(candidates)) if candidates else None


def _compile_missing_days(
    session: SessionOrConnection,
    now_ts: float,
    tz: ZoneInfo,
    budget: int,
    hours_compiled_until: float,
) -> tuple[list[float], bool]:
    """Compile the local days whose hours are all compiled; return them and pending."""
    latest_day = _latest_run_start(session, "day")
    if latest_day is not None:
        day = local_day_of(latest_day, tz) + timedelta(days=1)
    else:
        earliest_hour = _earliest_run_start(session, "hour")
        if earliest_hour is None:
            return [], False
        day = local_day_of(earliest_hour, tz)
    days: list[float] = []
    while True:
        day_start, day_end = local_day_bounds(day, tz)
        # A day's hours are those starting in it (a day ending at xx:30 includes its last hour).
        if math.ceil(day_end / HOUR_SECONDS) * HOUR_SECONDS > hours_compiled_until:
            return days, False
        next_hour = session.execute(
            select(func.min(StatisticsRun.start_ts)).where(
                StatisticsRun.period == "hour", StatisticsRun.start_ts >= day_start
            )
        ).scalar()
        if next_hour is None:
            return days, False
        if next_hour >= day_end:  # no hour of this day was compiled: nothing happened in it
            day = local_day_of(next_hour, tz)
            continue
        if len(days) == budget:
            return days, True
        compile_period(session, "day", day_start, day_end, compiled_ts=now_ts)
        session.commit()
        days.append(day_start)
        day += timedelta(days=1)


def _recompile_late_sales(
    session: SessionOrConnection, now_ts: float, tz: ZoneInfo
) -> tuple[list[float], list[float]]:
    """Compile again the sales of hours (and days) that got vends recorded after their compile.

    A late vend in an hour that was skipped as empty (before the first state) gets the hour
    compiled in full; so does its day if it lies before the newest compiled day.
    """
    latest_compile = session.execute(
        select(func.max(StatisticsRun.compiled_ts)).where(StatisticsRun.period == "hour")
    ).scalar()
    latest_hour = _latest_run_start(session, "hour")
    if latest_compile is None or latest_hour is None:
        return [], []
    newest_recorded_in_hour = _hours_of_vends_recorded_since(
        session, latest_compile - LATE_SALE_MARGIN_SECONDS
    )
    compiled_at = _compile_times(session, "hour", newest_recorded_in_hour)
    hours = []
    for hour, recorded_ts in sorted(newest_recorded_in_hour.items()):
        if hour in compiled_at:
            if compiled_at[hour] < recorded_ts + LATE_SALE_MARGIN_SECONDS:
                compile_sales(session, "hour", hour, hour + HOUR_SECONDS, compiled_ts=now_ts)
                hours.append(hour)
        elif hour <= latest_hour:  # skipped as empty when the stretch was compiled
            compile_period(session, "hour", hour, hour + HOUR_SECONDS, compiled_ts=now_ts)
            hours.append(hour)
        session.commit()
    latest_day = _latest_run_start(session, "day")
    day_bounds = {local_day_bounds(local_day_of(hour, tz), tz) for hour in hours}
    compiled_days = _compile_times(session, "day", (start for start, _end in day_bounds))
    days = []
    for day_start, day_end in sorted(day_bounds):
        if day_start in compiled_days:
            compile_sales(session, "day", day_start, day_end, compiled_ts=now_ts)
            days.append(day_start)
        elif latest_day is not None and day_start < latest_day:
            compile_period(session, "day", day_start, day_end, compiled_ts=now_ts)
            days.append(day_start)
        session.commit()
    return hours, days


def _hours_of_vends_recorded_since(
    session: SessionOrConnection, recorded_since: float
) -> dict[float, float]:
    """For each hour that has vends recorded at or after ``recorded_since``: the newest one.

    Ids grow in recording order (give or take the margin), so this walks the ledger's ids
    back from the newest until a whole chunk was recorded before the mark.
    """
    newest_recorded_in_hour: dict[float, float] = {}
    before_id: int | None = None
    while True:
        statement = (
            select(VendTransaction.id, VendTransaction.ts, VendTransaction.recorded_ts)
            .order_by(VendTransaction.id.desc())
            .limit(_LATE_SALE_SCAN_CHUNK)
        )
        if before_id is not None:
            statement = statement.where(VendTransaction.id < before_id)
        chunk = session.execute(statement).all()
        for _id, ts, recorded_ts in chunk:
            if recorded_ts >= recorded_since:
                hour = hour_start(ts)
                newest_recorded_in_hour[hour] = max(
                    recorded_ts, newest_recorded_in_hour.get(hour, recorded_ts)
                )
        if len(chunk) < _LATE_SALE_SCAN_CHUNK or all(
            recorded_ts < recorded_since for _id, _ts, recorded_ts in chunk
        ):
            return newest_recorded_in_hour
        before_id = chunk[-1][0]


def _compile_times(
    session: SessionOrConnection, period: StatisticsPeriod, starts: Iterable[float]
) -> dict[float, float]:
    """Compile time of each of the given periods that has a run."""
    wanted = sorted(set(starts))
    if not wanted:
        return {}
    found = session.execute(
        select(StatisticsRun.start_ts, StatisticsRun.compiled_ts).where(
            StatisticsRun.period == period, StatisticsRun.start_ts.in_(wanted)
        )
    )
    return {start_ts: compiled_ts for start_ts, compiled_ts in found}
