"""The integration example in CONTRIBUTING.md works exactly as printed there."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub


def _blocks(language: str) -> list[str]:
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _write_example(config_dir: Path, temperature_file: Path) -> None:
    folder = config_dir / "custom_integrations" / "file_thermometer"
    folder.mkdir(parents=True)
    [manifest] = _blocks("json")
    [code] = _blocks("python")
    [yaml_block] = _blocks("yaml")
    (folder / "manifest.json").write_text(manifest)
    (folder / "__init__.py").write_text(code)
    config = re.sub(r"path: \S+", f"path: {temperature_file}", yaml_block)
    (config_dir / "configuration.yaml").write_text(
        config.replace("name: Fridge", "name: Fridge\n  scan_interval: 0.05")
    )


async def test_example_integration_reads_the_file(tmp_path: Path) -> None:
    temperature_file = tmp_path / "temperature_c"
    temperature_file.write_text("4.25\n")
    config_dir = tmp_path / "config"
    _write_example(config_dir, temperature_file)

    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    try:
        assert report.loaded == ["file_thermometer"]
        state = hub.states.get("sensor.fridge")
        assert state is not None
        assert state.state == "4.2"  # round(4.25, 1) in binary floating point
        assert state.attributes["unit_of_measurement"] == "°C"
        assert state.attributes["friendly_name"] == "Fridge"

        temperature_file.write_text("7.5\n")
        await _wait_for_state(hub, "sensor.fridge", "7.5")
        temperature_file.unlink()
        await _wait_for_state(hub, "sensor.fridge", "unavailable")
    finally:
        await hub.async_stop()
    assert "file_thermometer" not in hub.data  # unload stopped the timer


async def _wait_for_state(hub: Hub, entity_id: str, wanted: str) -> None:
    for _ in range(100):
        state = hub.states.get(entity_id)
        if state is not None and state.state == wanted:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{entity_id} never became {wanted!r}: {hub.states.get(entity_id)}")


def test_example_passes_check_config(tmp_path: Path) -> None:
    temperature_file = tmp_path / "temperature_c"
    temperature_file.write_text("4.0")
    config_dir = tmp_path / "config"
    _write_example(config_dir, temperature_file)
    result = subprocess.run(
        [sys.executable, "-m", "vendhub", "check-config", "--config", str(config_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Integrations: file_thermometer" in result.stdout
