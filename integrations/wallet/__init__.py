"""Wallet: prepaid customer accounts paid with a QR or NFC token, with loyalty points.

Provides the ``wallet`` payment provider (method ``e_wallet``) through
``vendhub_payment_provider`` and the ``wallet.*`` services. Accounts and their transactions
live in the recorder's database (``loyalty_customers``, ``loyalty_transactions``), reached
through the recorder's engine, so the recorder must be running. Details: README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.plugins import hookimpl
from vendhub.recorder.recorder import RecorderNotRunning, get_recorder

from .accounts import Wallet
from .provider import DATA_WALLET, PLATFORM, WalletProvider
from .rules import RULES_SCHEMA, BonusRules
from .services import register_services
from .tokens import async_load_hasher

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.vending.payment import PaymentProvider

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("currency"): cv.currency,
        vol.Optional("token_key"): cv.string,
        vol.Optional("rules", default=dict): RULES_SCHEMA,
    }
)


class WalletSetupError(Exception):
    """The wallet cannot start; the message says what to change."""


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``wallet:`` block: default currency of new accounts, token key, bonus rules."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: dict[str, Any] | None) -> Any:
    """Load the token key and register the services; fails without the recorder."""
    return _async_setup(hub, CONFIG_SCHEMA(dict(config or {})))


async def _async_setup(hub: Hub, config: dict[str, Any]) -> None:
    try:
        recorder = get_recorder(hub)
    except RecorderNotRunning as error:
        raise WalletSetupError(
            f"the wallet keeps its accounts in the recorder's database, but {error}"
        ) from None
    hasher = await async_load_hasher(hub, config.get("token_key"))
    wallet = Wallet(
        hub,
        recorder,
        hasher,
        BonusRules.from_config(config["rules"]),
        config.get("currency") or hub.config.currency,
    )
    hub.data[DATA_WALLET] = wallet
    register_services(hub, wallet)


@hookimpl
def vendhub_unload(hub: Hub) -> None:
    """Forget the wallet; its accounts stay in the database."""
    hub.data.pop(DATA_WALLET, None)


@hookimpl
def vendhub_payment_provider(platform: str) -> type[PaymentProvider] | None:
    """``wallet``: pay from a wallet account (method ``e_wallet``)."""
    return WalletProvider if platform == PLATFORM else None
