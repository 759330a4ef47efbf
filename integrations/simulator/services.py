"""The simulator's services: force a sale, restock, open or close a door, stop a compressor,
lock slots, and change a machine's mode, prices and planogram (``set_config``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config.validators import (
    boolean,
    money_minor_units,
    non_negative_int,
    positive_int,
    slot_capacity,
    slug,
    string,
)
from vendhub.core.errors import InvalidServiceData
from vendhub.helpers.entity_platform import async_add_entities
from vendhub.machine import protocol
from vendhub.machine.entities import SlotEntity
from vendhub.machine.virtual import PAYMENT_METHODS, Slot, UnknownSlot, VirtualMachine

from .const import (
    DOMAIN,
    MAX_CASH_INSERT,
    PURCHASE_METHODS,
    SERVICE_PURCHASE_CANCEL,
    SERVICE_PURCHASE_INSERT_CASH,
    SERVICE_PURCHASE_OPTIONS,
    SERVICE_PURCHASE_PAY,
    SERVICE_PURCHASE_START,
    SERVICE_PURCHASE_STATUS,
    SERVICE_RESTOCK,
    SERVICE_SET_COMPRESSOR,
    SERVICE_SET_DOOR,
    SERVICE_VEND,
)
from .purchase import PurchaseError
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
SERVICE_SET_CONFIG = "set_config"
# As mqtt.publish_config's data: the mode, and per slot the changes to its plan.
SLOT_CHANGES_SCHEMA = vol.Schema(
    {
        vol.Optional("product"): vol.All(string, vol.Length(min=1, max=255)),
        vol.Optional("price"): money_minor_units,
        vol.Optional("capacity"): slot_capacity,
        vol.Optional("par"): non_negative_int,
    }
)
SET_CONFIG_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): slug,
        vol.Optional("mode"): vol.In(
            protocol.MODES, msg=f"expected one of {', '.join(protocol.MODES)}"
        ),
        # Slot codes as the protocol allows them (new slots too), as mqtt.publish_config.
        vol.Optional("slots"): {protocol.SLOT_CODE: SLOT_CHANGES_SCHEMA},
    }
)


# The simulated purchase behind the kiosk (purchase.py). Every call names its machine, so
# a WebSocket caller's reach over machines applies to purchases too.
PURCHASE_ID = vol.All(string, vol.Match(r"^[0-9a-f]{32}$", msg="expected a purchase id"))
PURCHASE_OPTIONS_SCHEMA = vol.Schema({vol.Required("machine_id"): slug})
PURCHASE_START_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): slug,
        vol.Required("slot"): string,
        vol.Required("method"): vol.In(
            PURCHASE_METHODS, msg=f"expected one of {', '.join(PURCHASE_METHODS)}"
        ),
    }
)
PURCHASE_SCHEMA = vol.Schema(
    {vol.Required("machine_id"): slug, vol.Required("purchase_id"): PURCHASE_ID}
)
PURCHASE_PAY_SCHEMA = PURCHASE_SCHEMA.extend({vol.Optional("decline", default=False): boolean})
PURCHASE_CASH_SCHEMA = PURCHASE_SCHEMA.extend(
    {vol.Required("amount"): vol.All(positive_int, vol.Range(max=MAX_CASH_INSERT))}
)


def register_services(hub: Hub, runtime: SimulatorRuntime) -> None:
    """Register ``simulator.vend``, ``restock``, ``set_door``, ``set_compressor``,
    ``lock_slots``, ``set_config`` and the simulated purchase's ``purchase_*`` services."""

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

    def slot_plans(
        call: ServiceCall, machine_id: str, machine: VirtualMachine
    ) -> dict[str, dict[str, Any]]:
        """The new plan of every slot the call changes, checked before anything changes."""
        bundle = runtime.entities[machine_id]
        plans: dict[str, dict[str, Any]] = {}
        for code, changes in call.data.get("slots", {}).items():
            try:
                own: str | None = runtime.slot_code(machine, code)
            except UnknownSlot:
                own = None
            if own is None:
                missing = [key for key in ("product", "price", "capacity") if key not in changes]
                if missing:
                    raise InvalidServiceData(
                        DOMAIN,
                        call.service,
                        f"machine {machine_id} has no slot {code!r}; to add it, give its "
                        f"{', '.join(missing)}",
                    )
                if any(other.lower() == code.lower() for other in plans):
                    raise InvalidServiceData(
                        DOMAIN, call.service, f"slot {code!r} is given twice (codes ignore case)"
                    )
                plan = dict(changes)
                plan.setdefault("par", max(1, plan["capacity"] // 4))
                plans[code] = plan
                continue
            slot, entity = machine.slots[own], bundle.slot(own)
            plan = {
                "product": changes.get("product", slot.product),
                "price": changes.get("price", slot.price),
                "capacity": changes.get("capacity", slot.capacity),
                "par": entity.par if entity is not None else max(1, slot.capacity // 4),
            }
            plan["par"] = changes.get("par", min(plan["par"], plan["capacity"]))
            plans[own] = plan
        for code, plan in plans.items():
            if plan["par"] > plan["capacity"]:
                raise InvalidServiceData(
                    DOMAIN,
                    call.service,
                    f"slot {code}: par may be at most its capacity {plan['capacity']}, "
                    f"got {plan['par']}",
                )
        return plans

    async def set_config(call: ServiceCall) -> dict[str, Any]:
        """Change a machine's mode or its slots' product, price, capacity and par.

        The same data as mqtt.publish_config; a virtual machine applies it at once. New slot
        codes add slots (empty until restocked). The mode is shown on ``machine.<id>`` only:
        the virtual machine keeps selling in every mode.
        """
        machine_id, machine, _ = target(call)
        plans = slot_plans(call, machine_id, machine)
        bundle = runtime.entities[machine_id]
        change = call.context.child()
        if "mode" in call.data:
            bundle.machine.mode = call.data["mode"]
            bundle.machine.async_write_state(change)
        new_slots: list[SlotEntity] = []
        for code, plan in plans.items():
            slot = machine.slots.get(code)
            if slot is None:
                slot = machine.slots[code] = Slot(
                    code, plan["product"], plan["price"], plan["capacity"], stock=0
                )
            else:
                slot.product, slot.price, slot.capacity = (
                    plan["product"],
                    plan["price"],
                    plan["capacity"],
                )
                slot.stock = min(slot.stock, slot.capacity)
            entity = bundle.slot(code)
            if entity is None:
                entity = SlotEntity(
                    bundle.machine.info,
                    code,
                    plan["product"],
                    plan["price"],
                    plan["capacity"],
                    slot.stock,
                    plan["par"],
                )
                entity.set_available(bundle.machine.online)
                bundle.add_slot(entity)
                new_slots.append(entity)
                continue
            entity.set_plan(plan["product"], plan["price"], plan["capacity"], plan["par"])
            if entity.stock > slot.stock:
                entity.set_stock(slot.stock)
            entity.async_write_state(change)
        if new_slots:
            await async_add_entities(hub, DOMAIN, new_slots)
        return {
            "machine_id": machine_id,
            "mode": bundle.machine.mode,
            "slots": {
                code: {
                    "product": entity.product,
                    "price": entity.price,
                    "capacity": entity.capacity,
                    "par": entity.par,
                }
                for code, entity in bundle.slots.items()
            },
            "applied": True,
        }

    purchases = runtime.purchases

    def purchase_call(call: ServiceCall, action: Any) -> dict[str, Any]:
        try:
            result = action()
        except (UnknownMachine, UnknownSlot) as error:
            raise InvalidServiceData(DOMAIN, call.service, str(error.args[0])) from None
        except PurchaseError as error:
            raise InvalidServiceData(DOMAIN, call.service, error.message) from None
        return result if isinstance(result, dict) else result.as_dict()

    def purchase_options(call: ServiceCall) -> dict[str, Any]:
        """What a machine's kiosk offers: its payment methods, and its open purchase."""
        return purchase_call(call, lambda: purchases.options(call.data["machine_id"]))

    def purchase_start(call: ServiceCall) -> dict[str, Any]:
        """A customer picks a slot and a payment method: a purchase session (SIMULATED)."""
        data = call.data
        return purchase_call(
            call,
            lambda: purchases.start(data["machine_id"], data["slot"], data["method"], call.context),
        )

    def purchase_pay(call: ServiceCall) -> dict[str, Any]:
        """The simulated card or QR payment approves now (or declines with decline: true)."""
        data = call.data
        return purchase_call(
            call,
            lambda: purchases.pay(data["machine_id"], data["purchase_id"], decline=data["decline"]),
        )

    def purchase_insert_cash(call: ServiceCall) -> dict[str, Any]:
        """A simulated coin or note (amount in minor units) goes into a cash purchase."""
        data = call.data
        return purchase_call(
            call,
            lambda: purchases.insert_cash(data["machine_id"], data["purchase_id"], data["amount"]),
        )

    def purchase_cancel(call: ServiceCall) -> dict[str, Any]:
        """Cancel a purchase that waits for payment; inserted cash is returned."""
        data = call.data
        return purchase_call(
            call, lambda: purchases.cancel(data["machine_id"], data["purchase_id"])
        )

    def purchase_status(call: ServiceCall) -> dict[str, Any]:
        """One purchase session as it is now."""
        data = call.data
        return purchase_call(call, lambda: purchases.get(data["machine_id"], data["purchase_id"]))

    register = hub.services.async_register
    register(DOMAIN, SERVICE_VEND, vend, VEND_SCHEMA)
    register(DOMAIN, SERVICE_RESTOCK, restock, RESTOCK_SCHEMA)
    register(DOMAIN, SERVICE_SET_DOOR, set_door, SET_DOOR_SCHEMA)
    register(DOMAIN, SERVICE_SET_COMPRESSOR, set_compressor, SET_COMPRESSOR_SCHEMA)
    register(DOMAIN, "lock_slots", lock_slots, LOCK_SLOTS_SCHEMA)
    register(DOMAIN, SERVICE_SET_CONFIG, set_config, SET_CONFIG_SCHEMA)
    register(
        DOMAIN,
        SERVICE_PURCHASE_OPTIONS,
        purchase_options,
        PURCHASE_OPTIONS_SCHEMA,
        read_only=True,
    )
    register(DOMAIN, SERVICE_PURCHASE_START, purchase_start, PURCHASE_START_SCHEMA)
    register(DOMAIN, SERVICE_PURCHASE_PAY, purchase_pay, PURCHASE_PAY_SCHEMA)
    register(DOMAIN, SERVICE_PURCHASE_INSERT_CASH, purchase_insert_cash, PURCHASE_CASH_SCHEMA)
    register(DOMAIN, SERVICE_PURCHASE_CANCEL, purchase_cancel, PURCHASE_SCHEMA)
    register(DOMAIN, SERVICE_PURCHASE_STATUS, purchase_status, PURCHASE_SCHEMA, read_only=True)
