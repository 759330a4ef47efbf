"""State rows per second persisted through the recorder, against the raw driver's executemany.

For each backend that is reachable (SQLite always; PostgreSQL and MariaDB on 127.0.0.1), two
fresh databases are migrated to the same schema. In the first, the real recorder persists
``--rows`` state changes made through the real state machine (100 entities, attributes as the
simulator sets them): the figure is rows / the time of the commit that writes them, which covers
turning events into rows, the shared-attribute and entity look-ups and the inserts. In the
second, the raw DB-API driver inserts exactly the rows the recorder wrote with one
``executemany`` in one transaction: the baseline. Bytes on disk per state change are measured
on the first database (SQLite: file size after a WAL checkpoint; PostgreSQL:
``pg_total_relation_size``; MariaDB: InnoDB's data + index length after ANALYZE, an estimate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select, text

from scripts.benchmarks.databases import Backend, temporary_database
from vendhub.const import __version__
from vendhub.core.hub import Hub
from vendhub.recorder.engine import make_engine
from vendhub.recorder.migrate import upgrade_database
from vendhub.recorder.models import StateAttributes, States, StatesMeta
from vendhub.recorder.recorder import Recorder, RecorderConfig

ENTITIES = 100
BACKENDS = ("sqlite", "postgresql", "mariadb")
ROW_COLUMNS = "metadata_id, state, attributes_id, last_updated_ts, last_changed_ts, context_id"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=200_000, help="state changes per backend")
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"comma-separated, from {', '.join(BACKENDS)} (default: all reachable)",
    )


def _entity_attributes(index: int) -> tuple[str, dict[str, Any]]:
    machine = f"m{index // 10:02d}"
    if index % 10 == 9:
        return f"sensor.{machine}_temperature", {
            "unit_of_measurement": "°C",
            "friendly_name": f"Machine {machine} temperature",
            "device_id": f"dev{index // 10:030d}",
        }
    code = f"a{index % 10}"
    return f"slot.{machine}_{code}", {
        "machine_id": machine,
        "slot": code.upper(),
        "product": "Cola 0.5 l",
        "price": 180,
        "capacity": 10,
        "currency": "EUR",
        "friendly_name": f"Machine {machine} {code.upper()}",
        "device_id": f"dev{index // 10:030d}",
    }


async def _through_recorder(url: str, rows: int, folder: Path) -> tuple[float, float, int]:
    """Return (seconds to persist, bytes per state, warm-up max state_id)."""
    hub = Hub(folder)
    # One commit for all rows: no timed commit, and a backlog bound above the row count.
    config = RecorderConfig(db_url=url, commit_interval=3600.0, max_backlog=rows + 2 * ENTITIES)
    recorder = Recorder(hub, config)
    await recorder.async_start()
    entities = [_entity_attributes(index) for index in range(ENTITIES)]
    for entity_id, attributes in entities:
        hub.states.async_set(entity_id, -1, attributes)
    await recorder.async_flush()
    with recorder.engine.connect() as connection:
        warm_max = connection.execute(text("SELECT MAX(state_id) FROM states")).scalar() or 0
    size_before = await hub.async_add_executor_job(_size_on_disk, recorder.engine, url)

    set_state = hub.states.async_set
    for index in range(rows):
        entity_id, attributes = entities[index % ENTITIES]
        value = round(4 + (index % 7) * 0.1, 1) if entity_id.startswith("sensor") else index % 11
        set_state(entity_id, value, attributes)
    started = time.perf_counter()
    await recorder.async_flush(timeout=600)
    seconds = time.perf_counter() - started
    written = recorder.stats.states_written - ENTITIES
    if written != rows:
        raise SystemExit(f"the recorder wrote {written} rows, expected {rows}")
    size_after = await hub.async_add_executor_job(_size_on_disk, recorder.engine, url)
    await hub.async_stop()
    await recorder.async_stop()
    return seconds, (size_after - size_before) / rows, warm_max


def _size_on_disk(engine: Any, url: str) -> int:
    with engine.connect() as connection:
        backend = engine.dialect.name
        if backend == "sqlite":
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            return Path(engine.url.database).stat().st_size
        if backend == "postgresql":
            return int(
                connection.execute(
                    text(
                        "SELECT pg_total_relation_size('states') "
                        "+ pg_total_relation_size('state_attributes') "
                        "+ pg_total_relation_size('states_meta')"
                    )
                ).scalar()
            )
        for table in ("states", "state_attributes", "states_meta"):
            connection.execute(text(f"ANALYZE TABLE {table}"))
        return int(
            connection.execute(
                text(
                    "SELECT SUM(data_length + index_length) FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() "
                    "AND table_name IN ('states', 'state_attributes', 'states_meta')"
                )
            ).scalar()
        )


def _copy_rows(source_url: str, target_url: str, warm_max: int) -> list[tuple[Any, ...]]:
    """Give the baseline database the same entities and attributes; return the state rows."""
    source = make_engine(source_url)
    target = make_engine(target_url)
    upgrade_database(target)
    with source.connect() as reading, target.begin() as writing:
        for table in (StatesMeta, StateAttributes):
            found = [dict(row._mapping) for row in reading.execute(select(table))]
            if found:
                writing.execute(insert(table), found)
        state_rows = [
            tuple(row)
            for row in reading.execute(
                select(
                    States.metadata_id,
                    States.state,
                    States.attributes_id,
                    States.last_updated_ts,
                    States.last_changed_ts,
                    States.context_id,
                )
                .where(States.state_id > warm_max)
                .order_by(States.state_id)
            )
        ]
    source.dispose()
    target.dispose()
    return state_rows


def _raw_executemany(backend: str, url: str, rows: list[tuple[Any, ...]]) -> float:
    """Seconds for the bare driver to insert ``rows`` in one transaction."""
    if backend == "sqlite":
        connection = sqlite3.connect(create_engine(url).url.database)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        sql = f"INSERT INTO states ({ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    elif backend == "postgresql":
        import psycopg

        connection = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
        sql = f"INSERT INTO states ({ROW_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
    else:
        import pymysql

        engine_url = create_engine(url).url
        connection = pymysql.connect(
            host=engine_url.host,
            port=engine_url.port,
            user=engine_url.username,
            database=engine_url.database,
            charset="utf8mb4",
        )
        sql = f"INSERT INTO states ({ROW_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
    try:
        started = time.perf_counter()
        cursor = connection.cursor()
        cursor.executemany(sql, rows)
        connection.commit()
        return time.perf_counter() - started
    finally:
        connection.close()


def _measure(backend: str, rows: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as folder_a,
        tempfile.TemporaryDirectory() as folder_b,
        temporary_database(backend, Path(folder_a)) as recorded,
        temporary_database(backend, Path(folder_b)) as raw,
    ):
        missing = _missing(recorded) or _missing(raw)
        if missing:
            return {"backend": backend, "skipped": missing}
        assert recorded.url is not None and raw.url is not None
        seconds, bytes_per_state, warm_max = asyncio.run(
            _through_recorder(recorded.url, rows, Path(folder_a))
        )
        state_rows = _copy_rows(recorded.url, raw.url, warm_max)
        baseline_seconds = _raw_executemany(backend, raw.url, state_rows)
    return {
        "backend": backend,
        "rows": rows,
        "rows_per_s": round(rows / seconds),
        "baseline_rows_per_s": round(rows / baseline_seconds),
        "ratio_to_baseline": round(baseline_seconds / seconds, 3),
        "bytes_per_state": round(bytes_per_state, 1),
    }


def _missing(backend: Backend) -> str | None:
    return None if backend.url else backend.unavailable or "unreachable"


def run(args: argparse.Namespace) -> int:
    wanted = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(BACKENDS))
    if unknown:
        raise SystemExit(f"unknown backend(s) {', '.join(unknown)}; choose from {BACKENDS}")
    results = [_measure(backend, args.rows) for backend in wanted]
    print(
        f"VendHub {__version__} recorder benchmark, Python {platform.python_version()}, "
        f"{args.rows:,} state changes per backend"
    )
    print(f"{'backend':<12}{'rows/s':>12}{'raw rows/s':>13}{'ratio':>8}{'bytes/state':>13}")
    for result in results:
        if "skipped" in result:
            print(f"{result['backend']:<12}skipped: {result['skipped']}")
            continue
        print(
            f"{result['backend']:<12}{result['rows_per_s']:>12,}"
            f"{result['baseline_rows_per_s']:>13,}{result['ratio_to_baseline']:>8.2f}"
            f"{result['bytes_per_state']:>13.1f}"
        )
    sqlite = next((r for r in results if r["backend"] == "sqlite" and "rows_per_s" in r), None)
    if sqlite is not None:
        checks = [
            ("rows/s >= 50,000", sqlite["rows_per_s"] >= 50_000),
            ("ratio >= 0.5", sqlite["ratio_to_baseline"] >= 0.5),
            ("bytes/state <= 100", sqlite["bytes_per_state"] <= 100),
        ]
        print(
            "SQLite targets: " + ", ".join(f"{n}: {'ok' if ok else 'MISSED'}" for n, ok in checks)
        )
    if args.json:
        measured = [r for r in results if "rows_per_s" in r]
        print(json.dumps(measured[0] if len(measured) == 1 else measured))
    return 0
