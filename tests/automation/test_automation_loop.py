"""An automation that triggers itself is stopped: turned off, an ERROR, an alarm; others run."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from vendhub.automation.automation import LOOP_LIMIT
from vendhub.const import EVENT_AUTOMATION_TRIGGERED, EVENT_STATE_CHANGED
from vendhub.core.hub import Hub

from .test_automation import settle, start

LOOP = """
- id: qa_loop
  alias: QA loop
  mode: parallel
  trigger:
    - platform: event
      event_type: qa_loop
  action:
    - event: qa_loop
- id: busy
  mode: parallel
  max: 1000
  trigger:
    - platform: event
      event_type: tick
  action:
    - event: tock
"""


async def wait_for_state(hub: Hub, entity_id: str, value: str, timeout: float = 5.0) -> None:
    reached = asyncio.Event()

    def check(_event: object = None) -> None:
        state = hub.states.get(entity_id)
        if state is not None and state.state == value:
            reached.set()

    unsubscribe = hub.bus.async_listen(EVENT_STATE_CHANGED, check)
    try:
        check()
        async with asyncio.timeout(timeout):
            await reached.wait()
    finally:
        unsubscribe()


async def test_a_self_triggering_automation_is_turned_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = await start(tmp_path, LOOP)
    runs: list[str] = []
    hub.bus.async_listen(EVENT_AUTOMATION_TRIGGERED, lambda event: runs.append(event.data["id"]))
    try:
        with caplog.at_level(logging.ERROR):
            hub.bus.async_fire("qa_loop", {})
            await wait_for_state(hub, "automation.qa_loop", "off")
            await asyncio.sleep(0.2)
        looped = runs.count("qa_loop")
        assert LOOP_LIMIT <= looped <= LOOP_LIMIT + 20, looped
        errors = [
            r
            for r in caplog.records
            if r.levelno == logging.ERROR and r.name == "vendhub.automation.automation"
        ]
        assert len(errors) == 1, [r.message for r in errors]
        assert "triggered itself" in errors[0].message and "turned off" in errors[0].message
        listed = await hub.services.async_call("alarm", "list", {})
        alarms = [a for a in listed["active"] if a["code"] == "automation_loop_qa_loop"]
        assert len(alarms) == 1 and "QA loop" in alarms[0]["message"], listed
        # Nothing runs any more.
        await asyncio.sleep(0.2)
        assert runs.count("qa_loop") == looped

        # Another automation triggered often, but not by itself, keeps running.
        for _ in range(3 * LOOP_LIMIT):
            hub.bus.async_fire("tick", {})
        await settle(hub)
        assert runs.count("busy") == 3 * LOOP_LIMIT
        assert hub.states.get("automation.busy").state == "on"
    finally:
        await hub.async_stop()

    # Turned off by the guard, it stays off after a restart until someone turns it on.
    hub = await start(tmp_path, LOOP)
    try:
        assert hub.states.get("automation.qa_loop").state == "off"
    finally:
        await hub.async_stop()


async def test_a_loop_through_a_state_is_stopped(tmp_path: Path) -> None:
    # Its action makes something (a listener here, as a service would) change the entity its
    # trigger watches, in the action's context.
    automations = """
    - id: flip
      mode: queued
      max: 1000
      trigger:
        - platform: state
          entity_id: input.flip
      action:
        - event: set_flip
    """
    hub = await start(tmp_path, automations)

    def flip(event) -> None:  # type: ignore[no-untyped-def]
        current = hub.states.get("input.flip")
        hub.states.async_set(
            "input.flip", "b" if current and current.state == "a" else "a", context=event.context
        )

    hub.bus.async_listen("set_flip", flip)
    try:
        hub.states.async_set("input.flip", "a")
        await wait_for_state(hub, "automation.flip", "off")
    finally:
        await hub.async_stop()
