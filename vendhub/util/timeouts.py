"""``SharedTimeout``: ``asyncio.timeout`` for waits of one length, with one timer for all.

``asyncio.timeout`` schedules a timer when a wait begins and cancels it when the wait ends:
about 4 µs a wait, and the cancelled timers stay in the loop's heap until they come due. The
vend engine waits for a provider and a board at every step of every session, and those waits
nearly always end long before their limit. They can share one timer: it is scheduled for the
first wait's deadline and left alone by the waits after (their deadlines come later, as they
all have the same length); when it comes due it times out the wait in progress if that
wait's deadline has passed, or is scheduled again for it.

    dispense_timeout = SharedTimeout(30)
    with dispense_timeout.limit():        # TimeoutError as with asyncio.timeout(30)
        result = await board.async_dispense(slot, vend_id)

One wait at a time: a wait that begins while another is in progress gets a timer of its own
(as with ``asyncio.timeout``), so overlapping callers stay correct and only pay the usual cost.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class SharedTimeout:
    """Timeouts of ``seconds`` for the waits of a task, one wait at a time, with one timer."""

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_due",
        "_expired",
        "_handle",
        "_loop",
        "_task",
        "seconds",
    )

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"a timeout must be a number of seconds > 0, got {seconds!r}")
        self.seconds = seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        """When ``_handle`` comes due (loop time)."""
        self._deadline: float | None = None
        """The deadline of the wait in progress; None when none is."""
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._expired = False

    def limit(self) -> SharedTimeout:
        """A context manager for one wait (``with timeout.limit(): await ...``)."""
        if self._deadline is not None:
            return SharedTimeout(self.seconds)
        return self

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("SharedTimeout must be used inside a task")
        loop = self._loop
        if loop is None:
            loop = self._loop = task.get_loop()
        deadline = loop.time() + self.seconds
        self._deadline = deadline
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        if self._handle is None or self._due > deadline:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = loop.call_at(deadline, self._on_due)
            self._due = deadline

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task, expired = self._task, self._expired
        self._deadline = None
        self._task = None
        self._expired = False
        # As asyncio.timeout: the cancellation that the timer asked for becomes a
        # TimeoutError, unless someone else cancelled the task too.
        if (
            expired
            and task is not None
            and task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc

    def close(self) -> None:
        """Cancel the timer (the owner stops); a later wait schedules a new one."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _on_due(self) -> None:
        self._handle = None
        deadline, task = self._deadline, self._task
        if deadline is None or task is None or self._expired:
            return  # no wait in progress: the next one schedules the timer again
        if deadline <= self._due:
            self._expired = True
            task.cancel()
            return
        assert self._loop is not None
        self._handle = self._loop.call_at(deadline, self._on_due)
        self._due = deadline
