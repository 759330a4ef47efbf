"""The durable journal of vend sessions: what was asked of whom, written before and after.

One SQLite file (``<config>/.storage/vending.journal.db``, WAL, ``synchronous=FULL``) holds a
row per session (its latest snapshot) and an append-only list of steps. The engine writes a
step ``begin`` row *before* each external call (authorize, dispense, capture, void, refund,
close) and a ``done`` or ``error`` row after it, each committed (fsynced) before the engine
goes on, so a hub killed at any instant finds on its next start exactly where every session
stopped and resolves it once (``VendEngine.async_start``; docs/vending.md).

Writes go through one writer thread (group commit): the writes made during one turn of the
event loop become one batch, handed to the thread once and committed in one transaction, and
batches that queue up while a commit runs go in the next one together. Fifty machines vending
at once share an fsync instead of queueing fifty, and the thread wakes once per batch. A second
thread checkpoints the write-ahead log, so that no commit does it, and prunes sessions
finished long ago (``_Housekeeper``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from vendhub.const import STORAGE_DIR
from vendhub.core.context import Context
from vendhub.vending.dispenser import DispenseOutcome, DispenseResult
from vendhub.vending.money import Money
from vendhub.vending.payment import Authorization, PaymentMethod
from vendhub.vending.session import SessionState, VendOutcome, VendSession

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

JOURNAL_FILE = "vending.journal.db"
SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        machine_id TEXT NOT NULL,
        state TEXT NOT NULL,
        outcome TEXT,
        snapshot TEXT NOT NULL,
        recorded INTEGER NOT NULL DEFAULT 0,
        close_pending INTEGER NOT NULL DEFAULT 0,
        resolved_after_restart INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        updated REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_open ON sessions (machine_id, recorded, close_pending)",
    """CREATE TABLE IF NOT EXISTS steps (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        step TEXT NOT NULL,
        phase TEXT NOT NULL,
        detail TEXT,
        ts REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS steps_session ON steps (session_id, seq)",
    """CREATE TABLE IF NOT EXISTS stock (
        machine_id TEXT NOT NULL,
        slot TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (machine_id, slot)
    )""",
    # Added without a version change: a journal of before has no modes, one of after read
    # by the version before keeps working (that version ignores the table).
    """CREATE TABLE IF NOT EXISTS modes (
        machine_id TEXT PRIMARY KEY,
        mode TEXT NOT NULL,
        configured TEXT NOT NULL,
        updated REAL NOT NULL
    )""",
)


class JournalError(Exception):
    """The journal could not be written: the engine must not take the next step."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One session as the journal last saw it."""

    session: VendSession
    recorded: bool
    close_pending: bool
    last_step: tuple[str, str] | None
    """(step, phase) of the latest step row: ``("dispense", "begin")`` and so on."""


@dataclass(frozen=True, slots=True)
class StepRow:
    step: str
    phase: str
    detail: str | None
    ts: float


# ---- snapshots to and from JSON -----------------------------------------------------------

# orjson: a snapshot is encoded at every step of every session, in the event loop; the
# standard library's encoder takes about ten times as long (4 us against 0.4 us a snapshot).
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def _encode(value: Mapping[str, Any]) -> str:
    return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()


def session_to_json(session: VendSession, data: Mapping[str, Any] | None = None) -> str:
    """The journal's JSON of ``session`` (``data`` is its ``as_dict()`` when already made):
    the snapshot's fields with the whole context and dispense result, which
    ``session_from_json`` reads back."""
    snapshot = dict(session.as_dict() if data is None else data)
    snapshot["context"] = session.context.as_dict()
    dispense = session.dispense
    snapshot["dispense"] = (
        {
            "outcome": dispense.outcome._value_,
            "slot": dispense.slot,
            "drop_confirmed": dispense.drop_confirmed,
            "detail": dispense.detail,
        }
        if dispense
        else None
    )
    return _encode(snapshot)


def session_from_json(text: str) -> VendSession:
    data = orjson.loads(text)
    currency = data["currency"]

    def money(amount: int | None) -> Money | None:
        return None if amount is None else Money(int(amount), currency)

    context = data["context"]
    dispense = data.get("dispense")
    return VendSession(
        id=data["session_id"],
        machine_id=data["machine_id"],
        slot=data["slot"],
        product=data["product"],
        price=Money(int(data["price"]), currency),
        method=PaymentMethod(data["payment_method"]),
        context=Context(
            user_id=context.get("user_id"), parent_id=context.get("parent_id"), id=context["id"]
        ),
        started_at=float(data["started_at"]),
        state=SessionState(data["state"]),
        outcome=VendOutcome(data["outcome"]) if data.get("outcome") else None,
        reason=data.get("reason"),
        free_vend=bool(data.get("free_vend")),
        provider=data.get("payment_provider"),
        authorization=Authorization.from_dict(data["authorization"])
        if data.get("authorization")
        else None,
        dispense=DispenseResult(
            outcome=DispenseOutcome(dispense["outcome"]),
            slot=dispense["slot"],
            drop_confirmed=dispense.get("drop_confirmed"),
            detail=dispense.get("detail"),
        )
        if dispense
        else None,
        stock_after=data.get("stock_after"),
        change=money(data.get("change")),
        refunded=money(data.get("refunded")),
        credit_left=money(data.get("credit_left")),
        progress=data.get("progress") or {},
        payment_deadline=data.get("payment_deadline"),
        finished_at=data.get("finished_at"),
    )


# ---- the writer thread --------------------------------------------------------------------

# Multi-row statements: ``{rows}`` becomes one ``(?, ...)`` group per row.
_UPSERT_SESSIONS = (
    "INSERT INTO sessions (id, machine_id, state, outcome, snapshot, created, updated)"
    " VALUES {rows} ON CONFLICT (id) DO UPDATE SET state=excluded.state,"
    " outcome=excluded.outcome, snapshot=excluded.snapshot, updated=excluded.updated",
    7,
)
_INSERT_STEPS = ("INSERT INTO steps (session_id, step, phase, detail, ts) VALUES {rows}", 5)
_UPSERT_STOCK = (
    "INSERT INTO stock (machine_id, slot, quantity, updated) VALUES {rows}"
    " ON CONFLICT (machine_id, slot) DO UPDATE SET quantity=excluded.quantity,"
    " updated=excluded.updated",
    4,
)
_UPSERT_MODES = (
    "INSERT INTO modes (machine_id, mode, configured, updated) VALUES {rows}"
    " ON CONFLICT (machine_id) DO UPDATE SET mode=excluded.mode,"
    " configured=excluded.configured, updated=excluded.updated",
    4,
)
_UPDATE_FLAGS = (
    "UPDATE sessions SET recorded=COALESCE(flags.column2, recorded),"
    " close_pending=COALESCE(flags.column3, close_pending),"
    " resolved_after_restart=COALESCE(flags.column4, resolved_after_restart)"
    " FROM (VALUES {rows}) AS flags WHERE sessions.id=flags.column1",
    4,
)
_ROWS_PER_STATEMENT = 200
CHECKPOINT_INTERVAL = 1.0
"""Seconds at least between checkpoints of the journal's write-ahead log."""
CHECKPOINT_WHEN_IDLE = 0.25
"""Seconds without a commit after which the log is checkpointed (``_Housekeeper``)."""
CHECKPOINT_AT_LATEST = 30.0
"""Seconds after the last checkpoint at which the log is checkpointed even without a lull."""
RESTART_LOG_FRAMES = 10_000
"""Log frames (pages, 4 KiB) past which the checkpointer resets the log: about 40 MB."""
KEEP_FINISHED = 90 * 24 * 3600.0
"""Seconds a finished, recorded and closed session stays in the journal (the recorder keeps
the ledger; the journal is for resolving restarts and for support)."""
PRUNE_EVERY = 24 * 3600.0
PRUNE_FIRST_AFTER = 600.0
"""Seconds after opening before the first pruning (start-up and its restarts go first)."""
PRUNE_CHUNK = 500

Flags = tuple[int | None, int | None, int | None]
"""(recorded, close_pending, resolved_after_restart) of a session; None leaves one as it is."""


@dataclass(slots=True)
class _Batch:
    """The writes of one turn of the event loop, as rows, and the futures waiting for them.

    The loop fills a batch while its callbacks run and hands it to the writer thread once
    (``VendJournal._flush``), so fifty sessions that write in the same turn cost the thread
    one wake-up and one transaction; the rows are made in the loop, so the thread only runs
    the statements.
    """

    futures: list[asyncio.Future[None]] = field(default_factory=list)
    sessions: list[tuple[Any, ...]] = field(default_factory=list)
    steps: list[tuple[Any, ...]] = field(default_factory=list)
    stock: list[tuple[Any, ...]] = field(default_factory=list)
    modes: list[tuple[Any, ...]] = field(default_factory=list)
    flags: dict[str, Flags] = field(default_factory=dict)

    def set_flags(self, session_id: str, values: Flags) -> None:
        earlier = self.flags.get(session_id)
        if earlier is not None:
            values = (
                values[0] if values[0] is not None else earlier[0],
                values[1] if values[1] is not None else earlier[1],
                values[2] if values[2] is not None else earlier[2],
            )
        self.flags[session_id] = values

    def absorb(self, later: _Batch) -> None:
        """Add the writes of a batch that was queued after this one."""
        self.futures.extend(later.futures)
        self.sessions.extend(later.sessions)
        self.steps.extend(later.steps)
        self.stock.extend(later.stock)
        self.modes.extend(later.modes)
        for session_id, values in later.flags.items():
            self.set_flags(session_id, values)


class _Writer(threading.Thread):
    """Owns the write connection; commits every queued batch in one transaction.

    Each statement kind is one multi-row statement, however many machines wrote: the sqlite3
    module gives the GIL up around every statement, and while the event loop is busy the
    thread may wait a whole switch interval (5 ms) to get it back, so fewer statements commit
    sooner. The results go back to the loop in one call per transaction.
    """

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="vending journal", daemon=True)
        self.path = path
        self.loop = loop
        self.queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.open_error: BaseException | None = None
        self.commits = 0
        self.last_commit = 0.0
        """``time.monotonic()`` of the latest commit (the housekeeper waits for a lull)."""
        self.before_commit: Callable[[], None] = _nothing
        """Called in the thread when a batch arrives, before its commit (the housekeeper
        interrupts a checkpoint that would slow the commit down)."""

    def run(self) -> None:
        try:
            connection = open_connection(self.path)
        except BaseException as error:  # handed to the loop, which raises it
            self.open_error = error
            self.ready.set()
            return
        connection.execute("PRAGMA wal_autocheckpoint=0")  # the _Housekeeper's job
        self.ready.set()
        try:
            while True:
                batch = self.queue.get()
                self.before_commit()
                if batch is None:
                    _checkpoint(connection, "TRUNCATE")
                    return
                stop = False
                while True:  # whatever queued up during the last commit goes in this one
                    try:
                        more = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.absorb(more)
                self._commit(connection, batch)
                if stop:
                    _checkpoint(connection, "TRUNCATE")
                    return
        finally:
            connection.close()

    def _commit(self, connection: sqlite3.Connection, batch: _Batch) -> None:
        error: BaseException | None = None
        try:
            connection.execute("BEGIN IMMEDIATE")
            for statement, rows in (
                (_UPSERT_SESSIONS, batch.sessions),
                (_INSERT_STEPS, batch.steps),
                (_UPSERT_STOCK, batch.stock),
                (_UPSERT_MODES, batch.modes),
                (_UPDATE_FLAGS, [(key, *values) for key, values in batch.flags.items()]),
            ):
                _execute_rows(connection, statement, rows)
            connection.execute("COMMIT")
            self.commits += 1
            self.last_commit = time.monotonic()
        except Exception as failure:  # every waiter hears of it; the thread goes on
            _LOGGER.error("The vending journal could not commit: %s", failure)
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            error = failure
        self.loop.call_soon_threadsafe(_settle, batch.futures, error)


class _Housekeeper(threading.Thread):
    """Keeps the journal's file in shape, off the commit path: checkpoints and pruning.

    Checkpoints: SQLite's automatic checkpoint runs inside the COMMIT that takes the log past
    1,000 pages, and that commit then takes several times as long (fifty sessions' rows: p99
    4.1-4.4 ms with it, 1.8-1.9 ms without, on the same disk). The writer turns it off; this
    thread checkpoints, PASSIVE, which never takes the writer's lock. A checkpoint still
    writes and syncs the database file, and a commit's sync that comes meanwhile waits for the
    disk (commits of 1 ms took 7-11 ms under a checkpoint of 12-19 ms), so checkpoints wait
    for a lull: ``CHECKPOINT_WHEN_IDLE`` without a commit, at most once a
    ``CHECKPOINT_INTERVAL``. A lull can end while its checkpoint runs (a quiet minute, then
    fifty machines sell at once): the writer then interrupts the checkpoint before it commits
    (a checkpoint of a 60 MB log took 200 ms; it stops within a millisecond while it copies
    pages, but its last step, syncing the database file, runs to the end), and the next lull
    tries again. A writer that never pauses is checkpointed anyway, without interruption,
    ``CHECKPOINT_AT_LATEST`` after the last complete checkpoint. A log that keeps growing
    because the writer never pauses long enough is reset (RESTART, which waits for the writer
    once) past ``RESTART_LOG_FRAMES``.

    Pruning: once every ``prune_every`` seconds (the first time ``PRUNE_FIRST_AFTER`` after
    opening), the sessions finished, recorded and closed longer than ``keep_finished`` ago
    go, with their steps (``prune_finished``), so the file of a machine that sells for years
    stays small.
    """

    def __init__(
        self, path: Path, writer: _Writer, keep_finished: float, prune_every: float
    ) -> None:
        super().__init__(name="vending journal housekeeping", daemon=True)
        self.path = path
        self.writer = writer
        self.keep_finished = keep_finished
        self.prune_every = prune_every
        self.stopping = threading.Event()
        self.interrupted = 0
        """Checkpoints the writer interrupted because a commit came."""
        self._interruptible: sqlite3.Connection | None = None
        """The connection while it runs a checkpoint that a commit may interrupt."""
        self._interrupt_lock = threading.Lock()
        writer.before_commit = self.interrupt_checkpoint

    def interrupt_checkpoint(self) -> None:
        """Stop a checkpoint begun in a lull, if one runs (called by the writer's thread)."""
        with self._interrupt_lock:
            if self._interruptible is not None:
                self._interruptible.interrupt()

    def run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=5000")
        checkpointed = self.writer.commits
        last_checkpoint = last_attempt = time.monotonic()
        next_prune = last_checkpoint + min(PRUNE_FIRST_AFTER, self.prune_every)
        try:
            while not self.stopping.wait(min(CHECKPOINT_INTERVAL, CHECKPOINT_WHEN_IDLE)):
                now = time.monotonic()
                if now >= next_prune:
                    next_prune = now + self.prune_every
                    try:
                        prune_finished(connection, time.time() - self.keep_finished)
                    except sqlite3.Error as error:
                        _LOGGER.warning("Pruning the vending journal failed: %s", error)
                commits = self.writer.commits
                if commits == checkpointed or now - last_attempt < CHECKPOINT_INTERVAL:
                    continue
                idle = now - self.writer.last_commit >= CHECKPOINT_WHEN_IDLE
                if not idle and now - last_checkpoint < CHECKPOINT_AT_LATEST:
                    continue
                last_attempt = now
                try:
                    log_frames = self._checkpoint_passive(connection, interruptible=idle)
                except _CheckpointInterrupted:
                    self.interrupted += 1
                    continue
                checkpointed, last_checkpoint = commits, now
                if log_frames is not None and log_frames > RESTART_LOG_FRAMES:
                    _checkpoint(connection, "RESTART")
        finally:
            connection.close()

    def _checkpoint_passive(
        self, connection: sqlite3.Connection, interruptible: bool
    ) -> int | None:
        if not interruptible:
            return _checkpoint(connection, "PASSIVE")
        with self._interrupt_lock:
            self._interruptible = connection
        try:
            return _checkpoint(connection, "PASSIVE")
        finally:
            with self._interrupt_lock:
                self._interruptible = None


_PRUNABLE = (
    "SELECT id FROM sessions WHERE state IN ('completed', 'failed') AND recorded=1"
    " AND close_pending=0 AND updated < ? ORDER BY rowid LIMIT ?"
)


def prune_finished(connection: sqlite3.Connection, before: float) -> int:
    """Delete the sessions (and their steps) that were finished, recorded and closed before
    ``before`` (a ``time.time()``); how many went. In transactions of ``PRUNE_CHUNK``
    sessions, so the writer never waits long for one."""
    pruned = 0
    while True:
        connection.execute("BEGIN IMMEDIATE")
        try:
            ids = [row[0] for row in connection.execute(_PRUNABLE, (before, PRUNE_CHUNK))]
            if ids:
                marks = ", ".join("?" * len(ids))
                connection.execute(f"DELETE FROM steps WHERE session_id IN ({marks})", ids)
                connection.execute(f"DELETE FROM sessions WHERE id IN ({marks})", ids)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        pruned += len(ids)
        if len(ids) < PRUNE_CHUNK:
            if pruned:
                _LOGGER.info("Pruned %d finished vend sessions from the journal", pruned)
            return pruned


class _CheckpointInterrupted(Exception):
    """A checkpoint stopped by ``sqlite3.Connection.interrupt`` (the log is left as it was)."""


def _checkpoint(connection: sqlite3.Connection, mode: str) -> int | None:
    """Run a checkpoint; the frames in the log, or None when it failed (logged: the journal
    stays correct, its log file only grows until a later checkpoint succeeds). Raises
    ``_CheckpointInterrupted`` when it was interrupted."""
    try:
        _busy, log_frames, _copied = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    except sqlite3.Error as error:
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
            raise _CheckpointInterrupted from error
        _LOGGER.warning("Checkpoint (%s) of the vending journal failed: %s", mode, error)
        return None
    return int(log_frames)


def _nothing() -> None:
    return None


@functools.lru_cache(maxsize=256)
def _statement_text(text: str, width: int, count: int) -> str:
    return text.format(rows=", ".join(["(" + ", ".join("?" * width) + ")"] * count))


def _execute_rows(
    connection: sqlite3.Connection, statement: tuple[str, int], rows: list[tuple[Any, ...]]
) -> None:
    text, width = statement
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        connection.execute(
            _statement_text(text, width, len(chunk)),
            [value for row in chunk for value in row],
        )


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # its waiter was cancelled
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(JournalError(f"the vending journal could not be written: {error}"))


def open_connection(path: Path) -> sqlite3.Connection:
    """A connection with the journal's durability settings and schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=5000")
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        connection.close()
        raise JournalError(
            f"{path} was written by a newer VendHub (journal version {version}, this one "
            f"knows {SCHEMA_VERSION}); refusing to touch it"
        )
    for statement in _SCHEMA:
        connection.execute(statement)
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return connection


class VendJournal:
    """The hub's journal of vend sessions, shared by every local machine's engine."""

    def __init__(
        self,
        path: Path | str,
        *,
        keep_finished: float = KEEP_FINISHED,
        prune_every: float = PRUNE_EVERY,
    ) -> None:
        self.path = Path(path)
        self.keep_finished = keep_finished
        """Seconds a finished session is kept (``prune_finished``)."""
        self.prune_every = prune_every
        self._writer: _Writer | None = None
        self._reader: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch: _Batch | None = None
        """The writes of this turn of the event loop, handed to the writer at its end."""
        self._housekeeper: _Housekeeper | None = None

    @classmethod
    def for_hub(cls, hub: Hub) -> VendJournal:
        """The journal in the hub's ``.storage`` folder."""
        return cls(hub.path(STORAGE_DIR, JOURNAL_FILE))

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    @property
    def commits(self) -> int:
        """Transactions committed since it opened (each is one fsync)."""
        return self._writer.commits if self._writer else 0

    async def async_open(self) -> None:
        if self._writer is not None:
            return
        loop = asyncio.get_running_loop()
        writer = _Writer(self.path, loop)
        writer.start()
        await loop.run_in_executor(None, writer.ready.wait)
        if writer.open_error is not None:
            raise JournalError(
                f"cannot open the vending journal {self.path}: {writer.open_error}"
            ) from writer.open_error
        self._writer = writer
        self._loop = loop
        self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._housekeeper = _Housekeeper(self.path, writer, self.keep_finished, self.prune_every)
        self._housekeeper.start()

    async def async_close(self) -> None:
        writer = self._writer
        if writer is None:
            return
        self._flush()
        self._writer = None
        loop = asyncio.get_running_loop()
        housekeeper, self._housekeeper = self._housekeeper, None
        if housekeeper is not None:
            housekeeper.stopping.set()
            await loop.run_in_executor(None, housekeeper.join, 10)
        writer.queue.put(None)
        await loop.run_in_executor(None, writer.join, 10)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _batch_of_this_turn(self) -> _Batch:
        """The batch that the writes of this turn of the event loop go to."""
        if self._writer is None or self._loop is None:
            raise JournalError("the vending journal is not open")
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch()
            # Runs once the callbacks that are ready now have run: every session that writes
            # in this turn shares the transaction.
            self._loop.call_soon(self._flush)
        return batch

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None and self._writer is not None:
            self._writer.queue.put(batch)

    def _committed(self, batch: _Batch) -> asyncio.Future[None]:
        """A future done once ``batch`` (with what was just added to it) is committed."""
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        batch.futures.append(future)
        return future

    # ---- writes -----------------------------------------------------------------------

    async def async_save(
        self,
        session: VendSession,
        step: str | None = None,
        phase: str | None = None,
        detail: str | None = None,
        *,
        close_pending: bool | None = None,
        stock: tuple[str, int] | None = None,
        recorded: bool | None = None,
        data: Mapping[str, Any] | None = None,
        earlier: Sequence[tuple[str, str, str | None]] = (),
    ) -> None:
        """Save ``session``'s snapshot and, when given, a step row and the slot's new stock
        (``(slot, items)``); all committed at once. ``earlier`` are step rows (step, phase,
        detail) that go in before ``step``; ``data`` is ``session.as_dict()`` when the caller
        has made it already."""
        now = time.time()
        session_id = session.id
        if data is None:
            data = session.as_dict()
        snapshot = session_to_json(session, data)  # before the batch: a failure adds nothing
        batch = self._batch_of_this_turn()
        batch.sessions.append(
            (
                session_id,
                session.machine_id,
                session.state._value_,
                session.outcome._value_ if session.outcome else None,
                snapshot,
                now,
                now,
            )
        )
        for name, kind, text in earlier:
            batch.steps.append((session_id, name, kind, text, now))
        if step is not None:
            batch.steps.append((session_id, step, phase or "", detail, now))
        if stock is not None:
            batch.stock.append((session.machine_id, stock[0], stock[1], now))
        if close_pending is not None or recorded is not None:
            batch.set_flags(session_id, (_flag(recorded), _flag(close_pending), None))
        await self._committed(batch)

    async def async_set_stock(self, machine_id: str, stock: Mapping[str, int]) -> None:
        """Save a restock: items per slot."""
        now = time.time()
        batch = self._batch_of_this_turn()
        batch.stock.extend((machine_id, slot, count, now) for slot, count in stock.items())
        await self._committed(batch)

    async def async_set_mode(self, machine_id: str, mode: str, configured: str) -> None:
        """Save the machine's mode, with the mode its configuration gave when it was set."""
        batch = self._batch_of_this_turn()
        batch.modes.append((machine_id, mode, configured, time.time()))
        await self._committed(batch)

    async def async_step(
        self, session_id: str, step: str, phase: str, detail: str | None = None
    ) -> None:
        """Append a step row alone."""
        batch = self._batch_of_this_turn()
        batch.steps.append((session_id, step, phase, detail, time.time()))
        await self._committed(batch)

    async def async_set_flags(
        self,
        session_id: str,
        *,
        recorded: bool | None = None,
        close_pending: bool | None = None,
        resolved_after_restart: bool | None = None,
    ) -> None:
        batch = self._batch_of_this_turn()
        batch.set_flags(
            session_id, (_flag(recorded), _flag(close_pending), _flag(resolved_after_restart))
        )
        await self._committed(batch)

    # ---- reads (the reader connection sees every committed write) -----------------------

    def _read(self, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._reader is None:
            raise JournalError("the vending journal is not open")
        return self._reader.execute(sql, parameters).fetchall()

    def stock(self, machine_id: str) -> dict[str, int]:
        """The items per slot saved for ``machine_id`` (empty before its first vend)."""
        return dict(
            self._read("SELECT slot, quantity FROM stock WHERE machine_id=?", (machine_id,))
        )

    def mode(self, machine_id: str) -> tuple[str, str] | None:
        """(mode, the configured mode when it was set) as last saved, or None."""
        rows = self._read("SELECT mode, configured FROM modes WHERE machine_id=?", (machine_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def unresolved(self, machine_id: str) -> list[JournalEntry]:
        """Sessions of ``machine_id`` that are unfinished, unrecorded or not closed."""
        rows = self._read(
            "SELECT id, snapshot, recorded, close_pending FROM sessions WHERE machine_id=?"
            " AND (state NOT IN ('completed', 'failed') OR recorded=0 OR close_pending=1)"
            " ORDER BY created",
            (machine_id,),
        )
        return [self._entry(*row) for row in rows]

    def entry(self, session_id: str) -> JournalEntry | None:
        rows = self._read(
            "SELECT id, snapshot, recorded, close_pending FROM sessions WHERE id=?",
            (session_id,),
        )
        return self._entry(*rows[0]) if rows else None

    def steps(self, session_id: str) -> list[StepRow]:
        return [
            StepRow(*row)
            for row in self._read(
                "SELECT step, phase, detail, ts FROM steps WHERE session_id=? ORDER BY seq",
                (session_id,),
            )
        ]

    def _entry(
        self, session_id: str, snapshot: str, recorded: int, close_pending: int
    ) -> JournalEntry:
        last = self._read(
            "SELECT step, phase FROM steps WHERE session_id=? ORDER BY seq DESC LIMIT 1",
            (session_id,),
        )
        return JournalEntry(
            session=session_from_json(snapshot),
            recorded=bool(recorded),
            close_pending=bool(close_pending),
            last_step=(last[0][0], last[0][1]) if last else None,
        )


def read_journal(path: Path | str) -> list[dict[str, Any]]:
    """Every session row of a journal file, for tests and support (read-only)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT id, machine_id, state, outcome, recorded, close_pending,"
            " resolved_after_restart, snapshot FROM sessions ORDER BY created"
        ).fetchall()
        steps = connection.execute(
            "SELECT session_id, step, phase, detail FROM steps ORDER BY seq"
        ).fetchall()
    finally:
        connection.close()
    by_session: dict[str, list[tuple[str, str, str | None]]] = {}
    for session_id, step, phase, detail in steps:
        by_session.setdefault(session_id, []).append((step, phase, detail))
    return [
        {
            "id": row[0],
            "machine_id": row[1],
            "state": row[2],
            "outcome": row[3],
            "recorded": bool(row[4]),
            "close_pending": bool(row[5]),
            "resolved_after_restart": bool(row[6]),
            "snapshot": orjson.loads(row[7]),
            "steps": by_session.get(row[0], []),
        }
        for row in rows
    ]


# A finished session fired a ledger event when it completed, or when it failed after the
# board was asked to dispense (the engine's ``vend_attempted``): it has a ``dispense`` step.
_LEDGER_SESSIONS = (
    "SELECT snapshot FROM sessions WHERE machine_id = ? AND updated >= ?"
    " AND (state = 'completed' OR (state = 'failed' AND EXISTS ("
    "SELECT 1 FROM steps WHERE steps.session_id = sessions.id AND steps.step = 'dispense')))"
    " ORDER BY created"
)


def read_ledger_sessions(path: Path | str, machine_id: str, since: float) -> list[VendSession]:
    """The sessions of ``machine_id`` that ended since ``since`` (a ``time.time()``) with a
    ledger event (``vend_completed``, or ``vend_failed`` after a dispense), oldest first.
    Read-only, on a connection of its own (run it off the event loop): the writer is not
    disturbed. A journal file that does not exist yet has none."""
    if not Path(path).exists():
        return []
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        rows = connection.execute(_LEDGER_SESSIONS, (machine_id, since)).fetchall()
    finally:
        connection.close()
    return [session_from_json(row[0]) for row in rows]
