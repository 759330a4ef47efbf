"""A QR vend end to end: the real vend engine, the serial board on a pty pair, the qr_gateway
provider against the emulated YooKassa, and its notifications through the hub's HTTP server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.http.conftest import Api
from tests.integrations.serial_board.conftest import (  # noqa: F401 - fixtures, found by name
    dispenser_options,
    emulator,
    wait_until,
)
from tests.serial_pty import PtyPair, serial_pair  # noqa: F401 - a fixture, found by name
from vendhub.vending.engine import MachineSetup, Timeouts, VendEngine
from vendhub.vending.journal import VendJournal
from vendhub.vending.planogram import SlotPlan
from vendhub.vending.session import VendOutcome
from vendhub_integrations.qr_gateway import QrGatewayProvider
from vendhub_integrations.serial_board.board import SerialBoardDispenser
from vendhub_integrations.serial_board.emulator import Fault, SerialBoardEmulator

from .conftest import MACHINE
from .yookassa_server import YooKassaServer

MakeProvider = Callable[..., Awaitable[QrGatewayProvider]]


async def test_a_qr_vend_is_captured_and_a_jammed_one_is_cancelled_at_the_gateway(
    api: Api,
    tmp_path: Path,
    serial_pair: PtyPair,  # noqa: F811
    emulator: SerialBoardEmulator,  # noqa: F811
    gateway: YooKassaServer,
    make_provider: MakeProvider,
) -> None:
    hub = api.hub
    provider = await make_provider()
    dispenser = SerialBoardDispenser(hub, MACHINE, dispenser_options(serial_pair.host))
    journal = VendJournal(tmp_path / ".storage" / "vending.journal.db")
    engine = VendEngine(
        hub,
        MachineSetup(
            machine_id=MACHINE,
            currency="RUB",
            planogram={"A1": SlotPlan("Cola", 150, 10)},
            stock={"A1": 3},
            dispenser=dispenser,
            providers=[provider],
            timeouts=Timeouts(payment=10, dispense=10, capture=5, void=5),
        ),
        journal,
    )
    await engine.async_start()
    try:
        await wait_until(lambda: dispenser.online)

        sold = await engine.async_select(slot="A1", method="qr")
        await wait_until(lambda: len(gateway.payments) == 1)
        payment = next(iter(gateway.payments.values()))
        await gateway.pay(payment["id"])
        final = await engine.async_wait(sold.id, timeout=15)
        assert final.outcome is VendOutcome.completed
        assert final.authorization is not None
        assert final.authorization.reference == payment["id"]
        assert payment["status"] == "succeeded"
        assert engine.stock["A1"] == 2

        emulator.inject(Fault.jam, selection=1)  # A1 is selection 1
        jammed = await engine.async_select(slot="A1", method="qr")
        await wait_until(lambda: len(gateway.payments) == 2)
        second = next(p for p in gateway.payments.values() if p["id"] != payment["id"])
        await gateway.pay(second["id"])
        final = await engine.async_wait(jammed.id, timeout=15)
        assert final.outcome is VendOutcome.dispense_failed
        assert second["status"] == "canceled"
        assert second["cancellation_details"]["party"] == "merchant"
        assert [c.path for c in gateway.requests("POST", "/capture")] == [
            f"/v3/payments/{payment['id']}/capture"
        ]
        assert engine.stock["A1"] == 2
    finally:
        await engine.async_stop()
        await journal.async_close()
        await dispenser.async_stop()
