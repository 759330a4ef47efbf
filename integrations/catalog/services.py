"""The catalog's services: upsert_product, remove_product, products, price_at."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.core.errors import InvalidServiceData
from vendhub.util.dt import utcnow
from vendhub.vending.catalog import CatalogError, sku

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall

    from .runtime import CatalogRuntime

DOMAIN = "catalog"

# The product itself is checked by the catalog (languages, image), as in YAML.
UPSERT_SCHEMA = vol.Schema({vol.Required("sku"): sku}, extra=vol.ALLOW_EXTRA)
REMOVE_SCHEMA = vol.Schema({vol.Required("sku"): sku})
PRODUCTS_SCHEMA = vol.Schema({vol.Optional("language"): cv.language})
PRICE_AT_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): cv.string,
        vol.Required("slot"): cv.string,
        vol.Required("base_price"): cv.money_minor_units,
        vol.Optional("product"): cv.string,
        vol.Optional("at"): cv.aware_datetime,
    }
)


def register_services(hub: Hub, runtime: CatalogRuntime) -> None:
    """Register ``catalog.upsert_product``, ``remove_product``, ``products`` and ``price_at``."""

    async def upsert_product(call: ServiceCall) -> dict[str, Any]:
        """Add or replace a product: sku, name, names, image, category, allergens, tags."""
        try:
            return await runtime.async_upsert(dict(call.data), call.context)
        except CatalogError as error:
            raise InvalidServiceData(DOMAIN, call.service, str(error)) from None

    async def remove_product(call: ServiceCall) -> dict[str, Any]:
        """Remove a product by its sku."""
        try:
            return await runtime.async_remove(call.data["sku"], call.context)
        except CatalogError as error:
            raise InvalidServiceData(DOMAIN, call.service, str(error)) from None

    def products(call: ServiceCall) -> dict[str, Any]:
        """Every product, with its name in ``language`` (default: the catalog's)."""
        language = call.data.get("language") or runtime.catalog.default_language
        return {
            "language": language,
            "products": [
                {**product.as_dict(), "display_name": product.name_in(language)}
                for product in sorted(runtime.catalog.products.values(), key=lambda p: p.sku)
            ],
        }

    def price_at(call: ServiceCall) -> dict[str, Any]:
        """The price a machine's slot has at a moment (default: now), and the next change."""
        moment: datetime = call.data.get("at") or utcnow()
        machine_id = call.data["machine_id"]
        price_list = runtime.book.list_for(machine_id)
        price = runtime.book.price_at(
            machine_id, call.data["slot"], call.data.get("product"), call.data["base_price"], moment
        )
        next_change = price_list.next_change(moment) if price_list is not None else None
        return {
            "price": price,
            "price_list": price_list.name if price_list is not None else None,
            "at": moment.isoformat(),
            "next_change": next_change.isoformat() if next_change is not None else None,
        }

    register = hub.services.async_register
    register(DOMAIN, "upsert_product", upsert_product, UPSERT_SCHEMA)
    register(DOMAIN, "remove_product", remove_product, REMOVE_SCHEMA)
    register(DOMAIN, "products", products, PRODUCTS_SCHEMA, read_only=True)
    register(DOMAIN, "price_at", price_at, PRICE_AT_SCHEMA, read_only=True)
