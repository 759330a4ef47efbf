"""``vending.set_slots``: an operator changes a local machine's prices, products, capacities
and par levels while the hub runs, and the change outlives a restart until the YAML of that
slot is edited.

Each test runs a real hub from a configuration folder (vend journal and ``.storage`` on disk,
the ``simulator`` board, the ``instant`` test provider: not real money), and starts it again on
the same folder where a restart matters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.http.hub_process import free_port
from vendhub.core.context import Context
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub

CONFIGURATION = """\
vendhub:
  name: Set slots test
  currency: EUR
vending:
  machines:
    kiosk_1:
      planogram:
        A1: {{product: Cola, price: {a1_price}, capacity: 10, par: 8, stock: 6}}
        A2: {{product: Water, price: 100, capacity: 10, stock: 5}}
      dispenser:
        platform: simulator
        dispense_time: 0
      payments:
        - platform: instant
{extra}"""

# A fleet hub's broker on a port where nothing listens: the uplink sets up and keeps trying.
UPLINK = """\
uplink:
  broker: mqtt://127.0.0.1:{port}
  machines: [kiosk_1]
  keepalive: 5
"""


def write_config(config_dir: Path, *, a1_price: int = 150, extra: str = "") -> None:
    (config_dir / "configuration.yaml").write_text(
        CONFIGURATION.format(a1_price=a1_price, extra=extra)
    )


def slot(hub: Hub, code: str) -> dict[str, Any]:
    state = hub.states.get(f"slot.kiosk_1_{code.lower()}")
    assert state is not None
    return {"stock": state.state, **state.attributes}


def kept(config_dir: Path) -> dict[str, Any] | None:
    """What ``.storage/vending.plans`` holds (None: no file)."""
    path = config_dir / ".storage" / "vending.plans"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())["data"]
    return data


async def set_slots(hub: Hub, data: dict[str, Any], context: Context | None = None) -> Any:
    return await hub.services.async_call(
        "vending", "set_slots", {"machine_id": "kiosk_1", **data}, blocking=True, context=context
    )


async def sell(hub: Hub, code: str) -> dict[str, Any]:
    session: dict[str, Any] = await hub.services.async_call(
        "vending",
        "select",
        {"machine_id": "kiosk_1", "slot": code, "method": "card"},
        blocking=True,
    )
    assert session["outcome"] == "completed", session
    return session


async def test_a_price_set_while_running_is_sold_and_kept_until_the_yaml_is_edited(
    tmp_path: Path, hubs: Callable[[Path], Any]
) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    operator = Context(user_id="user:operator")

    result = await set_slots(hub, {"slots": {"A1": {"price": 180}}}, operator)
    assert result == {
        "machine_id": "kiosk_1",
        "mode": "normal",
        "slots": {"A1": {"product": "Cola", "price": 180, "capacity": 10, "par": 8}},
        "applied": True,
    }
    # The slot shows it (with the caller's context: the history says who), the next sale pays it.
    assert (slot(hub, "A1")["price"], slot(hub, "A1")["product"]) == (180, "Cola")
    assert hub.states.get("slot.kiosk_1_a1").context.user_id == "user:operator"
    assert slot(hub, "A2")["price"] == 100
    assert (await sell(hub, "A1"))["price"] == 180
    assert slot(hub, "A1")["stock"] == "5"
    # Kept with the plan the configuration gave the slot then.
    assert kept(tmp_path) == {
        "machines": {
            "kiosk_1": {
                "A1": {
                    "plan": {"product": "Cola", "price": 180, "capacity": 10, "par": 8},
                    "configured": {"product": "Cola", "price": 150, "capacity": 10, "par": 8},
                }
            }
        }
    }

    # A restart on the same folder: the first states show the price set, and it is charged.
    await hub.async_stop()
    hub = await hubs(tmp_path)
    assert (slot(hub, "A1")["price"], slot(hub, "A1")["stock"]) == (180, "5")
    assert hub.data["vending"].engine("kiosk_1").machine.planogram["A1"].price == 180
    assert (await sell(hub, "A1"))["price"] == 180

    # The YAML price of the slot is edited: from the next start the YAML applies ...
    await hub.async_stop()
    write_config(tmp_path, a1_price=160)
    hub = await hubs(tmp_path)
    assert (slot(hub, "A1")["price"], slot(hub, "A1")["stock"]) == (160, "4")
    assert (await sell(hub, "A1"))["price"] == 160
    assert kept(tmp_path) == {"machines": {}}

    # ... and the price set before does not come back when the YAML goes back either.
    await hub.async_stop()
    write_config(tmp_path, a1_price=150)
    hub = await hubs(tmp_path)
    assert slot(hub, "A1")["price"] == 150


async def test_products_capacities_par_and_mode_in_one_call(
    tmp_path: Path, hubs: Callable[[Path], Any]
) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    result = await set_slots(
        hub,
        {
            "mode": "free_vend",
            "slots": {"A1": {"capacity": 4}, "A2": {"product": "Still water", "par": 3}},
        },
    )
    # A capacity below the par level and the stock brings both down to it.
    assert result["mode"] == "free_vend"
    assert result["slots"] == {
        "A1": {"product": "Cola", "price": 150, "capacity": 4, "par": 4},
        "A2": {"product": "Still water", "price": 100, "capacity": 10, "par": 3},
    }
    assert (
        slot(hub, "A1")["capacity"],
        slot(hub, "A1")["par_level"],
        slot(hub, "A1")["stock"],
    ) == (
        4,
        4,
        "4",
    )
    assert (slot(hub, "A2")["product"], slot(hub, "A2")["par_level"]) == ("Still water", 3)
    assert hub.states.get("machine.kiosk_1").attributes["mode"] == "free_vend"
    assert set(kept(tmp_path)["machines"]["kiosk_1"]) == {"A1", "A2"}
    await hub.async_stop()

    hub = await hubs(tmp_path)
    assert (slot(hub, "A1")["capacity"], slot(hub, "A1")["stock"]) == (4, "4")
    assert (slot(hub, "A2")["product"], slot(hub, "A2")["par_level"]) == ("Still water", 3)
    assert hub.states.get("machine.kiosk_1").attributes["mode"] == "free_vend"
    assert (await sell(hub, "A2"))["product"] == "Still water"

    # A slot set back to its configured plan is not kept any more; its stock stays as sold.
    await set_slots(hub, {"slots": {"A1": {"capacity": 10, "par": 8}}})
    assert set(kept(tmp_path)["machines"]["kiosk_1"]) == {"A2"}
    await hub.async_stop()
    hub = await hubs(tmp_path)
    assert (slot(hub, "A1")["capacity"], slot(hub, "A1")["stock"]) == (10, "4")
    assert slot(hub, "A2")["product"] == "Still water"


async def test_an_unknown_slot_or_a_par_above_capacity_changes_nothing(
    tmp_path: Path, hubs: Callable[[Path], Any]
) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    engine = hub.data["vending"].engine("kiosk_1")
    before = dict(engine.machine.planogram)

    with pytest.raises(InvalidServiceData) as refused:
        await set_slots(
            hub,
            {
                "mode": "service",
                "slots": {"A1": {"price": 170}, "Z9": {"product": "Tea", "price": 90}},
            },
        )
    message = refused.value.problem
    assert "slots.Z9" in message and "has no slot 'Z9'" in message, message
    assert "vending: block of configuration.yaml" in message, message

    with pytest.raises(InvalidServiceData) as refused:
        await set_slots(hub, {"slots": {"A2": {"price": 90}, "A1": {"par": 11}}})
    assert "slots.A1.par" in refused.value.problem and "capacity 10" in refused.value.problem
    with pytest.raises(InvalidServiceData) as refused:
        await set_slots(hub, {"slots": {"A1": {"capacity": 5, "par": 6}}})
    assert "slots.A1.par" in refused.value.problem and "capacity 5" in refused.value.problem
    with pytest.raises(InvalidServiceData):
        await set_slots(hub, {})
    with pytest.raises(InvalidServiceData):
        await set_slots(hub, {"slots": {"A1": {"price": 1.5}}})

    assert engine.machine.planogram == before
    assert engine.mode.value == "normal"
    assert (slot(hub, "A1")["price"], slot(hub, "A2")["price"]) == (150, 100)
    assert kept(tmp_path) is None
    assert (await sell(hub, "A1"))["price"] == 150


async def test_a_machine_linked_to_a_fleet_hub_takes_its_plan_from_there(
    tmp_path: Path, hubs: Callable[[Path], Any]
) -> None:
    write_config(tmp_path, extra=UPLINK.format(port=free_port()))
    hub = await hubs(tmp_path)
    engine = hub.data["vending"].engine("kiosk_1")
    assert engine.plan_owner == "uplink"

    with pytest.raises(InvalidServiceData) as refused:
        await set_slots(hub, {"mode": "service", "slots": {"A1": {"price": 170}}})
    assert refused.value.problem == (
        "machine kiosk_1 takes its plan from the fleet hub through uplink; change it there"
    )
    assert (engine.machine.planogram["A1"].price, engine.mode.value) == (150, "normal")
    assert slot(hub, "A1")["price"] == 150
    assert kept(tmp_path) is None
    # The mode alone may be set here, as with vending.set_mode.
    assert (await set_slots(hub, {"mode": "service"}))["mode"] == "service"

    # Without the uplink the plan is the machine's own again.
    from vendhub_integrations.uplink import async_unload

    await async_unload(hub)
    assert engine.plan_owner is None
    await set_slots(hub, {"slots": {"A1": {"price": 170}}})
    assert slot(hub, "A1")["price"] == 170
