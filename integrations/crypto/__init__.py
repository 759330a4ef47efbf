"""Crypto payments through BTCPay Server: the ``crypto`` payment provider.

The provider (``provider.py``) talks to BTCPay's Greenfield API (``client.py``) and hears of
paid invoices through the hub's public webhook route (``webhook.py``, verified by the
``BTCPay-Sig`` HMAC). Machines use it with a ``payments:`` entry ``platform: crypto`` in the
``vending:`` block; this integration's own block takes no options (``crypto:``), it only has
to be loaded. See README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vendhub.plugins import hookimpl

from .provider import PLATFORM, CryptoProvider, RefundDue
from .webhook import DATA_WEBHOOKS

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.vending.payment import PaymentProvider

__all__ = ["CryptoProvider", "RefundDue"]


@hookimpl
def vendhub_config_schema() -> None:
    """``crypto:`` takes no options: each machine's ``payments:`` entry has them."""
    return None


@hookimpl
def vendhub_setup(hub: Hub, config: Any) -> bool:
    """Nothing to start: providers serve the webhook route while they run."""
    return True


@hookimpl
def vendhub_unload(hub: Hub) -> None:
    """Stop serving the webhook route (the vending integration stops the providers)."""
    webhooks = hub.data.pop(DATA_WEBHOOKS, None)
    if webhooks is not None:
        webhooks.close()


@hookimpl
def vendhub_payment_provider(platform: str) -> type[PaymentProvider] | None:
    """``crypto``: bitcoin payments through BTCPay Server."""
    return CryptoProvider if platform == PLATFORM else None
