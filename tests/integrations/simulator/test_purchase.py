"""The simulated purchase behind the kiosk: card, QR and cash (with change), decline, a jam
refunds, cancel refunds inserted cash, timeouts, one context per session, and stock that
changes only through the vend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import voluptuous as vol

from vendhub.core import Event, Hub
from vendhub.core.context import Context
from vendhub.core.errors import InvalidServiceData
from vendhub_integrations.simulator import vendhub_config_schema
from vendhub_integrations.simulator.const import EVENT_PURCHASE_UPDATED

from .conftest import machine_config, record, setup_simulator, simulator_config

FAST = {"approval_delay": 0.05, "dispense_time": 0, "payment_timeout": 5}


async def started(hub: Hub, purchase: dict[str, Any] | None = None, **machine: Any) -> Hub:
    config = simulator_config(machine_config(**machine), purchase={**FAST, **(purchase or {})})
    await setup_simulator(hub, config)
    return hub


async def call(hub: Hub, service: str, context: Context | None = None, **data: Any) -> Any:
    return await hub.services.async_call(
        "simulator", service, {"machine_id": "lobby_1", **data}, blocking=True, context=context
    )


def stock(hub: Hub, code: str = "a1") -> str:
    state = hub.states.get(f"slot.lobby_1_{code}")
    assert state is not None
    return state.state


async def until(hub: Hub, purchase_id: str, *states: str, timeout: float = 3) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status = await call(hub, "purchase_status", purchase_id=purchase_id)
            if status["state"] in states:
                return status
            await asyncio.sleep(0.01)


def states_of(events: list[Event], purchase_id: str) -> list[str]:
    return [e.data["state"] for e in events if e.data["id"] == purchase_id]


async def test_a_card_purchase_approves_by_itself_then_dispenses(hub: Hub) -> None:
    await started(hub)
    events = record(hub, EVENT_PURCHASE_UPDATED)
    vends = record(hub, "vend_started", "vend_completed")
    caller = Context(user_id="machine:lobby_1")
    session = await call(hub, "purchase_start", caller, slot="a1", method="card")
    assert session["state"] == "awaiting_payment"
    assert (session["slot"], session["product"], session["price"]) == ("A1", "Cola", 150)
    assert session["currency"] == "EUR" and session["simulated"] is True
    assert session["expires"] is not None
    assert stock(hub) == "10"  # nothing moves before the vend

    done = await until(hub, session["id"], "completed")
    assert done["vend"]["outcome"] == "completed"
    assert not done["refunded"] and done["change"] == 0
    assert stock(hub) == "9"
    assert states_of(events, session["id"]) == [
        "selecting",
        "awaiting_payment",
        "authorized",
        "dispensing",
        "completed",
    ]
    # One context per session, a child of the start call's; the vend's is its child.
    contexts = {event.context.id for event in events}
    assert len(contexts) == 1
    session_context = events[0].context
    assert session_context.parent_id == caller.id
    assert session_context.user_id == "machine:lobby_1"
    assert done["context_id"] == session_context.id
    assert vends and all(event.context.parent_id == session_context.id for event in vends)
    assert vends[-1].data["payment_method"] == "card"


async def test_a_qr_purchase_carries_a_payment_url_and_pays_on_purchase_pay(hub: Hub) -> None:
    await started(hub, {"auto_approve": False})
    session = await call(hub, "purchase_start", slot="A2", method="qr")
    assert session["payment_url"].startswith("vendhub-sim://pay/lobby_1/" + session["id"])
    await asyncio.sleep(0.1)  # no approval by itself
    assert (await call(hub, "purchase_status", purchase_id=session["id"]))[
        "state"
    ] == "awaiting_payment"
    paid = await call(hub, "purchase_pay", purchase_id=session["id"])
    assert paid["state"] in ("authorized", "dispensing")
    done = await until(hub, session["id"], "completed")
    assert done["vend"]["outcome"] == "completed" and stock(hub, "a2") == "4"


async def test_a_declined_card_takes_nothing_and_sells_nothing(hub: Hub) -> None:
    await started(hub, {"auto_approve": False})
    session = await call(hub, "purchase_start", slot="A1", method="card")
    declined = await call(hub, "purchase_pay", purchase_id=session["id"], decline=True)
    assert declined["state"] == "failed" and declined["reason"] == "declined"
    assert declined["refunded"] is False and declined["refund_amount"] == 0
    assert stock(hub) == "10"
    with pytest.raises(InvalidServiceData, match="failed; it takes no payment"):
        await call(hub, "purchase_pay", purchase_id=session["id"])


async def test_cash_shows_the_credit_and_gives_change(hub: Hub) -> None:
    await started(hub)
    events = record(hub, EVENT_PURCHASE_UPDATED)
    session = await call(hub, "purchase_start", slot="A1", method="cash")
    assert session["due"] == 150 and session["payment_url"] is None
    await asyncio.sleep(0.1)  # cash never approves by itself
    partly = await call(hub, "purchase_insert_cash", purchase_id=session["id"], amount=100)
    assert (partly["state"], partly["credit"], partly["due"]) == ("awaiting_payment", 100, 50)
    with pytest.raises(InvalidServiceData, match="inserting cash"):
        await call(hub, "purchase_pay", purchase_id=session["id"])
    paid = await call(hub, "purchase_insert_cash", purchase_id=session["id"], amount=100)
    assert paid["credit"] == 200 and paid["change"] == 50
    done = await until(hub, session["id"], "completed")
    assert done["change"] == 50 and not done["refunded"]
    assert stock(hub) == "9"
    cash_box = hub.states.get("sensor.lobby_1_cash_box")
    assert cash_box is not None and cash_box.state == "150"  # the price, not the credit
    credits = [e.data["credit"] for e in events if e.data["state"] == "awaiting_payment"]
    assert credits == [0, 100]


async def test_a_jam_after_payment_refunds(hub: Hub) -> None:
    await started(hub, jam_rate=1)
    session = await call(hub, "purchase_start", slot="A1", method="card")
    done = await until(hub, session["id"], "failed", "completed")
    assert done["state"] == "failed" and done["reason"] == "jam"
    assert done["refunded"] is True and done["refund_amount"] == 150
    assert done["vend"]["outcome"] == "failed"
    assert stock(hub) == "10"


async def test_a_jammed_cash_purchase_returns_every_coin(hub: Hub) -> None:
    await started(hub, jam_rate=1)
    session = await call(hub, "purchase_start", slot="A1", method="cash")
    await call(hub, "purchase_insert_cash", purchase_id=session["id"], amount=200)
    done = await until(hub, session["id"], "failed")
    assert done["refunded"] and done["refund_amount"] == 200 and done["change"] == 0


async def test_cancel_returns_inserted_cash(hub: Hub) -> None:
    await started(hub)
    session = await call(hub, "purchase_start", slot="A1", method="cash")
    await call(hub, "purchase_insert_cash", purchase_id=session["id"], amount=50)
    cancelled = await call(hub, "purchase_cancel", purchase_id=session["id"])
    assert cancelled["state"] == "cancelled" and cancelled["reason"] == "cancelled"
    assert cancelled["refunded"] and cancelled["refund_amount"] == 50
    again = await call(hub, "purchase_cancel", purchase_id=session["id"])  # harmless
    assert again["state"] == "cancelled"
    with pytest.raises(InvalidServiceData, match="takes no payment"):
        await call(hub, "purchase_insert_cash", purchase_id=session["id"], amount=50)
    assert stock(hub) == "10"


async def test_a_card_cancelled_before_payment_refunds_nothing(hub: Hub) -> None:
    await started(hub, {"auto_approve": False})
    session = await call(hub, "purchase_start", slot="A1", method="card")
    cancelled = await call(hub, "purchase_cancel", purchase_id=session["id"])
    assert cancelled["state"] == "cancelled" and cancelled["refunded"] is False


async def test_waiting_for_payment_times_out_and_returns_the_cash(hub: Hub) -> None:
    await started(hub, {"payment_timeout": 0.2})
    session = await call(hub, "purchase_start", slot="A1", method="cash")
    await asyncio.sleep(0.12)
    await call(hub, "purchase_insert_cash", purchase_id=session["id"], amount=20)
    await asyncio.sleep(0.12)  # each coin starts the wait again
    waiting = await call(hub, "purchase_status", purchase_id=session["id"])
    assert waiting["state"] == "awaiting_payment"
    done = await until(hub, session["id"], "cancelled")
    assert done["reason"] == "timeout" and done["refunded"] and done["refund_amount"] == 20


async def test_a_card_payment_that_never_comes_times_out(hub: Hub) -> None:
    await started(hub, {"auto_approve": False, "payment_timeout": 0.1})
    session = await call(hub, "purchase_start", slot="A1", method="qr")
    done = await until(hub, session["id"], "cancelled")
    assert done["reason"] == "timeout" and done["refunded"] is False


async def test_only_the_accepted_methods_and_stocked_slots_sell(hub: Hub) -> None:
    await started(
        hub,
        payment_methods=["cash"],
        slots={
            "A1": {"product": "Cola", "price": 150, "capacity": 10, "stock": 0},
            "A2": {"product": "Crisps", "price": 120, "capacity": 8},
        },
    )
    options = await call(hub, "purchase_options")
    assert options["payment_methods"] == ["cash"] and options["purchase"] is None
    with pytest.raises(InvalidServiceData, match="does not accept card"):
        await call(hub, "purchase_start", slot="A2", method="card")
    with pytest.raises(InvalidServiceData, match="sold out"):
        await call(hub, "purchase_start", slot="A1", method="cash")
    with pytest.raises(InvalidServiceData, match="no slot"):
        await call(hub, "purchase_start", slot="Z9", method="cash")
    with pytest.raises(InvalidServiceData):
        await call(hub, "purchase_start", slot="A2", method="bitcoin")
    with pytest.raises(InvalidServiceData, match="no purchase"):
        await call(hub, "purchase_status", purchase_id="0" * 32)


async def test_a_new_purchase_replaces_one_left_waiting(hub: Hub) -> None:
    await started(hub)
    first = await call(hub, "purchase_start", slot="A1", method="cash")
    await call(hub, "purchase_insert_cash", purchase_id=first["id"], amount=100)
    options = await call(hub, "purchase_options")
    assert options["purchase"]["id"] == first["id"]
    second = await call(hub, "purchase_start", slot="A2", method="cash")
    old = await call(hub, "purchase_status", purchase_id=first["id"])
    assert old["state"] == "cancelled" and old["reason"] == "replaced"
    assert old["refund_amount"] == 100
    assert (await call(hub, "purchase_options"))["purchase"]["id"] == second["id"]


async def test_a_purchase_cannot_be_cancelled_while_dispensing(hub: Hub) -> None:
    await started(hub, {"dispense_time": 0.2})
    session = await call(hub, "purchase_start", slot="A1", method="cash")
    await call(hub, "purchase_insert_cash", purchase_id=session["id"], amount=150)
    await until(hub, session["id"], "dispensing")
    with pytest.raises(InvalidServiceData, match="can no longer be cancelled"):
        await call(hub, "purchase_cancel", purchase_id=session["id"])
    with pytest.raises(InvalidServiceData, match="dispensing"):
        await call(hub, "purchase_start", slot="A2", method="cash")
    assert (await until(hub, session["id"], "completed"))["change"] == 0


async def test_payment_methods_are_validated() -> None:
    schema = vendhub_config_schema()
    config = schema({"machines": [{"id": "a", "payment_methods": ["QR", "cash"]}]})
    assert config["machines"][0]["payment_methods"] == ["qr", "cash"]
    assert schema({"machines": [{"id": "a"}]})["machines"][0]["payment_methods"] == [
        "card",
        "qr",
        "cash",
    ]
    for bad in (["card", "card"], ["cheque"], []):
        with pytest.raises(vol.Invalid, match=r"payment|twice|expected"):
            schema({"machines": [{"id": "a", "payment_methods": bad}]})
