"""Helpers for tests that drive a PaymentProvider's authorize as a customer would, or as a
hub killed in the middle of it leaves it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vendhub.core.context import Context
from vendhub.vending.journal import VendJournal
from vendhub.vending.money import Money
from vendhub.vending.payment import Authorization, PaymentMethod, PaymentProvider, PaymentRequest
from vendhub.vending.session import SessionState, VendSession


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


async def journal_cut_off_while_authorizing(
    journal_path: Path,
    session_id: str,
    *,
    machine_id: str,
    product: str,
    price: Money,
    method: PaymentMethod,
    provider: str,
) -> VendSession:
    """Journal a session as a hub killed while its provider authorized leaves it (``authorize
    begin``, no Authorization): what the next start must release by the session id."""
    session = VendSession(
        id=session_id,
        machine_id=machine_id,
        slot="A1",
        product=product,
        price=price,
        method=method,
        context=Context(),
        started_at=time.time(),
        provider=provider,
        state=SessionState.authorizing,
        stock_after=3,
    )
    journal = VendJournal(journal_path)
    await journal.async_open()
    try:
        await journal.async_save(session, "authorize", "begin")
    finally:
        await journal.async_close()
    return session
