"""Hub lifecycle: start, bounded graceful stop, task tracking."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from vendhub.const import EVENT_HUB_FINAL_WRITE, EVENT_HUB_STARTED, EVENT_HUB_STOP
from vendhub.core.errors import HubNotRunning
from vendhub.core.events import Event
from vendhub.core.hub import CoreState, Hub


async def test_lifecycle_states_and_events(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    seen: list[tuple[str, CoreState]] = []
    for name in (EVENT_HUB_STARTED, EVENT_HUB_STOP, EVENT_HUB_FINAL_WRITE):
        hub.bus.async_listen(name, lambda event: seen.append((event.event_type, hub.state)))
    assert hub.state is CoreState.not_running
    await hub.async_start()
    assert hub.state is CoreState.running and hub.is_running
    await hub.async_stop()
    assert hub.state is CoreState.stopped
    assert seen == [
        (EVENT_HUB_STARTED, CoreState.running),
        (EVENT_HUB_STOP, CoreState.stopping),
        (EVENT_HUB_FINAL_WRITE, CoreState.final_write),
    ]


async def test_stop_waits_for_tracked_tasks_and_cancels_background_ones(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    await hub.async_start()
    finished: list[str] = []
    cancelled: list[str] = []

    async def short_work() -> None:
        await asyncio.sleep(0.05)
        finished.append("short")

    async def loop_forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append("loop")
            raise

    hub.async_create_task(short_work(), name="short")
    hub.async_create_background_task(loop_forever(), name="loop")
    report = await hub.async_stop()
    assert finished == ["short"]
    assert cancelled == ["loop"]
    assert report.finished >= 1 and report.cancelled == 1
    assert report.seconds < 1


async def test_stop_is_bounded_when_a_task_hangs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(tmp_path)
    await hub.async_start()
    hub.stop_timeouts = type(hub.stop_timeouts)(stop=0.2, final_write=0.1, cancel=0.1)

    async def hangs() -> None:
        await asyncio.sleep(3600)

    hub.async_create_task(hangs(), name="stuck writer")
    with caplog.at_level(logging.WARNING):
        report = await hub.async_stop()
    assert report.seconds < 1.0
    assert report.stages_timed_out == ["stop", "final_write"]
    assert report.cancelled == 1
    assert "stuck writer" in caplog.text


async def test_work_started_by_stop_listeners_is_awaited(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    saved: list[str] = []

    async def save() -> None:
        await asyncio.sleep(0.02)
        saved.append("registries")

    hub.bus.async_listen_once(
        EVENT_HUB_FINAL_WRITE, lambda event: hub.async_create_task(save(), name="save")
    )
    await hub.async_start()
    await hub.async_stop()
    assert saved == ["registries"]


async def test_stop_twice_returns_the_same_report(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    first = await hub.async_stop()
    second = await hub.async_stop()
    assert first is second


async def test_stopped_hub_refuses_new_tasks(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    await hub.async_stop()

    async def work() -> None:
        return None

    with pytest.raises(HubNotRunning, match="late"):
        hub.async_create_task(work(), name="late")


async def test_failed_task_is_logged(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("task went wrong")

    with caplog.at_level(logging.ERROR):
        hub.async_create_task(broken(), name="broken job")
        await hub.async_block_till_done(timeout=1)
    assert "broken job" in caplog.text and "task went wrong" in caplog.text


async def test_block_till_done_follows_tasks_started_by_tasks(hub: Hub) -> None:
    order: list[str] = []

    async def inner() -> None:
        await asyncio.sleep(0.01)
        order.append("inner")

    async def outer() -> None:
        hub.async_create_task(inner())
        order.append("outer")

    hub.async_create_task(outer())
    await hub.async_block_till_done(timeout=2)
    assert order == ["outer", "inner"]


async def test_listener_event_sees_hub_state(hub: Hub) -> None:
    events: list[Event] = []
    hub.bus.async_listen(EVENT_HUB_STARTED, events.append)
    await hub.async_start()
    assert len(events) == 1
