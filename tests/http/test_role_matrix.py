"""The role matrix: who may read and change what, on which machines, as whom.

A viewer reads but cannot change prices; an operator can, and the change carries their
context; a technician assigned to lobby_1 sees and acts on lobby_1 only (kiosk_2 is "not
found" to them); a machine's token reaches none of these user APIs; the escape hatch
``/api/services`` is for owners and admins.
"""

from __future__ import annotations

from pathlib import Path

from vendhub.http.api import alarms, automations, catalog, machines, services
from vendhub.http.server import get_http
from vendhub.machine.credentials import CredentialStore

from .fleet_hub import FleetApi, running_fleet

ALL_ROLES = ("admin", "operator", "technician", "viewer")


def price(fleet: FleetApi, entity_id: str) -> int:
    return int(fleet.hub.states.get(entity_id).attributes["price"])


async def test_the_role_matrix(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, roles=ALL_ROLES) as fleet:
        hub = fleet.hub
        lobby_alarm = (
            await hub.services.async_call(
                "alarm", "raise", {"code": "coin_jam", "message": "Jam", "machine_id": "lobby_1"}
            )
        )["id"]
        kiosk_alarm = (
            await hub.services.async_call(
                "alarm", "raise", {"code": "coin_jam", "message": "Jam", "machine_id": "kiosk_2"}
            )
        )["id"]

        await viewer_reads_but_changes_nothing(fleet, lobby_alarm)
        await operator_changes_prices_as_themselves(fleet)
        await technician_reaches_lobby_1_only(fleet, lobby_alarm, kiosk_alarm)
        await only_owners_and_admins_call_any_service(fleet)
        await a_machine_token_calls_no_user_api(fleet)


async def viewer_reads_but_changes_nothing(fleet: FleetApi, alarm_id: str) -> None:
    for path in (
        "/api/machines",
        "/api/machines/lobby_1",
        "/api/machines/kiosk_2/slots/B1",
        "/api/machines/pending",
        "/api/products",
        "/api/planograms/kiosk_2",
        "/api/alarms",
        "/api/automations",
        "/api/services",
    ):
        status, body = await fleet.call("GET", path, "viewer")
        assert status == 200, (path, body)
    refused = [
        ("PUT", "/api/machines/lobby_1/slots/A1", {"price": 1}),
        ("PUT", "/api/planograms/lobby_1", {"slots": {"A1": {"price": 1}}}),
        ("PUT", "/api/machines/lobby_1/mode", {"mode": "free_vend"}),
        ("POST", "/api/machines/lobby_1/commands/ping", {}),
        ("POST", "/api/machines/lobby_1/restock", {}),
        ("POST", "/api/machines/lobby_1/adopt", {}),
        ("DELETE", "/api/machines/lobby_1", None),
        ("POST", f"/api/alarms/{alarm_id}/acknowledge", None),
        ("POST", f"/api/alarms/{alarm_id}/clear", None),
        ("POST", "/api/automations/restock_reminder/disable", None),
        ("POST", "/api/automations/restock_reminder/trigger", {}),
        ("GET", "/api/automations/restock_reminder/traces", None),  # manage_hub
        ("POST", "/api/services/simulator/restock", {"machine_id": "lobby_1"}),
    ]
    for method, path, json in refused:
        status, body = await fleet.call(method, path, "viewer", json)
        assert status == 403 and body["error"]["code"] == "forbidden", (method, path, body)
    assert price(fleet, "slot.lobby_1_a1") == 150
    assert fleet.hub.states.get("machine.lobby_1").attributes["mode"] == "normal"


async def operator_changes_prices_as_themselves(fleet: FleetApi) -> None:
    status, answer = await fleet.call(
        "PUT", "/api/machines/lobby_1/slots/A1", "operator", {"price": 195}
    )
    assert status == 200, answer
    assert price(fleet, "slot.lobby_1_a1") == 195
    state = fleet.hub.states.get("slot.lobby_1_a1")
    assert state.context.user_id == f"user:{fleet.user_ids['operator']}"
    # Operators do not call arbitrary services.
    status, _ = await fleet.call(
        "POST", "/api/services/simulator/restock", "operator", {"machine_id": "lobby_1"}
    )
    assert status == 403


async def technician_reaches_lobby_1_only(
    fleet: FleetApi, lobby_alarm: str, kiosk_alarm: str
) -> None:
    technician = f"user:{fleet.user_ids['technician']}"
    status, seen = await fleet.call("GET", "/api/machines", "technician")
    assert status == 200 and [m["id"] for m in seen] == ["lobby_1"]
    status, seen = await fleet.call("GET", "/api/alarms", "technician")
    assert [a["id"] for a in seen] == [lobby_alarm]
    status, seen = await fleet.call("GET", "/api/products", "technician")
    assert {m for p in seen for m in p["machines"]} == {"lobby_1"}
    status, seen = await fleet.call("GET", "/api/states?machine_id=lobby_1", "technician")
    assert status == 200 and seen and "slot.lobby_1_a1" in {s["entity_id"] for s in seen}
    status, seen = await fleet.call("GET", "/api/states?machine_id=kiosk_2", "technician")
    assert status == 404 or seen == [], seen
    status, seen = await fleet.call("GET", "/api/states", "technician")
    assert not any("kiosk_2" in s["entity_id"] for s in seen)

    out_of_reach = [
        ("GET", "/api/machines/kiosk_2", None),
        ("GET", "/api/machines/kiosk_2/slots/B1", None),
        ("GET", "/api/planograms/kiosk_2", None),
        ("POST", "/api/machines/kiosk_2/commands/ping", {}),
        ("POST", "/api/machines/kiosk_2/restock", {}),
        ("PUT", "/api/machines/kiosk_2/mode", {"mode": "service"}),
        ("POST", f"/api/alarms/{kiosk_alarm}/acknowledge", None),
        ("POST", f"/api/alarms/{kiosk_alarm}/clear", None),
    ]
    for method, path, json in out_of_reach:
        status, body = await fleet.call(method, path, "technician", json)
        assert status == 404 and body["error"]["code"] == "not_found", (method, path, body)
    assert fleet.hub.states.get("machine.lobby_1").attributes["mode"] == "normal"
    assert fleet.hub.states.get("slot.kiosk_2_a1").state == "0"  # not restocked

    # Their own machine: commands, restock, mode, alarms; but not its prices.
    status, result = await fleet.call(
        "POST", "/api/machines/lobby_1/commands/set_door", "technician", {"open": True}
    )
    assert (status, result["ok"]) == (200, True)
    assert fleet.hub.states.get("binary_sensor.lobby_1_door").context.user_id == technician
    await fleet.hub.services.async_call(
        "simulator", "vend", {"machine_id": "lobby_1", "slot": "A2"}
    )
    status, result = await fleet.call("POST", "/api/machines/lobby_1/restock", "technician", {})
    assert (status, result["ok"]) == (200, True)
    slot = fleet.hub.states.get("slot.lobby_1_a2")
    assert slot.state == "8" and slot.context.user_id == technician
    status, _ = await fleet.call(
        "PUT", "/api/machines/lobby_1/mode", "technician", {"mode": "service"}
    )
    assert status == 200
    status, alarm = await fleet.call("POST", f"/api/alarms/{lobby_alarm}/acknowledge", "technician")
    assert (status, alarm["acknowledged_by"]) == (200, technician)
    status, _ = await fleet.call(
        "PUT", "/api/machines/lobby_1/slots/A1", "technician", {"price": 1}
    )
    assert status == 403
    assert price(fleet, "slot.lobby_1_a1") == 195


async def only_owners_and_admins_call_any_service(fleet: FleetApi) -> None:
    admin = f"user:{fleet.user_ids['admin']}"
    status, answer = await fleet.call(
        "POST", "/api/services/simulator/set_door", "admin", {"machine_id": "kiosk_2", "open": True}
    )
    assert status == 200, answer
    assert answer["result"] == {"machine_id": "kiosk_2", "door": "open"}
    assert fleet.hub.states.get("binary_sensor.kiosk_2_door").context.user_id == admin
    status, body = await fleet.call("POST", "/api/services/simulator/nope", "owner", {})
    assert status == 404 and "known services in 'simulator'" in body["error"]["message"]
    status, body = await fleet.call(
        "POST", "/api/services/simulator/set_door", "owner", {"machine_id": "kiosk_2"}
    )
    assert status == 400 and "open" in body["error"]["message"]
    status, listing = await fleet.call("GET", "/api/services", "viewer")
    simulator = next(item for item in listing if item["domain"] == "simulator")
    assert "set_config" in {service["service"] for service in simulator["services"]}


async def a_machine_token_calls_no_user_api(fleet: FleetApi) -> None:
    _, password = await CredentialStore(fleet.hub).async_add_machine("lobby_1")
    status, grant, _ = await fleet.api.call(
        "POST",
        "/api/auth/login",
        json={"grant_type": "machine", "machine_id": "lobby_1", "password": password},
    )
    assert status == 200, grant
    token = grant["access_token"]
    modules = (machines, catalog, alarms, automations, services)
    mine = {view.url for module in modules for view in module.VIEWS}
    fill = {
        "{machine_id}": "lobby_1",
        "{code}": "A1",
        "{command}": "ping",
        "{alarm_id}": "x",
        "{automation_id}": "restock_reminder",
        "{domain}": "simulator",
        "{service}": "restock",
    }
    tried = 0
    for route in get_http(fleet.hub).router.routes:
        if route.url not in mine:
            continue
        url = route.url
        for placeholder, value in fill.items():
            url = url.replace(placeholder, value)
        for method in route.operations:
            status, body, _ = await fleet.api.call(method.upper(), url, token=token, json={})
            assert status == 403, (method, url, body)
            assert body["error"]["message"] == "machine credentials cannot call this API"
            tried += 1
    assert tried == sum(len(view.operations()) for module in modules for view in module.VIEWS)
    assert tried >= 24
