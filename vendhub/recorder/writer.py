"""The writer thread: the only code that writes to the recorder's database.

The event loop hands it bus events through a thread-safe queue and never waits for it. State
changes and other events are kept in memory and written in one transaction every
``commit_interval`` seconds; money events (vends, refills, cash collections) are written and
committed as soon as they arrive, and acknowledged back to the loop only after the commit.
While the database is unreachable the writer keeps draining the queue into bounded buffers,
retries with backoff, and writes everything when the database returns; what the bounds force
it to drop is counted and logged.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, bindparam, insert, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from vendhub.core.events import Event, EventOrigin
from vendhub.recorder.convert import context_id_to_bytes, fit_to_column, to_json
from vendhub.recorder.engine import backoff_delay, is_connection_error, redact_url
from vendhub.recorder.ledger import MoneyRecord, write_money_event, write_rejected_money_event
from vendhub.recorder.models import (
    Events,
    EventTypes,
    StateAttributes,
    StatesMeta,
)

_LOGGER = logging.getLogger(__name__)

_ATTRIBUTE_CACHE_SIZE = 8192
_ORIGINS = {EventOrigin.local: 0, EventOrigin.remote: 1}
_DRAIN_LIMIT = 20_000  # items taken from the queue before the writer looks at its clock again
_LOOKUP_CHUNK = 500  # attribute hashes per look-up query
_INSERT_CHUNK = 500  # attribute sets per INSERT
_ATTRIBUTES_BY_HASH = select(StateAttributes.attributes_id, StateAttributes.shared_attrs).where(
    StateAttributes.hash.in_(bindparam("hashes", expanding=True))
)


class DurableRecord(Protocol):
    """A row that must not wait for the history commit (the audit log's): the writer writes
    it with the money events, in their transaction, committed at once.

    ``write`` should raise nothing but the driver's connection errors: check and trim values
    before queueing (a row the database refuses is logged and left out, and the money events
    of its batch are then written one by one).
    ``committed`` is called in the writer thread after the commit and must not raise.
    """

    def write(self, connection: Connection) -> None:
        """Insert the row (inside the writer's transaction; do not commit)."""

    def committed(self) -> None:
        """The row is committed."""


class Job:
    """Work the writer runs between writes, one step at a time, with its own session.

    ``step(session)`` does one short transaction and returns True when there is more to do.
    ``done(result)`` is called with the last step's return value, or with the exception.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[Session], Any],
        done: Callable[[Any], None],
        more: Callable[[Any], bool] = lambda result: False,
    ) -> None:
        self.name = name
        self.step = step
        self.done = done
        self.more = more


@dataclass
class WriterStats:
    """Counters, read by the loop for diagnostics and by tests."""

    states_written: int = 0
    events_written: int = 0
    money_written: int = 0
    money_duplicates: int = 0
    money_rejected: int = 0
    """Money events the ledger could not take (the database refused them, or a field was
    missing): logged, and kept in ``rejected_money_events``."""
    states_dropped: int = 0
    events_dropped: int = 0
    money_dropped: int = 0
    commits: int = 0
    connected: bool = False
    connect_failures: int = 0
    last_error: str | None = None
    backlog: int = 0
    jobs_run: int = 0
    migration: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WriterSettings:
    """How the writer batches, bounds and retries."""

    commit_interval: float = 5.0
    max_backlog: int = 100_000
    max_money_backlog: int = 50_000
    retry_first_delay: float = 1.0
    retry_max_delay: float = 60.0


class RecorderWriter(threading.Thread):
    """Drains the recorder queue into the database; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        work_queue: queue.SimpleQueue[tuple[Any, ...]],
        settings: WriterSettings,
        on_money_recorded: Callable[[list[MoneyRecord]], None],
        on_ready: Callable[[BaseException | None], None] = lambda error: None,
    ) -> None:
        super().__init__(name="recorder", daemon=True)
        self.engine = engine
        self.queue = work_queue
        self.settings = settings
        self.stats = WriterStats()
        self._on_money_recorded = on_money_recorded
        self._on_ready = on_ready
        self._connection: Connection | None = None
        self._pending_states: list[Event] = []
        self._pending_events: list[Event] = []
        self._pending_money: list[Event | DurableRecord] = []
        self._jobs: list[Job] = []
        self._flush_waiters: list[Callable[[], None]] = []
        self._stopping = False
        self._next_commit = time.monotonic() + settings.commit_interval
        self._next_connect = 0.0
        self._migrated = False
        self._metadata_ids: dict[str, int] = {}
        self._event_type_ids: dict[str, int] = {}
        # id(attributes mapping) -> (the mapping, attributes_id): States share their attribute
        # mapping while only the state string changes, so most look-ups hit here.
        self._attributes_by_object: OrderedDict[int, tuple[Any, int]] = OrderedDict()
        self._attributes_by_json: OrderedDict[str, int] = OrderedDict()

    # ---- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        """Write until a stop item arrives; never raises."""
        try:
            self._try_connect(first=True)
            while not self._stopping:
                self._cycle()
            self._final_flush()
        except BaseException as error:  # the thread must report, never vanish silently
            _LOGGER.exception("The recorder's writer failed and stopped")
            self.stats.last_error = f"{type(error).__name__}: {error}"
        finally:
            self._close()

    def _cycle(self) -> None:
        wake_at = self._next_commit if self._connection is not None else self._next_connect
        timeout = wake_at - time.monotonic()
        if self._jobs and self._connection is not None:
            timeout = 0.0
        try:
            item = (
                self.queue.get(timeout=max(0.0, timeout))
                if timeout > 0
                else (self.queue.get_nowait())
            )
        except queue.Empty:
            item = None
        if item is not None:
            self._handle(item)
            for _ in range(_DRAIN_LIMIT):
                if self._stopping:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                self._handle(item)
        if self._connection is None and time.monotonic() >= self._next_connect:
            self._try_connect(first=False)
        history = len(self._pending_states) + len(self._pending_events)
        self.stats.backlog = history + len(self._pending_money)
        if self._connection is None:
            self._bound_backlog()
            return
        if self._pending_money:
            self._write_money()
            if self._connection is None:  # lost while writing: the history waits with it
                return
        if (
            time.monotonic() >= self._next_commit
            or self._flush_waiters
            or history >= self.settings.max_backlog
        ):
            self._flush_history()
        elif self._jobs and self.queue.empty():
            self._run_job_step()

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "s":
            self._pending_states.append(item[1])
        elif kind == "e":
            self._pending_events.append(item[1])
        elif kind == "m":
            self._pending_money.append(item[1])
        elif kind == "flush":
            self._flush_waiters.append(item[1])
        elif kind == "job":
            self._jobs.append(item[1])
        elif kind == "stop":
            self._stopping = True

    def _bound_backlog(self) -> None:
        """While the database is unreachable, keep at most ``max_backlog`` records in memory."""
        history = len(self._pending_states) + len(self._pending_events)
        excess = history - self.settings.max_backlog
        if excess > 0:
            # Telemetry goes first, oldest first; events (alarms, commands) are kept longer.
            from_states = min(excess, len(self._pending_states))
            del self._pending_states[:from_states]
            self.stats.states_dropped += from_states
            from_events = excess - from_states
            if from_events:
                del self._pending_events[:from_events]
                self.stats.events_dropped += from_events
            _LOGGER.error(
                "Recorder backlog over %d while the database is unreachable: dropped %d state "
                "changes and %d events (in all: %d and %d)",
                self.settings.max_backlog,
                from_states,
                from_events,
                self.stats.states_dropped,
                self.stats.events_dropped,
            )
        money_excess = len(self._pending_money) - self.settings.max_money_backlog
        if money_excess > 0:
            del self._pending_money[:money_excess]
            self.stats.money_dropped += money_excess
            _LOGGER.error(
                "Recorder money backlog over %d: %d unacknowledged money events dropped "
                "(machines keep unacknowledged events and send them again)",
                self.settings.max_money_backlog,
                money_excess,
            )

    # ---- connection --------------------------------------------------------------------

    def _try_connect(self, first: bool) -> None:
        try:
            if not self._migrated:
                from vendhub.recorder.migrate import upgrade_database

                result = upgrade_database(self.engine)
                self.stats.migration = str(result)
                self._migrated = True
            connection = self.engine.connect()
            if self.engine.dialect.name == "sqlite":
                # The writer commits once per commit interval and once per money batch, so a
                # sync per commit is cheap, and a commit then survives a power cut too.
                connection.exec_driver_sql("PRAGMA synchronous=FULL")
            self._load_ids(connection)
        except OperationalError as error:
            self._connect_failed(error, first)
            return
        except BaseException as error:
            if first:
                self._on_ready(error)
            raise
        self._connection = connection
        self.stats.connected = True
        if self.stats.connect_failures:
            _LOGGER.warning(
                "Recorder database %s is reachable again after %d failed attempts; writing "
                "%d buffered records",
                redact_url(self.engine.url),
                self.stats.connect_failures,
                self.stats.backlog,
            )
        self.stats.connect_failures = 0
        if first:
            self._on_ready(None)

    def _connect_failed(self, error: BaseException, first: bool) -> None:
        self.stats.connect_failures += 1
        self.stats.connected = False
        self.stats.last_error = _short(error)
        delay = backoff_delay(
            self.stats.connect_failures,
            self.settings.retry_first_delay,
            self.settings.retry_max_delay,
        )
        self._next_connect = time.monotonic() + delay
        _LOGGER.error(
            "Recorder database %s is unreachable (%s); keeping records in memory (up to %d) "
            "and trying again in %.1f s",
            redact_url(self.engine.url),
            _short(error),
            self.settings.max_backlog,
            delay,
        )
        if first:
            self._on_ready(None)

    def _lost_connection(self, error: BaseException) -> None:
        _LOGGER.error("Recorder lost its database connection: %s", _short(error))
        self._close()
        self._forget_uncommitted_ids()
        self._connect_failed(error, first=False)
        # Here too, not only while no connection could be made: a database that takes
        # connections but not writes (locked) reconnects at every retry.
        self._bound_backlog()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        self.stats.connected = False
        if connection is not None:
            with contextlib.suppress(DBAPIError):
                connection.close()

    def _load_ids(self, connection: Connection) -> None:
        self._metadata_ids = {
            entity_id: metadata_id
            for entity_id, metadata_id in connection.execute(
                select(StatesMeta.entity_id, StatesMeta.metadata_id)
            )
        }
        self._event_type_ids = {
            event_type: type_id
            for event_type, type_id in connection.execute(
                select(EventTypes.event_type, EventTypes.event_type_id)
            )
        }
        connection.rollback()

    def _forget_uncommitted_ids(self) -> None:
        # Ids handed out inside a transaction that rolled back may not exist: look them up again.
        self._metadata_ids.clear()
        self._event_type_ids.clear()
        self._attributes_by_object.clear()
        self._attributes_by_json.clear()

    # ---- history -----------------------------------------------------------------------

    def _flush_history(self) -> None:
        self._next_commit = time.monotonic() + self.settings.commit_interval
        states, events = self._pending_states, self._pending_events
        if states or events:
            for attempt in (1, 2):
                try:
                    self._write_history(states, events)
                    break
                except Exception as error:
                    if is_connection_error(error):
                        self._lost_connection(error)
                        return
                    # A cached id the database no longer has: forget the caches and try once
                    # more. History that still does not fit is dropped, loudly, never the
                    # writer (retrying it after a reconnect would stall all history for good).
                    self._forget_uncommitted_ids()
                    if attempt == 2:
                        self.stats.states_dropped += len(states)
                        self.stats.events_dropped += len(events)
                        _LOGGER.error(
                            "Recorder dropped %d state changes and %d events the database "
                            "refused: %s",
                            len(states),
                            len(events),
                            _short(error),
                        )
            self._pending_states = []
            self._pending_events = []
        waiters, self._flush_waiters = self._flush_waiters, []
        for waiter in waiters:
            waiter()

    def _write_history(self, states: list[Event], events: list[Event]) -> None:
        connection = self._connection
        assert connection is not None
        with connection.begin():
            if states:
                self._insert_states(connection, states)
            if events:
                self._insert_events(connection, events)
        self.stats.states_written += len(states)
        self.stats.events_written += len(events)
        self.stats.commits += 1

    def _insert_states(self, connection: Connection, events: list[Event]) -> None:
        # The hot loop of the recorder: locals and inlined cache look-ups on purpose.
        metadata_ids = self._metadata_ids
        by_object = self._attributes_by_object
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        # Attribute sets the caches do not know, by id(mapping): looked up and inserted for the
        # whole batch at once (one row at a time cost more than the states themselves). Their
        # rows hold the set's JSON where the id goes until then.
        unknown: dict[int, tuple[Any, str]] = {}
        for event in events:
            data = event.data
            entity_id = data["entity_id"]
            metadata_id = metadata_ids.get(entity_id)
            if metadata_id is None:
                metadata_id = self._new_metadata_id(connection, entity_id)
            state = data["new_state"]
            if state is None:  # removed
                append(
                    (
                        metadata_id,
                        None,
                        None,
                        event.time_fired.timestamp(),
                        None,
                        context_id_to_bytes(event.context.id),
                    )
                )
                continue
            attributes = state.attributes
            attrs_id: int | str | None = None
            if attributes:
                cached = by_object.get(id(attributes))
                if cached is not None and cached[0] is attributes:
                    attrs_id = cached[1]
                else:
                    found = unknown.get(id(attributes))
                    if found is None:
                        found = unknown[id(attributes)] = (attributes, to_json(attributes))
                    attrs_id = found[1]
            updated = state.last_updated
            changed = state.last_changed
            try:
                context_id: bytes | None = bytes.fromhex(state.context.id)
            except ValueError:
                context_id = None
            append(
                (
                    metadata_id,
                    state.state,
                    attrs_id,
                    updated.timestamp(),
                    None if changed is updated or changed == updated else changed.timestamp(),
                    context_id,
                )
            )
        if unknown:
            ids = self._attributes_ids(connection, {shared for _, shared in unknown.values()})
            for attributes, shared in unknown.values():
                self._remember(by_object, id(attributes), (attributes, ids[shared]))
            rows = [
                (row[0], row[1], ids[row[2]], *row[3:]) if type(row[2]) is str else row
                for row in rows
            ]
        connection.exec_driver_sql(self._states_sql(), rows)

    def _states_sql(self) -> str:
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        return (
            "INSERT INTO states (metadata_id, state, attributes_id, last_updated_ts, "
            f"last_changed_ts, context_id) VALUES ({', '.join([mark] * 6)})"
        )

    def _new_metadata_id(self, connection: Connection, entity_id: str) -> int:
        found = _find_or_insert(connection, StatesMeta.metadata_id, StatesMeta.entity_id, entity_id)
        self._metadata_ids[entity_id] = found
        return found

    def _attributes_ids(self, connection: Connection, wanted: set[str]) -> dict[str, int]:
        """The ``attributes_id`` of each attribute set (as JSON), inserting the new ones."""
        by_json = self._attributes_by_json
        ids: dict[str, int] = {}
        missing: dict[str, int] = {}  # JSON -> its hash
        for shared in wanted:
            cached = by_json.get(shared)
            if cached is None:
                missing[shared] = zlib.crc32(shared.encode())
            else:
                ids[shared] = cached
        if not missing:
            return ids
        hashes = sorted(set(missing.values()))
        for start in range(0, len(hashes), _LOOKUP_CHUNK):
            for attributes_id, text in connection.execute(
                _ATTRIBUTES_BY_HASH, {"hashes": hashes[start : start + _LOOKUP_CHUNK]}
            ):
                if text in missing and text not in ids:
                    ids[text] = int(attributes_id)
        new = [shared for shared in missing if shared not in ids]
        if new:
            ids.update(self._insert_attributes(connection, new, missing))
        for shared in missing:
            self._remember(by_json, shared, ids[shared])
        return ids

    def _insert_attributes(
        self, connection: Connection, new: list[str], hashes: dict[str, int]
    ) -> dict[str, int]:
        if not self.engine.dialect.insert_returning:  # MySQL
            return {
                shared: int(
                    connection.execute(
                        insert(StateAttributes), {"hash": hashes[shared], "shared_attrs": shared}
                    ).inserted_primary_key[0]
                )
                for shared in new
            }
        # Many rows to one INSERT ... RETURNING, in the driver's SQL: SQLAlchemy's own costs
        # more per row than the database does. RETURNING gives no order: the hash tells the
        # rows apart, and the text where two share a hash (text as the database gives it back
        # may differ, say in a narrower character set, so it is not the first choice).
        ids: dict[str, int] = {}
        for start in range(0, len(new), _INSERT_CHUNK):
            chunk = new[start : start + _INSERT_CHUNK]
            by_hash: dict[int, list[str]] = {}
            for shared in chunk:
                by_hash.setdefault(hashes[shared], []).append(shared)
            values = [value for shared in chunk for value in (hashes[shared], shared)]
            for attributes_id, digest, text in connection.exec_driver_sql(
                self._attributes_sql(len(chunk)), tuple(values)
            ):
                candidates = by_hash[int(digest)]
                shared = text if text in candidates else candidates[0]
                candidates.remove(shared)
                ids[shared] = int(attributes_id)
        return ids

    def _attributes_sql(self, rows: int) -> str:
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        return (
            "INSERT INTO state_attributes (hash, shared_attrs) VALUES "
            f"{', '.join([f'({mark}, {mark})'] * rows)} "
            "RETURNING attributes_id, hash, shared_attrs"
        )

    @staticmethod
    def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        if len(cache) > _ATTRIBUTE_CACHE_SIZE:
            cache.popitem(last=False)

    def _insert_events(self, connection: Connection, events: list[Event]) -> None:
        rows = []
        for event in events:
            type_id = self._event_type_ids.get(event.event_type)
            if type_id is None:
                type_id = self._new_event_type_id(connection, event.event_type)
            context = event.context
            rows.append(
                {
                    "event_type_id": type_id,
                    "event_data": to_json(dict(event.data)) if event.data else None,
                    "origin": _ORIGINS.get(event.origin, 0),
                    "time_fired_ts": event.time_fired.timestamp(),
                    "context_id": context_id_to_bytes(context.id),
                    # "machine:<id>" of a machine with a long id does not fit.
                    "context_user_id": fit_to_column(context.user_id, Events.context_user_id),
                    "context_parent_id": context_id_to_bytes(context.parent_id),
                }
            )
        connection.execute(insert(Events), rows)

    def _new_event_type_id(self, connection: Connection, event_type: str) -> int:
        found = _find_or_insert(
            connection, EventTypes.event_type_id, EventTypes.event_type, event_type
        )
        self._event_type_ids[event_type] = found
        return found

    # ---- money ---------------------------------------------------------------------------

    def _write_money(self) -> None:
        connection = self._connection
        assert connection is not None
        events = self._pending_money
        records: list[MoneyRecord] = []
        durable: list[DurableRecord] = []
        try:
            with connection.begin():
                for event in events:
                    if isinstance(event, Event):
                        records.append(write_money_event(connection, event))
                    else:
                        event.write(connection)
                        durable.append(event)
        except Exception as error:
            if is_connection_error(error):
                self._lost_connection(error)
                return
            # One event the database refuses (or that lacks a field) must not stop the
            # others, nor the writer: each goes alone, and the one that fails is set aside.
            self._write_money_one_by_one(connection)
            return
        self._pending_money = []
        self._money_committed(records, durable)

    def _write_money_one_by_one(self, connection: Connection) -> None:
        """Write each pending money event in a transaction of its own; log, count and keep
        aside the ones that cannot be written. On a connection error the rest stays pending."""
        records: list[MoneyRecord] = []
        durable: list[DurableRecord] = []
        events = self._pending_money
        for index, event in enumerate(events):
            try:
                with connection.begin():
                    if isinstance(event, Event):
                        record = write_money_event(connection, event)
                    else:
                        event.write(connection)
            except Exception as error:
                try:
                    if is_connection_error(error):
                        raise
                    kept = self._keep_rejected(connection, event, error)
                except Exception as lost:  # the connection went: this one and the rest wait
                    self._pending_money = events[index:]
                    self._money_committed(records, durable)
                    self._lost_connection(lost)
                    return
                self.stats.money_rejected += 1
                _LOGGER.error(
                    "Recorder: the ledger cannot take %s (%s); %s",
                    _describe_money(event),
                    _short(error),
                    "kept in rejected_money_events" if kept is not None else "left out",
                )
                if kept is not None:
                    records.append(kept)
                continue
            if isinstance(event, Event):
                records.append(record)
            else:
                durable.append(event)
        self._pending_money = []
        self._money_committed(records, durable)

    def _keep_rejected(
        self, connection: Connection, item: Event | DurableRecord, error: BaseException
    ) -> MoneyRecord | None:
        """Keep a money event the ledger refused in ``rejected_money_events``; its record (to
        acknowledge it: nothing of it is lost), or None when it could not be kept either.
        Raises the connection's errors."""
        if not isinstance(item, Event):
            return None
        try:
            with connection.begin():
                return write_rejected_money_event(connection, item, error)
        except Exception as failure:
            if is_connection_error(failure):
                raise
            _LOGGER.error(
                "Recorder: could not keep the rejected %s either: %s",
                _describe_money(item),
                _short(failure),
            )
            return None

    def _money_committed(self, records: list[MoneyRecord], durable: list[DurableRecord]) -> None:
        written = sum(1 for record in records if not record.duplicate and not record.rejected)
        self.stats.money_written += written
        self.stats.money_duplicates += sum(1 for record in records if record.duplicate)
        self.stats.commits += 1
        for record in durable:
            try:
                record.committed()
            except Exception:
                _LOGGER.exception("Recorder: acknowledging a committed record failed")
        if records:
            self._on_money_recorded(records)

    # ---- jobs --------------------------------------------------------------------------

    def _run_job_step(self) -> None:
        job = self._jobs[0]
        try:
            with Session(self.engine) as session:
                result = job.step(session)
        except OperationalError as error:
            self._lost_connection(error)
            return
        except Exception as error:
            self._jobs.pop(0)
            _LOGGER.exception("Recorder job %s failed", job.name)
            job.done(error)
            return
        self._forget_purged(result)
        if not job.more(result):
            self._jobs.pop(0)
            self.stats.jobs_run += 1
            job.done(result)

    def _forget_purged(self, result: Any) -> None:
        """Drop ids a purge deleted from the caches, so no insert refers to a deleted row."""
        metadata = getattr(result, "removed_metadata_ids", None)
        if metadata:
            self._metadata_ids = {
                key: value for key, value in self._metadata_ids.items() if value not in metadata
            }
        event_types = getattr(result, "removed_event_type_ids", None)
        if event_types:
            self._event_type_ids = {
                key: value
                for key, value in self._event_type_ids.items()
                if value not in event_types
            }
        attributes = getattr(result, "removed_attributes_ids", None)
        if attributes:
            for cache in (self._attributes_by_object, self._attributes_by_json):
                for key in [
                    key for key, value in cache.items() if _attributes_id_of(value) in attributes
                ]:
                    del cache[key]

    # ---- stop ----------------------------------------------------------------------------

    def _final_flush(self) -> None:
        for item in _drain(self.queue):
            if item[0] != "stop":
                self._handle(item)
        if self._connection is None:
            self._try_connect(first=False)
        if self._connection is None:
            lost = len(self._pending_states) + len(self._pending_events)
            _LOGGER.error(
                "Recorder stopped without a database: %d state changes and events and %d "
                "unacknowledged money events were not written",
                lost,
                len(self._pending_money),
            )
            return
        if self._pending_money:
            self._write_money()
        self._flush_history()
        for job in self._jobs:
            job.done(RuntimeError("the recorder stopped before the job ran"))
        self._jobs.clear()


def _find_or_insert(connection: Connection, id_column: Any, name_column: Any, name: str) -> int:
    """The id of the row whose ``name_column`` is ``name``, inserting the row if it is new.

    A name longer than the column is cut to fit (an automation may fire an event type of any
    length; PostgreSQL and MariaDB refuse what does not fit, SQLite would keep it whole)."""
    name = fit_to_column(name, name_column)
    found = connection.execute(select(id_column).where(name_column == name)).scalar()
    if found is None:
        found = connection.execute(
            insert(name_column.table).values({name_column.key: name})
        ).inserted_primary_key[0]
    return int(found)


def _drain(work_queue: queue.SimpleQueue[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    while True:
        try:
            yield work_queue.get_nowait()
        except queue.Empty:
            return


def _attributes_id_of(cached: Any) -> int:
    return cached[1] if isinstance(cached, tuple) else int(cached)


def _describe_money(item: Event | DurableRecord) -> str:
    if isinstance(item, Event):
        data = item.data
        return (
            f"{item.event_type} event {data.get('event_id')!r} of machine "
            f"{data.get('machine_id')!r}"
        )
    return f"a {type(item).__name__} record"


def _short(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(getattr(error, 'orig', None) or error).__name__}: {text[0] if text else ''}"
