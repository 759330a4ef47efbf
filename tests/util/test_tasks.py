"""``async_cancel_and_wait`` ends a task whose first cancellation got lost, within its bound."""

from __future__ import annotations

import asyncio
import contextlib
import time

from vendhub.util.tasks import async_cancel_and_wait


async def test_a_task_that_takes_its_cancellation_ends_at_once() -> None:
    task = asyncio.create_task(asyncio.sleep(30))
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await async_cancel_and_wait(task, 5) is True
    assert time.monotonic() - started < 1
    assert task.cancelled()


async def test_a_task_that_lost_its_first_cancellation_ends_on_the_second() -> None:
    cancellations = 0

    async def loses_one() -> None:
        nonlocal cancellations
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        cancellations += 1
        await asyncio.sleep(30)  # as a loop that goes on waiting for the next message

    task = asyncio.create_task(loses_one())
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await async_cancel_and_wait(task, 0.2) is True
    assert 0.2 <= time.monotonic() - started < 1
    assert cancellations == 1 and task.cancelled()


async def test_a_task_that_loses_every_cancellation_is_left_behind_after_two_bounds() -> None:
    release = asyncio.Event()

    async def loses_all() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    task = asyncio.create_task(loses_all())
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await async_cancel_and_wait(task, 0.1) is False
    assert 0.2 <= time.monotonic() - started < 1
    assert not task.done()
    release.set()
    await task


async def test_an_exception_the_task_ends_with_is_consumed() -> None:
    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise RuntimeError("closing failed") from None

    task = asyncio.create_task(fails_when_cancelled())
    await asyncio.sleep(0)
    assert await async_cancel_and_wait(task, 1) is True
    assert isinstance(task.exception(), RuntimeError)
