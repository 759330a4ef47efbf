"""A payment whose authorize was cut off by a restart: found at the emulated YooKassa by its
``metadata.session_id`` (the API lists payments, it cannot search them by metadata) and
cancelled, refunded or followed; and the vend engine doing it when it resolves its journal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.http.conftest import Api
from tests.vending.authorizing import eventually, journal_cut_off_while_authorizing, start_authorize
from vendhub.vending.engine import MachineSetup, Timeouts, VendEngine
from vendhub.vending.journal import VendJournal, read_journal
from vendhub.vending.payment import PaymentMethod
from vendhub.vending.planogram import SlotPlan
from vendhub.vending.session import VendOutcome
from vendhub_integrations.qr_gateway import QrGatewayProvider
from vendhub_integrations.vending.simulator_board import SimulatorDispenser

from .conftest import MACHINE, PRICE, vend_request
from .yookassa_server import YooKassaServer

MakeProvider = Callable[..., Awaitable[QrGatewayProvider]]


async def lost_payment(
    provider: QrGatewayProvider, gateway: YooKassaServer, session_id: str, *, capture: bool = False
) -> dict[str, Any]:
    """A payment made for ``session_id`` as the provider's authorize makes it, whose answer the
    hub never journalled (it died); the gateway's own record of it."""
    answer = await provider.client.async_create_payment(
        {
            "amount": {"value": "1.50", "currency": "RUB"},
            "capture": capture,
            "confirmation": {"type": "qr"},
            "description": "Cola 0.33",
            "metadata": {"session_id": session_id, "machine_id": MACHINE, "item": "A1"},
        },
        session_id,
    )
    return gateway.payments[answer["id"]]


async def test_a_held_payment_is_found_by_its_session_and_cancelled(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    before = await make_provider()
    # The authorize ran to its end and the customer paid; the hub died before it journalled.
    authorizing = start_authorize(before, vend_request("sess-lost"))
    await authorizing.qr_shown()
    (payment,) = gateway.payments.values()
    await gateway.pay(payment["id"])
    await authorizing.result()
    other = await lost_payment(before, gateway, "sess-other")
    await gateway.pay(other["id"])
    assert payment["status"] == other["status"] == "waiting_for_capture"

    after = await make_provider()  # the restarted hub's provider knows nothing
    await after.async_release_session("sess-lost", PRICE)
    assert payment["status"] == "canceled"
    assert payment["cancellation_details"]["party"] == "merchant"
    assert other["status"] == "waiting_for_capture"
    cancels = gateway.requests("POST", "/cancel")
    assert [(c.path, c.idempotence_key) for c in cancels] == [
        (f"/v3/payments/{payment['id']}/cancel", "sess-lost:cancel")
    ]
    lists = [c for c in gateway.calls if c.method == "GET" and c.path == "/v3/payments"]
    assert lists, "found by listing the payments"

    await after.async_release_session("sess-lost", PRICE)  # a repeat after another restart
    await after.async_release_session("sess-unknown", PRICE)  # no payment was ever made
    assert len(gateway.requests("POST", "/cancel")) == 1
    assert len(gateway.payments) == 2  # the search made nothing


async def test_the_search_pages_through_a_busy_shop(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider()
    payment = await lost_payment(provider, gateway, "sess-early")
    await gateway.pay(payment["id"])
    for number in range(120):  # newer payments of other sessions: the lost one is on page 2
        other = await lost_payment(provider, gateway, f"sess-{number:03d}")
        await gateway.pay(other["id"])
    await provider.async_release_session("sess-early", PRICE)
    assert payment["status"] == "canceled"
    held = [p for p in gateway.payments.values() if p["status"] == "waiting_for_capture"]
    assert len(held) == 120
    lists = [c for c in gateway.calls if c.path == "/v3/payments" and c.method == "GET"]
    assert len(lists) == 4  # pending, two pages of waiting_for_capture (a cursor), succeeded


async def test_a_payment_taken_at_once_is_refunded_once(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider()
    payment = await lost_payment(provider, gateway, "sess-taken", capture=True)
    await gateway.pay(payment["id"])
    assert payment["status"] == "succeeded"
    await provider.async_release_session("sess-taken", PRICE)
    await provider.async_release_session("sess-taken", PRICE)
    (refund,) = gateway.refunds.values()
    assert refund["payment_id"] == payment["id"]
    assert refund["amount"] == {"value": "1.50", "currency": "RUB"}
    assert payment["refunded_amount"] == {"value": "1.50", "currency": "RUB"}


async def test_a_pending_payment_is_followed_and_cancelled_if_paid_later(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider()
    payment = await lost_payment(provider, gateway, "sess-pending")
    await provider.async_release_session("sess-pending", PRICE)
    # YooKassa cannot cancel a pending payment: the provider waits for the customer.
    assert payment["status"] == "pending"
    assert provider._releases
    await gateway.pay(payment["id"])  # the customer had scanned the QR before the restart
    await eventually(lambda: payment["status"] == "canceled")
    await eventually(lambda: not provider._releases)


async def test_a_held_payment_older_than_a_week_is_not_searched(
    make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    provider = await make_provider()
    payment = await lost_payment(provider, gateway, "sess-old")
    await gateway.pay(payment["id"])
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)
    payment["created_at"] = eight_days_ago.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    await provider.async_release_session("sess-old", PRICE)
    # YooKassa itself cancels a hold that was not captured within 7 days.
    assert payment["status"] == "waiting_for_capture"
    assert gateway.requests("POST", "/cancel") == []


async def test_a_restart_while_authorizing_cancels_the_qr_payment_at_the_gateway(
    api: Api, tmp_path: Path, gateway: YooKassaServer, make_provider: MakeProvider
) -> None:
    hub = api.hub
    journal_path = tmp_path / ".storage" / "vending.journal.db"
    session = await journal_cut_off_while_authorizing(
        journal_path,
        "0190f2a1c3d47e8f9a0b1c2d3e4f5a6c",
        machine_id=MACHINE,
        product="Cola",
        price=PRICE,
        method=PaymentMethod.qr,
        provider="qr_gateway",
    )
    before = await make_provider()
    payment = await lost_payment(before, gateway, session.id)
    await gateway.pay(payment["id"])

    engine = VendEngine(
        hub,
        MachineSetup(
            machine_id=MACHINE,
            currency="RUB",
            planogram={"A1": SlotPlan("Cola", 150, 10)},
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
        assert payment["status"] == "canceled"
        assert gateway.requests("POST", "/capture") == []
    finally:
        await engine.async_stop()
        await engine.journal.async_close()
    (row,) = read_journal(journal_path)
    assert row["state"] == "failed" and row["resolved_after_restart"]
    assert ("release", "done", None) in [tuple(step) for step in row["steps"]]
