"""The qr_gateway provider against the emulated YooKassa, with the hub's real HTTP server
taking the notifications."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from tests.http.conftest import Api
from tests.vending.authorizing import eventually, start_authorize
from vendhub.vending.money import Money
from vendhub.vending.payment import PaymentDeclined, PaymentError, PaymentStatus
from vendhub_integrations.qr_gateway import QrGatewayProvider
from vendhub_integrations.qr_gateway.webhook import URL_WEBHOOK

from .conftest import only_payment, vend_request
from .yookassa_server import YooKassaServer

MakeProvider = Callable[..., Awaitable[QrGatewayProvider]]


async def test_a_qr_paid_is_authorized_by_its_notification_and_then_captured(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider()  # polls once a minute: only the notification can do it
    assert provider.webhooks_served
    authorizing = start_authorize(provider, vend_request("sess-qr-1"))
    qr = await authorizing.qr_shown()

    payment = only_payment(gateway)
    assert qr == payment["confirmation"]["confirmation_data"]
    create = gateway.requests("POST", "/v3/payments")[0]
    assert create.idempotence_key == "sess-qr-1"
    assert create.body["amount"] == {"value": "1.50", "currency": "RUB"}
    assert create.body["capture"] is False
    assert create.body["confirmation"] == {"type": "qr"}
    assert create.body["metadata"]["session_id"] == "sess-qr-1"
    assert not authorizing.task.done()

    await gateway.pay(payment["id"])
    authorization = await authorizing.result()
    assert gateway.deliveries[-1].status == 200
    assert provider.webhooks.accepted == 1
    assert authorization.provider == "qr_gateway"
    assert authorization.reference == payment["id"]
    assert authorization.amount == Money(150, "RUB")
    assert authorization.details["session_id"] == "sess-qr-1"
    assert authorization.details["payment_method"] == "sbp"
    assert not gateway.requests("GET")[1:], "one GET: the check of the notification"
    assert await provider.async_status(authorization) is PaymentStatus.authorized

    await provider.async_capture(authorization, Money(150, "RUB"))
    assert payment["status"] == "succeeded"
    # The engine may repeat a capture after a restart: the same key, nothing taken twice.
    await provider.async_capture(authorization, Money(150, "RUB"))
    captures = gateway.requests("POST", "/capture")
    assert [c.idempotence_key for c in captures] == ["sess-qr-1:capture"] * 2
    assert payment["amount"] == {"value": "1.50", "currency": "RUB"}
    assert await provider.async_status(authorization) is PaymentStatus.captured
    await gateway.drain()
    assert gateway.deliveries[-1].event == "payment.succeeded"
    assert gateway.deliveries[-1].status == 200


async def test_a_lost_notification_is_made_up_for_by_polling(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider(poll_interval=0.1)
    gateway.webhooks_enabled = False
    authorizing = start_authorize(provider, vend_request("sess-poll"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)

    await gateway.pay(payment["id"])
    authorization = await authorizing.result()
    assert authorization.reference == payment["id"]
    assert gateway.deliveries == []
    assert provider.webhooks.accepted == 0
    assert gateway.requests("GET", f"/payments/{payment['id']}")


async def test_a_notification_from_an_address_not_allowed_is_refused_and_changes_nothing(
    make_provider: MakeProvider, gateway: YooKassaServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-forged"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)
    gets_before = len(gateway.requests("GET"))

    forged = dict(gateway.public(payment), status="waiting_for_capture", paid=True)
    with caplog.at_level(logging.WARNING):
        delivery = await gateway.notify("payment.waiting_for_capture", forged, source="127.0.0.3")
    assert delivery.status == 403
    assert provider.webhooks.rejections["source_not_allowed"] == 1
    assert "source_not_allowed" in caplog.text
    assert "127.0.0.3" in caplog.text
    assert gateway.secret_key not in caplog.text
    await asyncio.sleep(0.2)
    assert not authorizing.task.done()
    assert provider.statuses[payment["id"]] == "pending"
    assert len(gateway.requests("GET")) == gets_before, "not even fetched"
    assert payment["status"] == "pending"

    # The real notification, from YooKassa's address, still does it.
    await gateway.pay(payment["id"])
    authorization = await authorizing.result()
    assert authorization.reference == payment["id"]
    assert gateway.requests("POST", "/capture") == []


async def test_a_paid_payment_announced_from_a_wrong_address_waits_for_the_poll(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider(poll_interval=0.3)
    gateway.sender_address = "127.0.0.4"
    authorizing = start_authorize(provider, vend_request("sess-wrong-sender"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)
    await gateway.pay(payment["id"])
    assert gateway.deliveries[-1].status == 403
    authorization = await authorizing.result()  # found by GET, never by the notification
    assert authorization.reference == payment["id"]
    assert provider.webhooks.accepted == 0


async def test_a_replayed_notification_is_ignored(
    make_provider: MakeProvider, gateway: YooKassaServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-replay"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)
    await gateway.pay(payment["id"])
    authorization = await authorizing.result()
    first = gateway.deliveries[-1]
    assert first.event == "payment.waiting_for_capture"
    await provider.async_capture(authorization, Money(150, "RUB"))
    await gateway.drain()
    gets_before = len(gateway.requests("GET"))

    with caplog.at_level(logging.WARNING):
        again = await gateway.resend(first)
    assert again.status == 200
    assert provider.webhooks.rejections["replayed"] == 1
    assert "replayed" in caplog.text
    assert len(gateway.requests("GET")) == gets_before
    assert provider.statuses[payment["id"]] == "succeeded"
    assert payment["status"] == "succeeded"
    assert len(gateway.requests("POST", "/capture")) == 1


async def test_a_notification_for_another_amount_is_ignored(
    make_provider: MakeProvider, gateway: YooKassaServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-cheap"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)
    gets_before = len(gateway.requests("GET"))

    cheaper = dict(
        gateway.public(payment),
        status="waiting_for_capture",
        amount={"value": "0.01", "currency": "RUB"},
    )
    with caplog.at_level(logging.WARNING):
        delivery = await gateway.notify("payment.waiting_for_capture", cheaper)
    assert delivery.status == 200
    assert provider.webhooks.rejections["amount_mismatch"] == 1
    assert "amount_mismatch" in caplog.text
    assert "0.01 RUB" in caplog.text
    await asyncio.sleep(0.2)
    assert not authorizing.task.done()
    assert provider.statuses[payment["id"]] == "pending"
    assert len(gateway.requests("GET")) == gets_before

    # Another currency is another amount too.
    dollars = dict(cheaper, amount={"value": "1.50", "currency": "USD"})
    assert (await gateway.notify("payment.waiting_for_capture", dollars)).status == 200
    assert provider.webhooks.rejections["amount_mismatch"] == 2
    assert not authorizing.task.done()
    authorizing.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await authorizing.task


async def test_a_gateway_answer_for_another_amount_is_never_trusted(
    make_provider: MakeProvider, gateway: YooKassaServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = await make_provider(poll_interval=0.05)
    gateway.webhooks_enabled = False
    authorizing = start_authorize(provider, vend_request("sess-tampered"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)
    gateway.tamper(payment["id"], "0.10")
    with caplog.at_level(logging.WARNING):
        await gateway.pay(payment["id"])
        await eventually(lambda: provider.webhooks.rejections["amount_mismatch"] >= 3)
    assert not authorizing.task.done()
    assert caplog.text.count("amount_mismatch") == 1, "said once, counted every time"
    assert payment["status"] == "waiting_for_capture"

    # The customer gives up: what the gateway holds is released, nothing is captured.
    authorizing.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await authorizing.task
    assert payment["status"] == "canceled"
    assert payment["cancellation_details"]["party"] == "merchant"
    assert gateway.requests("POST", "/capture") == []


async def test_cancelling_a_paid_authorize_cancels_the_payment_at_the_gateway(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider()
    gateway.webhooks_enabled = False  # paid, but the provider has not heard of it yet
    authorizing = start_authorize(provider, vend_request("sess-walkaway"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)
    await gateway.pay(payment["id"])

    authorizing.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await authorizing.task
    assert payment["status"] == "canceled"
    assert payment["cancellation_details"] == {
        "party": "merchant",
        "reason": "canceled_by_merchant",
    }
    cancels = gateway.requests("POST", "/cancel")
    assert [c.idempotence_key for c in cancels] == ["sess-walkaway:cancel"]


async def test_cancelling_before_the_customer_pays_cancels_a_late_payment(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-late"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)

    authorizing.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await authorizing.task
    # A pending payment cannot be cancelled at YooKassa: the provider follows it instead.
    assert payment["status"] == "pending"
    assert gateway.requests("POST", "/cancel") == []
    assert provider._releases

    await gateway.pay(payment["id"])  # the customer pays after all
    await eventually(lambda: payment["status"] == "canceled")
    assert payment["cancellation_details"]["party"] == "merchant"
    await eventually(lambda: not provider._releases)
    assert gateway.requests("POST", "/capture") == []


async def test_an_expired_qr_is_declined(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-expired"))
    await authorizing.qr_shown()
    await gateway.expire(only_payment(gateway)["id"])
    with pytest.raises(PaymentDeclined) as declined:
        await authorizing.result()
    assert declined.value.reason == "expired"


async def test_void_releases_the_hold_and_can_be_repeated(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-void"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)
    await gateway.pay(payment["id"])
    authorization = await authorizing.result()

    await provider.async_void(authorization)
    await provider.async_void(authorization)
    assert payment["status"] == "canceled"
    assert await provider.async_status(authorization) is PaymentStatus.voided
    assert gateway.requests("POST", "/capture") == []


async def test_refunds_are_idempotent_and_end_in_refunded(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider()
    authorizing = start_authorize(provider, vend_request("sess-refund"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)
    await gateway.pay(payment["id"])
    authorization = await authorizing.result()
    await provider.async_capture(authorization, Money(150, "RUB"))

    await provider.async_refund(authorization, Money(50, "RUB"))
    await provider.async_refund(authorization, Money(50, "RUB"))  # repeated after a restart
    assert len(gateway.refunds) == 1
    assert payment["refunded_amount"] == {"value": "0.50", "currency": "RUB"}
    assert await provider.async_status(authorization) is PaymentStatus.captured

    await provider.async_refund(authorization, Money(100, "RUB"))
    assert payment["refunded_amount"] == {"value": "1.50", "currency": "RUB"}
    assert await provider.async_status(authorization) is PaymentStatus.refunded
    keys = [c.idempotence_key for c in gateway.requests("POST", "/v3/refunds")]
    assert keys == ["sess-refund:refund:50", "sess-refund:refund:50", "sess-refund:refund:100"]
    await gateway.drain()
    refund_notices = [d for d in gateway.deliveries if d.event == "refund.succeeded"]
    assert [d.status for d in refund_notices] == [200, 200]

    with pytest.raises(PaymentError, match="cannot refund"):
        await provider.async_refund(authorization, Money(500, "RUB"))


async def test_the_route_is_public_documented_and_goes_with_the_last_provider(
    api: Api, make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    token = (await api.onboard())["access_token"]
    provider = await make_provider()
    status, document, _ = await api.call("GET", "/api/openapi.json", token=token)
    assert status == 200
    assert document["paths"][URL_WEBHOOK]["post"]["security"] == []
    # No token is needed; the test client speaks from 127.0.0.1, which is not allowed.
    status, body, _ = await api.call("POST", URL_WEBHOOK, json=["not", "a", "notification"])
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    assert provider.webhooks.rejections["source_not_allowed"] == 1

    await provider.async_stop()
    status, _, _ = await api.call("POST", URL_WEBHOOK, json={})
    assert status == 404


async def test_a_trusted_proxy_passes_the_senders_address_on(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider(trusted_proxies=["127.0.0.5"])
    authorizing = start_authorize(provider, vend_request("sess-proxy"))
    await authorizing.qr_shown()
    payment = only_payment(gateway)
    notice = dict(gateway.public(payment), status="waiting_for_capture")
    body = gateway.notification("payment.waiting_for_capture", notice)

    async def send(source: str, forwarded: str) -> int:
        import aiohttp

        connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                gateway.webhook_url,
                data=body,
                headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded},
            ) as response,
        ):
            return response.status

    # The proxy says it came from somewhere else: refused.
    assert await send("127.0.0.5", "203.0.113.7") == 403
    # A client that is not the proxy cannot claim an allowed address by the header.
    assert await send("127.0.0.6", "127.0.0.2") == 403
    # Through the proxy from the allowed address: heard, and checked by GET: still pending.
    assert await send("127.0.0.5", "10.0.0.1, 127.0.0.2") == 200
    assert provider.webhooks.rejections["source_not_allowed"] == 2
    assert provider.webhooks.rejections["not_confirmed"] == 1
    assert provider.webhooks.accepted == 0
    assert not authorizing.task.done(), "the GET said pending: the notification's word is not taken"

    # That early word did not use the notification up: the real one is taken.
    await gateway.pay(payment["id"])
    assert gateway.deliveries[-1].status == 200
    assert (await authorizing.result()).reference == payment["id"]
    assert provider.webhooks.accepted == 1
