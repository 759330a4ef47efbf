"""The machine's durable outbox: events wait on disk until the hub acknowledges them.

One SQLite file per machine (stdlib ``sqlite3``, WAL journal, ``synchronous=FULL``): a ``put``
has reached the disk when it returns, so a sale survives a power cut, a killed process or a
dead link, and is resent until an ``ack`` names its id. Acknowledged rows stay for a while
as a local audit trail and are pruned after ``keep_days``.

Every method is synchronous and short (one small transaction); the agent calls them from the
event loop. One ``Outbox`` object belongs to one thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vendhub.util.paths import blocking_file

SCHEMA_VERSION = 1
DEFAULT_KEEP_DAYS = 7.0
_ACK_CHUNK = 500  # ids per statement, well below SQLite's bound-parameter limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (position) WHERE acked_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_acked ON outbox (acked_at) WHERE acked_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class OutboxError(Exception):
    """A message cannot be stored (no id, or not JSON)."""


class OutboxFolderError(ValueError):
    """The outbox's folder cannot be made: a file (not a folder) is in the way."""


@dataclass(frozen=True, slots=True)
class PendingRow:
    """One unacknowledged message as stored: its id, its JSON text, how often it was sent."""

    id: str
    payload: str
    attempts: int
    sent_at: float | None

    @property
    def message(self) -> dict[str, Any]:
        return dict(json.loads(self.payload))


class Outbox:
    """Durable, ordered store of event messages awaiting acknowledgement.

    ``put(message)`` keeps a message under its ``id`` (a message whose id is already there,
    pending or acknowledged, is ignored); ``pending()`` returns the unacknowledged ones oldest
    first; ``ack(ids)`` settles them; ``mark_sent(ids, at)`` records a (re)send so the caller
    can resend only what has waited long enough; ``prune()`` forgets acknowledged rows older
    than ``keep_days``.
    """

    def __init__(self, path: str | Path, *, keep_days: float = DEFAULT_KEEP_DAYS) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise OutboxFolderError(
                f"cannot keep the outbox {self.path.name} in {self.path.parent}: "
                f"{blocking_file(self.path.parent)} "
                "exists and is not a folder; give the outbox a folder (a missing one is created)"
            ) from None
        self.keep_days = float(keep_days)
        # isolation_level=None: we open and commit every transaction ourselves.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        with self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )

    # ---- life cycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; the object cannot be used afterwards."""
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # ---- writing -------------------------------------------------------------------------

    def put(self, message: Mapping[str, Any]) -> None:
        """Store ``message`` durably under ``message["id"]``; an id already there is ignored."""
        self.put_many([message])

    def put_many(self, messages: Iterable[Mapping[str, Any]]) -> int:
        """Store several messages in one transaction; returns how many were new."""
        rows = [(_message_id(message), _dump(message)) for message in messages]
        if not rows:
            return 0
        now = time.time()
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO outbox (id, payload, created_at) VALUES (?, ?, ?)",
                [(event_id, payload, now) for event_id, payload in rows],
            )
            return self._db.total_changes - before

    def put_numbered(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        counter: str = "seq",
        field: str = "seq",
        after: int = 0,
    ) -> list[dict[str, Any]]:
        """Store new messages, numbering each from the durable ``counter`` (in ``field``).

        Numbering goes on from the counter or from ``after``, whichever is higher (the caller
        may have used numbers it did not store, such as telemetry's). Numbers and rows are
        written in one transaction, so a stored number is never used twice and never skipped
        by a message that was already there. Returns the messages stored, numbered; those
        whose id was already stored (or repeated in ``messages``) are left out.
        """
        wanted = [(_message_id(message), message) for message in messages]
        if not wanted:
            return []
        key = f"counter:{counter}"
        now = time.time()
        stored: list[dict[str, Any]] = []
        with self._transaction():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            number = max(0 if row is None else int(row[0]), int(after))
            seen: set[str] = set()
            for event_id, message in wanted:
                if (
                    event_id in seen
                    or self._db.execute("SELECT 1 FROM outbox WHERE id = ?", (event_id,)).fetchone()
                ):
                    continue
                seen.add(event_id)
                numbered = {**message, field: number + 1}
                self._db.execute(
                    "INSERT INTO outbox (id, payload, created_at) VALUES (?, ?, ?)",
                    (event_id, _dump(numbered), now),
                )
                number += 1
                stored.append(numbered)
            if stored:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, number),
                )
        return stored

    def ack(self, ids: Iterable[str]) -> int:
        """Mark the messages with these ids acknowledged; returns how many were pending."""
        wanted = list(dict.fromkeys(str(event_id) for event_id in ids))
        if not wanted:
            return 0
        now = time.time()
        settled = 0
        with self._transaction():
            for start in range(0, len(wanted), _ACK_CHUNK):
                chunk = wanted[start : start + _ACK_CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor = self._db.execute(
                    f"UPDATE outbox SET acked_at = ? WHERE acked_at IS NULL AND id IN ({marks})",
                    (now, *chunk),
                )
                settled += cursor.rowcount
        return settled

    def mark_sent(self, ids: Iterable[str], at: float | None = None) -> None:
        """Record that these messages were (re)sent at ``at`` (epoch seconds, default now)."""
        wanted = list(dict.fromkeys(str(event_id) for event_id in ids))
        if not wanted:
            return
        when = time.time() if at is None else float(at)
        with self._transaction():
            self._db.executemany(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1 "
                "WHERE id = ? AND acked_at IS NULL",
                [(when, event_id) for event_id in wanted],
            )

    def prune(self, keep_days: float | None = None, *, now: float | None = None) -> int:
        """Delete acknowledged rows acknowledged more than ``keep_days`` ago; returns how many.

        Pending rows are never pruned.
        """
        days = self.keep_days if keep_days is None else float(keep_days)
        cutoff = (time.time() if now is None else now) - days * 86400.0
        with self._transaction():
            cursor = self._db.execute(
                "DELETE FROM outbox WHERE acked_at IS NOT NULL AND acked_at < ?", (cutoff,)
            )
            return cursor.rowcount

    # ---- counters kept with the data -----------------------------------------------------

    def next_counter(self, name: str) -> int:
        """Increment and return a durable counter (1 the first time), e.g. the event ``seq``."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, 1) "
                "ON CONFLICT (key) DO UPDATE SET value = value + 1",
                (f"counter:{name}",),
            )
            row = self._db.execute(
                "SELECT value FROM meta WHERE key = ?", (f"counter:{name}",)
            ).fetchone()
        return int(row[0])

    def counter(self, name: str) -> int:
        """The current value of a durable counter (0 before its first use)."""
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = ?", (f"counter:{name}",)
        ).fetchone()
        return 0 if row is None else int(row[0])

    # ---- reading -------------------------------------------------------------------------

    def pending(
        self, limit: int = 100, *, sent_before: float | None = None
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` unacknowledged messages, oldest first.

        With ``sent_before`` (epoch seconds), only those never sent or last sent before then:
        the ones due for a resend.
        """
        return [row.message for row in self.pending_rows(limit, sent_before=sent_before)]

    def pending_rows(
        self, limit: int = 100, *, sent_before: float | None = None
    ) -> list[PendingRow]:
        """Like ``pending`` but the stored rows: id, JSON text, attempts, last sent time."""
        columns = "SELECT id, payload, attempts, sent_at FROM outbox WHERE acked_at IS NULL"
        if sent_before is None:
            cursor = self._db.execute(f"{columns} ORDER BY position LIMIT ?", (int(limit),))
        else:
            cursor = self._db.execute(
                f"{columns} AND (sent_at IS NULL OR sent_at < ?) ORDER BY position LIMIT ?",
                (float(sent_before), int(limit)),
            )
        return [PendingRow(*row) for row in cursor.fetchall()]

    def due(
        self,
        limit: int = 100,
        *,
        now: float,
        resend_after: float,
        max_resend_after: float = 3600.0,
        sent_before: float | None = None,
    ) -> list[PendingRow]:
        """Unacknowledged messages due for a (re)send at ``now``, oldest first.

        Due are those never sent, those last sent before ``sent_before`` (the start of the
        current connection), and those whose wait since their last send reached
        ``resend_after`` doubled for each send after the first, at most ``max_resend_after``.
        """
        cursor = self._db.execute(
            "SELECT id, payload, attempts, sent_at FROM outbox WHERE acked_at IS NULL AND ("
            " sent_at IS NULL OR sent_at < ?"
            " OR sent_at + min(? * (1 << min(max(attempts - 1, 0), 30)), ?) <= ?"
            ") ORDER BY position LIMIT ?",
            (
                float("-inf") if sent_before is None else float(sent_before),
                float(resend_after),
                float(max_resend_after),
                float(now),
                int(limit),
            ),
        )
        return [PendingRow(*row) for row in cursor.fetchall()]

    def contains(self, event_id: str) -> bool:
        """True when a message with this id is stored, pending or acknowledged."""
        row = self._db.execute("SELECT 1 FROM outbox WHERE id = ?", (str(event_id),)).fetchone()
        return row is not None

    def is_pending(self, event_id: str) -> bool:
        """True when a message with this id is stored and not yet acknowledged."""
        row = self._db.execute(
            "SELECT 1 FROM outbox WHERE id = ? AND acked_at IS NULL", (str(event_id),)
        ).fetchone()
        return row is not None

    def count(self) -> int:
        """How many messages await acknowledgement."""
        (value,) = self._db.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL").fetchone()
        return int(value)

    def count_acked(self) -> int:
        """How many acknowledged messages are still kept (until pruned)."""
        (value,) = self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE acked_at IS NOT NULL"
        ).fetchone()
        return int(value)

    def attempts(self, event_id: str) -> int:
        """How many times the message with this id was marked sent (0 when unknown)."""
        row = self._db.execute(
            "SELECT attempts FROM outbox WHERE id = ?", (str(event_id),)
        ).fetchone()
        return 0 if row is None else int(row[0])


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on an exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _message_id(message: Mapping[str, Any]) -> str:
    event_id = message.get("id") if isinstance(message, Mapping) else None
    if not isinstance(event_id, str) or not event_id:
        raise OutboxError(f"an outbox message needs a non-empty text 'id', got {event_id!r}")
    return event_id


def _dump(message: Mapping[str, Any]) -> str:
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise OutboxError(f"message {message.get('id')!r} is not JSON: {error}") from None
