"""A hub serving its HTTP API on a free port, the emulated BTCPay Server, and providers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from tests.http.conftest import Api, start_api
from vendhub.vending.money import Money
from vendhub.vending.payment import Authorization, PaymentMethod, PaymentRequest
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


@dataclass
class Authorizing:
    task: asyncio.Task[Authorization]
    progress: list[dict[str, Any]] = field(default_factory=list)

    async def qr_shown(self, timeout: float = 5.0) -> str:
        async with asyncio.timeout(timeout):
            while not any(step.get("step") == "scan_qr" for step in self.progress):
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.01)
        return next(step["qr"] for step in self.progress if step.get("step") == "scan_qr")

    async def result(self, timeout: float = 5.0) -> Authorization:
        async with asyncio.timeout(timeout):
            return await self.task


def start_authorize(provider: CryptoProvider, request: PaymentRequest) -> Authorizing:
    authorizing = Authorizing(task=None)  # type: ignore[arg-type]
    authorizing.task = asyncio.get_running_loop().create_task(
        provider.async_authorize(request, lambda step: authorizing.progress.append(dict(step)))
    )
    return authorizing


def only_invoice(btcpay: BTCPayServer) -> dict[str, Any]:
    assert len(btcpay.invoices) == 1, list(btcpay.invoices)
    return next(iter(btcpay.invoices.values()))


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := check()):  # noqa: ASYNC110 - emulator state has no event
            await asyncio.sleep(0.02)
    return value
