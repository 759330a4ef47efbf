"""Cash levels per machine as entities: coin tubes, the cash box, the last counted collection.

Protocol v1 machines report their cash box (``sensor.<id>_cash_box``, kept by the machine
link); nothing in it carries coin tube levels. A machine driven by this hub has a local cash
provider (an MDB coin changer) that knows both: it reports them by firing
``cash_levels_reported`` (or anything may call ``cash.report_levels``, which fires it)::

    {"machine_id": "lobby_1", "currency": "EUR", "tubes": {"10": 25, "50": 12, "100": 8},
     "cash_box": 4350, "source": "mdb"}

``tubes`` maps a coin's value in minor units to the coins in its tube; ``cash_box`` is
optional. From these the integration keeps:

- ``sensor.<id>_coin_tubes``: the value of the coins in the tubes (minor units), with the
  coins per tube, their total count and the currency as attributes;
- ``sensor.<id>_cash_box``: the cash box, only for a machine whose link does not already keep
  one (the link's figure is the machine's own, and wins);
- ``sensor.<id>_last_cash_collection``: the last counted collection (counted amount), with
  expected, difference, who and when as attributes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vendhub.helpers.entity import Entity
from vendhub.helpers.entity_platform import async_add_entities

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DOMAIN = "cash"
EVENT_CASH_LEVELS_REPORTED = "cash_levels_reported"


class _CashSensor(Entity):
    domain = "sensor"

    def __init__(self, machine_id: str, what: str, name: str) -> None:
        self.machine_id = machine_id
        self._attr_suggested_object_id = f"{machine_id}_{what}"
        self._attr_unique_id = f"{machine_id}_{what}"
        self._attr_name = name
        self._attr_extra_state_attributes: dict[str, Any] = {}


class CoinTubesSensor(_CashSensor):
    """``sensor.<id>_coin_tubes``: the value of the coins in the changer's tubes."""

    _attr_icon = "mdi:hand-coin-outline"

    def __init__(self, machine_id: str) -> None:
        super().__init__(machine_id, "coin_tubes", f"{machine_id} coin tubes")

    def set_tubes(self, tubes: dict[int, int], currency: str, source: str | None) -> None:
        self._attr_state = sum(value * count for value, count in tubes.items())
        self._attr_extra_state_attributes = {
            "currency": currency,
            "tubes": {str(value): count for value, count in sorted(tubes.items())},
            "coins": sum(tubes.values()),
            "source": source,
        }


class LocalCashBoxSensor(_CashSensor):
    """``sensor.<id>_cash_box`` for a machine whose cash box only its local provider knows."""

    _attr_icon = "mdi:cash"

    def __init__(self, machine_id: str) -> None:
        super().__init__(machine_id, "cash_box", f"{machine_id} cash box")

    def set_amount(self, amount: int, currency: str) -> None:
        self._attr_state = amount
        self._attr_extra_state_attributes = {"currency": currency}


class LastCollectionSensor(_CashSensor):
    """``sensor.<id>_last_cash_collection``: what the last counted collection held."""

    _attr_icon = "mdi:cash-check"

    def __init__(self, machine_id: str) -> None:
        super().__init__(machine_id, "last_cash_collection", f"{machine_id} last cash collection")

    def set_collection(self, result: dict[str, Any]) -> None:
        self._attr_state = result["counted"]
        self._attr_extra_state_attributes = {
            key: result[key]
            for key in (
                "currency",
                "expected",
                "difference",
                "status",
                "collected_by",
                "collected_ts",
                "collection_id",
            )
        }


class CashLevels:
    """Creates and updates the cash entities of each machine as reports arrive."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.tubes: dict[str, CoinTubesSensor] = {}
        self.boxes: dict[str, LocalCashBoxSensor] = {}
        self.collections: dict[str, LastCollectionSensor] = {}

    async def async_report(self, data: dict[str, Any], context: Context | None) -> None:
        """Apply one validated ``cash_levels_reported``."""
        machine_id = data["machine_id"]
        currency = data["currency"]
        sensor = self.tubes.get(machine_id)
        if sensor is None:
            sensor = self.tubes[machine_id] = CoinTubesSensor(machine_id)
            sensor.set_tubes(data["tubes"], currency, data.get("source"))
            await async_add_entities(self.hub, DOMAIN, [sensor])
        else:
            sensor.set_tubes(data["tubes"], currency, data.get("source"))
            sensor.async_write_state(context)
        if "cash_box" in data:
            await self._async_box(machine_id, data["cash_box"], currency, context)

    async def _async_box(
        self, machine_id: str, amount: int, currency: str, context: Context | None
    ) -> None:
        box = self.boxes.get(machine_id)
        if box is None:
            if self.hub.states.get(f"sensor.{machine_id}_cash_box") is not None:
                _LOGGER.debug(
                    "%s's link keeps its cash box; the local figure is not shown", machine_id
                )
                return
            box = self.boxes[machine_id] = LocalCashBoxSensor(machine_id)
            box.set_amount(amount, currency)
            await async_add_entities(self.hub, DOMAIN, [box])
            return
        box.set_amount(amount, currency)
        box.async_write_state(context)

    async def async_collection(self, result: dict[str, Any], context: Context | None) -> None:
        """Show a newly recorded collection."""
        machine_id = result["machine_id"]
        sensor = self.collections.get(machine_id)
        if sensor is None:
            sensor = self.collections[machine_id] = LastCollectionSensor(machine_id)
            sensor.set_collection(result)
            await async_add_entities(self.hub, DOMAIN, [sensor])
            return
        sensor.set_collection(result)
        sensor.async_write_state(context)

    def box_level(self, machine_id: str) -> tuple[int | None, str | None]:
        """The cash box level the hub shows for the machine now, and its currency."""
        state = self.hub.states.get(f"sensor.{machine_id}_cash_box")
        if state is None:
            return None, None
        try:
            level = int(state.state)
        except (TypeError, ValueError):
            return None, state.attributes.get("currency")
        return level, state.attributes.get("currency")
