"""The ``vending`` integration in a hub started from a configuration folder: the YAML block,
entities, services, plugin boards and providers, errors that name file and line."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest

from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.context import Context
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub
from vendhub.vending.session import VendOutcome, VendRefused

ACME_BOARD = '''
"""A third-party dispenser board plugin (for the tests)."""
from typing import Any, ClassVar
import voluptuous as vol
from vendhub.plugins.hookspecs import hookimpl
from vendhub.vending.dispenser import (
    Dispenser, DispenseOutcome, DispenseResult, DispenserStatus,
)


class AcmeBoard(Dispenser):
    platform: ClassVar[str] = "acme_board"
    OPTIONS: ClassVar[dict[Any, Any]] = {vol.Required("port"): vol.All(int, vol.Range(1, 9))}

    async def async_dispense(self, slot: str, vend_id: str) -> DispenseResult:
        return DispenseResult(DispenseOutcome.dispensed, slot, drop_confirmed=True,
                              detail=f"acme port {self.options['port']}")

    async def async_status(self) -> DispenserStatus:
        return DispenserStatus(online=True)


@hookimpl
def vendhub_dispenser(platform: str):
    return AcmeBoard if platform == "acme_board" else None


@hookimpl
def vendhub_payment_provider(platform: str):
    raise RuntimeError("this plugin breaks when asked for providers")
'''

CONFIGURATION = """\
vendhub:
  name: Vending test
  currency: EUR
alarm:
acme_board:
vending:
  machines:
    lobby_1:
      name: Lobby
      planogram:
        A1: {product: Cola, price: 150, capacity: 10, par: 8, stock: 2}
        A2: {product: Water, price: 100, capacity: 10}
      dispenser:
        platform: simulator
        dispense_time: 0
        jam_slots: [A2]
      payments:
        - platform: instant
          decline_tokens: [bad-card]
        - platform: instant_cash
          insert: 200
      timeouts:
        payment: 5s
        multi_vend: 0.2
    plugin_board:
      currency: USD
      planogram:
        C1: {product: Gum, price: 75, capacity: 5, stock: 5}
      dispenser:
        platform: acme_board
        port: 3
      payments:
        - platform: instant
    broken_board:
      planogram:
        C1: {product: Gum, price: 75, capacity: 5}
      dispenser:
        platform: acme_board
        port: 42
"""


def write_folder(config_dir: Path, configuration: str) -> None:
    (config_dir / "configuration.yaml").write_text(textwrap.dedent(configuration))
    plugin = config_dir / "custom_integrations" / "acme_board"
    plugin.mkdir(parents=True)
    (plugin / "manifest.json").write_text(
        json.dumps(
            {"domain": "acme_board", "name": "Acme", "version": "1.0.0", "iot_class": "local_push"}
        )
    )
    (plugin / "__init__.py").write_text(ACME_BOARD)


@pytest.fixture
async def running(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    write_folder(tmp_path, CONFIGURATION)
    prepared = prepare(tmp_path)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    assert report.failed == {}
    yield hub
    if not hub.is_stopping:
        await hub.async_stop()


async def test_machines_come_up_with_entities(running: Hub, caplog) -> None:
    hub = running
    slot = hub.states.get("slot.lobby_1_a1")
    assert slot is not None and slot.state == "2"
    assert slot.attributes["product"] == "Cola"
    assert slot.attributes["price"] == 150
    assert slot.attributes["capacity"] == 10
    assert slot.attributes["currency"] == "EUR"
    assert hub.states.get("slot.lobby_1_a2").state == "10"  # no stock, no par: full
    machine = hub.states.get("machine.lobby_1")
    assert machine.state == "online"  # as every machine's; the mode is an attribute
    assert machine.attributes["mode"] == "normal"
    assert machine.attributes["sales_today"] == 0
    assert machine.attributes["payment_methods"] == ["card", "cash", "mobile_wallet", "nfc", "qr"]
    assert hub.states.get("slot.plugin_board_c1").attributes["currency"] == "USD"
    # The broken plugin entry names its file, line and key; the other machines run on.
    runtime = hub.data["vending"]
    assert set(runtime.machines) == {"lobby_1", "plugin_board"}
    assert "configuration.yaml:39" in runtime.broken["broken_board"]
    assert "port" in runtime.broken["broken_board"]
    logged = "\n".join(record.getMessage() for record in caplog.get_records("setup"))
    assert "configuration.yaml:39" in logged and "broken_board" in logged


async def test_select_service_sells_and_updates_the_slot(running: Hub) -> None:
    hub = running
    caller = Context(user_id="user:kiosk")
    result = await hub.services.async_call(
        "vending",
        "select",
        {"machine_id": "lobby_1", "slot": "A1", "method": "card"},
        context=caller,
    )
    assert result["outcome"] == "completed" and result["state"] == "completed"
    assert result["stock_after"] == 1
    slot = hub.states.get("slot.lobby_1_a1")
    assert slot.state == "1"
    assert slot.context.parent_id == result["context_id"]
    machine = hub.states.get("machine.lobby_1")
    assert (machine.attributes["sales_today"], machine.attributes["revenue_today"]) == (1, 150)

    plugin = await hub.services.async_call(
        "vending", "select", {"machine_id": "plugin_board", "slot": "C1", "method": "card"}
    )
    assert plugin["outcome"] == "completed" and plugin["currency"] == "USD"
    assert hub.states.get("slot.plugin_board_c1").state == "4"


async def test_select_service_failures(running: Hub) -> None:
    hub = running
    declined = await hub.services.async_call(
        "vending",
        "select",
        {"machine_id": "lobby_1", "slot": "A1", "method": "card", "token": "bad-card"},
    )
    assert declined["outcome"] == "declined"
    jammed = await hub.services.async_call(
        "vending", "select", {"machine_id": "lobby_1", "slot": "A2", "method": "card"}
    )
    assert jammed["outcome"] == "dispense_failed" and jammed["reason"] == "jammed"
    assert hub.states.get("slot.lobby_1_a2").state == "10"
    assert hub.states.get("alarm.lobby_1_vend_dispense_failed").state == "raised"
    with pytest.raises(VendRefused) as refused:
        await hub.services.async_call(
            "vending", "select", {"machine_id": "lobby_1", "slot": "Q7", "method": "card"}
        )
    assert refused.value.code is VendOutcome.unknown_slot
    with pytest.raises(InvalidServiceData, match="no local vending machine 'nowhere'"):
        await hub.services.async_call(
            "vending", "select", {"machine_id": "nowhere", "slot": "A1", "method": "card"}
        )
    with pytest.raises(InvalidServiceData, match="failed to set up"):
        await hub.services.async_call(
            "vending", "select", {"machine_id": "broken_board", "slot": "C1", "method": "card"}
        )


async def test_cancel_mode_restock_and_session_services(running: Hub) -> None:
    hub = running
    engine = hub.data["vending"].engine("lobby_1")
    engine.machine.providers[0].approval_delay = 10
    started = await hub.services.async_call(
        "vending",
        "select",
        {"machine_id": "lobby_1", "slot": "A1", "method": "card", "wait": False},
    )
    assert started["state"] == "authorizing"
    seen = await hub.services.async_call(
        "vending", "session", {"machine_id": "lobby_1", "session_id": started["session_id"]}
    )
    assert seen["session_id"] == started["session_id"]
    cancelled = await hub.services.async_call(
        "vending", "cancel", {"machine_id": "lobby_1", "session_id": started["session_id"]}
    )
    assert cancelled["outcome"] == "cancelled"

    # A wait shorter than the session: the latest snapshot, and the session goes on.
    waited = await hub.services.async_call(
        "vending",
        "select",
        {"machine_id": "lobby_1", "slot": "A1", "method": "card", "timeout": 0.2},
    )
    assert waited["state"] == "authorizing" and waited["outcome"] is None
    assert engine.active_session is not None
    cancelled = await hub.services.async_call(
        "vending", "cancel", {"machine_id": "lobby_1", "session_id": waited["session_id"]}
    )
    assert cancelled["outcome"] == "cancelled"

    changed = await hub.services.async_call(
        "vending", "set_mode", {"machine_id": "lobby_1", "mode": "out_of_order"}
    )
    assert changed == {"machine_id": "lobby_1", "mode": "out_of_order"}
    assert hub.states.get("machine.lobby_1").attributes["mode"] == "out_of_order"
    with pytest.raises(VendRefused) as refused:
        await hub.services.async_call(
            "vending", "select", {"machine_id": "lobby_1", "slot": "A1", "method": "card"}
        )
    assert refused.value.code is VendOutcome.out_of_order
    await hub.services.async_call(
        "vending", "set_mode", {"machine_id": "lobby_1", "mode": "free_vend"}
    )
    free = await hub.services.async_call(
        "vending", "select", {"machine_id": "lobby_1", "slot": "A1", "method": "card"}
    )
    assert free["outcome"] == "completed" and free["free_vend"] is True

    refilled = []
    hub.bus.async_listen("stock_refilled", refilled.append)
    restocked = await hub.services.async_call(
        "vending", "restock", {"machine_id": "lobby_1", "slots": {"A1": 10}}
    )
    assert restocked["slots"]["A1"] == {"product": "Cola", "added": 9, "stock": 10}
    assert hub.states.get("slot.lobby_1_a1").state == "10"
    assert refilled[0].data["slots"] == restocked["slots"]
    with pytest.raises(InvalidServiceData, match="capacity 10"):
        await hub.services.async_call(
            "vending", "restock", {"machine_id": "lobby_1", "slots": {"A1": 11}}
        )


async def test_cash_credit_pays_two_products(running: Hub) -> None:
    hub = running
    first = await hub.services.async_call(
        "vending", "select", {"machine_id": "lobby_1", "slot": "A2", "method": "cash"}
    )
    assert first["outcome"] == "dispense_failed"  # A2 jams: the inserted 200 come back
    assert first["change"] == 200
    await hub.services.async_call(
        "vending", "restock", {"machine_id": "lobby_1", "slots": {"A1": 5}}
    )
    second = await hub.services.async_call(
        "vending", "select", {"machine_id": "lobby_1", "slot": "A1", "method": "cash"}
    )
    assert second["outcome"] == "completed" and second["credit_left"] == 50


async def test_stopping_the_hub_unloads_vending(running: Hub) -> None:
    hub = running
    runtime = hub.data["vending"]
    await hub.async_stop()
    assert "vending" not in hub.data
    assert not runtime.journal.is_open
    assert not hub.services.has_service("vending", "select")


def test_config_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text(
        textwrap.dedent(
            """\
            vending:
              machines:
                lobby_1:
                  mode: sleeping
                  planogram:
                    A1: {product: Cola, price: 1.5, capacity: 10}
                    A2: {product: Water, price: 100, capacity: 10, stock: 12}
                  dispenser:
                    platform: simulater
                  payments:
                    - platform: instant
                      approval_delay: -1
            """
        )
    )
    prepared = prepare(tmp_path)
    problems = [str(issue) for issue in prepared.issues]
    text = "\n".join(problems)
    assert "configuration.yaml:4" in text and "sleeping" in text
    assert "configuration.yaml:6" in text and "minor units" in text
    assert "stock 12 is more than the slot's capacity 10" in text
    assert "configuration.yaml:9" in text and "did you mean 'simulator'" in text
    assert "configuration.yaml:12" in text and "approval_delay" in text
