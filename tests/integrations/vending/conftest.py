"""Fixtures of the vending integration tests: hubs started from a configuration folder, and the
recorder tests' database fixtures (the ledger tests here run on each recorder backend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.recorder.conftest import (  # noqa: F401 - fixtures, found by pytest by name
    backend,
    database_servers,
    db_url,
    server_database,
)
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub


@pytest.fixture
async def hubs() -> AsyncIterator[Callable[[Path], Any]]:
    """Start hubs on a folder (one after another); whatever still runs is stopped at the end."""
    started: list[Hub] = []

    async def start(config_dir: Path) -> Hub:
        prepared = await asyncio.to_thread(prepare, config_dir)
        assert prepared.issues == []
        hub, report = await async_start_hub(prepared)
        assert report.failed == {}, report.failed
        assert hub.data["vending"].broken == {}
        started.append(hub)
        return hub

    yield start
    for hub in started:
        if not hub.is_stopping:
            await hub.async_stop()
