"""simulator.set_config: mode, prices, products, capacities and new slots of a virtual machine."""

from __future__ import annotations

import pytest

from vendhub.core import Hub
from vendhub.core.context import Context
from vendhub.core.errors import InvalidServiceData

from .conftest import machine_config, setup_simulator, simulator_config


async def test_set_config_changes_the_machine_and_its_entities(hub: Hub) -> None:
    runtime = await setup_simulator(hub, simulator_config(machine_config("lobby_1")))
    context = Context(user_id="user:abc")
    result = await hub.services.async_call(
        "simulator",
        "set_config",
        {
            "machine_id": "lobby_1",
            "mode": "service",
            "slots": {
                "a1": {"price": 175},
                "A2": {"capacity": 3, "product": "Nuts"},
                "B1": {"product": "Gum", "price": 90, "capacity": 20},
            },
        },
        context=context,
    )
    assert result["applied"] is True and result["mode"] == "service"
    assert result["slots"]["A1"] == {"product": "Cola", "price": 175, "capacity": 10, "par": 2}
    assert result["slots"]["A2"] == {"product": "Nuts", "price": 120, "capacity": 3, "par": 2}
    assert result["slots"]["B1"] == {"product": "Gum", "price": 90, "capacity": 20, "par": 5}

    machine = hub.states.get("machine.lobby_1")
    assert machine.attributes["mode"] == "service"
    assert machine.context.user_id == "user:abc" and machine.context.parent_id == context.id
    a1 = hub.states.get("slot.lobby_1_a1")
    assert a1.attributes["price"] == 175 and a1.context.user_id == "user:abc"
    a2 = hub.states.get("slot.lobby_1_a2")  # stock 5 does not fit a capacity of 3
    assert (a2.state, a2.attributes["product"], a2.attributes["capacity"]) == ("3", "Nuts", 3)
    b1 = hub.states.get("slot.lobby_1_b1")
    assert b1.state == "0" and b1.attributes["product"] == "Gum"

    virtual = runtime.machines["lobby_1"]
    assert (virtual.slots["A1"].price, virtual.slots["A2"].stock) == (175, 3)
    sale = await hub.services.async_call(
        "simulator", "vend", {"machine_id": "lobby_1", "slot": "A1"}
    )
    assert (sale["outcome"], sale["price"]) == ("completed", 175)
    # The new slot sells once it is stocked, and the link updates its entity.
    await hub.services.async_call("simulator", "restock", {"machine_id": "lobby_1", "slot": "B1"})
    assert hub.states.get("slot.lobby_1_b1").state == "20"
    sale = await hub.services.async_call(
        "simulator", "vend", {"machine_id": "lobby_1", "slot": "b1"}
    )
    assert (sale["product"], sale["price"], sale["stock"]) == ("Gum", 90, 19)
    assert hub.states.get("slot.lobby_1_b1").state == "19"

    # Codes as the protocol allows them, as for a machine linked over MQTT.
    await hub.services.async_call(
        "simulator",
        "set_config",
        {"machine_id": "lobby_1", "slots": {"C-1": {"product": "Tea", "price": 5, "capacity": 2}}},
    )
    assert virtual.slots["C-1"].product == "Tea"
    tea = [s for s in hub.states.async_all("slot") if s.attributes.get("slot") == "C-1"]
    assert len(tea) == 1 and tea[0].attributes["product"] == "Tea"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"machine_id": "nope"}, "runs no machine 'nope'"),
        ({"machine_id": "lobby_1", "mode": "party"}, "expected one of normal"),
        ({"machine_id": "lobby_1", "slots": {"A1": {"price": -5}}}, "price"),
        ({"machine_id": "lobby_1", "slots": {"A1": {"par": 11}}}, "par may be at most"),
        ({"machine_id": "lobby_1", "slots": {"C9": {"price": 100}}}, "give its product"),
        (
            {
                "machine_id": "lobby_1",
                "slots": {
                    "C1": {"product": "X", "price": 1, "capacity": 1},
                    "c1": {"product": "Y", "price": 1, "capacity": 1},
                },
            },
            "given twice",
        ),
    ],
)
async def test_set_config_refuses_bad_changes_and_changes_nothing(
    hub: Hub, data: dict[str, object], problem: str
) -> None:
    await setup_simulator(hub, simulator_config(machine_config("lobby_1")))
    before = {state.entity_id: state for state in hub.states.async_all()}
    with pytest.raises(InvalidServiceData, match=problem):
        await hub.services.async_call("simulator", "set_config", data)
    assert {state.entity_id: state for state in hub.states.async_all()} == before
