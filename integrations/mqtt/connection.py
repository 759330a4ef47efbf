"""The connection to the broker: connect, subscribe, receive, and reconnect for as long as it takes.

One aiomqtt client per connection attempt, MQTT v5 with clean start off and a session expiry,
so the broker keeps the hub's subscriptions and queues the QoS 1 messages machines publish
while the hub is away (a restart, a broker restart, a dead link) and delivers them when it
is back. Every connect, loss and reconnect is logged. Messages are handed to ``on_message``
one at a time, in the order the broker delivered them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from vendhub.core.errors import VendHubError
from vendhub.util.tasks import async_cancel_and_wait

from .const import RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY
from .inflow import Inflow
from .schema import MQTT_V311

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

    from .schema import BrokerSettings

_LOGGER = logging.getLogger(__name__)

DISCONNECT_TIMEOUT = 3.0
"""Seconds the connection has, at stop, to end once cancelled (it is cancelled twice at most)."""

MessageHandler = Callable[[aiomqtt.Message], Awaitable[None]]
ConnectHandler = Callable[[], Awaitable[None]]


class NotConnected(VendHubError):
    """The hub is not connected to the broker right now."""


def backoff_delay(
    attempt: int,
    min_delay: float = RECONNECT_MIN_DELAY,
    max_delay: float = RECONNECT_MAX_DELAY,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before reconnect ``attempt`` (1, 2, …): doubling, capped, jittered.

    The jitter draws from the upper half of the interval, so machines and hubs that lost
    the broker at the same moment do not all come back at the same moment.
    """
    ceiling = min(max_delay, min_delay * 2 ** min(max(0, attempt - 1), 32))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def _read_disconnect_reason(client: aiomqtt.Client) -> None:
    """Mark why a connection ended as seen.

    aiomqtt keeps it in a future that only its message iterator reads; a connection that ends
    while the loop is elsewhere (being cancelled at unload, say) would otherwise be reported
    by asyncio as "Future exception was never retrieved".
    """
    ended = getattr(client, "_disconnected", None)
    if isinstance(ended, asyncio.Future) and ended.done() and not ended.cancelled():
        ended.exception()


class BrokerConnection:
    """Keeps one session with the broker alive; ``async_publish`` sends through it."""

    def __init__(
        self,
        hub: Hub,
        settings: BrokerSettings,
        subscriptions: Sequence[tuple[str, int]],
        on_message: MessageHandler,
        on_connect: ConnectHandler | None = None,
        *,
        min_delay: float = RECONNECT_MIN_DELAY,
        max_delay: float = RECONNECT_MAX_DELAY,
    ) -> None:
        self.hub = hub
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.settings = settings
        self.subscriptions = list(subscriptions)
        self._on_message = on_message
        self._on_connect = on_connect
        self._client: aiomqtt.Client | None = None
        self._stopping = False
        # Resolved when the current connection ends, so publishes waiting for the broker's
        # confirmation give up at once instead of waiting for their timeout.
        self._session_ended: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.connects = 0  # successful connections, the first one included
        self.failures = 0  # failed attempts and lost connections
        self.last_error: str | None = None
        self.behind: Callable[[], bool] | None = None  # the hub is behind further on: wait

    @property
    def connected(self) -> bool:
        """True while a session with the broker is up."""
        return self._connected.is_set()

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._task is None:
            self._stopping = False
            self._task = self.hub.async_create_background_task(
                self._async_run(), name=f"mqtt connection {self.settings.address}"
            )

    async def async_wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected (at most ``timeout`` seconds); return whether it is."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def async_stop(self) -> None:
        """Disconnect cleanly (a DISCONNECT, so no last will) and stop reconnecting.

        Bounded: a cancellation can get lost (``vendhub.util.tasks``), so the stop cancels
        again after ``DISCONNECT_TIMEOUT`` seconds, and leaves the connection behind after as
        many again rather than keep the hub from stopping.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if not await async_cancel_and_wait(task, DISCONNECT_TIMEOUT):
            _LOGGER.error(
                "The MQTT connection to %s did not end when cancelled twice; left behind",
                self.settings.address,
            )

    # ---- the loop ------------------------------------------------------------------------

    def _new_client(self) -> aiomqtt.Client:
        settings = self.settings
        session: dict[str, Any]
        if settings.protocol_version == MQTT_V311:  # the embedded broker (amqtt)
            session = {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": False}
        else:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = settings.session_expiry
            session = {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "clean_start": False,
                "properties": properties,
            }
        tls_context = None
        if settings.tls:
            tls_context = ssl.create_default_context(cafile=settings.ca_certs)
            if settings.certfile:
                tls_context.load_cert_chain(settings.certfile, settings.keyfile)
            if settings.tls_insecure:
                tls_context.check_hostname = False
                tls_context.verify_mode = ssl.CERT_NONE
        return aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=settings.client_id,
            keepalive=settings.keepalive,
            timeout=max(5.0, float(settings.keepalive)),
            tls_context=tls_context,
            logger=logging.getLogger(f"{__name__}.paho"),
            **session,
        )

    async def _async_run(self) -> None:
        attempt = 0
        address = self.settings.address
        while True:
            client: aiomqtt.Client | None = None
            try:
                client = self._new_client()
                # amqtt (the embedded broker) times out deliveries whose PUBACK waits.
                flow = Inflow(
                    client,
                    manual_ack=self.settings.protocol_version != MQTT_V311,
                    behind=self.behind,
                )
                async with client:
                    self._client = client
                    self._session_ended = asyncio.get_running_loop().create_future()
                    await self._async_connected(client, attempt)
                    if self._stopping:  # the stop's cancellation was lost on the way
                        raise asyncio.CancelledError
                    attempt = 0
                    async for message in flow.messages():
                        await self._async_deliver(message)
                        flow.handled(message)
                # The messages iterator ends only when the connection does.
                raise aiomqtt.MqttError("the connection ended")
            except aiomqtt.MqttError as error:
                self.failures += 1
                self.last_error = str(error) or type(error).__name__
                attempt += 1
                delay = backoff_delay(attempt, self.min_delay, self.max_delay)
                if self._connected.is_set():
                    _LOGGER.warning(
                        "Lost the connection to the MQTT broker %s (%s); reconnecting in %.1f s",
                        address,
                        self.last_error,
                        delay,
                    )
                else:
                    _LOGGER.warning(
                        "Cannot connect to the MQTT broker %s (%s); attempt %d, next in %.1f s",
                        address,
                        self.last_error,
                        attempt,
                        delay,
                    )
            except (ssl.SSLError, OSError) as error:
                # A bad certificate file and the like: it will not fix itself quickly.
                self.failures += 1
                self.last_error = str(error)
                attempt += 1
                delay = max(backoff_delay(attempt, self.min_delay, self.max_delay), 10.0)
                _LOGGER.error(
                    "Cannot set up the connection to the MQTT broker %s: %s; retrying in %.0f s",
                    address,
                    error,
                    delay,
                )
            finally:
                self._client = None
                self._connected.clear()
                if client is not None:
                    _read_disconnect_reason(client)
                if self._session_ended is not None and not self._session_ended.done():
                    self._session_ended.set_result(None)
            if self._stopping:  # a lost cancellation, then the connection ended
                return
            await asyncio.sleep(delay)

    async def _async_connected(self, client: aiomqtt.Client, attempt: int) -> None:
        self.connects += 1
        for topic, qos in self.subscriptions:
            await client.subscribe(topic, qos=qos)
        self._connected.set()
        if self.connects == 1:
            _LOGGER.info(
                "Connected to the MQTT broker %s as %s; subscribed to %s",
                self.settings.address,
                self.settings.client_id,
                ", ".join(topic for topic, _ in self.subscriptions),
            )
        else:
            _LOGGER.warning(
                "Reconnected to the MQTT broker %s as %s after %d failed attempt%s "
                "(reconnect %d); subscriptions renewed",
                self.settings.address,
                self.settings.client_id,
                attempt,
                "" if attempt == 1 else "s",
                self.connects - 1,
            )
        if self._on_connect is not None:
            try:
                await self._on_connect()
            except aiomqtt.MqttError:
                raise
            except Exception:
                _LOGGER.exception("The MQTT on-connect handler failed")

    async def _async_deliver(self, message: aiomqtt.Message) -> None:
        try:
            await self._on_message(message)
        except Exception:
            _LOGGER.exception("Handling the MQTT message on %s failed", message.topic.value)

    # ---- publishing ----------------------------------------------------------------------

    async def async_publish(
        self, topic: str, payload: bytes | str | None, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish now; NotConnected when there is no connection to the broker."""
        client, ended = self._client, self._session_ended
        if client is None or ended is None or not self._connected.is_set():
            raise NotConnected(
                f"not connected to the MQTT broker {self.settings.address}"
                + (f" ({self.last_error})" if self.last_error else "")
            )
        publish = asyncio.ensure_future(client.publish(topic, payload, qos=qos, retain=retain))
        try:
            await asyncio.wait((publish, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not publish.done():
                publish.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await publish
        if publish.cancelled():
            raise NotConnected(
                f"the connection to the MQTT broker ended before it confirmed {topic}"
            )
        error = publish.exception()
        if isinstance(error, aiomqtt.MqttError):
            raise NotConnected(
                f"publishing to {topic} failed: {error}; the broker connection is down"
            ) from error
        if error is not None:
            raise error

    def diagnostics(self) -> dict[str, Any]:
        """What the connection is doing, for a diagnostic entity and for tests."""
        return {
            "broker": self.settings.address,
            "client_id": self.settings.client_id,
            "connected": self.connected,
            "connects": self.connects,
            "failures": self.failures,
            "last_error": self.last_error,
        }
