"""EventBus: ordering, isolation, filters, once-listeners, coroutine listeners."""

from __future__ import annotations

import asyncio
import logging

import pytest

from vendhub.const import MATCH_ALL
from vendhub.core.context import Context
from vendhub.core.events import Event
from vendhub.core.hub import Hub


async def test_listeners_run_in_subscription_order(hub: Hub) -> None:
    calls: list[str] = []
    hub.bus.async_listen("ping", lambda event: calls.append("first"))
    hub.bus.async_listen("ping", lambda event: calls.append("second"))
    hub.bus.async_listen(MATCH_ALL, lambda event: calls.append("match_all"))
    hub.bus.async_listen("ping", lambda event: calls.append("third"))

    hub.bus.async_fire("ping")

    assert calls == ["first", "second", "third", "match_all"]


async def test_events_fired_inside_a_listener_keep_fire_order(hub: Hub) -> None:
    seen_by_a: list[str] = []
    seen_by_b: list[str] = []

    def a(event: Event) -> None:
        seen_by_a.append(event.event_type)
        if event.event_type == "first":
            hub.bus.async_fire("second")

    hub.bus.async_listen(MATCH_ALL, a)
    hub.bus.async_listen(MATCH_ALL, lambda event: seen_by_b.append(event.event_type))

    hub.bus.async_fire("first")

    assert seen_by_a == ["first", "second"]
    # b must see "first" before "second" even though "second" was fired while "first" was
    # being delivered.
    assert seen_by_b == ["first", "second"]


async def test_failing_listener_is_logged_and_others_still_run(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener exploded")

    hub.bus.async_listen("ping", broken)
    hub.bus.async_listen("ping", lambda event: calls.append(event.data["n"]))

    with caplog.at_level(logging.ERROR):
        event = hub.bus.async_fire("ping", {"n": 1})  # must not raise

    assert calls == [1]
    assert event.event_type == "ping"
    assert "broken" in caplog.text and "listener exploded" in caplog.text


async def test_coroutine_listener_runs_as_tracked_task(hub: Hub) -> None:
    received: list[int] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0.01)
        received.append(event.data["n"])

    hub.bus.async_listen("ping", slow)
    hub.bus.async_fire("ping", {"n": 7})
    assert received == []
    await hub.async_block_till_done(timeout=2)
    assert received == [7]


async def test_failing_coroutine_listener_is_logged(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(event: Event) -> None:
        raise ValueError("async boom")

    hub.bus.async_listen("ping", broken)
    with caplog.at_level(logging.ERROR):
        hub.bus.async_fire("ping")
        await hub.async_block_till_done(timeout=2)
    assert "async boom" in caplog.text


async def test_unsubscribe_and_listen_once(hub: Hub) -> None:
    calls: list[str] = []
    unsubscribe = hub.bus.async_listen("ping", lambda event: calls.append("always"))
    hub.bus.async_listen_once("ping", lambda event: calls.append("once"))

    hub.bus.async_fire("ping")
    unsubscribe()
    unsubscribe()  # a second call is harmless
    hub.bus.async_fire("ping")

    assert calls == ["always", "once"]
    assert "ping" not in hub.bus.async_listeners()


async def test_unsubscribing_during_delivery_skips_the_removed_listener(hub: Hub) -> None:
    calls: list[str] = []
    unsubscribe_second = None

    def first(event: Event) -> None:
        calls.append("first")
        assert unsubscribe_second is not None
        unsubscribe_second()

    hub.bus.async_listen("ping", first)
    unsubscribe_second = hub.bus.async_listen("ping", lambda event: calls.append("second"))
    hub.bus.async_fire("ping")
    assert calls == ["first"]


async def test_event_filter(hub: Hub) -> None:
    calls: list[int] = []
    hub.bus.async_listen(
        "vend_completed",
        lambda event: calls.append(event.data["price"]),
        event_filter=lambda event: event.data["machine_id"] == "lobby_1",
    )
    hub.bus.async_fire("vend_completed", {"machine_id": "lobby_1", "price": 150})
    hub.bus.async_fire("vend_completed", {"machine_id": "gym_2", "price": 90})
    assert calls == [150]


async def test_event_carries_context_and_is_immutable(hub: Hub) -> None:
    context = Context(user_id="operator")
    event = hub.bus.async_fire("ping", {"a": 1}, context=context)
    assert event.context is context
    with pytest.raises(AttributeError):
        event.event_type = "pong"  # type: ignore[misc]
    assert event.as_dict()["context"] == {
        "id": context.id,
        "user_id": "operator",
        "parent_id": None,
    }


async def test_fire_from_another_thread(hub: Hub) -> None:
    received = asyncio.Event()
    hub.bus.async_listen("from_thread", lambda event: received.set())
    await hub.async_add_executor_job(hub.bus.fire, "from_thread")
    await asyncio.wait_for(received.wait(), 2)


async def test_has_listeners_answers_for_own_and_match_all_listeners(hub: Hub) -> None:
    assert not hub.bus.async_has_listeners("vend_started")
    unsubscribe = hub.bus.async_listen("vend_started", lambda event: None)
    assert hub.bus.async_has_listeners("vend_started")
    assert not hub.bus.async_has_listeners("vend_completed")
    unsubscribe()
    assert not hub.bus.async_has_listeners("vend_started")
    unsubscribe_all = hub.bus.async_listen(MATCH_ALL, lambda event: None)
    assert hub.bus.async_has_listeners("vend_completed")
    unsubscribe_all()
    assert not hub.bus.async_has_listeners("vend_completed")
