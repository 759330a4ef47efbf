"""What a local machine says to the fleet hub, in the machine protocol (docs/protocol.md).

Pure functions from the vend engine's data to protocol messages, and from the fleet's
``config`` to the engine's slot plans; ``machine_link`` sends and applies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vendhub.const import __version__
from vendhub.machine import protocol
from vendhub.vending.planogram import SlotPlan

if TYPE_CHECKING:
    from vendhub.vending.dispenser import DispenserStatus
    from vendhub.vending.engine import VendEngine

LOCAL_MODEL = "VendHub local machine"
"""The ``model`` a linked machine announces (its board's platform is added in brackets)."""

_VEND_FIELDS = ("slot", "product", "price", "payment_method")
_VEND_EXTRAS = ("payment_provider", "payment_reference", "outcome")


def _iso(moment: datetime) -> str:
    return protocol.format_time(moment)


def announce(engine: VendEngine, refrigerated: bool = False) -> dict[str, Any]:
    """The ``announce`` of a local machine: its planogram with the stock it has now."""
    planogram = engine.machine.planogram
    return {
        "v": protocol.PROTOCOL_VERSION,
        "ts": _iso(datetime.now(UTC)),
        "model": f"{LOCAL_MODEL} ({engine.machine.dispenser.platform})",
        "firmware": __version__,
        "currency": engine.machine.currency,
        "refrigerated": refrigerated,
        "capabilities": sorted(method.value for method in engine.methods),
        "slots": {
            code: {**plan.as_dict(), "stock": min(engine.stock.get(code, 0), plan.capacity)}
            for code, plan in planogram.items()
        },
    }


def vend_event(name: str, ledger: Mapping[str, Any], ts: str | None = None) -> dict[str, Any]:
    """``vend_completed`` / ``vend_failed`` from the engine's ledger data (``ledger_data``).

    The event id is the vend session's id: the engine fires a session's ledger event again
    after a restart, and the journal's backlog finds it too; the same id makes the outbox keep
    it once and the fleet's ledger (unique on machine and event id) write it once.
    """
    session_id = str(ledger["event_id"])
    data: dict[str, Any] = {key: ledger[key] for key in _VEND_FIELDS}
    data["vend_id"] = session_id
    if ledger.get("stock") is not None:
        data["stock"] = int(ledger["stock"])
    if name == protocol.EVENT_VEND_FAILED:
        data["reason"] = str(ledger.get("reason") or ledger.get("outcome") or "failed")
    for key in _VEND_EXTRAS:
        if ledger.get(key) is not None:
            data[key] = ledger[key]
    return {
        "v": protocol.PROTOCOL_VERSION,
        "id": session_id,
        "ts": ts or str(ledger.get("ts") or _iso(datetime.now(UTC))),
        "event": name,
        "data": data,
    }


def restocked_event(refill: Mapping[str, Any]) -> dict[str, Any]:
    """``restocked`` from the engine's ``stock_refilled`` data (its id is the refill's)."""
    return {
        "v": protocol.PROTOCOL_VERSION,
        "id": str(refill["event_id"]),
        "ts": str(refill.get("ts") or _iso(datetime.now(UTC))),
        "event": protocol.EVENT_RESTOCKED,
        "data": {"slots": {code: int(slot["stock"]) for code, slot in refill["slots"].items()}},
    }


def door_event(door_open: bool) -> dict[str, Any]:
    """``door_opened`` / ``door_closed``, now."""
    return {
        "v": protocol.PROTOCOL_VERSION,
        "id": protocol.new_id(),
        "ts": _iso(datetime.now(UTC)),
        "event": protocol.EVENT_DOOR_OPENED if door_open else protocol.EVENT_DOOR_CLOSED,
        "data": {},
    }


def error_event(alarm: Mapping[str, Any]) -> dict[str, Any]:
    """``error`` from a raised alarm of the machine (code and message)."""
    return {
        "v": protocol.PROTOCOL_VERSION,
        "id": protocol.new_id(),
        "ts": _iso(datetime.now(UTC)),
        "event": protocol.EVENT_ERROR,
        "data": {"code": str(alarm["code"])[:64], "message": str(alarm["message"])[:2000]},
    }


def readings(engine: VendEngine, status: DispenserStatus | None) -> dict[str, Any]:
    """Telemetry: ``stock_<slot>`` per slot, the mode, and what the board's status reports."""
    values: dict[str, Any] = {
        f"stock_{code.lower()}": engine.stock.get(code, 0) for code in engine.machine.planogram
    }
    values["mode"] = engine.mode.value
    if status is not None:
        values["board_online"] = status.online
        if status.temperature is not None:
            values["temperature"] = float(status.temperature)
        if status.door_open is not None:
            values["door_open"] = bool(status.door_open)
    return values


def slot_plans(
    config: Mapping[str, Any],
) -> tuple[dict[str, SlotPlan], dict[str, str]]:
    """The fleet config's slots as the engine's plans, and the slots refused (``slots.<code>``:
    why) because their plan does not make a valid local plan."""
    plans: dict[str, SlotPlan] = {}
    rejected: dict[str, str] = {}
    for code, slot in config["slots"].items():
        try:
            plans[code] = SlotPlan(
                product=slot["product"],
                price=slot["price"],
                capacity=slot["capacity"],
                par=slot["par"],
            )
        except ValueError as error:
            rejected[f"slots.{code}"] = str(error)
    return plans, rejected
