"""Time-of-day price lists (the catalog's) on a local machine: the engine charges the price in
force, the slot entities show it, and replaced lists apply at once."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub
from vendhub.util.dt import hub_time_zone
from vendhub.vending.pricing import (
    DATA_PRICING,
    EVENT_PRICE_LISTS_CHANGED,
    PRICE_LISTS_SCHEMA,
    book_from_config,
)

CONFIGURATION = """
vendhub:
  currency: EUR
  time_zone: Europe/Berlin
catalog:
  price_lists:
    lobby:
      machines: [lobby_1]
      prices: {A2: 110}            # a base price of the list, for slot A2
      rules:
        - name: all day
          start: "00:00"
          end: "00:00"             # start equal to end: the whole day, every day
          discount: 20
          slots: [A1]
vending:
  machines:
    lobby_1:
      planogram:
        A1: {product: Cola, price: 150, capacity: 10, stock: 5}
        A2: {product: Water, price: 100, capacity: 10, stock: 5}
      dispenser: {platform: simulator, dispense_time: 0}
      payments:
        - platform: instant
"""


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    (tmp_path / "configuration.yaml").write_text(textwrap.dedent(CONFIGURATION))
    prepared = prepare(tmp_path)
    assert prepared.issues == []
    running, report = await async_start_hub(prepared)
    assert report.failed == {}, report.failed
    yield running
    if not running.is_stopping:
        await running.async_stop()


def price_shown(hub: Hub, slot: str) -> int:
    state = hub.states.get(f"slot.lobby_1_{slot.lower()}")
    assert state is not None
    return int(state.attributes["price"])


async def sell(hub: Hub, slot: str) -> dict:
    return await hub.services.async_call(
        "vending", "select", {"machine_id": "lobby_1", "slot": slot, "method": "card"}
    )


async def test_the_price_in_force_is_shown_and_charged(hub: Hub) -> None:
    assert price_shown(hub, "A1") == 120  # 150 less 20 %, all day
    assert price_shown(hub, "A2") == 110  # the list's base price
    sold = await sell(hub, "A1")
    assert (sold["outcome"], sold["price"]) == ("completed", 120)
    assert (await sell(hub, "A2"))["price"] == 110
    # The machine's planogram keeps the planned price; only what is charged changes.
    assert hub.data["vending"].engine("lobby_1").machine.planogram["A1"].price == 150


async def test_price_lists_replaced_while_running_apply_at_once(hub: Hub) -> None:
    fired = []
    hub.bus.async_listen(EVENT_PRICE_LISTS_CHANGED, fired.append)
    # What the catalog does when its lists are reloaded: a new book, then the event.
    hub.data[DATA_PRICING] = book_from_config(
        PRICE_LISTS_SCHEMA({"evening": {"machines": ["lobby_1"], "prices": {"A1": 175}}}),
        hub_time_zone(hub),
    )
    hub.bus.async_fire(EVENT_PRICE_LISTS_CHANGED, {"lists": ["evening"]})
    assert fired
    assert price_shown(hub, "A1") == 175
    assert price_shown(hub, "A2") == 100  # no list price any more: the planned one
    assert (await sell(hub, "A1"))["price"] == 175

    # Without a price book (the catalog unloaded) the planned prices apply.
    hub.data.pop(DATA_PRICING)
    hub.bus.async_fire(EVENT_PRICE_LISTS_CHANGED, {"lists": []})
    assert price_shown(hub, "A1") == 150
    assert (await sell(hub, "A1"))["price"] == 150


async def test_a_timer_waits_for_the_next_window_edge_only_when_a_list_has_one(hub: Hub) -> None:
    runtime = hub.data["vending"]
    assert runtime._price_timer is not None  # the all-day window ends at midnight
    hub.data[DATA_PRICING] = book_from_config(
        PRICE_LISTS_SCHEMA({"flat": {"machines": ["lobby_1"], "prices": {"A1": 140}}}),
        hub_time_zone(hub),
    )
    hub.bus.async_fire(EVENT_PRICE_LISTS_CHANGED, {"lists": ["flat"]})
    assert runtime._price_timer is None  # a list without rules never changes by itself
