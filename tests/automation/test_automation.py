"""Automations from YAML in a running hub: runs, conditions, traces, services, reload."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path

import pytest

from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub

BASE = """
vendhub:
  name: Automation test
alarm:
automation: !include automations.yaml
"""

FRIDGE = """
- id: fridge_warm
  alias: Fridge warm
  trigger:
    - platform: numeric_state
      entity_id: sensor.fridge_temperature
      above: 8
  condition:
    - condition: state
      entity_id: machine.fridge
      state: online
  action:
    - service: alarm.raise
      data:
        code: fridge_warm
        machine_id: fridge
        message: "Fridge at {{ trigger.to_state.state }} °C"
"""


async def start(config_dir: Path, automations: str) -> Hub:
    config_dir.mkdir(exist_ok=True)
    (config_dir / "configuration.yaml").write_text(BASE)
    (config_dir / "automations.yaml").write_text(textwrap.dedent(automations))
    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == [], prepared.issues
    hub, report = await async_start_hub(prepared)
    assert report.failed == {}, report.failed
    return hub


async def settle(hub: Hub) -> None:
    await hub.async_block_till_done(timeout=5)


async def test_trigger_condition_action_and_traces(tmp_path: Path) -> None:
    hub = await start(tmp_path, FRIDGE)
    try:
        assert hub.states.get("automation.fridge_warm").state == "on"
        hub.states.async_set("machine.fridge", "offline")
        hub.states.async_set("sensor.fridge_temperature", "5.0")
        hub.states.async_set("sensor.fridge_temperature", "9.1")  # condition fails: offline
        await settle(hub)
        assert hub.states.get("alarm.fridge_fridge_warm") is None

        hub.states.async_set("machine.fridge", "online")
        hub.states.async_set("sensor.fridge_temperature", "5.0")
        hub.states.async_set("sensor.fridge_temperature", "9.4")
        await settle(hub)
        alarm = hub.states.get("alarm.fridge_fridge_warm")
        assert alarm is not None and alarm.attributes["message"] == "Fridge at 9.4 °C"
        assert hub.states.get("automation.fridge_warm").attributes["last_triggered"]

        traces = await hub.services.async_call("automation", "traces", {"id": "fridge_warm"})
        assert [trace["outcome"] for trace in traces] == ["ran", "condition_failed"]
        ran = traces[0]
        assert ran["trigger"]["platform"] == "numeric_state"
        assert any(step["path"].startswith("action/0") for step in ran["steps"])
    finally:
        await hub.async_stop()


async def test_services_trigger_turn_off_on(tmp_path: Path) -> None:
    hub = await start(tmp_path, FRIDGE)
    try:
        # Run by hand there is no trigger.to_state: the message template fails, and the trace
        # says where.
        trace = await hub.services.async_call("automation", "trigger", {"id": "fridge_warm"})
        assert trace["outcome"] == "error"
        assert "to_state" in trace["error"]
        await hub.services.async_call("automation", "turn_off", {"id": "fridge_warm"})
        assert hub.states.get("automation.fridge_warm").state == "off"
        hub.states.async_set("machine.fridge", "online")
        hub.states.async_set("sensor.fridge_temperature", "5.0")
        hub.states.async_set("sensor.fridge_temperature", "9.9")
        await settle(hub)
        listed = await hub.services.async_call("alarm", "list", {})
        assert all(alarm["message"] != "Fridge at 9.9 °C" for alarm in listed["active"])
        await hub.services.async_call("automation", "turn_on", {"id": "fridge_warm"})
        assert hub.states.get("automation.fridge_warm").state == "on"
        with pytest.raises(InvalidServiceData, match="no automation has id 'nope'"):
            await hub.services.async_call("automation", "turn_on", {"id": "nope"})
    finally:
        await hub.async_stop()


async def test_reload_with_an_invalid_file_changes_nothing(tmp_path: Path) -> None:
    hub = await start(tmp_path, FRIDGE)
    try:
        (tmp_path / "automations.yaml").write_text(
            textwrap.dedent(
                """
                - id: fridge_warm
                  trigger:
                    - platform: numeric_stat
                      entity_id: sensor.fridge_temperature
                  action:
                    - service: alarm.raise
                - id: second
                  trigger:
                    - platform: state
                      entity_id: sensor.x
                  action:
                    - delay: "not a duration"
                """
            )
        )
        with pytest.raises(InvalidServiceData) as caught:
            await hub.services.async_call("automation", "reload", {})
        message = str(caught.value)
        assert "nothing changed" in message
        assert "automations.yaml:4" in message  # the misspelt platform
        assert "automations.yaml:13" in message  # the bad delay
        assert hub.states.get("automation.fridge_warm").state == "on"
        assert hub.states.get("automation.second") is None
    finally:
        await hub.async_stop()


async def test_reload_reports_what_changed(tmp_path: Path) -> None:
    two = FRIDGE + textwrap.dedent(
        """
        - id: door
          trigger:
            - platform: state
              entity_id: binary_sensor.door
              to: "on"
          action:
            - event: door_opened_seen
        """
    )
    hub = await start(tmp_path, two)
    try:
        changed = FRIDGE.replace("above: 8", "above: 7") + textwrap.dedent(
            """
            - id: cash
              trigger:
                - platform: event
                  event_type: cash_collected
              action:
                - event: cash_seen
            """
        )
        (tmp_path / "automations.yaml").write_text(textwrap.dedent(changed))
        report = await hub.services.async_call("automation", "reload", {})
        assert report == {
            "added": ["cash"],
            "removed": ["door"],
            "changed": ["fridge_warm"],
            "unchanged": [],
        }
        assert hub.states.get("automation.door") is None
        assert hub.states.get("automation.cash").state == "on"
    finally:
        await hub.async_stop()


async def test_traces_survive_a_restart(tmp_path: Path) -> None:
    hub = await start(tmp_path, FRIDGE)
    hub.states.async_set("machine.fridge", "online")
    hub.states.async_set("sensor.fridge_temperature", "5.0")
    hub.states.async_set("sensor.fridge_temperature", "9.0")
    await settle(hub)
    await hub.async_stop()

    hub = await start(tmp_path, FRIDGE)
    try:
        traces = await hub.services.async_call("automation", "traces", {"id": "fridge_warm"})
        assert [trace["outcome"] for trace in traces] == ["ran"]
    finally:
        await hub.async_stop()


async def test_a_failing_template_names_automation_and_line_and_others_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    automations = """
    - id: broken
      trigger:
        - platform: event
          event_type: ping
      action:
        - event: broken_ran
          event_data:
            value: |
              {{ 1 }}
              {{ trigger.event.data.missing.deeper }}
    - id: healthy
      trigger:
        - platform: event
          event_type: ping
      action:
        - event: healthy_ran
    """
    hub = await start(tmp_path, automations)
    seen: list[str] = []
    hub.bus.async_listen("healthy_ran", lambda event: seen.append("healthy"))
    try:
        with caplog.at_level(logging.ERROR):
            hub.bus.async_fire("ping", {})
            await settle(hub)
        assert seen == ["healthy"]
        traces = await hub.services.async_call("automation", "traces", {"id": "broken"})
        assert traces[0]["outcome"] == "error"
        assert "line 2" in traces[0]["error"]
        assert "broken" in caplog.text
    finally:
        await hub.async_stop()
