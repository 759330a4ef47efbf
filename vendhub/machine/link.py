"""The hub's side of the machine protocol: messages in, entity states and bus events out.

Transport-independent: the simulator hands it what its virtual machines produce, the MQTT
link what real machines publish, each with the machine's ``MachineEntities``.

- ``handle(machine_id, kind, payload)`` decodes a raw message of ``kind`` (its topic) with
  ``vendhub.machine.protocol`` and applies it; ``handle_decoded`` applies one the transport
  decoded already; ``handle_message(machine_id, message)`` takes an in-process message that
  names its kind in an extra ``type`` key (the simulator's).
- Each returns what happened (``Handled``): applied, ignored, duplicate, invalid, from an
  unknown machine, or failed. Nothing raises for a bad message: it is logged with the
  machine id and counted in ``stats``.
- Event ids seen before (the last ``dedup_window`` per machine) are dropped as duplicates.
- ``seq`` gaps are counted in ``seq_gaps``, never fatal: the highest ``seq`` per machine
  (telemetry and events share one counter) is remembered, a ``seq`` more than one above it
  counts the numbers in between; a new session (a status ``online`` with another
  ``session``) starts afresh.
- An ``offline`` status whose ``session`` is not the session of the machine's latest
  ``online`` status (the late last will of a replaced connection) is ignored.
- A ``config_applied`` event (the machine confirms a config version) fires
  ``machine_config_applied``; the transport that published the config decides what it means.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

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
from vendhub.machine import protocol
from vendhub.machine.entities import HEALTH_READINGS
from vendhub.machine.protocol import (
    EVENT_CASH_COLLECTED as MSG_CASH_COLLECTED,
)
from vendhub.machine.protocol import (
    EVENT_CONFIG_APPLIED,
    EVENT_DOOR_CLOSED,
    EVENT_DOOR_OPENED,
    EVENT_RESTOCKED,
    EVENT_SLOTS_LOCKED,
    KIND_ANNOUNCE,
    KIND_EVENT,
    KIND_STATUS,
    KIND_TELEMETRY,
    ProtocolError,
)
from vendhub.machine.protocol import (
    EVENT_VEND_COMPLETED as MSG_VEND_COMPLETED,
)
from vendhub.machine.protocol import (
    EVENT_VEND_FAILED as MSG_VEND_FAILED,
)
from vendhub.machine.protocol import (
    EVENT_VEND_STARTED as MSG_VEND_STARTED,
)
from vendhub.util.dt import hub_time_zone

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.machine.entities import MachineEntities

_LOGGER = logging.getLogger(__name__)

# How many recent event ids the link remembers per machine to drop redelivered messages.
DEDUP_WINDOW: Final = 1024
# How many vends may be open (started, outcome not yet seen) before the oldest is forgotten.
OPEN_VENDS_LIMIT: Final = 4096

EVENT_MACHINE_CONFIG_APPLIED: Final = "machine_config_applied"
"""Bus event of a machine's ``config_applied``: ``machine_id``, ``version``, ``rejected``."""

LINK_KINDS: Final = (KIND_EVENT, KIND_TELEMETRY, KIND_STATUS, KIND_ANNOUNCE)
"""The message kinds the link applies to a machine's entities."""

LEDGER_EVENT_TYPES: Final = {
    MSG_VEND_COMPLETED: EVENT_VEND_COMPLETED,
    MSG_VEND_FAILED: EVENT_VEND_FAILED,
    EVENT_RESTOCKED: EVENT_STOCK_REFILLED,
    MSG_CASH_COLLECTED: EVENT_CASH_COLLECTED,
}
"""Protocol events the recorder writes to the money ledger, and the bus events they become."""


class Outcome(StrEnum):
    """What the link did with one message."""

    applied = "applied"  # valid and new, and acted on
    ignored = "ignored"  # valid and new, but nothing this hub acts on (an unknown event)
    duplicate = "duplicate"  # an event id seen before: dropped
    invalid = "invalid"  # failed decoding or validation: dropped
    unknown_machine = "unknown_machine"  # from a machine the link was not given: dropped
    failed = "failed"  # valid, but handling it raised (a bug: see the log)


@dataclass(frozen=True, slots=True)
class Handled:
    """The outcome of one message, with the decoded message when it was valid."""

    outcome: Outcome
    kind: str
    message: dict[str, Any] | None = None
    error: ProtocolError | None = None

    @property
    def accepted(self) -> bool:
        """True when the message was valid and new (applied or ignored)."""
        return self.outcome in (Outcome.applied, Outcome.ignored)


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
    seq_gaps: int = 0  # messages missing between two sequence numbers, all machines


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
        self.last_seq: dict[str, int] = {}  # the last seq seen, per machine
        self.seq_gaps: dict[str, int] = {}  # numbers missing, per machine
        self._highest_seq: dict[str, int] = {}
        self._sessions: dict[str, str] = {}  # the session of each machine's latest online
        self._recent: dict[str, RecentIds] = {}
        self._open_vends: OrderedDict[tuple[str, str], Context] = OrderedDict()
        self._warned_invalid: set[str] = set()
        self.tz = hub_time_zone(hub)

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
        self.seq_gaps.pop(machine_id, None)
        self._highest_seq.pop(machine_id, None)
        self._sessions.pop(machine_id, None)
        self._warned_invalid.discard(machine_id)

    def seen_event(self, machine_id: str, event_id: str) -> bool:
        """True when ``event_id`` of ``machine_id`` is among the recent ids."""
        recent = self._recent.get(machine_id)
        return recent is not None and event_id in recent

    def remember_event(self, machine_id: str, event_id: str) -> None:
        """Count ``event_id`` of ``machine_id`` as seen: a copy of it is then a duplicate."""
        recent = self._recent.get(machine_id)
        if recent is not None:
            recent.add(event_id)

    # ---- messages ------------------------------------------------------------------------

    def handle(
        self,
        machine_id: str,
        kind: str,
        payload: bytes | str | dict[str, Any],
        context: Context | None = None,
    ) -> Handled:
        """Decode ``payload`` as a message of ``kind`` from ``machine_id`` and apply it.

        ``context`` is what caused the message (say, a service call), and becomes the parent
        of the contexts of the changes the message makes.
        """
        self.stats.received += 1
        entities = self.machines.get(machine_id)
        if entities is None:
            return self._unknown_machine(machine_id, kind)
        try:
            message = protocol.decode(kind, payload)
        except ProtocolError as error:
            return self._invalid(machine_id, kind, error)
        return self._apply(machine_id, entities, kind, message, context)

    def handle_decoded(
        self,
        machine_id: str,
        kind: str,
        message: dict[str, Any],
        context: Context | None = None,
    ) -> Handled:
        """Apply a message the transport decoded with ``protocol.decode`` already."""
        self.stats.received += 1
        entities = self.machines.get(machine_id)
        if entities is None:
            return self._unknown_machine(machine_id, kind)
        return self._apply(machine_id, entities, kind, message, context)

    def handle_message(self, machine_id: str, message: Any, context: Context | None = None) -> bool:
        """Apply an in-process message whose extra ``type`` key names its kind.

        Returns whether it was accepted (valid and new).
        """
        kind = message.get("type") if isinstance(message, dict) else None
        if kind not in LINK_KINDS:
            self.stats.received += 1
            if machine_id not in self.machines:
                return self._unknown_machine(machine_id, str(kind)).accepted
            error = ProtocolError(
                f"unknown message type {kind!r}; expected one of {', '.join(LINK_KINDS)}",
                str(kind),
            )
            return self._invalid(machine_id, str(kind), error).accepted
        return self.handle(machine_id, kind, message, context).accepted

    async def async_handle_message(
        self, machine_id: str, message: Any, context: Context | None = None
    ) -> bool:
        """``handle_message`` for callers that await."""
        return self.handle_message(machine_id, message, context)

    def _unknown_machine(self, machine_id: str, kind: str) -> Handled:
        self.stats.unknown_machine += 1
        _LOGGER.debug("Dropped a %s message from unknown machine %r", kind, machine_id)
        return Handled(Outcome.unknown_machine, kind)

    def _invalid(self, machine_id: str, kind: str, error: ProtocolError) -> Handled:
        self.stats.invalid += 1
        if machine_id in self._warned_invalid:
            _LOGGER.debug("Dropped an invalid message from %s: %s", machine_id, error)
        else:
            self._warned_invalid.add(machine_id)
            _LOGGER.warning(
                "Dropped an invalid message from machine %s: %s (further ones are logged at "
                "debug level)",
                machine_id,
                error,
            )
        return Handled(Outcome.invalid, kind, error=error)

    def _apply(
        self,
        machine_id: str,
        entities: MachineEntities,
        kind: str,
        message: dict[str, Any],
        context: Context | None,
    ) -> Handled:
        stats = self.stats
        if kind == KIND_EVENT and not self._recent[machine_id].add(message["id"]):
            stats.duplicates += 1
            _LOGGER.debug("Dropped duplicate event %s from %s", message["id"], machine_id)
            return Handled(Outcome.duplicate, kind, message)
        if "seq" in message:
            self._track_seq(machine_id, message["seq"])
        stats.accepted += 1
        try:
            if kind == KIND_EVENT:
                applied = self._handle_event(machine_id, entities, message, context)
            elif kind == KIND_TELEMETRY:
                applied = self._handle_telemetry(entities, message, context)
            elif kind == KIND_STATUS:
                applied = self._handle_status(machine_id, entities, message, context)
            elif kind == KIND_ANNOUNCE:
                applied = self._handle_announce(entities, message, context)
            else:
                applied = False
        except Exception:
            stats.errors += 1
            _LOGGER.exception("Handling a %s message from %s failed", kind, machine_id)
            return Handled(Outcome.failed, kind, message)
        if not applied:
            stats.ignored += 1
            return Handled(Outcome.ignored, kind, message)
        return Handled(Outcome.applied, kind, message)

    def _track_seq(self, machine_id: str, seq: int) -> None:
        self.last_seq[machine_id] = seq
        highest = self._highest_seq.get(machine_id)
        if highest is not None and seq <= highest:
            return  # a resend, or a machine that restarted its counter
        self._highest_seq[machine_id] = seq
        if highest is not None and seq > highest + 1:
            missing = seq - highest - 1
            self.seq_gaps[machine_id] = self.seq_gaps.get(machine_id, 0) + missing
            self.stats.seq_gaps += missing
            _LOGGER.debug(
                "Machine %s: %d messages missing between seq %d and %d",
                machine_id,
                missing,
                highest,
                seq,
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
        if name == MSG_VEND_STARTED:
            self._vend_started(machine_id, entities, event, parent)
        elif name in (MSG_VEND_COMPLETED, MSG_VEND_FAILED):
            self._vend_outcome(machine_id, entities, event, parent)
        elif name in (EVENT_DOOR_OPENED, EVENT_DOOR_CLOSED):
            entities.door.set_open(name == EVENT_DOOR_OPENED)
            entities.door.async_write_state(_caused_by(parent))
        elif name == EVENT_RESTOCKED:
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
        elif name == EVENT_SLOTS_LOCKED:
            context = _caused_by(parent)
            for code, locked in data["slots"].items():
                slot = entities.slot(code)
                if slot is not None:
                    slot.locked = locked
                    slot.async_write_state(context)
        elif name == MSG_CASH_COLLECTED:
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
                    "currency": entities.machine.info.currency,
                },
                context=context,
            )
        elif name == EVENT_CONFIG_APPLIED:
            self.hub.bus.async_fire(
                EVENT_MACHINE_CONFIG_APPLIED,
                {
                    "machine_id": machine_id,
                    "event_id": event["id"],
                    "ts": event["ts"].isoformat(),
                    "version": data["version"],
                    "rejected": dict(data.get("rejected") or {}),
                },
                context=_caused_by(parent),
            )
        else:
            _LOGGER.debug("Ignored event %r from %s", name, machine_id)
            return False
        return True

    def _vend_data(
        self, machine_id: str, entities: MachineEntities, event: dict[str, Any]
    ) -> dict[str, Any]:
        data = event["data"]
        result = {
            "machine_id": machine_id,
            "slot": data["slot"],
            "product": data["product"],
            "price": data["price"],
            "currency": entities.machine.info.currency,
            "payment_method": data["payment_method"],
            "event_id": event["id"],
            "vend_id": data.get("vend_id"),
            "ts": event["ts"].isoformat(),
        }
        for optional in ("reason", "stock", "payment_provider", "payment_reference"):
            if optional in data:
                result[optional] = data[optional]
        return result

    def _vend_started(
        self,
        machine_id: str,
        entities: MachineEntities,
        event: dict[str, Any],
        parent: Context | None,
    ) -> None:
        context = _caused_by(parent)
        vend_id = event["data"].get("vend_id")
        if vend_id is not None:
            self._open_vends[(machine_id, vend_id)] = context
            if len(self._open_vends) > OPEN_VENDS_LIMIT:
                self._open_vends.popitem(last=False)
        self.hub.bus.async_fire(
            EVENT_VEND_STARTED, self._vend_data(machine_id, entities, event), context=context
        )

    def _vend_outcome(
        self,
        machine_id: str,
        entities: MachineEntities,
        event: dict[str, Any],
        parent: Context | None,
    ) -> None:
        data = event["data"]
        completed = event["event"] == MSG_VEND_COMPLETED
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
            # Keyed by event id: a sale the transport counted from the ledger at start, sent
            # again because its ack was lost, is not counted twice.
            local_day = event["ts"].astimezone(self.tz).date()
            if entities.machine.count_sale_once(event["id"], data["price"], local_day):
                entities.machine.async_write_state(effects)

        self.hub.bus.async_fire(
            EVENT_VEND_COMPLETED if completed else EVENT_VEND_FAILED,
            self._vend_data(machine_id, entities, event),
            context=context,
        )

    # ---- telemetry, status, announce -----------------------------------------------------

    def _handle_telemetry(
        self, entities: MachineEntities, telemetry: dict[str, Any], parent: Context | None
    ) -> bool:
        # An entity is written only when a reading changed it: its last write shows it as it
        # is otherwise, and most readings repeat from one message to the next.
        readings = telemetry["readings"]
        context = _caused_by(parent)  # one cause for every change this message makes
        applied = False
        sensor = entities.temperature
        temperature = readings.get("temperature")
        if (
            sensor is not None
            and not isinstance(temperature, bool)
            and isinstance(temperature, int | float)
        ):
            compressor = readings.get("compressor")
            if sensor.set_temperature(
                temperature, compressor if isinstance(compressor, bool) else None
            ):
                sensor.async_write_state(context)
            applied = True
        door_open = readings.get("door_open")
        if isinstance(door_open, bool):
            if entities.door.set_open(door_open):
                entities.door.async_write_state(context)
            applied = True
        cash_box = readings.get("cash_box")
        if isinstance(cash_box, int) and not isinstance(cash_box, bool):
            if entities.cash_box.set_amount(cash_box):
                entities.cash_box.async_write_state(context)
            applied = True
        machine = entities.machine
        health = machine.health
        changed = False
        for name in HEALTH_READINGS:
            if name in readings:
                applied = True
                value = readings[name]
                if name not in health or health[name] != value:
                    health[name] = value
                    changed = True
        if changed:
            machine.async_write_state(context)
        return applied

    def _handle_status(
        self,
        machine_id: str,
        entities: MachineEntities,
        status: dict[str, Any],
        parent: Context | None,
    ) -> bool:
        machine = entities.machine
        online = status["state"] == protocol.STATUS_ONLINE
        session = status.get("session")
        if online and session is not None:
            if self._sessions.get(machine_id) != session:
                self._highest_seq.pop(machine_id, None)  # a new connection: seq may restart
            self._sessions[machine_id] = session
        elif (
            not online
            and session is not None
            and self._sessions.get(machine_id, session) != session
        ):
            _LOGGER.debug(
                "Ignored the offline status of %s's earlier session %s", machine_id, session
            )
            return False
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

    def _handle_announce(
        self, entities: MachineEntities, announce: dict[str, Any], parent: Context | None
    ) -> bool:
        machine = entities.machine
        machine.firmware = announce["firmware"]
        machine.model = announce["model"]
        machine.async_write_state(_caused_by(parent) if parent is not None else None)
        return True


def _now() -> datetime:
    return datetime.now(UTC)
