"""Traces: what each automation run did, step by step, and why.

A run opens a ``RunTrace`` with ``trace_run(...)``; code anywhere below it records into the
current run through context variables: ``trace_step(path)`` around a step,
``trace_set_result(**values)`` for the step's result, ``trace_condition(path, result, why)``
for conditions. ``TraceStore`` keeps the last N runs per outcome for every automation, so
frequent runs never push out the rare one that failed.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

OUTCOMES = ("ran", "condition_failed", "error", "stopped", "aborted")
_RUN_IDS = itertools.count(1)

_current_run: ContextVar[RunTrace | None] = ContextVar("vendhub_trace_run", default=None)
_current_step: ContextVar[TraceStep | None] = ContextVar("vendhub_trace_step", default=None)


def _plain(value: Any) -> Any:
    """JSON-ready copy of variables (States and Contexts as dicts, the rest as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return str(value)


@dataclass
class TraceStep:
    """One step of a run: an action, a condition, a trigger check."""

    path: str
    started: datetime = field(default_factory=utcnow)
    finished: datetime | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    changed_variables: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "path": self.path,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "result": _plain(self.result),
            "error": self.error,
            "changed_variables": _plain(self.changed_variables),
        }


@dataclass
class RunTrace:
    """One run of an automation (or script)."""

    item_id: str
    run_id: str = field(default_factory=lambda: f"{time.time_ns():x}-{next(_RUN_IDS)}")
    started: datetime = field(default_factory=utcnow)
    finished: datetime | None = None
    trigger: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    steps: list[TraceStep] = field(default_factory=list)
    outcome: str = "ran"
    error: str | None = None
    context_id: str | None = None

    def finish(self, outcome: str | None = None, error: str | None = None) -> None:
        """Close the run with its outcome (one of ``OUTCOMES``)."""
        if outcome is not None:
            self.outcome = outcome
        if error is not None:
            self.error = error
        self.finished = utcnow()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "item_id": self.item_id,
            "run_id": self.run_id,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "duration_ms": (
                round((self.finished - self.started).total_seconds() * 1000, 3)
                if self.finished
                else None
            ),
            "trigger": _plain(self.trigger),
            "variables": _plain(self.variables),
            "steps": [step.as_dict() for step in self.steps],
            "outcome": self.outcome,
            "error": self.error,
            "context_id": self.context_id,
        }


@contextlib.contextmanager
def trace_run(run: RunTrace) -> Iterator[RunTrace]:
    """Make ``run`` the current run for the code inside (and the tasks it starts)."""
    token = _current_run.set(run)
    try:
        yield run
    finally:
        _current_run.reset(token)


def current_run() -> RunTrace | None:
    """The run being traced here, if any."""
    return _current_run.get()


@contextlib.contextmanager
def trace_step(path: str) -> Iterator[TraceStep | None]:
    """Record a step at ``path`` (e.g. ``action/2/then/0``) in the current run, if any."""
    run = _current_run.get()
    if run is None:
        yield None
        return
    step = TraceStep(path)
    run.steps.append(step)
    token = _current_step.set(step)
    try:
        yield step
    except BaseException as error:
        step.error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise
    finally:
        step.finished = utcnow()
        _current_step.reset(token)


def trace_set_result(**values: Any) -> None:
    """Add ``values`` to the result of the current step, if any."""
    step = _current_step.get()
    if step is not None:
        step.result.update(values)


def trace_variables_changed(changed: Mapping[str, Any]) -> None:
    """Note variables the current step set or changed."""
    step = _current_step.get()
    if step is not None:
        step.changed_variables.update(changed)


def trace_condition(path: str, result: bool, why: str | None = None) -> None:
    """Record one condition's result (and the reason) as a step of its own."""
    with trace_step(path):
        trace_set_result(result=result, **({"why": why} if why else {}))


class TraceStore:
    """The last ``per_outcome`` runs of each outcome, for every item; persisted."""

    STORAGE_KEY = "automation.traces"
    STORAGE_VERSION = 1

    def __init__(self, hub: Hub | None = None, per_outcome: int = 5) -> None:
        self.hub = hub
        self.per_outcome = per_outcome
        self._runs: dict[str, dict[str, deque[dict[str, Any]]]] = {}
        self._store: Any = None
        if hub is not None:
            from vendhub.helpers.storage import Store

            self._store = Store(hub, self.STORAGE_KEY, self.STORAGE_VERSION)

    async def async_load(self) -> None:
        """Load the runs saved before the last restart."""
        if self._store is None:
            return
        data = await self._store.async_load() or {}
        for item_id, by_outcome in data.items():
            for outcome, runs in by_outcome.items():
                self._bucket(item_id, outcome).extend(runs[-self.per_outcome :])

    def _bucket(self, item_id: str, outcome: str) -> deque[dict[str, Any]]:
        return self._runs.setdefault(item_id, {}).setdefault(
            outcome, deque(maxlen=self.per_outcome)
        )

    def add(self, run: RunTrace) -> None:
        """Keep a finished run (converted to JSON-ready data now, so it cannot change)."""
        self._bucket(run.item_id, run.outcome).append(run.as_dict())
        if self._store is not None:
            self._store.async_delay_save(self._data, 5.0)

    def _data(self) -> dict[str, Any]:
        return {
            item_id: {outcome: list(runs) for outcome, runs in by_outcome.items()}
            for item_id, by_outcome in self._runs.items()
        }

    def runs(self, item_id: str) -> list[dict[str, Any]]:
        """Every kept run of ``item_id``, newest first."""
        found = [run for runs in self._runs.get(item_id, {}).values() for run in runs]
        return sorted(found, key=lambda run: run["started"], reverse=True)

    def forget(self, item_id: str) -> None:
        """Drop the runs of an item that no longer exists."""
        self._runs.pop(item_id, None)
