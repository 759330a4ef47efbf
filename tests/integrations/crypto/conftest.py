"""A hub serving its HTTP API on a free port, the emulated BTCPay Server, and providers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from tests.http.conftest import Api, start_api
from vendhub.vending.money import Money
from vendhub.vending.payment import PaymentMethod, PaymentRequest
from vendhub_integrations.crypto import CryptoProvider
from vendhub_integrations.crypto.webhook import URL_WEBHOOK
from vendhub_integrations.http import async_unload as http_unload

from .btcpay_server import BTCPayServer

MACHINE = "gym_2"
PRICE = Money(250, "EUR")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    instance = await start_api(tmp_path)
    yield instance
    await instance.session.close()
    await instance.hub.async_stop()
    await http_unload(instance.hub)  # the hub's stop alone leaves the listener open


@pytest.fixture
async def btcpay(api: Api) -> AsyncIterator[BTCPayServer]:
    server = BTCPayServer()
    await server.start()
    server.webhook_url = api.url + URL_WEBHOOK
    yield server
    await server.stop()


def provider_options(btcpay: BTCPayServer, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "server_url": btcpay.server_url,
        "store_id": btcpay.store_id,
        "api_key": btcpay.api_key,
        "webhook_secret": btcpay.webhook_secret,
        "poll_interval": 60,
        "request_timeout": 5,
    }
    raw.update(overrides)
    return vol.Schema(dict(CryptoProvider.OPTIONS))(raw)


@pytest.fixture
async def make_provider(
    api: Api, btcpay: BTCPayServer
) -> AsyncIterator[Callable[..., Awaitable[CryptoProvider]]]:
    providers: list[CryptoProvider] = []

    async def make(**overrides: Any) -> CryptoProvider:
        provider = CryptoProvider(api.hub, MACHINE, provider_options(btcpay, **overrides))
        await provider.async_start()
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.async_stop()


def vend_request(session_id: str = "sess-btc-1", amount: Money = PRICE) -> PaymentRequest:
    return PaymentRequest(
        session_id=session_id,
        machine_id=MACHINE,
        amount=amount,
        method=PaymentMethod.crypto,
        item="A1",
        description="Juice 0.5",
    )


def only_invoice(btcpay: BTCPayServer) -> dict[str, Any]:
    assert len(btcpay.invoices) == 1, list(btcpay.invoices)
    return next(iter(btcpay.invoices.values()))
