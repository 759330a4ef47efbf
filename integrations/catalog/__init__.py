"""The product catalog and time-of-day price lists: the ``catalog:`` block and its services.

The block is a list of products (or ``!include products.yaml``), or a mapping::

    catalog:
      languages: [en, ru]          # the languages product names may be given in
      default_language: en
      media_dir: media             # image paths are relative to <config>/media
      products: !include products.yaml
      price_lists:
        office:
          machines: [lobby_1]
          prices: {A1: 150}        # by slot code or product
          rules:
            - {days: weekdays, start: "15:00", end: "17:00", discount: 20}

Products live in ``vendhub.vending.catalog`` (and the recorder's product tables when the
recorder is loaded); price lists in ``vendhub.vending.pricing``, whose ``PriceBook`` the MQTT
link asks for the prices in force when it builds a machine's config. Services:
``catalog.upsert_product``, ``catalog.remove_product``, ``catalog.products``,
``catalog.price_at``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.plugins import hookimpl
from vendhub.vending.catalog import DATA_CATALOG, catalog_schema
from vendhub.vending.pricing import PRICE_LISTS_SCHEMA

from .runtime import CatalogRuntime
from .services import register_services

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

DOMAIN = "catalog"
DATA_RUNTIME = "catalog.runtime"

CONFIG_SCHEMA = catalog_schema({vol.Optional("price_lists", default=dict): PRICE_LISTS_SCHEMA})


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``catalog:`` block: products, languages, media folder, price lists."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: Any) -> Any:
    """Load the catalog and the price lists, fill the recorder's tables, register services."""
    return async_setup(hub, config if config is not None else CONFIG_SCHEMA([]))


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """Take the catalog and the price lists away."""
    return async_unload(hub)


async def async_setup(hub: Hub, config: dict[str, Any]) -> bool:
    """Set the catalog up from its validated block."""
    runtime = CatalogRuntime(hub, config)
    await runtime.async_setup()
    hub.data[DATA_RUNTIME] = runtime
    register_services(hub, runtime)
    return True


async def async_unload(hub: Hub) -> None:
    """Undo ``async_setup``."""
    runtime: CatalogRuntime | None = hub.data.pop(DATA_RUNTIME, None)
    if runtime is not None:
        await runtime.async_unload()
    hub.data.pop(DATA_CATALOG, None)
