"""The catalog integration on a real hub and a real SQLite recorder: tables, services, restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vendhub.core import Hub
from vendhub.core.errors import InvalidServiceData
from vendhub.recorder.recorder import DATA_RECORDER, Recorder, RecorderConfig
from vendhub.vending.catalog import DATA_CATALOG, Catalog, read_products
from vendhub.vending.pricing import DATA_PRICING, EVENT_PRICE_LISTS_CHANGED
from vendhub_integrations.catalog import vendhub_config_schema, vendhub_setup, vendhub_unload

BLOCK: dict[str, Any] = {
    "products": [
        {"sku": "cola_330", "name": "Cola", "names": {"ru": "Кола"}, "category": "drinks"},
        {"sku": "tea", "name": "Tea", "image": "https://cdn.example.com/tea.webp"},
    ],
    "price_lists": {"office": {"machines": ["lobby_1"], "prices": {"A1": 200}}},
}


async def start(folder: Path) -> tuple[Hub, Recorder]:
    hub = Hub(folder)
    recorder = Recorder(hub, RecorderConfig(db_url=f"sqlite:///{folder / 'vendhub.db'}"))
    await recorder.async_start()
    hub.data[DATA_RECORDER] = recorder
    fired: list[Any] = []
    hub.bus.async_listen(EVENT_PRICE_LISTS_CHANGED, fired.append)
    assert await vendhub_setup(hub=hub, config=vendhub_config_schema()(BLOCK)) is True
    assert len(fired) == 1
    return hub, recorder


async def stop(hub: Hub) -> None:
    await vendhub_unload(hub=hub)
    assert DATA_PRICING not in hub.data and DATA_CATALOG not in hub.data
    await hub.async_stop()


async def database(recorder: Recorder, active_only: bool = True) -> dict[str, Any]:
    await recorder.async_flush()
    rows = await recorder.async_query(
        lambda session: read_products(session, active_only=active_only)
    )
    return {product.sku: product for product in rows}


async def test_products_reach_the_recorder_and_the_services_change_them(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "bar.png").write_bytes(b"\x89PNG")
    hub, recorder = await start(tmp_path)
    try:
        catalog: Catalog = hub.data[DATA_CATALOG]
        assert catalog.name("cola_330", "ru") == "Кола"
        rows = await database(recorder)
        assert sorted(rows) == ["cola_330", "tea"]
        assert rows["cola_330"].names == {"ru": "Кола"} and rows["cola_330"].category == "drinks"
        assert rows["tea"].image == "https://cdn.example.com/tea.webp"

        answer = await hub.services.async_call(
            "catalog",
            "upsert_product",
            {"sku": "bar", "name": "Bar", "names": {"ru": "Батончик"}, "image": "bar.png",
             "allergens": ["nuts", "milk"]},
        )  # fmt: skip
        assert (answer["new"], answer["recorded"]) == (True, True)
        rows = await database(recorder)
        assert rows["bar"].names == {"ru": "Батончик"} and rows["bar"].image == "bar.png"
        assert rows["bar"].allergens == ("nuts", "milk")

        listed = await hub.services.async_call("catalog", "products", {"language": "ru"})
        assert [p["display_name"] for p in listed["products"]] == ["Батончик", "Кола", "Tea"]

        removed = await hub.services.async_call("catalog", "remove_product", {"sku": "tea"})
        assert removed["database"] == "deleted"
        assert sorted(await database(recorder, active_only=False)) == ["bar", "cola_330"]

        for data, message in [
            ({"sku": "x", "name": "X", "names": {"de": "X"}}, "unknown language 'de'"),
            ({"sku": "x", "name": "X", "image": "missing.png"}, "no image file missing.png"),
            ({"sku": "x"}, "name: required key not provided"),
        ]:
            with pytest.raises(InvalidServiceData, match=message):
                await hub.services.async_call("catalog", "upsert_product", data)
        with pytest.raises(InvalidServiceData, match="no product with sku 'tea'"):
            await hub.services.async_call("catalog", "remove_product", {"sku": "tea"})

        price = await hub.services.async_call(
            "catalog", "price_at", {"machine_id": "lobby_1", "slot": "a1", "base_price": 150}
        )
        assert (price["price"], price["price_list"], price["next_change"]) == (200, "office", None)
    finally:
        await stop(hub)

    # The services' changes outlive a restart; the YAML's products are written again.
    hub, recorder = await start(tmp_path)
    try:
        catalog = hub.data[DATA_CATALOG]
        assert sorted(catalog.products) == ["bar", "cola_330"]
        assert sorted(await database(recorder)) == ["bar", "cola_330"]
    finally:
        await stop(hub)
