"""A hub serving its HTTP API on a free port, the emulated YooKassa, and providers on both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from tests.http.conftest import Api, start_api
from vendhub.vending.money import Money
from vendhub.vending.payment import (
    PaymentMethod,
    PaymentRequest,
)
from vendhub_integrations.http import async_unload as http_unload
from vendhub_integrations.qr_gateway import QrGatewayProvider
from vendhub_integrations.qr_gateway.webhook import URL_WEBHOOK

from .yookassa_server import YooKassaServer

MACHINE = "lobby_1"
PRICE = Money(150, "RUB")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    instance = await start_api(tmp_path)
    yield instance
    await instance.session.close()
    await instance.hub.async_stop()
    await http_unload(instance.hub)  # the hub's stop alone leaves the listener open


@pytest.fixture
async def gateway(api: Api) -> AsyncIterator[YooKassaServer]:
    server = YooKassaServer()
    await server.start()
    server.webhook_url = api.url + URL_WEBHOOK
    yield server
    await server.stop()


def provider_options(gateway: YooKassaServer, **overrides: Any) -> dict[str, Any]:
    """Validated options for ``gateway``: notifications only from 127.0.0.2 (the emulator's
    sender address); no polling to speak of unless a test asks for it."""
    raw: dict[str, Any] = {
        "shop_id": gateway.shop_id,
        "secret_key": gateway.secret_key,
        "api_url": gateway.api_url,
        "poll_interval": 60,
        "request_timeout": 5,
        "allowed_sources": ["127.0.0.2/32"],
    }
    raw.update(overrides)
    return vol.Schema(dict(QrGatewayProvider.OPTIONS))(raw)


@pytest.fixture
async def make_provider(
    api: Api, gateway: YooKassaServer
) -> AsyncIterator[Callable[..., Awaitable[QrGatewayProvider]]]:
    providers: list[QrGatewayProvider] = []

    async def make(**overrides: Any) -> QrGatewayProvider:
        provider = QrGatewayProvider(api.hub, MACHINE, provider_options(gateway, **overrides))
        await provider.async_start()
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.async_stop()


def vend_request(session_id: str = "sess-0001", amount: Money = PRICE) -> PaymentRequest:
    return PaymentRequest(
        session_id=session_id,
        machine_id=MACHINE,
        amount=amount,
        method=PaymentMethod.qr,
        item="A1",
        description="Cola 0.33",
    )


def only_payment(gateway: YooKassaServer) -> dict[str, Any]:
    assert len(gateway.payments) == 1, gateway.payments
    return next(iter(gateway.payments.values()))
