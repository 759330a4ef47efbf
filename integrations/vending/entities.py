"""The entities of a local vending machine: ``machine.<id>`` (online, its mode, the day's
sales) and one ``slot.<id>_<code>`` per slot (stock as the state; product, price, capacity,
currency).

The day's sales survive a restart: when ``machine.<id>`` comes into the hub it counts the
local day's completed sessions from the vend journal (read-only, in a worker thread), then
every ``vend_completed`` after that; both are keyed by session id, so a session the engine
fires again at start (completed but not recorded) is counted once.

Slot entities are ``vendhub.machine.entities.SlotEntity``, the same class and id scheme the
simulator and the MQTT link use: a machine is configured either as a local vending machine
here or as a linked one there, never both, so the ids do not meet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from datetime import time as wall_time
from typing import TYPE_CHECKING, Any

from vendhub.const import EVENT_VEND_COMPLETED
from vendhub.machine.entities import MachineEntity, MachineInfo, SlotEntity
from vendhub.util.dt import hub_time_zone
from vendhub.vending.journal import read_ledger_sessions
from vendhub.vending.session import SessionState

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.events import Event
    from vendhub.vending.engine import VendEngine
    from vendhub.vending.planogram import MachineMode, SlotPlan

_LOGGER = logging.getLogger(__name__)


class LocalMachineEntity(MachineEntity):
    """``machine.<id>`` of a local machine, like every machine's: online while its engine
    runs, its mode (normal, free_vend, service, out_of_order), the day's sales, and the
    payment methods it takes.

    The day's sales are the local day's completed sessions in the journal when the entity
    came into the hub, plus each ``vend_completed`` since, each session counted once."""

    def __init__(self, info: MachineInfo, engine: VendEngine) -> None:
        super().__init__(info, online=True)
        self.engine = engine
        self.mode = engine.mode.value
        self._unsubscribe_sales: Callable[[], None] | None = None

    def set_mode(self, mode: MachineMode) -> None:
        self.mode = mode.value

    async def async_added_to_hub(self) -> None:
        await super().async_added_to_hub()
        # Live sales first, then the journal: a sale made while the journal is read is in
        # one or both, and counted once either way (by session id).
        self.stop_counting()
        self._unsubscribe_sales = self.engine.hub.bus.async_listen(
            EVENT_VEND_COMPLETED, self._on_sale
        )
        self.async_on_remove(self.stop_counting)
        try:
            await self.async_load_sales_today()
        except Exception:
            _LOGGER.exception(
                "Could not read today's sales of %s from the vend journal; sales_today counts "
                "from now on",
                self.info.machine_id,
            )
        self.async_write_state()

    def stop_counting(self) -> None:
        """Stop following ``vend_completed`` (the engine stops, or the entity leaves)."""
        if self._unsubscribe_sales is not None:
            self._unsubscribe_sales()
            self._unsubscribe_sales = None

    def _on_sale(self, event: Event) -> None:
        data = event.data
        if data.get("machine_id") != self.engine.machine_id:
            return
        day = event.time_fired.astimezone(hub_time_zone(self.engine.hub)).date()
        session_id = data.get("session_id") or data.get("event_id")
        if self.count_sale_once(
            None if session_id is None else str(session_id),
            int(data.get("price") or 0),
            day,
            data.get("currency"),
        ):
            self.async_write_state(event.context)

    async def async_load_sales_today(self) -> None:
        """Count the completed sessions of the local day that the journal holds (in a worker
        thread, on a read-only connection of its own)."""
        hub = self.engine.hub
        tz = hub_time_zone(hub)
        today = datetime.now(tz).date()
        # Sessions finished since local midnight were last written since then too.
        since = datetime.combine(today, wall_time.min, tzinfo=tz).timestamp()
        sessions = await hub.async_add_executor_job(
            read_ledger_sessions, self.engine.journal.path, self.engine.machine_id, since
        )
        for session in sessions:
            if session.state is not SessionState.completed:
                continue  # a failed vend with a ledger event is not a sale
            finished = session.finished_at or session.started_at
            day = datetime.fromtimestamp(finished, tz).date()
            if day < today:
                continue  # finished yesterday, written today (closed or resolved at start)
            price = 0 if session.free_vend else session.price.amount
            self.count_sale_once(session.id, price, day, session.price.currency)

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

    def on_mode(mode: MachineMode, context: Context | None) -> None:
        machine.set_mode(mode)
        if machine.entity_id is not None:
            machine.async_write_state(context)

    # The machine entity follows the sales itself from when it comes into the hub
    # (``LocalMachineEntity.async_added_to_hub``); stopping the engine stops that too.
    return [
        engine.async_listen_stock(on_stock),
        engine.async_listen_mode(on_mode),
        engine.async_listen_plan(on_plan),
        machine.stop_counting,
    ]
