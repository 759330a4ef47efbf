"""Cash accounting: counted collections against what machines reported, and cash levels.

Services ``cash.record_collection`` (a route driver's counted collection, compared with what
the machine reported since the last one; a difference beyond the tolerance raises the
``cash_discrepancy`` alarm), ``cash.collections`` (the report) and ``cash.report_levels``
(coin tubes and cash box from a local cash provider). Entities per machine: coin tubes, a
local cash box, the last counted collection. Details: README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.plugins import hookimpl
from vendhub.recorder.recorder import RecorderNotRunning, get_recorder

from .levels import DOMAIN, EVENT_CASH_LEVELS_REPORTED
from .services import (
    DEFAULT_MAX_AMOUNT,
    MAX_STORABLE_AMOUNT,
    CashAccounting,
    CashSettings,
    register_services,
)

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

DATA_CASH = DOMAIN
SEVERITIES = ("info", "warning", "critical")

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("tolerance", default=0): cv.money_minor_units,
        vol.Optional("severity", default="critical"): vol.In(SEVERITIES),
        vol.Optional("max_amount", default=DEFAULT_MAX_AMOUNT): vol.All(
            cv.money_minor_units,
            vol.Range(
                min=1,
                max=MAX_STORABLE_AMOUNT,
                msg=f"expected 1 to {MAX_STORABLE_AMOUNT:,} minor units (the ledger's limit)",
            ),
        ),
        vol.Optional("machines", default=dict): {
            cv.string: {vol.Required("tolerance"): cv.money_minor_units}
        },
    }
)


class CashSetupError(Exception):
    """Cash accounting cannot start; the message says what to change."""


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``cash:`` block: tolerance and largest amount (minor units), alarm severity,
    per-machine tolerances."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: dict[str, Any] | None) -> Any:
    """Register the services and follow cash level reports."""
    return _async_setup(hub, CONFIG_SCHEMA(dict(config or {})))


async def _async_setup(hub: Hub, config: dict[str, Any]) -> None:
    try:
        recorder = get_recorder(hub)
    except RecorderNotRunning as error:
        raise CashSetupError(
            f"cash accounting records in the recorder's database, but {error}"
        ) from None
    settings = CashSettings(
        tolerance=config["tolerance"],
        severity=config["severity"],
        max_amount=config["max_amount"],
        machine_tolerance={
            str(machine_id): block["tolerance"] for machine_id, block in config["machines"].items()
        },
    )
    accounting = CashAccounting(hub, recorder, settings)
    hub.data[DATA_CASH] = accounting
    unsubscribe = hub.bus.async_listen(EVENT_CASH_LEVELS_REPORTED, accounting.async_on_levels)
    hub.data[f"{DATA_CASH}.unsubscribe"] = unsubscribe
    register_services(hub, accounting)


@hookimpl
def vendhub_unload(hub: Hub) -> None:
    """Stop following level reports; the records stay in the database."""
    unsubscribe = hub.data.pop(f"{DATA_CASH}.unsubscribe", None)
    if unsubscribe is not None:
        unsubscribe()
    hub.data.pop(DATA_CASH, None)
