"""The embedded broker (amqtt in the hub's process): the quick start with no ``broker:``, a
taken port, logins, the topic rules of the Mosquitto ACL, and broker restarts while agents sell.

Every broker here listens on a free ephemeral port of 127.0.0.1; the shared broker on 1883 is
never used. Machines are plain aiomqtt clients (MQTT 3.1.1, all amqtt speaks) logging in with
credentials from the hub's store, or simulated machines behind real ``MachineAgent``s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import socket
import ssl
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import voluptuous as vol

from tests.machine.test_hub_down import (
    ledger_rows,
    machines_online,
    outbox_events,
    record_vends,
    wait_until,
)
from tests.mosquitto import free_port
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.const import EVENT_VEND_COMPLETED
from vendhub.core import Hub
from vendhub.machine import protocol, simulate
from vendhub.machine.broker_address import read_last_listeners
from vendhub.machine.credentials import (
    HUB_USERNAME,
    Credentials,
    CredentialStore,
    MachineCredential,
    add_machine,
    ensure_hub_user,
    hash_password,
    remove_machine,
    verify_password,
)
from vendhub.machine.mosquitto_files import acl_file_text
from vendhub.recorder.recorder import get_recorder
from vendhub_integrations.mqtt import embedded_broker as embedded_module
from vendhub_integrations.mqtt import guarded_broker as guarded_module
from vendhub_integrations.mqtt import vendhub_config_schema
from vendhub_integrations.mqtt.broker_plugins import TopicRules, filter_within, topic_matches
from vendhub_integrations.mqtt.runtime import MqttRuntime
from vendhub_integrations.mqtt.schema import MQTT_V311

from .broker import TS, TestMachine, vend_data
from .conftest import (
    adopted_machine,
    make_hub,
    record,
    start_link,
    start_recorder,
    stop_hub,
    until,
)
from .test_resilience import transactions

REFUSED = frozenset({4, 5, 0x86, 0x87})  # bad username or password / not authorized (3.1.1, 5)
SUBSCRIPTION_REFUSED = 0x80
UNSUPPORTED_PROTOCOL = 0x84


def embedded_config(prefix: str, port: int, **options: Any) -> dict[str, Any]:
    """A validated ``mqtt:`` block with no ``broker:``: the embedded broker on ``port``."""
    raw: dict[str, Any] = {
        "embedded_broker": {"host": "127.0.0.1", "port": port},
        "topic_prefix": prefix,
        "keepalive": 5,
        "command_timeout": 2,
    }
    raw.update(options)
    return vendhub_config_schema()(raw)


async def issue(hub: Hub, *machine_ids: str) -> dict[str, str]:
    """Credentials for each machine, as ``vendhub machine add`` issues them: id -> password."""
    store = CredentialStore(hub)
    return {
        machine_id: (await store.async_add_machine(machine_id))[1] for machine_id in machine_ids
    }


def code_of(error: aiomqtt.MqttCodeError) -> int:
    return int(getattr(error.rc, "value", error.rc))


class LoginMachine(TestMachine):
    """``TestMachine`` over MQTT 3.1.1 with a username and password."""

    __test__ = False

    def __init__(self, port: int, prefix: str, machine_id: str, password: str) -> None:
        super().__init__(port, prefix, machine_id)
        self.password = password
        self.identifier = f"machine-{machine_id}-{uuid.uuid4().hex[:6]}"

    async def connect(self) -> LoginMachine:
        self.session = uuid.uuid4().hex[:16]
        will = protocol.encode({"v": 1, "state": "offline", "ts": TS, "session": self.session})
        self._client = aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username=self.machine_id,
            password=self.password,
            identifier=self.identifier,
            protocol=aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.topic("status"), will, qos=1, retain=True),
            keepalive=5,
        )
        await self._client.__aenter__()
        for kind in ("ack", "config", "cmd/+"):
            await self._client.subscribe(
                protocol.topic_filter(kind, self.machine_id, self.prefix), qos=1
            )
        self._reader = asyncio.create_task(self._read(self._client))
        return self


class Listener:
    """A logged-in raw client that records every message it receives."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[tuple[str, bytes]] = []
        self._changed = asyncio.Condition()

    async def read(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            async with self._changed:
                self.messages.append((message.topic.value, payload))
                self._changed.notify_all()

    async def wait_for(self, topic: str, payload: bytes, timeout: float = 5.0) -> None:
        async def seen() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: (topic, payload) in self.messages)

        await asyncio.wait_for(seen(), timeout)

    def payloads(self) -> set[bytes]:
        return {payload for _topic, payload in self.messages}


@contextlib.asynccontextmanager
async def login(
    port: int,
    username: str | None,
    password: str | None,
    *,
    identifier: str | None = None,
    **options: Any,
) -> AsyncIterator[Listener]:
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        username=username,
        password=password,
        identifier=identifier or f"test-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V311,
        **options,
    ) as client:
        listener = Listener(client)
        reading = asyncio.create_task(listener.read())
        try:
            yield listener
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reading


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port of 127.0.0.1 that a listening socket holds, as a system Mosquitto holds 1883."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def hub_password(runtime: MqttRuntime) -> str:
    assert runtime.settings.password is not None
    return runtime.settings.password


# ---- configuration ---------------------------------------------------------------------


def test_no_broker_block_means_the_embedded_broker(tmp_path: Path) -> None:
    schema = vendhub_config_schema()
    config = schema({})
    assert "broker" not in config
    assert config["embedded_broker"] == {"host": "0.0.0.0"}  # port unset: 1883 or the next free
    assert schema({"embedded_broker": None})["embedded_broker"] == {"host": "0.0.0.0"}
    assert schema({"broker": None})["broker"] == {"host": "127.0.0.1", "port": 1883}

    cert = tmp_path / "server.crt"
    cert.write_text("x")
    problems = {
        "use either 'broker:'": {"broker": {}, "embedded_broker": {}},
        "expected a port number": {"embedded_broker": {"port": 0}},
        "cannot listen on an IPv6 address": {"embedded_broker": {"host": "::"}},
        "no such file": {"embedded_broker": {"tls": {"certfile": "/nope.crt", "keyfile": "/k"}}},
        "required key not provided": {"embedded_broker": {"tls": {"certfile": str(cert)}}},
        "needs a port of its own": {
            "embedded_broker": {
                "port": 8883,
                "tls": {"certfile": str(cert), "keyfile": str(cert)},
            }
        },
    }
    for expected, raw in problems.items():
        with pytest.raises(vol.Invalid, match=expected):
            schema(raw)


def test_the_embedded_rules_are_the_mosquitto_acl() -> None:
    """One source of truth: the rules the embedded broker checks are those of the ACL file."""
    credentials = Credentials(
        machines=(MachineCredential("lobby_1", "2024-05-06T00:00:00+00:00"),),
        users={"lobby_1": hash_password("a"), HUB_USERNAME: hash_password("b")},
    )
    acl: dict[str, dict[str, set[str]]] = {}
    user = ""
    for line in acl_file_text(credentials, "site1/vh").splitlines():
        if line.startswith("user "):
            user = line.split(" ", 1)[1]
            acl[user] = {"write": set(), "read": set()}
        elif line.startswith("topic "):
            _, access, pattern = line.split(" ", 2)
            acl[user][access].add(pattern)
    rules = TopicRules("site1/vh")
    for name in ("lobby_1", HUB_USERNAME):
        assert set(rules.for_user(name).writes) == acl[name]["write"], name
        assert set(rules.for_user(name).reads) == acl[name]["read"], name
    for nobody in (None, "", "Lobby-1", "a/b", "+"):
        assert rules.for_user(nobody).writes == rules.for_user(nobody).reads == ()


def test_topic_and_filter_matching() -> None:
    assert topic_matches("vh/a/cmd/vend", "vh/a/cmd/#")
    assert topic_matches("vh/a/config", "vh/+/config")
    assert not topic_matches("vh/a/config/x", "vh/+/config")
    assert not topic_matches("vh/b/config", "vh/a/config")
    assert filter_within("vh/a/cmd/+", "vh/a/cmd/#")
    assert filter_within("vh/a/cmd/#", "vh/a/cmd/#")
    assert filter_within("vh/a/config", "vh/a/config")
    assert filter_within("vh/+/status", "vh/#")
    assert not filter_within("vh/+/config", "vh/a/config")
    assert not filter_within("vh/#", "vh/a/cmd/#")
    assert not filter_within("vh/a/#", "vh/a/cmd/#")
    assert not filter_within("vh/a/cmd", "vh/a/cmd/+")
    assert not filter_within("#", "vh/#")


# ---- the quick start -------------------------------------------------------------------


async def test_without_a_broker_block_the_hub_runs_its_broker_and_links_a_machine(
    hub: Hub, prefix: str, tmp_path: Path
) -> None:
    recorder = await start_recorder(hub, tmp_path)
    passwords = await issue(hub, "lobby_1")
    port = free_port()
    runtime = await start_link(hub, embedded_config(prefix, port))
    broker = runtime.embedded_broker
    assert broker is not None and broker.port == port
    assert runtime.settings.address == f"127.0.0.1:{port}"
    assert runtime.settings.username == HUB_USERNAME
    assert runtime.settings.protocol_version == MQTT_V311
    # The hub's password is new, and only its hash is stored.
    stored = (await CredentialStore(hub).async_credentials()).users[HUB_USERNAME]
    assert verify_password(hub_password(runtime), stored)
    assert hub_password(runtime) not in hub.path(".storage", "machine.credentials").read_text()

    machine = await LoginMachine(port, prefix, "lobby_1", passwords["lobby_1"]).connect()
    try:
        await adopted_machine(hub, runtime, machine)
        assert machine.of("config")[-1].json["version"] == 1
        vends = record(hub, EVENT_VEND_COMPLETED)
        sold = await machine.event("vend_completed", vend_data())
        await machine.wait_acked(sold)
        assert [event.data["event_id"] for event in vends] == [sold]
        assert hub.states.is_state("machine.lobby_1", "online")
        assert hub.states.is_state("slot.lobby_1_a1", "7")  # 8 announced, one sold
        await recorder.async_flush()
        assert transactions(recorder) == {sold: 1}
        assert broker.connected_clients() == sorted([HUB_USERNAME, "lobby_1"])

        # A hub command, answered over the embedded broker.
        machine.answer = lambda name, command: {"ok": True, "result": {"pong": name}}
        result = await hub.services.async_call(
            "mqtt", "command", {"machine_id": "lobby_1", "name": "ping"}, blocking=True
        )
        assert result["ok"] is True and result["result"] == {"pong": "ping"}
    finally:
        await machine.close()

    await stop_hub(hub)
    assert not broker.running
    assert await embedded_module._bind_error("127.0.0.1", port) is None  # the port is free again


async def test_a_new_hub_publishes_the_configs_again_and_rotates_its_password(
    prefix: str, tmp_path: Path
) -> None:
    """amqtt keeps no retained messages across a hub restart: the hub publishes them again."""
    port = free_port()
    config = embedded_config(prefix, port)
    first = await make_hub(tmp_path)
    passwords = await issue(first, "lobby_1")
    runtime = await start_link(first, config)
    first_password = hub_password(runtime)
    machine = await LoginMachine(port, prefix, "lobby_1", passwords["lobby_1"]).connect()
    await adopted_machine(first, runtime, machine)
    await machine.close()
    await stop_hub(first)

    second = await make_hub(tmp_path)
    try:
        runtime = await start_link(second, config)
        assert hub_password(runtime) != first_password
        back = await LoginMachine(port, prefix, "lobby_1", passwords["lobby_1"]).connect()
        try:
            configs = await back.wait_for(lambda: back.of("config"))
            assert configs[-1].json["version"] == 1
        finally:
            await back.close()
    finally:
        await stop_hub(second)


async def test_a_port_set_in_the_config_and_taken_fails_only_the_mqtt_link_in_one_line(
    tmp_path: Path, taken_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "configuration.yaml").write_text(
        f"alarm:\nmqtt:\n  embedded_broker: {{host: 127.0.0.1, port: {taken_port}}}\n"
    )
    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == []
    with caplog.at_level(logging.INFO):
        hub, report = await async_start_hub(prepared)
    try:
        assert hub.is_running
        assert "alarm" in report.loaded and "mqtt" in report.failed
        assert "mqtt" not in hub.data
        problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(problems) == 1, [r.getMessage() for r in problems]
        line = problems[0].getMessage()
        assert f"127.0.0.1:{taken_port}" in line and "the port is taken" in line
        assert f"'mqtt: embedded_broker: port: {taken_port + 1}'" in line
        assert "'mqtt: broker:'" in line
        assert "\n" not in line
        assert not any(r.exc_info for r in caplog.records)
        assert "Traceback" not in caplog.text
    finally:
        await hub.async_stop()


async def test_a_taken_default_port_moves_the_broker_to_the_next_free_one(
    hub: Hub,
    prefix: str,
    taken_port: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The default port stands for 1883 with a system Mosquitto on it (a test never uses 1883).
    monkeypatch.setattr(embedded_module, "DEFAULT_EMBEDDED_PORT", taken_port)
    config = vendhub_config_schema()(
        {"embedded_broker": {"host": "127.0.0.1"}, "topic_prefix": prefix, "keepalive": 5}
    )
    with caplog.at_level(logging.INFO):
        runtime = await start_link(hub, config)
    broker = runtime.embedded_broker
    assert broker is not None and broker.port is not None
    assert taken_port < broker.port <= taken_port + embedded_module.FALLBACK_PORTS
    assert runtime.settings.port == broker.port and runtime.connection.connected
    # Kept for 'vendhub machine add', which runs without the hub.
    listeners = read_last_listeners(hub.config_dir)
    assert listeners is not None
    assert (listeners.port, listeners.tls_port) == (broker.port, None)
    # (the other warning is the link's "No recorder is set up")
    problems = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "port" in r.getMessage()
    ]
    assert len(problems) == 1, [r.getMessage() for r in problems]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    line = problems[0].getMessage()
    assert f"MQTT port {taken_port} is taken" in line
    assert f"listens on port {broker.port}" in line
    assert f"'mqtt: embedded_broker: port: {broker.port}'" in line
    assert "'mqtt: broker:'" in line
    assert not any(r.exc_info for r in caplog.records)


# ---- logins ----------------------------------------------------------------------------


async def test_only_valid_logins_connect(hub: Hub, prefix: str, tmp_path: Path) -> None:
    passwords = await issue(hub, "a", "b")
    port = free_port()
    runtime = await start_link(hub, embedded_config(prefix, port))
    attempts = {
        "anonymous": (None, None),
        "no password": ("a", None),
        "wrong password": ("a", passwords["b"]),
        "another machine's name": ("b", passwords["a"]),
        "unknown user": ("c", passwords["a"]),
        "the hub's name": (HUB_USERNAME, passwords["a"]),
    }
    for case, (username, password) in attempts.items():
        with pytest.raises(aiomqtt.MqttCodeError) as caught:
            async with login(port, username, password):
                pass
        assert code_of(caught.value) in REFUSED, case
    async with login(port, "a", passwords["a"]) as machine:
        await machine.client.publish(f"{prefix}/a/status", b"fine", qos=1)

    # 'vendhub machine add' and 'remove' while the hub runs: no restart needed.
    _, late = await asyncio.to_thread(add_machine, tmp_path, "late")
    async with login(port, "late", late):
        pass
    await asyncio.to_thread(remove_machine, tmp_path, "a")
    with pytest.raises(aiomqtt.MqttCodeError) as caught:
        async with login(port, "a", passwords["a"]):
            pass
    assert code_of(caught.value) in REFUSED
    assert runtime.connection.connected


async def test_removed_and_rotated_logins_are_cut_off_but_not_the_hubs_own(
    hub: Hub, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded_module, "CREDENTIAL_CHECK_INTERVAL", 0.1)
    passwords = await issue(hub, "gone", "rotated", "stays")
    port = free_port()
    runtime = await start_link(hub, embedded_config(prefix, port))
    broker = runtime.embedded_broker
    assert broker is not None
    async with contextlib.AsyncExitStack() as stack:
        for name in ("gone", "rotated", "stays"):
            stack.enter_context(contextlib.suppress(aiomqtt.MqttError))  # cut-off: no goodbye
            await stack.enter_async_context(login(port, name, passwords[name]))
        everyone = sorted([HUB_USERNAME, "gone", "rotated", "stays"])
        await until(lambda: broker.connected_clients() == everyone)
        # As 'vendhub machine remove gone', 'machine add rotated --rotate' and
        # 'machine hub-user --rotate' do, from another process, while the hub runs.
        await asyncio.to_thread(remove_machine, tmp_path, "gone")
        await asyncio.to_thread(functools.partial(add_machine, tmp_path, "rotated", rotate=True))
        await asyncio.to_thread(functools.partial(ensure_hub_user, tmp_path, rotate=True))
        await until(lambda: broker.connected_clients() == sorted([HUB_USERNAME, "stays"]))
    # The hub logs in with the password it started with, even after a broker restart.
    await broker.async_restart()
    await until(lambda: runtime.connection.connects == 2, timeout=10)
    assert broker.connected_clients() == [HUB_USERNAME]


async def test_an_mqtt_5_client_is_told_the_broker_speaks_3_1_1(
    hub: Hub, prefix: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guarded_module, "_v5_warned", {})  # said once per address
    passwords = await issue(hub, "a")
    port = free_port()
    await start_link(hub, embedded_config(prefix, port))
    with pytest.raises(aiomqtt.MqttCodeError) as caught:
        async with aiomqtt.Client(
            "127.0.0.1",
            port,
            username="a",
            password=passwords["a"],
            protocol=aiomqtt.ProtocolVersion.V5,
            timeout=5,
        ):
            pass
    assert code_of(caught.value) == UNSUPPORTED_PROTOCOL
    with pytest.raises(aiomqtt.MqttCodeError):  # a retry: refused again, not logged again
        async with aiomqtt.Client(
            "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, timeout=5
        ):
            pass
    assert caplog.text.count("speaks MQTT 3.1.1 only") == 1


# ---- topic rules -----------------------------------------------------------------------


async def test_a_machine_cannot_publish_into_another_machines_topics(hub: Hub, prefix: str) -> None:
    passwords = await issue(hub, "a", "b")
    port = free_port()
    runtime = await start_link(hub, embedded_config(prefix, port))
    seen = record(hub, "mqtt_message_received")
    forged = [
        f"{prefix}/b/status",
        f"{prefix}/b/announce",
        f"{prefix}/b/event",
        f"{prefix}/b/telemetry",
        f"{prefix}/b/config",
        f"{prefix}/b/cmd/vend",
        f"{prefix}/b/ack",
        f"{prefix}/a/config",  # the hub's topics of a machine are not the machine's to write
        f"{prefix}/a/cmd/vend",
        f"{prefix}/other",
    ]
    victim = await LoginMachine(port, prefix, "b", passwords["b"]).connect()
    try:
        async with login(port, HUB_USERNAME, hub_password(runtime)) as observer:
            await observer.client.subscribe(f"{prefix}/#", qos=1)
            # a with b's client id: refused, and b is not kicked off.
            with pytest.raises(aiomqtt.MqttCodeError) as caught:
                async with login(port, "a", passwords["a"], identifier=victim.identifier):
                    pass
            assert code_of(caught.value) in REFUSED
            async with login(port, "a", passwords["a"]) as forger:
                for index, topic in enumerate(forged):
                    await forger.client.publish(topic, f"forged-{index}".encode(), qos=index % 2)
                await forger.client.publish(f"{prefix}/a/event", b"barrier-a", qos=1)
                await observer.wait_for(f"{prefix}/a/event", b"barrier-a")
            await observer.client.publish(f"{prefix}/b/cmd/ping", b"barrier-b", qos=1)
            await victim.wait_for(lambda: victim.of("cmd/ping"))
            await asyncio.sleep(0.3)  # amqtt delivers each message in a task of its own
            assert not [p for p in observer.payloads() if p.startswith(b"forged-")]
        assert not [r for r in victim.received if r.payload.startswith(b"forged-")]
        # The hub itself got a's barrier, and nothing a forged.
        topics = [event.data["topic"] for event in seen]
        assert f"{prefix}/a/event" in topics
        assert not set(topics) & set(forged)
        assert runtime.directory.get("b") is None
    finally:
        await victim.close()


async def test_a_last_will_on_another_machines_topic_is_refused(hub: Hub, prefix: str) -> None:
    """Also without credentials: amqtt alone would let such a client swap b's session's will
    for its own and publish it by taking b's connection over."""
    passwords = await issue(hub, "a", "b")
    port = free_port()
    runtime = await start_link(hub, embedded_config(prefix, port))
    victim = await LoginMachine(port, prefix, "b", passwords["b"]).connect()
    forged_will = aiomqtt.Will(f"{prefix}/b/event", b"forged-will", qos=1, retain=False)
    try:
        async with login(port, HUB_USERNAME, hub_password(runtime)) as observer:
            await observer.client.subscribe(f"{prefix}/#", qos=1)
            for username, password, identifier in (
                ("a", passwords["a"], None),  # a valid login, a will on b's topic
                (None, None, victim.identifier),  # no login, b's client id, persistent session
                ("a", passwords["b"], victim.identifier),
            ):
                with pytest.raises(aiomqtt.MqttCodeError) as caught:
                    async with login(
                        port,
                        username,
                        password,
                        identifier=identifier,
                        will=forged_will,
                        clean_session=False,
                    ):
                        pass
                assert code_of(caught.value) in REFUSED
            await observer.client.publish(f"{prefix}/b/cmd/ping", b"still-here", qos=1)
            await victim.wait_for(lambda: victim.of("cmd/ping"))  # b kept its connection
            await asyncio.sleep(0.3)
            assert b"forged-will" not in observer.payloads()
        assert len(victim.of("cmd/ping")) == 1
    finally:
        await victim.close()


async def test_a_machine_cannot_subscribe_to_another_machines_commands(
    hub: Hub, prefix: str
) -> None:
    passwords = await issue(hub, "a", "b")
    port = free_port()
    runtime = await start_link(hub, embedded_config(prefix, port))
    victim = await LoginMachine(port, prefix, "b", passwords["b"]).connect()
    try:
        async with login(port, HUB_USERNAME, hub_password(runtime)) as hub_client:
            # b's retained config, as the hub publishes it
            await hub_client.client.publish(f"{prefix}/b/config", b"b-config", qos=1, retain=True)
            await victim.wait_for(lambda: victim.of("config"))
            async with login(port, "a", passwords["a"]) as spy:
                granted = await spy.client.subscribe(
                    [
                        (f"{prefix}/b/cmd/#", 1),
                        (f"{prefix}/b/config", 1),
                        (f"{prefix}/+/config", 1),
                        (f"{prefix}/#", 1),
                        ("#", 1),
                        (f"{prefix}/a/cmd/+", 1),
                    ]
                )
                codes = [getattr(code, "value", code) for code in granted]
                assert codes == [SUBSCRIPTION_REFUSED] * 5 + [1]
                await hub_client.client.publish(f"{prefix}/b/cmd/vend", b"secret-b", qos=1)
                await hub_client.client.publish(f"{prefix}/a/cmd/ping", b"barrier", qos=1)
                await spy.wait_for(f"{prefix}/a/cmd/ping", b"barrier")
                await asyncio.sleep(0.3)
                assert not {b"secret-b", b"b-config"} & spy.payloads()
            # A new connection of a: amqtt would replay every subscription's retained
            # messages to it (b's config included); the guarded broker replays none of b's.
            async with login(port, "a", passwords["a"]) as again:
                await again.client.subscribe(f"{prefix}/a/cmd/+", qos=1)
                await hub_client.client.publish(f"{prefix}/a/cmd/ping", b"barrier-2", qos=1)
                await again.wait_for(f"{prefix}/a/cmd/ping", b"barrier-2")
                assert b"b-config" not in again.payloads()
        assert victim.of("cmd/vend")[-1].payload == b"secret-b"  # b itself got its command
    finally:
        await victim.close()


async def test_the_hub_user_writes_config_commands_and_acks_but_no_telemetry(
    hub: Hub, prefix: str
) -> None:
    passwords = await issue(hub, "a")
    port = free_port()
    runtime = await start_link(hub, embedded_config(prefix, port))
    machine = await LoginMachine(port, prefix, "a", passwords["a"]).connect()
    try:
        async with login(port, HUB_USERNAME, hub_password(runtime)) as hub_client:
            await hub_client.client.subscribe(f"{prefix}/a/#", qos=1)
            sent = {
                "config": b'{"hub":"config"}',
                "cmd/restock": b'{"hub":"cmd"}',
                "ack": b'{"hub":"ack"}',
            }
            for kind, payload in sent.items():
                await hub_client.client.publish(f"{prefix}/a/{kind}", payload, qos=1)
            for kind, payload in sent.items():
                await machine.wait_for(
                    lambda kind=kind, payload=payload: any(
                        r.payload == payload for r in machine.of(kind)
                    )
                )
            await hub_client.client.publish(f"{prefix}/a/telemetry", b"hub-forged", qos=1)
            await machine.publish("event", b"barrier")
            await hub_client.wait_for(f"{prefix}/a/event", b"barrier")
            await asyncio.sleep(0.3)
            assert b"hub-forged" not in hub_client.payloads()
    finally:
        await machine.close()


async def test_a_new_subscription_gets_a_topic_that_was_published_before(
    hub: Hub, prefix: str
) -> None:
    """The broker remembers which filters a topic matches; a new filter must be seen."""
    passwords = await issue(hub, "a")
    port = free_port()
    runtime = await start_link(hub, embedded_config(prefix, port))
    topic = f"{prefix}/a/telemetry"
    async with (
        login(port, "a", passwords["a"]) as machine,
        login(port, HUB_USERNAME, hub_password(runtime)) as late,
    ):
        await late.client.subscribe(f"{prefix}/a/event", qos=1)
        await machine.client.publish(topic, b"before", qos=1)
        await machine.client.publish(f"{prefix}/a/event", b"barrier-1", qos=1)
        await late.wait_for(f"{prefix}/a/event", b"barrier-1")
        await late.client.subscribe(topic, qos=1)  # a filter nobody had (the hub has +)
        await machine.client.publish(topic, b"after", qos=1)
        await late.wait_for(topic, b"after")
        await late.client.unsubscribe(topic)
        await machine.client.publish(topic, b"unsubscribed", qos=1)
        await machine.client.publish(f"{prefix}/a/event", b"barrier-2", qos=1)
        await late.wait_for(f"{prefix}/a/event", b"barrier-2")
        await asyncio.sleep(0.2)
        assert [p for t, p in late.messages if t == topic] == [b"after"]


# ---- TLS -------------------------------------------------------------------------------


async def test_the_tls_listener_takes_logins_too(hub: Hub, prefix: str, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    passwords = await issue(hub, "a")
    port, tls_port = free_port(), free_port()
    tls = {"port": tls_port, "certfile": str(cert), "keyfile": str(key)}
    config = vendhub_config_schema()(
        {
            "embedded_broker": {"host": "127.0.0.1", "port": port, "tls": tls},
            "topic_prefix": prefix,
            "keepalive": 5,
        }
    )
    runtime = await start_link(hub, config)
    context = ssl.create_default_context(cafile=str(cert))
    async with login(tls_port, "a", passwords["a"], tls_context=context) as machine:
        await machine.client.publish(f"{prefix}/a/status", b"over-tls", qos=1)
    with pytest.raises(aiomqtt.MqttCodeError):
        async with login(tls_port, None, None, tls_context=context):
            pass
    assert runtime.connection.connected


# ---- a broker restart while agents sell ------------------------------------------------


MACHINES = 3
SPEED = 60.0  # simulated seconds per real second
SALES_PER_HOUR = 40.0  # simulated: 40 * 60 / 3600 = 0.67 sales per real second and machine


@pytest.mark.timeout(150)
async def test_broker_restarts_while_agents_sell_and_every_vend_is_recorded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config_dir = tmp_path / "hub"
    config_dir.mkdir()
    port = free_port()
    # One MQTT user per machine, issued as 'vendhub machine add' (or simulate --config) does.
    passwords = dict(add_machine(config_dir, name) for name in simulate.fleet_ids(MACHINES))
    (config_dir / "configuration.yaml").write_text(
        "recorder:\n"
        f"  db_url: sqlite:///{config_dir / 'vendhub.db'}\n"
        "  commit_interval: 0.5\n"
        "mqtt:\n"
        f"  embedded_broker: {{host: 127.0.0.1, port: {port}}}\n"
        "  auto_adopt: true\n"
        "  keepalive: 5\n"
    )
    simulation = simulate.build_simulation(
        machines=MACHINES,
        hub=simulate.HubAddress("127.0.0.1", port),
        passwords=passwords,
        speed=SPEED,
        tick=0.25,
        seed=5,
        outbox_dir=tmp_path / "outboxes",
        sales_per_hour=SALES_PER_HOUR,
        summary_interval=0,
        resend_after=2.0,
        keepalive=5,
    )
    machines = simulation.machines
    ids = {simulated.machine_id for simulated in machines}
    sold: list[tuple[str, str]] = []  # (machine id, event id) of every vend, in order
    for simulated in machines:
        simulated.agent.backoff_min, simulated.agent.backoff_max = 0.1, 0.5
        simulated.machine.daily_curve = (1.0,) * 24  # the same rate at any hour of the day
        simulated.machine.door_openings_per_day = 0  # an open door stops sales
        record_vends(simulated, sold)
    agents = [simulated.agent for simulated in machines]

    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    assert report.failed == {}
    runtime: MqttRuntime = hub.data["mqtt"]
    broker = runtime.embedded_broker
    assert broker is not None
    # The hub comes back after the machines (0.1-0.5 s): what they sell meanwhile reaches a
    # broker where the hub has no session yet, and only their outboxes bring it to the hub.
    runtime.connection.min_delay = 1.5
    recorder = get_recorder(hub)
    assert recorder is not None
    stop_selling = asyncio.Event()
    selling = asyncio.create_task(simulation.run(stop_selling))
    try:
        with caplog.at_level(logging.INFO, logger="vendhub_integrations.mqtt"):
            await wait_until(lambda: machines_online(hub) == ids, 30, "every machine online")
            await wait_until(lambda: len(sold) >= MACHINES, 30, "the first sales")
            for restart in (1, 2):
                before = len(sold)
                await broker.async_restart(pause=0.5)
                assert broker.restarts == restart
                await wait_until(lambda: runtime.connection.connected, 15, "the hub reconnects")
                await wait_until(
                    lambda: all(agent.connected for agent in agents), 15, "agents reconnect"
                )
                await wait_until(
                    lambda before=before: len(sold) >= before + MACHINES, 30, "sales go on"
                )
            assert runtime.connection.connects == 3

            # The machines stop selling; every event they made must be acknowledged.
            for simulated in machines:
                simulated.sales_per_hour = simulated.machine.sales_per_hour = 0.0
            await asyncio.wait_for(
                asyncio.gather(*(agent.wait_drained() for agent in agents)), timeout=60
            )
        assert sum(agent.pending for agent in agents) == 0
        assert all(agent.stats.connections >= 3 for agent in agents)
        messages = [r.getMessage() for r in caplog.records]
        assert sum(m.startswith("Reconnected to the MQTT broker") for m in messages) == 2
        # The agents are the real ones: refused MQTT 5 by amqtt, they fell back to 3.1.1.
        assert all(agent.mqtt_v311 for agent in agents)
        assert sum("does not speak MQTT 5" in m for m in messages) == MACHINES

        await recorder.async_flush()
        ledger = Counter(await recorder.async_query(ledger_rows))
        made = Counter(sold)
        assert len(made) == len(sold), "a virtual machine repeated an event id"
        assert not {key: n for key, n in ledger.items() if n > 1}, "recorded more than once"
        assert set(ledger) == set(made), (set(made) - set(ledger), set(ledger) - set(made))
        assert sum(ledger.values()) == len(sold) >= 3 * MACHINES
        # Some sales reached the broker before the hub was back; the outboxes sent them again.
        assert sum(agent.stats.events_resent for agent in agents) > 0
        for simulated in machines:
            stored = outbox_events(simulated.agent.outbox_path)
            own = {event_id for machine_id, event_id in sold if machine_id == simulated.machine_id}
            assert own <= set(stored) and all(stored.values())
        assert machines_online(hub) == ids
    finally:
        stop_selling.set()
        await asyncio.wait_for(selling, 20)
        await hub.async_stop()
