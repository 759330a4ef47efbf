"""Fixtures of the machine tests: a real Mosquitto on a free port and a client playing the hub."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.machine.broker import MOSQUITTO, HubClient
from tests.mosquitto import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of its own for the test (anonymous, persistent), stopped afterwards."""
    if shutil.which(MOSQUITTO) is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is not installed (CI=true: the broker tests must run)")
        pytest.skip("mosquitto is not installed")
    instance = Mosquitto(tmp_path / "broker")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
async def hub_client(broker: Mosquitto) -> AsyncIterator[HubClient]:
    """An MQTT client subscribed to ``vendhub/#`` that records what it receives."""
    async with HubClient(broker.port) as client:
        yield client
