"""QR payments through a YooKassa-style gateway: the ``qr_gateway`` payment provider.

The provider (``provider.py``) talks to the gateway's API v3 (``client.py``) and hears of paid
QR codes through the hub's public notification route (``webhook.py``). Machines use it with a
``payments:`` entry ``platform: qr_gateway`` in the ``vending:`` block; this integration's own
block takes no options (``qr_gateway:``), it only has to be loaded. See README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vendhub.plugins import hookimpl

from .provider import PLATFORM, QrGatewayProvider
from .webhook import DATA_WEBHOOKS

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.vending.payment import PaymentProvider

__all__ = ["QrGatewayProvider"]


@hookimpl
def vendhub_config_schema() -> None:
    """``qr_gateway:`` takes no options: each machine's ``payments:`` entry has them."""
    return None


@hookimpl
def vendhub_setup(hub: Hub, config: Any) -> bool:
    """Nothing to start: providers serve the notification route while they run."""
    return True


@hookimpl
def vendhub_unload(hub: Hub) -> None:
    """Stop serving the notification route (the vending integration stops the providers)."""
    webhooks = hub.data.pop(DATA_WEBHOOKS, None)
    if webhooks is not None:
        webhooks.close()


@hookimpl
def vendhub_payment_provider(platform: str) -> type[PaymentProvider] | None:
    """``qr_gateway``: YooKassa payments by QR code."""
    return QrGatewayProvider if platform == PLATFORM else None
