"""The ``vending.*`` services: select (blocking, returns the session), cancel, session,
set_mode, restock, set_slots."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.core.errors import InvalidServiceData, VendHubError
from vendhub.vending.payment import PaymentMethod
from vendhub.vending.planogram import MachineMode, SlotPlan

from .runtime import DOMAIN
from .validators import seconds, slot_code

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall
    from vendhub.vending.engine import VendEngine

    from .runtime import VendingRuntime

SELECT_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): cv.slug,
        vol.Required("slot"): slot_code,
        vol.Required("method"): cv.one_of(*(method.value for method in PaymentMethod)),
        vol.Optional("token"): cv.string,
        vol.Optional("wait", default=True): cv.boolean,
        vol.Optional("timeout"): seconds,
    }
)
SESSION_SCHEMA = vol.Schema(
    {vol.Required("machine_id"): cv.slug, vol.Required("session_id"): cv.string}
)
MODE_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): cv.slug,
        vol.Required("mode"): cv.one_of(*(mode.value for mode in MachineMode)),
    }
)
RESTOCK_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): cv.slug,
        vol.Optional("slots"): {slot_code: cv.non_negative_int},
        vol.Optional("fill"): vol.All(cv.ensure_list, [slot_code]),
    }
)

SLOT_CHANGES_SCHEMA = vol.Schema(
    {
        vol.Optional("product"): vol.All(cv.string, vol.Length(min=1, max=255)),
        vol.Optional("price"): cv.money_minor_units,
        vol.Optional("capacity"): cv.slot_capacity,
        vol.Optional("par"): cv.non_negative_int,
    }
)


def _mode_or_slots(data: dict[str, Any]) -> dict[str, Any]:
    if "mode" not in data and "slots" not in data:
        raise vol.Invalid("give the mode, the slots to change, or both")
    return data


# The data of simulator.set_config and mqtt.publish_config (fleet.LINK_SERVICES' "config"):
# the mode, and per slot the changes to its plan.
SET_SLOTS_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("machine_id"): cv.slug,
            vol.Optional("mode"): cv.one_of(*(mode.value for mode in MachineMode)),
            vol.Optional("slots"): vol.All(
                {slot_code: SLOT_CHANGES_SCHEMA},
                vol.Length(min=1, msg="name at least one slot"),
            ),
        }
    ),
    _mode_or_slots,
)


def register_services(hub: Hub, runtime: VendingRuntime) -> None:
    def engine(call: ServiceCall) -> VendEngine:
        try:
            return runtime.engine(call.data["machine_id"])
        except KeyError as error:
            raise InvalidServiceData(DOMAIN, call.service, str(error.args[0])) from None

    async def select(call: ServiceCall) -> dict[str, Any]:
        """Sell one product; waits for the end (at most ``timeout``) unless wait is false;
        returns the session: the final snapshot, or the latest one of a session that goes on
        (follow it with vending.session)."""
        vend = engine(call)
        session = await vend.async_select(
            slot=call.data["slot"],
            method=call.data["method"],
            token=call.data.get("token"),
            context=call.context,
        )
        if call.data["wait"]:
            try:
                session = await vend.async_wait(session.id, timeout=call.data.get("timeout"))
            except TimeoutError:
                session = vend.session(session.id) or session
        return session.as_dict()

    async def cancel(call: ServiceCall) -> dict[str, Any]:
        """Cancel a session that has not reached the dispense (nothing is charged)."""
        try:
            session = await engine(call).async_cancel(call.data["session_id"])
        except KeyError as error:
            raise InvalidServiceData(DOMAIN, call.service, str(error.args[0])) from None
        return session.as_dict()

    def session(call: ServiceCall) -> dict[str, Any]:
        """The latest snapshot of a session."""
        snapshot = engine(call).session(call.data["session_id"])
        if snapshot is None:
            raise InvalidServiceData(
                DOMAIN, call.service, f"no vend session {call.data['session_id']!r}"
            )
        return snapshot.as_dict()

    async def set_mode(call: ServiceCall) -> dict[str, Any]:
        """Set the machine's mode: normal, free_vend, service or out_of_order."""
        vend = engine(call)
        await vend.async_set_mode(call.data["mode"], context=call.context)
        return {"machine_id": vend.machine_id, "mode": vend.mode.value}

    async def restock(call: ServiceCall) -> dict[str, Any]:
        """Set the stock of slots to the items counted in them (``slots``), fill slots to
        their par level without lowering them (``fill``); every slot is filled so when
        neither is given."""
        vend = engine(call)
        try:
            slots = await vend.async_restock(
                call.data.get("slots"), context=call.context, fill=call.data.get("fill")
            )
        except ValueError as error:
            raise InvalidServiceData(DOMAIN, call.service, str(error)) from None
        return {"machine_id": vend.machine_id, "slots": slots}

    locks: dict[str, asyncio.Lock] = {}

    def new_plans(call: ServiceCall, vend: VendEngine) -> dict[str, SlotPlan]:
        """Each named slot's plan with the call's changes over its plan now (checked)."""
        plans: dict[str, SlotPlan] = {}
        for code, changes in call.data.get("slots", {}).items():
            current = vend.machine.planogram.get(code)
            if current is None:
                known = ", ".join(vend.machine.planogram)
                raise InvalidServiceData(
                    DOMAIN,
                    call.service,
                    f"slots.{code}: machine {vend.machine_id} has no slot {code!r} "
                    f"(its slots: {known}); vending.set_slots changes existing slots only: "
                    "a slot is added in the machine's planogram in the vending: block of "
                    "configuration.yaml",
                )
            capacity = changes.get("capacity", current.capacity)
            par = changes.get("par", current.par)
            if par is not None and par > capacity:
                if "par" in changes:
                    raise InvalidServiceData(
                        DOMAIN,
                        call.service,
                        f"slots.{code}.par: the par level may be at most the slot's capacity "
                        f"{capacity}, got {par}",
                    )
                par = capacity  # a smaller capacity brings the par level down to it
            try:
                plans[code] = SlotPlan(
                    product=changes.get("product", current.product),
                    price=changes.get("price", current.price),
                    capacity=capacity,
                    par=par,
                )
            except ValueError as error:
                raise InvalidServiceData(DOMAIN, call.service, f"slots.{code}: {error}") from None
        return plans

    async def set_slots(call: ServiceCall) -> dict[str, Any]:
        """Change a machine's mode or its slots' product, price, capacity and par level.

        The data of simulator.set_config and mqtt.publish_config; existing slots only. Applied
        at once (a session already selected keeps its price) and kept across restarts until
        the slot's plan in the vending: block is edited."""
        vend = engine(call)
        if "slots" in call.data and vend.plan_owner is not None:
            raise InvalidServiceData(
                DOMAIN,
                call.service,
                f"machine {vend.machine_id} takes its plan from the fleet hub through "
                f"{vend.plan_owner}; change it there",
            )
        lock = locks.setdefault(vend.machine_id, asyncio.Lock())
        async with lock:  # each call merges its changes over the plan the one before left
            plans = new_plans(call, vend)
            await vend.async_apply_plan(plans, call.data.get("mode"), context=call.context)
            if plans:
                try:
                    await runtime.async_keep_plans(vend.machine_id, plans)
                except (VendHubError, OSError) as error:
                    raise VendHubError(
                        f"machine {vend.machine_id} sells at the new plan now, but it could not "
                        f"be kept for the next start ({error}); call vending.set_slots again"
                    ) from error
        return {
            "machine_id": vend.machine_id,
            "mode": vend.mode.value,
            "slots": {code: plan.as_dict() for code, plan in plans.items()},
            "applied": True,
        }

    hub.services.async_register(DOMAIN, "select", select, SELECT_SCHEMA)
    hub.services.async_register(DOMAIN, "cancel", cancel, SESSION_SCHEMA)
    hub.services.async_register(DOMAIN, "session", session, SESSION_SCHEMA, read_only=True)
    hub.services.async_register(DOMAIN, "set_mode", set_mode, MODE_SCHEMA)
    hub.services.async_register(DOMAIN, "restock", restock, RESTOCK_SCHEMA)
    hub.services.async_register(DOMAIN, "set_slots", set_slots, SET_SLOTS_SCHEMA)
