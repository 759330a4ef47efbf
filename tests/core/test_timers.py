"""Timers and trackers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.core.timers import (
    async_track_point_in_time,
    async_track_state_change,
    async_track_time_interval,
)
from vendhub.util.dt import utcnow


async def test_point_in_time_fires_once_at_the_time(hub: Hub) -> None:
    fired = asyncio.Event()
    moments = []
    target = utcnow() + timedelta(milliseconds=50)

    def action(now: object) -> None:
        moments.append(now)
        fired.set()

    async_track_point_in_time(hub, action, target)
    await asyncio.wait_for(fired.wait(), 2)
    assert len(moments) == 1
    assert moments[0] >= target


async def test_point_in_time_can_be_cancelled(hub: Hub) -> None:
    calls: list[object] = []
    cancel = async_track_point_in_time(hub, calls.append, utcnow() + timedelta(milliseconds=20))
    cancel()
    await asyncio.sleep(0.06)
    assert calls == []


async def test_time_interval_repeats_until_cancelled(hub: Hub) -> None:
    calls: list[object] = []
    cancel = async_track_time_interval(hub, calls.append, timedelta(milliseconds=20))
    await asyncio.sleep(0.11)
    cancel()
    count = len(calls)
    assert 3 <= count <= 6
    await asyncio.sleep(0.05)
    assert len(calls) == count


async def test_time_interval_runs_coroutines_and_survives_errors(hub: Hub) -> None:
    runs: list[int] = []

    async def action(now: object) -> None:
        runs.append(1)
        raise RuntimeError("each run fails")

    cancel = async_track_time_interval(hub, action, timedelta(milliseconds=10))
    await asyncio.sleep(0.06)
    cancel()
    await hub.async_block_till_done(timeout=1)
    assert len(runs) >= 3


async def test_track_state_change_with_from_and_to(hub: Hub) -> None:
    any_change: list[Event] = []
    to_zero: list[Event] = []
    async_track_state_change(hub, "slot.m_a1", any_change.append)
    unsubscribe = async_track_state_change(
        hub, ["slot.m_a1", "slot.m_a2"], to_zero.append, to_state="0"
    )
    hub.states.async_set("slot.m_a1", "2")
    hub.states.async_set("slot.m_a1", "1")
    hub.states.async_set("slot.m_a1", "0")
    hub.states.async_set("slot.m_a2", "0")
    hub.states.async_set("slot.other", "0")
    assert [e.data["new_state"].state for e in any_change] == ["2", "1", "0"]
    assert [e.data["entity_id"] for e in to_zero] == ["slot.m_a1", "slot.m_a2"]
    unsubscribe()
    hub.states.async_set("slot.m_a2", "5")
    hub.states.async_set("slot.m_a2", "0")
    assert len(to_zero) == 2


async def test_track_state_change_from_state(hub: Hub) -> None:
    calls: list[Event] = []
    async_track_state_change(
        hub, "machine.m", calls.append, from_state="online", to_state="offline"
    )
    hub.states.async_set("machine.m", "online")
    hub.states.async_set("machine.m", "offline")
    hub.states.async_set("machine.m", "maintenance")
    hub.states.async_set("machine.m", "offline")
    assert len(calls) == 1
