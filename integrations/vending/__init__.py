"""Local vending machines: the vend engine for machines this hub drives itself.

Reads the ``vending:`` block (machines with their planogram, dispenser board and payment
providers), runs one ``vendhub.vending.engine.VendEngine`` per machine over a shared durable
journal, shows ``machine.<id>`` and ``slot.<id>_<code>`` entities and registers the
``vending.*`` services. It also provides the built-in ``simulator`` dispenser and the
``instant`` / ``instant_cash`` payment providers (test doubles, NOT real money) through the
same hooks a plugin uses. docs/vending.md.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vendhub.plugins import hookimpl
from vendhub.plugins.manager import DATA_INTEGRATIONS

from .runtime import DOMAIN, VendingRuntime
from .schema import BUILTIN_DISPENSERS, BUILTIN_PROVIDERS, CONFIG_SCHEMA
from .services import register_services

if TYPE_CHECKING:
    import voluptuous as vol

    from vendhub.core.hub import Hub
    from vendhub.vending.dispenser import Dispenser
    from vendhub.vending.payment import PaymentProvider

_LOGGER = logging.getLogger(__name__)


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``vending:`` block: ``machines:`` by id."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: Any) -> Any:
    """Open the journal, resolve unfinished sessions, start the machines."""
    return async_setup(hub, config)


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """Let running sessions end, stop the machines, close the journal."""
    return async_unload(hub)


@hookimpl
def vendhub_dispenser(platform: str) -> type[Dispenser] | None:
    """The built-in ``simulator`` board."""
    return BUILTIN_DISPENSERS.get(platform)


@hookimpl
def vendhub_payment_provider(platform: str) -> type[PaymentProvider] | None:
    """The built-in ``instant`` and ``instant_cash`` test providers (not real money)."""
    return BUILTIN_PROVIDERS.get(platform)


async def async_setup(hub: Hub, config: dict[str, Any]) -> bool:
    if DOMAIN in hub.data:
        _LOGGER.error("The vending integration is set up already; unload it first")
        return False
    manager = hub.data.get(DATA_INTEGRATIONS)
    plugin_manager = manager.plugin_manager if manager is not None else None
    runtime = VendingRuntime(hub, config, plugin_manager)
    hub.data[DOMAIN] = runtime
    try:
        await runtime.async_setup()
    except BaseException:
        hub.data.pop(DOMAIN, None)
        await runtime.async_stop()
        raise
    register_services(hub, runtime)
    return True


async def async_unload(hub: Hub) -> None:
    runtime: VendingRuntime | None = hub.data.pop(DOMAIN, None)
    if runtime is not None:
        await runtime.async_stop()
