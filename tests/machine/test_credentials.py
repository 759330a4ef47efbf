"""Machine credentials: hashes as mosquitto_passwd writes them, the store, the CLI, and a real
Mosquitto started with the generated password and ACL files enforcing one machine, one topic tree.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from tests.mosquitto import Mosquitto
from vendhub.__main__ import main
from vendhub.const import STORAGE_DIR
from vendhub.machine.credentials import (
    HUB_USERNAME,
    CredentialError,
    add_machine,
    ensure_hub_user,
    hash_password,
    list_machines,
    load_credentials,
    remove_machine,
    verify_password,
)
from vendhub.machine.mosquitto_files import write_mosquitto_files

HASH_SHAPE = re.compile(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==")
STORE = Path(".storage") / "machine.credentials"
NOT_AUTHORIZED = 0x87
BAD_USER_OR_PASSWORD = 0x86


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{binary} is not installed (CI=true: the broker tests must run)")
        pytest.skip(f"{binary} is not installed")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- hashes ----------------------------------------------------------------------------


def test_hash_is_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    _need("mosquitto_passwd")
    password_file = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(password_file), "alice", "s3cret pass"],
        check=True,
        capture_output=True,
    )
    user, encoded = password_file.read_text().strip().split(":", 1)
    assert user == "alice"
    assert HASH_SHAPE.fullmatch(encoded), encoded
    # Same salt, same password: byte for byte the hash mosquitto_passwd wrote.
    salt = base64.b64decode(encoded.split("$")[3])
    assert len(salt) == 12
    assert hash_password("s3cret pass", salt=salt) == encoded
    assert verify_password("s3cret pass", encoded) is True
    assert verify_password("s3cret pas", encoded) is False


def test_hash_format_and_verification() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert HASH_SHAPE.fullmatch(first) and HASH_SHAPE.fullmatch(second)
    assert first != second  # a fresh salt each time
    assert verify_password("pw", first) and verify_password("pw", second)
    assert not verify_password("PW", first)
    for broken in ("", "pw", "$6$abc$def", "$7$x$AAAA$BBBB", "$7$101$!!!!$BBBB", first[:-6]):
        assert verify_password("pw", broken) is False, broken


# ---- the store -------------------------------------------------------------------------


def test_store_keeps_only_hashes_with_mode_0600(tmp_path: Path) -> None:
    username, password = add_machine(tmp_path, "lobby_1")
    assert username == "lobby_1"
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", password)
    hub_password = ensure_hub_user(tmp_path)
    assert hub_password is not None
    assert ensure_hub_user(tmp_path) is None  # shown once: not again

    store = tmp_path / STORE
    text = store.read_text()
    assert password not in text and hub_password not in text
    assert _mode(store) == 0o600
    envelope = json.loads(text)
    assert envelope["key"] == "machine.credentials" and envelope["version"] == 1
    stored = envelope["data"]["machines"]["lobby_1"]
    assert set(stored) == {"password_hash", "created"}
    assert verify_password(password, stored["password_hash"])
    assert verify_password(hub_password, envelope["data"]["hub"]["password_hash"])
    assert envelope["data"]["hub"]["username"] == HUB_USERNAME

    users = load_credentials(tmp_path).users
    assert set(users) == {"lobby_1", HUB_USERNAME}


def test_add_refuses_bad_and_existing_ids_and_rotates(tmp_path: Path) -> None:
    _, old = add_machine(tmp_path, "lobby_1")
    for bad in ("Lobby_1", "lobby-1", "", "a/b", "+", "x" * 65, HUB_USERNAME):
        with pytest.raises(CredentialError, match="invalid machine id"):
            add_machine(tmp_path, bad)
    with pytest.raises(CredentialError, match="already has credentials"):
        add_machine(tmp_path, "lobby_1")
    assert verify_password(old, load_credentials(tmp_path).users["lobby_1"])

    _, new = add_machine(tmp_path, "lobby_1", rotate=True)
    assert new != old
    encoded = load_credentials(tmp_path).users["lobby_1"]
    assert verify_password(new, encoded) and not verify_password(old, encoded)

    add_machine(tmp_path, "lobby_2")
    assert [m.machine_id for m in list_machines(tmp_path)] == ["lobby_1", "lobby_2"]
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", m.created)
        for m in list_machines(tmp_path)
    )
    remove_machine(tmp_path, "lobby_1")
    assert [m.machine_id for m in list_machines(tmp_path)] == ["lobby_2"]
    with pytest.raises(CredentialError, match="has no credentials"):
        remove_machine(tmp_path, "lobby_1")


def test_mosquitto_files_content_and_modes(tmp_path: Path) -> None:
    add_machine(tmp_path, "lobby_1")
    add_machine(tmp_path, "lobby_2")
    ensure_hub_user(tmp_path)
    password_file, acl_file = write_mosquitto_files(tmp_path, tmp_path / "out", prefix="site1/vh")
    assert _mode(password_file) == 0o600 and _mode(acl_file) == 0o600
    users = load_credentials(tmp_path).users
    assert password_file.read_text() == "".join(
        f"{user}:{users[user]}\n" for user in ("lobby_1", "lobby_2", HUB_USERNAME)
    )
    acl = acl_file.read_text().splitlines()
    rules = [line for line in acl if line and not line.startswith("#")]
    assert rules[0] == f"user {HUB_USERNAME}"  # nothing for anonymous clients
    assert "topic read site1/vh/#" in rules
    assert "topic write site1/vh/+/cmd/#" in rules
    block = rules[rules.index("user lobby_2") :]
    assert block == [
        "user lobby_2",
        "topic write site1/vh/lobby_2/status",
        "topic write site1/vh/lobby_2/announce",
        "topic write site1/vh/lobby_2/telemetry",
        "topic write site1/vh/lobby_2/event",
        "topic write site1/vh/lobby_2/cmd_result",
        "topic read site1/vh/lobby_2/config",
        "topic read site1/vh/lobby_2/cmd/#",
        "topic read site1/vh/lobby_2/ack",
    ]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temps


# ---- the command line ------------------------------------------------------------------


def test_cli_gives_the_port_the_embedded_broker_last_listened_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    (config / STORAGE_DIR).mkdir(parents=True)
    # As the mqtt integration keeps it when 1883 was taken and the broker moved to 1884.
    (config / STORAGE_DIR / "mqtt.embedded_broker").write_text(
        json.dumps(
            {
                "version": 1,
                "minor_version": 1,
                "key": "mqtt.embedded_broker",
                "data": {"port": 1884, "tls_port": 8884, "started": "2026-12-06T18:00:00+00:00"},
            }
        )
    )
    assert main(["machine", "add", "lobby_1", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"@HUB_HOST:1884  \(where the hub's embedded broker listened at its last "
        r"start, 2026-12-06T18:00:00\+00:00; mqtts://\.\.\.:8884 with TLS\)",
        out,
    )
    assert ":1883" not in out
    assert "The embedded broker takes the new login within 5 s" in out


def test_cli_prints_the_password_once_and_never_logs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = str(tmp_path / "config")
    assert main(["machine", "add", "lobby_1", "--config", config]) == 0
    out = capsys.readouterr().out
    password = re.search(r"^  password: (\S+)$", out, re.MULTILINE)
    hub = re.search(r'^  vendhub_mqtt_password: "(\S+)"$', out, re.MULTILINE)
    assert password and hub
    assert f"mqtt://lobby_1:{password[1]}@HUB_HOST:1883" in out
    assert "username: vendhub-hub" in out and "!secret vendhub_mqtt_password" in out
    users = load_credentials(config).users
    assert verify_password(password[1], users["lobby_1"])
    assert verify_password(hub[1], users[HUB_USERNAME])
    store_text = (Path(config) / STORE).read_text()
    assert password[1] not in store_text and hub[1] not in store_text

    # Never again: not by a second add, list, a second machine or the Mosquitto files.
    assert main(["machine", "add", "lobby_1", "--config", config]) == 1
    assert main(["machine", "add", "lobby_2", "--config", config]) == 0
    assert main(["machine", "list", "--config", config]) == 0
    out_dir = tmp_path / "mq"
    assert main(["machine", "mosquitto-files", "--config", config, "--out", str(out_dir)]) == 0
    captured = capsys.readouterr()
    later = captured.out + captured.err
    assert password[1] not in later and hub[1] not in later
    assert "already has credentials" in captured.err
    assert "vendhub_mqtt_password" not in later  # the hub user existed already
    assert re.search(r"^lobby_1\t\S+$", captured.out, re.MULTILINE)
    assert re.search(r"^lobby_2\t\S+$", captured.out, re.MULTILINE)
    assert f"password_file {(out_dir / 'vendhub.passwd').resolve()}" in captured.out
    assert f"acl_file {(out_dir / 'vendhub.acl').resolve()}" in captured.out
    assert "allow_anonymous false" in captured.out
    assert all(password[1] not in r.getMessage() for r in caplog.records)
    assert all(password[1] not in p.read_text() for p in out_dir.iterdir())

    assert main(["machine", "add", "Bad-Id", "--config", config]) == 1
    assert "invalid machine id" in capsys.readouterr().err
    assert main(["machine", "remove", "lobby_1", "--config", config]) == 0
    assert main(["machine", "list", "--config", config]) == 0
    listed = capsys.readouterr().out
    assert "lobby_1" not in listed.split("Removed", 1)[1].split("\n", 1)[1]
    assert re.search(r"^lobby_2\t", listed, re.MULTILINE)

    assert main(["machine", "hub-user", "--config", config]) == 0
    assert "exists" in capsys.readouterr().out
    assert main(["machine", "hub-user", "--rotate", "--config", config]) == 0
    rotated = re.search(r'vendhub_mqtt_password: "(\S+)"', capsys.readouterr().out)
    assert rotated and rotated[1] != hub[1]
    assert verify_password(rotated[1], load_credentials(config).users[HUB_USERNAME])


# ---- a real Mosquitto with the generated files -----------------------------------------


@dataclass
class Fleet:
    broker: Mosquitto
    passwords: dict[str, str]  # username -> password


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Machines ``a`` and ``b`` and the hub user, on a Mosquitto using the generated files."""
    _need("mosquitto")
    root = tmp_path_factory.mktemp("credentials")
    config = root / "config"
    passwords = dict(add_machine(config, machine) for machine in ("a", "b"))
    hub_password = ensure_hub_user(config)
    assert hub_password is not None
    passwords[HUB_USERNAME] = hub_password
    password_file, acl_file = write_mosquitto_files(config, root / "mosquitto")
    broker = Mosquitto(
        root / "broker",
        allow_anonymous=False,
        password_file=password_file,
        acl_file=acl_file,
    )
    # As docs/mosquitto.md advises: a client id cannot take over another user's session.
    with broker.config.open("a") as conf:
        conf.write("use_username_as_clientid true\n")
    broker.start()
    yield Fleet(broker, passwords)
    broker.stop()


class Recorder:
    """A connected client that records what it receives."""

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
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: (topic, payload) in self.messages)

        await asyncio.wait_for(until(), timeout)

    def payloads(self) -> set[bytes]:
        return {payload for _topic, payload in self.messages}


@contextlib.asynccontextmanager
async def connect(
    fleet: Fleet, username: str | None, password: str | None = None, **kwargs: object
) -> AsyncIterator[Recorder]:
    if username is not None and password is None:
        password = fleet.passwords[username]
    async with aiomqtt.Client(
        "127.0.0.1",
        fleet.broker.port,
        username=username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
        **kwargs,  # type: ignore[arg-type]
    ) as client:
        recorder = Recorder(client)
        task = asyncio.create_task(recorder.read())
        try:
            yield recorder
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def test_machine_publishes_its_own_topics_and_the_hub_receives(fleet: Fleet) -> None:
    async with connect(fleet, HUB_USERNAME) as hub, connect(fleet, "a") as machine:
        await hub.client.subscribe("vendhub/#", qos=1)
        kinds = ("status", "announce", "telemetry", "event", "cmd_result")
        for kind in kinds:
            await machine.client.publish(f"vendhub/a/{kind}", f"own-{kind}".encode(), qos=1)
        for kind in kinds:
            await hub.wait_for(f"vendhub/a/{kind}", f"own-{kind}".encode())
        assert {t for t, p in hub.messages if p.startswith(b"own-")} == {
            f"vendhub/a/{kind}" for kind in kinds
        }


async def test_machine_cannot_publish_into_another_machines_topics(fleet: Fleet) -> None:
    # Machine a, even with b's client id, publishes into b's topics and the hub's topics.
    forged = [
        "vendhub/b/status",
        "vendhub/b/event",
        "vendhub/b/telemetry",
        "vendhub/b/config",
        "vendhub/b/cmd/vend",
        "vendhub/b/ack",
        "vendhub/a/config",  # the hub's topics of a machine are not the machine's to write
        "vendhub/a/cmd/vend",
        "vendhub/other",
    ]
    async with (
        connect(fleet, HUB_USERNAME) as hub,
        connect(fleet, "b", identifier="machine-b") as victim,
        connect(fleet, "a", identifier="machine-b") as forger,
    ):
        await hub.client.subscribe("vendhub/#", qos=1)
        await victim.client.subscribe(
            [("vendhub/b/config", 1), ("vendhub/b/cmd/+", 1), ("vendhub/b/ack", 1)]
        )
        for index, topic in enumerate(forged):
            await forger.client.publish(topic, f"forged-{index}".encode(), qos=index % 2)
        # Barriers: a's own event after the forgeries; then a hub command to b.
        await forger.client.publish("vendhub/a/event", b"barrier-a", qos=1)
        await hub.wait_for("vendhub/a/event", b"barrier-a")
        await hub.client.publish("vendhub/b/cmd/ping", b"barrier-b", qos=1)
        await victim.wait_for("vendhub/b/cmd/ping", b"barrier-b")  # b was not kicked off

        assert not [p for p in hub.payloads() if p.startswith(b"forged-")]
        assert not [p for p in victim.payloads() if p.startswith(b"forged-")]
    log = fleet.broker.log_tail(200_000)
    for topic in forged:
        assert re.search(rf"Denied PUBLISH from a .*'{re.escape(topic)}'", log), topic


async def test_no_credentials_or_wrong_password_cannot_connect(fleet: Fleet) -> None:
    attempts = {
        "anonymous": (None, None),
        "wrong password": ("a", fleet.passwords["b"]),
        "another machine's name": ("b", fleet.passwords["a"]),
        "unknown user": ("c", fleet.passwords["a"]),
    }
    for case, (username, password) in attempts.items():
        with pytest.raises(aiomqtt.MqttCodeError) as caught:
            async with connect(fleet, username, password or ""):
                pass
        assert caught.value.rc in (NOT_AUTHORIZED, BAD_USER_OR_PASSWORD), case
    # Anonymous without a password field at all.
    with pytest.raises(aiomqtt.MqttCodeError) as caught:
        async with aiomqtt.Client(
            "127.0.0.1", fleet.broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ):
            pass
    assert caught.value.rc in (NOT_AUTHORIZED, BAD_USER_OR_PASSWORD)


async def test_machine_cannot_subscribe_to_another_machines_commands(fleet: Fleet) -> None:
    async with connect(fleet, HUB_USERNAME) as hub, connect(fleet, "a") as spy:
        granted = await spy.client.subscribe(
            [("vendhub/b/cmd/#", 1), ("vendhub/b/config", 1), ("vendhub/a/cmd/+", 1)]
        )
        codes = [getattr(code, "value", code) for code in granted]
        # Mosquitto 2.0's acl_file checks 'read' when it delivers, not in the SUBACK: it may
        # grant the subscription (2.0.11 does), but it never delivers b's messages to a.
        assert codes[0] in (1, NOT_AUTHORIZED) and codes[1] in (1, NOT_AUTHORIZED)
        assert codes[2] == 1  # its own commands: granted at QoS 1
        await spy.client.subscribe("vendhub/#", qos=1)  # a broad filter gets no more
        await hub.client.publish("vendhub/b/cmd/vend", b"secret-b", qos=1)
        await hub.client.publish("vendhub/b/config", b"secret-b-config", qos=1)
        await hub.client.publish("vendhub/a/cmd/ping", b"barrier", qos=1)
        await spy.wait_for("vendhub/a/cmd/ping", b"barrier")
        assert not {b"secret-b", b"secret-b-config"} & spy.payloads()


async def test_hub_publishes_config_commands_and_acks(fleet: Fleet) -> None:
    async with connect(fleet, HUB_USERNAME) as hub, connect(fleet, "a") as machine:
        await machine.client.subscribe(
            [("vendhub/a/config", 1), ("vendhub/a/cmd/+", 1), ("vendhub/a/ack", 1)]
        )
        sent = {
            "vendhub/a/config": b"hub-config",
            "vendhub/a/cmd/restock": b"hub-cmd",
            "vendhub/a/ack": b"hub-ack",
        }
        for topic, payload in sent.items():
            await hub.client.publish(topic, payload, qos=1)
        for topic, payload in sent.items():
            await machine.wait_for(topic, payload)
        # The hub may clear a removed machine's retained announcement, not fake telemetry.
        await hub.client.subscribe("vendhub/a/#", qos=1)
        await hub.client.publish("vendhub/a/telemetry", b"hub-forged", qos=1)
        await machine.client.publish("vendhub/a/event", b"barrier", qos=1)
        await hub.wait_for("vendhub/a/event", b"barrier")
        assert b"hub-forged" not in hub.payloads()


async def test_removed_machine_is_cut_off_when_mosquitto_reloads(tmp_path: Path) -> None:
    _need("mosquitto")
    config, out = tmp_path / "config", tmp_path / "mosquitto"
    _, gone = add_machine(config, "gone")
    _, stays = add_machine(config, "stays")
    ensure_hub_user(config)
    password_file, acl_file = write_mosquitto_files(config, out)
    broker = Mosquitto(
        tmp_path / "broker", allow_anonymous=False, password_file=password_file, acl_file=acl_file
    )
    broker.start()
    try:

        def client(username: str, password: str) -> aiomqtt.Client:
            return aiomqtt.Client(
                "127.0.0.1",
                broker.port,
                username=username,
                password=password,
                protocol=aiomqtt.ProtocolVersion.V5,
            )

        async with client("gone", gone) as connected:
            await connected.subscribe("vendhub/gone/config", qos=1)
            remove_machine(config, "gone")
            write_mosquitto_files(config, out)
            assert broker.process is not None
            broker.process.send_signal(signal.SIGHUP)
            with pytest.raises(aiomqtt.MqttError, match="Disconnected"):
                async with asyncio.timeout(5):
                    async for _message in connected.messages:
                        pass
        with pytest.raises(aiomqtt.MqttCodeError) as caught:
            async with client("gone", gone):
                pass
        assert caught.value.rc in (NOT_AUTHORIZED, BAD_USER_OR_PASSWORD)
        async with client("stays", stays) as still:
            await still.publish("vendhub/stays/status", b"online", qos=1)
    finally:
        broker.stop()
