"""The qr_gateway provider's release follows outlive a restart: stored before the call that
starts one returns, resumed by the next provider on the same hub folder (which cancels or
refunds a late payment once), dropped when their time ran out, and a store file that cannot be
read does not stop the provider."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.vending.authorizing import eventually, start_authorize
from tests.vending.e2e.conftest import (  # noqa: F401 - fixtures, found by name
    StartHub,
    board_line,
    qr_payment,
    start_hub,
    yookassa,
)
from vendhub.const import STORAGE_DIR
from vendhub.util.dt import utcnow
from vendhub.vending.payment import PaymentError
from vendhub.vending.session import VendOutcome
from vendhub_integrations.qr_gateway import QrGatewayProvider

from .conftest import PRICE, only_payment, vend_request
from .test_release import lost_payment
from .yookassa_server import YooKassaServer

MakeProvider = Callable[..., Awaitable[QrGatewayProvider]]
STORE_KEY = "qr_gateway.lobby_1.release_watches"


def store_path(folder: Path) -> Path:
    return folder / STORAGE_DIR / STORE_KEY


def stored_watches(folder: Path) -> dict[str, dict[str, Any]]:
    """Payment id → its release follow, as the file on disk holds them now."""
    path = store_path(folder)
    if not path.exists():
        return {}
    envelope = json.loads(path.read_text(encoding="utf-8"))
    return {watch["reference"]: watch for watch in envelope["data"]["watches"]}


def calls_for(gateway: YooKassaServer, payment_id: str, since: int = 0) -> list[str]:
    return [
        f"{call.method} {call.path}"
        for call in gateway.calls[since:]
        if payment_id in call.path or (call.body or {}).get("payment_id") == payment_id
    ]


async def cancel_authorize(
    provider: QrGatewayProvider, gateway: YooKassaServer, session_id: str
) -> dict[str, Any]:
    """The customer walks away from the QR code: the authorize is cancelled while the payment
    is still pending; the gateway's record of that payment."""
    authorizing = start_authorize(provider, vend_request(session_id))
    await authorizing.qr_shown()
    authorizing.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await authorizing.task
    return only_payment(gateway)


async def test_a_pending_payment_released_after_a_restart_is_followed_across_another(
    tmp_path: Path, make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    before = await make_provider()
    payment = await lost_payment(before, gateway, "sess-pending")
    await before.async_release_session("sess-pending", PRICE)
    # On disk when the release returned: the engine now counts the session as released.
    watch = stored_watches(tmp_path)[payment["id"]]
    assert watch["session_id"] == "sess-pending"
    assert watch["amount"] == {"amount": 150, "currency": "RUB"}
    assert datetime.fromisoformat(watch["until"]) > utcnow()
    await before.async_stop()  # the hub restarts again before the customer pays

    after = await make_provider()
    assert after.owns(payment["id"]), "a notification for it is taken"
    await gateway.pay(payment["id"])
    await eventually(lambda: payment["status"] == "canceled")
    await eventually(lambda: not after._releases)
    cancels = gateway.requests("POST", "/cancel")
    assert [(c.path, c.idempotence_key) for c in cancels] == [
        (f"/v3/payments/{payment['id']}/cancel", "sess-pending:cancel")
    ]
    await after.async_stop()
    assert stored_watches(tmp_path) == {}, "an ended follow is removed"


async def test_a_payment_paid_while_the_hub_was_down_is_cancelled_at_the_next_start(
    tmp_path: Path, make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    before = await make_provider()
    payment = await lost_payment(before, gateway, "sess-down")
    await before.async_release_session("sess-down", PRICE)
    await before.async_stop()
    await gateway.pay(payment["id"])  # its notification reaches no provider
    assert payment["status"] == "waiting_for_capture"

    await make_provider()  # polls once a minute: only its first look can find it
    await eventually(lambda: payment["status"] == "canceled")
    assert len(gateway.requests("POST", "/cancel")) == 1


async def test_a_follow_of_a_cancelled_authorize_survives_a_restart(
    tmp_path: Path, make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    before = await make_provider()
    payment = await cancel_authorize(before, gateway, "sess-walkaway")
    assert payment["status"] == "pending"
    # Stored before the cancelled authorize finished raising.
    assert stored_watches(tmp_path)[payment["id"]]["session_id"] == "sess-walkaway"
    await before.async_stop()

    after = await make_provider()
    await gateway.pay(payment["id"])  # the customer pays after all
    await eventually(lambda: payment["status"] == "canceled")
    await eventually(lambda: not after._releases)
    assert [c.idempotence_key for c in gateway.requests("POST", "/cancel")] == [
        "sess-walkaway:cancel"
    ]
    assert gateway.requests("POST", "/capture") == []


async def test_a_payment_taken_after_a_cancelled_authorize_and_a_restart_is_refunded_once(
    tmp_path: Path, make_provider: MakeProvider, gateway: YooKassaServer
) -> None:
    before = await make_provider()
    payment = await cancel_authorize(before, gateway, "sess-taken")
    await before.async_stop()
    payment["_capture"] = True  # a method without two-stage payments: paying takes the money

    after = await make_provider()
    await gateway.pay(payment["id"])
    assert payment["status"] == "succeeded"
    await eventually(lambda: payment.get("refunded_amount") == {"value": "1.50", "currency": "RUB"})
    await eventually(lambda: not after._releases)
    await after.async_stop()

    calls = len(gateway.calls)
    again = await make_provider()  # the follow ended: a third start leaves the payment alone
    await gateway.drain()
    (refund,) = gateway.refunds.values()
    assert refund["payment_id"] == payment["id"]
    assert refund["amount"] == {"value": "1.50", "currency": "RUB"}
    assert gateway.requests("POST", "/cancel") == []
    assert calls_for(gateway, payment["id"], since=calls) == []
    assert not again._releases


async def test_a_follow_whose_time_ran_out_while_stopped_is_dropped(
    tmp_path: Path,
    make_provider: MakeProvider,
    gateway: YooKassaServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = await make_provider()
    lasting = await lost_payment(first, gateway, "sess-lasting")
    await first.async_release_session("sess-lasting", PRICE)  # followed for an hour
    await first.async_stop()

    second = await make_provider(release_watch=1)  # resumes the first, follows the next for 1 s
    short = await lost_payment(second, gateway, "sess-short")
    await second.async_release_session("sess-short", PRICE)
    await second.async_stop()
    until = datetime.fromisoformat(stored_watches(tmp_path)[short["id"]]["until"])
    await asyncio.sleep(max(0.0, (until - utcnow()).total_seconds()) + 0.1)

    calls = len(gateway.calls)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vendhub_integrations.qr_gateway.provider"):
        third = await make_provider()
    dropped = [r.getMessage() for r in caplog.records if short["id"] in r.getMessage()]
    assert len(dropped) == 1
    assert "YooKassa cancels unpaid payments when they expire" in dropped[0]
    assert [r.levelno for r in caplog.records if short["id"] in r.getMessage()] == [logging.INFO]
    assert not third.owns(short["id"])
    assert set(third._releases) == {lasting["id"]}

    await gateway.pay(short["id"])  # too late: the hub no longer follows it
    await gateway.pay(lasting["id"])
    await eventually(lambda: lasting["status"] == "canceled")
    assert short["status"] == "waiting_for_capture"
    assert calls_for(gateway, short["id"], since=calls) == []
    await third.async_stop()
    assert stored_watches(tmp_path) == {}


async def test_a_corrupt_store_file_is_logged_and_the_provider_starts(
    tmp_path: Path,
    make_provider: MakeProvider,
    gateway: YooKassaServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = store_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'{"version": 1, "data": {"watches": [{"reference": "2f9c')  # cut short
    with caplog.at_level(logging.ERROR):
        provider = await make_provider()
    assert any(
        r.levelno == logging.ERROR and str(path) in r.getMessage() for r in caplog.records
    ), caplog.text
    assert provider.webhooks_served

    # It goes on storing new follows, in a fresh file.
    payment = await lost_payment(provider, gateway, "sess-after-corrupt")
    await provider.async_release_session("sess-after-corrupt", PRICE)
    assert list(stored_watches(tmp_path)) == [payment["id"]]


async def test_unreadable_entries_are_skipped_and_the_others_resumed(
    tmp_path: Path,
    make_provider: MakeProvider,
    gateway: YooKassaServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = await make_provider()
    payment = await lost_payment(before, gateway, "sess-good")
    await before.async_release_session("sess-good", PRICE)
    await before.async_stop()
    path = store_path(tmp_path)
    envelope = json.loads(path.read_text(encoding="utf-8"))
    envelope["data"]["watches"].append({"reference": "2f9c", "session_id": "s", "until": 5})
    path.write_text(json.dumps(envelope), encoding="utf-8")

    with caplog.at_level(logging.ERROR):
        after = await make_provider()
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert str(path) in error and "2f9c" in error
    assert set(after._releases) == {payment["id"]}
    await gateway.pay(payment["id"])
    await eventually(lambda: payment["status"] == "canceled")


async def test_a_store_file_of_a_newer_vendhub_is_left_alone_and_the_provider_starts(
    tmp_path: Path,
    make_provider: MakeProvider,
    gateway: YooKassaServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = store_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    newer = json.dumps({"version": 2, "minor_version": 1, "key": STORE_KEY, "data": {}})
    path.write_text(newer, encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        provider = await make_provider()
    assert any(
        r.levelno == logging.ERROR and str(path) in r.getMessage() for r in caplog.records
    ), caplog.text

    # A follow that cannot be stored is said so: the engine tries the release again at the
    # next start. It is followed meanwhile.
    payment = await lost_payment(provider, gateway, "sess-unstored")
    with pytest.raises(PaymentError, match="could not be stored"):
        await provider.async_release_session("sess-unstored", PRICE)
    assert path.read_text(encoding="utf-8") == newer
    await gateway.pay(payment["id"])
    await eventually(lambda: payment["status"] == "canceled")


async def test_a_qr_vend_that_timed_out_is_released_by_the_restarted_hub(
    tmp_path: Path,
    start_hub: StartHub,  # noqa: F811
    yookassa: YooKassaServer,  # noqa: F811
) -> None:
    def start() -> Awaitable[Any]:
        return start_hub(
            [qr_payment(yookassa)],
            currency="RUB",
            timeouts={"payment": 0.6},
            webhook_senders=[yookassa],
        )

    machine = await start()
    started = await machine.select("A1", "qr")
    await eventually(lambda: len(yookassa.payments) == 1)
    (payment,) = yookassa.payments.values()
    final = await machine.finish(started)  # the customer did not pay in time
    assert final.outcome is VendOutcome.payment_timeout
    assert list(stored_watches(tmp_path)) == [payment["id"]]
    await machine.hub.async_stop()

    again = await start()
    assert again.engine.resolved_after_restart == []
    await yookassa.pay(payment["id"])  # the customer pays after the restart
    await eventually(lambda: payment["status"] == "canceled")
    assert len(yookassa.requests("POST", "/cancel")) == 1
    assert yookassa.requests("POST", "/capture") == []
