"""Ending a task within a bound, even when a cancellation of it gets lost.

Python 3.11's ``asyncio.wait_for`` returns the result, and drops the cancellation, when the
cancellation arrives in the same turn of the loop as the result it waits for (fixed in 3.12);
aiomqtt waits for every broker answer with it. A task whose cancellation was lost goes on as
if nothing had happened, and whoever awaits it to stop waits for its next timeout, or forever.
"""

from __future__ import annotations

import asyncio
import contextlib


async def async_cancel_and_wait(task: asyncio.Task[object], timeout: float) -> bool:
    """Cancel ``task`` and wait up to ``timeout`` seconds for it to end; cancel it once more
    and wait as long again if it did not. Returns whether it ended (else it is left behind).

    Its exception, if it ended with one, is consumed: the caller stops it, it does not ask
    how it went.
    """
    for _attempt in range(2):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
            return True
    return False
