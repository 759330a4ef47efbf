"""The ``cash.*`` services: record a counted collection, report on collections, report levels."""

from __future__ import annotations

import difflib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.core.errors import InvalidServiceData
from vendhub.machine.fleet import Fleet
from vendhub.recorder.convert import context_id_to_bytes
from vendhub.util.dt import utcnow
from vendhub.util.text import shorten

from .accounting import (
    MAX_COLLECTION_ID_CHARS,
    CashAccountingError,
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

DEFAULT_MAX_AMOUNT = 100_000_000
"""The largest amount (minor units) a collection, a cash box or the coin tubes may hold unless
``cash: max_amount`` says otherwise: 1,000,000.00 in a currency of cents."""
MAX_STORABLE_AMOUNT = 2**31 - 1
"""The ledger's amount columns are 32-bit on PostgreSQL and MariaDB."""
FUTURE_ALLOWANCE = timedelta(minutes=5)
"""How far ahead of the hub's clock ``collected_at`` may be (a handheld's clock drifts)."""
MAX_AGE = timedelta(days=366)
"""How long ago ``collected_at`` may be: a count entered more than a year after the
collection is a mistyped date, and it cannot be checked against what the machine reported."""
MAX_MACHINES_LISTED = 10


class Refused(ValueError):
    """Data that passes the schema but that the cash integration does not take; the message
    names the field, the problem and the fix."""


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
        # cv.positive_int, not int: True is an int to isinstance, and was taken as 1.
        vol.Optional("limit", default=100): vol.All(
            cv.positive_int, vol.Range(max=1000, msg="expected a limit of 1 to 1000")
        ),
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
    max_amount: int = DEFAULT_MAX_AMOUNT

    def tolerance_of(self, machine_id: str) -> int:
        return self.machine_tolerance.get(machine_id, self.tolerance)


class CashAccounting:
    """Records collections, raises discrepancy alarms, follows level reports."""

    def __init__(self, hub: Hub, recorder: Recorder, settings: CashSettings) -> None:
        self.hub = hub
        self.recorder = recorder
        self.settings = settings
        self.levels = CashLevels(hub)

    # ---- checks of what a call or a level report says -------------------------------------

    def machine_currency(self, machine_id: str) -> str:
        """The currency of a machine the hub has (``Refused`` for one it does not have): its
        ``machine.<id>`` entity's, else its cash box's, else the hub's."""
        fleet = Fleet(self.hub)
        machine = fleet.get(machine_id)
        if machine is None:
            raise Refused(_unknown_machine(machine_id, list(fleet.machines)))
        _, box_currency = self.levels.box_level(machine_id)
        return machine.currency or box_currency or self.hub.config.currency

    def check_amount(self, name: str, amount: int) -> None:
        """``Refused`` for an amount above ``max_amount`` (the schema refuses negative ones)."""
        if amount > self.settings.max_amount:
            raise Refused(
                f"{name}: {shorten(f'{amount:,}')} minor units is more than the "
                f"{self.settings.max_amount:,} that cash accounting takes; check the figure "
                f"(a larger one needs cash: max_amount raised)"
            )

    def checked_levels(self, data: dict[str, Any]) -> dict[str, Any]:
        """A schema-valid level report with its currency filled in, or ``Refused``."""
        machine_id = data["machine_id"]
        currency = self.machine_currency(machine_id)
        given = data.get("currency")
        if given is not None and given != currency:
            raise Refused(
                f"currency: {machine_id} takes {currency}, not {given}; report its cash in "
                f"{currency} (or leave currency out)"
            )
        tubes_value = sum(coin * count for coin, count in data["tubes"].items())
        self.check_amount("tubes (the coins' value)", tubes_value)
        if "cash_box" in data:
            self.check_amount("cash_box", data["cash_box"])
        return {**data, "currency": currency}

    # ---- services ------------------------------------------------------------------------

    async def async_record(self, call: ServiceCall) -> dict[str, Any]:
        """Record a counted collection; a difference beyond the tolerance raises an alarm."""
        data = call.data
        machine_id = data["machine_id"]
        try:
            currency = self.machine_currency(machine_id)
            if data.get("currency", currency) != currency:
                raise Refused(
                    f"currency: {machine_id} takes {currency}, not {data['currency']}; count "
                    f"the collection in {currency} (or leave currency out)"
                )
            self.check_amount("counted", data["counted"])
            collected_at = _collected_at(data.get("collected_at"))
        except Refused as refused:
            raise InvalidServiceData(DOMAIN, call.service, str(refused)) from None
        box_level, box_currency = self.levels.box_level(machine_id)
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
        try:
            result = await self.recorder.async_query(record_collection, given)
        except CashAccountingError as refused:
            raise InvalidServiceData(DOMAIN, call.service, str(refused)) from None
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
        try:
            data = self.checked_levels(dict(call.data))
        except Refused as refused:
            raise InvalidServiceData(DOMAIN, call.service, str(refused)) from None
        self.hub.bus.async_fire(EVENT_CASH_LEVELS_REPORTED, data, context=call.context)

    async def async_on_levels(self, event: Event) -> None:
        """A ``cash_levels_reported`` from a cash provider or ``cash.report_levels``."""
        try:
            data = LEVELS_SCHEMA(dict(event.data))
            data = self.checked_levels(data)
        except (vol.Invalid, Refused) as error:
            _LOGGER.warning("Ignored a cash_levels_reported that is not valid: %s", error)
            return
        await self.levels.async_report(data, event.context)


def _unknown_machine(machine_id: str, known: list[str]) -> str:
    close = difflib.get_close_matches(machine_id, known, n=1)
    if close:
        fix = f"did you mean {close[0]!r}?"
    elif known:
        names = sorted(known)
        listed = ", ".join(names[:MAX_MACHINES_LISTED])
        if len(names) > MAX_MACHINES_LISTED:
            listed += f" and {len(names) - MAX_MACHINES_LISTED} more"
        fix = f"give the id of one of its machines: {listed}"
    else:
        fix = "it has none yet: set up or adopt the machine first"
    return f"machine_id: the hub has no machine {shorten(machine_id)!r} (no machine entity); {fix}"


def _collected_at(given: datetime | None) -> datetime:
    """``collected_at`` (default now), or ``Refused`` when it is in the future or too old."""
    now = utcnow()
    if given is None:
        return now
    shown = f"{shorten(given.isoformat())} is"
    if given > now + FUTURE_ALLOWANCE:
        raise Refused(
            f"collected_at: {shown} in the future (the hub's clock says "
            f"{now.isoformat(timespec='seconds')}); give the time the cash was collected, or "
            f"leave collected_at out for now"
        )
    if given < now - MAX_AGE:
        raise Refused(
            f"collected_at: {shown} more than {MAX_AGE.days} days ago; give the time the cash "
            f"was collected (a count is compared with what the machine reported since its "
            f"last counted collection)"
        )
    return given


def register_services(hub: Hub, accounting: CashAccounting) -> None:
    """Register ``cash.record_collection``, ``cash.collections`` and ``cash.report_levels``."""
    hub.services.async_register(DOMAIN, "record_collection", accounting.async_record, RECORD_SCHEMA)
    hub.services.async_register(
        DOMAIN, "collections", accounting.async_collections, COLLECTIONS_SCHEMA, read_only=True
    )
    hub.services.async_register(DOMAIN, "report_levels", accounting.report_levels, LEVELS_SCHEMA)
