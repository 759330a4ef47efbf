"""The floor under the vend benchmark's figure: the least a hub that keeps the journal's rule
must do between a selection and the dispense command, measured the same way.

Each of ``machines`` coroutines, all started at once as in the benchmark's concurrent rounds,
makes a small JSON row, waits for it to be committed (durable SQLite: WAL,
``synchronous=FULL``), does it again (the journal's two commits before a dispense: authorize
begin, then authorize done with dispense begin), and notes the time. The rows of one turn of
the event loop are committed together by one thread, as the journal does (group commit). What
is left out is all the hub itself does: checks, snapshots, events, the provider, the board.

Measured in the same run as the hub, round for round, the floor moves with the machine (a
virtual machine that runs slower for a minute slows both), so the ratio of the two means
something on any machine (DESIGN.md, Benchmarks).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from pathlib import Path

import orjson


class FloorJournal:
    """A bare group-commit writer: a thread commits each turn's rows in one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[list[tuple[bytes, asyncio.Future[None]]] | None] = (
            queue.SimpleQueue()
        )
        self._batch: list[tuple[bytes, asyncio.Future[None]]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="floor journal", daemon=True)
        self._ready = threading.Event()

    async def async_open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()
        await self._loop.run_in_executor(None, self._ready.wait)

    async def async_close(self) -> None:
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10)

    async def async_write(self, row: bytes) -> None:
        """Add ``row`` to this turn's transaction and wait until it is committed."""
        assert self._loop is not None
        if self._batch is None:
            self._batch = []
            self._loop.call_soon(self._flush)
        future = self._loop.create_future()
        self._batch.append((row, future))
        await future

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch:
            self._queue.put(batch)

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, data BLOB)")
        self._ready.set()
        assert self._loop is not None
        try:
            while (batch := self._queue.get()) is not None:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(
                    "INSERT INTO rows (data) VALUES (?)", [(row,) for row, _ in batch]
                )
                connection.execute("COMMIT")
                self._loop.call_soon_threadsafe(_settle, [future for _, future in batch])
        finally:
            connection.close()


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


async def _one(journal: FloorJournal, machine: int, slot: str, latencies: list[float]) -> None:
    before = time.perf_counter()
    await journal.async_write(orjson.dumps({"machine": machine, "slot": slot, "step": 1}))
    await journal.async_write(orjson.dumps({"machine": machine, "slot": slot, "step": 2}))
    latencies.append(time.perf_counter() - before)


async def async_floor_round(
    journal: FloorJournal, machines: int, slot: str, latencies: list[float]
) -> None:
    """One round: ``machines`` selections at once, each to its two commits."""
    await asyncio.gather(*(_one(journal, machine, slot, latencies) for machine in range(machines)))
