"""The crypto provider's release follows outlive a restart: saved before the engine is told,
resumed and released once by the next hub on the same folder, dropped when their time ran out,
and a follows file that cannot be read does not stop the provider."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.http.conftest import Api, start_api
from tests.vending.authorizing import eventually, start_authorize
from vendhub.util.dt import utcnow
from vendhub.vending.payment import PaymentError
from vendhub_integrations.crypto import CryptoProvider
from vendhub_integrations.crypto.webhook import URL_WEBHOOK
from vendhub_integrations.http import async_unload as http_unload

from .btcpay_server import BTCPayServer
from .conftest import MACHINE, PRICE, only_invoice, provider_options, vend_request
from .test_release import lost_invoice

PROVIDER_LOGGER = "vendhub_integrations.crypto.provider"


class Restarts:
    """Hubs that run one after another on one folder, as a hub that restarts: each serves
    BTCPay's webhook route and runs the machine's crypto provider."""

    def __init__(self, folder: Path, server: BTCPayServer) -> None:
        self.folder = folder
        self.server = server
        self.running: tuple[Api, CryptoProvider] | None = None

    @property
    def store_file(self) -> Path:
        return self.folder / ".storage" / f"crypto.{MACHINE}.release_watches"

    def stored_watches(self) -> list[dict[str, Any]]:
        """The follows on disk now, read as the next start reads them."""
        return json.loads(self.store_file.read_text())["data"]["watches"]

    async def start(self, **options: Any) -> CryptoProvider:
        assert self.running is None, "stop the running hub first"
        api = await start_api(self.folder)
        self.server.webhook_url = api.url + URL_WEBHOOK
        provider = CryptoProvider(api.hub, MACHINE, provider_options(self.server, **options))
        self.running = (api, provider)
        await provider.async_start()
        return provider

    async def stop(self) -> None:
        assert self.running is not None
        (api, provider), self.running = self.running, None
        await provider.async_stop()
        await api.session.close()
        await api.hub.async_stop()
        await http_unload(api.hub)


@pytest.fixture
async def server() -> AsyncIterator[BTCPayServer]:
    btcpay = BTCPayServer()
    await btcpay.start()
    yield btcpay
    await btcpay.stop()


@pytest.fixture
async def restarts(tmp_path: Path, server: BTCPayServer) -> AsyncIterator[Restarts]:
    hubs = Restarts(tmp_path, server)
    yield hubs
    if hubs.running is not None:
        await hubs.stop()


async def follow_waits_for_a_webhook(provider: CryptoProvider, invoice_id: str) -> None:
    """The resumed follow looked at the invoice once (still confirming) and now waits for a
    webhook: it polls only once a minute."""
    await eventually(lambda: provider.statuses.get(invoice_id) == "Processing/None")


async def test_a_follow_of_a_release_after_a_restart_survives_another_restart(
    restarts: Restarts, server: BTCPayServer
) -> None:
    first = await restarts.start()
    invoice = await lost_invoice(first, server, "sess-btc-twice")
    await server.pay(invoice["id"])  # confirming when the hub releases the session
    await first.async_release_session("sess-btc-twice", PRICE)
    (saved,) = restarts.stored_watches()  # on disk when the engine is told it is done
    assert (saved["reference"], saved["session_id"]) == (invoice["id"], "sess-btc-twice")
    assert saved["amount"] == {"amount": 250, "currency": "EUR"}
    assert server.pull_payments == {}
    await restarts.stop()  # the hub restarts again while it follows the invoice

    second = await restarts.start()
    await follow_waits_for_a_webhook(second, invoice["id"])
    await server.confirm(invoice["id"])
    assert server.deliveries[-1].status == 200
    assert second.webhooks.accepted == 1, second.webhooks.rejections
    await eventually(lambda: not second._releases)
    (refund,) = server.requests("POST", "/refund")
    assert refund.path.endswith(f"/invoices/{invoice['id']}/refund")
    (pull,) = server.pull_payments.values()
    assert pull["description"] == "vendhub:sess-btc-twice:cancelled"
    await restarts.stop()
    assert restarts.stored_watches() == []

    await restarts.start()  # nothing left to follow, nothing asked again
    calls_before = len(server.calls)
    await asyncio.sleep(0.2)
    assert server.calls[calls_before:] == []
    assert len(server.requests("POST", "/refund")) == 1


async def test_a_follow_of_a_cancelled_authorize_survives_a_restart(
    restarts: Restarts, server: BTCPayServer
) -> None:
    first = await restarts.start()
    server.webhooks_enabled = False  # the provider has not heard of the payment yet
    authorizing = start_authorize(first, vend_request("sess-btc-walked-away"))
    await authorizing.qr_shown()
    invoice = only_invoice(server)
    await server.pay(invoice["id"])
    authorizing.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await authorizing.task
    (saved,) = restarts.stored_watches()  # on disk before the cancellation reached the engine
    assert (saved["reference"], saved["session_id"]) == (invoice["id"], "sess-btc-walked-away")
    assert saved["amount"] == {"amount": 250, "currency": "EUR"}
    await restarts.stop()
    server.webhooks_enabled = True

    second = await restarts.start()
    await follow_waits_for_a_webhook(second, invoice["id"])
    await server.confirm(invoice["id"])
    await eventually(lambda: not second._releases)
    assert len(server.requests("POST", "/refund")) == 1
    (pull,) = server.pull_payments.values()
    assert pull["description"] == "vendhub:sess-btc-walked-away:cancelled"
    assert invoice["status"] == "Settled"
    await restarts.stop()
    assert restarts.stored_watches() == []


async def test_a_follow_whose_time_ran_out_while_stopped_is_not_resumed(
    restarts: Restarts, server: BTCPayServer, caplog: pytest.LogCaptureFixture
) -> None:
    first = await restarts.start(release_watch=2)
    invoice = await lost_invoice(first, server, "sess-btc-too-late")
    await server.pay(invoice["id"])
    await first.async_release_session("sess-btc-too-late", PRICE)
    (saved,) = restarts.stored_watches()
    await restarts.stop()
    left = (datetime.fromisoformat(saved["until"]) - utcnow()).total_seconds()
    await asyncio.sleep(max(0.0, left) + 0.05)

    calls_before = len(server.calls)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=PROVIDER_LOGGER):
        second = await restarts.start()
    (dropped,) = [r for r in caplog.records if invoice["id"] in r.getMessage()]
    assert dropped.levelno == logging.ERROR
    assert "not resumed" in dropped.getMessage()
    await server.confirm(invoice["id"])  # its webhook names an invoice nobody follows
    assert second.webhooks.rejections == {"unknown_invoice": 1}
    await asyncio.sleep(0.2)
    assert server.calls[calls_before:] == [], "nothing is asked of BTCPay for it"
    assert server.pull_payments == {}
    await restarts.stop()
    assert restarts.stored_watches() == []


def _not_json(path: Path) -> None:
    path.write_text('{"version": 1, "data": {"watches": [')


def _not_follows(path: Path) -> None:
    entry = {"reference": "x", "session_id": "s", "amount": {"amount": "2.50", "currency": "EUR"}}
    path.write_text(json.dumps({"version": 1, "key": path.name, "data": {"watches": [entry]}}))


def _unreadable(path: Path) -> None:
    path.mkdir()  # reading it fails even for root


@pytest.mark.parametrize("spoil", [_not_json, _not_follows, _unreadable])
async def test_a_follows_file_that_cannot_be_read_is_logged_and_the_provider_starts(
    restarts: Restarts,
    server: BTCPayServer,
    caplog: pytest.LogCaptureFixture,
    spoil: Callable[[Path], None],
) -> None:
    restarts.store_file.parent.mkdir(parents=True)
    spoil(restarts.store_file)
    with caplog.at_level(logging.ERROR):
        provider = await restarts.start()
    assert any(
        r.levelno == logging.ERROR and str(restarts.store_file) in r.getMessage()
        for r in caplog.records
    ), caplog.text

    authorizing = start_authorize(provider, vend_request("sess-btc-after-corrupt"))
    await authorizing.qr_shown()
    await server.settle(only_invoice(server)["id"])
    assert (await authorizing.result()).reference == only_invoice(server)["id"]


async def test_a_follow_that_cannot_be_saved_fails_the_release_and_still_runs(
    restarts: Restarts, server: BTCPayServer
) -> None:
    restarts.store_file.parent.mkdir(parents=True)
    _unreadable(restarts.store_file)
    provider = await restarts.start()
    invoice = await lost_invoice(provider, server, "sess-btc-unsaved")
    await server.pay(invoice["id"])
    with pytest.raises(PaymentError, match="could not be saved"):
        await provider.async_release_session("sess-btc-unsaved", PRICE)
    await server.confirm(invoice["id"])  # the follow runs while the hub does
    await eventually(lambda: server.pull_payments)
    assert len(server.requests("POST", "/refund")) == 1


async def test_follows_made_at_another_btcpay_store_are_not_resumed(
    restarts: Restarts, server: BTCPayServer, caplog: pytest.LogCaptureFixture
) -> None:
    first = await restarts.start()
    invoice = await lost_invoice(first, server, "sess-btc-moved")
    await server.pay(invoice["id"])
    await first.async_release_session("sess-btc-moved", PRICE)
    await restarts.stop()
    envelope = json.loads(restarts.store_file.read_text())
    envelope["data"]["scope"] = "AnotherStore"  # the machine was moved to another store
    restarts.store_file.write_text(json.dumps(envelope))

    calls_before = len(server.calls)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=PROVIDER_LOGGER):
        await restarts.start()
    (moved,) = [r for r in caplog.records if invoice["id"] in r.getMessage()]
    assert moved.levelno == logging.ERROR and "AnotherStore" in moved.getMessage()
    await asyncio.sleep(0.2)
    assert server.calls[calls_before:] == []
    await restarts.stop()
    assert restarts.stored_watches() == []
