"""MDB payment devices through a Qibixx MDB Pi HAT or MDB-USB adapter.

Two payment platforms for a machine's ``payments:`` list:

- ``mdb``: the card reader (cashless device; cards, NFC and mobile wallets come through it),
  driven with the adapter's cashless-master commands (``cashless.py``);
- ``mdb_cash``: the coin changer and the bill validator, driven with raw MDB commands through
  the adapter's generic master (``cash.py``).

Both may name the same ``port``: they then share one connection (``adapter.py``). The
``mdb:`` block itself takes no options; it only has to be present so the providers can be
found. ``emulator.py`` is an adapter emulator for tests; README.md lists every line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vendhub.plugins import hookimpl

from .adapter import async_close_all
from .cash import MdbCashProvider
from .cashless import MdbCashlessProvider

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.vending.payment import PaymentProvider

PROVIDERS: dict[str, type[PaymentProvider]] = {
    MdbCashlessProvider.platform: MdbCashlessProvider,
    MdbCashProvider.platform: MdbCashProvider,
}


@hookimpl
def vendhub_config_schema() -> None:
    """The ``mdb:`` block takes no options; devices are configured per machine payment."""
    return None


@hookimpl
def vendhub_setup(hub: Hub, config: Any) -> bool:
    """Nothing to start: each provider opens its adapter when the vending integration
    starts it."""
    return True


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """Close every adapter connection still open."""
    return async_close_all(hub)


@hookimpl
def vendhub_payment_provider(platform: str) -> type[PaymentProvider] | None:
    """``mdb`` (card reader) and ``mdb_cash`` (coin changer and bill validator)."""
    return PROVIDERS.get(platform)
