"""Purging millions of history rows while the event loop keeps running.

A SQLite database gets ``--rows`` state rows (100 entities, spread over ``--days`` days) with
the raw driver. The real recorder then compiles the statistics those hours need and purges
everything older than ``--keep-days`` days, in its writer thread, in batches, while the hub
keeps writing state changes; a probe task measures the event loop's longest stall (a 1 ms
timer that fires late) during the compile and during the purge. The target: no stall over
50 ms. Like the hub, the benchmark freezes its start-up heap out of the garbage collector's
reach (``vendhub.util.heap``); without that, full collections stalled the loop 40-50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from scripts.benchmarks.recorder_engines import LoopProbe
from vendhub.const import __version__
from vendhub.core.hub import Hub
from vendhub.recorder.engine import make_engine
from vendhub.recorder.migrate import upgrade_database
from vendhub.recorder.recorder import Recorder, RecorderConfig
from vendhub.recorder.statistics import compile_missing
from vendhub.util.heap import freeze_startup_heap

ENTITIES = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=5_000_000, help="history rows to create")
    parser.add_argument("--days", type=float, default=12.0, help="spread over this many days")
    parser.add_argument("--keep-days", type=int, default=2, help="purge what is older")


def _fill(path: Path, rows: int, days: float) -> None:
    engine = make_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    engine.dispose()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    connection.executemany(
        "INSERT INTO states_meta (metadata_id, entity_id) VALUES (?, ?)",
        [(index + 1, f"sensor.bench_{index}") for index in range(ENTITIES)],
    )
    connection.execute(
        "INSERT INTO state_attributes (attributes_id, hash, shared_attrs) VALUES "
        '(1, 1, \'{"unit_of_measurement":"C"}\')'
    )
    end = time.time() - 120
    start = end - days * 86400
    step = (end - start) / rows
    chunk = 200_000
    for first in range(0, rows, chunk):
        connection.executemany(
            "INSERT INTO states (metadata_id, state, attributes_id, last_updated_ts, "
            "last_changed_ts, context_id) VALUES (?, ?, 1, ?, NULL, NULL)",
            (
                (index % ENTITIES + 1, f"{4 + (index % 30) / 10:.1f}", start + index * step)
                for index in range(first, min(rows, first + chunk))
            ),
        )
        connection.commit()
    connection.close()


async def _run(path: Path, keep_days: int) -> dict[str, Any]:
    hub = Hub(path.parent)
    recorder = Recorder(hub, RecorderConfig(db_url=f"sqlite:///{path}", commit_interval=1.0))
    await recorder.async_start()
    freeze_startup_heap()  # as vendhub.bootstrap does once the hub runs
    writing = True

    async def keep_writing() -> None:
        value = 0
        while writing:
            value += 1
            for index in range(20):
                hub.states.async_set(f"sensor.live_{index}", value)
            await asyncio.sleep(0.01)

    writer_task = asyncio.create_task(keep_writing())
    zone = ZoneInfo("UTC")
    with LoopProbe() as compile_probe:
        started = time.perf_counter()
        await recorder.async_run_job(
            "compile",
            lambda session: compile_missing(session, time.time(), zone),
            more=lambda result: result.pending,
        )
        compile_seconds = time.perf_counter() - started
    batches = 0

    def count_batches(result: Any) -> bool:
        nonlocal batches
        batches += 1
        return not result.done

    with LoopProbe() as purge_probe:
        started = time.perf_counter()
        from vendhub.recorder.purge import count_history_rows, purge_batch

        cutoff = time.time() - keep_days * 86400
        await recorder.async_run_job(
            "purge", lambda session: purge_batch(session, cutoff, 5000), more=count_batches
        )
        purge_seconds = time.perf_counter() - started
    writing = False
    await writer_task
    remaining = await recorder.async_query(count_history_rows)
    live_written = recorder.stats.states_written
    await hub.async_stop()
    await recorder.async_stop()
    return {
        "compile_seconds": round(compile_seconds, 1),
        "compile_worst_loop_stall_ms": round(compile_probe.worst * 1000, 1),
        "purge_seconds": round(purge_seconds, 1),
        "purge_batches": batches,
        "purge_worst_loop_stall_ms": round(purge_probe.worst * 1000, 1),
        "rows_left": remaining,
        "live_states_written_meanwhile": live_written,
    }


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "purge.db"
        started = time.perf_counter()
        _fill(path, args.rows, args.days)
        fill_seconds = time.perf_counter() - started
        size_mb = path.stat().st_size / 1e6
        result = asyncio.run(_run(path, args.keep_days))
    result = {
        "backend": "sqlite",
        "rows": args.rows,
        "days": args.days,
        "keep_days": args.keep_days,
        "database_mb": round(size_mb),
        **result,
    }
    print(
        f"VendHub {__version__} purge benchmark: {args.rows:,} rows over {args.days:g} days "
        f"({size_mb:,.0f} MB, filled in {fill_seconds:.0f} s), keeping {args.keep_days} days"
    )
    print(
        f"compile statistics: {result['compile_seconds']} s, worst loop stall "
        f"{result['compile_worst_loop_stall_ms']} ms"
    )
    print(
        f"purge: {result['purge_seconds']} s in {result['purge_batches']} batches, worst loop "
        f"stall {result['purge_worst_loop_stall_ms']} ms; {result['rows_left']} rows left"
    )
    worst = max(result["compile_worst_loop_stall_ms"], result["purge_worst_loop_stall_ms"])
    print(f"target: no stall over 50 ms: {'ok' if worst <= 50 else 'MISSED'} (worst {worst} ms)")
    if args.json:
        print(json.dumps(result))
    return 0
