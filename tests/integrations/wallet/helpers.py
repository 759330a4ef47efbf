"""Starting a hub with the recorder and the wallet from a real configuration folder."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub
from vendhub.plugins.manager import DATA_INTEGRATIONS
from vendhub.recorder.models import LoyaltyCustomer, LoyaltyTransaction
from vendhub.recorder.recorder import get_recorder
from vendhub.vending.money import Money
from vendhub.vending.payment import PaymentMethod, PaymentProvider, PaymentRequest


async def start_hub(config_dir: Path, db_url: str, wallet_block: str = "") -> Hub:
    """A running hub with ``recorder`` on ``db_url`` and ``wallet`` with ``wallet_block``."""
    (config_dir / "configuration.yaml").write_text(
        f'recorder:\n  db_url: "{db_url}"\n  commit_interval: 0.1\nwallet:\n{wallet_block}'
    )
    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    assert report.failed == {}
    assert "wallet" in report.loaded
    return hub


def wallet_provider(hub: Hub, machine_id: str = "lobby_1") -> PaymentProvider:
    """A new provider instance, got the way the vending integration gets it: by the hook."""
    plugin_manager = hub.data[DATA_INTEGRATIONS].plugin_manager
    provider_class = plugin_manager.hook.vendhub_payment_provider(platform="wallet")
    assert provider_class is not None
    return provider_class(hub, machine_id, {})


def request(session_id: str, token: str | None, amount: int = 150) -> PaymentRequest:
    return PaymentRequest(
        session_id=session_id,
        machine_id="lobby_1",
        amount=Money(amount, "EUR"),
        method=PaymentMethod.e_wallet,
        item="A1",
        description="Cola",
        token=token,
    )


class Progress:
    """Collects what the provider tells the customer."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def __call__(self, step: Any) -> None:
        self.steps.append(dict(step))


async def call(hub: Hub, service: str, **data: Any) -> Any:
    return await hub.services.async_call("wallet", service, data)


async def rows(hub: Hub) -> list[tuple[str, int, int, str]]:
    """Every loyalty transaction row: (kind, amount, points, key), in insertion order."""

    def query(session: Session) -> list[tuple[str, int, int, str]]:
        found = session.execute(
            select(
                LoyaltyTransaction.kind,
                LoyaltyTransaction.amount,
                LoyaltyTransaction.points_delta,
                LoyaltyTransaction.source_event_id,
            ).order_by(LoyaltyTransaction.id)
        ).all()
        return [tuple(row) for row in found]  # type: ignore[misc]

    return await get_recorder(hub).async_query(query)


async def customers(hub: Hub) -> list[dict[str, Any]]:
    """Every loyalty customer row, all columns."""

    def query(session: Session) -> list[dict[str, Any]]:
        table = LoyaltyCustomer.__table__
        return [dict(row._mapping) for row in session.execute(select(table)).all()]

    return await get_recorder(hub).async_query(query)
