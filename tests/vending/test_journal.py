"""The vend journal's file: snapshots read back as written, and its write-ahead log is
checkpointed by its own thread (never inside a commit) and left empty when it closes."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from tests.vending.authorizing import eventually
from vendhub.core.context import Context
from vendhub.vending import journal as journal_module
from vendhub.vending.dispenser import DispenseOutcome, DispenseResult
from vendhub.vending.journal import (
    VendJournal,
    prune_finished,
    session_from_json,
    session_to_json,
)
from vendhub.vending.money import Money
from vendhub.vending.payment import Authorization, PaymentMethod
from vendhub.vending.session import SessionState, VendOutcome, VendSession


def _session(number: int, **changes: object) -> VendSession:
    session = VendSession(
        id=f"session{number:04d}",
        machine_id="lobby_1",
        slot="A1",
        product="Кола «Zero»",
        price=Money(150, "EUR"),
        method=PaymentMethod.card,
        context=Context(user_id="operator"),
        started_at=time.time(),
        provider="instant",
        state=SessionState.authorizing,
    )
    return session.evolve(**changes) if changes else session


def test_a_snapshot_reads_back_as_it_was_written() -> None:
    session = _session(
        1,
        state=SessionState.completed,
        outcome=VendOutcome.completed,
        authorization=Authorization(
            provider="instant",
            method=PaymentMethod.card,
            reference="instant-session0001",
            amount=Money(150, "EUR"),
            details={"session_id": "session0001", "card": {"last4": None}},
        ),
        dispense=DispenseResult(DispenseOutcome.dispensed, "A1", drop_confirmed=True),
        stock_after=4,
        change=Money(50, "EUR"),
        progress={"step": "present_card"},
        finished_at=time.time(),
    )

    assert session_from_json(session_to_json(session)) == session


def _sessions_in_database_file(path: Path, copy: Path) -> int:
    copy.unlink(missing_ok=True)
    shutil.copyfile(path, copy)
    connection = sqlite3.connect(copy)
    try:
        return connection.execute("SELECT count(*) FROM sessions").fetchone()[0]
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):  # not even the schema was checkpointed yet
            return 0
        return -1  # copied while a checkpoint wrote the file
    except sqlite3.DatabaseError:  # copied while a checkpoint wrote the file
        return -1
    finally:
        connection.close()


def _wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_commits_leave_checkpoints_to_the_checkpoint_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "CHECKPOINT_INTERVAL", 0.05)
    path = tmp_path / "vending.journal.db"
    journal = VendJournal(path)
    await journal.async_open()
    try:
        for number in range(40):
            await asyncio.gather(
                *(
                    journal.async_save(_session(number * 50 + k), "authorize", "begin")
                    for k in range(50)
                )
            )
        assert journal.commits >= 40
        # The database file alone (a copy without its -wal log) holds what was checkpointed.
        deadline = time.monotonic() + 10
        while True:
            count = _sessions_in_database_file(path, tmp_path / "copy.db")
            if count == 2000 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert count == 2000
    finally:
        await journal.async_close()
    assert _wal_bytes(path) == 0, "closing truncates the write-ahead log"
    reopened = VendJournal(path)
    await reopened.async_open()
    try:
        entry = reopened.entry("session1999")
        assert entry is not None and entry.last_step == ("authorize", "begin")
    finally:
        await reopened.async_close()


async def _commit_every(journal: VendJournal, interval: float, seconds: float, first: int) -> int:
    """Commit one session every ``interval`` for ``seconds``; how many."""
    until = time.monotonic() + seconds
    number = first
    while time.monotonic() < until:
        await journal.async_save(_session(number), "authorize", "begin")
        number += 1
        await asyncio.sleep(interval)
    return number - first


async def test_checkpoints_wait_for_a_lull_in_the_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "CHECKPOINT_INTERVAL", 0.05)
    monkeypatch.setattr(journal_module, "CHECKPOINT_WHEN_IDLE", 0.3)
    path = tmp_path / "vending.journal.db"
    journal = VendJournal(path)
    await journal.async_open()
    try:
        # A commit every 20 ms for a second: never a lull of 0.3 s, so no checkpoint.
        committed = await _commit_every(journal, 0.02, 1.0, first=0)
        assert committed > 20
        assert _sessions_in_database_file(path, tmp_path / "copy.db") == 0
        # Then a lull: the log goes into the database file.
        await eventually(
            lambda: _sessions_in_database_file(path, tmp_path / "copy.db") == committed,
            timeout=10,
        )
    finally:
        await journal.async_close()


def _fill_log(path: Path, pages: int) -> None:
    """Write about ``pages`` pages to the journal's log with a connection of its own."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_autocheckpoint=0")
        connection.execute("CREATE TABLE IF NOT EXISTS filler (data BLOB)")
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO filler VALUES (randomblob(3000))", [()] * pages)
        connection.execute("COMMIT")
    finally:
        connection.close()


async def test_a_commit_interrupts_a_checkpoint_begun_in_a_lull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst after a quiet spell does not wait for the checkpoint the spell began: the
    writer stops it, and the next lull checkpoints everything.

    SQLite stops a checkpoint while it copies pages; its last step, syncing the database
    file, runs to the end. A commit that reaches the writer only then (the test's event loop
    was slow to send it: about one time in ten here) finds nothing to interrupt, so the test
    gives the mechanism up to five checkpoints, each of a freshly filled log."""
    monkeypatch.setattr(journal_module, "CHECKPOINT_INTERVAL", 0.05)
    monkeypatch.setattr(journal_module, "CHECKPOINT_WHEN_IDLE", 0.1)
    path = tmp_path / "vending.journal.db"
    journal = VendJournal(path)
    await journal.async_open()
    housekeeper = journal._housekeeper
    assert housekeeper is not None
    sessions = 0
    try:
        for _attempt in range(5):
            # A log that takes a while to copy (15,000 pages: 60 MB; 200 ms on a VM disk).
            await asyncio.get_running_loop().run_in_executor(None, _fill_log, path, 15_000)
            sessions += 1
            await journal.async_save(_session(sessions), "authorize", "begin")
            deadline = time.monotonic() + 10
            # Polled every millisecond: the thread's checkpoint has no event, and is short.
            while housekeeper._interruptible is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            assert housekeeper._interruptible is not None, "no checkpoint began in the lull"
            sessions += 1
            await journal.async_save(_session(sessions), "authorize", "begin")
            # The checkpoint ends, interrupted or (too late for it) complete.
            await eventually(lambda: housekeeper._interruptible is None, timeout=10)
            if housekeeper.interrupted:
                break
        assert housekeeper.interrupted == 1
        # The next lull finishes the job: the database file alone holds every session.
        await eventually(
            lambda: _sessions_in_database_file(path, tmp_path / "copy.db") == sessions,
            timeout=10,
        )
    finally:
        await journal.async_close()
    assert _wal_bytes(path) == 0


async def test_a_journal_that_never_pauses_is_checkpointed_anyway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "CHECKPOINT_INTERVAL", 0.05)
    monkeypatch.setattr(journal_module, "CHECKPOINT_WHEN_IDLE", 0.3)
    monkeypatch.setattr(journal_module, "CHECKPOINT_AT_LATEST", 0.5)
    path = tmp_path / "vending.journal.db"
    journal = VendJournal(path)
    await journal.async_open()
    try:
        await _commit_every(journal, 0.02, 1.5, first=0)
        # Checked before any lull: what is in the file was checkpointed while committing.
        assert _sessions_in_database_file(path, tmp_path / "copy.db") > 0
    finally:
        await journal.async_close()


async def test_no_commit_runs_a_checkpoint_itself(tmp_path: Path) -> None:
    """The writer's connection has SQLite's automatic checkpoint turned off: however many
    pages the log holds, a commit only appends to it (the checkpoint thread copies them)."""
    path = tmp_path / "vending.journal.db"
    journal = VendJournal(path)
    await journal.async_open()
    checkpointer = journal._housekeeper
    assert checkpointer is not None
    checkpointer.stopping.set()
    await asyncio.get_running_loop().run_in_executor(None, checkpointer.join, 10)
    try:
        for number in range(100):
            await asyncio.gather(
                *(
                    journal.async_save(_session(number * 50 + k), "authorize", "begin")
                    for k in range(50)
                )
            )
        probe = sqlite3.connect(path, isolation_level=None)
        try:
            _busy, log_frames, _copied = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            probe.close()
        # SQLite's automatic checkpoint would have copied the log and started it again
        # from its beginning each time it passed 1,000 pages.
        assert log_frames > 2000
    finally:
        await journal.async_close()
    assert _wal_bytes(path) == 0


async def _finished(journal: VendJournal, number: int, **flags: bool) -> str:
    session = _session(
        number,
        state=SessionState.completed,
        outcome=VendOutcome.completed,
        finished_at=time.time(),
    )
    await journal.async_save(session, "record", "done", **flags)
    return session.id


def _age(path: Path, session_ids: list[str], days: float) -> None:
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.executemany(
                "UPDATE sessions SET updated=? WHERE id=?",
                [(time.time() - days * 86400, session_id) for session_id in session_ids],
            )
    finally:
        connection.close()


async def test_pruning_takes_only_sessions_finished_recorded_and_closed_long_ago(
    tmp_path: Path,
) -> None:
    path = tmp_path / "vending.journal.db"
    journal = VendJournal(path)
    await journal.async_open()
    try:
        old_done = [await _finished(journal, number, recorded=True) for number in range(1200)]
        old_unrecorded = await _finished(journal, 2000, recorded=False)
        old_closing = await _finished(journal, 2001, recorded=True, close_pending=True)
        old_running = _session(2002)
        await journal.async_save(old_running, "authorize", "begin")
        recent_done = await _finished(journal, 2003, recorded=True)
        _age(path, [*old_done, old_unrecorded, old_closing, old_running.id], days=91)

        connection = sqlite3.connect(path, isolation_level=None)
        try:
            pruned = prune_finished(connection, time.time() - 90 * 86400)
        finally:
            connection.close()

        assert pruned == 1200  # in three transactions of at most PRUNE_CHUNK
        assert journal.entry(old_done[0]) is None and journal.steps(old_done[-1]) == []
        for kept in (old_unrecorded, old_closing, old_running.id, recent_done):
            assert journal.entry(kept) is not None, kept
            assert journal.steps(kept) != []
        assert [entry.session.id for entry in journal.unresolved("lobby_1")] == [
            old_unrecorded,
            old_closing,
            old_running.id,
        ]
    finally:
        await journal.async_close()


async def test_the_housekeeping_thread_prunes_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "CHECKPOINT_INTERVAL", 0.02)
    monkeypatch.setattr(journal_module, "PRUNE_FIRST_AFTER", 0.0)
    path = tmp_path / "vending.journal.db"
    journal = VendJournal(path, keep_finished=0.5, prune_every=0.05)
    await journal.async_open()
    try:
        done = await _finished(journal, 1, recorded=True)
        running = _session(2)
        await journal.async_save(running, "authorize", "begin")
        await eventually(lambda: journal.entry(done) is None, timeout=10)
        assert journal.entry(running.id) is not None
    finally:
        await journal.async_close()
