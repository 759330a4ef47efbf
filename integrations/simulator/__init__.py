"""Simulator: a fleet of virtual vending machines for the quick start, tests and benchmarks.

Two layers meet at machine-protocol messages: ``vendhub.machine.virtual.VirtualMachine`` models
one machine and produces the messages a real one would publish; the shared
``vendhub.machine.link.MachineLink`` turns them into entity states and bus events, exactly as
it does for the machines the MQTT link receives.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vendhub.helpers.entity_platform import async_remove_entities
from vendhub.plugins import hookimpl

from .const import DOMAIN
from .runtime import SimulatorRuntime
from .schema import CONFIG_SCHEMA
from .services import register_services

if TYPE_CHECKING:
    import voluptuous as vol

    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``simulator:`` block: speed, tick, seed, machines and/or a generated fleet."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: Any) -> Any:
    """Create the machines and their entities, register the services, start stepping."""
    return async_setup(hub, config)


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """Stop stepping; the hub then removes the entities and the services."""
    return async_unload(hub)


async def async_setup(hub: Hub, config: dict[str, Any]) -> bool:
    """Set the simulator up from its validated configuration block."""
    if DOMAIN in hub.data:
        _LOGGER.error("The simulator is set up already; unload it first")
        return False
    runtime = SimulatorRuntime(hub, config)
    hub.data[DOMAIN] = runtime
    try:
        await runtime.async_setup()
    except BaseException:
        hub.data.pop(DOMAIN, None)
        await runtime.async_stop()
        await async_remove_entities(hub, DOMAIN)
        raise
    register_services(hub, runtime)
    return True


async def async_unload(hub: Hub) -> None:
    """Stop the step loop and forget the machines."""
    runtime: SimulatorRuntime | None = hub.data.pop(DOMAIN, None)
    if runtime is not None:
        await runtime.async_stop()
