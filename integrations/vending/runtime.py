"""The vending integration at run time: the journal, one engine per local machine, entities,
and the slot plans changed while the hub ran (``vending.set_slots``), kept for the next start."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vendhub.config.errors import ConfigError
from vendhub.core.context import Context
from vendhub.core.timers import async_track_point_in_time
from vendhub.helpers.entity_platform import async_add_entities
from vendhub.helpers.storage import StorageError, Store
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
PLANS_STORE_KEY = "vending.plans"
PLANS_STORE_VERSION = 1


def _plan_data(plan: SlotPlan) -> dict[str, Any]:
    return {
        "product": plan.product,
        "price": plan.price,
        "capacity": plan.capacity,
        "par": plan.par,
    }


def _plan_of(data: Any) -> SlotPlan:
    """A SlotPlan from its stored form; ValueError (or KeyError, TypeError) when it is none."""
    return SlotPlan(
        product=data["product"], price=data["price"], capacity=data["capacity"], par=data["par"]
    )


def configured_planogram(config: Mapping[str, Any]) -> dict[str, SlotPlan]:
    """The slots' plans one validated machine block gives."""
    return {
        code: SlotPlan(
            product=slot["product"],
            price=slot["price"],
            capacity=slot["capacity"],
            par=slot.get("par"),
        )
        for code, slot in config["planogram"].items()
    }


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
        self.plans_store: Store[dict[str, Any]] = Store(hub, PLANS_STORE_KEY, PLANS_STORE_VERSION)
        self.kept_plans: dict[str, dict[str, dict[str, Any]]] = {}
        """Per machine, per slot: the plan ``vending.set_slots`` applied (``plan``) with the
        plan the configuration gave then (``configured``), as in ``.storage/vending.plans``."""

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
        await self._async_load_plans()
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
        planogram = configured_planogram(config)
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
        await self._async_restore_plans(engine, setup.planogram)
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

    # ---- slot plans changed while the hub ran (vending.set_slots) -------------------------

    async def _async_load_plans(self) -> None:
        try:
            stored = await self.plans_store.async_load()
        except StorageError as error:
            _LOGGER.error(
                "The slot plans changed with vending.set_slots cannot be read; the machines "
                "sell at their configured plans: %s",
                error,
            )
            return
        machines = stored.get("machines") if isinstance(stored, dict) else None
        if isinstance(machines, dict):
            self.kept_plans = {
                machine_id: dict(slots)
                for machine_id, slots in machines.items()
                if isinstance(slots, dict)
            }

    async def _async_restore_plans(
        self, engine: VendEngine, configured: Mapping[str, SlotPlan]
    ) -> None:
        """Apply again the plans ``vending.set_slots`` kept for this machine's slots whose
        configured plan is still the one kept with them; drop the others (an edited
        ``vending:`` block wins, from this start on)."""
        machine_id = engine.machine_id
        kept = self.kept_plans.get(machine_id)
        if not kept:
            return
        restore: dict[str, SlotPlan] = {}
        dropped = False
        for code, entry in list(kept.items()):
            try:
                plan, given = _plan_of(entry["plan"]), _plan_of(entry["configured"])
            except (KeyError, TypeError, ValueError) as error:
                _LOGGER.warning(
                    "Vending machine %s: the kept plan of slot %s is unreadable (%s); it sells "
                    "at its configured plan",
                    machine_id,
                    code,
                    error,
                )
                del kept[code]
                dropped = True
                continue
            if configured.get(code) != given:
                _LOGGER.info(
                    "Vending machine %s: slot %s sells at its configured plan, which was "
                    "edited since vending.set_slots changed it",
                    machine_id,
                    code,
                )
                del kept[code]
                dropped = True
                continue
            restore[code] = plan
        if restore:
            await engine.async_apply_plan(restore, context=Context())
            _LOGGER.info(
                "Vending machine %s: slots %s sell at the plan set with vending.set_slots",
                machine_id,
                ", ".join(restore),
            )
        if dropped:
            try:
                await self._async_save_plans()
            except Exception:
                _LOGGER.exception("Could not save the slot plans of %s", machine_id)

    async def async_keep_plans(self, machine_id: str, plans: Mapping[str, SlotPlan]) -> None:
        """Keep ``plans`` (just applied to the engine) for the next starts, each with the plan
        the configuration gives its slot now; a slot back at its configured plan is dropped."""
        configured = configured_planogram(self.config[CONF_MACHINES][machine_id])
        kept = self.kept_plans.setdefault(machine_id, {})
        for code, plan in plans.items():
            given = configured.get(code)
            if given is None or plan == given:
                kept.pop(code, None)
            else:
                kept[code] = {"plan": _plan_data(plan), "configured": _plan_data(given)}
        await self._async_save_plans()

    async def _async_save_plans(self) -> None:
        machines = {machine_id: slots for machine_id, slots in self.kept_plans.items() if slots}
        await self.plans_store.async_save(copy.deepcopy({"machines": machines}))

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
