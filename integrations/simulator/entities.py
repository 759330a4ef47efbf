"""The entities of one simulated (or, later, real) machine: one device, its slots and sensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from vendhub.helpers.entity import DeviceInfo, Entity

from .const import DOMAIN, MANUFACTURER, MODE_NORMAL, STATE_OFFLINE, STATE_ONLINE

if TYPE_CHECKING:
    from vendhub.core.context import Context


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """What the hub knows about a machine from its configuration."""

    machine_id: str
    name: str
    model: str
    firmware: str
    location: str | None
    currency: str

    def device_info(self) -> DeviceInfo:
        """The machine as a device in the device registry."""
        info = DeviceInfo(
            identifiers={(DOMAIN, self.machine_id)},
            name=self.name,
            manufacturer=MANUFACTURER,
            model=self.model,
            sw_version=self.firmware,
        )
        if self.location:
            info["location"] = self.location
        return info


class MachineEntityBase(Entity):
    """An entity that belongs to one machine; its object id is fixed by the machine id."""

    def __init__(self, info: MachineInfo, object_id: str, name: str, unique_id: str) -> None:
        self.info = info
        # Ids come from the machine id, so renaming a machine keeps slot.lobby_1_a1 as it is.
        self._attr_suggested_object_id = object_id
        self._attr_name = name
        self._attr_unique_id = unique_id
        self._attr_device_info = info.device_info()

    def set_available(self, available: bool) -> None:
        """Record whether the machine can be reached (write the state afterwards)."""
        self._attr_available = available


class MachineEntity(MachineEntityBase):
    """``machine.<id>``: online or offline, with the day's sales."""

    domain = "machine"
    _attr_icon = "mdi:storefront-outline"

    def __init__(self, info: MachineInfo) -> None:
        super().__init__(info, info.machine_id, info.name, info.machine_id)
        self._attr_state = STATE_ONLINE
        self.mode = MODE_NORMAL
        self.firmware = info.firmware
        self.model = info.model
        self.sales_today = 0
        self.revenue_today = 0
        self.sales_date: date | None = None

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
        return attributes

    @property
    def online(self) -> bool:
        """True while the machine says it is online."""
        return self._attr_state == STATE_ONLINE

    def set_online(self, online: bool) -> None:
        """Record the machine's status (write the state afterwards)."""
        self._attr_state = STATE_ONLINE if online else STATE_OFFLINE

    def count_sale(self, price: int, day: date) -> None:
        """Add a completed sale of ``day`` (local date); a new day starts the count afresh."""
        if self.sales_date is None or day > self.sales_date:
            self.sales_date = day
            self.sales_today = 0
            self.revenue_today = 0
        elif day < self.sales_date:
            return  # a late sale of an earlier day does not belong to today's figures
        self.sales_today += 1
        self.revenue_today += price


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
        stock: int,
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

    @property
    def stock(self) -> int:
        """Items in the slot."""
        return int(self._attr_state or 0)

    def set_stock(self, stock: int) -> None:
        """Record the stock (write the state afterwards)."""
        self._attr_state = stock

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        return {
            "machine_id": self.info.machine_id,
            "slot": self.code,
            "product": self.product,
            "price": self.price,
            "capacity": self.capacity,
            "par_level": self.par,
            "currency": self.info.currency,
            "locked": self.locked,
        }


class TemperatureSensor(MachineEntityBase):
    """``sensor.<id>_temperature``: the cabinet temperature of a refrigerated machine."""

    domain = "sensor"
    _attr_unit_of_measurement = "°C"
    _attr_icon = "mdi:thermometer"

    def __init__(self, info: MachineInfo, temperature: float | None, target: float) -> None:
        object_id = f"{info.machine_id}_temperature"
        super().__init__(info, object_id, f"{info.name} temperature", object_id)
        self.target = target
        self.compressor: bool | None = None
        self.set_temperature(temperature)

    def set_temperature(self, temperature: float | None, compressor: bool | None = None) -> None:
        """Record a reading (write the state afterwards)."""
        self._attr_state = None if temperature is None else round(float(temperature), 1)
        if compressor is not None:
            self.compressor = compressor

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {"target_temperature": self.target}
        if self.compressor is not None:
            attributes["compressor"] = "on" if self.compressor else "off"
        return attributes


class DoorSensor(MachineEntityBase):
    """``binary_sensor.<id>_door``: ``on`` while the door is open."""

    domain = "binary_sensor"
    _attr_icon = "mdi:door"

    def __init__(self, info: MachineInfo, is_open: bool) -> None:
        object_id = f"{info.machine_id}_door"
        super().__init__(info, object_id, f"{info.name} door", object_id)
        self.set_open(is_open)

    def set_open(self, is_open: bool) -> None:
        """Record the door (write the state afterwards)."""
        self._attr_state = "on" if is_open else "off"

    @property
    def is_open(self) -> bool:
        """True while the door is open."""
        return self._attr_state == "on"


class CashBoxSensor(MachineEntityBase):
    """``sensor.<id>_cash_box``: the cash in the box, in minor units."""

    domain = "sensor"
    _attr_icon = "mdi:cash"

    def __init__(self, info: MachineInfo, amount: int) -> None:
        object_id = f"{info.machine_id}_cash_box"
        super().__init__(info, object_id, f"{info.name} cash box", object_id)
        self._attr_state = amount

    def set_amount(self, amount: int) -> None:
        """Record the cash box (write the state afterwards)."""
        self._attr_state = amount

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        return {"currency": self.info.currency}


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

    def write_all(self, context: Context | None = None) -> None:
        """Write the state of every entity."""
        for entity in self.all():
            entity.async_write_state(context)
