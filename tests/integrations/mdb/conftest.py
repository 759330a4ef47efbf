"""Fixtures for the MDB tests: a socat pty pair per test, the emulator on its device end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from tests.conftest import SHARED_CORPUS
from tests.serial_pty import serial_pair  # noqa: F401  (the fixture)

CASHLESS_CORPUS = SHARED_CORPUS / "mdb" / "qibixx_cashless_master.json"


def corpus_sessions() -> list[dict[str, Any]]:
    return json.loads(CASHLESS_CORPUS.read_text(encoding="utf-8"))["sessions"]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(0.01)


class Progress:
    """A progress callback that remembers every step it was told."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def __call__(self, step: Any) -> None:
        self.steps.append(dict(step))

    @property
    def last_credit(self) -> int | None:
        credits = [s["credit"] for s in self.steps if s.get("step") == "insert_cash"]
        return credits[-1] if credits else None
