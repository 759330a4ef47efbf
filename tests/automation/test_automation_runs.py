"""The ``current`` attribute counts the run in progress; a run dropped by its mode is no trigger."""

from __future__ import annotations

import asyncio
from pathlib import Path

from vendhub.const import EVENT_AUTOMATION_TRIGGERED
from vendhub.core.events import Event

from .test_automation import settle, start

SLOW = """
- id: slow
  mode: single
  trigger:
    - platform: event
      event_type: go
  action:
    - wait_template: "{{ is_state('input.release', 'yes') }}"
"""


async def test_current_counts_the_only_run_and_a_dropped_run_is_not_triggered(
    tmp_path: Path,
) -> None:
    hub = await start(tmp_path, SLOW)
    triggered: list[tuple[str, int]] = []

    def seen(event: Event) -> None:
        state = hub.states.get("automation.slow")
        triggered.append((state.attributes["last_triggered"], state.attributes["current"]))

    hub.bus.async_listen(EVENT_AUTOMATION_TRIGGERED, seen)
    try:
        hub.bus.async_fire("go", {})
        await asyncio.sleep(0.05)
        state = hub.states.get("automation.slow")
        assert state.attributes["current"] == 1
        assert len(triggered) == 1 and triggered[0][1] == 1, triggered
        first = state.attributes["last_triggered"]
        assert first is not None

        # A second trigger while it runs is dropped (mode single): no new last_triggered, no
        # automation_triggered event; its trace says why.
        hub.bus.async_fire("go", {})
        await asyncio.sleep(0.05)
        state = hub.states.get("automation.slow")
        assert state.attributes["last_triggered"] == first
        assert len(triggered) == 1, triggered
        traces = await hub.services.async_call("automation", "traces", {"id": "slow"})
        assert [trace["outcome"] for trace in traces] == ["aborted"]

        hub.states.async_set("input.release", "yes")
        await settle(hub)
        assert hub.states.get("automation.slow").attributes["current"] == 0
        traces = await hub.services.async_call("automation", "traces", {"id": "slow"})
        assert sorted(trace["outcome"] for trace in traces) == ["aborted", "ran"]
    finally:
        await hub.async_stop()


BAD_VARIABLE = """
- id: bad_variable
  variables:
    fine: "{{ 1 + 1 }}"
    broken: "{{ nosuch.y }}"
  trigger:
    - platform: event
      event_type: go
  action:
    - event: never
"""


async def test_a_variable_that_cannot_be_rendered_is_named_in_the_trace(tmp_path: Path) -> None:
    hub = await start(tmp_path, BAD_VARIABLE)
    try:
        hub.bus.async_fire("go", {})
        await settle(hub)
        [trace] = await hub.services.async_call("automation", "traces", {"id": "bad_variable"})
        assert trace["outcome"] == "error"
        assert trace["error"].startswith(
            "TemplateError: template 'variables/broken' line 1: 'nosuch' is undefined"
        ), trace["error"]
    finally:
        await hub.async_stop()
