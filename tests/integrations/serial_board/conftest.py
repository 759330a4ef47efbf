"""Fixtures for the serial board tests: a socat pty pair, the emulated board on one end and
the real ``SerialBoardDispenser`` on the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.serial_pty import PtyPair, serial_pair  # noqa: F401 - a fixture, found by name
from vendhub.core.hub import Hub
from vendhub.vending.dispenser import DispenserStatus
from vendhub_integrations.serial_board.board import SerialBoardDispenser
from vendhub_integrations.serial_board.emulator import SerialBoardEmulator

FAST_POLL = 0.1
"""The board may be told to poll every 100 ms (command 0x16, interval 1); tests use it."""


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the states polled have no event
            await asyncio.sleep(0.02)


def dispenser_options(port: str, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "port": port,
        "dispense_timeout": 5,
        "offline_after": 0.8,
        "status_interval": 0.5,
        "reconnect_interval": 0.2,
    }
    options.update(overrides)
    return options


@pytest.fixture
async def emulator(serial_pair: PtyPair) -> AsyncIterator[SerialBoardEmulator]:  # noqa: F811
    board = SerialBoardEmulator(
        serial_pair.device, poll_interval=FAST_POLL, dispense_time=0.1, temperature=4
    )
    await board.async_start()
    yield board
    await board.async_stop()


@pytest.fixture
async def statuses() -> list[DispenserStatus]:
    return []


@pytest.fixture
async def dispenser(
    hub: Hub,
    serial_pair: PtyPair,  # noqa: F811
    emulator: SerialBoardEmulator,
    statuses: list[DispenserStatus],
) -> AsyncIterator[SerialBoardDispenser]:
    board = SerialBoardDispenser(hub, "lobby_1", dispenser_options(serial_pair.host))
    board.async_listen(statuses.append)
    await board.async_start()
    await wait_until(lambda: board.online)
    emulator.record.answers.clear()  # polls before the host opened its end went unanswered
    yield board
    await board.async_stop()
