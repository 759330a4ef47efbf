"""The device and entity registries of a hub: load them once, then reach them from anywhere."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from vendhub.core.errors import VendHubError
from vendhub.registry.device_registry import DeviceRegistry
from vendhub.registry.entity_registry import EntityRegistry

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

DATA_DEVICE_REGISTRY: Final = "device_registry"
DATA_ENTITY_REGISTRY: Final = "entity_registry"
_DATA_LOADING: Final = "registry.loading"


class RegistriesNotLoaded(VendHubError, RuntimeError):
    """A registry was asked for before ``async_load_registries`` ran."""


async def async_load_registries(hub: Hub) -> None:
    """Load the device and entity registries into ``hub.data``; later calls do nothing."""
    if DATA_ENTITY_REGISTRY in hub.data:
        return
    loading: asyncio.Future[None] | None = hub.data.get(_DATA_LOADING)
    if loading is not None:
        await asyncio.shield(loading)
        return
    loading = hub.loop.create_future()
    hub.data[_DATA_LOADING] = loading
    try:
        devices = DeviceRegistry(hub)
        entities = EntityRegistry(hub)
        await devices.async_load()
        await entities.async_load()
        hub.data[DATA_DEVICE_REGISTRY] = devices
        hub.data[DATA_ENTITY_REGISTRY] = entities
        loading.set_result(None)
    except Exception as error:
        loading.set_exception(error)
        loading.exception()  # the caller gets the error; waiters, if any, get it too
        raise
    finally:
        if not loading.done():
            loading.cancel()
        del hub.data[_DATA_LOADING]


def device_registry(hub: Hub) -> DeviceRegistry:
    """Return the hub's device registry."""
    registry: DeviceRegistry | None = hub.data.get(DATA_DEVICE_REGISTRY)
    if registry is None:
        raise RegistriesNotLoaded("the device registry is not loaded; await async_load_registries")
    return registry


def entity_registry(hub: Hub) -> EntityRegistry:
    """Return the hub's entity registry."""
    registry: EntityRegistry | None = hub.data.get(DATA_ENTITY_REGISTRY)
    if registry is None:
        raise RegistriesNotLoaded("the entity registry is not loaded; await async_load_registries")
    return registry


__all__ = [
    "RegistriesNotLoaded",
    "async_load_registries",
    "device_registry",
    "entity_registry",
]
