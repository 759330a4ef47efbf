"""The ``vending:`` block of configuration.yaml: local machines, their boards and payments.

A ``dispenser:`` or ``payments:`` entry names a ``platform``. The built-in ones (``simulator``,
``instant``, ``instant_cash``) are checked here with their class's ``OPTIONS``; an entry of a
plugin's platform keeps its YAML node (which remembers file and line) and is checked with the
plugin class's ``OPTIONS`` when the vending integration sets up and asks the plugins for it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.vending.planogram import MachineMode

from .instant_payment import InstantCashProvider, InstantPaymentProvider
from .simulator_board import SimulatorDispenser
from .validators import seconds, slot_code

BUILTIN_DISPENSERS: dict[str, type] = {SimulatorDispenser.platform: SimulatorDispenser}
BUILTIN_PROVIDERS: dict[str, type] = {
    cls.platform: cls for cls in (InstantPaymentProvider, InstantCashProvider)
}

CONF_MACHINES = "machines"
PLATFORM_BASE = {vol.Required("platform"): cv.slug}


@dataclass(frozen=True, slots=True)
class PlatformEntry:
    """One ``dispenser:`` or ``payments:`` entry: its platform and its options."""

    platform: str
    options: Mapping[str, Any]
    """Validated options (built-in platforms); the raw YAML mapping for plugin platforms."""
    validated: bool


def platform_options_schema(cls: type) -> vol.Schema:
    """The schema of one entry of platform class ``cls``."""
    return vol.Schema({**PLATFORM_BASE, **getattr(cls, "OPTIONS", {})})


class PlatformEntrySchema:
    """Validates an entry of a built-in platform now; keeps a plugin's for setup."""

    def __init__(self, kind: str, builtins: Mapping[str, type]) -> None:
        self.kind = kind
        self.builtins = dict(builtins)

    def __call__(self, value: Any) -> PlatformEntry:
        if not isinstance(value, dict):
            raise vol.Invalid(
                f"expected a {self.kind} (a mapping with platform and its options), "
                f"got {cv.describe_value(value)}"
            )
        base = vol.Schema(PLATFORM_BASE, extra=vol.ALLOW_EXTRA)(value)
        cls = self.builtins.get(base["platform"])
        if cls is not None:
            options = platform_options_schema(cls)(value)
            return PlatformEntry(base["platform"], options, validated=True)
        close = difflib.get_close_matches(base["platform"], list(self.builtins), n=1, cutoff=0.8)
        if close:
            raise vol.Invalid(
                f"unknown {self.kind} platform {base['platform']!r}; did you mean {close[0]!r}? "
                f"(built in: {', '.join(self.builtins)}; others come from plugins)",
                path=["platform"],
            )
        return PlatformEntry(base["platform"], value, validated=False)


SLOT_SCHEMA = vol.All(
    {
        vol.Required("product"): cv.string,
        vol.Required("price"): cv.money_minor_units,
        vol.Required("capacity"): cv.slot_capacity,
        vol.Optional("par"): cv.non_negative_int,
        vol.Optional("stock"): cv.non_negative_int,
    },
    lambda slot: _check_slot(slot),
)


def _check_slot(slot: dict[str, Any]) -> dict[str, Any]:
    capacity = slot["capacity"]
    for key in ("par", "stock"):
        if key in slot and slot[key] > capacity:
            raise vol.Invalid(
                f"{key} {slot[key]} is more than the slot's capacity {capacity}", path=[key]
            )
    return slot


TIMEOUTS_SCHEMA = vol.Schema(
    {
        vol.Optional("payment"): seconds,
        vol.Optional("dispense"): seconds,
        vol.Optional("capture"): seconds,
        vol.Optional("void"): seconds,
        vol.Optional("multi_vend"): seconds,
    }
)

MACHINE_SCHEMA = vol.Schema(
    {
        vol.Optional("name"): cv.string,
        vol.Optional("location"): cv.string,
        vol.Optional("currency"): cv.currency,
        vol.Optional("mode", default=MachineMode.normal.value): vol.All(
            cv.one_of(*(mode.value for mode in MachineMode)), vol.Coerce(MachineMode)
        ),
        vol.Required("planogram"): vol.All(
            vol.Length(min=1, msg="a planogram needs at least one slot"),
            {slot_code: SLOT_SCHEMA},
        ),
        vol.Required("dispenser"): PlatformEntrySchema("dispenser", BUILTIN_DISPENSERS),
        vol.Optional("payments", default=list): cv.list_of(
            PlatformEntrySchema("payment provider", BUILTIN_PROVIDERS)
        ),
        vol.Optional("timeouts", default=dict): TIMEOUTS_SCHEMA,
    }
)

CONFIG_SCHEMA = vol.Schema({vol.Required(CONF_MACHINES): {cv.slug: MACHINE_SCHEMA}})
