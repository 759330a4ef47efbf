"""The recorder on the hub's side: what to record, the queue to the writer, acknowledgements."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import queue
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from vendhub.const import (
    EVENT_HUB_FINAL_WRITE,
    EVENT_MONEY_RECORDED,
    EVENT_STATE_CHANGED,
    MATCH_ALL,
)
from vendhub.core.timers import async_track_point_in_time, async_track_time_interval
from vendhub.helpers.alarms import async_raise_alarm
from vendhub.recorder.engine import default_db_url, make_engine, redact_url
from vendhub.recorder.ledger import MONEY_EVENTS, MoneyRecord
from vendhub.recorder.writer import DurableRecord, Job, RecorderWriter, WriterSettings, WriterStats
from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

ALARM_MONEY_EVENT_REJECTED = "money_event_rejected"
"""The alarm raised for a money event the ledger could not take (``rejected_money_events``)."""
_T = TypeVar("_T")

DATA_RECORDER = "recorder"
# Records queued for the writer, not yet taken, past which it is behind: what feeds the hub
# should wait (each queued record holds its state or event, about a kilobyte or two).
BEHIND_RECORDS = 5000
# Events that are about the recorder, the hub's own wiring or the transport, not about the
# fleet (what an MQTT message means is recorded as the states and events it causes).
NEVER_RECORDED = frozenset(
    {
        EVENT_MONEY_RECORDED,
        "service_registered",
        "service_removed",
        "integration_loaded",
        "mqtt_message_received",
    }
)


class RecorderNotRunning(Exception):
    """The recorder is not set up, or has stopped."""


@dataclass(frozen=True)
class RecorderConfig:
    """The validated ``recorder:`` block."""

    db_url: str
    keep_days: int = 10
    commit_interval: float = 5.0
    purge_time: tuple[int, int] = (4, 12)  # local hour and minute of the daily purge
    purge_batch_size: int = 5000
    max_backlog: int = 100_000
    include_entities: frozenset[str] = frozenset()
    include_entity_globs: tuple[str, ...] = ()
    include_domains: frozenset[str] = frozenset()
    exclude_entities: frozenset[str] = frozenset()
    exclude_entity_globs: tuple[str, ...] = ()
    exclude_domains: frozenset[str] = frozenset()
    exclude_event_types: frozenset[str] = frozenset()
    setup_connect_timeout: float = 10.0
    retry_first_delay: float = 1.0
    retry_max_delay: float = 60.0


@dataclass
class EntityFilter:
    """Which entities' state changes are recorded; decisions are cached per entity id."""

    config: RecorderConfig
    _cache: dict[str, bool] = field(default_factory=dict)

    def __call__(self, entity_id: str) -> bool:
        decision = self._cache.get(entity_id)
        if decision is None:
            decision = self._cache[entity_id] = self._decide(entity_id)
        return decision

    def _decide(self, entity_id: str) -> bool:
        config = self.config
        domain = entity_id.partition(".")[0]
        if entity_id in config.exclude_entities:
            return False
        if any(fnmatch.fnmatchcase(entity_id, glob) for glob in config.exclude_entity_globs):
            return False
        if domain in config.exclude_domains:
            return False
        includes = config.include_entities or config.include_entity_globs or config.include_domains
        if not includes:
            return True
        return (
            entity_id in config.include_entities
            or domain in config.include_domains
            or any(fnmatch.fnmatchcase(entity_id, glob) for glob in config.include_entity_globs)
        )


class Recorder:
    """Listens to the bus and feeds the writer thread; kept in ``hub.data["recorder"]``."""

    def __init__(self, hub: Hub, config: RecorderConfig) -> None:
        self.hub = hub
        self.config = config
        self.engine = make_engine(config.db_url)
        self.queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.entity_filter = EntityFilter(config)
        self.writer = RecorderWriter(
            self.engine,
            self.queue,
            WriterSettings(
                commit_interval=config.commit_interval,
                max_backlog=config.max_backlog,
                max_money_backlog=config.max_backlog,
                retry_first_delay=config.retry_first_delay,
                retry_max_delay=config.retry_max_delay,
            ),
            on_money_recorded=self._from_writer_money_recorded,
            on_ready=self._from_writer_ready,
        )
        self._ready: asyncio.Future[None] = hub.loop.create_future()
        self._money_waiters: dict[tuple[str, str], list[asyncio.Future[MoneyRecord]]] = {}
        self._unsubscribe: list[Unsubscribe] = []
        self._stopped = False

    @property
    def stats(self) -> WriterStats:
        """The writer's counters."""
        return self.writer.stats

    def behind(self) -> bool:
        """True while the writer cannot keep up: more than ``BEHIND_RECORDS`` wait for it.

        While the database is unreachable the writer still takes every record (and bounds
        what it keeps), so an outage does not make it behind.
        """
        return self.queue.qsize() > BEHIND_RECORDS

    # ---- lifecycle -----------------------------------------------------------------------

    async def async_start(self) -> None:
        """Start the writer and wait until the database is migrated or found unreachable.

        Raises when the database cannot be used at all (e.g. written by a newer VendHub);
        an unreachable database only delays writing: the writer keeps retrying.
        """
        _LOGGER.info(
            "Recorder writing to %s (commit every %g s, keeping %d days of history)",
            redact_url(self.engine.url),
            self.config.commit_interval,
            self.config.keep_days,
        )
        self._unsubscribe.append(self.hub.bus.async_listen(MATCH_ALL, self._on_event))
        self.hub.bus.async_listen_once(EVENT_HUB_FINAL_WRITE, self._on_final_write)
        self.writer.start()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.config.setup_connect_timeout)
        except TimeoutError:
            _LOGGER.warning(
                "Recorder database %s did not answer within %g s; recording into memory "
                "until it does",
                redact_url(self.engine.url),
                self.config.setup_connect_timeout,
            )
        except BaseException:
            await self.async_stop()
            raise
        self._schedule_maintenance()

    def _schedule_maintenance(self) -> None:
        self._unsubscribe.append(
            async_track_time_interval(
                self.hub, self._compile_statistics, timedelta(minutes=5), name="recorder stats"
            )
        )
        self._schedule_next_purge()
        self.hub.loop.call_soon(self._compile_statistics, utcnow())

    def _schedule_next_purge(self) -> None:
        zone = ZoneInfo(self.hub.config.time_zone)
        now = datetime.now(zone)
        hour, minute = self.config.purge_time
        at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if at <= now:
            at = (now + timedelta(days=1)).replace(hour=hour, minute=minute)

        def purge_then_reschedule(_now: datetime) -> None:
            self.hub.async_create_task(self.async_purge(), name="recorder daily purge")
            self._schedule_next_purge()

        self._unsubscribe.append(async_track_point_in_time(self.hub, purge_then_reschedule, at))

    async def async_stop(self) -> None:
        """Write what is pending and stop the writer (bounded by the hub's stop stages)."""
        if self._stopped:
            return
        self._stopped = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self.queue.put(("stop",))
        if self.writer.is_alive():
            await self.hub.async_add_executor_job(self.writer.join)
        self.engine.dispose()
        for waiters in self._money_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(RecorderNotRunning("the recorder stopped"))
        self._money_waiters.clear()
        _LOGGER.info(
            "Recorder stopped: %d state changes, %d events and %d money records written",
            self.stats.states_written,
            self.stats.events_written,
            self.stats.money_written,
        )

    def _on_final_write(self, _event: Event) -> None:
        self.hub.async_create_task(self.async_stop(), name="recorder final write")

    # ---- feeding the writer ---------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        event_type = event.event_type
        if event_type == EVENT_STATE_CHANGED:
            if self.entity_filter(event.data["entity_id"]):
                self.queue.put(("s", event))
        elif event_type in MONEY_EVENTS:
            self.queue.put(("m", event))
            if event_type not in self.config.exclude_event_types:
                self.queue.put(("e", event))
        elif event_type not in NEVER_RECORDED and event_type not in self.config.exclude_event_types:
            self.queue.put(("e", event))

    # ---- from the writer thread -------------------------------------------------------------

    def _from_writer_ready(self, error: BaseException | None) -> None:
        self.hub.loop.call_soon_threadsafe(self._set_ready, error)

    def _set_ready(self, error: BaseException | None) -> None:
        if self._ready.done():
            return
        if error is None:
            self._ready.set_result(None)
        else:
            self._ready.set_exception(error)

    def _from_writer_money_recorded(self, records: list[MoneyRecord]) -> None:
        self.hub.loop.call_soon_threadsafe(self._money_recorded, records)

    def _money_recorded(self, records: list[MoneyRecord]) -> None:
        for record in records:
            self.hub.bus.async_fire(
                EVENT_MONEY_RECORDED,
                {
                    "event_type": record.event_type,
                    "machine_id": record.machine_id,
                    "event_id": record.event_id,
                    "duplicate": record.duplicate,
                    "rejected": record.rejected,
                },
            )
            for waiter in self._money_waiters.pop((record.machine_id, record.event_id), ()):
                if not waiter.done():
                    waiter.set_result(record)
            if record.rejected:
                self.hub.async_create_task(
                    self._async_alarm_rejected(record), name="recorder rejected money alarm"
                )

    async def _async_alarm_rejected(self, record: MoneyRecord) -> None:
        """Tell the operator of a money event the ledger could not take: a log line alone is
        easily missed, and the sale is missing from the sales figures until someone puts it
        right."""
        await async_raise_alarm(
            self.hub,
            ALARM_MONEY_EVENT_REJECTED,
            f"The ledger could not take {record.event_type} event {record.event_id!r} of "
            f"machine {record.machine_id}: {record.reason}. It is kept, as it came, in the "
            "recorder's rejected_money_events table.",
            machine_id=record.machine_id or None,
            severity="critical",
            data={"event_type": record.event_type, "event_id": record.event_id},
        )

    # ---- what other parts of the hub call -------------------------------------------------

    async def async_wait_recorded(
        self, machine_id: str, event_id: str, timeout: float | None = None
    ) -> MoneyRecord:
        """Wait until the money event ``event_id`` of ``machine_id`` is committed.

        Register the wait before the event is fired, or use the ``money_recorded`` event.
        """
        if self._stopped:
            raise RecorderNotRunning("the recorder stopped")
        waiter: asyncio.Future[MoneyRecord] = self.hub.loop.create_future()
        self._money_waiters.setdefault((machine_id, event_id), []).append(waiter)
        return await asyncio.wait_for(waiter, timeout)

    def async_record_money_again(self, event: Event) -> None:
        """Queue the money event ``event`` again, without its history row: a copy whose
        first commit was never confirmed (the ledger's unique keys write it once; its
        ``money_recorded`` says ``duplicate`` when the first made it after all)."""
        if self._stopped:
            raise RecorderNotRunning("the recorder stopped")
        if event.event_type not in MONEY_EVENTS:
            raise ValueError(f"{event.event_type} is not a money event")
        self.queue.put(("m", event))

    def async_write_durable(self, record: DurableRecord) -> None:
        """Queue ``record`` to be written with the money events and committed at once."""
        if self._stopped:
            raise RecorderNotRunning("the recorder stopped")
        self.queue.put(("m", record))

    async def async_flush(self, timeout: float | None = 30) -> None:
        """Commit everything queued so far (tests, shutdown, before a query that must see it)."""
        if self._stopped:
            raise RecorderNotRunning("the recorder stopped")
        done: asyncio.Future[None] = self.hub.loop.create_future()
        self.queue.put(("flush", lambda: self.hub.loop.call_soon_threadsafe(_resolve, done)))
        await asyncio.wait_for(done, timeout)

    async def async_run_job(
        self,
        name: str,
        step: Callable[[Session], _T],
        more: Callable[[_T], bool] = lambda result: False,
    ) -> _T:
        """Run ``step(session)`` in the writer thread, again while ``more(result)``.

        Returns the last step's result; a step that raises makes this raise.
        """
        if self._stopped:
            raise RecorderNotRunning("the recorder stopped")
        done: asyncio.Future[_T] = self.hub.loop.create_future()

        def finished(result: Any) -> None:
            self.hub.loop.call_soon_threadsafe(_resolve, done, result)

        self.queue.put(("job", Job(name, step, finished, more)))
        result = await done
        if isinstance(result, BaseException):
            raise result
        return result

    async def async_query(self, func: Callable[..., _T], *args: Any) -> _T:
        """Run ``func(session, *args)`` on a pooled connection in a worker thread."""

        def run() -> _T:
            with Session(self.engine) as session:
                return func(session, *args)

        return await self.hub.async_add_executor_job(run)

    async def async_purge(self, keep_days: int | None = None) -> Any:
        """Purge history older than ``keep_days`` (default: the configured value), in batches."""
        from vendhub.recorder.purge import purge_batch

        days = self.config.keep_days if keep_days is None else keep_days
        cutoff = (utcnow() - timedelta(days=days)).timestamp()
        batch = self.config.purge_batch_size
        _LOGGER.info("Purging history older than %d days", days)
        result = await self.async_run_job(
            "purge",
            lambda session: purge_batch(session, cutoff, batch),
            more=lambda result: not result.done,
        )
        return result

    def _compile_statistics(self, now: datetime) -> None:
        if self._stopped:
            return
        from vendhub.recorder.statistics import compile_missing

        zone = ZoneInfo(self.hub.config.time_zone)
        timestamp = now.timestamp()
        self.hub.async_create_task(
            self.async_run_job(
                "compile statistics",
                lambda session: compile_missing(session, timestamp, zone),
                more=lambda result: bool(result.pending),
            ),
            name="recorder statistics",
        )


def _resolve(future: asyncio.Future[Any], result: Any = None) -> None:
    if not future.done():
        future.set_result(result)


def recorder_configured(hub: Hub) -> bool:
    """Whether the hub is meant to keep a ledger: its recorder runs, or ``recorder:`` is in the
    configuration although it failed to start (or its block is invalid). Money events must
    then not be acknowledged as if nobody wanted them recorded."""
    if hub.data.get(DATA_RECORDER) is not None:
        return True
    from vendhub.plugins.manager import DATA_INTEGRATIONS

    plan = getattr(hub.data.get(DATA_INTEGRATIONS), "plan", None)
    return plan is not None and (DATA_RECORDER in plan.order or DATA_RECORDER in plan.excluded)


def get_recorder(hub: Hub) -> Recorder:
    """The hub's recorder; RecorderNotRunning if the recorder integration is not set up."""
    recorder = hub.data.get(DATA_RECORDER)
    if recorder is None:
        raise RecorderNotRunning(
            "the recorder is not set up: add 'recorder:' to configuration.yaml"
        )
    return recorder


def recorder_config_from(block: dict[str, Any], config_dir: Path) -> RecorderConfig:
    """Build a RecorderConfig from the validated ``recorder:`` block."""
    include = block.get("include", {})
    exclude = block.get("exclude", {})

    def names(section: dict[str, Any], key: str) -> Iterable[str]:
        return section.get(key, [])

    purge_at = block["purge_time"]
    return RecorderConfig(
        db_url=block.get("db_url") or default_db_url(config_dir),
        keep_days=block["keep_days"],
        commit_interval=block["commit_interval"].total_seconds(),
        purge_time=(purge_at.hour, purge_at.minute),
        purge_batch_size=block["purge_batch_size"],
        max_backlog=block["max_backlog"],
        include_entities=frozenset(names(include, "entities")),
        include_entity_globs=tuple(names(include, "entity_globs")),
        include_domains=frozenset(names(include, "domains")),
        exclude_entities=frozenset(names(exclude, "entities")),
        exclude_entity_globs=tuple(names(exclude, "entity_globs")),
        exclude_domains=frozenset(names(exclude, "domains")),
        exclude_event_types=frozenset(names(exclude, "event_types")),
    )
