"""The hub's WebSocket API state: settings, open connections, the broadcaster, state JSON.

One ``WebSocketManager`` per hub, made on first use (``websocket_manager(hub)``). It closes
every connection when the hub stops, so the HTTP server's shutdown never waits on a client.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from vendhub.const import EVENT_HUB_STOP
from vendhub.http.websocket.broadcaster import Broadcaster
from vendhub.http.websocket.messages import CLOSE_GOING_AWAY, FrameCache, StateJsonCache

if TYPE_CHECKING:
    from vendhub.core.events import Event
    from vendhub.core.hub import Hub
    from vendhub.http.websocket.connection import WebSocketConnection

_LOGGER = logging.getLogger(__name__)

DATA_WEBSOCKET: Final = "http.websocket"


@dataclass(slots=True)
class WebSocketSettings:
    """Limits of each connection (defaults follow Home Assistant's where it has one)."""

    max_pending: int = 4096
    """Messages waiting for a client: above this it is dropped at once."""
    peak_pending: int = 1024
    """Above this many waiting messages for ``peak_seconds``, the client is dropped."""
    peak_seconds: float = 10.0
    max_message_bytes: int = 64 * 1024
    """A bigger message is answered with ``message_too_large``; the connection stays."""
    max_frame_bytes: int = 1024 * 1024
    """A bigger frame closes the connection (1009): it is not even read."""
    auth_timeout: float = 10.0
    heartbeat: float = 55.0
    """Seconds between the server's pings; a client that does not pong is closed."""
    close_timeout: float = 2.0
    """How long a close may wait for a client before its socket is aborted."""
    call_timeout: float = 60.0
    max_subscriptions: int = 256
    max_calls: int = 16
    """``call_service`` calls running at once on one connection."""
    recheck_seconds: float = 30.0
    """How often a connection checks that its sign-in is still valid."""
    flush_interval: float = 0.005
    """Queued messages go out at once, but at most once per this many seconds: a burst of
    events reaches each client in one write instead of one per event."""


class WebSocketManager:
    """Connections, the broadcaster and the state JSON cache of one hub."""

    def __init__(self, hub: Hub, settings: WebSocketSettings | None = None) -> None:
        self.hub = hub
        self.settings = settings or WebSocketSettings()
        self.state_json = StateJsonCache()
        self.broadcaster = Broadcaster(hub, self.state_json)
        self.connections: set[WebSocketConnection] = set()
        self.dropped_slow = 0
        self.flushes = 0
        self._dirty: list[WebSocketConnection] = []
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        self._loop = hub.loop
        hub.bus.async_listen_once(EVENT_HUB_STOP, self._on_hub_stop)

    def async_schedule_flush(self, connection: WebSocketConnection) -> None:
        """Have ``connection``'s queue written at the next flush (one for all connections)."""
        self._dirty.append(connection)
        if self._flush_handle is None:
            wait = self._last_flush + self.settings.flush_interval - self._loop.time()
            if wait > 0:
                self._flush_handle = self._loop.call_later(wait, self._flush)
            else:
                self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = self._loop.time()
        self.flushes += 1
        dirty, self._dirty = self._dirty, []
        frames = FrameCache()
        for connection in dirty:
            try:
                connection.async_flush(frames)
            except Exception:
                _LOGGER.exception("Writing to WebSocket %r failed; closing it", connection)
                connection.async_close(CLOSE_GOING_AWAY, "the server failed")

    def _on_hub_stop(self, event: Event) -> None:
        for connection in list(self.connections):
            connection.async_close(CLOSE_GOING_AWAY, "the hub is stopping")
            self.hub.async_create_task(
                connection.async_wait_closed(), name="websocket close on stop"
            )

    async def async_close_all(self, reason: str = "the API is stopping") -> None:
        """Close every connection (for a server that stops without the hub stopping)."""
        connections = list(self.connections)
        for connection in connections:
            connection.async_close(CLOSE_GOING_AWAY, reason)
        if connections:
            await asyncio.gather(
                *(connection.async_wait_closed() for connection in connections),
                return_exceptions=True,
            )


def websocket_manager(hub: Hub) -> WebSocketManager:
    """The hub's manager, made on first use."""
    manager: WebSocketManager | None = hub.data.get(DATA_WEBSOCKET)
    if manager is None:
        manager = hub.data[DATA_WEBSOCKET] = WebSocketManager(hub)
    return manager
