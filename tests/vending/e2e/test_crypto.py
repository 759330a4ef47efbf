"""Crypto vends end to end: the ``crypto`` provider against the emulated BTCPay Server, whose
signed webhooks reach the hub's HTTP server, and the serial board on its pty pair."""

from __future__ import annotations

from typing import Any

from tests.integrations.crypto.btcpay_server import BTCPayServer
from vendhub.vending.money import Money
from vendhub.vending.session import SessionState, VendOutcome, VendSession
from vendhub_integrations.serial_board.emulator import Fault

from .conftest import (
    SALE_EVENTS,
    SELECTION,
    StartHub,
    VendingHub,
    assert_failure_in_ledger,
    assert_one_context,
    assert_sale_in_ledger,
    assert_stock_change_caused_by,
    crypto_payment,
    wait_until,
)


async def invoice_shown(
    machine: VendingHub, server: BTCPayServer, started: VendSession
) -> dict[str, Any]:
    """The session's invoice, once the kiosk shows its checkout link as a QR code."""
    await wait_until(lambda: len(server.invoices) == 1, what="the invoice at BTCPay")
    (invoice,) = server.invoices.values()
    await wait_until(
        lambda: (machine.engine.session(started.id) or started).progress.get("step") == "scan_qr",
        what="the QR code on the kiosk",
    )
    session = machine.engine.session(started.id)
    assert session is not None and session.progress["qr"] == invoice["checkoutLink"]
    (create,) = server.requests("POST", "/invoices")
    assert (create.body["amount"], create.body["currency"]) == ("1.50", "EUR")
    assert create.body["metadata"]["orderId"] == started.id
    return invoice


async def test_a_settled_invoice_pays_for_a_vend(start_hub: StartHub, btcpay: BTCPayServer) -> None:
    machine = await start_hub([crypto_payment(btcpay)], webhook_senders=[btcpay])

    started = await machine.select("A1", "crypto")
    invoice = await invoice_shown(machine, btcpay, started)
    await btcpay.pay(invoice["id"])  # in the mempool: processing, not yet money
    await wait_until(
        lambda: (
            (machine.engine.session(started.id) or started).progress.get("step") == "processing"
        ),
        what="the kiosk saying the payment is processing",
    )
    assert machine.drives() == [], "nothing is dispensed before the invoice is settled"
    await btcpay.confirm(invoice["id"])  # settled: BTCPay's webhook tells the hub
    final = await machine.finish(started)

    assert (final.state, final.outcome) == (SessionState.completed, VendOutcome.completed)
    assert final.authorization is not None
    assert final.authorization.provider == "crypto"
    assert final.authorization.reference == invoice["id"]
    assert final.authorization.amount == Money(150, "EUR")
    assert [(delivery.type, delivery.status) for delivery in btcpay.deliveries] == [
        ("InvoiceCreated", 200),
        ("InvoiceReceivedPayment", 200),
        ("InvoiceProcessing", 200),
        ("InvoiceSettled", 200),
    ]
    assert machine.hub.data["crypto.webhooks"].accepted == 3  # all but InvoiceCreated
    # BTCPay sends InvoiceCreated before it answers the create request, so the provider does
    # not know that invoice id yet: ignored (200), which is right, as it changes nothing.
    assert machine.hub.data["crypto.webhooks"].rejections == {"unknown_invoice": 1}
    # Settled crypto is taken already: the capture asks nothing more of BTCPay.
    assert invoice["status"] == "Settled"
    assert btcpay.requests("POST", "/status") == [] and btcpay.pull_payments == {}
    assert machine.drives() == [SELECTION["A1"]]
    assert machine.engine.stock["A1"] == 4 and machine.slot_state("A1") == "4"
    assert_one_context(machine.events, final, SALE_EVENTS)
    assert_stock_change_caused_by(machine.events, final, "A1")
    ledger = await machine.recorded(final)
    assert_sale_in_ledger(
        ledger,
        final,
        provider="crypto",
        method="crypto",
        reference=invoice["id"],
        amount=150,
        stock_after=4,
    )


async def test_a_jammed_crypto_vend_is_refunded_as_a_pull_payment(
    start_hub: StartHub, btcpay: BTCPayServer
) -> None:
    machine = await start_hub([crypto_payment(btcpay)], webhook_senders=[btcpay])
    machine.board.inject(Fault.jam, selection=SELECTION["A1"])

    started = await machine.select("A1", "crypto")
    invoice = await invoice_shown(machine, btcpay, started)
    await btcpay.settle(invoice["id"])
    final = await machine.finish(started)

    # A settled invoice cannot be voided (the coins were taken): the engine refunds it.
    assert (final.state, final.outcome) == (
        SessionState.failed,
        VendOutcome.refunded_dispense_failed,
    )
    assert final.refunded == final.price
    assert final.reason == "jammed"
    # The coins were taken when the invoice settled: all of them go back (RateThen).
    (pull,) = btcpay.pull_payments.values()
    assert pull["_invoice"] == invoice["id"]
    assert pull["currency"] == "BTC"
    assert pull["description"].startswith(f"vendhub:{started.id}:")
    (refund,) = btcpay.requests("POST", "/refund")
    assert refund.body["refundVariant"] == "RateThen"
    assert machine.drives() == [SELECTION["A1"]]
    assert machine.engine.stock["A1"] == 5
    assert [alarm["code"] for alarm in machine.alarms()] == ["vend_dispense_failed"]
    assert_one_context(
        machine.events,
        final,
        ["vend_started", "payment_authorized", "payment_refunded", "vend_failed"],
    )
    assert_failure_in_ledger(await machine.recorded(final), final, "jammed")


async def test_an_unpaid_invoice_times_out_and_is_marked_invalid(
    start_hub: StartHub, btcpay: BTCPayServer
) -> None:
    machine = await start_hub(
        [crypto_payment(btcpay)], webhook_senders=[btcpay], timeouts={"payment": 0.6}
    )

    started = await machine.select("A1", "crypto")
    invoice = await invoice_shown(machine, btcpay, started)
    final = await machine.finish(started)

    assert (final.state, final.outcome) == (SessionState.failed, VendOutcome.payment_timeout)
    # Nobody can pay it any more: BTCPay marks it invalid; nothing to refund.
    (marked,) = btcpay.requests("POST", "/status")
    assert marked.body == {"status": "Invalid"}
    assert invoice["status"] == "Invalid"
    assert btcpay.pull_payments == {}
    assert machine.drives() == [] and machine.engine.stock["A1"] == 5
    ledger = await machine.ledger()
    assert (ledger.vends, ledger.payments, ledger.stock_movements) == ([], [], [])
