"""/api/machines and /api/planograms on machines of the vend engine (the ``vending:`` link).

A real hub started from a configuration folder: the vend engine's ``demo_kiosk`` (the
``simulator`` board, the ``instant`` test provider: not real money) beside a simulated
machine ``lobby_1``, driven through the HTTP API by users of each role. The mode and the
restock go through ``vending.set_slots`` (the link's config service, as
``simulator.set_config``) and ``vending.restock``; slot and planogram changes too, applied at
once (their restart rule: tests/integrations/vending/test_set_slots.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator

from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.events import Event
from vendhub.http.api.catalog import PlanogramView
from vendhub.http.api.machines import CommandView, MachineView, ModeView, RestockView, SlotView
from vendhub.http.errors import ERROR_SCHEMA
from vendhub.http.server import get_http
from vendhub.vending.session import VendRefused

from .conftest import Api
from .fleet_hub import FleetApi, add_roles

PLANOGRAM = {
    "A1": {"product": "Cola", "price": 180, "capacity": 8, "par": 4, "stock": 6},
    "A2": {"product": "Water", "price": 120, "capacity": 8, "par": 4},
    "B1": {"product": "Chocolate", "price": 150, "capacity": 10, "stock": 3},
}


def configuration(planogram: dict[str, Any]) -> dict[str, Any]:
    return {
        "vendhub": {"name": "Vend engine fleet test", "currency": "EUR"},
        "http": {"server_host": "127.0.0.1", "server_port": 0},
        "simulator": {
            "tick": 3600,
            "summary_interval": 0,
            "machines": [
                {
                    "id": "lobby_1",
                    "name": "Lobby",
                    "sales_per_hour": 0,
                    "door_openings_per_day": 0,
                    "jam_rate": 0,
                    "failure_rate": 0,
                    "slots": {"A1": {"product": "Juice", "price": 200, "capacity": 8}},
                }
            ],
        },
        "vending": {
            "machines": {
                "demo_kiosk": {
                    "name": "Reception kiosk",
                    "planogram": planogram,
                    "dispenser": {"platform": "simulator", "dispense_time": 0.01},
                    "payments": [{"platform": "instant"}],
                    "timeouts": {"payment": 5, "dispense": 5, "capture": 2, "void": 2},
                }
            }
        },
    }


def write_configuration(config_dir: Path, planogram: dict[str, Any]) -> None:
    (config_dir / "configuration.yaml").write_text(
        yaml.safe_dump(configuration(planogram), sort_keys=False), encoding="utf-8"
    )


@contextlib.asynccontextmanager
async def running_hub(tmp_path: Path, roles: tuple[str, ...]) -> AsyncIterator[FleetApi]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write_configuration(config_dir, PLANOGRAM)
    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == [], prepared.issues
    hub, report = await async_start_hub(prepared)
    try:
        assert report.failed == {}, report.failed
        assert hub.data["vending"].broken == {}
        async with aiohttp.ClientSession() as session:
            yield await add_roles(Api(hub, get_http(hub).url, session), roles)
    finally:
        if not hub.is_stopping:
            await hub.async_stop()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[FleetApi]:
    async with running_hub(tmp_path, ("operator", "technician", "viewer")) as instance:
        yield instance


def check(view: Any, method: str, status: int, answer: Any) -> None:
    """``answer`` matches what ``/api/openapi.json`` publishes for it."""
    schema = view.operations()[method].responses[status]
    errors = [error.message for error in Draft202012Validator(schema).iter_errors(answer)]
    assert not errors, (errors, answer)


def stock(fleet: FleetApi, code: str) -> str:
    state = fleet.hub.states.get(f"slot.demo_kiosk_{code.lower()}")
    assert state is not None
    return str(state.state)


async def sell(fleet: FleetApi, code: str) -> dict[str, Any]:
    """One card sale through the engine, to its end."""
    session: dict[str, Any] = await fleet.hub.services.async_call(
        "vending", "select", {"machine_id": "demo_kiosk", "slot": code, "method": "card"}
    )
    assert session["outcome"] == "completed", session
    return session


async def test_the_mode_goes_through_vending_set_slots(fleet: FleetApi) -> None:
    hub = fleet.hub
    status, machines = await fleet.call("GET", "/api/machines?link=vending", "viewer")
    assert [m["id"] for m in machines] == ["demo_kiosk"]
    engine = hub.data["vending"].engine("demo_kiosk")
    changes: list[Event] = []
    hub.bus.async_listen("vending_mode_changed", changes.append)

    # Permissions are those of every link: a viewer reads, never sets, on either machine.
    for machine_id in ("demo_kiosk", "lobby_1"):
        status, body = await fleet.call(
            "PUT", f"/api/machines/{machine_id}/mode", "viewer", {"mode": "service"}
        )
        assert status == 403 and body["error"]["code"] == "forbidden", body
    # A technician acts on their own machines only (lobby_1): this one is "not found".
    status, body = await fleet.call(
        "PUT", "/api/machines/demo_kiosk/mode", "technician", {"mode": "service"}
    )
    assert status == 404, body
    assert engine.mode.value == "normal" and changes == []

    status, answer = await fleet.call(
        "PUT", "/api/machines/demo_kiosk/mode", "operator", {"mode": "service"}
    )
    assert status == 200, answer
    check(ModeView, "put", 200, answer)
    assert answer == {
        "machine_id": "demo_kiosk",
        "mode": "service",
        "delivery": "applied",
        "config_version": None,
    }
    assert engine.mode.value == "service"
    assert hub.states.get("machine.demo_kiosk").attributes["mode"] == "service"
    status, machine = await fleet.call("GET", "/api/machines/demo_kiosk", "viewer")
    assert status == 200, machine
    check(MachineView, "get", 200, machine)
    assert (machine["link"], machine["mode"], machine["online"]) == ("vending", "service", True)
    # The engine changed it with the operator's context (the audit log's "who").
    assert [(event.data["mode"], event.data["previous"]) for event in changes] == [
        ("service", "normal")
    ]
    assert changes[0].context.user_id == f"user:{fleet.user_ids['operator']}"
    # The machine's state too: the history shows who changed the mode.
    state = hub.states.get("machine.demo_kiosk")
    assert state.context.user_id == f"user:{fleet.user_ids['operator']}"
    # And the engine acts on it: a machine in service sells nothing.
    with pytest.raises(VendRefused) as refused:
        await sell(fleet, "A1")
    assert refused.value.code == "service_mode"

    status, answer = await fleet.call(
        "PUT", "/api/machines/demo_kiosk/mode", "operator", {"mode": "normal"}
    )
    assert (status, answer["mode"]) == (200, "normal")
    assert engine.mode.value == "normal"
    await sell(fleet, "A1")
    assert stock(fleet, "A1") == "5"

    # The simulated machine beside it still goes through simulator.set_config.
    status, answer = await fleet.call(
        "PUT", "/api/machines/lobby_1/mode", "operator", {"mode": "out_of_order"}
    )
    assert (status, answer["delivery"]) == (200, "applied"), answer
    assert hub.states.get("machine.lobby_1").attributes["mode"] == "out_of_order"


async def test_restock_goes_through_vending_restock(fleet: FleetApi) -> None:
    hub = fleet.hub
    operator = f"user:{fleet.user_ids['operator']}"
    await sell(fleet, "A1")
    await sell(fleet, "B1")
    assert (stock(fleet, "A1"), stock(fleet, "A2"), stock(fleet, "B1")) == ("5", "4", "2")

    status, body = await fleet.call("POST", "/api/machines/demo_kiosk/restock", "viewer", {})
    assert status == 403 and body["error"]["code"] == "forbidden", body
    status, body = await fleet.call("POST", "/api/machines/lobby_1/restock", "viewer", {})
    assert status == 403, body
    assert stock(fleet, "A1") == "5"

    # One slot, spelled as the caller likes: to its par level (B1 has none: its capacity).
    status, result = await fleet.call(
        "POST", "/api/machines/demo_kiosk/restock", "operator", {"slot": "b1"}
    )
    assert status == 200, result
    check(RestockView, "post", 200, result)
    assert (result["machine_id"], result["command"], result["ok"]) == (
        "demo_kiosk",
        "restock",
        True,
    )
    assert (result["result"], result["error"]) == ({"slots": {"B1": 10}}, None)
    assert (stock(fleet, "A1"), stock(fleet, "B1")) == ("5", "10")
    assert hub.states.get("slot.demo_kiosk_b1").context.user_id == operator

    # Every slot: filled to par (the engine's own fill level), none lowered: A1 keeps the 5
    # it has over its par of 4 (the items are in it).
    status, result = await fleet.call("POST", "/api/machines/demo_kiosk/restock", "operator", {})
    assert status == 200, result
    assert result["result"] == {"slots": {"A1": 5, "A2": 4, "B1": 10}}
    assert (stock(fleet, "A1"), stock(fleet, "A2"), stock(fleet, "B1")) == ("5", "4", "10")
    assert hub.data["vending"].engine("demo_kiosk").stock == {"A1": 5, "A2": 4, "B1": 10}
    status, machine = await fleet.call("GET", "/api/machines/demo_kiosk", "viewer")
    assert [slot["stock"] for slot in machine["slots"]] == [5, 4, 10]

    status, body = await fleet.call(
        "POST", "/api/machines/demo_kiosk/restock", "operator", {"slot": "Q7"}
    )
    assert status == 404, body

    # The command route takes restock too; an unknown slot is the machine's refusal.
    status, result = await fleet.call(
        "POST", "/api/machines/demo_kiosk/commands/restock", "operator", {"slot": "A1"}
    )
    assert status == 200, result
    check(CommandView, "post", 200, result)
    assert (result["ok"], result["result"]) == (True, {"slots": {"A1": 5}})
    status, result = await fleet.call(
        "POST", "/api/machines/demo_kiosk/commands/restock", "operator", {"slot": "Z9"}
    )
    assert (status, result["ok"], result["error"]) == (200, False, "no slot 'Z9'")
    # Other commands are not the engine's: a remote vend would dispense without payment.
    status, body = await fleet.call(
        "POST", "/api/machines/demo_kiosk/commands/vend", "operator", {"slot": "A1"}
    )
    assert status == 409 and body["error"]["code"] == "not_supported", body
    assert "other than restock" in body["error"]["message"]
    assert stock(fleet, "A1") == "5"


async def test_slots_and_planograms_change_through_vending_set_slots(fleet: FleetApi) -> None:
    hub = fleet.hub
    engine = hub.data["vending"].engine("demo_kiosk")
    operator = f"user:{fleet.user_ids['operator']}"
    # A technician of this machine operates it (its mode) but does not set its prices.
    kiosk_technician = await fleet.api.add_user(
        fleet.tokens["owner"], "kiosk_technician", "technician", machine_ids=["demo_kiosk"]
    )
    for path, payload in (
        ("/api/machines/demo_kiosk/slots/A1", {"price": 200}),
        ("/api/planograms/demo_kiosk", {"slots": {"A1": {"price": 200}}}),
    ):
        status, body = await fleet.call("PUT", path, "viewer", payload)
        assert status == 403, (path, body)
        status, body, _ = await fleet.api.call("PUT", path, token=kiosk_technician, json=payload)
        assert status == 403 and body["error"]["code"] == "forbidden", (path, body)
    status, answer, _ = await fleet.api.call(
        "PUT", "/api/machines/demo_kiosk/mode", token=kiosk_technician, json={"mode": "normal"}
    )
    assert (status, answer["delivery"]) == (200, "applied"), answer
    assert hub.states.get("slot.demo_kiosk_a1").attributes["price"] == 180

    # An operator sets a price: applied at once, shown, charged at the next sale.
    status, answer = await fleet.call(
        "PUT", "/api/machines/demo_kiosk/slots/a1", "operator", {"price": 200}
    )
    assert status == 200, answer
    check(SlotView, "put", 200, answer)
    assert (answer["delivery"], answer["config_version"]) == ("applied", None)
    assert (answer["slot"]["code"], answer["slot"]["price"], answer["slot"]["product"]) == (
        "A1",
        200,
        "Cola",
    )
    state = hub.states.get("slot.demo_kiosk_a1")
    assert state.attributes["price"] == 200 and state.context.user_id == operator
    assert engine.machine.planogram["A1"].price == 200
    assert (await sell(fleet, "A1"))["price"] == 200

    # Several slots at once; a smaller capacity cuts the stock and the par level.
    status, answer = await fleet.call(
        "PUT",
        "/api/planograms/demo_kiosk",
        "operator",
        {"slots": {"A2": {"product": "Still water", "price": 130}, "B1": {"capacity": 2}}},
    )
    assert status == 200, answer
    check(PlanogramView, "put", 200, answer)
    assert (answer["delivery"], answer["config_version"]) == ("applied", None)
    slots = {slot["code"]: slot for slot in answer["slots"]}
    assert (slots["A1"]["price"], slots["A2"]["product"], slots["A2"]["price"]) == (
        200,
        "Still water",
        130,
    )
    assert (slots["B1"]["capacity"], slots["B1"]["par"], slots["B1"]["stock"]) == (2, 2, 2)
    assert (stock(fleet, "B1"), engine.stock["B1"]) == ("2", 2)

    # The engine adds no slot (that is the YAML block's), and says so; nothing changes.
    before = dict(engine.machine.planogram)
    for path, payload in (
        ("/api/machines/demo_kiosk/slots/c9", {"product": "Tea", "price": 90, "capacity": 4}),
        ("/api/machines/demo_kiosk/slots/ZZ", {"price": 100}),  # no "give its product" hint
        (
            "/api/planograms/demo_kiosk",
            {
                "slots": {
                    "A1": {"price": 1},
                    "Z9": {"product": "Tea", "price": 90, "capacity": 4},
                }
            },
        ),
    ):
        status, body = await fleet.call("PUT", path, "operator", payload)
        assert status == 400, (path, body)
        assert not list(Draft202012Validator(ERROR_SCHEMA).iter_errors(body))
        message = body["error"]["message"]
        assert "has no slot" in message and "vending: block of configuration.yaml" in message
    assert engine.machine.planogram == before
    assert hub.states.get("slot.demo_kiosk_c9") is None
    assert hub.states.get("slot.demo_kiosk_a1").attributes["price"] == 200

    # The simulated machine's slots still change through the API.
    status, answer = await fleet.call(
        "PUT", "/api/machines/lobby_1/slots/A1", "operator", {"price": 210}
    )
    assert (status, answer["slot"]["price"]) == (200, 210), answer
