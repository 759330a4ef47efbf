"""QR vends end to end: the ``qr_gateway`` provider against the emulated YooKassa, whose
notifications reach the hub's HTTP server, and the serial board on its pty pair."""

from __future__ import annotations

from typing import Any

from tests.integrations.qr_gateway.yookassa_server import YooKassaServer
from vendhub.vending.money import Money
from vendhub.vending.session import SessionState, VendOutcome, VendSession
from vendhub_integrations.serial_board.emulator import Fault

from .conftest import (
    SALE_EVENTS,
    SELECTION,
    VOIDED_DISPENSE_EVENTS,
    StartHub,
    VendingHub,
    assert_failure_in_ledger,
    assert_one_context,
    assert_sale_in_ledger,
    assert_stock_change_caused_by,
    qr_payment,
    wait_until,
)


async def start_qr_machine(
    start_hub: StartHub, gateway: YooKassaServer, **options: Any
) -> VendingHub:
    return await start_hub(
        [qr_payment(gateway)], currency="RUB", webhook_senders=[gateway], **options
    )


async def qr_shown(machine: VendingHub, gateway: YooKassaServer, started: VendSession) -> dict:
    """The payment the gateway made for the session, once the kiosk shows its QR code."""
    await wait_until(lambda: len(gateway.payments) == 1, what="the payment at the gateway")
    (payment,) = gateway.payments.values()
    await wait_until(
        lambda: (machine.engine.session(started.id) or started).progress.get("step") == "scan_qr",
        what="the QR code on the kiosk",
    )
    session = machine.engine.session(started.id)
    assert session is not None
    assert session.progress["qr"] == payment["confirmation"]["confirmation_data"]
    assert payment["metadata"]["session_id"] == started.id
    assert payment["amount"] == {"value": "1.50", "currency": "RUB"}
    return payment


async def test_a_qr_payment_confirmed_by_notification_is_captured_after_the_drop(
    start_hub: StartHub, yookassa: YooKassaServer
) -> None:
    machine = await start_qr_machine(start_hub, yookassa)

    started = await machine.select("A1", "qr")
    payment = await qr_shown(machine, yookassa, started)
    await yookassa.pay(payment["id"])  # the customer pays; YooKassa notifies the hub
    final = await machine.finish(started)

    assert (final.state, final.outcome) == (SessionState.completed, VendOutcome.completed)
    assert final.authorization is not None
    assert final.authorization.provider == "qr_gateway"
    assert final.authorization.reference == payment["id"]
    assert final.authorization.amount == Money(150, "RUB")
    # The notification (not a poll: the provider polls once a minute) authorized it.
    assert [(d.event, d.status) for d in yookassa.deliveries][:1] == [
        ("payment.waiting_for_capture", 200)
    ]
    assert machine.hub.data["qr_gateway.webhooks"].accepted >= 1
    assert machine.hub.data["qr_gateway.webhooks"].rejections == {}
    # Captured once at the gateway, for the price; nothing cancelled or refunded.
    (capture,) = yookassa.requests("POST", "/capture")
    assert capture.path == f"/v3/payments/{payment['id']}/capture"
    assert capture.body["amount"] == {"value": "1.50", "currency": "RUB"}
    assert yookassa.requests("POST", "/cancel") == [] and yookassa.refunds == {}
    assert payment["status"] == "succeeded"
    assert machine.drives() == [SELECTION["A1"]]
    assert machine.engine.stock["A1"] == 4 and machine.slot_state("A1") == "4"
    assert_one_context(machine.events, final, SALE_EVENTS)
    assert_stock_change_caused_by(machine.events, final, "A1")
    ledger = await machine.recorded(final)
    assert_sale_in_ledger(
        ledger,
        final,
        provider="qr_gateway",
        method="qr",
        reference=payment["id"],
        amount=150,
        stock_after=4,
    )


async def test_a_qr_vend_without_a_drop_is_cancelled_at_the_gateway(
    start_hub: StartHub, yookassa: YooKassaServer
) -> None:
    machine = await start_qr_machine(start_hub, yookassa)
    machine.board.inject(Fault.no_drop, selection=SELECTION["A1"])

    started = await machine.select("A1", "qr")
    payment = await qr_shown(machine, yookassa, started)
    await yookassa.pay(payment["id"])
    final = await machine.finish(started)

    assert (final.outcome, final.reason) == (VendOutcome.dispense_failed, "not_dropped")
    assert payment["status"] == "canceled"
    assert payment["cancellation_details"] == {
        "party": "merchant",
        "reason": "canceled_by_merchant",
    }
    assert yookassa.requests("POST", "/capture") == []
    assert len(yookassa.requests("POST", "/cancel")) == 1
    assert machine.drives() == [SELECTION["A1"]]
    assert machine.engine.stock["A1"] == 5
    assert [alarm["code"] for alarm in machine.alarms()] == ["vend_dispense_failed"]
    assert_one_context(machine.events, final, VOIDED_DISPENSE_EVENTS)
    assert_failure_in_ledger(await machine.recorded(final), final, "not_dropped")


async def test_an_unpaid_qr_times_out_and_a_late_payment_is_cancelled_at_the_gateway(
    start_hub: StartHub, yookassa: YooKassaServer
) -> None:
    machine = await start_qr_machine(start_hub, yookassa, timeouts={"payment": 0.6})

    started = await machine.select("A1", "qr")
    payment = await qr_shown(machine, yookassa, started)
    final = await machine.finish(started)

    assert (final.state, final.outcome) == (SessionState.failed, VendOutcome.payment_timeout)
    assert final.authorization is None
    # YooKassa cannot cancel a pending payment (it expires); nothing was taken.
    assert payment["status"] == "pending" and payment["paid"] is False
    assert yookassa.requests("POST", "/capture") == []
    assert machine.drives() == [] and machine.engine.stock["A1"] == 5

    # The customer pays after the kiosk gave up: the hub cancels the payment at once.
    await yookassa.pay(payment["id"])
    await wait_until(lambda: payment["status"] == "canceled", what="the late payment cancelled")
    assert payment["cancellation_details"]["party"] == "merchant"
    assert yookassa.requests("POST", "/capture") == [] and yookassa.refunds == {}
    assert_one_context(machine.events, final, ["vend_started"])
    ledger = await machine.ledger()
    assert (ledger.vends, ledger.payments, ledger.stock_movements) == ([], [], [])
