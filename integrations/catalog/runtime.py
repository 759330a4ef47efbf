"""The running catalog: products from YAML and services, price lists, the recorder's tables.

Products written in the ``catalog:`` block are the base; products added, changed or removed
with ``catalog.upsert_product`` / ``catalog.remove_product`` are kept in
``.storage/catalog.products`` on top of it, so they survive a restart with or without the
recorder. When the recorder runs, every change is written to its product tables too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import voluptuous as vol

from vendhub.helpers.storage import Store
from vendhub.recorder.recorder import DATA_RECORDER
from vendhub.util.dt import hub_time_zone
from vendhub.vending.catalog import (
    DATA_CATALOG,
    Catalog,
    CatalogError,
    Product,
    deactivate_others,
    remove_product_row,
    validate_products,
    write_products,
)
from vendhub.vending.pricing import (
    DATA_PRICING,
    EVENT_PRICE_LISTS_CHANGED,
    PriceBook,
    book_from_config,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from vendhub.core.context import Context
    from vendhub.core.hub import Hub
    from vendhub.recorder.recorder import Recorder

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

STORAGE_KEY = "catalog.products"
STORAGE_VERSION = 1


def _committed(step: Callable[[Session], _T]) -> Callable[[Session], _T]:
    """``step`` followed by a commit (a recorder job commits what it wants kept itself)."""

    def run(session: Session) -> _T:
        result = step(session)
        session.commit()
        return result

    return run


class CatalogRuntime:
    """What the set-up catalog integration owns; kept in ``hub.data[DATA_CATALOG]``."""

    def __init__(self, hub: Hub, config: dict[str, Any]) -> None:
        self.hub = hub
        self.config = config
        self.media_dir = hub.config_dir / config["media_dir"]
        self.catalog = Catalog(
            (Product.from_dict(item) for item in config["products"]),
            languages=config["languages"],
            default_language=config["default_language"],
            media_dir=self.media_dir,
        )
        self.book: PriceBook = book_from_config(config["price_lists"], hub_time_zone(hub))
        self.store: Store[dict[str, Any]] = Store(hub, STORAGE_KEY, STORAGE_VERSION)
        self._changed: dict[str, dict[str, Any]] = {}  # sku → product set by a service
        self._removed: set[str] = set()  # skus removed by a service

    @property
    def recorder(self) -> Recorder | None:
        """The running recorder, if one is loaded."""
        return self.hub.data.get(DATA_RECORDER)

    async def async_setup(self) -> None:
        """Apply the services' changes, publish the price lists, fill the recorder's tables."""
        stored = await self.store.async_load() or {}
        self._changed = dict(stored.get("changed", {}))
        self._removed = set(stored.get("removed", []))
        for data in self._changed.values():
            self.catalog.upsert(Product.from_dict(data))
        for sku in self._removed:
            self.catalog.products.pop(sku, None)
        self.hub.data[DATA_CATALOG] = self.catalog
        self.hub.data[DATA_PRICING] = self.book
        self.hub.bus.async_fire(EVENT_PRICE_LISTS_CHANGED, {"lists": sorted(self.book.lists)})
        recorder = self.recorder
        if recorder is not None:
            products = list(self.catalog.products.values())
            keep = list(self.catalog.products)

            def sync(session: Session) -> int:
                written = write_products(session, products, time.time())
                deactivate_others(session, keep)
                session.commit()
                return written

            written = await recorder.async_run_job("catalog sync", sync)
            _LOGGER.info("Catalog: %d products written to the recorder", written)
        _LOGGER.info(
            "Catalog: %d products in %s; %d price lists",
            len(self.catalog),
            ", ".join(self.catalog.languages),
            len(self.book.lists),
        )

    async def async_unload(self) -> None:
        """Take the catalog and the price lists away (prices fall back to the plans)."""
        await self.store.async_flush()
        if self.hub.data.get(DATA_CATALOG) is self.catalog:
            self.hub.data.pop(DATA_CATALOG, None)
        if self.hub.data.get(DATA_PRICING) is self.book:
            self.hub.data.pop(DATA_PRICING, None)
            self.hub.bus.async_fire(EVENT_PRICE_LISTS_CHANGED, {"lists": []})

    def _save(self) -> dict[str, Any]:
        return {"changed": self._changed, "removed": sorted(self._removed)}

    async def async_upsert(
        self, data: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any]:
        """Add or replace a product (validated as in YAML); returns it and whether it is new."""
        try:
            valid = validate_products(
                [data],
                self.catalog.languages,
                media_dir=self.media_dir,
                infer_media_dir=False,
            )[0]
        except vol.MultipleInvalid as error:
            problems = "; ".join(
                f"{' > '.join(str(step) for step in item.path[1:]) or 'product'}: "
                f"{item.error_message}"
                for item in error.errors
            )
            raise CatalogError(f"product not valid: {problems}") from None
        product = Product.from_dict(valid)
        is_new = self.catalog.upsert(product)
        self._changed[product.sku] = product.as_dict()
        self._removed.discard(product.sku)
        await self.store.async_save(self._save())
        recorded = False
        if self.recorder is not None:
            await self.recorder.async_run_job(
                "catalog upsert",
                _committed(lambda session: write_products(session, [product], time.time())),
            )
            recorded = True
        self.hub.bus.async_fire(
            "catalog_product_updated", {"sku": product.sku, "new": is_new}, context=context
        )
        return {"product": product.as_dict(), "new": is_new, "recorded": recorded}

    async def async_remove(self, sku: str, context: Context | None = None) -> dict[str, Any]:
        """Remove a product; in the recorder it is deleted, or made inactive while a
        planogram still refers to it."""
        self.catalog.remove(sku)
        self._changed.pop(sku, None)
        self._removed.add(sku)
        await self.store.async_save(self._save())
        database = None
        if self.recorder is not None:
            database = await self.recorder.async_run_job(
                "catalog remove", _committed(lambda session: remove_product_row(session, sku))
            )
        self.hub.bus.async_fire("catalog_product_removed", {"sku": sku}, context=context)
        return {"sku": sku, "removed": True, "database": database}
