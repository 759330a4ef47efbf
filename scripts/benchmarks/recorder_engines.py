"""Why the recorder writes from a thread: a sync engine in a thread against an asyncio engine.

The same prepared state rows are inserted with one ``executemany`` per batch of 5,000, once by
a sync SQLAlchemy engine in a worker thread (what the recorder's writer does) and once by an
asyncio engine awaited in the event loop (``sqlite+aiosqlite``, ``postgresql+psycopg_async``).
Beside rows/s, a probe task measures the event loop's worst stall while each runs: what the
hub's own work (the bus, machines, the API) would feel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from scripts.benchmarks.databases import temporary_database
from vendhub.recorder.engine import make_engine
from vendhub.recorder.migrate import upgrade_database

BATCH = 5_000
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg_async"}
SQL = {
    "qmark": "INSERT INTO states (metadata_id, state, attributes_id, last_updated_ts, "
    "last_changed_ts, context_id) VALUES (?, ?, ?, ?, ?, ?)",
    "format": "INSERT INTO states (metadata_id, state, attributes_id, last_updated_ts, "
    "last_changed_ts, context_id) VALUES (%s, %s, %s, %s, %s, %s)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--backends", default="sqlite,postgresql")


def _rows(count: int) -> list[tuple[Any, ...]]:
    now = time.time()
    return [
        (1, str(index % 11), None, now + index / 1000, None, bytes(14)) for index in range(count)
    ]


class LoopProbe:
    """Measures the longest time the event loop could not run a 1 ms timer."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, loop.time() - before - 0.001)

    def __enter__(self) -> LoopProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def _thread(url: str, rows: list[tuple[Any, ...]]) -> tuple[float, float]:
    engine = make_engine(url)
    sql = SQL["qmark" if engine.dialect.paramstyle == "qmark" else "format"]

    def write() -> None:
        with engine.connect() as connection:
            for start in range(0, len(rows), BATCH):
                with connection.begin():
                    connection.exec_driver_sql(sql, rows[start : start + BATCH])

    with LoopProbe() as probe:
        started = time.perf_counter()
        await asyncio.to_thread(write)
        seconds = time.perf_counter() - started
    engine.dispose()
    return len(rows) / seconds, probe.worst


async def _async(url: str, backend: str, rows: list[tuple[Any, ...]]) -> tuple[float, float]:
    sync_url = make_engine(url).url
    engine = create_async_engine(sync_url.set(drivername=ASYNC_DRIVERS[backend]))
    sql = SQL["qmark" if engine.dialect.paramstyle == "qmark" else "format"]
    with LoopProbe() as probe:
        started = time.perf_counter()
        async with engine.connect() as connection:
            for start in range(0, len(rows), BATCH):
                async with connection.begin():
                    await connection.exec_driver_sql(sql, rows[start : start + BATCH])
        seconds = time.perf_counter() - started
    await engine.dispose()
    return len(rows) / seconds, probe.worst


def _measure(backend: str, count: int) -> dict[str, Any]:
    results: dict[str, Any] = {"backend": backend}
    for mode in ("thread", "asyncio"):
        with (
            tempfile.TemporaryDirectory() as folder,
            temporary_database(backend, Path(folder)) as database,
        ):
            if database.url is None:
                return {"backend": backend, "skipped": database.unavailable}
            engine = make_engine(database.url)
            upgrade_database(engine)
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    "INSERT INTO states_meta (entity_id) VALUES ('sensor.x')"
                )
            engine.dispose()
            rows = _rows(count)
            if mode == "thread":
                rate, stall = asyncio.run(_thread(database.url, rows))
            else:
                rate, stall = asyncio.run(_async(database.url, backend, rows))
            results[f"{mode}_rows_per_s"] = round(rate)
            results[f"{mode}_worst_loop_stall_ms"] = round(stall * 1000, 1)
    return results


def run(args: argparse.Namespace) -> int:
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(backends) - set(ASYNC_DRIVERS))
    if unknown:
        raise SystemExit(f"no asyncio driver set up for {', '.join(unknown)}")
    results = [_measure(backend, args.rows) for backend in backends]
    print(f"Writer thread against asyncio engine, {args.rows:,} rows in batches of {BATCH:,}")
    print(f"{'backend':<12}{'mode':<9}{'rows/s':>10}{'worst loop stall':>18}")
    for result in results:
        if "skipped" in result:
            print(f"{result['backend']:<12}skipped: {result['skipped']}")
            continue
        for mode in ("thread", "asyncio"):
            print(
                f"{result['backend']:<12}{mode:<9}{result[f'{mode}_rows_per_s']:>10,}"
                f"{result[f'{mode}_worst_loop_stall_ms']:>15.1f} ms"
            )
    if args.json:
        print(json.dumps(results))
    return 0
