"""The machines as the API shows them, read from ``hub.states`` and the entity registry.

``Fleet(hub)`` is a snapshot taken once per request: every ``machine.*`` state with its
machine id (the entity's unique id in the registry) and the integration that links it
(``mqtt``, ``simulator``, ``vending`` for the vend engine's own machines: the registry entry's
integration); the ``slot.*`` states of each machine (by device, else by their ``machine_id``
attribute); the active ``alarm.*`` states.

A slot of an offline machine is ``unavailable`` and its state has no attributes; its code and
plan then come from the live entity (``vendhub.machine.entities.SlotEntity``).

``LINK_SERVICES`` says which service does what for each kind of link: the core names the
services, it never imports an integration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from vendhub.helpers.entity import STATE_UNAVAILABLE
from vendhub.helpers.entity_platform import async_entities
from vendhub.machine.entities import STATE_ONLINE, SlotEntity
from vendhub.registry import DATA_ENTITY_REGISTRY

if TYPE_CHECKING:
    from vendhub.auth.identity import Identity
    from vendhub.core.hub import Hub
    from vendhub.core.states import State
    from vendhub.registry.entity_registry import EntityRegistry, RegistryEntry

LINK_MQTT: Final = "mqtt"
LINK_SIMULATOR: Final = "simulator"
LINK_VENDING: Final = "vending"


@dataclass(frozen=True, slots=True)
class LinkServices:
    """The services of one kind of machine link (None: the link cannot do it)."""

    config: tuple[str, str] | None
    """Change mode and slots: data ``machine_id``, ``mode``, ``slots`` {code: changes}."""
    command: tuple[str, str] | None
    """Send a protocol command: ``machine_id``, ``name``, ``args``, ``timeout``."""
    remove: tuple[str, str] | None
    """Forget the machine: ``machine_id``."""
    restock: tuple[str, str] | None = None
    """The ``restock`` command, for a link without ``command``: ``machine_id`` and
    ``slots`` {code: items now in it} (none: every slot to its par level)."""


LINK_SERVICES: Final[dict[str, LinkServices]] = {
    LINK_MQTT: LinkServices(
        config=("mqtt", "publish_config"),
        command=("mqtt", "command"),
        remove=("mqtt", "remove"),
    ),
    LINK_SIMULATOR: LinkServices(
        config=("simulator", "set_config"),
        command=None,  # the simulator has one service per command (see machines.py)
        remove=None,  # its machines are configured in YAML
    ),
    # The vend engine's own machines (the ``vending:`` block): vending.set_slots applies the
    # mode and the existing slots' changes at once (it adds no slot: the YAML block does).
    LINK_VENDING: LinkServices(
        config=("vending", "set_slots"),
        command=None,  # restock only: a remote vend would dispense without a customer paying
        remove=None,  # its machines are configured in YAML
        restock=("vending", "restock"),
    ),
}
ADOPT_SERVICE: Final = ("mqtt", "adopt")
PENDING_SERVICE: Final = ("mqtt", "pending")

_NATURAL = re.compile(r"(\d+)")


def natural_key(code: str) -> list[Any]:
    """Sort ``A2`` before ``A10``."""
    return [int(part) if part.isdigit() else part.lower() for part in _NATURAL.split(code)]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def whole_or_none(value: Any) -> int | None:
    """``value`` when it is a whole number (not a boolean), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stock(state: State) -> int | None:
    return int(state.state) if state.state.isdigit() else None


@dataclass(frozen=True, slots=True)
class FleetMachine:
    """One machine: its id, its ``machine.*`` state and how it is linked."""

    machine_id: str
    state: State
    link: str | None
    device_id: str | None

    @property
    def online(self) -> bool:
        return self.state.state == STATE_ONLINE

    @property
    def currency(self) -> str | None:
        return _text(self.state.attributes.get("currency"))

    @property
    def services(self) -> LinkServices | None:
        return LINK_SERVICES.get(self.link or "")


@dataclass(frozen=True, slots=True)
class FleetSlot:
    """One slot of a machine as the API shows it."""

    machine_id: str
    code: str
    entity_id: str
    product: str | None
    price: int | None
    capacity: int | None
    par: int | None
    stock: int | None
    locked: bool | None
    available: bool
    currency: str | None
    state: State

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "entity_id": self.entity_id,
            "product": self.product,
            "price": self.price,
            "currency": self.currency,
            "capacity": self.capacity,
            "par": self.par,
            "stock": self.stock,
            "locked": self.locked,
            "available": self.available,
        }


def _entity_registry(hub: Hub) -> EntityRegistry | None:
    registry: EntityRegistry | None = hub.data.get(DATA_ENTITY_REGISTRY)
    return registry


class Fleet:
    """The machines, slots and active alarms in ``hub.states`` now."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.registry = _entity_registry(hub)
        self.machines: dict[str, FleetMachine] = {}
        self._by_device: dict[str, str] = {}
        for state in hub.states.async_all("machine"):
            entry = self._entry(state.entity_id)
            machine_id = entry.unique_id if entry is not None else state.object_id
            machine = FleetMachine(
                machine_id,
                state,
                entry.integration if entry is not None else None,
                entry.device_id if entry is not None else None,
            )
            self.machines[machine_id] = machine
            if machine.device_id is not None:
                self._by_device[machine.device_id] = machine_id
        self._slots: dict[str, list[FleetSlot]] | None = None
        self._alarms: dict[str, int] | None = None
        self._live: dict[str, dict[str, SlotEntity]] = {}

    def _entry(self, entity_id: str) -> RegistryEntry | None:
        return self.registry.async_get(entity_id) if self.registry is not None else None

    # ---- machines ------------------------------------------------------------------------

    def get(self, machine_id: str) -> FleetMachine | None:
        return self.machines.get(machine_id)

    def visible(self, identity: Identity) -> list[FleetMachine]:
        """The machines ``identity`` may see, by id."""
        return [
            machine
            for machine_id, machine in sorted(self.machines.items())
            if identity.sees_machine(machine_id)
        ]

    # ---- slots ---------------------------------------------------------------------------

    def _live_slot(self, integration: str, entity_id: str) -> SlotEntity | None:
        if integration not in self._live:
            self._live[integration] = {
                entity.entity_id: entity
                for entity in async_entities(self.hub, integration)
                if isinstance(entity, SlotEntity)
            }
        return self._live[integration].get(entity_id)

    def _slot(self, machine: FleetMachine, state: State, entry: RegistryEntry | None) -> FleetSlot:
        attributes = state.attributes
        available = state.state != STATE_UNAVAILABLE
        code = _text(attributes.get("slot"))
        product = _text(attributes.get("product"))
        price = whole_or_none(attributes.get("price"))
        capacity = whole_or_none(attributes.get("capacity"))
        par = whole_or_none(attributes.get("par_level"))
        locked = attributes.get("locked")
        live = self._live_slot(entry.integration, state.entity_id) if entry is not None else None
        if code is None and live is not None:
            # Unavailable: the state has no attributes, the entity still knows its plan.
            code, product, price, capacity, par = (
                live.code,
                live.product,
                live.price,
                live.capacity,
                live.par,
            )
            locked = live.locked
        if code is None:
            code = state.object_id.removeprefix(f"{machine.machine_id}_").upper()
        return FleetSlot(
            machine_id=machine.machine_id,
            code=code,
            entity_id=state.entity_id,
            product=product,
            price=price,
            capacity=capacity,
            par=par,
            stock=_stock(state),
            locked=locked if isinstance(locked, bool) else None,
            available=available,
            currency=_text(attributes.get("currency")) or machine.currency,
            state=state,
        )

    def _index_slots(self) -> dict[str, list[FleetSlot]]:
        slots: dict[str, list[FleetSlot]] = {}
        for state in self.hub.states.async_all("slot"):
            entry = self._entry(state.entity_id)
            machine_id: str | None = None
            if entry is not None and entry.device_id is not None:
                machine_id = self._by_device.get(entry.device_id)
            if machine_id is None:
                machine_id = _text(state.attributes.get("machine_id"))
            machine = self.machines.get(machine_id or "")
            if machine is None:
                continue
            slots.setdefault(machine.machine_id, []).append(self._slot(machine, state, entry))
        for items in slots.values():
            items.sort(key=lambda slot: natural_key(slot.code))
        return slots

    def slots(self, machine_id: str) -> list[FleetSlot]:
        """The slots of ``machine_id``, in natural order of their codes."""
        if self._slots is None:
            self._slots = self._index_slots()
        return self._slots.get(machine_id, [])

    def slot(self, machine_id: str, code: str) -> FleetSlot | None:
        """The slot ``code`` of ``machine_id`` (codes compare case-insensitively)."""
        wanted = code.lower()
        return next((s for s in self.slots(machine_id) if s.code.lower() == wanted), None)

    # ---- summaries -----------------------------------------------------------------------

    def open_alarms(self, machine_id: str) -> int:
        """Active alarms (raised or acknowledged) of ``machine_id``."""
        if self._alarms is None:
            self._alarms = {}
            for state in self.hub.states.async_all("alarm"):
                owner = _text(state.attributes.get("machine_id"))
                if owner is not None:
                    self._alarms[owner] = self._alarms.get(owner, 0) + 1
        return self._alarms.get(machine_id, 0)

    def stock_summary(self, machine_id: str) -> dict[str, int]:
        """Items in stock, total capacity, empty slots and slots below their par level."""
        items = capacity = empty = low = 0
        for slot in self.slots(machine_id):
            capacity += slot.capacity or 0
            if slot.stock is None:
                continue
            items += slot.stock
            empty += slot.stock == 0
            low += slot.par is not None and slot.stock < slot.par
        return {"items": items, "capacity": capacity, "empty_slots": empty, "low_slots": low}

    def machine_json(self, machine: FleetMachine, *, with_slots: bool = False) -> dict[str, Any]:
        attributes = machine.state.attributes
        slots = self.slots(machine.machine_id)
        data: dict[str, Any] = {
            "id": machine.machine_id,
            "entity_id": machine.state.entity_id,
            "name": machine.state.name,
            "online": machine.online,
            "state": machine.state.state,
            "mode": _text(attributes.get("mode")),
            "firmware": _text(attributes.get("firmware")),
            "model": _text(attributes.get("model")),
            "location": _text(attributes.get("location")),
            "currency": machine.currency,
            "link": machine.link,
            "sales_today": whole_or_none(attributes.get("sales_today")),
            "revenue_today": whole_or_none(attributes.get("revenue_today")),
            "slot_count": len(slots),
            "stock": self.stock_summary(machine.machine_id),
            "open_alarms": self.open_alarms(machine.machine_id),
            "last_changed": machine.state.last_changed.isoformat(),
        }
        if with_slots:
            data["slots"] = [slot.as_json() for slot in slots]
        return data
