"""Automation ids that become the same entity id are refused, like a duplicate id."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from vendhub.bootstrap import prepare
from vendhub.core.errors import InvalidServiceData

from .test_automation import start

ONE = """
- id: bad_id
  trigger:
    - platform: event
      event_type: ping
  action:
    - event: pong
"""

COLLIDING = """
- id: "Bad Id!"
  trigger:
    - platform: event
      event_type: ping
  action:
    - event: pong
- id: bad_id
  trigger:
    - platform: event
      event_type: ping
  action:
    - event: pong
- id: bad-id
  trigger:
    - platform: event
      event_type: ping
  action:
    - event: pong_again
"""


async def test_reload_refuses_ids_that_share_an_entity_and_keeps_the_old_ones(
    tmp_path: Path,
) -> None:
    hub = await start(tmp_path, ONE)
    try:
        (tmp_path / "automations.yaml").write_text(textwrap.dedent(COLLIDING))
        with pytest.raises(InvalidServiceData) as caught:
            await hub.services.async_call("automation", "reload", {})
        message = str(caught.value)
        assert "nothing changed" in message
        # Both later ids are named, with their line, the first id and the shared entity.
        assert "automations.yaml:8" in message and "automations.yaml:14" in message, message
        assert "'bad_id' and 'Bad Id!'" in message, message
        assert "'bad-id' and 'Bad Id!'" in message, message
        assert "automation.bad_id" in message
        assert "give this automation an id" in message
        # The running automation is untouched.
        state = hub.states.get("automation.bad_id")
        assert state is not None and state.state == "on"
        assert state.attributes["id"] == "bad_id"
        assert list(hub.data["automation"].automations) == ["bad_id"]
    finally:
        await hub.async_stop()


async def test_a_configuration_with_colliding_ids_is_an_issue_at_start(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text("automation: !include automations.yaml\n")
    (tmp_path / "automations.yaml").write_text(textwrap.dedent(COLLIDING))
    prepared = await asyncio.to_thread(prepare, tmp_path)
    text = "\n".join(str(issue) for issue in prepared.issues)
    assert "automation.bad_id" in text, text
