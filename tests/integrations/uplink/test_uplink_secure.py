"""The uplink against a Mosquitto set up as deployed: TLS only, the hub's password file and ACL.

The fleet hub issues the credentials (``vendhub machine add``'s ``add_machine`` and
``ensure_hub_user``) and writes the broker's files (``write_mosquitto_files``); the broker's
certificate comes from a throw-away CA made here. Each test has its own broker, because the
ACL names the test's topic prefix.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttCodeError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integrations.mqtt.conftest import (
    make_hub,
    start_link,
    start_recorder,
    stop_hub,
    until,
)
from tests.mosquitto import Mosquitto
from vendhub.core.hub import Hub
from vendhub.machine.credentials import HUB_USERNAME, add_machine, ensure_hub_user
from vendhub.machine.mosquitto_files import write_mosquitto_files
from vendhub_integrations.mqtt import vendhub_config_schema

from .conftest import (
    MACHINE_CONFIGURATION,
    MACHINE_ID,
    Fleet,
    MachineHub,
    MachineStarter,
    linked,
    start_machine_hub_in,
    stop_machine_hubs,
)

SECRET_NAME = "lobby_1_fleet"


# ---- a throw-away CA and the broker's certificate ------------------------------------------


@dataclass(frozen=True)
class Authority:
    """PEM files: the CA that signed the broker's certificate, the broker's certificate and
    key (for 127.0.0.1 and localhost), and a CA that signed nothing of ours."""

    ca: Path
    certfile: Path
    keyfile: Path
    stranger_ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    """A CA's own certificate (no ``issuer``) or a server's for 127.0.0.1 and localhost."""
    now = dt.datetime.now(dt.UTC)
    issuer_name, signing_key = (
        (_name(subject), key) if issuer is None else (issuer[0].subject, issuer[1])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), False
        )
        .add_extension(_key_usage(signs_certificates=issuer is None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                False,
            )
        )
    return builder.sign(signing_key, hashes.SHA256())


def _write_pem(path: Path, certificate: x509.Certificate) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("VendHub test fleet CA", ca_key, None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    keyfile = folder / "server.key"
    keyfile.touch(mode=0o600)
    keyfile.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    return Authority(
        ca=_write_pem(folder / "ca.pem", ca),
        certfile=_write_pem(
            folder / "server.pem", _certificate("127.0.0.1", server_key, (ca, ca_key))
        ),
        keyfile=keyfile,
        stranger_ca=_write_pem(
            folder / "stranger-ca.pem", _certificate("Someone else's CA", stranger_key, None)
        ),
    )


# ---- the fleet's credentials, its broker, the two hubs --------------------------------------


@dataclass(frozen=True)
class Credentials:
    """The fleet hub's configuration folder, where the credentials were issued, and the two
    passwords it printed (only the hashes are stored)."""

    fleet_folder: Path
    hub_password: str
    machine_password: str


@pytest.fixture
def credentials(tmp_path: Path) -> Credentials:
    folder = tmp_path / "fleet"
    folder.mkdir()
    username, machine_password = add_machine(folder, MACHINE_ID)
    assert username == MACHINE_ID
    hub_password = ensure_hub_user(folder)
    assert hub_password is not None
    return Credentials(folder, hub_password, machine_password)


@pytest.fixture
def secure_broker(
    tmp_path: Path, authority: Authority, credentials: Credentials, prefix: str
) -> Iterator[Mosquitto]:
    """Mosquitto as docs/mosquitto.md configures it: TLS, no anonymous clients, the hub's
    password file and ACL, and a client id that is always the user's name."""
    password_file, acl_file = write_mosquitto_files(
        credentials.fleet_folder, tmp_path / "mosquitto-files", prefix=prefix
    )
    mosquitto = Mosquitto(
        tmp_path / "broker",
        allow_anonymous=False,
        password_file=password_file,
        acl_file=acl_file,
        certfile=authority.certfile,
        keyfile=authority.keyfile,
        cafile=authority.ca,
    )
    with mosquitto.config.open("a") as conf:
        conf.write("use_username_as_clientid true\n")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


def secure_link_config(
    broker: Mosquitto, prefix: str, hub_password: str, ca_certs: Path
) -> dict[str, Any]:
    """``link_config``'s ``mqtt:`` block with the hub's user and TLS in its ``broker:`` (which
    ``link_config`` cannot take: its own first argument is named ``broker``)."""
    raw = {
        "broker": {
            "host": "127.0.0.1",
            "port": broker.port,
            "username": HUB_USERNAME,
            "password": hub_password,
            "tls": {"ca_certs": str(ca_certs)},
        },
        "topic_prefix": prefix,
        "keepalive": 5,
        "command_timeout": 2,
    }
    return vendhub_config_schema()(raw)


@pytest.fixture
async def secure_fleet(
    secure_broker: Mosquitto, credentials: Credentials, authority: Authority, prefix: str
) -> AsyncIterator[Fleet]:
    """The fleet hub: its MQTT link logs in as ``vendhub-hub`` over TLS, checking the CA."""
    folder = credentials.fleet_folder
    hub = await make_hub(folder)
    recorder = await start_recorder(hub, folder, commit_interval=0.1)
    config = secure_link_config(secure_broker, prefix, credentials.hub_password, authority.ca)
    runtime = await start_link(hub, config)
    yield Fleet(hub, runtime, recorder)
    await stop_hub(hub)


SecureMachineStarter = Callable[..., Awaitable[MachineHub]]


def machine_configuration(port: int, prefix: str, ca_certs: Path | None) -> str:
    """The uplink tests' machine hub, linked by ``mqtts://`` with the machine's user and its
    password from secrets.yaml, and (unless None) ``tls: {ca_certs: ...}``."""
    plain = MACHINE_CONFIGURATION.format(port=port, prefix=prefix)
    assert plain.count("  broker: mqtt://") == 1 and plain.endswith("  keepalive: 5\n")
    uplink = plain.replace("  broker: mqtt://", "  broker: mqtts://")
    uplink += f"  username: {MACHINE_ID}\n  password: !secret {SECRET_NAME}\n"
    if ca_certs is not None:
        uplink += f"  tls:\n    ca_certs: {ca_certs}\n"
    return uplink


@pytest.fixture
async def start_machine_hub(
    tmp_path: Path, secure_broker: Mosquitto, prefix: str
) -> AsyncIterator[SecureMachineStarter]:
    """``await start_machine_hub(password=..., ca_certs=...)`` starts the machine hub."""
    folder = tmp_path / "machine"
    folder.mkdir()
    running: list[Hub] = []

    async def start(*, password: str, ca_certs: Path | None) -> MachineHub:
        (folder / "configuration.yaml").write_text(
            machine_configuration(secure_broker.port, prefix, ca_certs)
        )
        (folder / "secrets.yaml").write_text(f"{SECRET_NAME}: {json.dumps(password)}\n")
        return await start_machine_hub_in(folder, running)

    yield start
    await stop_machine_hubs(running)


@pytest.fixture
def secure_machine_hub(
    start_machine_hub: SecureMachineStarter, credentials: Credentials, authority: Authority
) -> MachineStarter:
    """The machine hub as it should be set up: its own password and the fleet's CA."""
    return partial(start_machine_hub, password=credentials.machine_password, ca_certs=authority.ca)


# ---- what the tests read in the log ---------------------------------------------------------


def agent_lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    """The messages at ``level`` about the machine's link that contain ``text``."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == level
        and record.getMessage().startswith(f"Machine {MACHINE_ID}")
        and text in record.getMessage()
    ]


async def another_failed_attempt(caplog: pytest.LogCaptureFixture) -> None:
    """Wait until the agent has failed to connect once more than it had so far (it retries
    after 0.5 s, then after up to twice as long each time)."""

    def retries() -> int:
        return len(agent_lines(caplog, logging.INFO, "still no connection"))

    before = retries()
    await until(lambda: retries() > before, timeout=10)


def assert_nothing_reached_the_fleet(fleet: Fleet, machine: MachineHub) -> None:
    agent = machine.link.agent
    assert agent.stats.connections == 0 and not agent.connected
    assert agent.pending == 1  # the sale waits in the outbox
    assert fleet.runtime.directory.get(MACHINE_ID) is None  # no announce, no status
    assert fleet.hub.states.get(f"machine.{MACHINE_ID}") is None
    assert fleet.vends() == []


# ---- the tests -------------------------------------------------------------------------------


async def test_the_broker_takes_only_tls_with_a_password_and_keeps_users_to_their_topics(
    secure_broker: Mosquitto, credentials: Credentials, authority: Authority, prefix: str
) -> None:
    """The broker the other tests rely on: what gets through it is authenticated and allowed."""
    port = secure_broker.port
    tls = ssl.create_default_context(cafile=authority.ca)
    machine = {"username": MACHINE_ID, "password": credentials.machine_password}
    with pytest.raises(aiomqtt.MqttError):  # the right password, but in the clear
        async with aiomqtt.Client("127.0.0.1", port, timeout=3, **machine):
            pass
    with pytest.raises(MqttCodeError, match="Not authorized"):
        async with aiomqtt.Client("127.0.0.1", port, tls_context=tls, timeout=3):
            pass

    async with (
        aiomqtt.Client(
            "127.0.0.1",
            port,
            username=HUB_USERNAME,
            password=credentials.hub_password,
            tls_context=tls,
            timeout=3,
        ) as hub,
        aiomqtt.Client("127.0.0.1", port, tls_context=tls, timeout=3, **machine) as lobby,
    ):
        await hub.subscribe(f"{prefix}/#")
        # lobby_1's user may not speak for another machine: Mosquitto drops that publish.
        await lobby.publish(f"{prefix}/lobby_2/telemetry", b"forged")
        await lobby.publish(f"{prefix}/{MACHINE_ID}/telemetry", b"own")
        first = await anext(aiter(hub.messages))
    assert (str(first.topic), first.payload) == (f"{prefix}/{MACHINE_ID}/telemetry", b"own")


async def test_a_vend_on_the_machine_hub_is_in_the_fleet_ledger_once_over_tls(
    secure_fleet: Fleet,
    secure_machine_hub: MachineStarter,
    credentials: Credentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fleet = secure_fleet
    machine = await secure_machine_hub()
    await machine.link.agent.wait_connected(10)
    assert machine.link.agent.username == MACHINE_ID
    await fleet.adopt()
    await until(lambda: fleet.state(f"slot.{MACHINE_ID}_a1") == "5")
    assert fleet.attributes(f"slot.{MACHINE_ID}_a1")["price"] == 150

    session = await machine.buy("A1")
    assert session["state"] == "completed"
    await until(lambda: len(fleet.vends()) == 1, timeout=10)
    await machine.link.agent.wait_drained(10)
    row = fleet.vends()[0]
    assert (row.source_event_id, row.slot_code, row.product, row.price, row.outcome) == (
        session["session_id"],
        "A1",
        "Cola",
        150,
        "completed",
    )
    (payment,) = fleet.payments()
    assert (payment.provider_reference, payment.amount) == (
        session["authorization"]["reference"],
        150,
    )
    await until(lambda: fleet.state(f"slot.{MACHINE_ID}_a1") == "4")
    assert len(fleet.vends()) == 1
    assert machine.link.agent.stats.connections == 1  # one TLS session did it all
    assert credentials.machine_password not in caplog.text
    assert credentials.hub_password not in caplog.text


async def test_a_price_change_from_the_fleet_reaches_the_engine_and_is_confirmed_over_tls(
    secure_fleet: Fleet, secure_machine_hub: MachineStarter
) -> None:
    fleet = secure_fleet
    machine = await linked(fleet, secure_machine_hub)
    engine = machine.link.engine

    answer = await fleet.hub.services.async_call(
        "mqtt",
        "publish_config",
        {"machine_id": MACHINE_ID, "slots": {"A1": {"price": 170, "product": "Cola Zero"}}},
    )
    assert answer["version"] == 2
    await until(lambda: engine.machine.planogram["A1"].price == 170, timeout=10)
    # config_applied came back through the machine user's ACL (its cmd_result/event topics).
    await until(lambda: fleet.attributes(f"machine.{MACHINE_ID}")["config_applied_version"] == 2)
    assert fleet.attributes(f"machine.{MACHINE_ID}")["config_pending"] is False
    slot = fleet.attributes(f"slot.{MACHINE_ID}_a1")
    assert slot["config_pending"] is False and "pending_price" not in slot
    local = machine.hub.states.get(f"slot.{MACHINE_ID}_a1")
    assert local is not None
    assert (local.attributes["price"], local.attributes["product"]) == (170, "Cola Zero")

    session = await machine.buy("A1")
    assert (session["price"], session["product"]) == (170, "Cola Zero")
    await until(lambda: len(fleet.vends()) == 1, timeout=10)
    assert fleet.vends()[0].price == 170


async def test_a_machine_hub_with_a_wrong_password_is_refused_clearly_and_sends_nothing(
    secure_fleet: Fleet,
    start_machine_hub: SecureMachineStarter,
    secure_broker: Mosquitto,
    credentials: Credentials,
    authority: Authority,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_password = credentials.machine_password[::-1]
    machine = await start_machine_hub(password=wrong_password, ca_certs=authority.ca)
    assert machine.link.agent.password == wrong_password  # from secrets.yaml

    (refusal,) = await until(
        lambda: agent_lines(caplog, logging.ERROR, "refused its credentials"), timeout=10
    )
    assert f"MQTT user '{MACHINE_ID}'" in refusal and "the password is wrong" in refusal
    session = await machine.buy("A1")
    assert session["state"] == "completed"  # the machine sells on without the fleet
    await another_failed_attempt(caplog)
    await another_failed_attempt(caplog)

    assert_nothing_reached_the_fleet(secure_fleet, machine)
    # The broker received the CONNECT over TLS and refused it.
    assert "disconnected, not authorised" in secure_broker.log_tail(size=1_000_000)
    # Said once, as an error; the retries are quiet.
    assert len(agent_lines(caplog, logging.ERROR, "refused its credentials")) == 1
    assert wrong_password not in caplog.text
    assert credentials.machine_password not in caplog.text


@pytest.mark.parametrize(
    "ca_certs",
    [None, "stranger"],
    ids=["without-a-tls-block-only-system-cas", "with-another-ca"],
)
async def test_a_machine_hub_that_cannot_verify_the_broker_does_not_connect_or_send(
    secure_fleet: Fleet,
    start_machine_hub: SecureMachineStarter,
    secure_broker: Mosquitto,
    credentials: Credentials,
    authority: Authority,
    caplog: pytest.LogCaptureFixture,
    ca_certs: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    machine = await start_machine_hub(
        password=credentials.machine_password,
        ca_certs=None if ca_certs is None else authority.stranger_ca,
    )

    # Said once, as an error that names the fix; the retries are quiet.
    (failure,) = await until(
        lambda: agent_lines(caplog, logging.ERROR, "cannot connect"), timeout=10
    )
    assert f"127.0.0.1:{secure_broker.port}" in failure
    assert "certificate verify failed" in failure, failure
    assert "tls: ca_certs" in failure
    session = await machine.buy("A1")
    assert session["state"] == "completed"
    await another_failed_attempt(caplog)

    assert_nothing_reached_the_fleet(secure_fleet, machine)
    assert len(agent_lines(caplog, logging.ERROR, "cannot connect")) == 1
    assert agent_lines(caplog, logging.ERROR, "refused its credentials") == []
    # The machine hung up in the TLS handshake, before a CONNECT could carry its password: the
    # broker neither let lobby_1 in nor refused its credentials (as it does in the test above).
    broker_log = secure_broker.log_tail(size=1_000_000)
    assert "alert unknown ca" in broker_log
    assert f"u'{MACHINE_ID}'" not in broker_log and "not authorised" not in broker_log
    assert credentials.machine_password not in caplog.text
