"""The cash sessions of the ``mdb_cash`` providers, kept on disk so a restart loses no credit.

The coins and bills a customer inserted are in the machine, and only the hub knows whose they
are: a hub killed with credit in the machine must still give it back (or capture it and pay
the change) when it starts again. So each provider writes a session's amounts (credit by kind,
the bill in escrow and what was asked of it, captured, paid out, a payout under way) to one
SQLite file, ``<config>/.storage/mdb_cash.db``, and commits them before the engine hears of
them: before a coin's credit is shown to the customer, before an authorization or a capture
returns, and before a payout starts.

The file is in WAL mode with ``synchronous=FULL``: one commit is one append to the WAL and one
fsync. Writes run one at a time in a thread of the store's own, so they keep their order and
the event loop never waits on the disk. On the development machine an awaited commit takes
0.3-0.4 ms (median of 300; the slowest 1-3 ms); a Raspberry Pi's SD card is slower, a few
milliseconds (not measured). A cash vend commits about four times plus once per coin or
bill, and coins come at most a few a second, so the polling never waits on it noticeably.

A closed session's row is kept for ``KEEP_CLOSED`` (a close or void repeated after a restart
finds it and pays nothing twice), then deleted when a provider opens the store.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vendhub.const import STORAGE_DIR

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

CASH_STORE_FILE = "mdb_cash.db"
KEEP_CLOSED = 7 * 24 * 3600.0  # seconds a closed session's row is kept

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cash_sessions (
        reference TEXT PRIMARY KEY,
        machine_id TEXT NOT NULL,
        closed INTEGER NOT NULL,
        data TEXT NOT NULL,
        updated REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS cash_sessions_machine ON cash_sessions (machine_id, closed)",
)


class CashStoreError(Exception):
    """The cash store could not be opened or written."""


class CashStore:
    """One provider's view of ``mdb_cash.db``: its machine's sessions."""

    def __init__(self, path: Path, machine_id: str) -> None:
        self.path = path
        self.machine_id = machine_id
        self.commits = 0
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    @classmethod
    def for_hub(cls, hub: Hub, machine_id: str) -> CashStore:
        return cls(hub.path(STORAGE_DIR, CASH_STORE_FILE), machine_id)

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    async def async_open(self) -> dict[str, dict[str, Any]]:
        """Open the file (made if missing); the machine's sessions: reference → data."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdb cash")
        return await self._run(self._open)

    async def async_close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self._close)
        executor.shutdown(wait=False)

    async def async_save(self, reference: str, data: dict[str, Any], *, closed: bool) -> None:
        """Write one session's data and commit it (fsynced) before returning."""
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        await self._run(self._save, reference, text, closed)

    async def _run(self, work: Any, *args: Any) -> Any:
        if self._executor is None:
            raise CashStoreError("the mdb cash store is not open")
        future = asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        # A write that was started is finished even if its caller is cancelled: the coin it
        # records is in the machine.
        return await asyncio.shield(future)

    # ---- in the store's thread ----------------------------------------------------------

    def _open(self) -> dict[str, dict[str, Any]]:
        if self._connection is None:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                connection = sqlite3.connect(self.path, isolation_level=None)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
                connection.execute("PRAGMA busy_timeout=5000")
                for statement in _SCHEMA:
                    connection.execute(statement)
            except sqlite3.Error as error:
                raise CashStoreError(
                    f"cannot open the mdb cash store {self.path}: {error}"
                ) from error
            self._connection = connection
        connection = self._connection
        connection.execute(
            "DELETE FROM cash_sessions WHERE machine_id=? AND closed=1 AND updated<?",
            (self.machine_id, time.time() - KEEP_CLOSED),
        )
        rows = connection.execute(
            "SELECT reference, data FROM cash_sessions WHERE machine_id=?", (self.machine_id,)
        ).fetchall()
        return {reference: json.loads(data) for reference, data in rows}

    def _save(self, reference: str, text: str, closed: bool) -> None:
        if self._connection is None:
            raise CashStoreError("the mdb cash store is not open")
        try:
            self._connection.execute(
                "INSERT INTO cash_sessions (reference, machine_id, closed, data, updated)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (reference) DO UPDATE SET"
                " closed=excluded.closed, data=excluded.data, updated=excluded.updated",
                (reference, self.machine_id, int(closed), text, time.time()),
            )
        except sqlite3.Error as error:
            raise CashStoreError(f"cannot write the mdb cash store {self.path}: {error}") from error
        self.commits += 1

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def read_cash_store(path: Path | str) -> dict[str, dict[str, Any]]:
    """Every session in a cash store file, reference → data (read only; for tests, support)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT reference, data FROM cash_sessions").fetchall()
    finally:
        connection.close()
    return {reference: json.loads(data) for reference, data in rows}
