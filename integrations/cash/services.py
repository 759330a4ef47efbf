"""The ``cash.*`` services: record a counted collection, report on collections, report levels."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.recorder.convert import context_id_to_bytes
from vendhub.util.dt import utcnow

from .accounting import (
    MAX_COLLECTION_ID_CHARS,
    CollectionInput,
    collections,
    describe,
    record_collection,
)
from .levels import DOMAIN, EVENT_CASH_LEVELS_REPORTED, CashLevels

if TYPE_CHECKING:
    from vendhub.core.events import Event
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall
    from vendhub.recorder.recorder import Recorder

_LOGGER = logging.getLogger(__name__)

ALARM_CODE = "cash_discrepancy"
EVENT_CASH_COLLECTION_RECORDED = "cash_collection_recorded"
MACHINE_ID = vol.All(cv.string, vol.Length(min=1, max=64))


def _tubes(value: Any) -> dict[int, int]:
    if not isinstance(value, dict):
        raise vol.Invalid("expected tubes as {coin value in minor units: coins in the tube}")
    tubes: dict[int, int] = {}
    for coin, count in value.items():
        try:
            coin_value = int(coin)
        except (TypeError, ValueError):
            raise vol.Invalid(f"a coin's value is whole minor units, got {coin!r}") from None
        if coin_value <= 0:
            raise vol.Invalid(f"a coin's value is more than 0, got {coin!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise vol.Invalid(
                f"the tube of {coin_value} holds a whole number of coins, got {count!r}"
            )
        tubes[coin_value] = count
    return tubes


RECORD_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): MACHINE_ID,
        vol.Required("counted"): cv.money_minor_units,
        vol.Optional("currency"): cv.currency,
        vol.Required("collected_by"): vol.All(cv.string, vol.Length(min=1, max=64)),
        vol.Optional("collected_at"): cv.aware_datetime,
        vol.Optional("collection_id"): vol.All(
            cv.string, vol.Length(min=1, max=MAX_COLLECTION_ID_CHARS)
        ),
    }
)
COLLECTIONS_SCHEMA = vol.Schema(
    {
        vol.Optional("machine_id"): MACHINE_ID,
        vol.Optional("since"): cv.aware_datetime,
        vol.Optional("until"): cv.aware_datetime,
        vol.Optional("limit", default=100): vol.All(int, vol.Range(min=1, max=1000)),
    }
)
LEVELS_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): MACHINE_ID,
        vol.Optional("currency"): cv.currency,
        vol.Required("tubes"): _tubes,
        vol.Optional("cash_box"): cv.money_minor_units,
        vol.Optional("source"): vol.All(cv.string, vol.Length(max=64)),
    }
)


@dataclass(frozen=True, slots=True)
class CashSettings:
    """The validated ``cash:`` block."""

    tolerance: int
    severity: str
    machine_tolerance: dict[str, int]

    def tolerance_of(self, machine_id: str) -> int:
        return self.machine_tolerance.get(machine_id, self.tolerance)


class CashAccounting:
    """Records collections, raises discrepancy alarms, follows level reports."""

    def __init__(self, hub: Hub, recorder: Recorder, settings: CashSettings) -> None:
        self.hub = hub
        self.recorder = recorder
        self.settings = settings
        self.levels = CashLevels(hub)

    async def async_record(self, call: ServiceCall) -> dict[str, Any]:
        """Record a counted collection; a difference beyond the tolerance raises an alarm."""
        data = call.data
        machine_id = data["machine_id"]
        box_level, box_currency = self.levels.box_level(machine_id)
        currency = data.get("currency") or box_currency or self.hub.config.currency
        collected_at = data.get("collected_at") or utcnow()
        given = CollectionInput(
            machine_id=machine_id,
            collection_id=data.get("collection_id") or uuid.uuid4().hex,
            counted=data["counted"],
            currency=currency,
            collected_by=data["collected_by"],
            collected_ts=collected_at.timestamp(),
            tolerance=self.settings.tolerance_of(machine_id),
            box_level=box_level if box_currency in (None, currency) else None,
            context_id=context_id_to_bytes(call.context.id),
        )
        # The machine's own cash_collected events are queued to the writer: commit them first.
        await self.recorder.async_flush()
        result = await self.recorder.async_query(record_collection, given)
        answer = result.as_dict()
        if result.duplicate:
            return answer
        await self.levels.async_collection(answer, call.context)
        self.hub.bus.async_fire(EVENT_CASH_COLLECTION_RECORDED, answer, context=call.context)
        if result.discrepancy:
            await self.hub.services.async_call(
                "alarm",
                "raise",
                {
                    "code": ALARM_CODE,
                    "machine_id": machine_id,
                    "severity": self.settings.severity,
                    "message": describe(result),
                    "data": {
                        key: answer[key]
                        for key in (
                            "collection_id",
                            "counted",
                            "expected",
                            "difference",
                            "currency",
                            "collected_by",
                            "expected_source",
                            "tolerance",
                        )
                    },
                },
                context=call.context,
            )
        return answer

    async def async_collections(self, call: ServiceCall) -> dict[str, Any]:
        """Counted collections with their comparison, totals, and collections not yet counted."""
        since = call.data.get("since")
        until = call.data.get("until")
        await self.recorder.async_flush()  # machine collections still queued to the writer
        return await self.recorder.async_query(
            collections,
            call.data.get("machine_id"),
            since.timestamp() if since else None,
            until.timestamp() if until else None,
            call.data["limit"],
        )

    def report_levels(self, call: ServiceCall) -> None:
        """Report a machine's coin tube levels (and cash box) as its cash provider counts them."""
        data = dict(call.data)
        data.setdefault("currency", self.hub.config.currency)
        self.hub.bus.async_fire(EVENT_CASH_LEVELS_REPORTED, data, context=call.context)

    async def async_on_levels(self, event: Event) -> None:
        """A ``cash_levels_reported`` from a cash provider or ``cash.report_levels``."""
        try:
            data = LEVELS_SCHEMA(dict(event.data))
        except vol.Invalid as error:
            _LOGGER.warning("Ignored a cash_levels_reported that is not valid: %s", error)
            return
        data.setdefault("currency", self.hub.config.currency)
        await self.levels.async_report(data, event.context)


def register_services(hub: Hub, accounting: CashAccounting) -> None:
    """Register ``cash.record_collection``, ``cash.collections`` and ``cash.report_levels``."""
    hub.services.async_register(DOMAIN, "record_collection", accounting.async_record, RECORD_SCHEMA)
    hub.services.async_register(
        DOMAIN, "collections", accounting.async_collections, COLLECTIONS_SCHEMA, read_only=True
    )
    hub.services.async_register(DOMAIN, "report_levels", accounting.report_levels, LEVELS_SCHEMA)
