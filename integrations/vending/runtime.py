"""The vending integration at run time: the journal, one engine per local machine, entities."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vendhub.config.errors import ConfigError
from vendhub.core.timers import async_track_point_in_time
from vendhub.helpers.entity_platform import async_add_entities
from vendhub.machine.entities import MachineInfo, SlotEntity
from vendhub.util.dt import utcnow
from vendhub.vending.engine import MachineSetup, Pricing, Timeouts, VendEngine
from vendhub.vending.journal import VendJournal
from vendhub.vending.planogram import SlotPlan
from vendhub.vending.pricing import DATA_PRICING, EVENT_PRICE_LISTS_CHANGED, PriceBook

from .entities import LocalMachineEntity, build_entities, follow_engine, reprice
from .platforms import resolve_dispenser, resolve_provider
from .schema import CONF_MACHINES

if TYPE_CHECKING:
    from datetime import datetime

    import pluggy

    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DOMAIN = "vending"


@dataclass(slots=True)
class LocalMachine:
    """One configured machine: its engine and entities."""

    engine: VendEngine
    machine_entity: LocalMachineEntity
    slot_entities: dict[str, SlotEntity]
    unsubscribe: list[Callable[[], None]] = field(default_factory=list)


class VendingRuntime:
    """Builds and runs every local machine of the ``vending:`` block."""

    def __init__(
        self,
        hub: Hub,
        config: Mapping[str, Any],
        plugin_manager: pluggy.PluginManager | None,
        journal: VendJournal | None = None,
    ) -> None:
        self.hub = hub
        self.config = config
        self.plugin_manager = plugin_manager
        self.journal = journal or VendJournal.for_hub(hub)
        self.machines: dict[str, LocalMachine] = {}
        self.broken: dict[str, str] = {}
        """Machines that could not be set up, with the reason (the others run)."""
        self._price_timer: Callable[[], None] | None = None
        self._unsubscribe_prices: Callable[[], None] | None = None

    def engine(self, machine_id: str) -> VendEngine:
        machine = self.machines.get(machine_id)
        if machine is None:
            known = ", ".join(sorted(self.machines)) or "none"
            broken = (
                f" (it failed to set up: {self.broken[machine_id]})"
                if machine_id in self.broken
                else ""
            )
            raise KeyError(f"no local vending machine {machine_id!r}{broken}; configured: {known}")
        return machine.engine

    async def async_setup(self) -> None:
        await self.journal.async_open()
        for machine_id, machine_config in self.config[CONF_MACHINES].items():
            try:
                await self._async_setup_machine(machine_id, machine_config)
            except Exception as error:
                self.broken[machine_id] = str(error)
                _LOGGER.error(
                    "Vending machine %s is not set up, the others run on: %s",
                    machine_id,
                    error,
                    exc_info=not isinstance(error, ValueError | ConfigError),
                )
        self._unsubscribe_prices = self.hub.bus.async_listen(
            EVENT_PRICE_LISTS_CHANGED, lambda _event: self._reprice()
        )
        self._reprice()

    # ---- time-of-day prices (the catalog's price lists) -----------------------------------

    def _pricing(self, machine_id: str) -> Pricing:
        """The price in force of a slot of ``machine_id``, read from the hub's price book at
        each call (lists replaced while the hub runs apply at once)."""

        def price_in_force(slot: str, product: str, planned: int, moment: datetime) -> int:
            book: PriceBook | None = self.hub.data.get(DATA_PRICING)
            if book is None:
                return planned
            return book.price_at(machine_id, slot, product, planned, moment)

        return price_in_force

    def _reprice(self) -> None:
        """Show the prices in force on the slot entities, and wake at the next window edge."""
        if self._price_timer is not None:
            self._price_timer()
            self._price_timer = None
        for machine in self.machines.values():
            reprice(machine.engine, machine.slot_entities)
        book: PriceBook | None = self.hub.data.get(DATA_PRICING)
        edge = book.next_change(self.machines, utcnow()) if book is not None else None
        if edge is not None:
            self._price_timer = async_track_point_in_time(
                self.hub, lambda _now: self._reprice(), edge
            )

    def build_setup(self, machine_id: str, config: Mapping[str, Any]) -> MachineSetup:
        """The engine's MachineSetup from one validated machine block."""
        dispenser_cls, dispenser_options = resolve_dispenser(
            config["dispenser"], self.plugin_manager, machine_id
        )
        providers = []
        for index, entry in enumerate(config["payments"]):
            provider_cls, options = resolve_provider(entry, self.plugin_manager, machine_id, index)
            providers.append(provider_cls(self.hub, machine_id, options))
        planogram = {
            code: SlotPlan(
                product=slot["product"],
                price=slot["price"],
                capacity=slot["capacity"],
                par=slot.get("par"),
            )
            for code, slot in config["planogram"].items()
        }
        stock = {
            code: slot.get("stock", planogram[code].fill_level)
            for code, slot in config["planogram"].items()
        }
        return MachineSetup(
            machine_id=machine_id,
            name=config.get("name"),
            currency=config.get("currency") or self.hub.config.currency,
            planogram=planogram,
            stock=stock,
            dispenser=dispenser_cls(self.hub, machine_id, dispenser_options),
            providers=providers,
            mode=config["mode"],
            timeouts=Timeouts(**config["timeouts"]),
            pricing=self._pricing(machine_id),
        )

    async def _async_setup_machine(self, machine_id: str, config: Mapping[str, Any]) -> None:
        setup = self.build_setup(machine_id, config)
        engine = VendEngine(self.hub, setup, self.journal)
        await engine.async_start()
        info = MachineInfo(
            domain=DOMAIN,
            machine_id=machine_id,
            name=setup.name or machine_id,
            model="local",
            firmware="vendhub",
            location=config.get("location"),
            currency=setup.currency,
        )
        machine_entity, slots = build_entities(info, engine)
        machine = LocalMachine(engine, machine_entity, slots)
        self.machines[machine_id] = machine
        await async_add_entities(self.hub, DOMAIN, [machine_entity, *slots.values()])
        machine.unsubscribe = follow_engine(engine, machine_entity, slots)

    async def async_stop(self) -> None:
        for cancel in (self._price_timer, self._unsubscribe_prices):
            if cancel is not None:
                cancel()
        self._price_timer = self._unsubscribe_prices = None
        for machine in self.machines.values():
            for unsubscribe in machine.unsubscribe:
                unsubscribe()
            try:
                await machine.engine.async_stop()
            except Exception:
                _LOGGER.exception(
                    "Vending machine %s did not stop cleanly", machine.engine.machine_id
                )
        self.machines.clear()
        await self.journal.async_close()
