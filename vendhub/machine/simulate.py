"""Virtual machines behind real machine agents: ``vendhub simulate`` and the simulated agent.

Each ``SimulatedMachine`` is a ``VirtualMachine`` (the pure model) wired to its own
``MachineAgent``: every tick steps the model and sends its events through the agent's outbox
and its readings as telemetry; commands from the hub are applied to the model and its
resulting events published; a config from the hub sets prices, products and the mode.
``Simulation`` runs any number of them in one process, for demos, tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from vendhub.machine import protocol
from vendhub.machine.agent import CommandError, MachineAgent, UnknownCommand
from vendhub.machine.catalog import planogram
from vendhub.machine.virtual import PAYMENT_METHODS, Slot, VirtualMachine

_LOGGER = logging.getLogger(__name__)

DEFAULT_SPEED = 60.0
DEFAULT_TICK = 1.0
DEFAULT_SUMMARY_INTERVAL = 60.0
DEFAULT_ID_PREFIX = "sim"
DEFAULT_SLOTS = 12
DEFAULT_SALES_PER_HOUR = 6.0
DEFAULT_CURRENCY = "EUR"
SIMULATED_MODEL = "VendHub Simulator"
SIMULATED_FIRMWARE = "1.0.0"
REFRIGERATED_EVERY = 3  # machine 2, 5, 8, … of a fleet is refrigerated
SELLING_MODES = frozenset({protocol.MODE_NORMAL, protocol.MODE_FREE_VEND})


# ---- where the hub is ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HubAddress:
    """The broker a machine connects to, from ``mqtt://[user:password@]host[:port]``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


def parse_hub_url(url: str) -> HubAddress:
    """``mqtt://host:1883`` (or ``mqtts://`` for TLS, default port 8883); raises ValueError."""
    text = url.strip()
    if "://" not in text:
        text = f"mqtt://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"unsupported hub URL scheme {parts.scheme!r} in {url!r}; use mqtt://")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ValueError(f"bad port in hub URL {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"no host in hub URL {url!r}; expected mqtt://HOST:PORT")
    if parts.path not in ("", "/"):
        raise ValueError(f"a hub URL has no path, got {parts.path!r} in {url!r}")
    return HubAddress(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


# ---- a simulated fleet -----------------------------------------------------------------------


def fleet(
    count: int,
    *,
    seed: int | None = None,
    id_prefix: str = DEFAULT_ID_PREFIX,
    slots: int = DEFAULT_SLOTS,
    sales_per_hour: float = DEFAULT_SALES_PER_HOUR,
) -> list[dict[str, Any]]:
    """Specs of ``count`` machines ``sim_001``, ``sim_002``, …: varied products, every third
    one refrigerated; the layout depends only on ``seed``."""
    if count < 1:
        raise ValueError(f"a fleet needs at least one machine, got {count}")
    rng = random.Random(f"{0 if seed is None else seed}/fleet")
    width = max(3, len(str(count)))
    specs = []
    for number in range(1, count + 1):
        refrigerated = number % REFRIGERATED_EVERY == 2
        specs.append(
            {
                "machine_id": f"{id_prefix}_{number:0{width}d}",
                "refrigerated": refrigerated,
                "slots": with_par(planogram(slots, refrigerated, rng)),
                "sales_per_hour": sales_per_hour,
                "seed": f"{0 if seed is None else seed}/{number}",
            }
        )
    return specs


def with_par(slots: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Slots with ``par`` (a quarter of the capacity, at least 1) and ``stock`` (full) filled in."""
    return {
        code: {
            **slot,
            "par": slot.get("par", max(1, int(slot["capacity"]) // 4)),
            "stock": slot.get("stock", slot["capacity"]),
        }
        for code, slot in slots.items()
    }


def virtual_machine(spec: Mapping[str, Any]) -> VirtualMachine:
    """The ``VirtualMachine`` of a spec (``machine_id``, ``slots``, optional model settings)."""
    options = {
        key: spec[key]
        for key in (
            "model",
            "firmware",
            "refrigerated",
            "target_temperature",
            "ambient_temperature",
            "sales_per_hour",
            "jam_rate",
            "failure_rate",
            "door_openings_per_day",
            "telemetry_interval",
            "seed",
        )
        if spec.get(key) is not None
    }
    options.setdefault("model", SIMULATED_MODEL)
    options.setdefault("firmware", SIMULATED_FIRMWARE)
    return VirtualMachine(
        spec["machine_id"],
        spec["slots"],
        start=datetime.now(UTC),
        wall_clock_timestamps=True,
        **options,
    )


# ---- one machine -----------------------------------------------------------------------------


class SimulatedMachine:
    """A ``VirtualMachine`` behind its own ``MachineAgent``."""

    def __init__(
        self,
        machine: VirtualMachine,
        *,
        par: Mapping[str, int] | None = None,
        currency: str = DEFAULT_CURRENCY,
        **agent_options: Any,
    ) -> None:
        self.machine = machine
        self.machine_id = machine.machine_id
        self.currency = currency
        self.par = {
            code: int((par or {}).get(code, max(1, slot.capacity // 4)))
            for code, slot in machine.slots.items()
        }
        self.mode = protocol.MODE_NORMAL
        self.configured_prices = {code: slot.price for code, slot in machine.slots.items()}
        self.sales_per_hour = machine.sales_per_hour
        self._since_telemetry = 0.0
        self.agent = MachineAgent(
            machine.machine_id,
            announce=self.announce(),
            command_handler=self.handle_command,
            on_config=self.apply_config,
            **agent_options,
        )

    def announce(self) -> dict[str, Any]:
        """The ``announce`` message of the machine as it is now."""
        capabilities = ["cash", "card", "mobile"]
        if self.machine.refrigerated:
            capabilities.append("temperature")
        return {
            "v": protocol.PROTOCOL_VERSION,
            "ts": protocol.format_time(datetime.now(UTC)),
            "model": self.machine.model,
            "firmware": self.machine.firmware,
            "currency": self.currency,
            "refrigerated": self.machine.refrigerated,
            "capabilities": capabilities,
            "slots": {
                code: {
                    "product": slot.product,
                    "price": slot.price,
                    "capacity": slot.capacity,
                    "par": min(self.par.get(code, 1), slot.capacity),
                    "stock": slot.stock,
                }
                for code, slot in self.machine.slots.items()
            },
        }

    def readings(self, telemetry: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The machine's readings: the model's telemetry plus door and cash box."""
        readings = dict(telemetry.get("readings", {})) if telemetry else {}
        if self.machine.temperature is not None and "temperature" not in readings:
            readings["temperature"] = round(self.machine.temperature, 2)
            readings["compressor"] = self.machine.compressor_on
        readings["door_open"] = self.machine.door_open
        readings["cash_box"] = self.machine.cash_box
        return readings

    async def tick(self, sim_seconds: float) -> int:
        """Advance the model; send its events and (at most one) telemetry. Returns events."""
        messages = self.machine.step(sim_seconds)
        events = [m for m in messages if m.get("type") == "event"]
        telemetry = [m for m in messages if m.get("type") == "telemetry"]
        stored = await self.publish(events)
        self._since_telemetry += sim_seconds
        if telemetry or self._since_telemetry >= self.machine.telemetry_interval:
            self._since_telemetry = 0.0
            await self.agent.telemetry(self.readings(telemetry[-1] if telemetry else None))
        return stored

    async def publish(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Send the model's event messages through the agent's outbox."""
        batch = list(events)
        if not batch:
            return 0
        try:
            return await self.agent.publish_events(batch)
        except protocol.ProtocolError as error:
            _LOGGER.error("Machine %s: cannot send its events: %s", self.machine_id, error)
            return 0

    # ---- from the hub ------------------------------------------------------------------------

    async def handle_command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Apply a command to the model; publish the events it caused; say what happened."""
        args = protocol.validate_command_args(name, args)
        machine = self.machine
        if name == protocol.COMMAND_RESTOCK:
            events = machine.restock(args.get("slot"))
            result: dict[str, Any] = {"slots": dict(events[-1]["data"]["slots"])}
        elif name == protocol.COMMAND_LOCK_SLOTS:
            events = machine.lock_slots(args.get("slots"), bool(args.get("locked", True)))
            result = {"slots": dict(events[-1]["data"]["slots"])}
        elif name == protocol.COMMAND_SET_DOOR:
            events = machine.set_door(bool(args["open"]))
            result = {"open": machine.door_open}
        elif name == protocol.COMMAND_VEND:
            if self.mode not in SELLING_MODES:
                raise CommandError(f"machine {self.machine_id} is in {self.mode} mode")
            method = args.get("payment_method", "cash")
            if method not in PAYMENT_METHODS:
                raise CommandError(f"unknown payment method {method!r}; known: {PAYMENT_METHODS}")
            events = machine.vend(args["slot"], method)
            outcome = events[-1]  # vend_completed or vend_failed: its data, and which it was
            result = {**outcome["data"], "outcome": outcome["event"]}
        elif name == "collect_cash":
            events = machine.collect_cash()
            result = {"amount": events[-1]["data"]["amount"]}
        else:
            raise UnknownCommand(f"unknown command {name!r}")
        await self.publish(events)
        result["events"] = [event["id"] for event in events]
        return result

    async def apply_config(self, config: dict[str, Any]) -> None:
        """Take the hub's prices, products, capacities, par levels and mode."""
        for code, plan in config["slots"].items():
            slot = self.machine.slots.get(code)
            if slot is None:
                slot = Slot(code, plan["product"], plan["price"], plan["capacity"], stock=0)
                self.machine.slots[code] = slot
            slot.product = plan["product"]
            slot.capacity = plan["capacity"]
            slot.stock = min(slot.stock, slot.capacity)
            self.configured_prices[code] = plan["price"]
            self.par[code] = plan["par"]
        self.mode = config["mode"]
        free = self.mode == protocol.MODE_FREE_VEND
        for code, slot in self.machine.slots.items():
            slot.price = 0 if free else self.configured_prices.get(code, slot.price)
        self.machine.sales_per_hour = self.sales_per_hour if self.mode in SELLING_MODES else 0.0
        await self.agent.update_announce(self.announce())


# ---- many machines ---------------------------------------------------------------------------


class Simulation:
    """Simulated machines stepped together every ``tick`` real seconds, ``speed`` times faster."""

    def __init__(
        self,
        machines: list[SimulatedMachine],
        *,
        speed: float = DEFAULT_SPEED,
        tick: float = DEFAULT_TICK,
        summary_interval: float = DEFAULT_SUMMARY_INTERVAL,
    ) -> None:
        if speed <= 0 or tick <= 0:
            raise ValueError("speed and tick must be positive")
        self.machines = machines
        self.speed = float(speed)
        self.tick = float(tick)
        self.summary_interval = float(summary_interval)
        self.ticks = 0

    def summary(self) -> str:
        """One line: machines online, events stored, published, acknowledged, pending."""
        stats = [sim.agent.stats for sim in self.machines]
        online = sum(1 for sim in self.machines if sim.agent.connected)
        pending = sum(sim.agent.pending for sim in self.machines)
        return (
            f"{online}/{len(self.machines)} machines online; events sent "
            f"{sum(s.events_stored for s in stats)} (published "
            f"{sum(s.events_published for s in stats)}, resends included), acked "
            f"{sum(s.events_acked for s in stats)}, pending {pending}; telemetry sent "
            f"{sum(s.telemetry_sent for s in stats)}, dropped "
            f"{sum(s.telemetry_dropped for s in stats)}; commands "
            f"{sum(s.commands for s in stats)}"
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Start every agent, tick until ``stop`` is set, then stop every agent (offline)."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(sim.agent.start() for sim in self.machines))
        try:
            next_tick = loop.time()
            next_summary = loop.time() + self.summary_interval
            while not stop.is_set():
                next_tick += self.tick
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, next_tick - loop.time()))
                if stop.is_set():
                    break
                late = loop.time() - next_tick
                if late > self.tick:  # fell behind (a slow disk, a busy CPU): do not catch up
                    next_tick = loop.time()
                for sim in self.machines:
                    await sim.tick(self.tick * self.speed)
                self.ticks += 1
                if self.summary_interval > 0 and loop.time() >= next_summary:
                    next_summary += self.summary_interval
                    _LOGGER.info("Simulation: %s", self.summary())
        finally:
            await asyncio.gather(
                *(sim.agent.stop() for sim in self.machines), return_exceptions=True
            )
            _LOGGER.info("Simulation stopped: %s", self.summary())


def default_outbox_dir() -> Path:
    """``$XDG_STATE_HOME/vendhub/simulate`` (``~/.local/state/vendhub/simulate``)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "vendhub" / "simulate"


def build_simulation(
    *,
    machines: int,
    hub: HubAddress,
    speed: float = DEFAULT_SPEED,
    tick: float = DEFAULT_TICK,
    seed: int | None = None,
    outbox_dir: Path | None = None,
    prefix: str = protocol.DEFAULT_PREFIX,
    id_prefix: str = DEFAULT_ID_PREFIX,
    sales_per_hour: float = DEFAULT_SALES_PER_HOUR,
    summary_interval: float = DEFAULT_SUMMARY_INTERVAL,
    resend_after: float = 10.0,
    keepalive: int = 30,
) -> Simulation:
    """``machines`` simulated machines, each with its own agent and outbox, on ``hub``."""
    folder = Path(outbox_dir) if outbox_dir is not None else default_outbox_dir()
    simulated = []
    for spec in fleet(machines, seed=seed, id_prefix=id_prefix, sales_per_hour=sales_per_hour):
        simulated.append(
            SimulatedMachine(
                virtual_machine(spec),
                par={code: slot["par"] for code, slot in spec["slots"].items()},
                broker_host=hub.host,
                broker_port=hub.port,
                username=hub.username,
                password=hub.password,
                tls=hub.tls,
                prefix=prefix,
                outbox_path=folder / f"{spec['machine_id']}.db",
                resend_after=resend_after,
                keepalive=keepalive,
            )
        )
    return Simulation(simulated, speed=speed, tick=tick, summary_interval=summary_interval)


async def run_until_signalled(simulation: Simulation) -> None:
    """Run ``simulation`` until Ctrl+C or SIGTERM, then stop it cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(number, stop.set)
            installed.append(number)
    try:
        await simulation.run(stop)
    finally:
        for number in installed:
            loop.remove_signal_handler(number)
