"""The hub's side of the machine protocol: messages in, entity states and bus events out.

``MachineLink.async_handle_message(machine_id, message)`` is the one entry point. The
simulator feeds it what its virtual machines produce; the MQTT transport will feed it what
real machines publish. It validates each message, drops event ids it has seen before, and
turns the rest into state writes and ``vend_*`` / ``machine_*`` events.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from vendhub.const import (
    EVENT_CASH_COLLECTED,
    EVENT_MACHINE_OFFLINE,
    EVENT_MACHINE_ONLINE,
    EVENT_STOCK_REFILLED,
    EVENT_VEND_COMPLETED,
    EVENT_VEND_FAILED,
    EVENT_VEND_STARTED,
)
from vendhub.core.context import Context

from . import messages as msg
from .const import DEDUP_WINDOW, OPEN_VENDS_LIMIT

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

    from .entities import MachineEntities

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class LinkStats:
    """Counts of what the link did with the messages it was given."""

    received: int = 0
    accepted: int = 0  # valid and new; they include the ignored ones
    duplicates: int = 0  # an event id seen before: dropped
    invalid: int = 0  # failed validation: dropped
    unknown_machine: int = 0  # from a machine the hub does not know: dropped
    ignored: int = 0  # valid, but an event this hub does not act on
    errors: int = 0  # valid, but handling it raised (a bug: see the log)


class RecentIds:
    """The last ``size`` ids seen, for telling a redelivered event from a new one."""

    __slots__ = ("_ids", "_order")

    def __init__(self, size: int) -> None:
        self._ids: set[str] = set()
        self._order: deque[str] = deque(maxlen=size)

    def add(self, item: str) -> bool:
        """Remember ``item``; return False when it was seen already."""
        if item in self._ids:
            return False
        if len(self._order) == self._order.maxlen:
            self._ids.discard(self._order[0])
        self._order.append(item)
        self._ids.add(item)
        return True

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, item: object) -> bool:
        return item in self._ids


def _time_zone(name: str) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        _LOGGER.warning("Unknown time zone %r; daily sales figures follow UTC", name)
        return UTC


def _caused_by(parent: Context | None) -> Context:
    """A new context, the child of ``parent`` when there is one."""
    if parent is None:
        return Context()
    return Context(user_id=parent.user_id, parent_id=parent.id)


class MachineLink:
    """Turns machine-protocol messages into entity states and bus events."""

    def __init__(self, hub: Hub, *, dedup_window: int = DEDUP_WINDOW) -> None:
        self.hub = hub
        self.dedup_window = dedup_window
        self.stats = LinkStats()
        self.machines: dict[str, MachineEntities] = {}
        self.last_seq: dict[str, int] = {}
        self._recent: dict[str, RecentIds] = {}
        self._open_vends: OrderedDict[tuple[str, str], Context] = OrderedDict()
        self._warned_invalid: set[str] = set()
        self.tz = _time_zone(hub.config.time_zone)

    # ---- machines ------------------------------------------------------------------------

    def add_machine(self, machine_id: str, entities: MachineEntities) -> None:
        """Accept messages from ``machine_id`` and apply them to ``entities``."""
        self.machines[machine_id] = entities
        self._recent.setdefault(machine_id, RecentIds(self.dedup_window))

    def remove_machine(self, machine_id: str) -> None:
        """Stop accepting messages from ``machine_id``."""
        self.machines.pop(machine_id, None)
        self._recent.pop(machine_id, None)
        self.last_seq.pop(machine_id, None)

    # ---- messages ------------------------------------------------------------------------

    async def async_handle_message(
        self, machine_id: str, message: Any, context: Context | None = None
    ) -> bool:
        """Handle one message from ``machine_id``; return whether it was applied.

        Never raises for a bad message: it is logged and counted in ``stats``. ``context``
        is what caused the message (say, a service call), and becomes the parent of the
        contexts of the changes the message makes.
        """
        return self.handle_message(machine_id, message, context)

    def handle_message(self, machine_id: str, message: Any, context: Context | None = None) -> bool:
        """The synchronous body of ``async_handle_message``, for callers in the loop."""
        stats = self.stats
        stats.received += 1
        entities = self.machines.get(machine_id)
        if entities is None:
            stats.unknown_machine += 1
            _LOGGER.debug("Dropped a message from unknown machine %r", machine_id)
            return False
        try:
            valid = msg.validate_message(message)
        except msg.ProtocolError as error:
            stats.invalid += 1
            self._log_invalid(machine_id, str(error))
            return False
        kind = valid["type"]
        if kind == "event" and not self._recent[machine_id].add(valid["id"]):
            stats.duplicates += 1
            _LOGGER.debug("Dropped duplicate event %s from %s", valid["id"], machine_id)
            return False
        if "seq" in valid:
            self.last_seq[machine_id] = valid["seq"]
        stats.accepted += 1
        try:
            if kind == "event":
                handled = self._handle_event(machine_id, entities, valid, context)
            elif kind == "telemetry":
                handled = self._handle_telemetry(entities, valid, context)
            else:
                handled = self._handle_status(machine_id, entities, valid, context)
        except Exception:
            stats.errors += 1
            _LOGGER.exception("Handling a %s message from %s failed", kind, machine_id)
            return False
        if not handled:
            stats.ignored += 1
        return True

    def _log_invalid(self, machine_id: str, problem: str) -> None:
        if machine_id in self._warned_invalid:
            _LOGGER.debug("Dropped an invalid message from %s: %s", machine_id, problem)
            return
        self._warned_invalid.add(machine_id)
        _LOGGER.warning(
            "Dropped an invalid message from machine %s: %s (further ones are logged at "
            "debug level)",
            machine_id,
            problem,
        )

    # ---- events --------------------------------------------------------------------------

    def _handle_event(
        self,
        machine_id: str,
        entities: MachineEntities,
        event: dict[str, Any],
        parent: Context | None,
    ) -> bool:
        name = event["event"]
        data = event["data"]
        if name == msg.EVENT_VEND_STARTED:
            self._vend_started(machine_id, event, parent)
        elif name in (msg.EVENT_VEND_COMPLETED, msg.EVENT_VEND_FAILED):
            self._vend_outcome(machine_id, entities, event, parent)
        elif name in (msg.EVENT_DOOR_OPENED, msg.EVENT_DOOR_CLOSED):
            entities.door.set_open(name == msg.EVENT_DOOR_OPENED)
            entities.door.async_write_state(_caused_by(parent))
        elif name == msg.EVENT_RESTOCKED:
            context = _caused_by(parent)
            refills = {}
            for code, stock in data["slots"].items():
                slot = entities.slot(code)
                if slot is None:
                    _LOGGER.warning("Machine %s restocked unknown slot %r", machine_id, code)
                    continue
                refills[code] = {
                    "product": slot.product,
                    "added": stock - slot.stock,
                    "stock": stock,
                }
                slot.set_stock(stock)
                slot.async_write_state(context)
            self.hub.bus.async_fire(
                EVENT_STOCK_REFILLED,
                {
                    "machine_id": machine_id,
                    "event_id": event["id"],
                    "ts": event["ts"].isoformat(),
                    "slots": refills,
                },
                context=context,
            )
        elif name == msg.EVENT_SLOTS_LOCKED:
            context = _caused_by(parent)
            for code, locked in data["slots"].items():
                slot = entities.slot(code)
                if slot is not None:
                    slot.locked = locked
                    slot.async_write_state(context)
        elif name == msg.EVENT_CASH_COLLECTED:
            context = _caused_by(parent)
            entities.cash_box.set_amount(data["cash_box"])
            entities.cash_box.async_write_state(context)
            self.hub.bus.async_fire(
                EVENT_CASH_COLLECTED,
                {
                    "machine_id": machine_id,
                    "event_id": event["id"],
                    "ts": event["ts"].isoformat(),
                    "amount": data["amount"],
                    "currency": self.hub.config.currency,
                },
                context=context,
            )
        else:
            _LOGGER.debug("Ignored event %r from %s", name, machine_id)
            return False
        return True

    def _vend_data(self, machine_id: str, event: dict[str, Any]) -> dict[str, Any]:
        data = event["data"]
        result = {
            "machine_id": machine_id,
            "slot": data["slot"],
            "product": data["product"],
            "price": data["price"],
            "currency": self.hub.config.currency,
            "payment_method": data["payment_method"],
            "event_id": event["id"],
            "vend_id": data.get("vend_id"),
            "ts": event["ts"].isoformat(),
        }
        if "reason" in data:
            result["reason"] = data["reason"]
        if "stock" in data:
            result["stock"] = data["stock"]
        return result

    def _vend_started(self, machine_id: str, event: dict[str, Any], parent: Context | None) -> None:
        context = _caused_by(parent)
        vend_id = event["data"].get("vend_id")
        if vend_id is not None:
            self._open_vends[(machine_id, vend_id)] = context
            if len(self._open_vends) > OPEN_VENDS_LIMIT:
                self._open_vends.popitem(last=False)
        self.hub.bus.async_fire(
            EVENT_VEND_STARTED, self._vend_data(machine_id, event), context=context
        )

    def _vend_outcome(
        self,
        machine_id: str,
        entities: MachineEntities,
        event: dict[str, Any],
        parent: Context | None,
    ) -> None:
        data = event["data"]
        completed = event["event"] == msg.EVENT_VEND_COMPLETED
        vend_id = data.get("vend_id")
        context = (
            self._open_vends.pop((machine_id, vend_id), None) if vend_id is not None else None
        ) or _caused_by(parent)
        effects = Context(user_id=context.user_id, parent_id=context.id)

        slot = entities.slot(data["slot"])
        if slot is None:
            _LOGGER.warning("Machine %s reported a vend from unknown slot %r", machine_id, data)
        elif "stock" in data:
            slot.set_stock(data["stock"])
        elif completed:
            slot.set_stock(max(0, slot.stock - 1))
        if slot is not None:
            slot.async_write_state(effects)

        if "cash_box" in data:
            entities.cash_box.set_amount(data["cash_box"])
        elif completed and data["payment_method"] == "cash":
            entities.cash_box.set_amount(int(entities.cash_box.state or 0) + data["price"])
        entities.cash_box.async_write_state(effects)

        if completed:
            local_day = event["ts"].astimezone(self.tz).date()
            entities.machine.count_sale(data["price"], local_day)
            entities.machine.async_write_state(effects)

        self.hub.bus.async_fire(
            EVENT_VEND_COMPLETED if completed else EVENT_VEND_FAILED,
            self._vend_data(machine_id, event),
            context=context,
        )

    # ---- telemetry and status ------------------------------------------------------------

    def _handle_telemetry(
        self, entities: MachineEntities, telemetry: dict[str, Any], parent: Context | None
    ) -> bool:
        readings = telemetry["readings"]
        sensor = entities.temperature
        temperature = readings.get("temperature")
        if (
            sensor is None
            or isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
        ):
            return False
        compressor = readings.get("compressor")
        sensor.set_temperature(temperature, compressor if isinstance(compressor, bool) else None)
        sensor.async_write_state(_caused_by(parent) if parent is not None else None)
        return True

    def _handle_status(
        self,
        machine_id: str,
        entities: MachineEntities,
        status: dict[str, Any],
        parent: Context | None,
    ) -> bool:
        machine = entities.machine
        online = status["state"] == "online"
        changed = online != machine.online
        machine.set_online(online)
        machine.firmware = status.get("firmware", machine.firmware)
        machine.model = status.get("model", machine.model)
        context = _caused_by(parent)
        if changed:
            for entity in entities.all():
                if entity is not machine:
                    entity.set_available(online)
                    entity.async_write_state(context)
        machine.async_write_state(context)
        if changed:
            self.hub.bus.async_fire(
                EVENT_MACHINE_ONLINE if online else EVENT_MACHINE_OFFLINE,
                {"machine_id": machine_id, "ts": status.get("ts", _now()).isoformat()},
                context=context,
            )
        return True


def _now() -> datetime:
    return datetime.now(UTC)
