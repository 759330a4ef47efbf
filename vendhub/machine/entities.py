"""The entities of one vending machine: one device, its slots and sensors.

Transport-independent: the simulator and the MQTT link build the same entities, each under
its own integration's domain (the device identifiers are ``(domain, machine_id)``), and
``vendhub.machine.link.MachineLink`` keeps them up to date from protocol messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from vendhub.core.timers import async_track_point_in_time
from vendhub.helpers.entity import DeviceInfo, Entity
from vendhub.util.dt import hub_time_zone

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.hub import Hub

STATE_ONLINE = "online"
STATE_OFFLINE = "offline"
MODE_NORMAL = "normal"

# Telemetry readings the machine entity shows as attributes (its health).
HEALTH_READINGS = ("rssi", "uptime", "disk_free_mb", "errors", "software_version")


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """What the hub knows about a machine: from its configuration or its announcement."""

    domain: str  # the integration that owns the machine's device and entities
    machine_id: str
    name: str
    model: str
    firmware: str
    location: str | None
    currency: str
    manufacturer: str | None = None

    def device_info(self) -> DeviceInfo:
        """The machine as a device in the device registry."""
        info = DeviceInfo(
            identifiers={(self.domain, self.machine_id)},
            name=self.name,
            manufacturer=self.manufacturer,
            model=self.model,
            sw_version=self.firmware,
        )
        if self.location:
            info["location"] = self.location
        return info


PENDING_NAMES = {"par": "par_level"}
"""Slot plan keys whose attribute has another name (``par`` is shown as ``par_level``)."""


@dataclass(slots=True)
class ConfigStatus:
    """A machine's config as published by the hub and as confirmed by the machine."""

    version: int  # the version published last
    applied_version: int = 0  # the version the machine confirmed last (0: none)
    pending_mode: str | None = None  # the mode published but not confirmed
    overdue: bool = False  # pending for longer than the hub waits for a confirmation
    published_at: datetime | None = None  # when the pending version was published
    rejected: dict[str, str] = field(default_factory=dict)  # what the machine refused

    @property
    def pending(self) -> bool:
        """True from publishing a version until the machine confirms it."""
        return self.applied_version < self.version

    def attributes(self) -> dict[str, Any]:
        """The machine entity's attributes about its config."""
        attributes: dict[str, Any] = {
            "config_version": self.version,
            "config_applied_version": self.applied_version,
            "config_pending": self.pending,
        }
        if self.pending_mode is not None:
            attributes["pending_mode"] = self.pending_mode
        if self.pending and self.published_at is not None:
            attributes["config_published_at"] = self.published_at.isoformat()
        if self.overdue:
            attributes["config_overdue"] = True
        if self.rejected:
            attributes["config_rejected"] = dict(self.rejected)
        return attributes


class MachineEntityBase(Entity):
    """An entity that belongs to one machine; its object id is fixed by the machine id."""

    def __init__(self, info: MachineInfo, object_id: str, name: str, unique_id: str) -> None:
        self.info = info
        # Ids come from the machine id, so renaming a machine keeps slot.lobby_1_a1 as it is.
        self._attr_suggested_object_id = object_id
        self._attr_name = name
        self._attr_unique_id = unique_id

    @property
    def device_info(self) -> DeviceInfo:
        # Built when asked (the registry asks once), not kept: a fleet has many entities.
        return self.info.device_info()

    def set_available(self, available: bool) -> None:
        """Record whether the machine can be reached (write the state afterwards)."""
        self._attr_available = available


def next_local_midnight(hub: Hub) -> datetime:
    """The start of tomorrow in the hub's time zone."""
    zone = hub_time_zone(hub)
    tomorrow = datetime.now(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time.min, tzinfo=zone)


class MachineEntity(MachineEntityBase):
    """``machine.<id>``: online or offline, with the day's sales and the machine's health."""

    domain = "machine"
    _attr_icon = "mdi:storefront-outline"

    def __init__(self, info: MachineInfo, online: bool = True) -> None:
        super().__init__(info, info.machine_id, info.name, info.machine_id)
        self._attr_state = STATE_ONLINE if online else STATE_OFFLINE
        self.mode = MODE_NORMAL
        self.firmware = info.firmware
        self.model = info.model
        self.sales_today = 0
        self.revenue_today = 0
        self.sales_date: date | None = None
        self._counted: set[str] = set()
        """The ids (machine event ids, vend sessions) of the sales counted in ``sales_today``:
        those of ``sales_date``."""
        self.health: dict[str, Any] = {}
        self.last_seen: datetime | None = None
        # What the hub published and the machine confirmed; None where the link that owns
        # the machine does not publish configs (the in-process simulator).
        self.config: ConfigStatus | None = None
        self._cancel_new_day: Callable[[], None] | None = None

    async def async_added_to_hub(self) -> None:
        self._schedule_new_day()
        self.async_on_remove(self._stop_new_day)

    def _schedule_new_day(self) -> None:
        self._cancel_new_day = async_track_point_in_time(
            self.hub, self._on_new_day, next_local_midnight(self.hub)
        )

    def _stop_new_day(self) -> None:
        if self._cancel_new_day is not None:
            self._cancel_new_day()
            self._cancel_new_day = None

    def _on_new_day(self, now: datetime) -> None:
        """Local midnight: the day's sales start at 0, whether or not anything sells soon."""
        today = now.astimezone(hub_time_zone(self.hub)).date()
        if self.sales_date is not None and self.sales_date < today:
            self._start_day(today)
            self.async_write_state()
        self._schedule_new_day()

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        attributes = {
            "mode": self.mode,
            "firmware": self.firmware,
            "model": self.model,
            "sales_today": self.sales_today,
            "revenue_today": self.revenue_today,
            "currency": self.info.currency,
        }
        if self.info.location:
            attributes["location"] = self.info.location
        attributes.update(self.health)
        if self.config is not None:
            attributes.update(self.config.attributes())
        return attributes

    @property
    def online(self) -> bool:
        """True while the machine says it is online."""
        return self._attr_state == STATE_ONLINE

    def set_online(self, online: bool) -> None:
        """Record the machine's status (write the state afterwards)."""
        self._attr_state = STATE_ONLINE if online else STATE_OFFLINE

    def _start_day(self, day: date) -> None:
        self.sales_date = day
        self.sales_today = 0
        self.revenue_today = 0
        self._counted.clear()

    def count_sale(self, price: int, day: date) -> None:
        """Add a completed sale of ``day`` (local date); a new day starts the count afresh."""
        if self.sales_date is None or day > self.sales_date:
            self._start_day(day)
        elif day < self.sales_date:
            return  # a late sale of an earlier day does not belong to today's figures
        self.sales_today += 1
        self.revenue_today += price

    def count_sale_once(
        self, sale_id: str | None, price: int, day: date, currency: str | None = None
    ) -> bool:
        """Count a completed sale of ``day`` (local date) once; return whether it was counted.

        ``sale_id`` is what identifies the sale wherever it is counted from (the machine's
        event id, a vend session's id): a sale counted from the ledger or journal at start and
        then received again (its ack was lost) is counted once. Revenue is in the machine's
        currency: a sale in another one (the currency changed during the day) counts as a sale
        without revenue.
        """
        if self.sales_date is not None and day < self.sales_date:
            return False  # a sale of an earlier day does not belong to today's figures
        if self.sales_date is None or day > self.sales_date:
            self._start_day(day)
        if sale_id is not None:
            if sale_id in self._counted:
                return False
            self._counted.add(sale_id)
        same_currency = currency is None or currency == self.info.currency
        self.count_sale(price if same_currency else 0, day)
        return True


class SlotEntity(MachineEntityBase):
    """``slot.<id>_<code>``: the stock count of one slot."""

    domain = "slot"
    _attr_icon = "mdi:tray"

    def __init__(
        self,
        info: MachineInfo,
        code: str,
        product: str,
        price: int,
        capacity: int,
        stock: int | None,
        par: int,
    ) -> None:
        object_id = f"{info.machine_id}_{code.lower()}"
        super().__init__(info, object_id, f"{info.name} {code}", object_id)
        self.code = code
        self.product = product
        self.price = price
        self.capacity = capacity
        self.par = par
        self.locked = False
        self._attr_state = stock
        # Plan values the machine has not confirmed yet ({"price": 120, ...}); None where the
        # link does not track confirmations.
        self.pending: dict[str, Any] | None = None
        self.rejected: str | None = None  # why the machine refused this slot's plan

    @property
    def stock(self) -> int:
        """Items in the slot (0 while unknown)."""
        return int(self._attr_state or 0)

    def set_stock(self, stock: int) -> None:
        """Record the stock (write the state afterwards)."""
        self._attr_state = stock

    def set_plan(self, product: str, price: int, capacity: int, par: int) -> None:
        """Record a new product, price, capacity or par level (write the state afterwards)."""
        self.product, self.price, self.capacity, self.par = product, price, capacity, par

    def set_pending(self, pending: dict[str, Any], rejected: str | None = None) -> bool:
        """Record the plan values the machine has not confirmed; return whether that changed."""
        changed = pending != self.pending or rejected != self.rejected
        self.pending, self.rejected = pending, rejected
        return changed

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        attributes = {
            "machine_id": self.info.machine_id,
            "slot": self.code,
            "product": self.product,
            "price": self.price,
            "capacity": self.capacity,
            "par_level": self.par,
            "currency": self.info.currency,
            "locked": self.locked,
        }
        if self.pending is not None:
            attributes["config_pending"] = bool(self.pending)
            for key, value in self.pending.items():
                attributes[f"pending_{PENDING_NAMES.get(key, key)}"] = value
            if self.rejected is not None:
                attributes["config_rejected"] = self.rejected
        return attributes


class TemperatureSensor(MachineEntityBase):
    """``sensor.<id>_temperature``: the cabinet temperature of a refrigerated machine."""

    domain = "sensor"
    _attr_unit_of_measurement = "°C"
    _attr_icon = "mdi:thermometer"

    def __init__(
        self, info: MachineInfo, temperature: float | None, target: float | None = None
    ) -> None:
        object_id = f"{info.machine_id}_temperature"
        super().__init__(info, object_id, f"{info.name} temperature", object_id)
        self.target = target
        self.compressor: bool | None = None
        self.set_temperature(temperature)

    def set_temperature(self, temperature: float | None, compressor: bool | None = None) -> bool:
        """Record a reading (write the state afterwards); return whether anything changed."""
        state = None if temperature is None else round(float(temperature), 1)
        changed = state != self._attr_state or (
            compressor is not None and compressor != self.compressor
        )
        self._attr_state = state
        if compressor is not None:
            self.compressor = compressor
        return changed

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        if self.target is not None:
            attributes["target_temperature"] = self.target
        if self.compressor is not None:
            attributes["compressor"] = "on" if self.compressor else "off"
        return attributes


class DoorSensor(MachineEntityBase):
    """``binary_sensor.<id>_door``: ``on`` while the door is open (unknown until reported)."""

    domain = "binary_sensor"
    _attr_icon = "mdi:door"

    def __init__(self, info: MachineInfo, is_open: bool | None) -> None:
        object_id = f"{info.machine_id}_door"
        super().__init__(info, object_id, f"{info.name} door", object_id)
        self._attr_state = None
        if is_open is not None:
            self.set_open(is_open)

    def set_open(self, is_open: bool) -> bool:
        """Record the door (write the state afterwards); return whether it changed."""
        state = "on" if is_open else "off"
        changed = state != self._attr_state
        self._attr_state = state
        return changed

    @property
    def is_open(self) -> bool:
        """True while the door is open."""
        return self._attr_state == "on"


class CashBoxSensor(MachineEntityBase):
    """``sensor.<id>_cash_box``: the cash in the box, in minor units (unknown until reported)."""

    domain = "sensor"
    _attr_icon = "mdi:cash"

    def __init__(self, info: MachineInfo, amount: int | None) -> None:
        object_id = f"{info.machine_id}_cash_box"
        super().__init__(info, object_id, f"{info.name} cash box", object_id)
        self._attr_state = amount

    def set_amount(self, amount: int) -> bool:
        """Record the cash box (write the state afterwards); return whether it changed."""
        changed = amount != self._attr_state
        self._attr_state = amount
        return changed

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        return {"currency": self.info.currency}


class LinkErrorsSensor(Entity):
    """``sensor.<id>_link_errors``: messages from a machine the link had to drop, by reason.

    Without a machine it counts for the whole transport (unknown or unadopted machines).
    It stays available while the machine is offline: it is about the link, not the machine.
    """

    domain = "sensor"
    _attr_icon = "mdi:message-alert-outline"

    def __init__(
        self,
        object_id: str,
        name: str,
        unique_id: str,
        info: MachineInfo | None = None,
    ) -> None:
        self.info = info
        self._attr_suggested_object_id = object_id
        self._attr_name = name
        self._attr_unique_id = unique_id
        self._attr_state = 0
        self.by_reason: dict[str, int] = {}
        self.seq_gaps = 0
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None

    @property
    def device_info(self) -> DeviceInfo | None:
        return self.info.device_info() if self.info is not None else None

    @classmethod
    def for_machine(cls, info: MachineInfo) -> LinkErrorsSensor:
        """The sensor of one machine, on the machine's device."""
        object_id = f"{info.machine_id}_link_errors"
        return cls(object_id, f"{info.name} link errors", object_id, info)

    @property
    def count(self) -> int:
        """Messages dropped so far."""
        return int(self._attr_state or 0)

    def add(self, reason: str, detail: str, at: datetime) -> None:
        """Count one dropped message (write the state afterwards)."""
        self._attr_state = self.count + 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        self.last_error = detail[:255]
        self.last_error_at = at

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = dict(self.by_reason)
        attributes["seq_gaps"] = self.seq_gaps
        if self.last_error is not None:
            attributes["last_error"] = self.last_error
        if self.last_error_at is not None:
            attributes["last_error_at"] = self.last_error_at.isoformat()
        return attributes


@dataclass(slots=True)
class MachineEntities:
    """Every entity of one machine, as the link updates them."""

    machine: MachineEntity
    slots: dict[str, SlotEntity]
    door: DoorSensor
    cash_box: CashBoxSensor
    temperature: TemperatureSensor | None = None
    by_slot_code: dict[str, SlotEntity] = field(init=False)

    def __post_init__(self) -> None:
        self.by_slot_code = {code.lower(): slot for code, slot in self.slots.items()}

    @classmethod
    def build(
        cls,
        info: MachineInfo,
        slots: Mapping[str, Mapping[str, Any]],
        *,
        refrigerated: bool,
        online: bool = True,
        door_open: bool | None = None,
        cash_box: int | None = None,
        temperature: float | None = None,
        target_temperature: float | None = None,
    ) -> MachineEntities:
        """The entities of a machine with ``slots`` (code: product, price, capacity, stock, par).

        A slot without ``par`` gets a quarter of its capacity (at least 1); without ``stock``
        its stock is unknown until the machine reports it.
        """
        bundle = cls(
            machine=MachineEntity(info, online=online),
            slots={
                code: SlotEntity(
                    info,
                    code,
                    slot["product"],
                    int(slot["price"]),
                    int(slot["capacity"]),
                    slot.get("stock"),
                    int(slot.get("par", max(1, int(slot["capacity"]) // 4))),
                )
                for code, slot in slots.items()
            },
            door=DoorSensor(info, door_open),
            cash_box=CashBoxSensor(info, cash_box),
            temperature=TemperatureSensor(info, temperature, target_temperature)
            if refrigerated
            else None,
        )
        if not online:
            for entity in bundle.all():
                if entity is not bundle.machine:
                    entity.set_available(False)
        return bundle

    def all(self) -> list[MachineEntityBase]:
        """The machine entity first, then slots and sensors."""
        entities: list[MachineEntityBase] = [self.machine, *self.slots.values(), self.door]
        if self.temperature is not None:
            entities.append(self.temperature)
        entities.append(self.cash_box)
        return entities

    def slot(self, code: str) -> SlotEntity | None:
        """The slot entity of ``code`` (codes compare case-insensitively)."""
        return self.slots.get(code) or self.by_slot_code.get(code.lower())

    def add_slot(self, slot: SlotEntity) -> None:
        """Take in a slot added after the machine was set up."""
        self.slots[slot.code] = slot
        self.by_slot_code[slot.code.lower()] = slot

    def write_all(self, context: Context | None = None) -> None:
        """Write the state of every entity."""
        for entity in self.all():
            entity.async_write_state(context)
