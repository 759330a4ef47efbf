"""The entities of a local vending machine: ``machine.<id>`` (online, its mode, the day's
sales) and one ``slot.<id>_<code>`` per slot (stock as the state; product, price, capacity,
currency).

Slot entities are ``vendhub.machine.entities.SlotEntity``, the same class and id scheme the
simulator and the MQTT link use: a machine is configured either as a local vending machine
here or as a linked one there, never both, so the ids do not meet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vendhub.const import EVENT_VEND_COMPLETED
from vendhub.machine.entities import MachineEntity, MachineInfo, SlotEntity
from vendhub.util.dt import hub_time_zone

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.events import Event
    from vendhub.vending.engine import VendEngine
    from vendhub.vending.planogram import MachineMode, SlotPlan


class LocalMachineEntity(MachineEntity):
    """``machine.<id>`` of a local machine, like every machine's: online while its engine
    runs, its mode (normal, free_vend, service, out_of_order), the day's sales, and the
    payment methods it takes."""

    def __init__(self, info: MachineInfo, engine: VendEngine) -> None:
        super().__init__(info, online=True)
        self.engine = engine
        self.mode = engine.mode.value

    def set_mode(self, mode: MachineMode) -> None:
        self.mode = mode.value

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        return {
            **super().extra_state_attributes,
            "machine_id": self.info.machine_id,
            "local": True,
            "payment_methods": sorted(method.value for method in self.engine.methods),
        }


def build_entities(
    info: MachineInfo, engine: VendEngine
) -> tuple[LocalMachineEntity, dict[str, SlotEntity]]:
    """The machine entity and its slot entities, at the engine's current stock."""
    machine = LocalMachineEntity(info, engine)
    slots = {
        code: SlotEntity(
            info,
            code,
            plan.product,
            engine.price_of(code),
            plan.capacity,
            engine.stock.get(code, 0),
            plan.fill_level,
        )
        for code, plan in engine.machine.planogram.items()
    }
    return machine, slots


def reprice(engine: VendEngine, slots: dict[str, SlotEntity]) -> None:
    """Show the prices in force now (a price window started or ended, the lists changed)."""
    for code, entity in slots.items():
        price = engine.price_of(code)
        if entity.price != price and entity.entity_id is not None:
            entity.set_plan(entity.product, price, entity.capacity, entity.par)
            entity.async_write_state()


def follow_engine(
    engine: VendEngine, machine: LocalMachineEntity, slots: dict[str, SlotEntity]
) -> list[Any]:
    """Keep the entities' states in step with the engine; returns the unsubscribe callables."""

    def on_stock(slot: str, stock: int, context: Context | None) -> None:
        entity = slots.get(slot)
        if entity is not None and entity.entity_id is not None:
            entity.set_stock(stock)
            entity.async_write_state(context)

    def on_plan(slot: str, plan: SlotPlan, context: Context | None) -> None:
        entity = slots.get(slot)
        if entity is not None and entity.entity_id is not None:
            entity.set_plan(plan.product, engine.price_of(slot), plan.capacity, plan.fill_level)
            entity.async_write_state(context)

    def on_mode(mode: MachineMode) -> None:
        machine.set_mode(mode)
        if machine.entity_id is not None:
            machine.async_write_state()

    def on_sale(event: Event) -> None:
        if event.data.get("machine_id") != engine.machine_id:
            return
        day = event.time_fired.astimezone(hub_time_zone(engine.hub)).date()
        machine.count_sale(int(event.data.get("price") or 0), day)
        if machine.entity_id is not None:
            machine.async_write_state(event.context)

    return [
        engine.async_listen_stock(on_stock),
        engine.async_listen_mode(on_mode),
        engine.async_listen_plan(on_plan),
        engine.hub.bus.async_listen(EVENT_VEND_COMPLETED, on_sale),
    ]
