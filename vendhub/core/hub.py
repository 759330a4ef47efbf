"""The Hub: owns the event loop's bus, states and services, and the lifecycle of every task."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from vendhub.const import (
    EVENT_HUB_CLOSE,
    EVENT_HUB_FINAL_WRITE,
    EVENT_HUB_START,
    EVENT_HUB_STARTED,
    EVENT_HUB_STOP,
)
from vendhub.core.errors import HubNotRunning
from vendhub.core.events import EventBus
from vendhub.core.services import ServiceRegistry
from vendhub.core.states import StateMachine

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")


class CoreState(StrEnum):
    """Where the hub is in its life."""

    not_running = "NOT_RUNNING"
    starting = "STARTING"
    running = "RUNNING"
    stopping = "STOPPING"
    final_write = "FINAL_WRITE"
    stopped = "STOPPED"


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """The validated ``vendhub:`` block of the configuration."""

    name: str = "VendHub"
    currency: str = "EUR"
    time_zone: str = "UTC"
    languages: tuple[str, ...] = ("en",)
    units: str = "metric"


@dataclass(frozen=True, slots=True)
class StopTimeouts:
    """Seconds each shutdown stage may take before the hub moves on."""

    stop: float = 3.0
    final_write: float = 1.0
    cancel: float = 0.5


@dataclass(slots=True)
class StopReport:
    """What a shutdown did, for the log and for tests."""

    finished: int = 0
    cancelled: int = 0
    seconds: float = 0.0
    stages_timed_out: list[str] = field(default_factory=list)


class Hub:
    """The root object: ``hub.bus``, ``hub.states``, ``hub.services``, ``hub.data``.

    Create it inside a running event loop. Work that must finish before shutdown goes through
    ``async_create_task``; long-running loops that shutdown should simply cancel go through
    ``async_create_background_task``.
    """

    def __init__(self, config_dir: Path | str, core_config: CoreConfig | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.config_dir = Path(config_dir).resolve()
        self.config = core_config or CoreConfig()
        self.bus = EventBus(self)
        self.states = StateMachine(self.bus)
        self.services = ServiceRegistry(self)
        self.data: dict[str, Any] = {}
        self.state = CoreState.not_running
        self.exit_code = 0
        self.stop_timeouts = StopTimeouts()
        self.last_stop_report: StopReport | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background_tasks: set[asyncio.Task[Any]] = set()
        self._stopped = asyncio.Event()

    @property
    def is_running(self) -> bool:
        """True while starting or running."""
        return self.state in (CoreState.starting, CoreState.running)

    @property
    def is_stopping(self) -> bool:
        """True from the moment a stop begins."""
        return self.state in (CoreState.stopping, CoreState.final_write, CoreState.stopped)

    def path(self, *parts: str) -> Path:
        """Return a path inside the configuration folder."""
        return self.config_dir.joinpath(*parts)

    # ---- tasks -------------------------------------------------------------------------

    def async_create_task(
        self, coro: Coroutine[Any, Any, _T], name: str | None = None
    ) -> asyncio.Task[_T]:
        """Run ``coro`` as a task the hub waits for (within a bound) when it stops."""
        return self._track(coro, name, self._tasks)

    def async_create_background_task(
        self, coro: Coroutine[Any, Any, _T], name: str
    ) -> asyncio.Task[_T]:
        """Run ``coro`` as a long-lived task the hub cancels when it stops."""
        return self._track(coro, name, self._background_tasks)

    def _track(
        self, coro: Coroutine[Any, Any, _T], name: str | None, tasks: set[asyncio.Task[Any]]
    ) -> asyncio.Task[_T]:
        if self.state is CoreState.stopped:
            coro.close()
            raise HubNotRunning(f"the hub is stopped; refused to start task {name or coro!r}")
        task = self.loop.create_task(coro, name=name)
        tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._background_tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            _LOGGER.error("Task %s failed: %s", task.get_name(), error, exc_info=error)

    async def async_add_executor_job(self, func: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking ``func(*args)`` in a worker thread and return its result."""
        return await self.loop.run_in_executor(None, func, *args)

    async def async_block_till_done(self, timeout: float | None = None) -> None:
        """Wait until every tracked task (and the tasks they start) has finished."""
        deadline = None if timeout is None else self.loop.time() + timeout
        while True:
            await asyncio.sleep(0)
            pending = [task for task in self._tasks if task is not asyncio.current_task()]
            if not pending:
                return
            remaining = None if deadline is None else max(0.0, deadline - self.loop.time())
            done, _ = await asyncio.wait(pending, timeout=remaining)
            if deadline is not None and self.loop.time() >= deadline and len(done) < len(pending):
                raise TimeoutError(f"{len(pending) - len(done)} tasks still running")

    # ---- lifecycle ---------------------------------------------------------------------

    async def async_start(self) -> None:
        """Move to RUNNING: fire ``hub_start``, wait for start-up work, fire ``hub_started``."""
        _LOGGER.debug("Hub starting")
        self.state = CoreState.starting
        self.bus.async_fire(EVENT_HUB_START)
        try:
            await self.async_block_till_done(timeout=30)
        except TimeoutError as error:
            _LOGGER.warning("Start-up work still running after 30 s (%s); going on", error)
        self.state = CoreState.running
        self.bus.async_fire(EVENT_HUB_STARTED)

    async def async_wait_stopped(self) -> int:
        """Wait until the hub has stopped and return its exit code."""
        await self._stopped.wait()
        return self.exit_code

    async def async_stop(self, exit_code: int = 0) -> StopReport:
        """Stop within a bounded time: every tracked task finishes or is cancelled.

        Stages: STOPPING (``hub_stop`` fired; integrations unload; tasks get
        ``stop_timeouts.stop`` seconds), FINAL_WRITE (``hub_final_write``; registries and
        stores flush), then background and left-over tasks are cancelled and ``hub_close``
        is fired.
        """
        if self.state in (CoreState.stopping, CoreState.final_write):
            await self._stopped.wait()
            return self.last_stop_report or StopReport()
        if self.state is CoreState.stopped:
            return self.last_stop_report or StopReport()
        started = time.monotonic()
        report = StopReport()
        self.exit_code = exit_code
        self.state = CoreState.stopping
        self.bus.async_fire(EVENT_HUB_STOP)
        await self._drain("stop", self.stop_timeouts.stop, report)
        self.state = CoreState.final_write
        self.bus.async_fire(EVENT_HUB_FINAL_WRITE)
        await self._drain("final_write", self.stop_timeouts.final_write, report)
        to_cancel = [
            task
            for task in (*self._tasks, *self._background_tasks)
            if task is not asyncio.current_task()
        ]
        for task in to_cancel:
            task.cancel()
        if to_cancel:
            _, still_running = await asyncio.wait(to_cancel, timeout=self.stop_timeouts.cancel)
            for task in still_running:
                _LOGGER.warning("Task %s ignored cancellation", task.get_name())
            report.cancelled += len(to_cancel)
        self.bus.async_fire(EVENT_HUB_CLOSE)
        self.state = CoreState.stopped
        report.seconds = time.monotonic() - started
        self.last_stop_report = report
        self._stopped.set()
        _LOGGER.info(
            "Hub stopped in %.2f s: %d tasks finished, %d cancelled%s",
            report.seconds,
            report.finished,
            report.cancelled,
            f"; timed out in {', '.join(report.stages_timed_out)}"
            if report.stages_timed_out
            else "",
        )
        return report

    async def _drain(self, stage: str, timeout: float, report: StopReport) -> None:
        deadline = self.loop.time() + timeout
        while True:
            await asyncio.sleep(0)
            pending = [task for task in self._tasks if task is not asyncio.current_task()]
            if not pending:
                return
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                report.stages_timed_out.append(stage)
                _LOGGER.warning(
                    "Stage %s timed out after %.1f s; %d tasks will be cancelled: %s",
                    stage,
                    timeout,
                    len(pending),
                    ", ".join(sorted(task.get_name() for task in pending)[:10]),
                )
                return
            done, _ = await asyncio.wait(pending, timeout=remaining)
            report.finished += len(done)
