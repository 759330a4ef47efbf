"""Helpers for tests that drive a PaymentProvider's authorize as a customer would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vendhub.vending.payment import Authorization, PaymentProvider, PaymentRequest


@dataclass
class Authorizing:
    """An ``async_authorize`` running as a task, and what it told the customer."""

    task: asyncio.Task[Authorization]
    progress: list[dict[str, Any]] = field(default_factory=list)

    async def qr_shown(self, timeout: float = 5.0) -> str:
        async with asyncio.timeout(timeout):
            while not any(step.get("step") == "scan_qr" for step in self.progress):
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.01)
        return next(step["qr"] for step in self.progress if step.get("step") == "scan_qr")

    async def result(self, timeout: float = 5.0) -> Authorization:
        async with asyncio.timeout(timeout):
            return await self.task


def start_authorize(provider: PaymentProvider, request: PaymentRequest) -> Authorizing:
    """Start ``provider``'s authorize of ``request`` as a task that records its progress."""
    authorizing = Authorizing(task=None)  # type: ignore[arg-type]
    authorizing.task = asyncio.get_running_loop().create_task(
        provider.async_authorize(request, lambda step: authorizing.progress.append(dict(step)))
    )
    return authorizing


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait until ``check()`` is truthy (emulator state has no event); return its value."""
    async with asyncio.timeout(timeout):
        while not (value := check()):  # noqa: ASYNC110 - emulator state has no event
            await asyncio.sleep(0.02)
    return value
