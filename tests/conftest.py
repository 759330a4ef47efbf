"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vendhub.core.hub import Hub

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_CORPUS = REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub on an empty configuration folder, stopped after the test."""
    instance = Hub(tmp_path)
    yield instance
    if not instance.is_stopping:
        await instance.async_stop()
