"""How the hub takes messages from the broker: in batches, acknowledged once handled, paced.

On its own, aiomqtt costs the hub more than the hub's own work at fleet rates, and keeps what
the hub has not handled yet in memory without bound. ``Inflow`` takes its client over:

- **Batches.** paho reads one packet per call, and aiomqtt hands each message over through a
  task of its own, so every message cost at least one turn of the event loop. ``Inflow``
  reads up to ``batch`` packets when the socket is readable, and ``messages()`` yields what
  is waiting without a task (handing the loop back every ``batch`` messages).
- **Acknowledged once handled.** With ``manual_ack`` a QoS 1 message is PUBACKed when
  ``handled``, not when read, so what a hub had read but not handled when it died comes
  again from its session.
- **Paced.** Reading stops while ``high`` messages wait, or while ``behind()`` says the hub
  is behind further on (the recorder's writer), and starts again at ``low``; the rest waits
  in the socket buffers and in the hub's session on the broker, which keeps QoS 1 messages
  (Mosquitto: up to ``max_queued_messages`` for the hub). MQTT 5's Receive Maximum
  should do this, but Mosquitto 2.0 sends past it once its queue for the hub fills (measured:
  8,500 waiting at a Receive Maximum of 1,000). A waiting message is about 0.4 KB: the MQTT 5
  properties, which the hub does not read, made it 6 KB and are dropped.

While reading stops no answer from the broker is read either. When the hub waits for one
(the PUBACK of a config it publishes, a SUBACK) and nothing was handled for ``watch_every``
seconds (the handler, or the connection's set-up, is the one waiting), reading goes on until
the answers are in, up to ``most`` waiting messages. Nothing waits for a PINGRESP: paho gives
up on a broker only when nothing at all came from it for the keepalive, so a pause longer
than ``longest_pause`` seconds reads one more packet.

aiomqtt has no options for any of this yet, so ``Inflow`` works on its paho client and its
queue; aiomqtt's own message iterator still ends the loop when the connection ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomqtt


class Inflow:
    """Reads, hands over and acknowledges the messages of one aiomqtt client."""

    batch: int = 64  # packets read, and messages handed over, per turn of the event loop
    high: int = 1000  # received, not yet handled: stop reading
    low: int = 250  # read again
    most: int = 20_000  # stop reading even while waiting for an answer
    watch_every: float = 0.02
    longest_pause: float = 5.0

    def __init__(
        self,
        client: aiomqtt.Client,
        *,
        manual_ack: bool,
        behind: Callable[[], bool] | None = None,
    ) -> None:
        self._client = client
        self._behind = behind or _never
        self._queue: asyncio.Queue[aiomqtt.Message] = client._queue
        self._paho = client._client
        self._paho.manual_ack_set(manual_ack)
        self._queue_message = self._paho.on_message
        self._paho.on_message = self._on_message
        self._open_socket = self._paho.on_socket_open
        self._paho.on_socket_open = self._on_socket_open
        self._loop = asyncio.get_running_loop()
        self._paused_fd: int | None = None
        self._paused_at = 0.0
        self._watch: asyncio.TimerHandle | None = None
        self._handled = 0
        self._read_through = False  # reading on: the hub waits for an answer
        self.pauses = 0  # how often reading stopped
        self.read_throughs = 0  # how often it went on for an answer

    @property
    def paused(self) -> bool:
        """True while the socket is not read."""
        return self._paused_fd is not None

    async def messages(self) -> AsyncIterator[aiomqtt.Message]:
        """The client's messages, until its connection ends (``aiomqtt.MqttError``)."""
        queue = self._queue
        ended = self._client._disconnected
        waiting = self._client.messages
        in_a_row = 0
        while True:
            if queue.empty() or ended.done():
                in_a_row = 0
                yield await anext(waiting)  # the empty queue's wait, and the connection's end
            elif in_a_row >= self.batch:
                in_a_row = 0
                await asyncio.sleep(0)
            else:
                in_a_row += 1
                yield queue.get_nowait()

    def handled(self, message: aiomqtt.Message) -> None:
        """``message`` is handled: acknowledge it, and read again once few wait."""
        self._paho.ack(message.mid, message.qos)  # nothing unless manual_ack and QoS 1 or 2
        self._handled += 1
        if self._paused_fd is not None and self._may_read():
            self._resume()

    def _may_read(self) -> bool:
        return self._queue.qsize() <= self.low and not self._behind()

    # ---- reading ---------------------------------------------------------------------------

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        # Called in the thread that connects; aiomqtt's handler registers its own reader.
        self._open_socket(client, userdata, sock)
        self._loop.call_soon_threadsafe(self._take_over, sock.fileno())

    def _take_over(self, fd: int) -> None:
        sock = self._paho.socket()
        if sock is not None and sock.fileno() == fd:
            self._loop.add_reader(fd, self._read)

    def _read(self) -> None:
        # As aiomqtt's reader, which this one replaces, but up to a batch of packets.
        paho = self._paho
        queue = self._queue
        try:
            for _ in range(self.batch):
                received = queue.qsize()
                paho.loop_read()
                sock = paho.socket()
                if sock is None or self._paused_fd is not None:
                    break
                if hasattr(sock, "pending") and sock.pending() > 0:  # TLS-buffered
                    continue
                if queue.qsize() == received:  # nothing more to read, or not a message
                    break
        except Exception as error:
            ended = self._client._disconnected
            if not ended.done():
                ended.set_exception(error)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        message.properties = None
        self._queue_message(client, userdata, message)
        waiting = self._queue.qsize()
        if self._paused_fd is not None or (waiting < self.high and not self._behind()):
            return
        if self._read_through:
            if waiting < self.most and self._awaiting_broker():
                return
            self._read_through = False
        self._pause()

    def _awaiting_broker(self) -> bool:
        client = self._client
        return bool(
            client._pending_publishes or client._pending_subscribes or client._pending_unsubscribes
        )

    # ---- pacing ----------------------------------------------------------------------------

    def _pause(self) -> None:
        sock = self._paho.socket()
        if sock is None:
            return
        fd = sock.fileno()
        if self._loop.remove_reader(fd):
            self._paused_fd = fd
            self._paused_at = self._loop.time()
            self.pauses += 1
            self._watch = self._loop.call_later(self.watch_every, self._check, self._handled)

    def _check(self, handled_before: int) -> None:
        if self._paused_fd is None:
            return
        if self._handled == handled_before and self._awaiting_broker():
            self._read_through = True
            self.read_throughs += 1
            self._resume()
        elif self._loop.time() - self._paused_at > self.longest_pause:
            self._resume()  # the next message read stops reading again
        elif self._may_read():  # no message to hand over, and no longer behind
            self._resume()
        else:
            self._watch = self._loop.call_later(self.watch_every, self._check, self._handled)

    def _resume(self) -> None:
        fd, self._paused_fd = self._paused_fd, None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        sock = self._paho.socket()
        if sock is not None and sock.fileno() == fd:  # else the connection has ended
            self._loop.add_reader(fd, self._read)


def _never() -> bool:
    return False
