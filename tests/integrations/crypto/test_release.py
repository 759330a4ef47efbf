"""An invoice whose authorize was cut off by a restart: found at the emulated BTCPay Server by
its ``orderId`` and invalidated, refunded or followed; and the vend engine doing it when it
resolves its journal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.http.conftest import Api
from tests.vending.authorizing import eventually, journal_cut_off_while_authorizing
from vendhub.vending.engine import MachineSetup, Timeouts, VendEngine
from vendhub.vending.journal import VendJournal, read_journal
from vendhub.vending.payment import PaymentMethod
from vendhub.vending.planogram import SlotPlan
from vendhub.vending.session import VendOutcome
from vendhub_integrations.crypto import CryptoProvider
from vendhub_integrations.vending.simulator_board import SimulatorDispenser

from .btcpay_server import BTCPayServer
from .conftest import MACHINE, PRICE

MakeProvider = Callable[..., Awaitable[CryptoProvider]]


async def lost_invoice(
    provider: CryptoProvider, btcpay: BTCPayServer, session_id: str
) -> dict[str, Any]:
    """The invoice an authorize of ``session_id`` made (as the provider makes it) before the
    hub died; the server's own record of it."""
    answer = await provider.client.async_create_invoice(
        {
            "amount": "2.50",
            "currency": "EUR",
            "metadata": {
                "orderId": session_id,
                "itemCode": "A1",
                "itemDesc": "Juice 0.5",
                "machineId": MACHINE,
            },
            "checkout": {"expirationMinutes": 15, "speedPolicy": "HighSpeed"},
        }
    )
    return btcpay.invoices[answer["id"]]


async def test_an_unpaid_invoice_of_the_session_is_marked_invalid(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    before = await make_provider()
    invoice = await lost_invoice(before, btcpay, "sess-btc-lost")
    other = await lost_invoice(before, btcpay, "sess-btc-other")
    await before.async_stop()  # the hub dies: its authorizes end without a word

    after = await make_provider()
    await after.async_release_session("sess-btc-lost", PRICE)
    assert invoice["status"] == "Invalid"
    assert other["status"] == "New"
    marks = btcpay.requests("POST", "/status")
    assert [call.path.rsplit("/", 2)[-2] for call in marks] == [invoice["id"]]
    assert [call.query for call in btcpay.requests("GET", "/invoices")][-1] == {
        "orderId": "sess-btc-lost"
    }
    await after.async_release_session("sess-btc-lost", PRICE)  # a repeat
    await after.async_release_session("sess-btc-none", PRICE)  # no invoice was ever made
    assert len(btcpay.requests("POST", "/status")) == 1
    assert btcpay.pull_payments == {}


async def test_a_settled_invoice_of_the_session_is_refunded_once(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    before = await make_provider()
    invoice = await lost_invoice(before, btcpay, "sess-btc-paid")
    await before.async_stop()
    await btcpay.settle(invoice["id"])  # the customer paid while the hub was down

    after = await make_provider()
    await after.async_release_session("sess-btc-paid", PRICE)
    await after.async_release_session("sess-btc-paid", PRICE)
    (pull,) = btcpay.pull_payments.values()
    assert pull["description"] == "vendhub:sess-btc-paid:cancelled"
    assert invoice["status"] == "Settled"


async def test_an_invoice_still_confirming_is_refunded_once_settled(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    before = await make_provider()
    invoice = await lost_invoice(before, btcpay, "sess-btc-slow")
    await before.async_stop()
    await btcpay.pay(invoice["id"])

    after = await make_provider()
    await after.async_release_session("sess-btc-slow", PRICE)
    assert btcpay.pull_payments == {}
    assert after._releases
    await btcpay.confirm(invoice["id"])
    await eventually(lambda: btcpay.pull_payments)
    (pull,) = btcpay.pull_payments.values()
    assert pull["description"] == "vendhub:sess-btc-slow:cancelled"
    await eventually(lambda: not after._releases)


async def test_a_restart_while_authorizing_invalidates_the_btcpay_invoice(
    api: Api, tmp_path: Path, btcpay: BTCPayServer, make_provider: MakeProvider
) -> None:
    hub = api.hub
    journal_path = tmp_path / ".storage" / "vending.journal.db"
    session = await journal_cut_off_while_authorizing(
        journal_path,
        "0190f2a1c3d47e8f9a0b1c2d3e4f5a6d",
        machine_id=MACHINE,
        product="Juice 0.5",
        price=PRICE,
        method=PaymentMethod.crypto,
        provider="crypto",
    )
    before = await make_provider()
    invoice = await lost_invoice(before, btcpay, session.id)
    await before.async_stop()

    engine = VendEngine(
        hub,
        MachineSetup(
            machine_id=MACHINE,
            currency="EUR",
            planogram={"A1": SlotPlan("Juice 0.5", 250, 10)},
            stock={"A1": 3},
            dispenser=SimulatorDispenser(hub, MACHINE, {"dispense_time": 0}),
            providers=[await make_provider()],
            timeouts=Timeouts(payment=10, dispense=5, capture=5, void=10),
        ),
        VendJournal(journal_path),
    )
    await engine.async_start()
    try:
        (resolved,) = engine.resolved_after_restart
        assert resolved.outcome is VendOutcome.payment_error
        assert resolved.reason == "interrupted_while_authorizing"
        assert invoice["status"] == "Invalid"
    finally:
        await engine.async_stop()
        await engine.journal.async_close()
    (row,) = read_journal(journal_path)
    assert row["state"] == "failed" and row["resolved_after_restart"]
    assert ("release", "done", None) in [tuple(step) for step in row["steps"]]
