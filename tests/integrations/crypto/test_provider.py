"""The crypto provider against the emulated BTCPay Server, with the hub's real HTTP server
taking the webhooks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from tests.vending.authorizing import eventually, start_authorize
from vendhub.vending.money import Money
from vendhub.vending.payment import PaymentDeclined, PaymentError, PaymentStatus
from vendhub_integrations.crypto import CryptoProvider

from .btcpay_server import BTCPayServer
from .conftest import only_invoice, vend_request

MakeProvider = Callable[..., Awaitable[CryptoProvider]]


async def test_a_settled_invoice_is_authorized_by_its_webhook(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    provider = await make_provider()  # polls once a minute: only the webhooks can do it
    assert provider.webhooks_served
    authorizing = start_authorize(provider, vend_request("sess-btc-ok"))
    qr = await authorizing.qr_shown()

    invoice = only_invoice(btcpay)
    assert qr == invoice["checkoutLink"]
    create = btcpay.requests("POST", "/invoices")[0]
    assert create.body["amount"] == "2.50"
    assert create.body["currency"] == "EUR"
    assert create.body["metadata"]["orderId"] == "sess-btc-ok"
    assert create.body["checkout"] == {"expirationMinutes": 15, "speedPolicy": "HighSpeed"}

    await btcpay.pay(invoice["id"])
    await eventually(lambda: {"step": "processing"} in authorizing.progress)
    assert not authorizing.task.done()
    await btcpay.confirm(invoice["id"])
    authorization = await authorizing.result()
    assert authorization.provider == "crypto"
    assert authorization.reference == invoice["id"]
    assert authorization.amount == Money(250, "EUR")
    assert authorization.details["session_id"] == "sess-btc-ok"
    assert [d.status for d in btcpay.deliveries] == [200] * 4
    assert provider.webhooks.accepted == 3  # received payment, processing, settled

    posts_before = len(btcpay.requests("POST"))
    await provider.async_capture(authorization, Money(250, "EUR"))
    assert len(btcpay.requests("POST")) == posts_before, "settled crypto is captured already"
    assert await provider.async_status(authorization) is PaymentStatus.captured
    assert btcpay.pull_payments == {}


async def test_a_lost_webhook_is_made_up_for_by_polling(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    provider = await make_provider(poll_interval=0.1)
    btcpay.webhooks_enabled = False
    authorizing = start_authorize(provider, vend_request("sess-btc-poll"))
    await authorizing.qr_shown()
    invoice = only_invoice(btcpay)
    await btcpay.settle(invoice["id"])
    authorization = await authorizing.result()
    assert authorization.reference == invoice["id"]
    assert btcpay.deliveries == []
    assert btcpay.requests("GET", f"/invoices/{invoice['id']}")


async def test_a_webhook_without_the_right_signature_is_refused_and_changes_nothing(
    make_provider: MakeProvider, btcpay: BTCPayServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-btc-forged"))
    await authorizing.qr_shown()
    invoice = only_invoice(btcpay)
    gets_before = len(btcpay.requests("GET"))

    forged = btcpay.event("InvoiceSettled", invoice["id"], {"manuallyMarked": False})
    with caplog.at_level(logging.WARNING):
        wrong = await btcpay.send(forged, secret="guessed-secret")
        unsigned = await btcpay.send(btcpay.event("InvoiceSettled", invoice["id"]), signed=False)
    assert wrong.status == 401
    assert unsigned.status == 401
    assert provider.webhooks.rejections["bad_signature"] == 1
    assert provider.webhooks.rejections["missing_signature"] == 1
    assert "bad_signature" in caplog.text
    assert "missing_signature" in caplog.text
    assert btcpay.webhook_secret not in caplog.text
    assert wrong.signature is not None and wrong.signature not in caplog.text
    await asyncio.sleep(0.2)
    assert not authorizing.task.done()
    assert len(btcpay.requests("GET")) == gets_before, "not even fetched"
    assert provider.statuses[invoice["id"]] == "New/None"

    # The same event with the store's signature is taken, and checked: still unpaid.
    assert (await btcpay.send(forged)).status == 200
    assert not authorizing.task.done()
    authorizing.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await authorizing.task


async def test_a_replayed_or_redelivered_webhook_is_ignored(
    make_provider: MakeProvider, btcpay: BTCPayServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-btc-replay"))
    await authorizing.qr_shown()
    invoice = only_invoice(btcpay)
    await btcpay.settle(invoice["id"])
    authorization = await authorizing.result()
    settled = next(d for d in btcpay.deliveries if d.type == "InvoiceSettled")
    accepted = provider.webhooks.accepted
    gets_before = len(btcpay.requests("GET"))

    with caplog.at_level(logging.WARNING):
        again = await btcpay.resend(settled)
        redelivered = await btcpay.redeliver(settled)
    assert (again.status, redelivered.status) == (200, 200)
    assert redelivered.delivery_id != settled.delivery_id
    assert provider.webhooks.rejections["replayed"] == 2
    assert "replayed" in caplog.text
    assert provider.webhooks.accepted == accepted
    assert len(btcpay.requests("GET")) == gets_before
    assert btcpay.pull_payments == {}
    assert await provider.async_status(authorization) is PaymentStatus.captured


async def test_an_invoice_for_another_amount_is_never_trusted(
    make_provider: MakeProvider, btcpay: BTCPayServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-btc-tampered"))
    await authorizing.qr_shown()
    invoice = only_invoice(btcpay)
    btcpay.tamper(invoice["id"], "0.01")
    with caplog.at_level(logging.WARNING):
        await btcpay.settle(invoice["id"])
    assert [d.status for d in btcpay.deliveries[-3:]] == [200, 200, 200]
    assert provider.webhooks.rejections["amount_mismatch"] == 3
    assert caplog.text.count("amount_mismatch") == 1
    assert "0.01 EUR" in caplog.text
    await asyncio.sleep(0.2)
    assert not authorizing.task.done()
    assert provider.statuses[invoice["id"]] == "New/None"

    # The customer gives up: what they paid is requested back, nothing is kept.
    authorizing.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await authorizing.task
    (refund,) = btcpay.pull_payments.values()
    assert refund["description"] == "vendhub:sess-btc-tampered:cancelled"
    assert refund["currency"] == "BTC"


async def test_an_expired_invoice_is_declined(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-btc-expired"))
    await authorizing.qr_shown()
    await btcpay.expire(only_invoice(btcpay)["id"])
    with pytest.raises(PaymentDeclined) as declined:
        await authorizing.result()
    assert declined.value.reason == "expired"
    assert provider.refunds_due == []
    assert btcpay.pull_payments == {}


async def test_a_partial_payment_waits_then_expires_and_the_refund_is_requested(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-btc-partial"))
    link = await authorizing.qr_shown()
    invoice = only_invoice(btcpay)

    await btcpay.pay_partially(invoice["id"], Decimal("0.4"))
    await eventually(lambda: any(s.get("paid_partially") for s in authorizing.progress))
    assert {"step": "scan_qr", "qr": link, "paid_partially": True} in authorizing.progress
    await asyncio.sleep(0.1)
    assert not authorizing.task.done(), "the customer may still send the rest"

    await btcpay.expire(invoice["id"])
    with pytest.raises(PaymentDeclined) as declined:
        await authorizing.result()
    assert declined.value.reason == "expired"
    (due,) = provider.refunds_due
    assert (due.session_id, due.invoice_id, due.reason) == (
        "sess-btc-partial",
        invoice["id"],
        "partial_payment",
    )
    pull = btcpay.pull_payments[due.pull_payment_id]
    assert pull["currency"] == "BTC"
    assert Decimal(pull["amount"]) == invoice["_paid_btc"] == Decimal("0.00002")
    assert btcpay.requests("POST", "/refund")[0].body["refundVariant"] == "RateThen"
    assert {"step": "refund_claim", "url": pull["viewLink"]} in authorizing.progress


async def test_a_settled_invoice_cannot_be_voided_and_is_refunded_in_full_once(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-btc-void"))
    await authorizing.qr_shown()
    invoice = only_invoice(btcpay)
    await btcpay.settle(invoice["id"])
    authorization = await authorizing.result()

    with pytest.raises(PaymentError, match="settled: crypto cannot be voided"):
        await provider.async_void(authorization)
    assert btcpay.pull_payments == {}
    assert await provider.async_status(authorization) is PaymentStatus.captured
    await provider.async_refund(authorization, authorization.amount)
    await provider.async_refund(authorization, authorization.amount)  # after a restart
    (pull,) = btcpay.pull_payments.values()
    assert pull["description"] == "vendhub:sess-btc-void:full"
    assert btcpay.requests("POST", "/refund")[0].body["refundVariant"] == "RateThen"
    assert Decimal(pull["amount"]) == invoice["_paid_btc"]
    assert await provider.async_status(authorization) is PaymentStatus.refunded


async def test_refunds_are_requested_once_each_and_end_in_refunded(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-btc-refund"))
    await authorizing.qr_shown()
    invoice = only_invoice(btcpay)
    await btcpay.settle(invoice["id"])
    authorization = await authorizing.result()

    await provider.async_refund(authorization, Money(100, "EUR"))
    await provider.async_refund(authorization, Money(100, "EUR"))
    assert [(p["amount"], p["currency"]) for p in btcpay.pull_payments.values()] == [
        ("1.00", "EUR")
    ]
    assert await provider.async_status(authorization) is PaymentStatus.captured
    await provider.async_refund(authorization, Money(150, "EUR"))
    assert await provider.async_status(authorization) is PaymentStatus.refunded
    bodies = [c.body for c in btcpay.requests("POST", "/refund")]
    assert [(b["refundVariant"], b["customAmount"]) for b in bodies] == [
        ("Custom", "1.00"),
        ("Custom", "1.50"),
    ]


async def test_a_capture_of_less_than_was_paid_gives_the_rest_back(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-btc-less"))
    await authorizing.qr_shown()
    await btcpay.settle(only_invoice(btcpay)["id"])
    authorization = await authorizing.result()
    await provider.async_capture(authorization, Money(200, "EUR"))
    (pull,) = btcpay.pull_payments.values()
    assert (pull["amount"], pull["currency"]) == ("0.50", "EUR")


async def test_an_overpaid_invoice_is_authorized_and_the_excess_requested_back(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-btc-over"))
    await authorizing.qr_shown()
    invoice = only_invoice(btcpay)
    await btcpay.settle(invoice["id"], extra=Decimal("0.00001"))
    authorization = await authorizing.result()
    assert authorization.details["overpaid"] is True
    (due,) = provider.refunds_due
    assert due.reason == "overpaid"
    assert btcpay.pull_payments[due.pull_payment_id]["amount"] == "0.00001000"


async def test_cancelling_an_unpaid_authorize_invalidates_the_invoice(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-btc-cancel"))
    await authorizing.qr_shown()
    invoice = only_invoice(btcpay)
    authorizing.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await authorizing.task
    assert invoice["status"] == "Invalid"
    assert btcpay.pull_payments == {}


async def test_cancelling_while_a_payment_confirms_refunds_it_once_settled(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    provider = await make_provider()
    btcpay.webhooks_enabled = False  # the provider has not heard of the payment yet
    authorizing = start_authorize(provider, vend_request("sess-btc-confirming"))
    await authorizing.qr_shown()
    invoice = only_invoice(btcpay)
    await btcpay.pay(invoice["id"])
    authorizing.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await authorizing.task
    assert invoice["status"] == "Processing"
    assert btcpay.pull_payments == {}
    assert provider._releases

    btcpay.webhooks_enabled = True
    await btcpay.confirm(invoice["id"])
    await eventually(lambda: btcpay.pull_payments)
    (pull,) = btcpay.pull_payments.values()
    assert pull["description"] == "vendhub:sess-btc-confirming:cancelled"
    await eventually(lambda: not provider._releases)


async def test_a_repeated_authorize_finds_the_sessions_invoice(
    make_provider: MakeProvider, btcpay: BTCPayServer
) -> None:
    first = await make_provider()
    authorizing = start_authorize(first, vend_request("sess-btc-again"))
    await authorizing.qr_shown()
    # The hub restarts and asks again for the same session: no second invoice.
    second = await make_provider()
    again = start_authorize(second, vend_request("sess-btc-again"))
    assert await again.qr_shown() == only_invoice(btcpay)["checkoutLink"]
    await btcpay.settle(only_invoice(btcpay)["id"])
    assert (await again.result()).reference == (await authorizing.result()).reference
