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
import json
import logging
import os
import random
import signal
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

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
    """Where a machine connects: a broker (``mqtt://[user:password@]host[:port]``), or the
    hub's HTTP API (``http://`` / ``https://``: ``transport`` ``"http"``, see ``http_link``)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    transport: str = "mqtt"

    def __str__(self) -> str:
        if self.transport == "http":
            return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


def parse_hub_url(url: str) -> HubAddress:
    """``mqtt://host:1883`` (or ``mqtts://`` for TLS, default port 8883), or the hub's HTTP API
    for machines without a broker: ``http://host:8700`` / ``https://``; raises ValueError."""
    text = url.strip()
    if "://" not in text:
        text = f"mqtt://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl", "http", "https"):
        raise ValueError(
            f"unsupported hub URL scheme {parts.scheme!r} in {url!r}; use mqtt:// (or http:// "
            "for the hub's HTTP transport)"
        )
    tls = parts.scheme in ("mqtts", "ssl", "https")
    http = parts.scheme in ("http", "https")
    try:
        port = parts.port or (8700 if http else 8883 if tls else 1883)
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
        transport="http" if http else "mqtt",
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
    specs = []
    for number, machine_id in enumerate(fleet_ids(count, id_prefix), start=1):
        refrigerated = number % REFRIGERATED_EVERY == 2
        specs.append(
            {
                "machine_id": machine_id,
                "refrigerated": refrigerated,
                "slots": with_par(planogram(slots, refrigerated, rng)),
                "sales_per_hour": sales_per_hour,
                "seed": f"{0 if seed is None else seed}/{number}",
            }
        )
    return specs


def fleet_ids(count: int, id_prefix: str = DEFAULT_ID_PREFIX) -> list[str]:
    """The ids of a fleet of ``count``: ``sim_001``, … (three digits, more for a big fleet)."""
    width = max(3, len(str(count)))
    return [f"{id_prefix}_{number:0{width}d}" for number in range(1, count + 1)]


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
        agent_factory: type[MachineAgent] = MachineAgent,
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
        self.agent = agent_factory(
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
    passwords: Mapping[str, str] | None = None,
) -> Simulation:
    """``machines`` simulated machines, each with its own agent and outbox, on ``hub``.

    With ``passwords`` (machine id → password, see ``machine_passwords``) every machine
    connects as its own MQTT user, its machine id; otherwise all use the user of ``hub``, if
    any. Raises ValueError for a machine without a password, or a ``hub`` with a user too.
    """
    folder = Path(outbox_dir) if outbox_dir is not None else default_outbox_dir()
    specs = fleet(machines, seed=seed, id_prefix=id_prefix, sales_per_hour=sales_per_hour)
    if passwords is not None:
        if hub.username is not None:
            raise ValueError(
                f"the hub URL gives the user {hub.username!r}, but with per-machine passwords "
                "every machine connects as its own user: leave USER:PASSWORD@ out of the URL"
            )
        missing = [spec["machine_id"] for spec in specs if spec["machine_id"] not in passwords]
        if missing:
            raise ValueError(f"no password for {_some(missing)}")
    simulated = []
    for spec in specs:
        machine_id = spec["machine_id"]
        simulated.append(
            SimulatedMachine(
                virtual_machine(spec),
                par={code: slot["par"] for code, slot in spec["slots"].items()},
                broker_host=hub.host,
                broker_port=hub.port,
                username=hub.username if passwords is None else machine_id,
                password=hub.password if passwords is None else passwords[machine_id],
                tls=hub.tls,
                agent_factory=agent_class(hub),
                prefix=prefix,
                outbox_path=folder / f"{spec['machine_id']}.db",
                resend_after=resend_after,
                keepalive=keepalive,
            )
        )
    return Simulation(simulated, speed=speed, tick=tick, summary_interval=summary_interval)


def agent_class(hub: HubAddress) -> type[MachineAgent]:
    """The agent for ``hub``: over MQTT, or over the hub's HTTP transport."""
    if hub.transport == "http":
        from vendhub.machine.http_link import HttpMachineAgent

        return HttpMachineAgent
    return MachineAgent


# ---- one MQTT user per machine ---------------------------------------------------------------


class CredentialsFileError(Exception):
    """The simulated machines' passwords cannot be read, issued or checked; says what to do."""


_FILE_HEADER = (
    "# MQTT passwords of simulated machines: 'machine_id: password', one per line.\n"
    "# Used by 'vendhub simulate --credentials'; keep it private (mode 0600).\n"
)


def read_passwords(path: Path) -> dict[str, str]:
    """Machine id → password from a credentials file; an empty mapping when there is none.

    The file is YAML, one ``sim_001: PASSWORD`` per line (quote a password YAML would read
    as a number). Raises ``CredentialsFileError`` naming the file and what is wrong.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise CredentialsFileError(f"cannot read the credentials file {path}: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CredentialsFileError(f"the credentials file {path} is not YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CredentialsFileError(
            f"the credentials file {path} must map machine ids to passwords, one "
            f"'sim_001: PASSWORD' per line; it holds a {type(data).__name__}"
        )
    passwords: dict[str, str] = {}
    for machine_id, password in data.items():
        if not isinstance(machine_id, str) or not protocol.is_machine_id(machine_id):
            raise CredentialsFileError(
                f"{path}: {machine_id!r} is not a machine id (1 to 64 of a-z, 0-9 and _)"
            )
        if not isinstance(password, str) or not password:
            raise CredentialsFileError(
                f"{path}: the password of {machine_id} must be text; put it in quotes"
            )
        passwords[machine_id] = password
    if path.stat().st_mode & 0o077:
        _LOGGER.warning(
            "The credentials file %s can be read by other users; make it private: chmod 600 %s",
            path,
            path,
        )
    return passwords


def write_passwords(path: Path, passwords: Mapping[str, str]) -> None:
    """Write a credentials file atomically, mode 0600, sorted by machine id."""
    lines = [
        f"{machine_id}: {json.dumps(passwords[machine_id])}" for machine_id in sorted(passwords)
    ]
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as temp_file:
            temp_file.write(_FILE_HEADER + "\n".join(lines) + "\n")
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def machine_passwords(
    machine_ids: Sequence[str], credentials_file: Path, config_dir: Path | None = None
) -> tuple[dict[str, str], list[str]]:
    """The password of every machine in ``machine_ids``, from ``credentials_file``.

    Without ``config_dir`` the file must hold them all. With the hub's ``config_dir`` the
    passwords in the file are checked against the hub's credential store, and machines the
    store does not know get credentials issued there (as ``vendhub machine add`` does),
    their passwords added to the file. Returns ``(passwords, ids issued now)``; raises
    ``CredentialsFileError`` with what to do about a missing, wrong or lost password.
    """
    # The hub's credential store, only when asked for: the agent needs none of it.
    from vendhub.machine.credentials import add_machine, load_credentials, verify_password

    known = read_passwords(credentials_file)
    if config_dir is None:
        missing = [machine_id for machine_id in machine_ids if machine_id not in known]
        if missing:
            raise CredentialsFileError(
                f"{credentials_file} has no password for {_some(missing)}: issue credentials "
                "with 'vendhub machine add ID' and add a line 'ID: PASSWORD' for each, or "
                "give the hub's configuration folder with --config to have them issued"
            )
        return {machine_id: known[machine_id] for machine_id in machine_ids}, []

    if not config_dir.is_dir():
        raise CredentialsFileError(f"the hub's configuration folder {config_dir} does not exist")
    hashes = load_credentials(config_dir).users
    wrong = [
        machine_id
        for machine_id in machine_ids
        if machine_id in known
        and machine_id in hashes
        and not verify_password(known[machine_id], hashes[machine_id])
    ]
    if wrong:
        raise CredentialsFileError(
            f"the passwords of {_some(wrong)} in {credentials_file} are not the ones the hub "
            f"issued ({config_dir}): correct them, or issue new ones with 'vendhub machine add "
            "ID --rotate' and put them in the file"
        )
    lost = [
        machine_id for machine_id in machine_ids if machine_id in hashes and machine_id not in known
    ]
    if lost:
        raise CredentialsFileError(
            f"credentials for {_some(lost)} were issued in {config_dir} before, but "
            f"{credentials_file} has not got their passwords (a password is shown only once): "
            "issue new ones with "
            f"'vendhub machine add ID --rotate --config {config_dir}' and add them to the file, "
            "or revoke them with 'vendhub machine remove ID' so that new ones are issued"
        )
    issued = [machine_id for machine_id in machine_ids if machine_id not in hashes]
    if issued:
        if not os.access(credentials_file.parent, os.W_OK):  # before issuing what we'd lose
            raise CredentialsFileError(
                f"cannot write the credentials file {credentials_file}: its folder does not "
                "exist or is not writable"
            )
        updated = dict(known)
        for machine_id in issued:
            _, updated[machine_id] = add_machine(config_dir, machine_id)
        write_passwords(credentials_file, updated)
        known = updated
    return {machine_id: known[machine_id] for machine_id in machine_ids}, issued


def _some(ids: Sequence[str], shown: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 7 more``."""
    if len(ids) <= shown:
        return ", ".join(ids)
    return f"{', '.join(ids[:shown])} and {len(ids) - shown} more"


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
