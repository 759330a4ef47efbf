"""vendhub.reload: the YAML re-read, only changed integrations reloaded, nothing if invalid."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.plugins.conftest import write_config, write_integration
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub

COUNTED = """
import voluptuous as vol
from vendhub.plugins import hookimpl

@hookimpl
def vendhub_config_schema():
    return vol.Schema({vol.Required("greeting"): str})

@hookimpl
def vendhub_setup(hub, config):
    hub.data.setdefault("setups_{domain}", []).append(config["greeting"])
    hub.states.async_set("sensor.{domain}", config["greeting"])

@hookimpl
def vendhub_unload(hub):
    hub.data.setdefault("unloads_{domain}", 0)
    hub.data["unloads_{domain}"] += 1
"""


async def start(tmp_path: Path, config: str) -> Hub:
    for domain in ("first", "second"):
        write_integration(tmp_path, domain, COUNTED.replace("{domain}", domain))
    write_config(tmp_path, config)
    prepared = await asyncio.to_thread(prepare, tmp_path)
    assert prepared.issues == []
    hub, _ = await async_start_hub(prepared)
    return hub


async def test_only_changed_integrations_are_reloaded(tmp_path: Path) -> None:
    hub = await start(tmp_path, "first:\n  greeting: hello\nsecond:\n  greeting: hi\n")
    try:
        write_config(tmp_path, "first:\n  greeting: good morning\nsecond:\n  greeting: hi\n")
        report = await hub.services.async_call("vendhub", "reload", {})
        assert report == {"reloaded": ["first"], "unchanged": ["second"], "failed": {}}
        assert hub.data["setups_first"] == ["hello", "good morning"]
        assert hub.data["unloads_first"] == 1
        assert hub.data["setups_second"] == ["hi"]
        assert hub.states.get("sensor.first").state == "good morning"
    finally:
        await hub.async_stop()


async def test_an_invalid_file_changes_nothing(tmp_path: Path) -> None:
    hub = await start(tmp_path, "first:\n  greeting: hello\nsecond:\n  greeting: hi\n")
    try:
        write_config(tmp_path, "first:\n  greting: typo\nsecond:\n  greeting: 5\n")
        with pytest.raises(InvalidServiceData) as caught:
            await hub.services.async_call("vendhub", "reload", {})
        message = str(caught.value)
        assert "nothing changed" in message
        assert "configuration.yaml:2: [first] unknown key 'greting'" in message
        assert "configuration.yaml:4: [second > greeting]" in message
        assert hub.data["setups_first"] == ["hello"]
        assert "unloads_first" not in hub.data
    finally:
        await hub.async_stop()


async def test_reloading_an_integration_that_is_not_loaded_is_refused(tmp_path: Path) -> None:
    hub = await start(tmp_path, "first:\n  greeting: hello\n")
    try:
        with pytest.raises(InvalidServiceData, match="not loaded"):
            await hub.services.async_call("vendhub", "reload", {"domains": ["second"]})
    finally:
        await hub.async_stop()


ORDERED = """
from vendhub.plugins import hookimpl

@hookimpl
def vendhub_config_schema():
    return dict

@hookimpl
def vendhub_setup(hub, config):
    hub.data.setdefault("order", []).append("setup {domain}")

@hookimpl
def vendhub_unload(hub):
    hub.data.setdefault("order", []).append("unload {domain}")
"""


async def test_what_waits_for_a_reloaded_integration_is_reloaded_around_it(
    tmp_path: Path,
) -> None:
    """The uplink holds the vending engines: reloading vending alone left it with stopped
    ones. Whatever waits for a reloaded integration goes down before it and up after it."""
    write_integration(tmp_path, "base", ORDERED.replace("{domain}", "base"))
    write_integration(
        tmp_path, "holder", ORDERED.replace("{domain}", "holder"), after_dependencies=["base"]
    )
    write_integration(
        tmp_path, "outer", ORDERED.replace("{domain}", "outer"), dependencies=["holder"]
    )
    write_integration(tmp_path, "apart", ORDERED.replace("{domain}", "apart"))
    write_config(tmp_path, "base:\n  a: 1\nholder:\nouter:\napart:\n")
    prepared = await asyncio.to_thread(prepare, tmp_path)
    assert prepared.issues == []
    hub, _ = await async_start_hub(prepared)
    try:
        hub.data["order"].clear()
        write_config(tmp_path, "base:\n  a: 2\nholder:\nouter:\napart:\n")
        report = await hub.services.async_call("vendhub", "reload", {})
        assert report["reloaded"] == ["base", "holder", "outer"]
        assert report["unchanged"] == ["apart"]
        assert hub.data["order"] == [
            "unload outer",
            "unload holder",
            "unload base",
            "setup base",
            "setup holder",
            "setup outer",
        ]
        # Limited to one domain: its dependents still follow it.
        hub.data["order"].clear()
        write_config(tmp_path, "base:\n  a: 3\nholder:\nouter:\napart:\n")
        report = await hub.services.async_call("vendhub", "reload", {"domains": ["base"]})
        assert report["reloaded"] == ["base", "holder", "outer"]
        assert hub.data["order"][:3] == ["unload outer", "unload holder", "unload base"]
    finally:
        await hub.async_stop()
