"""The embedded MQTT broker: amqtt in the hub's process, for the quick start and small fleets.

With no ``broker:`` in the ``mqtt:`` block the hub runs this broker and connects to it as
``vendhub-hub``, with a password issued afresh at every start (the store keeps only hashes).
Machines log in with the credentials of ``vendhub machine add`` and keep to their own topics
(``broker_plugins``). amqtt speaks MQTT 3.1.1 only, so the hub's client uses 3.1.1 here.

The listener's port is a setting. Left unset it is 1883, or the next free port when something
(typically a system Mosquitto) listens there already; that is said in one warning line. A port
that is set and taken makes the MQTT link fail with one error line saying what to change; the
rest of the hub runs.

The broker is ``guarded_broker.GuardedBroker``: amqtt with the gaps closed that matter when
machines must not trust each other. Logins the hub's credential store no longer accepts
(``vendhub machine remove``, ``--rotate``) are disconnected within ``CREDENTIAL_CHECK_INTERVAL``.

amqtt keeps retained messages and sessions in memory only; ``async_restart`` carries the
retained messages over a restart (as Mosquitto's persistence would). Across a hub restart they
are gone: the hub publishes every adopted machine's config again on connect, and machines
announce themselves on every connect anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from amqtt.contexts import BrokerConfig, ListenerConfig, ListenerType

from vendhub.core.errors import VendHubError
from vendhub.helpers.storage import StorageError, Store
from vendhub.machine.broker_address import STORAGE_KEY, STORAGE_VERSION, BrokerListeners
from vendhub.machine.credentials import HUB_USERNAME
from vendhub.util.dt import utcnow

from .broker_plugins import (
    AUTH_PLUGIN,
    TOPIC_PLUGIN,
    AccessPolicy,
    CredentialChecker,
    TopicRules,
)
from .guarded_broker import GuardedBroker
from .schema import DEFAULT_EMBEDDED_PORT, MQTT_V311, BrokerSettings

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT = 2.0  # seconds amqtt may take to close its listeners and clients

CREDENTIAL_CHECK_INTERVAL: Final = 5.0
"""Seconds between looks at the credential store for removed or rotated logins."""
FALLBACK_PORTS: Final = 16
"""With no port set and 1883 taken, the ports after it that are tried, in order."""
WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", ""})
AMQTT_LOGGERS: Final = ("amqtt", "transitions")


class EmbeddedBrokerError(VendHubError):
    """The embedded broker cannot start; the message says what to change."""


# ---- settings --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbeddedBrokerSettings:
    """The ``embedded_broker:`` block, validated."""

    host: str
    port: int | None  # None: DEFAULT_EMBEDDED_PORT, or a free one after it
    session_expiry: int
    tls_host: str | None = None
    tls_port: int | None = None  # a TLS listener only when set
    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EmbeddedBrokerSettings:
        block = config["embedded_broker"]
        tls = block.get("tls") or {}
        return cls(
            host=block["host"],
            port=block.get("port"),
            session_expiry=int(config["session_expiry"]),
            tls_host=tls.get("host", block["host"]) if tls else None,
            tls_port=tls.get("port"),
            certfile=tls.get("certfile"),
            keyfile=tls.get("keyfile"),
            cafile=tls.get("cafile"),
        )


# ---- the broker the hub runs -----------------------------------------------------------


@contextlib.contextmanager
def _quiet_amqtt_start_failure() -> Iterator[None]:
    """Keep amqtt's traceback of a failed start out of the log: the error says it in one line."""

    def drop(record: logging.LogRecord) -> bool:
        return record.getMessage() != "Broker startup failed"

    broker_logger = logging.getLogger("amqtt.broker")
    broker_logger.addFilter(drop)
    try:
        yield
    finally:
        broker_logger.removeFilter(drop)


def _quiet_amqtt_logs() -> None:
    """amqtt logs every connection at INFO; keep it to warnings unless the hub logs debug."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    for name in AMQTT_LOGGERS:
        library = logging.getLogger(name)
        if library.level == logging.NOTSET:
            library.setLevel(logging.WARNING)


def _bind_address(host: str, port: int) -> str:
    return f"{host}:{port}"


async def _bind_error(host: str, port: int) -> OSError | None:
    """What binding ``host:port`` (as amqtt will) fails with now, or None if it works."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as error:
        return error
    for family, kind, proto, _name, address in infos:
        probe = socket.socket(family, kind, proto)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
        except OSError as error:
            return error
        finally:
            probe.close()
    return None


def _port_taken(error: OSError) -> bool:
    return error.errno == errno.EADDRINUSE


def _fixes(port: int) -> str:
    suggestion = port + 1 if port < 65535 else 1884
    return (
        f"choose another port with 'mqtt: embedded_broker: port: {suggestion}', or use the "
        "broker that listens there with 'mqtt: broker:' (see docs/mosquitto.md)"
    )


def _listen_error(listener: str, host: str, port: int, error: OSError) -> EmbeddedBrokerError:
    if _port_taken(error):
        return EmbeddedBrokerError(
            f"the embedded MQTT broker cannot listen on {host}:{port} ({listener}): the port is "
            f"taken, probably by another MQTT broker such as a system Mosquitto; {_fixes(port)}"
        )
    if error.errno == errno.EACCES:
        return EmbeddedBrokerError(
            f"the embedded MQTT broker may not listen on {host}:{port} ({listener}): ports "
            "below 1024 need root; choose a port of 1024 or more with 'mqtt: embedded_broker: "
            "port:'"
        )
    return EmbeddedBrokerError(
        f"the embedded MQTT broker cannot listen on {host}:{port} ({listener}): "
        f"{error.strerror or error}; check 'mqtt: embedded_broker: host:' (an IPv4 address of "
        "this computer, or 0.0.0.0 for all)"
    )


class EmbeddedBroker:
    """The amqtt broker the hub runs when no external broker is configured."""

    def __init__(self, hub: Hub, settings: EmbeddedBrokerSettings, prefix: str) -> None:
        self.hub = hub
        self.settings = settings
        self.policy = AccessPolicy(TopicRules(prefix), CredentialChecker(hub))
        self.port: int | None = None  # the plain listener's, once started
        self._broker: GuardedBroker | None = None
        self._watch: asyncio.Task[None] | None = None
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self._broker is not None

    @property
    def connect_host(self) -> str:
        """Where the hub's own client connects: loopback when the listener is on every address."""
        return "127.0.0.1" if self.settings.host in WILDCARD_HOSTS else self.settings.host

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port if self.port is not None else '?'}"

    def hub_settings(self, config: dict[str, Any], password: str) -> BrokerSettings:
        """How the hub's client reaches this broker: the plain listener, as ``vendhub-hub``."""
        if self.port is None:
            raise RuntimeError("the embedded broker is not started")
        self.policy.checker.accept_own_login(HUB_USERNAME, password)
        return BrokerSettings(
            host=self.connect_host,
            port=self.port,
            client_id=config["client_id"],
            keepalive=config["keepalive"],
            session_expiry=int(config["session_expiry"]),
            username=HUB_USERNAME,
            password=password,
            protocol_version=MQTT_V311,
        )

    def connected_clients(self) -> list[str]:
        """The usernames of the clients connected now (for diagnostics and tests)."""
        if self._broker is None:
            return []
        return sorted(
            str(session.username)
            for session, _handler in self._broker.sessions.values()
            if session.transitions.state == "connected"
        )

    # ---- start and stop ------------------------------------------------------------------

    async def async_start(self) -> None:
        """Listen (on the first free port when none is set); EmbeddedBrokerError says why not."""
        _quiet_amqtt_logs()
        settings = self.settings
        if settings.tls_port is not None:
            assert settings.tls_host is not None
            error = await _bind_error(settings.tls_host, settings.tls_port)
            if error is not None:
                raise _listen_error("TLS listener", settings.tls_host, settings.tls_port, error)
        if settings.port is not None:
            error = await _bind_error(settings.host, settings.port)
            if error is not None:
                raise _listen_error("listener", settings.host, settings.port, error)
            port = settings.port
        else:
            port = await self._async_free_default_port()
        await self._async_listen(port)
        await self._async_remember_listeners(port)
        tls = (
            f", TLS on {settings.tls_host}:{settings.tls_port}"
            if settings.tls_port is not None
            else ""
        )
        _LOGGER.info(
            "Embedded MQTT broker (amqtt, MQTT 3.1.1) listening on %s:%d%s; machines log in "
            "with the credentials 'vendhub machine add' prints",
            settings.host,
            port,
            tls,
        )

    async def _async_remember_listeners(self, port: int) -> None:
        """Keep the ports for ``vendhub machine add`` (``vendhub.machine.broker_address``)."""
        listeners = BrokerListeners(
            port, self.settings.tls_port, utcnow().isoformat(timespec="seconds")
        )
        store: Store[dict[str, Any]] = Store(self.hub, STORAGE_KEY, STORAGE_VERSION)
        try:
            await store.async_save(listeners.as_data())
        except StorageError as error:  # the broker runs; only the command line's hint is old
            _LOGGER.warning("Could not note the embedded MQTT broker's port: %s", error)

    async def _async_free_default_port(self) -> int:
        host = self.settings.host
        error = await _bind_error(host, DEFAULT_EMBEDDED_PORT)
        if error is None:
            return DEFAULT_EMBEDDED_PORT
        if not _port_taken(error):
            raise _listen_error("listener", host, DEFAULT_EMBEDDED_PORT, error)
        last = min(DEFAULT_EMBEDDED_PORT + FALLBACK_PORTS, 65535)
        for port in range(DEFAULT_EMBEDDED_PORT + 1, last + 1):
            if port == self.settings.tls_port:
                continue
            if await _bind_error(host, port) is None:
                _LOGGER.warning(
                    "MQTT port %d is taken on %s (probably by another MQTT broker, such as a "
                    "system Mosquitto), so the embedded broker listens on port %d: point machines "
                    "at port %d, or choose the port with 'mqtt: embedded_broker: port: %d', or use "
                    "the broker on %d with 'mqtt: broker:' (see docs/mosquitto.md)",
                    DEFAULT_EMBEDDED_PORT,
                    host,
                    port,
                    port,
                    port,
                    DEFAULT_EMBEDDED_PORT,
                )
                return port
        raise EmbeddedBrokerError(
            f"the embedded MQTT broker cannot listen on {host}: port {DEFAULT_EMBEDDED_PORT} "
            f"and the {last - DEFAULT_EMBEDDED_PORT} ports after it are taken; "
            f"{_fixes(DEFAULT_EMBEDDED_PORT)}"
        )

    def _amqtt_config(self, port: int) -> BrokerConfig:
        settings = self.settings
        listeners = {
            "default": ListenerConfig(
                type=ListenerType.TCP, bind=_bind_address(settings.host, port)
            )
        }
        if settings.tls_port is not None:
            assert settings.tls_host is not None
            listeners["tls"] = ListenerConfig(
                type=ListenerType.TCP,
                bind=_bind_address(settings.tls_host, settings.tls_port),
                ssl=True,
                certfile=settings.certfile,
                keyfile=settings.keyfile,
                cafile=settings.cafile,
            )
        return BrokerConfig(
            listeners=listeners,
            session_expiry_interval=settings.session_expiry,
            plugins={
                AUTH_PLUGIN: {"policy": self.policy},
                TOPIC_PLUGIN: {"policy": self.policy},
            },
        )

    async def _async_listen(self, port: int) -> None:
        broker = GuardedBroker(self._amqtt_config(port), self.policy)
        try:
            with _quiet_amqtt_start_failure():
                await broker.start()
        except Exception as error:
            for server in broker._servers.values():  # a listener opened before another failed
                with contextlib.suppress(Exception):
                    await server.close_instance()
            cause = error.__cause__
            if isinstance(cause, OSError):
                raise _listen_error("listener", self.settings.host, port, cause) from None
            raise EmbeddedBrokerError(
                f"the embedded MQTT broker did not start on {self.settings.host}:{port}: "
                f"{cause or error}"
            ) from None
        self._broker, self.port = broker, port
        if self._watch is None:
            self._watch = asyncio.create_task(
                self._async_watch_credentials(), name="embedded MQTT broker: credentials"
            )

    async def async_stop(self) -> None:
        """Close the listeners and every client's connection; forget sessions and retained."""
        broker, self._broker = self._broker, None
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if broker is not None:
            # amqtt's shutdown waits on every client connection: bound it, the hub's stop is.
            try:
                await asyncio.wait_for(broker.shutdown(), SHUTDOWN_TIMEOUT)
            except TimeoutError:
                _LOGGER.warning(
                    "Embedded MQTT broker on %s did not stop within %.0f s; left behind",
                    self.address,
                    SHUTDOWN_TIMEOUT,
                )
                return
            _LOGGER.info("Embedded MQTT broker on %s stopped", self.address)

    async def _async_watch_credentials(self) -> None:
        """Cut off clients whose login stopped being valid ('machine remove', '--rotate').

        As Mosquitto does when it reloads its password file: they may log in again only with
        valid credentials.
        """
        checker = self.policy.checker
        while True:
            await asyncio.sleep(CREDENTIAL_CHECK_INTERVAL)
            broker = self._broker
            if broker is None or not checker.changed:
                continue
            try:
                await broker.async_cut_off_invalid_logins()
            except Exception:
                _LOGGER.exception("Checking the connected MQTT clients' logins failed")

    async def async_restart(self, pause: float = 0.0) -> None:
        """Stop, wait ``pause`` seconds, start again on the same port, keeping retained messages.

        Connected clients lose their connection and their sessions (amqtt keeps none across
        its own restart); the hub and machine agents reconnect by themselves, and the agents'
        outboxes send again whatever the hub had not acknowledged.
        """
        broker, port = self._broker, self.port
        if broker is None or port is None:
            raise RuntimeError("the embedded broker is not running")
        retained = [
            (message.topic, bytes(message.data), message.qos)
            for message in broker.retained_messages.values()
        ]
        await self.async_stop()
        if pause > 0:
            await asyncio.sleep(pause)
        await self._async_listen(port)
        assert self._broker is not None
        for topic, data, qos in retained:
            await self._broker.retain_message(None, topic, data, qos)
        self.restarts += 1
        _LOGGER.warning(
            "Embedded MQTT broker restarted on %s with %d retained messages; clients reconnect",
            self.address,
            len(retained),
        )
