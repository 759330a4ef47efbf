"""ServiceRegistry: validation, results, errors, events."""

from __future__ import annotations

import asyncio

import pytest
import voluptuous as vol

from vendhub.const import EVENT_CALL_SERVICE
from vendhub.core.context import Context
from vendhub.core.errors import InvalidServiceData, ServiceNotFound
from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.core.services import ServiceCall

PRICE_SCHEMA = vol.Schema(
    {vol.Required("slot"): str, vol.Required("price"): vol.All(int, vol.Range(min=0))}
)


async def test_blocking_call_returns_the_handler_result(hub: Hub) -> None:
    async def set_price(call: ServiceCall) -> dict[str, object]:
        return {"slot": call.data["slot"], "price": call.data["price"], "who": call.context.user_id}

    hub.services.async_register("vending", "set_price", set_price, PRICE_SCHEMA)
    result = await hub.services.async_call(
        "vending", "set_price", {"slot": "A1", "price": 170}, context=Context(user_id="u1")
    )
    assert result == {"slot": "A1", "price": 170, "who": "u1"}


async def test_plain_callback_handler(hub: Hub) -> None:
    hub.services.async_register("demo", "double", lambda call: call.data["n"] * 2)
    assert await hub.services.async_call("demo", "double", {"n": 21}) == 42


async def test_unknown_service_names_what_exists(hub: Hub) -> None:
    hub.services.async_register("vending", "set_price", lambda call: None)
    with pytest.raises(ServiceNotFound, match=r"vending\.set_prise.*set_price"):
        await hub.services.async_call("vending", "set_prise")
    with pytest.raises(ServiceNotFound, match=r"nothing\.here is not registered"):
        await hub.services.async_call("nothing", "here")


async def test_invalid_data_is_refused_before_the_handler_runs(hub: Hub) -> None:
    calls: list[ServiceCall] = []
    hub.services.async_register("vending", "set_price", calls.append, PRICE_SCHEMA)
    with pytest.raises(InvalidServiceData, match="price") as error:
        await hub.services.async_call("vending", "set_price", {"slot": "A1", "price": -5})
    assert "vending.set_price" in str(error.value)
    with pytest.raises(InvalidServiceData, match="slot"):
        await hub.services.async_call("vending", "set_price", {"price": 5})
    with pytest.raises(InvalidServiceData, match="extra keys not allowed"):
        await hub.services.async_call(
            "vending", "set_price", {"slot": "A1", "price": 5, "pirce": 1}
        )
    assert calls == []


async def test_call_fires_call_service_event_with_context(hub: Hub) -> None:
    events: list[Event] = []
    hub.bus.async_listen(EVENT_CALL_SERVICE, events.append)
    hub.services.async_register("demo", "noop", lambda call: None)
    context = Context(user_id="operator")
    await hub.services.async_call("demo", "noop", {"x": 1}, context=context)
    assert len(events) == 1
    assert events[0].data == {"domain": "demo", "service": "noop", "service_data": {"x": 1}}
    assert events[0].context is context


async def test_non_blocking_call_returns_at_once(hub: Hub) -> None:
    done = asyncio.Event()

    async def slow(call: ServiceCall) -> str:
        await asyncio.sleep(0.01)
        done.set()
        return "finished"

    hub.services.async_register("demo", "slow", slow)
    assert await hub.services.async_call("demo", "slow", blocking=False) is None
    assert not done.is_set()
    await hub.async_block_till_done(timeout=2)
    assert done.is_set()


async def test_blocking_call_timeout(hub: Hub) -> None:
    async def forever(call: ServiceCall) -> None:
        await asyncio.sleep(10)

    hub.services.async_register("demo", "forever", forever)
    with pytest.raises(TimeoutError):
        await hub.services.async_call("demo", "forever", timeout=0.05)


async def test_remove_domain(hub: Hub) -> None:
    hub.services.async_register("demo", "a", lambda call: None)
    hub.services.async_register("demo", "b", lambda call: None)
    assert hub.services.has_service("demo", "a")
    assert hub.services.async_remove_domain("demo") == 2
    assert not hub.services.has_service("demo", "a")
    assert "demo" not in hub.services.async_services()


async def test_the_call_service_event_never_carries_a_secret(hub: Hub) -> None:
    seen: list[Event] = []
    hub.bus.async_listen("call_service", seen.append)
    received: list[ServiceCall] = []
    hub.services.async_register("demo", "login", received.append)
    await hub.services.async_call(
        "demo", "login", {"user": "anna", "password": "hunter2-secret", "nested": {"token": "t0k"}}
    )
    await hub.async_block_till_done()
    assert received[0].data["password"] == "hunter2-secret"
    data = seen[0].data["service_data"]
    assert data["user"] == "anna"
    assert "hunter2-secret" not in str(data) and "t0k" not in str(data)
    await hub.services.async_call("demo", "login", {"user": "bob"})
    await hub.async_block_till_done()
    assert seen[1].data["service_data"] == {"user": "bob"}
