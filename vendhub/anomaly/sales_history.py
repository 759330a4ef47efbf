"""A machine's own history of hourly sales: from the recorder's statistics, or kept in memory.

Both sources answer one question: for these machines and these (UTC) hour starts, how many
items did each machine sell in each hour that counts as history? An hour counts when it is
known: compiled by the recorder (from the machine's first hour with a vend on; an hour
without a row for the machine is a hour it sold nothing), or, in memory, an hour the
detector watched from start to end while the machine was online and in normal mode. Unknown
hours are left out, never taken as zero.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy import func, select

from vendhub.helpers.storage import Store
from vendhub.recorder.models.statistics import SalesStatistic, StatisticsRun
from vendhub.recorder.recorder import get_recorder

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.recorder.queries import SessionOrConnection

_LOGGER = logging.getLogger(__name__)

HOUR = 3600.0
CompareWith = Literal["hour_of_day", "hour_of_week", "recent_hours"]
COMPARE_WITH: tuple[CompareWith, ...] = ("hour_of_day", "hour_of_week", "recent_hours")

STORAGE_KEY = "anomaly.sales_history"
STORAGE_VERSION = 1
SAVE_DELAY_SECONDS = 60.0

HourlyCounts = dict[str, dict[float, int]]
"""machine id -> UTC hour start (epoch seconds) -> items sold."""


def hour_start(timestamp: float) -> float:
    """The start of the UTC hour holding ``timestamp``."""
    return timestamp - timestamp % HOUR


def comparable_hours(
    hour: float, compare_with: CompareWith, history: timedelta, tz: tzinfo
) -> list[float]:
    """The earlier hours whose sales the hour starting at ``hour`` is compared with, newest first.

    ``hour_of_day``: the same local hour on each earlier day within ``history``;
    ``hour_of_week``: the same local hour and weekday; ``recent_hours``: every hour before.
    Local wall-clock arithmetic keeps "12:00" at 12:00 across daylight-saving changes.
    """
    if compare_with == "recent_hours":
        count = int(history.total_seconds() // HOUR)
        return [hour - HOUR * step for step in range(1, count + 1)]
    step_days = 1 if compare_with == "hour_of_day" else 7
    local = datetime.fromtimestamp(hour, tz)
    hours: list[float] = []
    step = 1
    while timedelta(days=step * step_days) <= history:
        earlier = local - timedelta(days=step * step_days)  # wall-clock arithmetic
        hours.append(hour_start(earlier.timestamp()))
        step += 1
    return hours


class SalesHistory(Protocol):
    """Where a sales history comes from."""

    async def async_counts(
        self, machine_ids: Sequence[str], hours: Sequence[float]
    ) -> HourlyCounts:
        """Items sold per machine in each of ``hours`` that counts as history."""


class MemorySalesHistory:
    """Hourly counts the detector itself saw, kept for ``keep`` and saved in ``.storage``."""

    def __init__(self, hub: Hub, keep: timedelta) -> None:
        self.keep = keep
        self.counts: HourlyCounts = {}
        self._store: Store[dict[str, Any]] = Store(hub, STORAGE_KEY, STORAGE_VERSION)

    async def async_load(self) -> None:
        """Read the counts saved before a restart (a broken file starts an empty history)."""
        try:
            data = await self._store.async_load() or {}
        except Exception as error:  # a newer or unreadable file: start afresh, keep the file
            _LOGGER.warning("Could not read the saved sales history (%s); starting anew", error)
            return
        for machine_id, hours in data.get("machines", {}).items():
            self.counts[machine_id] = {float(hour): int(count) for hour, count in hours.items()}

    def record(self, machine_id: str, hour: float, count: int) -> None:
        """Remember that ``machine_id`` sold ``count`` items in the hour starting at ``hour``."""
        self.counts.setdefault(machine_id, {})[hour] = count

    def prune(self, now_ts: float) -> None:
        """Forget hours older than ``keep``, and save soon."""
        oldest = now_ts - self.keep.total_seconds() - HOUR
        for machine_id in list(self.counts):
            hours = self.counts[machine_id]
            for hour in [hour for hour in hours if hour < oldest]:
                del hours[hour]
            if not hours:
                del self.counts[machine_id]
        self._store.async_delay_save(self._data, SAVE_DELAY_SECONDS)

    def _data(self) -> dict[str, Any]:
        return {
            "machines": {
                machine_id: {f"{hour:.0f}": count for hour, count in sorted(hours.items())}
                for machine_id, hours in self.counts.items()
            }
        }

    async def async_counts(
        self, machine_ids: Sequence[str], hours: Sequence[float]
    ) -> HourlyCounts:
        """The remembered counts of ``machine_ids`` in ``hours``."""
        result: HourlyCounts = {}
        for machine_id in machine_ids:
            known = self.counts.get(machine_id, {})
            result[machine_id] = {hour: known[hour] for hour in hours if hour in known}
        return result


class RecorderSalesHistory:
    """Hourly counts from the recorder's compiled statistics (``statistics_sales``)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def async_counts(
        self, machine_ids: Sequence[str], hours: Sequence[float]
    ) -> HourlyCounts:
        """The compiled counts; raises RecorderNotRunning when there is no recorder."""
        recorder = get_recorder(self.hub)
        return await recorder.async_query(hourly_sales, list(machine_ids), list(hours))


def hourly_sales(
    session: SessionOrConnection, machine_ids: Iterable[str], hours: Iterable[float]
) -> HourlyCounts:
    """Completed vends per machine in each of ``hours`` that the recorder has compiled.

    Runs in a worker thread (``Recorder.async_query``). An hour counts for a machine from its
    first compiled hour with a vend (completed or failed) on; a compiled hour without a row
    for the machine is an hour it sold nothing. Three small queries: the compiled hours among
    ``hours``, each machine's first hour, the sums.
    """
    wanted_machines = sorted(set(machine_ids))
    wanted_hours = sorted(set(hours))
    if not wanted_machines or not wanted_hours:
        return {machine_id: {} for machine_id in wanted_machines}
    compiled = set(
        session.execute(
            select(StatisticsRun.start_ts).where(
                StatisticsRun.period == "hour", StatisticsRun.start_ts.in_(wanted_hours)
            )
        ).scalars()
    )
    first_hour = dict(
        session.execute(
            select(SalesStatistic.machine_id, func.min(SalesStatistic.start_ts))
            .where(
                SalesStatistic.period == "hour",
                SalesStatistic.machine_id.in_(wanted_machines),
            )
            .group_by(SalesStatistic.machine_id)
        ).all()
    )
    sums: dict[tuple[str, float], int] = {}
    if compiled:
        rows = session.execute(
            select(
                SalesStatistic.machine_id,
                SalesStatistic.start_ts,
                func.sum(SalesStatistic.vends),
            )
            .where(
                SalesStatistic.period == "hour",
                SalesStatistic.machine_id.in_(wanted_machines),
                SalesStatistic.start_ts.in_(sorted(compiled)),
            )
            .group_by(SalesStatistic.machine_id, SalesStatistic.start_ts)
        )
        # SUM() is a DECIMAL on MariaDB and a NUMERIC on PostgreSQL: make it an int.
        sums = {(machine_id, float(start)): int(total) for machine_id, start, total in rows}
    result: HourlyCounts = {}
    for machine_id in wanted_machines:
        first = first_hour.get(machine_id)
        result[machine_id] = (
            {}
            if first is None
            else {
                hour: sums.get((machine_id, hour), 0)
                for hour in wanted_hours
                if hour in compiled and hour >= first
            }
        )
    return result
