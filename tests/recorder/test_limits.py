"""Bounds of the recorder's settings: a value that would crash the purge or busy a CPU is
refused up front, with a message that names the option, the range and why."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from vendhub.bootstrap import async_start_hub, prepare
from vendhub.config import ConfigError, validate
from vendhub.core.errors import InvalidServiceData
from vendhub.recorder.recorder import get_recorder
from vendhub_integrations.recorder import CONFIG_SCHEMA


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(CONFIG_SCHEMA, raw, root_path=("recorder",))
    return [str(issue) for issue in caught.value.issues]


@pytest.mark.parametrize("days", [36_501, 1_000_000, 99999999999999999999])
def test_config_keep_days_beyond_a_hundred_years_is_refused(days: int) -> None:
    (problem,) = problems({"keep_days": days})
    assert "keep_days" in problem
    assert "from 1 to 36,500 days (100 years)" in problem
    assert "calendar" in problem


@pytest.mark.parametrize("interval", [0, "0s", 0.05, {"milliseconds": 1}])
def test_config_commit_interval_below_a_tenth_of_a_second_is_refused(interval: Any) -> None:
    (problem,) = problems({"commit_interval": interval})
    assert "commit_interval of 0.1 seconds or more" in problem
    assert "CPU" in problem


def test_config_limits_themselves_are_taken() -> None:
    config = validate(
        CONFIG_SCHEMA, {"keep_days": 36_500, "commit_interval": 0.1}, root_path=("recorder",)
    )
    assert config["keep_days"] == 36_500
    assert config["commit_interval"].total_seconds() == 0.1


async def test_purge_service_refuses_keep_days_beyond_a_hundred_years(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text(
        f'recorder:\n  db_url: "sqlite:///{tmp_path / "vendhub.db"}"\n  commit_interval: 0.1\n'
    )
    prepared = await asyncio.to_thread(prepare, tmp_path)
    assert prepared.issues == []
    hub, _report = await async_start_hub(prepared)
    try:
        for days in (36_501, 1_000_000, 99999999999999999999):
            with pytest.raises(InvalidServiceData, match=r"keep_days from 0 to 36,500 days"):
                await hub.services.async_call("recorder", "purge", {"keep_days": days})
        # The bound itself and 0 still purge.
        for days in (36_500, 0):
            result = await hub.services.async_call("recorder", "purge", {"keep_days": days})
            assert result == {"done": True}
        assert get_recorder(hub).config.keep_days == 10
    finally:
        await hub.async_stop()
