"""The running simulator: virtual machines, their entities, the link, and the step loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vendhub.helpers.entity_platform import async_add_entities
from vendhub.machine.entities import MachineEntities, MachineEntityBase, MachineInfo
from vendhub.machine.link import MachineLink
from vendhub.machine.virtual import UnknownSlot, VirtualMachine
from vendhub.util.dt import utcnow

from .activity import ActivitySummary
from .catalog import DEFAULT_PLANOGRAM_SLOTS, generate_fleet, planogram
from .const import (
    DEFAULT_FIRMWARE,
    DEFAULT_MODEL,
    DEFAULT_PAYMENT_METHODS,
    DOMAIN,
    MANUFACTURER,
)
from .purchase import PurchaseManager
from .schema import CONF_FLEET, CONF_MACHINES, CONF_PAYMENT_METHODS, CONF_PURCHASE

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)


class UnknownMachine(LookupError):
    """A command named a machine the simulator does not run."""


def machine_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every machine of a validated configuration: those listed, then the fleet's."""
    machines = [dict(machine) for machine in config.get(CONF_MACHINES, [])]
    for machine in machines:
        if "slots" not in machine:
            machine["slots"] = planogram(DEFAULT_PLANOGRAM_SLOTS, machine["refrigerated"])
    if config.get(CONF_FLEET) is not None:
        machines.extend(generate_fleet(config[CONF_FLEET], config.get("seed")))
    return machines


class SimulatorRuntime:
    """What one set-up simulator owns; kept in ``hub.data["simulator"]``."""

    def __init__(self, hub: Hub, config: dict[str, Any]) -> None:
        self.hub = hub
        self.config = config
        self.speed: float = config["speed"]
        self.tick: float = config["tick"]
        self.link = MachineLink(hub)
        self.machines: dict[str, VirtualMachine] = {}
        self.entities: dict[str, MachineEntities] = {}
        self.task: asyncio.Task[None] | None = None
        self.steps = 0
        self.activity: ActivitySummary | None = None
        self.payment_methods: dict[str, tuple[str, ...]] = {}
        """What each machine's simulated payment accepts (card, qr, cash)."""
        self.purchases = PurchaseManager(hub, self, config.get(CONF_PURCHASE) or {})

    # ---- set up and tear down ------------------------------------------------------------

    def _start_time(self) -> datetime:
        start: datetime | None = self.config.get("start")
        if start is None:
            return utcnow()
        if start.tzinfo is None:
            start = start.replace(tzinfo=self.link.tz)
        return start.astimezone(UTC)

    async def async_setup(self) -> None:
        """Create the machines and their entities, and start the step loop."""
        seed = self.config.get("seed")
        start = self._start_time()
        currency = self.hub.config.currency
        new_entities: list[MachineEntityBase] = []
        for spec in machine_configs(self.config):
            machine_id = spec["id"]
            machine = VirtualMachine(
                machine_id,
                spec["slots"],
                rng=random.Random(f"{seed}/{machine_id}") if seed is not None else None,
                start=start,
                wall_clock_timestamps=self.config.get("start") is None,
                tz=self.link.tz,
                model=spec.get("model", DEFAULT_MODEL),
                firmware=spec.get("firmware", DEFAULT_FIRMWARE),
                refrigerated=spec["refrigerated"],
                target_temperature=spec["target_temperature"],
                ambient_temperature=spec["ambient_temperature"],
                sales_per_hour=spec["sales_per_hour"],
                daily_curve=spec.get("daily_curve"),
                jam_rate=spec["jam_rate"],
                failure_rate=spec["failure_rate"],
                door_openings_per_day=spec["door_openings_per_day"],
                telemetry_interval=self.config["telemetry_interval"],
            )
            info = MachineInfo(
                domain=DOMAIN,
                machine_id=machine_id,
                name=spec.get("name") or machine_id,
                model=machine.model,
                firmware=machine.firmware,
                location=spec.get("location"),
                currency=currency,
                manufacturer=MANUFACTURER,
            )
            bundle = self._entities_for(info, machine, spec)
            self.machines[machine_id] = machine
            self.entities[machine_id] = bundle
            self.payment_methods[machine_id] = tuple(
                spec.get(CONF_PAYMENT_METHODS) or DEFAULT_PAYMENT_METHODS
            )
            new_entities.extend(bundle.all())
        await async_add_entities(self.hub, DOMAIN, new_entities)
        for machine_id, machine in self.machines.items():
            self.link.add_machine(machine_id, self.entities[machine_id])
            await self.link.async_handle_message(machine_id, machine.status_message())
        self.task = self.hub.async_create_background_task(self._async_run(), name="simulator")
        if self.config["summary_interval"] > 0:
            self.activity = ActivitySummary(
                self.hub, self.config["summary_interval"], list(self.machines)
            )
        _LOGGER.info(
            "Simulating %d machines at %gx speed, one step every %g s",
            len(self.machines),
            self.speed,
            self.tick,
        )

    @staticmethod
    def _entities_for(
        info: MachineInfo, machine: VirtualMachine, spec: dict[str, Any]
    ) -> MachineEntities:
        slots = {
            code: {
                "product": slot.product,
                "price": slot.price,
                "capacity": slot.capacity,
                "stock": slot.stock,
                "par": spec["slots"][code].get("par", max(1, slot.capacity // 4)),
            }
            for code, slot in machine.slots.items()
        }
        return MachineEntities.build(
            info,
            slots,
            refrigerated=machine.refrigerated,
            door_open=machine.door_open,
            cash_box=machine.cash_box,
            temperature=machine.temperature,
            target_temperature=spec["target_temperature"],
        )

    async def async_stop(self) -> None:
        """Stop the step loop and let go of the machines."""
        self.purchases.stop()
        if self.activity is not None:
            self.activity.stop()
            self.activity = None
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for machine_id in self.machines:
            self.link.remove_machine(machine_id)

    # ---- running -------------------------------------------------------------------------

    async def _async_run(self) -> None:
        loop = self.hub.loop
        next_at = loop.time() + self.tick
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += self.tick
            if next_at < loop.time():  # fell behind: skip the missed steps, keep the pace
                next_at = loop.time() + self.tick
            try:
                await self.async_step(self.tick * self.speed)
            except Exception:
                _LOGGER.exception("A simulator step failed; the next one runs as planned")

    async def async_step(self, sim_seconds: float) -> int:
        """Advance every machine ``sim_seconds`` and apply its messages; return how many."""
        count = 0
        for machine_id, machine in self.machines.items():
            messages = machine.step(sim_seconds)
            count += len(messages)
            await self.async_feed(machine_id, messages)
        self.steps += 1
        return count

    async def async_feed(
        self, machine_id: str, messages: Iterable[dict[str, Any]], context: Context | None = None
    ) -> None:
        """Hand a machine's messages to the link, in order."""
        for message in messages:
            await self.link.async_handle_message(machine_id, message, context)

    # ---- lookups for the services --------------------------------------------------------

    def machine(self, machine_id: str) -> VirtualMachine:
        """The machine ``machine_id``, or UnknownMachine naming the known ones."""
        try:
            return self.machines[machine_id]
        except KeyError:
            known = ", ".join(sorted(self.machines)[:20])
            raise UnknownMachine(
                f"the simulator runs no machine {machine_id!r}; known: {known}"
            ) from None

    def slot_code(self, machine: VirtualMachine, code: str) -> str:
        """The machine's own spelling of slot ``code`` (compared case-insensitively)."""
        if code in machine.slots:
            return code
        for own in machine.slots:
            if own.lower() == code.lower():
                return own
        raise UnknownSlot(
            f"machine {machine.machine_id} has no slot {code!r}; known: {', '.join(machine.slots)}"
        )
