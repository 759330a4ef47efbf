"""The machine agent: one machine's side of the machine protocol over MQTT.

``MachineAgent`` keeps one machine connected to the fleet hub through a broker, and makes a
flaky link invisible to the code that uses it:

- it connects with MQTT v5, clean start off and a session expiry, so the broker keeps its
  subscriptions and queues acks, commands and config while it is away; its last will is a
  retained ``offline`` status;
- on every connection it subscribes to its ``config``, ``cmd/+`` and ``ack`` topics, publishes
  a retained ``online`` status (with this connection's session id) and its retained
  ``announce``, and sends every event still waiting in the outbox;
- ``publish_event`` stores the event in the on-disk outbox first, then publishes it at QoS 1;
  an event is resent after every reconnect and, while connected, after ``resend_after``
  seconds, then twice as long after each further send (at most ``max_resend_after``), until
  an ``ack`` names it;
- ``telemetry`` publishes readings (QoS 0, not stored), adding the agent's health: uptime,
  free disk beside the outbox, error count, software version. Events and telemetry share
  one ``seq`` counter, as the protocol says; the events' numbers are kept in the outbox;
- commands go, in order, to the ``command_handler`` (``ping`` is answered by the agent); the
  result, or the error, is published on ``cmd_result`` under the command's correlation id. A
  repeated id is answered with the first result without running it again; a command older
  than ``command_max_age`` is refused as ``expired``;
- each connection has its own ``session`` id, carried by its online status and its will;
- ``config`` goes to ``on_config`` and the last one is kept in ``config``; once applied, the
  agent confirms it with a ``config_applied`` event (through the outbox, like any event),
  carrying what ``on_config`` rejected, if anything (``confirm_configs=False``: an agent
  that never confirms, as agents before this addition to the protocol);
- a lost connection is retried with exponential backoff and jitter, each attempt logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import shutil
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from vendhub.const import __version__
from vendhub.machine import protocol
from vendhub.machine.outbox import Outbox
from vendhub.machine.protocol import (
    COMMAND_PING,
    DEFAULT_PREFIX,
    EVENT_CONFIG_APPLIED,
    KIND_ACK,
    KIND_ANNOUNCE,
    KIND_COMMAND_RESULT,
    KIND_CONFIG,
    KIND_EVENT,
    KIND_STATUS,
    KIND_TELEMETRY,
    PROTOCOL_VERSION,
    STATUS_OFFLINE,
    STATUS_ONLINE,
    ProtocolError,
)
from vendhub.util.tasks import async_cancel_and_wait

_LOGGER = logging.getLogger(__name__)

CommandHandler = Callable[[str, dict[str, Any]], Any]
"""``(name, args) -> result``: a dict (or None), or an awaitable of one; raising answers
``ok: false`` with the exception's message."""
ConfigHandler = Callable[[dict[str, Any]], Any]
"""Called with each new ``config`` message (validated, times as datetimes); may be async.
It may return ``{"rejected": {"mode" or "slots.<code>": reason}}`` for the parts it could not
apply; raising rejects the whole config (``{"config": reason}``)."""

DEFAULT_RESEND_AFTER = 10.0
DEFAULT_MAX_RESEND_AFTER = 3600.0
DEFAULT_COMMAND_MAX_AGE = 300.0  # seconds; an older command is refused as "expired"
DEFAULT_KEEPALIVE = 30
DEFAULT_SESSION_EXPIRY = 7 * 86400  # seconds the broker keeps our session while we are away
DEFAULT_BACKOFF_MIN = 0.5
DEFAULT_BACKOFF_MAX = 30.0
DEFAULT_COMMAND_TIMEOUT = 30.0
SEQ_COUNTER = "seq"
RESEND_BATCH = 200  # events published per round; a long backlog goes out in several rounds
OPERATION_TIMEOUT = 10.0  # seconds to wait for a connack, suback or puback
STOP_TIMEOUT = 5.0
CANCEL_TIMEOUT = 2.0  # seconds a task has to end once cancelled, at stop (twice at most)
_RESULT_MEMORY = 256  # correlation ids whose results are remembered to answer a repeat


class CommandError(Exception):
    """Raised by a command handler to refuse a command; its message is sent as the error."""


class UnknownCommand(CommandError):
    """The machine has no such command."""


@dataclass(slots=True)
class AgentStats:
    """What the agent did since it started (for logs, health and tests)."""

    connections: int = 0
    events_stored: int = 0  # new events put in the outbox
    events_published: int = 0  # event publishes, resends included
    events_resent: int = 0  # publishes of an event that had been published before
    events_acked: int = 0  # outbox rows an ack settled
    telemetry_sent: int = 0
    telemetry_dropped: int = 0  # readings that came while offline (telemetry is not kept)
    commands: int = 0
    commands_failed: int = 0
    configs: int = 0
    errors: int = 0  # bad messages received, failing handlers, lost connections


@dataclass(frozen=True, slots=True)
class _Command:
    name: str
    id: str
    args: dict[str, Any]
    problem: str | None = None  # why the command message was refused
    sent_at: datetime | None = None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class MachineAgent:
    """One machine's link to the hub over MQTT, with a durable outbox for its events.

    Use ``await agent.start()`` … ``await agent.stop()`` or ``async with agent:``.
    """

    def __init__(
        self,
        machine_id: str,
        *,
        broker_host: str,
        broker_port: int = 1883,
        username: str | None = None,
        password: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        outbox_path: str | Path,
        announce: Mapping[str, Any],
        resend_after: float = DEFAULT_RESEND_AFTER,
        max_resend_after: float = DEFAULT_MAX_RESEND_AFTER,
        keepalive: int = DEFAULT_KEEPALIVE,
        command_handler: CommandHandler | None = None,
        on_config: ConfigHandler | None = None,
        session_expiry: int = DEFAULT_SESSION_EXPIRY,
        backoff_min: float = DEFAULT_BACKOFF_MIN,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        command_max_age: float = DEFAULT_COMMAND_MAX_AGE,
        tls: bool | ssl.SSLContext = False,
        software_version: str = __version__,
        client_id: str | None = None,
        mqtt_v311: bool = False,
        confirm_configs: bool = True,
    ) -> None:
        if not protocol.is_machine_id(machine_id):
            raise ValueError(
                f"invalid machine id {machine_id!r}: expected 1 to 64 lowercase letters a-z, "
                "digits and '_'"
            )
        if resend_after <= 0 or keepalive <= 0:
            raise ValueError("resend_after and keepalive must be positive")
        self.machine_id = machine_id
        self.broker_host = broker_host
        self.broker_port = int(broker_port)
        self.username = username
        self.password = password
        self.prefix = prefix
        self.resend_after = float(resend_after)
        self.max_resend_after = max(float(max_resend_after), self.resend_after)
        self.keepalive = int(keepalive)
        self.command_handler = command_handler
        self.on_config = on_config
        self.confirm_configs = confirm_configs
        self.session_expiry = int(session_expiry)
        self.backoff_min = float(backoff_min)
        self.backoff_max = float(backoff_max)
        self.command_timeout = float(command_timeout)
        self.command_max_age = float(command_max_age)
        self.software_version = software_version
        self.client_id = client_id or f"{prefix.replace('/', '-')}-machine-{machine_id}"
        self.mqtt_v311 = mqtt_v311  # else MQTT 5, falling back to 3.1.1 if the broker refuses it
        self._tls_context: ssl.SSLContext | None = None
        if isinstance(tls, ssl.SSLContext):
            self._tls_context = tls
        elif tls:
            self._tls_context = ssl.create_default_context()
        self.outbox_path = Path(outbox_path)
        self.outbox = Outbox(self.outbox_path)
        self.announce = self._announce_message(announce)
        self.config: dict[str, Any] | None = None
        self.session = uuid.uuid4().hex
        self.stats = AgentStats()
        self._topics = {kind: protocol.topic(machine_id, kind, prefix) for kind in _OWN_KINDS}
        self._command_prefix = f"{prefix}/{machine_id}/cmd/"
        self._started_monotonic = time.monotonic()
        self._seq = self.outbox.counter(SEQ_COUNTER)  # shared by events and telemetry
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._kick = asyncio.Event()  # new events wait in the outbox
        self._drained = asyncio.Event()  # the outbox is empty
        self._commands: asyncio.Queue[_Command] = asyncio.Queue()
        self._results: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._unsent_results: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._pending_at_close = 0
        if self.outbox.count() == 0:
            self._drained.set()

    # ---- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting (in the background) and serving commands."""
        if self._tasks:
            raise RuntimeError(f"agent {self.machine_id} is already started")
        self._started_monotonic = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._connection_loop(), name=f"agent {self.machine_id} link"),
            asyncio.create_task(self._command_worker(), name=f"agent {self.machine_id} commands"),
        ]

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Publish a retained ``offline`` status (when connected), disconnect, close the outbox."""
        if self._closed:
            return
        self._stopping.set()
        link = self._tasks[0] if self._tasks else None
        if link is not None:
            try:
                await asyncio.wait_for(asyncio.shield(link), timeout)
            except TimeoutError:
                _LOGGER.warning(
                    "Machine %s: no clean disconnect within %.0f s", self.machine_id, timeout
                )
            except Exception:  # already logged by the loop
                pass
        for task in self._tasks:
            if not await async_cancel_and_wait(task, CANCEL_TIMEOUT):
                _LOGGER.error(
                    "Machine %s: %s did not end when cancelled twice; left behind",
                    self.machine_id,
                    task.get_name(),
                )
        self._tasks = []
        self._pending_at_close = self.outbox.count()
        self._closed = True
        self.outbox.close()

    async def __aenter__(self) -> MachineAgent:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    @property
    def pending(self) -> int:
        """How many events await acknowledgement (as at ``stop`` once stopped)."""
        return self._pending_at_close if self._closed else self.outbox.count()

    @property
    def connected(self) -> bool:
        """True while the agent is connected and has announced itself."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until connected (raises ``TimeoutError`` after ``timeout`` seconds)."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_drained(self, timeout: float | None = None) -> None:
        """Wait until every stored event is acknowledged."""
        await asyncio.wait_for(self._drained.wait(), timeout)

    # ---- what the machine says -----------------------------------------------------------

    def prepare_event(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The protocol ``event`` message for ``message`` (without its ``seq`` yet).

        Accepts the virtual machine's messages (a ``type`` key, no ``v``): fills in ``v``, a
        fresh ``id`` and ``ts`` when missing, and validates the result, so an event the hub
        would refuse (and so never acknowledge) never enters the outbox. Raises
        ``ProtocolError``.
        """
        event = {key: value for key, value in message.items() if key not in ("type", "seq")}
        event["v"] = PROTOCOL_VERSION
        event.setdefault("id", protocol.new_id())
        event.setdefault("ts", _now_iso())
        event.setdefault("data", {})
        protocol.validate(KIND_EVENT, {**event, "seq": 0})
        return event

    async def publish_event(self, message: Mapping[str, Any]) -> bool:
        """Store an event durably, then publish it at QoS 1; False when its id was stored
        before (then nothing is sent again). See ``publish_events``."""
        return bool(await self.publish_events([message]))

    async def publish_events(self, messages: Iterable[Mapping[str, Any]]) -> int:
        """Store events in the outbox (one transaction), then hand them to the sender.

        Each gets the machine's next ``seq``; an event whose id is already stored is
        ignored. Returns how many were new. The events are on disk when this returns; they
        are published as soon as the link is up and resent until acknowledged. Raises
        ``ProtocolError`` for an invalid event (then none is stored).
        """
        events = [self.prepare_event(message) for message in messages]
        stored = self.outbox.put_numbered(events, counter=SEQ_COUNTER, after=self._seq)
        if stored:
            self._seq = stored[-1]["seq"]
            self.stats.events_stored += len(stored)
            self._drained.clear()
            self._kick.set()
        return len(stored)

    async def telemetry(self, readings: Mapping[str, Any], ts: str | None = None) -> bool:
        """Publish readings (plus the agent's health) at QoS 0; False when offline.

        Telemetry is not stored: what comes while offline is dropped, and the gap shows in
        ``seq``.
        """
        self._seq += 1
        message = {
            "v": PROTOCOL_VERSION,
            "seq": self._seq,
            "ts": ts or _now_iso(),
            "readings": {**self.health(), **readings},
        }
        client = self._client
        if client is None or not self._connected.is_set():
            self.stats.telemetry_dropped += 1
            return False
        try:
            await client.publish(self._topics[KIND_TELEMETRY], protocol.encode(message), qos=0)
        except aiomqtt.MqttError:
            self.stats.telemetry_dropped += 1
            return False
        self.stats.telemetry_sent += 1
        return True

    def health(self) -> dict[str, Any]:
        """The agent's own readings: its uptime (s), free disk beside the outbox (MB), the
        errors it counted and its software version."""
        try:
            free_mb = round(shutil.disk_usage(self.outbox_path.parent).free / 1e6, 1)
        except OSError:
            free_mb = None
        readings: dict[str, Any] = {
            "uptime": round(time.monotonic() - self._started_monotonic, 1),
            "errors": self.stats.errors,
            "software_version": self.software_version,
        }
        if free_mb is not None:
            readings["disk_free_mb"] = free_mb
        return readings

    async def update_announce(self, announce: Mapping[str, Any]) -> None:
        """Replace the announcement (e.g. a new planogram) and publish it when connected."""
        self.announce = self._announce_message(announce)
        client = self._client
        if client is not None and self._connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):
                await self._publish(client, KIND_ANNOUNCE, self.announce)

    def status_message(self, state: str) -> dict[str, Any]:
        """The ``status`` message: online, or offline (which is also the last will)."""
        return {
            "v": PROTOCOL_VERSION,
            "state": state,
            "ts": _now_iso(),
            "model": self.announce["model"],
            "firmware": self.announce["firmware"],
            "session": self.session,
        }

    def _announce_message(self, announce: Mapping[str, Any]) -> dict[str, Any]:
        message = {key: value for key, value in announce.items() if key != "type"}
        message["v"] = PROTOCOL_VERSION
        message.setdefault("ts", _now_iso())
        protocol.validate(KIND_ANNOUNCE, message)
        return message

    # ---- the connection ------------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        self.session = uuid.uuid4().hex  # this connection's: its will and online status carry it
        if self.mqtt_v311:  # a broker that speaks only MQTT 3.1.1 (the hub's embedded amqtt)
            version: dict[str, Any] = {
                "protocol": aiomqtt.ProtocolVersion.V311,
                "clean_session": False,
            }
        else:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.session_expiry
            version = {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "clean_start": False,
                "properties": properties,
            }
        will = aiomqtt.Will(
            self._topics[KIND_STATUS],
            protocol.encode(self.status_message(STATUS_OFFLINE)),
            qos=1,
            retain=True,
        )
        return aiomqtt.Client(
            self.broker_host,
            self.broker_port,
            username=self.username,
            password=self.password,
            identifier=self.client_id,
            will=will,
            keepalive=self.keepalive,
            timeout=OPERATION_TIMEOUT,
            tls_context=self._tls_context,
            **version,
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: somewhere up to min(max, min * 2^attempt)."""
        ceiling = min(self.backoff_max, self.backoff_min * (2 ** min(attempt, 20)))
        return random.uniform(self.backoff_min, max(self.backoff_min, ceiling))

    async def _connection_loop(self) -> None:
        attempt = 0
        lost_at: float | None = None
        refused_logged = False  # the broker refused our credentials, and we said so
        where = f"{self.broker_host}:{self.broker_port}"
        while not self._stopping.is_set():
            try:
                async with self._make_client() as client:
                    self._client = client
                    self.stats.connections += 1
                    if lost_at is None:
                        _LOGGER.info(
                            "Machine %s connected to %s (session %s, %d events pending)",
                            self.machine_id,
                            where,
                            self.session,
                            self.outbox.count(),
                        )
                    else:
                        _LOGGER.warning(
                            "Machine %s reconnected to %s after %.1f s and %d failed attempts "
                            "(%d events pending)",
                            self.machine_id,
                            where,
                            time.monotonic() - lost_at,
                            attempt,
                            self.outbox.count(),
                        )
                    attempt = 0
                    lost_at = None
                    refused_logged = False
                    await self._serve(client)
                    return  # stopped cleanly
            except (aiomqtt.MqttError, OSError) as error:
                reason = _reason(error)
                refused = _credentials_refused(error)
                if _mqtt5_unsupported(error) and not self.mqtt_v311:
                    # The hub's embedded broker (amqtt) speaks MQTT 3.1.1 only: use it from now.
                    self.mqtt_v311 = True
                    _LOGGER.warning(
                        "Machine %s: the broker %s does not speak MQTT 5; using MQTT 3.1.1",
                        self.machine_id,
                        where,
                    )
                    continue
            except Exception as error:  # a bug of ours: log it, keep the machine connected
                self.stats.errors += 1
                _LOGGER.exception("Machine %s: unexpected error on the link", self.machine_id)
                reason = _reason(error)
                refused = False
            finally:
                self._client = None
                self._connected.clear()
            if self._stopping.is_set():
                return
            delay = self._backoff(attempt)
            attempt += 1
            if refused and not refused_logged:
                # Not a flaky link: say once, loudly, what to fix; then retry quietly, as
                # the broker may load the password later (a reload after 'machine add').
                refused_logged = True
                lost_at = lost_at or time.monotonic()
                _LOGGER.error(
                    "Machine %s: the broker %s refused its credentials (%s) for MQTT user %s: "
                    "the password is wrong, or the broker has not loaded it yet (after "
                    "'vendhub machine add', Mosquitto needs its files written again and a "
                    "reload; docs/mosquitto.md). Retrying in %.1f s",
                    self.machine_id,
                    where,
                    reason,
                    repr(self.username) if self.username else "(none: no username given)",
                    delay,
                )
            elif lost_at is None:
                lost_at = time.monotonic()
                if self.stats.connections:
                    self.stats.errors += 1
                    _LOGGER.warning(
                        "Machine %s lost its connection to %s (%s); reconnecting in %.1f s",
                        self.machine_id,
                        where,
                        reason,
                        delay,
                    )
                else:
                    hint = _certificate_hint(reason)
                    # A broker it cannot verify is a setting to fix, not a flaky link.
                    (_LOGGER.error if hint else _LOGGER.warning)(
                        "Machine %s cannot connect to %s (%s)%s; retrying in %.1f s",
                        self.machine_id,
                        where,
                        reason,
                        hint,
                        delay,
                    )
            else:
                _LOGGER.info(
                    "Machine %s: still no connection to %s (%s); attempt %d, next in %.1f s",
                    self.machine_id,
                    where,
                    reason,
                    attempt,
                    delay,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Announce, then receive and send until the link drops or the agent stops."""
        connected_at = time.time()
        await client.subscribe(
            [
                (self._topics[KIND_CONFIG], 1),
                (f"{self._command_prefix}+", 1),
                (self._topics[KIND_ACK], 1),
            ]
        )
        await self._publish(client, KIND_STATUS, self.status_message(STATUS_ONLINE))
        await self._publish(client, KIND_ANNOUNCE, self.announce)
        self._connected.set()
        for result in self._unsent_results:
            await self._publish(client, KIND_COMMAND_RESULT, result)
        self._unsent_results.clear()
        tasks = [
            asyncio.create_task(self._receive(client)),
            asyncio.create_task(self._send_events(client, connected_at)),
            asyncio.create_task(self._stopping.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
        # Stopping: say so while the link is still up; a clean disconnect sends no will.
        self._connected.clear()
        await self._publish(client, KIND_STATUS, self.status_message(STATUS_OFFLINE))
        _LOGGER.info("Machine %s: offline (stopped), disconnecting", self.machine_id)

    async def _publish(self, client: aiomqtt.Client, kind: str, message: Mapping[str, Any]) -> None:
        await client.publish(
            self._topics[kind],
            protocol.encode(message),
            qos=protocol.qos(kind),
            retain=protocol.retained(kind),
        )

    async def _send_events(self, client: aiomqtt.Client, connected_at: float) -> None:
        """Publish events never sent, sent before this connection, or unacked too long."""
        tick = min(1.0, self.resend_after / 4)
        topic = self._topics[KIND_EVENT]
        while True:
            now = time.time()
            due = self.outbox.due(
                RESEND_BATCH,
                now=now,
                resend_after=self.resend_after,
                max_resend_after=self.max_resend_after,
                sent_before=connected_at,
            )
            if not due:
                self._kick.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), tick)
                continue
            self.outbox.mark_sent([row.id for row in due], at=now)
            resent = sum(1 for row in due if row.attempts)
            self.stats.events_published += len(due)
            self.stats.events_resent += resent
            if resent:
                _LOGGER.debug(
                    "Machine %s: resending %d unacknowledged events", self.machine_id, resent
                )
            await asyncio.gather(
                *(client.publish(topic, row.payload.encode(), qos=1) for row in due)
            )

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            try:
                if topic == self._topics[KIND_ACK]:
                    self._on_ack(message.payload)
                elif topic == self._topics[KIND_CONFIG]:
                    await self._on_config(message.payload)
                elif topic.startswith(self._command_prefix):
                    self._on_command(topic[len(self._command_prefix) :], message.payload)
                else:
                    _LOGGER.debug("Machine %s: ignored message on %s", self.machine_id, topic)
            except ProtocolError as error:
                self.stats.errors += 1
                _LOGGER.warning("Machine %s: dropped %s", self.machine_id, error)
            except Exception:
                self.stats.errors += 1
                _LOGGER.exception(
                    "Machine %s: error handling a message on %s", self.machine_id, topic
                )

    # ---- what the hub says ---------------------------------------------------------------

    def _on_ack(self, payload: Any) -> None:
        ack = protocol.decode(KIND_ACK, _payload_bytes(payload))
        settled = self.outbox.ack(ack["ids"])
        self.stats.events_acked += settled
        if settled and self.outbox.count() == 0:
            self._drained.set()

    async def _on_config(self, payload: Any) -> None:
        raw = _payload_bytes(payload)
        if not raw:
            return  # the hub cleared the retained config
        config = protocol.decode(KIND_CONFIG, raw)
        if self.config is not None and config["version"] == self.config["version"]:
            return  # a version already applied (retained, delivered again on reconnect)
        self.config = config
        self.stats.configs += 1
        _LOGGER.info(
            "Machine %s: config version %s (mode %s, %d slots)",
            self.machine_id,
            config["version"],
            config["mode"],
            len(config["slots"]),
        )
        rejected: dict[str, str] = {}
        if self.on_config is not None:
            try:
                answer = await _maybe_await(self.on_config(config))
            except Exception as error:
                self.stats.errors += 1
                _LOGGER.exception(
                    "Machine %s: config version %s could not be applied",
                    self.machine_id,
                    config["version"],
                )
                rejected = {"config": (str(error) or type(error).__name__)[:2000]}
            else:
                if isinstance(answer, Mapping) and isinstance(answer.get("rejected"), Mapping):
                    rejected = {
                        str(key)[:64]: str(reason)[:2000]
                        for key, reason in answer["rejected"].items()
                    }
        if self.confirm_configs:
            await self.confirm_config(config["version"], rejected)

    async def confirm_config(self, version: int, rejected: Mapping[str, str] | None = None) -> None:
        """Tell the hub that config ``version`` is applied (``config_applied``, via the outbox)."""
        data: dict[str, Any] = {"version": version}
        if rejected:
            data["rejected"] = dict(rejected)
        await self.publish_event(new_event(EVENT_CONFIG_APPLIED, data))

    def _on_command(self, name: str, payload: Any) -> None:
        raw = _payload_bytes(payload)
        try:
            command = protocol.decode(f"cmd/{name}", raw)
        except ProtocolError as error:
            # Answer when we can tell which command it was, so the hub does not wait.
            correlation = _correlation_id(raw)
            if correlation is not None:
                self._commands.put_nowait(_Command(name, correlation, {}, error.reason))
            raise
        self._commands.put_nowait(
            _Command(name, command["id"], command["args"], sent_at=command["ts"])
        )

    async def _command_worker(self) -> None:
        """Run commands one after another, in the order they came."""
        while True:
            command = await self._commands.get()
            correlation = command.id
            result = self._results.get(correlation)
            if result is None:
                result = await self._run_command(command)
                self._results[correlation] = result
                while len(self._results) > _RESULT_MEMORY:
                    self._results.popitem(last=False)
            else:
                _LOGGER.info(
                    "Machine %s: command %s repeated; sending its result again",
                    self.machine_id,
                    correlation,
                )
            client = self._client
            try:
                if client is None or not self._connected.is_set():
                    raise aiomqtt.MqttError("not connected")
                await self._publish(client, KIND_COMMAND_RESULT, result)
            except aiomqtt.MqttError:
                self._unsent_results.append(result)

    async def _run_command(self, command: _Command) -> dict[str, Any]:
        self.stats.commands += 1
        name = command.name
        answer: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": command.id, "ts": _now_iso()}
        try:
            if command.problem is not None:
                raise CommandError(f"bad command {name}: {command.problem}")
            if (
                command.sent_at is not None
                and (datetime.now(UTC) - command.sent_at).total_seconds() > self.command_max_age
            ):
                raise CommandError("expired")
            if name == COMMAND_PING:
                value: Any = {"pong": True, "session": self.session, **self.health()}
            elif self.command_handler is None:
                raise UnknownCommand(f"unknown command {name!r}")
            else:
                call = _maybe_await(self.command_handler(name, dict(command.args)))
                value = await asyncio.wait_for(call, self.command_timeout)
            if value is not None and not isinstance(value, Mapping):
                value = {"value": value}
            answer.update(ok=True, result=None if value is None else dict(value), error=None)
        except Exception as error:
            self.stats.commands_failed += 1
            if isinstance(error, TimeoutError):
                text = f"command {name} took longer than {self.command_timeout:.0f} s"
            else:
                text = str(error) or type(error).__name__
            if not isinstance(error, CommandError | TimeoutError | LookupError | ValueError):
                self.stats.errors += 1
                _LOGGER.exception("Machine %s: command %s failed", self.machine_id, name)
            else:
                _LOGGER.info("Machine %s: command %s refused: %s", self.machine_id, name, text)
            answer.update(ok=False, result=None, error=text[:2000])
        return answer


_OWN_KINDS = (
    KIND_STATUS,
    KIND_ANNOUNCE,
    KIND_TELEMETRY,
    KIND_EVENT,
    KIND_ACK,
    KIND_CONFIG,
    KIND_COMMAND_RESULT,
)


def _reason(error: BaseException) -> str:
    """What went wrong, from the deepest useful cause (aiomqtt wraps the socket's error)."""
    cause = error.__cause__ or error.__context__
    text = str(error) or type(error).__name__
    if cause is not None and (not str(error) or "Disconnected during" in text):
        text = str(cause) or type(cause).__name__
    return text


def _certificate_hint(reason: str) -> str:
    """What to fix when the broker's TLS certificate could not be verified ("" otherwise)."""
    if "certificate verify failed" not in reason.lower():
        return ""
    return (
        ": the broker's certificate is not signed by a CA this machine trusts, or is not for "
        "this host name; give the CA file that signed it (tls: ca_certs) and the name the "
        "certificate is for"
    )


_REFUSED_CREDENTIALS = frozenset({4, 5, 0x86, 0x87})
"""CONNACK codes of a broker refusing a client's credentials: MQTT 3.1.1 "bad user name or
password" and "not authorized", MQTT 5 0x86 and 0x87 (Mosquitto answers a wrong password with
0x87)."""


def _mqtt5_unsupported(error: BaseException) -> bool:
    """True when the broker answered our MQTT 5 CONNECT with "unsupported protocol version"."""
    if not isinstance(error, MqttConnectError):
        return False
    return getattr(error.rc, "value", error.rc) in (1, 0x84)


def _credentials_refused(error: BaseException) -> bool:
    """True when the broker refused the connection for its username or password."""
    if not isinstance(error, MqttConnectError):
        return False
    code = getattr(error.rc, "value", error.rc)
    return isinstance(code, int) and code in _REFUSED_CREDENTIALS


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    if payload is None:
        return b""
    return str(payload).encode()


def _correlation_id(raw: bytes) -> str | None:
    """The ``id`` of a command that failed validation, when it is a usable id."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    correlation = message.get("id")
    try:
        return protocol.MESSAGE_ID(correlation)
    except Exception:
        return None


def new_event(name: str, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A fresh protocol event (id and time now) for ``publish_event``; ``seq`` comes later."""
    return {
        "v": PROTOCOL_VERSION,
        "id": protocol.new_id(),
        "ts": _now_iso(),
        "event": name,
        "data": dict(data or {}),
    }
