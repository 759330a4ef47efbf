"""Fleet telemetry end to end: simulated machines → Mosquitto → hub → states → recorder.

Everything runs in separate processes on this computer, so each can be measured on its own:

- **Broker**: a Mosquitto of our own (``tests/mosquitto.py``'s helper, on a free port in a temp
  folder; the shared broker on 1883 is never used). Its generated conf only changes two things
  from the helper's: ``log_type`` is errors and warnings (logging every PUBLISH would cost more
  than the messages) and ``max_queued_messages`` is raised from 1,000 to 10,000,000, because
  at the default Mosquitto silently drops QoS 1 messages for a subscriber that falls more than
  1,000 messages behind, which would be counted as loss of the hub's.
- **Publishers** (``--publishers`` processes, default 2, since one cannot offer enough for
  1,000 machines): ``--machines`` machines, one MQTT v5 connection each, speaking the machine
  protocol directly (``protocol.topic`` and ``encode``; no agent or outbox, for speed): an
  aiomqtt client each, whose telemetry goes out through paho's ``publish`` with the PUBACKs
  counted in paho's ``on_publish``, since aiomqtt's ``publish`` (a task, a ``wait_for`` and an
  event per message) took the publishers about twice the CPU, CPU that the hub and the raw
  subscriber share with them. Their layout comes from ``simulate.fleet`` (12 slots, every
  third machine refrigerated). Each publishes ``telemetry`` at QoS 1 (the protocol says QoS 0;
  at QoS 1 "sent" means "the broker has it"), ``--rate`` messages/s (default 10,000/s over the
  fleet), ``--readings-per-message`` readings each, for ``--seconds``, at most 20 unconfirmed
  at once (paho's in-flight window). ``sent`` counts only publishes the broker acknowledged
  (PUBACK).
- **Ceiling**, measured first, before the hub has ever connected (its persistent session would
  otherwise make the broker queue for it): a raw aiomqtt subscriber (MQTT v5, QoS 1, in its own
  process) on ``vendhub/+/telemetry`` receives the same publishers' load.
  ``ceiling_msgs_per_s`` = messages it received / (its last message - the start).
- **Hub**: ``python -m vendhub run`` in a subprocess on a generated configuration folder:
  the recorder on SQLite in that folder with ``commit_interval: 1``, ``mqtt:`` pointing at the
  broker with ``auto_adopt: true``, and a probe (below). The publishers connect again as
  machines: a retained ``online`` status and a retained ``announce``, then they wait for their
  retained ``config``, which the hub publishes when it adopts them; then the same telemetry run.

What is counted, and how:

- ``recorded``: telemetry messages whose effect the recorder wrote. Every message carries a new
  ``uptime`` (always the first reading), a health reading that lands in the attributes of
  ``machine.<id>``, so every applied message makes exactly one ``machine.<id>`` row with its
  own attribute set; none existed before the first telemetry. After the publishers stop, the
  hub drains, the benchmark waits more than ``commit_interval``, stops the hub (SIGTERM: the
  recorder's final write) and counts, with sqlite3, the distinct (entity, attribute set) pairs
  of ``machine.bench_*`` rows whose attributes hold ``uptime``. Other readings update the
  temperature, door and cash box entities too (rows only when their value changes: not
  counted); readings beyond the protocol's known ones are validated but not kept by the hub.
- ``msgs_per_s`` (end to end): ``recorded`` / (the latest ``last_updated_ts`` of those rows,
  i.e. when the hub set that state, - the start). ``readings_per_s`` = ``msgs_per_s`` x K.
- Hub side: the hub has no counter one can read from outside, and the benchmark may not
  change hub code, so the generated configuration folder holds a small custom integration,
  ``custom_integrations/ingest_probe`` (the documented plugin mechanism, no hub change): a
  bus listener counts ``mqtt_message_received`` events on telemetry topics (``hub_received``),
  and every 0.25 s it writes those counts and the counters the hub keeps anyway (the machine
  link's ``stats``, the link-errors sensors, ``seq_gaps``, the recorder writer's stats) to a
  JSON file. ``handled`` = the growth of the link's ``accepted`` minus ``errors`` during the
  run (only telemetry flows then); ``loss`` = ``sent`` - ``handled``; ``unrecorded`` =
  ``handled`` - ``recorded``.
- Hub CPU: utime + stime from ``/proc/<pid>/stat`` between the start and the end of draining,
  as a percentage of one core; RSS from ``/proc/<pid>/status``: ``hub_rss_mb`` is VmHWM, the
  peak over the whole run (the strictest reading), beside VmRSS once all machines were adopted
  (``hub_rss_idle_mb``: the machines held) and at the end. The RSS target is checked on both.
- ``hub_queue_max``: the most messages the hub's MQTT client held received but not handled
  during the telemetry run, as the probe saw them every 0.25 s. A hub slower than the
  publishers leaves the rest of its backlog in its session on the broker
  (``integrations/mqtt/inflow.py``), which is why the broker's ``max_queued_messages`` is
  raised.

The ceiling is only as high as the load: when the raw subscriber had every message within
10% of ``--seconds`` after the publishers' last PUBACK, it measured the publishers' rate, not
its own limit; ``ceiling_bound_by_publishers`` says so, and the ratio is then an upper bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.mosquitto import Mosquitto
from vendhub.const import __version__
from vendhub.machine import protocol
from vendhub.machine.simulate import DEFAULT_SLOTS, SIMULATED_FIRMWARE, SIMULATED_MODEL, fleet

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PREFIX = protocol.DEFAULT_PREFIX
ID_PREFIX = "bench"
SEED = 7
DEFAULT_TOTAL_RATE = 10_000  # messages/s over the whole fleet when --rate is not given
DEFAULT_PUBLISHERS = 2
COMMIT_INTERVAL = 1.0
IN_FLIGHT = 20  # unconfirmed QoS 1 publishes per machine: paho's default window
CONNECTS_AT_ONCE = 50
STATUS_INTERVAL = 0.25
STALL_SECONDS = 15.0  # no progress this long while draining: the rest is not coming
BROKER_MAX_QUEUED = 10_000_000

TARGET_RATIO = 0.5
TARGET_READINGS = 30_000
TARGET_MACHINES = 1000
TARGET_RSS_MB = 300

KNOWN_READINGS = (
    "uptime",  # first: every message needs a new one (see the module docstring)
    "temperature",
    "compressor",
    "door_open",
    "cash_box",
    "rssi",
    "disk_free_mb",
    "errors",
    "software_version",
)
EXTRA_READINGS = ("humidity", "supply_voltage", "coin_tube_level", "ambient_temperature")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--machines", type=int, default=1000, help="simulated machines")
    parser.add_argument("--seconds", type=float, default=20.0, help="telemetry run length")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help=f"telemetry messages/s per machine (default: {DEFAULT_TOTAL_RATE:,} / machines)",
    )
    parser.add_argument(
        "--readings-per-message", type=int, default=10, help="readings in one message (K)"
    )
    parser.add_argument(
        "--publishers",
        type=int,
        default=DEFAULT_PUBLISHERS,
        help=f"publisher processes the machines share (default {DEFAULT_PUBLISHERS}: one "
        "cannot offer enough for 1,000 machines, so the ceiling would be the publisher's)",
    )
    parser.add_argument("--slots", type=int, default=DEFAULT_SLOTS, help="slots per machine")
    parser.add_argument(
        "--skip-ceiling", action="store_true", help="do not measure the raw subscriber"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (logs, database) afterwards"
    )


# ---- what machines send -----------------------------------------------------------------------


def reading_names(count: int) -> list[str]:
    """The first ``count`` reading names: the protocol's known ones, then extra sensors."""
    names = [*KNOWN_READINGS, *EXTRA_READINGS]
    names += [f"sensor_{index}" for index in range(count - len(names))]
    return names[:count]


class Readings:
    """One machine's readings, drifting a little from message to message."""

    def __init__(self, count: int, refrigerated: bool, rng: random.Random) -> None:
        self.names = reading_names(count)
        self.rng = rng
        self.base_temperature = 4.0 if refrigerated else 21.0
        self.compressor = False
        self.cash_box = rng.randrange(0, 20_000, 10)
        self.disk_free_mb = 2048.0
        self.uptime = 0.0

    def next(self, uptime: float) -> dict[str, Any]:
        rng = self.rng
        self.uptime = max(round(uptime, 3), round(self.uptime + 0.001, 3))
        if rng.random() < 0.05:
            self.compressor = not self.compressor
        if rng.random() < 0.02:
            self.cash_box += rng.choice((100, 150, 200))
        self.disk_free_mb = round(max(0.0, self.disk_free_mb - 0.01), 2)
        values: dict[str, Any] = {
            "uptime": self.uptime,
            "temperature": round(self.base_temperature + rng.gauss(0, 0.3), 2),
            "compressor": self.compressor,
            "door_open": rng.random() < 0.001,
            "cash_box": self.cash_box,
            "rssi": rng.randint(-80, -60),
            "disk_free_mb": self.disk_free_mb,
            "errors": 0,
            "software_version": SIMULATED_FIRMWARE,
            "humidity": round(rng.uniform(35, 55), 1),
            "supply_voltage": round(rng.uniform(23.8, 24.2), 2),
            "coin_tube_level": rng.randint(0, 100),
            "ambient_temperature": round(21 + rng.gauss(0, 0.5), 2),
        }
        return {name: values.get(name, round(rng.random(), 3)) for name in self.names}


def machine_specs(machines: int, slots: int) -> list[dict[str, Any]]:
    """The fleet's layouts: ``bench_0001`` … with ``slots`` slots, every third refrigerated."""
    return fleet(machines, seed=SEED, id_prefix=ID_PREFIX, slots=slots)


def announce_message(spec: dict[str, Any]) -> dict[str, Any]:
    capabilities = ["cash", "card", "mobile"] + (["temperature"] if spec["refrigerated"] else [])
    message = {
        "v": protocol.PROTOCOL_VERSION,
        "ts": protocol.format_time(datetime.now(UTC)),
        "model": SIMULATED_MODEL,
        "firmware": SIMULATED_FIRMWARE,
        "currency": "EUR",
        "refrigerated": spec["refrigerated"],
        "capabilities": capabilities,
        "slots": spec["slots"],
    }
    protocol.validate(protocol.KIND_ANNOUNCE, message)
    return message


def status_message(state: str, session: str) -> dict[str, Any]:
    return {
        "v": protocol.PROTOCOL_VERSION,
        "state": state,
        "ts": protocol.format_time(datetime.now(UTC)),
        "model": SIMULATED_MODEL,
        "firmware": SIMULATED_FIRMWARE,
        "session": session,
    }


# ---- worker processes: publishers and the raw subscriber ---------------------------------------


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _write_status(path: Path, status: dict[str, Any]) -> None:
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps(status))
    os.replace(scratch, path)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class _Fleet:
    """What the machines of one publisher process share."""

    total: int  # machines over all publishers, for spreading their send times
    seconds: float = 0.0
    rate: float = 0.0
    start: float = 0.0
    ready: int = 0
    failed: int = 0
    sent: int = 0
    errors: int = 0
    last_ack: float = 0.0
    go: asyncio.Event = field(default_factory=asyncio.Event)
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)
    connects: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONNECTS_AT_ONCE))


async def _machine(
    spec: dict[str, Any],
    index: int,
    port: int,
    announce: bool,
    readings_per_message: int,
    shared: _Fleet,
    members: int,
) -> None:
    import aiomqtt

    machine_id = spec["machine_id"]
    kinds = (
        protocol.KIND_STATUS,
        protocol.KIND_ANNOUNCE,
        protocol.KIND_TELEMETRY,
        protocol.KIND_CONFIG,
    )
    topics = {kind: protocol.topic(machine_id, kind, PREFIX) for kind in kinds}
    session = protocol.new_id()
    client = aiomqtt.Client(
        HOST,
        port,
        identifier=f"{PREFIX}-machine-{machine_id}",
        protocol=aiomqtt.ProtocolVersion.V5,
        will=aiomqtt.Will(
            topics[protocol.KIND_STATUS],
            protocol.encode(status_message(protocol.STATUS_OFFLINE, session)),
            qos=1,
            retain=True,
        ),
        clean_start=True,
        keepalive=60,
        timeout=600,  # a confirmation may wait long under load; it is not a failure
    )
    connected = False
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with shared.connects:
                await stack.enter_async_context(client)
                if announce:
                    await client.subscribe(topics[protocol.KIND_CONFIG], qos=1)
                    await client.publish(
                        topics[protocol.KIND_STATUS],
                        protocol.encode(status_message(protocol.STATUS_ONLINE, session)),
                        qos=1,
                        retain=True,
                    )
                    await client.publish(
                        topics[protocol.KIND_ANNOUNCE],
                        protocol.encode(announce_message(spec)),
                        qos=1,
                        retain=True,
                    )
            if announce:  # adopted once the hub's retained config arrives
                async for message in client.messages:
                    if message.topic.value == topics[protocol.KIND_CONFIG] and message.payload:
                        break
            connected = True
            shared.ready += 1
            if shared.ready + shared.failed == members:
                shared.all_ready.set()
            await shared.go.wait()
            await _telemetry(
                client,
                topics[protocol.KIND_TELEMETRY],
                spec,
                index,
                shared,
                readings_per_message,
            )
    except aiomqtt.MqttError as error:
        if connected:
            raise
        print(f"machine {machine_id} could not connect: {error}", file=sys.stderr)
        shared.failed += 1
        if shared.ready + shared.failed == members:
            shared.all_ready.set()


async def _telemetry(
    client: Any,
    topic: str,
    spec: dict[str, Any],
    index: int,
    shared: _Fleet,
    readings_per_message: int,
) -> None:
    paho = client._client  # paho's publish, PUBACKs counted in on_publish: see the docstring
    readings = Readings(readings_per_message, spec["refrigerated"], random.Random(spec["seed"]))
    unconfirmed: set[int] = set()  # mids the broker has not PUBACKed yet
    room = asyncio.Event()
    confirmed_all = asyncio.Event()
    interval = 1.0 / shared.rate
    end = shared.start + shared.seconds
    next_at = shared.start + interval * index / shared.total
    booted = shared.start - 3600.0  # the machine has been up for an hour
    forward = paho.on_publish

    def on_publish(paho_client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        if mid not in unconfirmed:
            forward(paho_client, userdata, mid, *rest)
            return
        unconfirmed.discard(mid)
        shared.sent += 1
        shared.last_ack = time.time()
        room.set()
        if not unconfirmed:
            confirmed_all.set()

    paho.on_publish = on_publish
    seq = 0
    while next_at < end:
        now = time.time()
        if now >= end:
            break
        if next_at > now:
            await asyncio.sleep(next_at - now)
        while len(unconfirmed) >= IN_FLIGHT:
            room.clear()
            await room.wait()
        seq += 1
        stamp = time.time()
        message = {
            "v": protocol.PROTOCOL_VERSION,
            "seq": seq,
            "ts": protocol.format_time(datetime.fromtimestamp(stamp, UTC)),
            "readings": readings.next(stamp - booted),
        }
        info = paho.publish(topic, protocol.encode(message), qos=1)
        if info.rc == 0:
            unconfirmed.add(info.mid)
            confirmed_all.clear()
        else:  # the connection is gone
            shared.errors += 1
        next_at += interval
    if unconfirmed:
        try:
            await asyncio.wait_for(confirmed_all.wait(), 600)
        except TimeoutError:
            shared.errors += len(unconfirmed)


async def _publisher(options: argparse.Namespace) -> int:
    specs = machine_specs(options.total, options.slots)[options.first : options.last]
    shared = _Fleet(total=options.total)
    members = len(specs)
    tasks = [
        asyncio.create_task(
            _machine(
                spec,
                options.first + offset,
                options.port,
                options.announce,
                options.readings,
                shared,
                members,
            )
        )
        for offset, spec in enumerate(specs)
    ]
    ready_wait = asyncio.create_task(shared.all_ready.wait())
    await asyncio.wait([ready_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if not shared.all_ready.is_set():  # a machine task died before all were ready
        for task in tasks:
            if task.done() and (error := task.exception()) is not None:
                raise error
        await ready_wait
    _emit({"ready": shared.ready, "failed": shared.failed})
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    command = json.loads(line)
    shared.start = command["start"]
    shared.seconds = command["seconds"]
    shared.rate = command["rate"]
    cpu_before = _cpu_seconds()
    await asyncio.sleep(max(0.0, shared.start - time.time()))
    shared.go.set()
    await asyncio.gather(*tasks)
    _emit(
        {
            "sent": shared.sent,
            "errors": shared.errors,
            "last_ack": shared.last_ack,
            "cpu_seconds": _cpu_seconds() - cpu_before,
        }
    )
    return 0


async def _subscriber(options: argparse.Namespace) -> int:
    import aiomqtt

    status_path = Path(options.status)
    counts: dict[str, Any] = {"subscribed": False, "received": 0, "first": None, "last": None}
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main.cancel)

    async def report() -> None:
        while True:
            _write_status(status_path, counts)
            await asyncio.sleep(STATUS_INTERVAL)

    reporter = asyncio.create_task(report())
    client = aiomqtt.Client(
        HOST,
        options.port,
        identifier="vendhub-bench-raw-subscriber",
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=True,
        timeout=60,
    )
    try:
        async with client:
            await client.subscribe(protocol.topic_filter(protocol.KIND_TELEMETRY), qos=1)
            counts["subscribed"] = True
            _write_status(status_path, counts)
            async for _message in client.messages:
                now = time.time()
                if counts["first"] is None:
                    counts["first"] = now
                counts["last"] = now
                counts["received"] += 1
    except asyncio.CancelledError:
        pass
    finally:
        reporter.cancel()
        _write_status(status_path, counts)
    return 0


def worker_main(argv: list[str]) -> int:
    """``python -m scripts.benchmarks.ingest publish|subscribe ...``: the benchmark's helpers."""
    parser = argparse.ArgumentParser(prog="scripts.benchmarks.ingest")
    roles = parser.add_subparsers(dest="role", required=True)
    publish = roles.add_parser("publish")
    publish.add_argument("--port", type=int, required=True)
    publish.add_argument("--total", type=int, required=True)
    publish.add_argument("--first", type=int, required=True)
    publish.add_argument("--last", type=int, required=True)
    publish.add_argument("--slots", type=int, default=DEFAULT_SLOTS)
    publish.add_argument("--readings", type=int, default=10)
    publish.add_argument("--announce", action="store_true")
    subscribe = roles.add_parser("subscribe")
    subscribe.add_argument("--port", type=int, required=True)
    subscribe.add_argument("--status", required=True)
    options = parser.parse_args(argv)
    if options.role == "publish":
        return asyncio.run(_publisher(options))
    return asyncio.run(_subscriber(options))


# ---- the hub's probe: a custom integration in the generated configuration folder -------------

PROBE_MANIFEST = {
    "domain": "ingest_probe",
    "name": "Ingest benchmark probe",
    "version": "1.0.0",
    "iot_class": "local_push",
    "after_dependencies": ["mqtt", "recorder"],
}

PROBE_CODE = '''
"""Writes the MQTT link's and the recorder's counters to a JSON file for scripts/bench ingest."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import voluptuous as vol

from vendhub.plugins import hookimpl

DOMAIN = "ingest_probe"
SCHEMA = vol.Schema({vol.Required("path"): str})


class Probe:
    def __init__(self, hub: Any, path: str) -> None:
        self.hub = hub
        self.path = Path(path)
        self.telemetry = 0
        self.queued_max = 0  # messages the hub's MQTT client held at once, at most
        self.first: float | None = None
        self.last: float | None = None
        self.unsubscribe = hub.bus.async_listen("mqtt_message_received", self.on_message)
        self.task = hub.async_create_background_task(self.run(), name="ingest probe")

    def on_message(self, event: Any) -> None:
        if event.data["topic"].endswith("/telemetry"):
            self.telemetry += 1
            self.last = time.time()
            if self.first is None:
                self.first = self.last
                self.queued_max = 0  # from here on: during the telemetry run

    def snapshot(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "at": time.time(),
            "telemetry_received": self.telemetry,
            "first": self.first,
            "last": self.last,
        }
        mqtt = self.hub.data.get("mqtt")
        if mqtt is not None:
            found["mqtt_received"] = mqtt.received
            found["adopted"] = len(mqtt.entities)
            found["link"] = dataclasses.asdict(mqtt.link.stats)
            found["link_errors"] = mqtt.hub_errors.count + sum(
                sensor.count for sensor in mqtt.error_sensors.values()
            )
            found["connection"] = mqtt.connection.diagnostics()
            client = getattr(mqtt.connection, "_client", None)
            self.queued_max = max(self.queued_max, len(client.messages) if client else 0)
            found["client_queue_max"] = self.queued_max
        recorder = self.hub.data.get("recorder")
        if recorder is not None:
            stats = recorder.stats
            found["recorder"] = {
                name: getattr(stats, name)
                for name in ("states_written", "states_dropped", "backlog", "last_error")
                if hasattr(stats, name)
            }
            found["recorder"]["queued"] = recorder.queue.qsize()
        return found

    def write(self) -> None:
        scratch = self.path.with_name(self.path.name + ".tmp")
        scratch.write_text(json.dumps(self.snapshot(), default=str))
        os.replace(scratch, self.path)

    async def run(self) -> None:
        while True:
            self.write()
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        self.unsubscribe()
        self.task.cancel()
        self.write()


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    return SCHEMA


@hookimpl
def vendhub_setup(hub: Any, config: Any) -> bool:
    hub.data[DOMAIN] = Probe(hub, config["path"])
    return True


@hookimpl
def vendhub_unload(hub: Any) -> None:
    probe = hub.data.pop(DOMAIN, None)
    if probe is not None:
        probe.stop()
'''


def write_hub_config(folder: Path, broker_port: int, probe_path: Path) -> None:
    """A configuration folder: recorder on SQLite here, mqtt with auto_adopt, and the probe."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "configuration.yaml").write_text(
        textwrap.dedent(
            f"""\
            vendhub:
              name: Ingest benchmark
              currency: EUR
              time_zone: UTC
              languages: [en]
              units: metric
            recorder:
              commit_interval: {COMMIT_INTERVAL:g}
            mqtt:
              broker:
                host: {HOST}
                port: {broker_port}
              auto_adopt: true
            ingest_probe:
              path: {probe_path}
            """
        )
    )
    probe = folder / "custom_integrations" / "ingest_probe"
    probe.mkdir(parents=True, exist_ok=True)
    (probe / "manifest.json").write_text(json.dumps(PROBE_MANIFEST, indent=2))
    (probe / "__init__.py").write_text(PROBE_CODE.lstrip())


# ---- the orchestra -----------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_line(process: subprocess.Popen[str], timeout: float, what: str) -> dict[str, Any]:
    """The next JSON line a worker prints, waiting at most ``timeout`` seconds."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
            if selector.select(left):
                line = process.stdout.readline()
                if not line:
                    raise SystemExit(f"a worker exited while waiting for {what}: see its stderr")
                return json.loads(line)


def _proc_cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_memory_mb(pid: int) -> dict[str, float]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


@dataclass
class Run:
    """One telemetry run of the publishers, for the ceiling or for the hub."""

    start: float
    sent: int
    errors: int
    last_ack: float
    publisher_cpu_seconds: float
    ready_seconds: float


class Bench:
    """The temp folder, the broker and every child process; ``close()`` stops them all."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.folder = Path(tempfile.mkdtemp(prefix="vendhub-bench-ingest-"))
        self.broker = Mosquitto(self.folder / "broker")
        self.broker.config.write_text(self._broker_conf())
        self.children: list[subprocess.Popen[str]] = []
        self.hub: subprocess.Popen[str] | None = None
        self.hub_log = self.folder / "hub.log"
        self.probe_path = self.folder / "probe.json"

    def _broker_conf(self) -> str:
        lines = [
            f"listener {self.broker.port} {HOST}",
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {self.broker.log}",
            "log_type error",
            "log_type warning",
            f"max_queued_messages {BROKER_MAX_QUEUED}",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto' and cannot write the log
        return "\n".join(lines) + "\n"

    # ---- children ------------------------------------------------------------------------

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[str]:
        log = (self.folder / log_name).open("a")
        process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        self.children.append(process)
        return process

    def _stop(self, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        for process in reversed(self.children):
            self._stop(process, timeout=20)
        self.broker.stop()

    # ---- publishers ----------------------------------------------------------------------

    def _publishers(self, announce: bool) -> list[subprocess.Popen[str]]:
        args = self.args
        count = max(1, min(args.publishers, args.machines))
        bounds = [round(args.machines * part / count) for part in range(count + 1)]
        processes = []
        for number, (first, last) in enumerate(itertools.pairwise(bounds)):
            argv = [
                "-m",
                "scripts.benchmarks.ingest",
                "publish",
                f"--port={self.broker.port}",
                f"--total={args.machines}",
                f"--first={first}",
                f"--last={last}",
                f"--slots={args.slots}",
                f"--readings={args.readings_per_message}",
            ]
            if announce:
                argv.append("--announce")
            processes.append(self._spawn(argv, f"publisher-{number}.log"))
        return processes

    def telemetry_run(self, announce: bool, before_start: Callable[[], None] | None = None) -> Run:
        """Connect (and, with ``announce``, get adopted), then publish for ``--seconds``."""
        args = self.args
        began = time.monotonic()
        publishers = self._publishers(announce)
        ready = failed = 0
        wait = 120.0 + args.machines * (0.5 if announce else 0.05)
        for process in publishers:
            line = _read_line(process, wait, "the machines to connect and be adopted")
            ready += line["ready"]
            failed += line["failed"]
        if failed:
            raise SystemExit(f"{failed} machines could not connect; see {self.folder}")
        ready_seconds = time.monotonic() - began
        if before_start is not None:
            before_start()
        start = time.time() + 1.0
        command = json.dumps({"start": start, "seconds": args.seconds, "rate": self.rate})
        for process in publishers:
            assert process.stdin is not None
            process.stdin.write(command + "\n")
            process.stdin.flush()
        results = [
            _read_line(process, args.seconds + 600.0, "the publishers to finish")
            for process in publishers
        ]
        for process in publishers:
            process.wait(timeout=120)
        return Run(
            start=start,
            sent=sum(result["sent"] for result in results),
            errors=sum(result["errors"] for result in results),
            last_ack=max(result["last_ack"] for result in results),
            publisher_cpu_seconds=sum(result["cpu_seconds"] for result in results),
            ready_seconds=ready_seconds,
        )

    @property
    def rate(self) -> float:
        args = self.args
        return args.rate if args.rate else DEFAULT_TOTAL_RATE / args.machines

    # ---- waiting -------------------------------------------------------------------------

    def _drain(self, path: Path, key: str, target: int, cap: float) -> dict[str, Any]:
        """Wait until the status file's ``key`` reaches ``target`` or stops growing."""
        deadline = time.monotonic() + cap
        last_value, last_change = -1, time.monotonic()
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = _read_json(path) or status
            value = int(status.get(key, 0))
            if value >= target:
                return status
            if value != last_value:
                last_value, last_change = value, time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                return status
            if self.hub is not None and self.hub.poll() is not None:
                raise SystemExit(f"the hub exited while draining: see {self.hub_log}")
            time.sleep(0.1)
        return status

    # ---- the ceiling ---------------------------------------------------------------------

    def ceiling(self) -> dict[str, Any]:
        status_path = self.folder / "subscriber.json"
        subscriber = self._spawn(
            [
                "-m",
                "scripts.benchmarks.ingest",
                "subscribe",
                f"--port={self.broker.port}",
                f"--status={status_path}",
            ],
            "subscriber.log",
        )
        deadline = time.monotonic() + 30
        while not (_read_json(status_path) or {}).get("subscribed"):
            if subscriber.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the raw subscriber did not subscribe; see {self.folder}")
            time.sleep(0.05)
        run = self.telemetry_run(announce=False)
        status = self._drain(status_path, "received", run.sent, cap=600.0)
        self._stop(subscriber)
        status = _read_json(status_path) or status
        received = int(status.get("received", 0))
        seconds = (status["last"] - run.start) if status.get("last") else float("nan")
        # It kept up when it had everything soon after the publishers' last PUBACK: then it
        # measured the publishers' rate, and its own limit lies higher.
        kept_up = (
            received >= run.sent
            and status.get("last") is not None
            and status["last"] - run.last_ack <= 0.1 * self.args.seconds
        )
        return {
            "ceiling_sent": run.sent,
            "ceiling_received": received,
            "ceiling_msgs_per_s": round(received / seconds) if received else 0,
            "ceiling_offered_msgs_per_s": round(run.sent / self.args.seconds),
            "ceiling_bound_by_publishers": kept_up,
            "ceiling_publisher_cpu_percent": round(
                100 * run.publisher_cpu_seconds / self.args.seconds, 1
            ),
        }

    # ---- the hub -------------------------------------------------------------------------

    def start_hub(self) -> None:
        config = self.folder / "hub"
        write_hub_config(config, self.broker.port, self.probe_path)
        log = self.hub_log.open("a")
        self.hub = subprocess.Popen(
            [sys.executable, "-m", "vendhub", "--log-level", "info", "run", "--config", config],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            text=True,
        )
        log.close()
        self.children.append(self.hub)
        deadline = time.monotonic() + 120
        while "is running" not in self.hub_log.read_text():
            if self.hub.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the hub did not start: {self.hub_log.read_text()[-3000:]}")
            time.sleep(0.1)

    def through_hub(self) -> dict[str, Any]:
        assert self.hub is not None
        args = self.args
        pid = self.hub.pid
        noted: dict[str, Any] = {}

        def note_start() -> None:
            # Every machine has its config, so every adoption is done: the hub's counters,
            # CPU and RSS now are the baseline of the run.
            time.sleep(STATUS_INTERVAL * 2)
            noted["probe"] = _read_json(self.probe_path) or {}
            noted["cpu"] = _proc_cpu_seconds(pid)
            noted["memory"] = _proc_memory_mb(pid)

        run = self.telemetry_run(announce=True, before_start=note_start)
        before = noted["probe"]
        status = self._drain(
            self.probe_path,
            "telemetry_received",
            int(before.get("telemetry_received", 0)) + run.sent,
            cap=600.0 + args.seconds * 10,
        )
        drained = time.time()
        cpu_seconds = _proc_cpu_seconds(pid) - noted["cpu"]
        time.sleep(COMMIT_INTERVAL + 1.5)  # a commit of whatever the hub still queued
        after = _read_json(self.probe_path) or status
        memory = _proc_memory_mb(pid)
        self._stop(self.hub, timeout=120)  # SIGTERM: the recorder's final write
        recorded, last_recorded = count_recorded(self.folder / "hub" / "vendhub.db")

        def grew(section: str, name: str) -> int:
            return int(after.get(section, {}).get(name, 0)) - int(
                before.get(section, {}).get(name, 0)
            )

        handled = grew("link", "accepted") - grew("link", "errors")
        received = int(after.get("telemetry_received", 0)) - int(
            before.get("telemetry_received", 0)
        )
        seconds = (last_recorded - run.start) if last_recorded else 0.0
        msgs_per_s = round(recorded / seconds) if recorded and seconds > 0 else 0
        wall = drained - run.start
        return {
            "machines": args.machines,
            "adopted": int(after.get("adopted", 0)),
            "adoption_seconds": round(run.ready_seconds, 1),
            "sent": run.sent,
            "offered_msgs_per_s": round(run.sent / args.seconds),
            "publisher_errors": run.errors,
            "publisher_cpu_percent": round(100 * run.publisher_cpu_seconds / args.seconds, 1),
            "hub_received": received,
            "handled": handled,
            "recorded": recorded,
            "loss": run.sent - handled,
            "unrecorded": handled - recorded,
            "link_errors": int(after.get("link_errors", 0)) - int(before.get("link_errors", 0)),
            "seq_gaps": grew("link", "seq_gaps"),
            "recorder_states_dropped": grew("recorder", "states_dropped"),
            "msgs_per_s": msgs_per_s,
            "readings_per_s": msgs_per_s * args.readings_per_message,
            "drain_seconds": round(max(0.0, drained - run.start - args.seconds), 1),
            "hub_cpu_seconds": round(cpu_seconds, 1),
            "hub_cpu_percent": round(100 * cpu_seconds / wall, 1) if wall > 0 else None,
            "hub_rss_mb": round(memory.get("VmHWM", 0.0), 1),
            "hub_rss_idle_mb": round(noted["memory"].get("VmRSS", 0.0), 1),
            "hub_rss_end_mb": round(memory.get("VmRSS", 0.0), 1),
            "hub_reconnects": int(after.get("connection", {}).get("connects", 1)) - 1,
            "hub_queue_max": int(after.get("client_queue_max", 0)),
        }


def count_recorded(database: Path) -> tuple[int, float | None]:
    """Telemetry messages that became a ``machine.bench_*`` row, and the last one's time."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        count, last = db.execute(
            """
            SELECT COUNT(*), MAX(last) FROM (
                SELECT s.metadata_id, s.attributes_id, MAX(s.last_updated_ts) AS last
                FROM states AS s
                JOIN states_meta AS m ON m.metadata_id = s.metadata_id
                JOIN state_attributes AS a ON a.attributes_id = s.attributes_id
                WHERE m.entity_id LIKE ? ESCAPE '!' AND a.shared_attrs LIKE '%"uptime":%'
                GROUP BY s.metadata_id, s.attributes_id
            )
            """,
            (f"machine.{ID_PREFIX}!_%",),
        ).fetchone()
    return int(count), last


@contextlib.contextmanager
def _bench(args: argparse.Namespace) -> Iterator[Bench]:
    """The bench, stopped afterwards; its folder is removed unless ``--keep`` or a failure."""
    bench = Bench(args)
    try:
        yield bench
    except BaseException:
        print(f"ingest benchmark failed; logs are in {bench.folder}", file=sys.stderr)
        raise
    else:
        if not args.keep:
            bench.close()
            shutil.rmtree(bench.folder, ignore_errors=True)
    finally:
        bench.close()


def _print_table(args: argparse.Namespace, rate: float, result: dict[str, Any]) -> list[str]:
    print(
        f"VendHub {__version__} ingest benchmark, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs: {args.machines:,} machines x {rate:g} msg/s for "
        f"{args.seconds:g} s, {args.readings_per_message} readings/message, QoS 1, "
        f"Mosquitto on a free port"
    )
    rows = [
        ("machines adopted", f"{result['adopted']:,} in {result['adoption_seconds']:g} s"),
        ("telemetry sent (PUBACKed)", f"{result['sent']:,}  ({result['offered_msgs_per_s']:,}/s)"),
        ("received by the hub", f"{result['hub_received']:,}"),
        ("handled by the hub", f"{result['handled']:,}"),
        ("recorded (machine rows)", f"{result['recorded']:,}"),
        ("loss (sent - handled)", f"{result['loss']:,}"),
        ("unrecorded (handled - rec.)", f"{result['unrecorded']:,}"),
        ("seq gaps / link errors", f"{result['seq_gaps']:,} / {result['link_errors']:,}"),
        ("end to end msgs/s", f"{result['msgs_per_s']:,}"),
        ("readings/s", f"{result['readings_per_s']:,}"),
        ("drain after the run", f"{result['drain_seconds']:g} s"),
        ("raw subscriber msgs/s", f"{result.get('ceiling_msgs_per_s', 0):,}"),
        ("ratio to the ceiling", f"{result.get('ratio_to_ceiling', float('nan')):.2f}"),
        ("hub CPU", f"{result['hub_cpu_seconds']:g} s, {result['hub_cpu_percent']}% of a core"),
        (
            "hub RSS peak / idle / end",
            f"{result['hub_rss_mb']:g} / {result['hub_rss_idle_mb']:g} / "
            f"{result['hub_rss_end_mb']:g} MB",
        ),
        ("hub's client queue, at most", f"{result['hub_queue_max']:,} messages"),
        ("publisher CPU", f"{result['publisher_cpu_percent']}% of a core"),
    ]
    for name, value in rows:
        print(f"  {name:<30}{value}")
    if result.get("ceiling_bound_by_publishers"):
        print(
            "  note: the raw subscriber kept up with all the publishers offered, so the ceiling "
            "is a lower bound and the ratio an upper bound"
        )
    checks = [
        (
            f"msgs/s >= {TARGET_RATIO:.0%} of the ceiling",
            "ratio_to_ceiling" in result and result["ratio_to_ceiling"] >= TARGET_RATIO,
        ),
        ("zero loss", result["loss"] <= 0 and result["unrecorded"] <= 0),
        (f"readings/s >= {TARGET_READINGS:,}", result["readings_per_s"] >= TARGET_READINGS),
        (
            f"{TARGET_MACHINES:,} machines held with RSS < {TARGET_RSS_MB} MB (idle)",
            result["adopted"] >= TARGET_MACHINES and result["hub_rss_idle_mb"] < TARGET_RSS_MB,
        ),
        (
            f"{TARGET_MACHINES:,} machines, peak RSS < {TARGET_RSS_MB} MB",
            result["adopted"] >= TARGET_MACHINES and result["hub_rss_mb"] < TARGET_RSS_MB,
        ),
    ]
    print("Targets: " + ", ".join(f"{name}: {'ok' if ok else 'MISSED'}" for name, ok in checks))
    return [name for name, ok in checks if not ok]


def run(args: argparse.Namespace) -> int:
    if args.machines < 1 or args.seconds <= 0 or args.publishers < 1:
        raise SystemExit("--machines, --seconds and --publishers must be positive")
    if not 1 <= args.readings_per_message <= protocol.MAX_READINGS:
        raise SystemExit(f"--readings-per-message must be 1 to {protocol.MAX_READINGS}")
    with _bench(args) as bench:
        bench.broker.start()
        ceiling = {} if args.skip_ceiling else bench.ceiling()
        bench.start_hub()
        result = bench.through_hub()
        folder = bench.folder
    result.update(ceiling)
    if ceiling.get("ceiling_msgs_per_s"):
        result["ratio_to_ceiling"] = round(result["msgs_per_s"] / ceiling["ceiling_msgs_per_s"], 3)
    result.update(
        {
            "seconds": args.seconds,
            "rate_per_machine": round(bench.rate, 3),
            "readings_per_message": args.readings_per_message,
        }
    )
    missed = _print_table(args, bench.rate, result)
    result["missed"] = missed
    if args.keep:
        print(f"(logs and the database: {folder})")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
