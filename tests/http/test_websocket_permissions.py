"""Who may call which service over the WebSocket API: the same as over REST.

A technician (operate_machines on lobby_1) restocks, vends, opens the door and sets the mode of
their own machine, but may not change its prices (manage_catalog), as ``PUT
/api/machines/{id}/slots/{code}`` answers 403; an operator may. A viewer calls nothing. A
service that is not in the allow-list (``vendhub.http.service_permissions``) is for owners and
admins only, a new one too. Every service the demo configuration registers has its decision
written out here, so a new one fails ``test_every_service_of_the_demo_is_decided`` until it is
decided.

Real hubs: the fleet of ``fleet_hub.py`` (two simulated machines, alarms, an automation), a vend
engine started from YAML, and the shipped demo configuration.
"""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import voluptuous as vol

from tests.conftest import REPO_ROOT
from vendhub.auth.identity import Identity, IdentityKind
from vendhub.auth.roles import Role
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.const import EVENT_CALL_SERVICE
from vendhub.core.events import Event
from vendhub.core.services import ServiceCall
from vendhub.http.server import get_http
from vendhub.http.websocket import WebSocketSettings, websocket_manager
from vendhub.http.websocket.commands import may_call

from .conftest import Api
from .fleet_hub import FleetApi, running_fleet
from .test_websocket import Client

ROLES = ("operator", "technician", "viewer")


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[FleetApi]:
    """lobby_1 (A1 Cola 150, A2 Crisps 120, stock 5) and kiosk_2; the technician has lobby_1."""
    async with running_fleet(tmp_path, roles=ROLES) as instance:
        yield instance


async def client(fleet: FleetApi, role: str) -> Client:
    return await Client.open(fleet.api, fleet.tokens[role])


async def call(client: Client, domain: str, service: str, **data: Any) -> dict[str, Any]:
    return await client.call(type="call_service", domain=domain, service=service, service_data=data)


def refused(answer: dict[str, Any], message: str | None = None) -> bool:
    """Whether ``answer`` is an ``unauthorized`` error (with ``message``, when given)."""
    error = answer.get("error") or {}
    return error.get("code") == "unauthorized" and (message is None or error["message"] == message)


def price(fleet: FleetApi, code: str = "a1") -> int:
    return int(fleet.hub.states.get(f"slot.lobby_1_{code}").attributes["price"])


def mode(fleet: FleetApi, machine_id: str = "lobby_1") -> str:
    return str(fleet.hub.states.get(f"machine.{machine_id}").attributes["mode"])


def record_calls(fleet: FleetApi) -> list[Event]:
    """Every service call that gets as far as running (``call_service`` events)."""
    calls: list[Event] = []
    fleet.hub.bus.async_listen(EVENT_CALL_SERVICE, calls.append)
    return calls


# ---- prices: manage_catalog ------------------------------------------------------------------


async def test_a_technician_cannot_change_prices_over_the_websocket(fleet: FleetApi) -> None:
    """The QA reproduction: simulator.set_config with a price, on the technician's own
    machine, answered success and the price became 1."""
    tech = await client(fleet, "technician")
    calls = record_calls(fleet)
    for data in (
        {"machine_id": "lobby_1", "slots": {"A1": {"price": 1}}},
        {"machine_id": "lobby_1", "mode": "normal", "slots": {"A1": {"price": 1}}},
        {"machine_id": "lobby_1", "slots": {"A1": {"product": "Water", "capacity": 1}}},
        {"machine_id": "lobby_1", "slots": {"C9": {"product": "Gum", "price": 1, "capacity": 5}}},
        {"machine_id": "lobby_1", "slots": {}},
    ):
        answer = await call(tech, "simulator", "set_config", **data)
        assert refused(answer, "your role may not manage catalog"), (data, answer)
    assert price(fleet) == 150
    state = fleet.hub.states.get("slot.lobby_1_a1")
    assert (state.attributes["product"], state.attributes["capacity"]) == ("Cola", 10)
    assert fleet.hub.states.get("slot.lobby_1_c9") is None
    assert calls == []

    # REST answers the same change the same way.
    status, body = await fleet.call(
        "PUT", "/api/machines/lobby_1/slots/A1", "technician", {"price": 2}
    )
    assert (status, body["error"]["message"]) == (403, "your role may not manage catalog")
    assert price(fleet) == 150
    await tech.close()


async def test_an_operator_changes_prices_over_the_websocket(fleet: FleetApi) -> None:
    operator = await client(fleet, "operator")
    result = await operator.ok(
        type="call_service",
        domain="simulator",
        service="set_config",
        service_data={"machine_id": "lobby_1", "slots": {"A1": {"price": 99}}},
    )
    assert price(fleet) == 99
    user_id = f"user:{fleet.user_ids['operator']}"
    assert result["context"]["user_id"] == user_id
    assert fleet.hub.states.get("slot.lobby_1_a1").context.user_id == user_id
    # Operators hold no manage_hub: what only owners and admins call stays refused.
    for domain, service, data in (
        ("simulator", "set_compressor", {"machine_id": "lobby_1", "enabled": False}),
        ("automation", "reload", {}),
        ("vendhub", "reload", {}),
    ):
        answer = await call(operator, domain, service, **data)
        assert refused(answer, f"your role may not call {domain}.{service} (it needs manage_hub)")
    assert fleet.hub.states.get("automation.restock_reminder").state == "on"
    await operator.close()


# ---- operating a machine: operate_machines, on one's own machines ------------------------------


async def test_a_technician_operates_their_own_machine_over_the_websocket(
    fleet: FleetApi,
) -> None:
    hub = fleet.hub
    technician = f"user:{fleet.user_ids['technician']}"
    tech = await client(fleet, "technician")

    # The mode alone is operating the machine (PUT /api/machines/lobby_1/mode).
    await tech.ok(
        type="call_service",
        domain="simulator",
        service="set_config",
        service_data={"machine_id": "lobby_1", "mode": "service"},
    )
    assert mode(fleet) == "service"
    assert hub.states.get("machine.lobby_1").context.user_id == technician

    # A vend, a restock, the door: the machine's commands.
    vend = await tech.ok(
        type="call_service",
        domain="simulator",
        service="vend",
        service_data={"machine_id": "lobby_1", "slot": "A2"},
    )
    assert vend["response"]["outcome"] == "completed", vend
    assert hub.states.get("slot.lobby_1_a2").state == "4"
    await tech.ok(
        type="call_service",
        domain="simulator",
        service="restock",
        service_data={"machine_id": "lobby_1", "slot": "A2"},
    )
    slot = hub.states.get("slot.lobby_1_a2")
    assert slot.state == "8" and slot.context.user_id == technician
    await tech.ok(
        type="call_service",
        domain="simulator",
        service="set_door",
        service_data={"machine_id": "lobby_1", "open": True},
    )
    assert hub.states.get("binary_sensor.lobby_1_door").state == "on"
    options = await tech.ok(
        type="call_service",
        domain="simulator",
        service="purchase_options",
        service_data={"machine_id": "lobby_1"},
    )
    assert options["response"]["machine_id"] == "lobby_1"

    # Their machine's alarm, by id or by code.
    raised = await hub.services.async_call(
        "alarm", "raise", {"code": "coin_jam", "message": "Jam", "machine_id": "lobby_1"}
    )
    acknowledged = await tech.ok(
        type="call_service",
        domain="alarm",
        service="acknowledge",
        service_data={"alarm_id": raised["id"]},
    )
    assert acknowledged["response"]["acknowledged_by"] == technician
    await tech.ok(
        type="call_service",
        domain="alarm",
        service="clear",
        service_data={"machine_id": "lobby_1", "code": "coin_jam"},
    )
    assert hub.states.get("alarm.lobby_1_coin_jam") is None
    await tech.close()


async def test_a_technician_reaches_no_other_machine(fleet: FleetApi) -> None:
    hub = fleet.hub
    tech = await client(fleet, "technician")
    calls = record_calls(fleet)
    for service, data in (
        ("restock", {"machine_id": "kiosk_2"}),
        ("set_config", {"machine_id": "kiosk_2", "mode": "service"}),
        ("set_door", {"machine_id": "kiosk_2", "open": True}),
    ):
        answer = await call(tech, "simulator", service, **data)
        assert refused(answer, "machine 'kiosk_2' is not one of yours"), (service, answer)
    answer = await call(tech, "simulator", "restock")
    assert refused(answer, "simulator.restock needs machine_id: one of your machines")
    assert hub.states.get("slot.kiosk_2_a1").state == "0"
    assert mode(fleet, "kiosk_2") == "normal"

    # An alarm of kiosk_2, even with lobby_1 slipped in: the service finds it by its id.
    raised = await hub.services.async_call(
        "alarm", "raise", {"code": "coin_jam", "message": "Jam", "machine_id": "kiosk_2"}
    )
    hub_alarm = await hub.services.async_call(
        "alarm", "raise", {"code": "disk_full", "message": "Disk"}
    )
    assert calls[-2:] and [event.data["service"] for event in calls] == ["raise", "raise"]
    calls.clear()
    for service, data in (
        ("acknowledge", {"alarm_id": raised["id"], "machine_id": "lobby_1"}),
        ("acknowledge", {"alarm_id": raised["id"]}),
        ("clear", {"machine_id": "kiosk_2", "code": "coin_jam"}),
        ("acknowledge", {"alarm_id": hub_alarm["id"]}),
        ("clear", {"code": "disk_full"}),
    ):
        answer = await call(tech, "alarm", service, **data)
        assert refused(answer), (service, data, answer)
        assert "within your reach" in answer["error"]["message"], answer
    assert hub.states.get("alarm.kiosk_2_coin_jam").attributes["acknowledged_by"] is None
    assert hub.states.get("alarm.hub_disk_full").state == "raised"
    assert calls == []
    await tech.close()


# ---- refused by default ------------------------------------------------------------------------


async def test_a_technician_is_refused_services_outside_the_allow_list(
    fleet: FleetApi,
) -> None:
    """Services that act on lobby_1 and declare machine_id, which the old rule let through,
    and a new service registered now: refused, not run."""
    hub = fleet.hub
    ran: list[ServiceCall] = []

    def new_service(call: ServiceCall) -> dict[str, Any]:
        ran.append(call)
        return {"ok": True}

    hub.services.async_register(
        "fleet", "wipe_slot", new_service, vol.Schema({vol.Required("machine_id"): str})
    )
    tech = await client(fleet, "technician")
    calls = record_calls(fleet)
    for domain, service, data in (
        ("fleet", "wipe_slot", {"machine_id": "lobby_1"}),
        ("simulator", "set_compressor", {"machine_id": "lobby_1", "enabled": False}),
        ("alarm", "raise", {"code": "fake", "message": "Fake", "machine_id": "lobby_1"}),
        ("alarm", "list", {}),
        ("vendhub", "reload", {}),
    ):
        answer = await call(tech, domain, service, **data)
        assert refused(
            answer, f"your role may not call {domain}.{service} (it needs manage_hub)"
        ), (domain, service, answer)
    # As over REST: automations are managed with manage_automations (operators and up).
    for domain, service, data in (
        ("automation", "turn_off", {"id": "restock_reminder"}),
        ("automation", "trigger", {"id": "restock_reminder", "machine_id": "lobby_1"}),
    ):
        answer = await call(tech, domain, service, **data)
        assert refused(answer, "your role may not manage automations"), (domain, service, answer)
    assert ran == [] and calls == []
    assert hub.states.get("alarm.lobby_1_fake") is None
    assert hub.states.get("automation.restock_reminder").state == "on"
    await tech.close()

    # Owners (manage_hub) still call anything, the new service too.
    owner = await client(fleet, "owner")
    result = await owner.ok(
        type="call_service",
        domain="fleet",
        service="wipe_slot",
        service_data={"machine_id": "lobby_1"},
    )
    assert result["response"] == {"ok": True} and len(ran) == 1
    await owner.close()


async def test_a_viewer_calls_no_service(fleet: FleetApi) -> None:
    viewer = await client(fleet, "viewer")
    calls = record_calls(fleet)
    registered = fleet.hub.services.async_services()
    assert len(registered["simulator"]) > 10
    tried = 0
    for domain, services in registered.items():
        for service in services:
            answer = await call(viewer, domain, service, machine_id="lobby_1", mode="service")
            assert refused(answer, "your role may not call services"), (domain, service, answer)
            tried += 1
    answer = await call(viewer, "simulator", "nothing_here", machine_id="lobby_1")
    assert refused(answer, "your role may not call services")
    assert tried > 20 and calls == []
    assert price(fleet) == 150 and mode(fleet) == "normal"
    await viewer.close()


# ---- the vend engine -------------------------------------------------------------------------

VENDING = """
vendhub:
  name: WebSocket vend test
  currency: EUR
http:
  server_host: 127.0.0.1
  server_port: 0
recorder:
  db_url: sqlite:///{db}
  commit_interval: 0.1
vending:
  machines:
    cafe_1: &machine
      name: Cafe
      planogram:
        A1: {{product: Cola, price: 150, capacity: 10, par: 4, stock: 2}}
      dispenser: {{platform: simulator, dispense_time: 0.05}}
      # Approves after 30 s, and the engine waits up to 60 s for it.
      payments: [{{platform: instant, approval_delay: 30}}]
      timeouts: {{payment: 60, dispense: 5, capture: 2, void: 2}}
    cafe_2: *machine
    cafe_3: *machine
"""


@pytest.fixture
async def vend_api(tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    """A vend engine with cafe_1, cafe_2 and cafe_3; a technician with cafe_1 and cafe_3
    (their token)."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "configuration.yaml").write_text(
        textwrap.dedent(VENDING.format(db=tmp_path / "vendhub.db"))
    )
    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == [], prepared.issues
    hub, report = await async_start_hub(prepared)
    assert report.failed == {}, report.failed
    api = Api(hub, get_http(hub).url, aiohttp.ClientSession())
    try:
        owner = (await api.onboard())["access_token"]
        yield api, await api.add_user(owner, "tess", "technician", machine_ids=["cafe_1", "cafe_3"])
    finally:
        await api.session.close()
        await hub.async_stop()


async def test_a_technician_drives_their_vend_engine_machine(
    vend_api: tuple[Api, str],
) -> None:
    api, token = vend_api
    tech = await Client.open(api, token)
    stock = await tech.ok(
        type="call_service",
        domain="vending",
        service="restock",
        service_data={"machine_id": "cafe_1", "slots": {"A1": 9}},
    )
    assert stock["response"]["machine_id"] == "cafe_1"
    assert api.hub.states.get("slot.cafe_1_a1").state == "9"
    await tech.ok(
        type="call_service",
        domain="vending",
        service="set_mode",
        service_data={"machine_id": "cafe_1", "mode": "normal"},
    )
    # The machine's config service: its mode is operating it, its prices are the catalog's.
    await tech.ok(
        type="call_service",
        domain="vending",
        service="set_slots",
        service_data={"machine_id": "cafe_1", "mode": "normal"},
    )
    for data in (
        {"machine_id": "cafe_1", "slots": {"A1": {"price": 1}}},
        {"machine_id": "cafe_1", "mode": "normal", "slots": {"A1": {"product": "Gum"}}},
    ):
        answer = await call(tech, "vending", "set_slots", **data)
        assert refused(answer, "your role may not manage catalog"), (data, answer)
    assert api.hub.states.get("slot.cafe_1_a1").attributes["price"] == 150
    started = await tech.ok(
        type="call_service",
        domain="vending",
        service="select",
        service_data={"machine_id": "cafe_1", "slot": "A1", "method": "card", "wait": False},
    )
    session_id = started["response"]["session_id"]
    await tech.ok(
        type="call_service",
        domain="vending",
        service="session",
        service_data={"machine_id": "cafe_1", "session_id": session_id},
    )
    cancelled = await tech.ok(
        type="call_service",
        domain="vending",
        service="cancel",
        service_data={"machine_id": "cafe_1", "session_id": session_id},
    )
    assert cancelled["response"]["session_id"] == session_id

    for service, data in (
        ("restock", {"machine_id": "cafe_2", "slots": {"A1": 0}}),
        ("set_mode", {"machine_id": "cafe_2", "mode": "out_of_order"}),
        ("select", {"machine_id": "cafe_2", "slot": "A1", "method": "card", "wait": False}),
    ):
        answer = await call(tech, "vending", service, **data)
        assert refused(answer, "machine 'cafe_2' is not one of yours"), (service, answer)
    assert api.hub.states.get("slot.cafe_2_a1").state == "2"
    await tech.close()


async def test_a_call_that_outlasts_the_connections_limit_names_it(
    vend_api: tuple[Api, str],
) -> None:
    """A card payment that takes 30 s, with a call limit of 0.3 s: the answer names the limit.
    (A timeout inside a service: test_websocket.py, test_a_timeout_inside_a_service_...)"""
    api, token = vend_api
    websocket_manager(api.hub).settings = WebSocketSettings(call_timeout=0.3)
    tech = await Client.open(api, token)
    answer = await call(tech, "vending", "select", machine_id="cafe_3", slot="A1", method="card")
    assert answer["error"] == {
        "code": "timeout",
        "message": "vending.select did not finish within 0.3 s",
    }, answer
    await tech.close()


# ---- every service of the demo ---------------------------------------------------------------

TECHNICIAN = Identity(
    IdentityKind.user, "tess", Role.technician, user_id="t", machine_ids=frozenset({"lobby_1"})
)
OPERATOR = Identity(IdentityKind.user, "otto", Role.operator, user_id="o")
VIEWER = Identity(IdentityKind.user, "vic", Role.viewer, user_id="v")
ADMIN = Identity(IdentityKind.user, "ada", Role.admin, user_id="a")

MODE = {"mode": "service"}
PRICE = {"slots": {"A1": {"price": 1}}}
DEMO_DECISIONS: dict[str, str] = {
    # The least role that may call it on lobby_1: technician (operate_machines on their
    # machines), operator (manage_catalog), admin (manage_hub: everything else).
    "alarm.acknowledge": "technician",
    "alarm.clear": "technician",
    "alarm.list": "admin",
    "alarm.raise": "admin",
    "anomaly.report_cash_count": "admin",
    "anomaly.service_login": "admin",
    "automation.reload": "admin",
    "automation.traces": "admin",
    "automation.trigger": "operator",
    "automation.turn_off": "operator",
    "automation.turn_on": "operator",
    "mqtt.adopt": "operator",
    "mqtt.command": "technician",
    "mqtt.pending": "admin",
    "mqtt.publish_config mode": "technician",
    "mqtt.publish_config slots": "operator",
    "mqtt.remove": "operator",
    "notify.cancel_escalation": "admin",
    "notify.clear_dead_letters": "admin",
    "notify.dead_letters": "admin",
    "notify.resend_dead_letters": "admin",
    "notify.send": "admin",
    "recorder.audit_log": "admin",
    "recorder.history": "admin",
    "recorder.payments": "admin",
    "recorder.purge": "admin",
    "recorder.rejected_money_events": "admin",
    "recorder.resubmit_rejected_money_event": "admin",
    "recorder.sales": "admin",
    "recorder.sensor_statistics": "admin",
    "recorder.transactions": "admin",
    "simulator.lock_slots": "technician",
    "simulator.purchase_cancel": "technician",
    "simulator.purchase_insert_cash": "technician",
    "simulator.purchase_options": "technician",
    "simulator.purchase_pay": "technician",
    "simulator.purchase_start": "technician",
    "simulator.purchase_status": "technician",
    "simulator.restock": "technician",
    "simulator.set_compressor": "admin",
    "simulator.set_config mode": "technician",
    "simulator.set_config slots": "operator",
    "simulator.set_door": "technician",
    "simulator.vend": "technician",
    "vending.cancel": "technician",
    "vending.restock": "technician",
    "vending.select": "technician",
    "vending.session": "technician",
    "vending.set_mode": "technician",
    "vending.set_slots mode": "technician",
    "vending.set_slots slots": "operator",
    "vendhub.reload": "admin",
}


def least_role(hub: Any, domain: str, service: str, data: dict[str, Any]) -> str:
    """Asked as the WebSocket API asks it (``commands.may_call``, of a connection)."""
    connection: Any = SimpleNamespace(hub=hub)
    assert may_call(VIEWER, connection, domain, service, data) is not None
    for name, identity in (("technician", TECHNICIAN), ("operator", OPERATOR), ("admin", ADMIN)):
        if may_call(identity, connection, domain, service, data) is None:
            if name == "technician":  # and only on their own machines
                other = {**data, "machine_id": "gym_drinks"}
                assert may_call(identity, connection, domain, service, other) is not None
            return name
    raise AssertionError(f"nobody may call {domain}.{service}")


async def test_every_service_of_the_demo_is_decided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(
        REPO_ROOT / "config", config_dir, ignore=shutil.ignore_patterns(".storage", "*.db*")
    )
    monkeypatch.setenv("VENDHUB_HTTP_PORT", "0")
    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    try:
        assert report.failed == {}
        decided: dict[str, str] = {}
        for domain, services in hub.services.async_services().items():
            for service in services:
                name = f"{domain}.{service}"
                data: dict[str, Any] = {"machine_id": "lobby_1", "code": "coin_jam"}
                if service in ("set_config", "publish_config", "set_slots"):
                    data = {"machine_id": "lobby_1"}
                    decided[f"{name} mode"] = least_role(hub, domain, service, {**data, **MODE})
                    decided[f"{name} slots"] = least_role(hub, domain, service, {**data, **PRICE})
                else:
                    decided[name] = least_role(hub, domain, service, data)
        assert decided == DEMO_DECISIONS
    finally:
        await hub.async_stop()
