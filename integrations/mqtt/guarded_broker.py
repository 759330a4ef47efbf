"""amqtt's ``Broker`` made fit for machines that must not trust each other: ``GuardedBroker``.

What amqtt 0.12 does, and what is done here instead:

- It looks a client's session up (and takes it over, deletes it for a clean session, or
  replaces its last will) *before* it checks the login: a client with no valid login and a
  machine's client id could kick the machine off, wipe its queued messages, or publish a forged
  last will on its topics. Here the login, the last will's topic and the client id's owner are
  checked first, and a refused client never touches a session.
- On every connect it replays the retained messages of every subscription on the broker,
  anyone's, to the new client, without its read check. Here a client gets the retained
  messages of its own subscriptions only, each checked against its read rules, and without
  holding up the client's next request (amqtt waited for each PUBACK, up to 5 s).
- It walks the subscriptions while awaiting, so a client subscribing meanwhile made it drop
  the message for every subscriber not reached yet ("dictionary changed size during
  iteration"); and it matched every message against every filter on the broker. Here the
  filters a topic matches are remembered until the filters change, and walked over a copy.
- An MQTT 5 CONNECT it reads as 3.1.1 and then waits for bytes that never come; here the
  client gets CONNACK 0x84 "unsupported protocol version" and the log says so (once per
  address in ten minutes). A connection that sends no CONNECT within 10 s is closed.
- Stopping cuts every connection at once (amqtt drained each one first, which can wait for
  ever on a client that does not read) and gives up after 10 s.

The methods overridden are amqtt 0.12.1's (``amqtt>=0.12,<0.13`` in pyproject.toml); the
embedded broker's tests fail if a new amqtt changes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action, BrokerConfig
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.utils import format_client_message, gen_client_id

if TYPE_CHECKING:
    from amqtt.adapters import ReaderAdapter, WriterAdapter
    from amqtt.session import Session

    from .broker_plugins import AccessPolicy

_LOGGER = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT: Final = 10.0
"""Seconds stopping may take before the listeners are closed regardless."""
CONNECT_TIMEOUT: Final = 10.0
"""Seconds a new connection has to send its CONNECT."""
MAX_CONNECT_BYTES: Final = 1024 * 1024
V5_WARN_INTERVAL: Final = 600.0
"""Seconds between two warnings about MQTT 5 clients from one address."""
MATCH_CACHE_SIZE: Final = 50_000
"""Topics whose matching filters are remembered."""
# An MQTT 5 CONNACK: no session present, reason 0x84 "unsupported protocol version", no
# properties. amqtt would read an MQTT 5 CONNECT as 3.1.1 and wait for bytes that never come.
V5_UNSUPPORTED_CONNACK: Final = bytes((0x20, 0x03, 0x00, 0x84, 0x00))


_v5_warned: dict[str, float] = {}  # address -> when an MQTT 5 client from there was last logged


def _warn_mqtt5(address: str) -> None:
    """Say once per address and ``V5_WARN_INTERVAL``, not at every retry of the client."""
    now = time.monotonic()
    if now - _v5_warned.get(address, -V5_WARN_INTERVAL) < V5_WARN_INTERVAL:
        _LOGGER.debug("Refused an MQTT 5 client from %s again", address)
        return
    _v5_warned[address] = now
    _LOGGER.warning(
        "Refused an MQTT 5 client from %s: the embedded broker (amqtt) speaks MQTT 3.1.1 "
        "only; set the client to MQTT 3.1.1, or use a broker such as Mosquitto "
        "('mqtt: broker:', see docs/mosquitto.md)",
        address,
    )


async def _read_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
    """The client's first packet, whole; None (connection closed) if it is not an MQTT 3.1.1
    CONNECT amqtt can read: an MQTT 5 client is told so, a silent one is dropped."""
    peer = writer.get_extra_info("peername")
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            packet = bytearray(await reader.readexactly(1))
            remaining, shift = 0, 0
            for _ in range(4):
                byte = (await reader.readexactly(1))[0]
                packet.append(byte)
                remaining |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            if packet[0] != 0x10 or remaining > MAX_CONNECT_BYTES:
                raise ValueError("not an MQTT CONNECT")
            body = await reader.readexactly(remaining)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError) as error:
        _LOGGER.debug("Dropped a connection from %s before its CONNECT: %r", peer, error)
        writer.transport.abort()
        return None
    if body[:6] == b"\x00\x04MQTT" and len(body) > 6 and body[6] == 5:
        _warn_mqtt5(str(peer[0] if isinstance(peer, tuple) else peer))
        writer.write(V5_UNSUPPORTED_CONNACK)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        return None
    return bytes(packet + body)


class _PrefixedReader(StreamReaderAdapter):
    """amqtt's stream reader that first returns the bytes of the CONNECT read already."""

    def __init__(self, prefix: bytes, reader: asyncio.StreamReader) -> None:
        super().__init__(reader)
        self._prefix = prefix

    async def read(self, n: int = -1) -> bytes:
        if not self._prefix:
            return await super().read(n)
        if n == -1:
            head, self._prefix = self._prefix, b""
            return head + await super().read(n)
        head, self._prefix = self._prefix[:n], self._prefix[n:]
        if len(head) < n:
            head += await super().read(n - len(head))
        return head


class GuardedBroker(Broker):
    """amqtt's ``Broker`` that checks a client before its session is touched (see above)."""

    def __init__(self, config: BrokerConfig, policy: AccessPolicy) -> None:
        super().__init__(config)
        self.policy = policy
        self.refused = 0
        self._streams: set[asyncio.StreamWriter] = set()
        self._sends: set[asyncio.Future[Any]] = set()
        self._matched: dict[str, list[str]] = {}  # topic -> the filters it matches
        self._filters_version = 0  # grows whenever a filter is added or may have gone
        self._matched_version = 0

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        self._streams.add(writer)
        try:
            connect = await _read_connect(reader, writer)
            if connect is not None:
                await self._client_connected(
                    listener_name, _PrefixedReader(connect, reader), StreamWriterAdapter(writer)
                )
        except asyncio.CancelledError:
            # asyncio's server reads task.exception() of this task when it ends, which raises
            # for a cancelled one and logs a traceback; the connection is over either way.
            pass
        finally:
            self._streams.discard(writer)

    async def async_cut_off_invalid_logins(self) -> list[str]:
        """Close the connection of every client whose login is no longer valid; their users."""
        self.policy.checker.refresh()
        cut: list[str] = []
        for session, _handler in list(self._sessions.values()):
            if session.transitions.state != "connected":
                continue
            if await self.policy.async_login_refusal(session) is None:
                continue
            peer = (session.remote_address, session.remote_port)
            for writer in list(self._streams):
                if tuple(writer.get_extra_info("peername") or ())[:2] == peer:
                    writer.transport.abort()
            cut.append(str(session.username))
            _LOGGER.warning(
                "Disconnected MQTT user %r (client %r): its credentials were removed or replaced",
                session.username,
                session.client_id,
            )
        return cut

    async def shutdown(self) -> None:
        # Cut every connection first: amqtt closes a session's socket only after draining what
        # it still has to send, which can wait for ever on a client that does not read, and it
        # knows nothing of a connection still in its CONNECT.
        for writer in list(self._streams):
            writer.transport.abort()
        for send in list(self._sends):
            send.cancel()
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                await super().shutdown()
        except TimeoutError:
            _LOGGER.warning(
                "The embedded MQTT broker did not stop within %.0f s; closing its listeners",
                SHUTDOWN_TIMEOUT,
            )
            for server in self._servers.values():
                with contextlib.suppress(Exception):
                    await server.close_instance()

    def _filters_matching(self, topic: str) -> list[str]:
        """The subscription filters ``topic`` matches, remembered until the filters change.

        amqtt matched every message against every filter on the broker (three per machine):
        at 500 machines that tripled the broker's CPU per message.
        """
        if self._matched_version != self._filters_version:
            self._matched.clear()
            self._matched_version = self._filters_version
        found = self._matched.get(topic)
        if found is None:
            found = [f for f in list(self._subscriptions) if self._matches(topic, f)]
            if len(self._matched) >= MATCH_CACHE_SIZE:
                self._matched.clear()
            self._matched[topic] = found
        return found

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        known = subscription[0] in self._subscriptions
        try:
            return await super().add_subscription(subscription, session)
        finally:
            if not known and subscription[0] in self._subscriptions:
                self._filters_version += 1

    async def _del_all_subscriptions(self, session: Session) -> None:
        try:
            await super()._del_all_subscriptions(session)
        finally:
            self._filters_version += 1

    async def _run_broadcast(self, running_tasks: deque[asyncio.Task[Any]]) -> None:
        # amqtt 0.12.1's Broker._run_broadcast, with two changes: the filters a topic matches
        # come from _filters_matching, and the subscribers are walked over a copy. It awaits
        # (the read check, queueing for an offline session) while it walks them, and a client
        # subscribing meanwhile made amqtt fail with "dictionary changed size during
        # iteration", dropping the message for every subscriber not reached yet.
        broadcast = await self._broadcast_queue.get()
        topic = broadcast["topic"]
        for topic_filter in self._filters_matching(topic):
            for target_session, sub_qos in list(self._subscriptions.get(topic_filter, ())):
                qos = broadcast.get("qos", sub_qos)
                if not await self._topic_filtering(target_session, topic, Action.RECEIVE):
                    continue
                connected = target_session.transitions.state == "connected"
                if (
                    not connected
                    and not target_session.clean_session
                    and qos in (QOS_1, QOS_2)
                    and not target_session.is_anonymous
                ):
                    await self._retain_broadcast_message(broadcast, qos, target_session)
                    continue
                if not connected:
                    continue
                handler = self._get_handler(target_session)
                if handler:
                    running_tasks.append(
                        asyncio.ensure_future(
                            handler.mqtt_publish(topic, broadcast["data"], qos, retain=False)
                        )
                    )

    async def _refusal(self, session: Session) -> str | None:
        reason = await self.policy.async_login_refusal(session)
        if reason is not None:
            return reason
        held = self._sessions.get(session.client_id or "")
        if held is not None and held[0].username not in (None, session.username):
            return (
                f"client id {session.client_id!r} belongs to the session of another user "
                f"({held[0].username!r})"
            )
        return None

    async def _initialize_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        remote_address: str,
        remote_port: int,
    ) -> tuple[BrokerProtocolHandler, Session]:
        # amqtt 0.12.1's Broker._initialize_client_session, with the refusal check inserted
        # between reading the CONNECT and looking its session up.
        where = format_client_message(address=remote_address, port=remote_port)
        try:
            handler, client_session = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except AMQTTError as exc:
            self.logger.warning(f"[MQTT-3.1.0-1] {where}: Can't read the CONNECT: {exc}")
            raise AMQTTError(exc) from exc
        except MQTTError as exc:
            self.logger.warning(f"Invalid connection from {where}")
            await writer.close()
            raise MQTTError(exc) from exc
        except NoDataError as exc:
            self.logger.error(f"No data from {where} : {exc}")
            raise AMQTTError(exc) from exc

        reason = await self._refusal(client_session)
        if reason is not None:
            self.refused += 1
            with contextlib.suppress(Exception):
                await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
                await writer.close()
            raise MQTTError(
                f"refused the MQTT client {client_session.client_id!r} from {where}: {reason}"
            )

        if client_session.clean_session:
            if client_session.client_id:
                await self._delete_session(client_session.client_id)
            else:
                client_session.client_id = gen_client_id()
            client_session.parent = 0
        elif client_session.client_id in self._sessions:
            existing, _ = self._sessions[client_session.client_id]
            existing.will_flag = client_session.will_flag
            existing.will_message = client_session.will_message
            existing.will_topic = client_session.will_topic
            existing.will_qos = client_session.will_qos
            existing.keep_alive = client_session.keep_alive
            existing.username = client_session.username
            existing.password = client_session.password
            client_session = existing
            client_session.parent = 1
        else:
            client_session.parent = 0

        delay = self.config.get("timeout-disconnect-delay", 0)
        if client_session.keep_alive > 0 and isinstance(delay, int):
            client_session.keep_alive += delay
        return handler, client_session

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter, qos = subscription
        own = self._subscriptions.get(topic_filter, ())
        if not any(held.client_id == session.client_id for held, _ in own):
            return  # amqtt offers every subscription on the broker to a connecting client
        handler = self._get_handler(session)
        if handler is None:
            return
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic, Action.RECEIVE):
                continue
            send = asyncio.ensure_future(
                handler.mqtt_publish(
                    retained.topic, retained.data, min(qos, retained.qos or qos), retain=True
                )
            )
            # Not awaited: amqtt waited here for every PUBACK, and meanwhile handled nothing
            # else of the client's (its next SUBSCRIBE included), for up to 5 s per message.
            self._sends.add(send)
            send.add_done_callback(self._send_done)

    def _send_done(self, send: asyncio.Future[Any]) -> None:
        self._sends.discard(send)
        if not send.cancelled() and (error := send.exception()) is not None:
            _LOGGER.debug("A retained message was not delivered: %r", error)
