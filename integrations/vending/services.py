"""The ``vending.*`` services: select (blocking, returns the session), cancel, session,
set_mode, restock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.core.errors import InvalidServiceData
from vendhub.vending.payment import PaymentMethod
from vendhub.vending.planogram import MachineMode

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
    }
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
        """Set the stock of slots (all slots to their par level when none are given)."""
        vend = engine(call)
        try:
            slots = await vend.async_restock(call.data.get("slots"), context=call.context)
        except ValueError as error:
            raise InvalidServiceData(DOMAIN, call.service, str(error)) from None
        return {"machine_id": vend.machine_id, "slots": slots}

    hub.services.async_register(DOMAIN, "select", select, SELECT_SCHEMA)
    hub.services.async_register(DOMAIN, "cancel", cancel, SESSION_SCHEMA)
    hub.services.async_register(DOMAIN, "session", session, SESSION_SCHEMA, read_only=True)
    hub.services.async_register(DOMAIN, "set_mode", set_mode, MODE_SCHEMA)
    hub.services.async_register(DOMAIN, "restock", restock, RESTOCK_SCHEMA)
