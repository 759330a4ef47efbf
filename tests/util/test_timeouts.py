"""SharedTimeout: asyncio.timeout's behaviour for one wait at a time, with one timer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from vendhub.util.timeouts import SharedTimeout


async def test_a_wait_that_ends_in_time_returns_its_result() -> None:
    timeout = SharedTimeout(1)

    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    with timeout.limit():
        result = await answer()
    assert result == 42


async def test_a_wait_past_its_deadline_raises_timeout_error_in_time() -> None:
    timeout = SharedTimeout(0.05)
    started = time.monotonic()
    with pytest.raises(TimeoutError), timeout.limit():
        await asyncio.sleep(5)
    assert 0.04 < time.monotonic() - started < 1.0
    # The task is usable afterwards: the timer's cancellation was taken back.
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    await asyncio.sleep(0)


async def test_waits_after_the_first_reuse_its_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    scheduled: list[asyncio.TimerHandle] = []
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        handle = call_at(when, callback, *args)
        scheduled.append(handle)
        return handle

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    timeout = SharedTimeout(30)
    for _ in range(50):
        with timeout.limit():
            await asyncio.sleep(0)
    assert len(scheduled) == 1, "one timer for fifty waits"
    assert not scheduled[0].cancelled()
    timeout.close()
    assert scheduled[0].cancelled()


async def test_a_later_wait_times_out_on_its_own_deadline_not_the_first_ones() -> None:
    timeout = SharedTimeout(0.2)
    with timeout.limit():
        await asyncio.sleep(0.15)  # the shared timer is due 0.05 s after this wait ends
    started = time.monotonic()
    with timeout.limit():
        await asyncio.sleep(0.1)  # past the first deadline, within its own: no timeout
    with pytest.raises(TimeoutError), timeout.limit():
        await asyncio.sleep(5)
    assert 0.15 < time.monotonic() - started < 1.5


async def test_overlapping_waits_each_keep_their_deadline() -> None:
    timeout = SharedTimeout(0.1)

    async def wait(seconds: float) -> str:
        with timeout.limit():
            await asyncio.sleep(seconds)
        return "done"

    results = await asyncio.gather(wait(0.01), wait(5), wait(0.02), return_exceptions=True)
    assert results[0] == "done" and results[2] == "done"
    assert isinstance(results[1], TimeoutError)


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    timeout = SharedTimeout(5)

    async def wait() -> None:
        with timeout.limit():
            await asyncio.sleep(5)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The timeout is free for the next wait, which times out as usual.
    short = SharedTimeout(0.02)
    with pytest.raises(TimeoutError), short.limit():
        await asyncio.sleep(1)


async def test_a_timeout_that_comes_with_a_cancellation_from_outside_stays_a_cancellation() -> None:
    timeout = SharedTimeout(0.02)

    async def wait() -> None:
        with timeout.limit():
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                await asyncio.sleep(0.05)  # the outside cancellation arrives meanwhile
                raise

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.03)  # the timeout has fired
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outside_a_task_it_says_so() -> None:
    timeout = SharedTimeout(1)
    loop = asyncio.get_running_loop()
    raised: list[BaseException] = []

    def in_a_plain_callback() -> None:
        try:
            timeout.__enter__()
        except RuntimeError as error:
            raised.append(error)

    loop.call_soon(in_a_plain_callback)
    await asyncio.sleep(0.01)
    assert len(raised) == 1 and "inside a task" in str(raised[0])


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="seconds > 0"):
        SharedTimeout(0)
