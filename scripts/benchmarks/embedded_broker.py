"""The embedded broker's throughput against Mosquitto's, with the same clients and rules.

Raw aiomqtt clients (MQTT 3.1.1, all amqtt speaks) in this process: ``--publishers`` machines,
each logged in as its own user, publish ``--messages`` telemetry messages in all (QoS 1, or
``--qos 0``; ``--payload-bytes`` each, at most 20 unconfirmed per publisher, paho's window) on
their own ``vendhub/<id>/telemetry``; one subscriber logged in as the hub's user receives them
on ``vendhub/+/telemetry`` at the same QoS. ``msgs_per_s`` = messages received / (the last one
received - the first publish). Every message must arrive; a loss is reported and fails the run.

Wall-clock rates depend on whatever else the computer runs; CPU time much less. So each run
also takes the CPU time per message of this process (``time.process_time``) and of a broker
in its own process (``/proc/<pid>/stat``). This process's CPU against Mosquitto is what the
clients cost; against the embedded broker it is the clients plus the broker, so the embedded
broker's own CPU per message is the difference (``*_broker_cpu_us_per_msg``), and
``*_broker_msgs_per_cpu_s`` is what one core could carry with nothing else to do.

- **embedded**: the hub's embedded broker (``EmbeddedBroker``: amqtt with the hub's login and
  topic-ACL plugins) in this process, on the same event loop as the clients, as in the hub.
- **embedded, N machines connected**: the same, with N more machines connected and subscribed
  to their own ``config``, ``cmd/+`` and ``ack`` (3 subscriptions each), sending nothing:
  amqtt matches every message against every subscription on the broker.
- **mosquitto**: ``mosquitto`` in its own process (the tests' helper, on a free port, logging
  only errors and warnings, no queue limit) with the password and ACL files the hub generates
  for the same users; same clients. The baseline: what the clients and the loop can do.

Run: ``.venv/bin/python -m scripts.benchmarks.embedded_broker [--json]`` (or ``scripts/bench
embedded-broker`` once it is listed in ``scripts/benchmarks/__main__.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

WINDOW = 20  # unconfirmed QoS 1 publishes per publisher, as paho's default in-flight window
PREFIX = "vendhub"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run")
    parser.add_argument("--publishers", type=int, default=4, help="publishing machines")
    parser.add_argument("--payload-bytes", type=int, default=200, help="bytes per message")
    parser.add_argument(
        "--idle-machines",
        default="200",
        help="comma-separated counts of extra connected machines for the embedded runs "
        "(default: %(default)s; 0 or '' for none)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each figure's best counts")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1, help="QoS of the messages")
    parser.add_argument("--no-mosquitto", action="store_true", help="skip the Mosquitto run")


async def _client(port: int, username: str, password: str) -> Any:
    import aiomqtt

    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        username=username,
        password=password,
        identifier=f"bench-{username}",
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=True,
        keepalive=60,
        timeout=30,
        max_inflight_messages=WINDOW,
        max_queued_outgoing_messages=0,
    )
    await client.__aenter__()
    return client


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    port: int,
    passwords: dict[str, str],
    hub_password: str,
    args: argparse.Namespace,
    idle: int,
    broker_pid: int | None = None,
) -> dict[str, float]:
    """One run against the broker on ``port``: messages per second, and what was lost."""
    publishers = [f"bench_{n:03d}" for n in range(args.publishers)]
    idle_ids = [f"idle_{n:04d}" for n in range(idle)]
    per_publisher = args.messages // args.publishers
    total = per_publisher * args.publishers
    payload = b"x" * args.payload_bytes
    subscriber = await _client(port, "vendhub-hub", hub_password)
    await subscriber.subscribe(f"{PREFIX}/+/telemetry", qos=args.qos)
    idle_clients = []
    for machine_id in idle_ids:
        client = await _client(port, machine_id, passwords[machine_id])
        await client.subscribe(
            [(f"{PREFIX}/{machine_id}/{kind}", 1) for kind in ("config", "cmd/+", "ack")]
        )
        idle_clients.append(client)
    clients = [await _client(port, machine_id, passwords[machine_id]) for machine_id in publishers]
    received = 0
    last = 0.0
    done = asyncio.Event()

    async def receive() -> None:
        nonlocal received, last
        async for _message in subscriber.messages:
            received += 1
            last = time.perf_counter()
            if received >= total:
                done.set()

    async def publish(client: Any, machine_id: str) -> None:
        window = asyncio.Semaphore(WINDOW)
        topic = f"{PREFIX}/{machine_id}/telemetry"

        async def one() -> None:
            try:
                await client.publish(topic, payload, qos=args.qos)
            finally:
                window.release()

        sends = []
        for _ in range(per_publisher):
            await window.acquire()
            sends.append(asyncio.ensure_future(one()))
        await asyncio.gather(*sends)

    reader = asyncio.create_task(receive())
    started = time.perf_counter()
    cpu_started = time.process_time()
    broker_cpu_started = _process_cpu(broker_pid) if broker_pid else 0.0
    await asyncio.gather(*(publish(c, m) for c, m in zip(clients, publishers, strict=True)))
    sent = time.perf_counter()
    with suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=max(30.0, total / 200))
    cpu = time.process_time() - cpu_started
    broker_cpu = _process_cpu(broker_pid) - broker_cpu_started if broker_pid else 0.0
    reader.cancel()
    for client in [*clients, *idle_clients, subscriber]:
        with suppress(Exception):  # a client that lost its broker: nothing to close
            await client.__aexit__(None, None, None)
    return {
        "msgs_per_s": received / (last - started) if received else 0.0,
        "published_per_s": total / (sent - started),
        "received": received,
        "lost": total - received,
        # CPU time per message received, in microseconds: this process (the clients, and the
        # broker when it is embedded), and a broker in a process of its own
        "process_cpu_us": cpu / max(received, 1) * 1e6,
        "broker_cpu_us": broker_cpu / max(received, 1) * 1e6,
    }


@asynccontextmanager
async def _plain_amqtt() -> AsyncIterator[tuple[int, str]]:
    """amqtt alone, as its docs configure it: anonymous logins, no topic checks."""
    from amqtt.broker import Broker

    from tests.mosquitto import free_port

    port = free_port()
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        yield port, ""
    finally:
        await broker.shutdown()


@asynccontextmanager
async def _embedded(config_dir: Path) -> AsyncIterator[tuple[int, str]]:
    from tests.mosquitto import free_port
    from vendhub.core.hub import Hub
    from vendhub.machine.credentials import CredentialStore
    from vendhub_integrations.mqtt.embedded_broker import EmbeddedBroker, EmbeddedBrokerSettings

    hub = Hub(config_dir)
    hub_password = await CredentialStore(hub).async_ensure_hub_user(rotate=True)
    assert hub_password is not None
    settings = EmbeddedBrokerSettings(host="127.0.0.1", port=free_port(), session_expiry=3600)
    broker = EmbeddedBroker(hub, settings, PREFIX)
    await broker.async_start()
    try:
        assert broker.port is not None
        yield broker.port, hub_password
    finally:
        await broker.async_stop()


def _mosquitto(config_dir: Path, folder: Path) -> Any:
    from tests.mosquitto import Mosquitto
    from vendhub.machine.mosquitto_files import write_mosquitto_files

    password_file, acl_file = write_mosquitto_files(config_dir, folder / "files")
    broker = Mosquitto(
        folder / "broker", allow_anonymous=False, password_file=password_file, acl_file=acl_file
    )
    text = broker.config.read_text().replace("log_type all", "log_type error\nlog_type warning")
    broker.config.write_text(text + "max_queued_messages 0\nmax_inflight_messages 20\n")
    return broker


def _best(rounds: list[dict[str, float]]) -> dict[str, float]:
    return max(rounds, key=lambda figures: figures["msgs_per_s"])


def run(args: argparse.Namespace) -> int:
    from vendhub.const import __version__
    from vendhub.machine.credentials import add_machine, ensure_hub_user

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # paho: "There are 20 pending publish calls"
    idle_counts = [int(n) for n in str(args.idle_machines).split(",") if n.strip() and int(n)]
    folder = Path(tempfile.mkdtemp(prefix="vendhub-bench-broker-"))
    config_dir = folder / "config"
    names = [f"bench_{n:03d}" for n in range(args.publishers)]
    names += [f"idle_{n:04d}" for n in range(max(idle_counts, default=0))]
    passwords = dict(add_machine(config_dir, name) for name in names)
    with_mosquitto = not args.no_mosquitto and shutil.which("mosquitto") is not None
    runs: dict[str, list[dict[str, float]]] = {}

    async def embedded(idle: int) -> dict[str, float]:
        async with _embedded(config_dir) as (port, hub_password):
            return await _measure(port, passwords, hub_password, args, idle)

    async def plain() -> dict[str, float]:
        async with _plain_amqtt() as (port, hub_password):
            return await _measure(port, passwords, hub_password, args, 0)

    # Rounds interleave the brokers, so that a busy moment of the computer hits them all.
    for _round in range(args.rounds):
        runs.setdefault("embedded", []).append(asyncio.run(embedded(0)))
        for idle in idle_counts:
            runs.setdefault(f"embedded_{idle}", []).append(asyncio.run(embedded(idle)))
        runs.setdefault("amqtt", []).append(asyncio.run(plain()))
        if with_mosquitto:
            hub_password = ensure_hub_user(config_dir, rotate=True)
            assert hub_password is not None
            broker = _mosquitto(config_dir, folder / f"mosquitto-{_round}")
            broker.start()
            try:
                assert broker.process is not None
                figures = asyncio.run(
                    _measure(broker.port, passwords, hub_password, args, 0, broker.process.pid)
                )
            finally:
                broker.stop()
            runs.setdefault("mosquitto", []).append(figures)
    shutil.rmtree(folder, ignore_errors=True)

    labels = {
        "embedded": ("embedded", "embedded broker (amqtt + logins + ACL)"),
        **{
            f"embedded_{idle}": (
                f"embedded_with_{idle}_machines",
                f"embedded broker, {idle} more machines connected",
            )
            for idle in idle_counts
        },
        "amqtt": ("amqtt_anonymous", "amqtt alone (anonymous, no ACL)"),
        "mosquitto": ("mosquitto", "mosquitto (own process, logins + ACL)"),
    }
    # CPU time does not depend on what else the computer runs, wall time does: the clients'
    # CPU per message is what this process used against Mosquitto (in another process), so
    # an in-process broker's own CPU per message is this process's minus the clients'.
    clients_cpu = min((f["process_cpu_us"] for f in runs.get("mosquitto", [])), default=None)
    results: dict[str, Any] = {}
    rows = []
    lost = 0
    for key, rounds in runs.items():
        stem, label = labels[key]
        best = _best(rounds)
        results[f"{stem}_msgs_per_s"] = round(best["msgs_per_s"])
        lost += int(sum(figures["lost"] for figures in rounds))
        process_cpu = min(figures["process_cpu_us"] for figures in rounds)
        if key == "mosquitto":
            broker_cpu: float | None = min(figures["broker_cpu_us"] for figures in rounds)
        elif clients_cpu is not None:
            broker_cpu = max(process_cpu - clients_cpu, 1.0)
        else:
            broker_cpu = None
        results[f"{stem}_process_cpu_us_per_msg"] = round(process_cpu)
        if broker_cpu is not None:
            results[f"{stem}_broker_cpu_us_per_msg"] = round(broker_cpu)
            results[f"{stem}_broker_msgs_per_cpu_s"] = round(1e6 / broker_cpu)
        each = [round(figures["msgs_per_s"]) for figures in rounds]
        rows.append((label, best, each, process_cpu, broker_cpu))
    if results.get("mosquitto_msgs_per_s"):
        results["embedded_vs_mosquitto"] = round(
            results["embedded_msgs_per_s"] / results["mosquitto_msgs_per_s"], 3
        )
    if clients_cpu is not None:
        results["clients_cpu_us_per_msg"] = round(clients_cpu)
    results.update(
        lost=lost,
        messages=args.messages,
        publishers=args.publishers,
        payload_bytes=args.payload_bytes,
        qos=args.qos,
        rounds=args.rounds,
        python=platform.python_version(),
        machine=platform.machine(),
        vendhub=__version__,
    )
    print(
        f"VendHub {__version__} embedded broker benchmark, Python {platform.python_version()}: "
        f"{args.messages:,} QoS {args.qos} messages of {args.payload_bytes} bytes from "
        f"{args.publishers} machines to one subscriber, MQTT 3.1.1; best of {args.rounds}"
    )
    print(
        f"{'broker':<46}{'received/s':>11}{'this process':>14}{'broker CPU':>12}"
        f"{'broker msgs':>13}  received/s, every round"
    )
    print(f"{'':<46}{'(best)':>11}{'CPU us/msg':>14}{'us/msg':>12}{'per CPU-s':>13}")
    for label, best, each, process_cpu, broker_cpu in rows:
        broker = f"{broker_cpu:>12,.0f}{1e6 / broker_cpu:>13,.0f}" if broker_cpu else " " * 25
        print(
            f"{label:<46}{best['msgs_per_s']:>11,.0f}{process_cpu:>14,.0f}{broker}  "
            + ", ".join(f"{n:,}" for n in each)
        )
    if clients_cpu is not None:
        print(
            f"The clients alone use {clients_cpu:,.0f} us of CPU per message (this process's CPU "
            "against Mosquitto); an embedded broker's CPU is this process's minus that."
        )
    if lost:
        print(f"LOST {lost} messages")
    if args.json:
        print(json.dumps(results))
    return 1 if lost else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="embedded_broker", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
