"""The simulator's services: force a sale, restock, open or close a door, stop a compressor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config.validators import boolean, slug, string
from vendhub.core.errors import InvalidServiceData
from vendhub.machine.virtual import PAYMENT_METHODS, UnknownSlot, VirtualMachine

from .const import (
    DOMAIN,
    SERVICE_RESTOCK,
    SERVICE_SET_COMPRESSOR,
    SERVICE_SET_DOOR,
    SERVICE_VEND,
)
from .runtime import UnknownMachine

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall

    from .runtime import SimulatorRuntime

VEND_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): slug,
        vol.Required("slot"): string,
        vol.Optional("payment_method", default="cash"): vol.In(PAYMENT_METHODS),
    }
)
RESTOCK_SCHEMA = vol.Schema({vol.Required("machine_id"): slug, vol.Optional("slot"): string})
SET_DOOR_SCHEMA = vol.Schema({vol.Required("machine_id"): slug, vol.Required("open"): boolean})
LOCK_SLOTS_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): slug,
        vol.Optional("slots"): vol.All(
            vol.Any(str, [str]), lambda v: [v] if isinstance(v, str) else v
        ),
        vol.Optional("locked", default=True): boolean,
    }
)
SET_COMPRESSOR_SCHEMA = vol.Schema(
    {vol.Required("machine_id"): slug, vol.Required("enabled"): boolean}
)


def register_services(hub: Hub, runtime: SimulatorRuntime) -> None:
    """Register ``simulator.vend``, ``restock``, ``set_door`` and ``set_compressor``."""

    def target(call: ServiceCall) -> tuple[str, VirtualMachine, str | None]:
        """The call's machine id, machine, and slot code (None when the call names no slot)."""
        machine_id = call.data["machine_id"]
        try:
            machine = runtime.machine(machine_id)
            code = runtime.slot_code(machine, call.data["slot"]) if "slot" in call.data else None
        except (UnknownMachine, UnknownSlot) as error:
            raise InvalidServiceData(DOMAIN, call.service, str(error.args[0])) from None
        return machine_id, machine, code

    async def vend(call: ServiceCall) -> dict[str, Any]:
        """Make a customer buy from a slot now; returns the outcome."""
        machine_id, machine, code = target(call)
        assert code is not None  # the schema requires a slot
        messages = machine.vend(code, call.data["payment_method"])
        await runtime.async_feed(machine_id, messages, call.context)
        outcome = messages[-1]
        data = outcome["data"]
        return {
            "machine_id": machine_id,
            "slot": code,
            "product": data["product"],
            "price": data["price"],
            "currency": hub.config.currency,
            "payment_method": data["payment_method"],
            "outcome": "completed" if outcome["event"] == "vend_completed" else "failed",
            "reason": data.get("reason"),
            "stock": data["stock"],
            "event_id": outcome["id"],
            "vend_id": data["vend_id"],
        }

    async def restock(call: ServiceCall) -> dict[str, Any]:
        """Fill one slot, or every slot of a machine, to capacity."""
        machine_id, machine, code = target(call)
        messages = machine.restock(code)
        await runtime.async_feed(machine_id, messages, call.context)
        return {"machine_id": machine_id, "slots": dict(messages[-1]["data"]["slots"])}

    async def set_door(call: ServiceCall) -> dict[str, Any]:
        """Open or close a machine's door; it stays so until set again."""
        machine_id, machine, _ = target(call)
        await runtime.async_feed(machine_id, machine.set_door(call.data["open"]), call.context)
        return {"machine_id": machine_id, "door": "open" if machine.door_open else "closed"}

    async def set_compressor(call: ServiceCall) -> dict[str, Any]:
        """Let a machine's compressor run, or stop it (to test temperature alarms)."""
        machine_id, machine, _ = target(call)
        if not machine.refrigerated:
            raise InvalidServiceData(
                DOMAIN, SERVICE_SET_COMPRESSOR, f"machine {machine_id} is not refrigerated"
            )
        machine.set_compressor(call.data["enabled"])
        return {"machine_id": machine_id, "compressor_enabled": machine.compressor_enabled}

    async def lock_slots(call: ServiceCall) -> dict[str, Any]:
        """Stop selling from some slots (or all), or sell again with locked: false."""
        machine_id, machine, _ = target(call)
        codes = None
        if "slots" in call.data:
            try:
                codes = [runtime.slot_code(machine, code) for code in call.data["slots"]]
            except UnknownSlot as error:
                raise InvalidServiceData(DOMAIN, call.service, str(error.args[0])) from None
        messages = machine.lock_slots(codes, call.data["locked"])
        await runtime.async_feed(machine_id, messages, call.context)
        return {"machine_id": machine_id, "slots": dict(messages[-1]["data"]["slots"])}

    register = hub.services.async_register
    register(DOMAIN, SERVICE_VEND, vend, VEND_SCHEMA)
    register(DOMAIN, SERVICE_RESTOCK, restock, RESTOCK_SCHEMA)
    register(DOMAIN, SERVICE_SET_DOOR, set_door, SET_DOOR_SCHEMA)
    register(DOMAIN, SERVICE_SET_COMPRESSOR, set_compressor, SET_COMPRESSOR_SCHEMA)
    register(DOMAIN, "lock_slots", lock_slots, LOCK_SLOTS_SCHEMA)
