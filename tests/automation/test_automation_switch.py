"""automation.turn_on / turn_off: all ids checked first; the on/off set lasts (reload, restart)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vendhub.core.errors import InvalidServiceData

from .test_automation import settle, start

TWO = """
- id: low_stock
  trigger:
    - platform: event
      event_type: ping
  action:
    - event: low_stock_ran
- id: door
  trigger:
    - platform: event
      event_type: ping
  action:
    - event: door_ran
"""


def state(hub, automation_id: str) -> str:  # type: ignore[no-untyped-def]
    return hub.states.get(f"automation.{automation_id}").state


@pytest.mark.parametrize(("service", "before"), [("turn_off", "on"), ("turn_on", "off")])
async def test_one_unknown_id_changes_nothing(tmp_path: Path, service: str, before: str) -> None:
    hub = await start(tmp_path, TWO)
    try:
        if before == "off":
            await hub.services.async_call("automation", "turn_off", {"id": ["low_stock", "door"]})
        with pytest.raises(InvalidServiceData, match="no automation has id 'nosuch'"):
            await hub.services.async_call(
                "automation", service, {"id": ["low_stock", "nosuch", "door"]}
            )
        assert (state(hub, "low_stock"), state(hub, "door")) == (before, before)
    finally:
        await hub.async_stop()


async def test_turned_off_stays_off_through_reload_and_restart(tmp_path: Path) -> None:
    hub = await start(tmp_path, TWO)
    try:
        await hub.services.async_call("automation", "turn_off", {"id": "low_stock"})
        # A reload that changes it: still off (its triggers do not fire).
        changed = TWO.replace("event: low_stock_ran", "event: low_stock_ran_v2")
        (tmp_path / "automations.yaml").write_text(textwrap.dedent(changed))
        report = await hub.services.async_call("automation", "reload", {})
        assert report["changed"] == ["low_stock"]
        assert (state(hub, "low_stock"), state(hub, "door")) == ("off", "on")
        seen: list[str] = []
        hub.bus.async_listen("low_stock_ran_v2", lambda event: seen.append("ran"))
        hub.bus.async_fire("ping", {})
        await settle(hub)
        assert seen == []
    finally:
        await hub.async_stop()

    # A restart: still off; the other one still on.
    hub = await start(tmp_path, changed)
    try:
        assert (state(hub, "low_stock"), state(hub, "door")) == ("off", "on")
        await hub.services.async_call("automation", "turn_on", {"id": "low_stock"})
    finally:
        await hub.async_stop()

    hub = await start(tmp_path, changed)
    try:
        assert state(hub, "low_stock") == "on"
    finally:
        await hub.async_stop()


async def test_an_explicit_initial_state_wins_over_the_kept_one(tmp_path: Path) -> None:
    hub = await start(tmp_path, TWO)
    try:
        await hub.services.async_call("automation", "turn_off", {"id": ["low_stock", "door"]})
    finally:
        await hub.async_stop()

    pinned = TWO.replace("- id: door\n", "- id: door\n  initial_state: true\n")
    hub = await start(tmp_path, pinned)
    try:
        assert (state(hub, "low_stock"), state(hub, "door")) == ("off", "on")
        # Turned on by hand, then pinned off in the YAML and reloaded: the YAML wins.
        await hub.services.async_call("automation", "turn_on", {"id": "low_stock"})
        off = TWO.replace("- id: low_stock\n", "- id: low_stock\n  initial_state: false\n")
        (tmp_path / "automations.yaml").write_text(textwrap.dedent(off))
        await hub.services.async_call("automation", "reload", {})
        assert state(hub, "low_stock") == "off"
    finally:
        await hub.async_stop()


async def test_a_removed_automation_forgets_its_on_off(tmp_path: Path) -> None:
    hub = await start(tmp_path, TWO)
    try:
        await hub.services.async_call("automation", "turn_off", {"id": "door"})
        only_low_stock = TWO[: TWO.index("- id: door")]
        (tmp_path / "automations.yaml").write_text(textwrap.dedent(only_low_stock))
        await hub.services.async_call("automation", "reload", {})
        (tmp_path / "automations.yaml").write_text(textwrap.dedent(TWO))
        report = await hub.services.async_call("automation", "reload", {})
        assert report["added"] == ["door"]
        assert state(hub, "door") == "on"  # a new automation of that id starts as configured
    finally:
        await hub.async_stop()
