"""The machine protocol over HTTP: one WebSocket per machine, and a POST for events.

For machines that cannot reach a broker. The messages are the protocol's own
(``docs/protocol.md``, "HTTP transport"); only the framing differs, since there is no topic:

- ``GET /api/machine/websocket`` (machines only). The machine signs in with
  ``{"type": "auth", "access_token": ...}`` (or the upgrade carries ``Authorization: Bearer``)
  and then sends ``{"kind": "status"|"announce"|"telemetry"|"event"|"cmd_result",
  "payload": {...}}``; the hub sends ``{"kind": "ack"|"config"|"cmd/<name>", "payload": ...}``.
  The socket closing is the machine's last will: the hub applies an ``offline`` status with
  the session of the connection's last ``online``.
- ``POST /api/machine/events`` (machines only): a list of event messages; the answer comes
  once the hub has acked them (ledger events: after the recorder's commit), or after ``wait``
  seconds with the ids still pending (202), which the machine sends again later.

Every message goes through ``MqttRuntime.async_handle_inbound``, the handler MQTT messages go
through: the same decoding, adoption, de-duplication and acks after the commit. Acks, configs
and commands go to a machine's live WebSocket when it has one (``MqttRuntime`` asks
``async_deliver`` first), else over MQTT. The machine id is the signed-in machine's; a frame
that names another machine is refused and counted (``wrong_machine``).

Each connection fires ``machine_connection`` (``connected`` / ``disconnected``, transport
``websocket``, its remote address), which the shared-credentials anomaly rule reads; starting
the transport fires ``reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import WSMsgType, web

from vendhub.auth.manager import DATA_AUTH
from vendhub.const import EVENT_MACHINE_CONNECTION
from vendhub.core.errors import HubNotRunning
from vendhub.http.auth import context_for
from vendhub.http.errors import ApiError, forbidden
from vendhub.http.keys import IDENTITY_KEY
from vendhub.http.server import DATA_HTTP
from vendhub.http.view import ApiView, body, identity_of, is_websocket_upgrade, operation, query
from vendhub.machine import protocol
from vendhub.util.dt import utcnow

from .const import DOMAIN, INBOUND_KINDS

if TYPE_CHECKING:
    from vendhub.auth.identity import Identity
    from vendhub.auth.manager import AuthManager
    from vendhub.core.hub import Hub

    from .runtime import MqttRuntime

_LOGGER = logging.getLogger(__name__)

TRANSPORT: Final = "websocket"
URL_WEBSOCKET: Final = "/api/machine/websocket"
URL_EVENTS: Final = "/api/machine/events"

REASON_WRONG_MACHINE: Final = "wrong_machine"  # a frame or request for another machine
REASON_BAD_FRAME: Final = "bad_frame"  # not JSON, not an object, no known kind

AUTH_TIMEOUT: Final = 10.0  # seconds to send the auth message after the upgrade
HEARTBEAT: Final = 30.0  # seconds between pings; a machine that does not pong is closed
TOKEN_RECHECK: Final = 30.0  # seconds between checks that the access token is still valid
CLOSE_TIMEOUT: Final = 2.0
MAX_PENDING: Final = 1024  # frames waiting for a slow machine before it is closed
MAX_FRAME_BYTES: Final = protocol.MAX_PAYLOAD_BYTES + 4096
MAX_TOKEN_CHARS: Final = 8192
DEFAULT_EVENTS_WAIT: Final = 10.0  # seconds POST /api/machine/events waits for the acks
MAX_EVENTS_WAIT: Final = 60.0
MAX_EVENTS_PER_POST: Final = protocol.MAX_ACK_IDS

CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008

STATE_CONNECTED: Final = "connected"
STATE_DISCONNECTED: Final = "disconnected"
STATE_RESET: Final = "reset"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def frame(kind: str, payload: bytes) -> str:
    """The WebSocket frame of an encoded protocol message (``protocol.encode``)."""
    return f'{{"kind":{json.dumps(kind)},"payload":{payload.decode("utf-8")}}}'


def _control(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@dataclass(slots=True)
class TransportStats:
    """What the HTTP transport did (for diagnostics and tests)."""

    connections: int = 0  # WebSockets signed in, since start
    refused_sign_ins: int = 0
    frames_in: int = 0
    frames_out: int = 0
    refused_frames: int = 0  # frames that were not protocol messages of the signed-in machine
    posts: int = 0
    slow_closed: int = 0  # machines closed because too many frames waited for them


@dataclass(slots=True)
class _AckWaiter:
    """One POST's event ids, waiting for their acks."""

    pending: set[str]
    done: asyncio.Event = field(default_factory=asyncio.Event)


class MachineSocket:
    """One machine's WebSocket: its sign-in, the frames it sends, a bounded send queue."""

    def __init__(self, transport: MachineHttpTransport, request: web.Request) -> None:
        self.transport = transport
        self.request = request
        self.id = uuid.uuid4().hex
        self.remote = request.remote
        self.ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT, max_msg_size=MAX_FRAME_BYTES, compress=False
        )
        self.identity: Identity | None = None
        self.token: str | None = None
        self.machine_id = ""
        self.online_status: dict[str, Any] | None = None  # its latest online status
        self.closing = False
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._recheck: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<MachineSocket {self.machine_id or '?'} from {self.remote} {self.id[:8]}>"

    # ---- the request ----------------------------------------------------------------------

    async def async_handle(self) -> web.WebSocketResponse:
        """Serve the connection until either side closes it; raises only cancellation."""
        await self.ws.prepare(self.request)
        attached = False
        try:
            if not await self._async_authenticate():
                return self.ws
            self._writer = asyncio.create_task(self._write_loop(), name=f"{self!r} writer")
            self._schedule_recheck()
            self.transport.attach(self)
            attached = True
            await self._receive_loop()
        except asyncio.CancelledError:
            self.closing = True
            raise
        except Exception:
            _LOGGER.exception("Machine WebSocket %r failed; closing it", self)
        finally:
            self.closing = True
            if self._recheck is not None:
                self._recheck.cancel()
            if attached:
                await self.transport.async_detach(self)
            if self._writer is not None:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._writer
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.ws.close()
        return self.ws

    async def _receive_loop(self) -> None:
        while not self.closing:
            message = await self.ws.receive()
            if message.type is WSMsgType.TEXT:
                await self.transport.async_handle_frame(self, message.data)
            elif message.type is WSMsgType.BINARY:
                self.transport.refuse(self, REASON_BAD_FRAME, "send each frame as JSON text")
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                return

    # ---- signing in -----------------------------------------------------------------------

    @property
    def _auth(self) -> AuthManager | None:
        return self.transport.hub.data.get(DATA_AUTH)

    async def _async_authenticate(self) -> bool:
        identity: Identity | None = self.request.get(IDENTITY_KEY)
        token = _bearer(self.request) if identity is not None else None
        if identity is None and "Authorization" in self.request.headers:
            return await self._async_refuse("the access token is invalid or has expired")
        if identity is None:
            await self._async_send_now({"type": "auth_required"})
            token = await self._async_read_auth()
            if token is None:
                return False
            identity = self._auth.validate_access_token(token) if self._auth else None
            if identity is None:
                return await self._async_refuse("the access token is invalid or has expired")
        if not identity.is_machine or not identity.machine_id:
            return await self._async_refuse(
                "only machines use this WebSocket (sign in with grant_type machine); "
                "people and scripts use /api/websocket"
            )
        self.identity, self.token, self.machine_id = identity, token, identity.machine_id
        await self._async_send_now(
            {"type": "auth_ok", "machine_id": self.machine_id, "v": protocol.PROTOCOL_VERSION}
        )
        return True

    async def _async_read_auth(self) -> str | None:
        try:
            message = await self.ws.receive(timeout=AUTH_TIMEOUT)
        except TimeoutError:
            await self._async_refuse(f"no auth message within {AUTH_TIMEOUT:g} s")
            return None
        if message.type is not WSMsgType.TEXT:
            if message.type in (WSMsgType.BINARY,):
                await self._async_refuse('send {"type": "auth", "access_token": "..."} as text')
            return None
        try:
            value = _JSON.decode(message.data)
        except (ValueError, RecursionError):
            value = None
        token = value.get("access_token") if isinstance(value, dict) else None
        if (
            not isinstance(value, dict)
            or value.get("type") != "auth"
            or not isinstance(token, str)
            or not 0 < len(token) <= MAX_TOKEN_CHARS
        ):
            await self._async_refuse(
                'the first message must be {"type": "auth", "access_token": "<token>"}'
            )
            return None
        return token

    async def _async_refuse(self, reason: str) -> bool:
        self.transport.stats.refused_sign_ins += 1
        _LOGGER.warning("Machine WebSocket from %s refused: %s", self.remote, reason)
        await self._async_send_now({"type": "auth_invalid", "message": reason})
        self.closing = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code=CLOSE_POLICY, message=b"authentication failed")
        return False

    async def _async_send_now(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.send_str(_control(message))

    def renew(self, token: Any) -> None:
        """A new access token for this connection (the machine signed in again)."""
        auth = self._auth
        identity = (
            auth.validate_access_token(token)
            if auth is not None and isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_CHARS
            else None
        )
        if identity is None or identity.machine_id != self.machine_id:
            self.transport.refuse(
                self,
                REASON_WRONG_MACHINE if identity else REASON_BAD_FRAME,
                "the new access token is not valid for this machine; the old one stays",
            )
            return
        self.identity, self.token = identity, token
        self.send(_control({"type": "auth_ok", "machine_id": self.machine_id}))

    def _schedule_recheck(self) -> None:
        loop = asyncio.get_running_loop()
        self._recheck = loop.call_later(TOKEN_RECHECK, self._check_token)

    def _check_token(self) -> None:
        self._recheck = None
        if self.closing:
            return
        auth = self._auth
        if self.token is not None and (
            auth is None or auth.validate_access_token(self.token) is None
        ):
            _LOGGER.info("Machine WebSocket %r closed: its access token expired", self)
            self.close(CLOSE_POLICY, "the access token expired; sign in again")
            return
        self._schedule_recheck()

    # ---- sending --------------------------------------------------------------------------

    def send(self, text: str) -> bool:
        """Queue a frame; False when the connection is closing (or was just closed as slow)."""
        if self.closing:
            return False
        if len(self._queue) >= MAX_PENDING:
            self.transport.stats.slow_closed += 1
            _LOGGER.warning(
                "Machine WebSocket %r closed: %d frames waited for it; it reconnects and its "
                "outbox sends the unacknowledged events again",
                self,
                len(self._queue),
            )
            self.close(CLOSE_POLICY, "too many frames waiting; read faster")
            return False
        self._queue.append(text)
        self._wake.set()
        return True

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                text = self._queue.popleft()
                try:
                    await self.ws.send_str(text)
                except (ConnectionError, RuntimeError) as error:
                    _LOGGER.debug("Machine WebSocket %r: send failed: %s", self, error)
                    self.close(CLOSE_GOING_AWAY, "send failed")
                    return
                self.transport.stats.frames_out += 1

    def close(self, code: int, reason: str) -> None:
        """Start closing (from any callback); the handler then detaches the connection."""
        if self.closing:
            return
        self.closing = True
        self._queue.clear()

        async def _close() -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.ws.close(code=code, message=reason.encode()[:120])

        asyncio.get_running_loop().create_task(_close(), name=f"{self!r} close")


class MachineHttpTransport:
    """The HTTP transport of one ``MqttRuntime``: its WebSockets, POSTs and ack waiters."""

    def __init__(self, hub: Hub, runtime: MqttRuntime) -> None:
        self.hub = hub
        self.runtime = runtime
        self.stats = TransportStats()
        self._sockets: dict[str, list[MachineSocket]] = {}
        self._waiters: dict[str, list[_AckWaiter]] = {}
        self._stopping = False
        self._registered = False

    # ---- set up and tear down -------------------------------------------------------------

    def start(self) -> bool:
        """Serve the views (when the HTTP API runs) and take the runtime's deliveries."""
        server = self.hub.data.get(DATA_HTTP)
        if server is None:
            _LOGGER.debug("No HTTP API: machines reach the hub over MQTT only")
            return False
        self.runtime.http_transport = self
        for view in VIEWS:
            server.register_view(view)
        self._registered = True
        # Connections of an earlier run are gone, whether or not they said so.
        self.hub.bus.async_fire(
            EVENT_MACHINE_CONNECTION, {"transport": TRANSPORT, "state": STATE_RESET}
        )
        _LOGGER.info("Machines without a broker connect to %s%s", server.url, URL_WEBSOCKET)
        return True

    async def async_stop(self) -> None:
        """Stop serving, close every machine's WebSocket (no last wills: the hub stops)."""
        self._stopping = True
        if self.runtime.http_transport is self:
            self.runtime.http_transport = None
        server = self.hub.data.get(DATA_HTTP)
        if self._registered and server is not None:
            for view in VIEWS:
                server.unregister_view(view)
        self._registered = False
        sockets = [s for group in self._sockets.values() for s in group]
        for socket in sockets:
            socket.close(CLOSE_GOING_AWAY, "the hub is stopping")
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.done.set()

    # ---- connections ----------------------------------------------------------------------

    def sockets(self, machine_id: str) -> list[MachineSocket]:
        """The machine's open WebSockets, oldest first."""
        return list(self._sockets.get(machine_id, ()))

    def _live(self, machine_id: str) -> MachineSocket | None:
        for socket in reversed(self._sockets.get(machine_id, ())):
            if not socket.closing:
                return socket
        return None

    def attach(self, socket: MachineSocket) -> None:
        """A machine signed in: note the connection, say so, send its config."""
        group = self._sockets.setdefault(socket.machine_id, [])
        group.append(socket)
        self.stats.connections += 1
        _LOGGER.info(
            "Machine %s connected over a WebSocket from %s%s",
            socket.machine_id,
            socket.remote,
            f" ({len(group)} connections with its credentials)" if len(group) > 1 else "",
        )
        self._fire_connection(socket, STATE_CONNECTED)
        record = self.runtime.directory.get(socket.machine_id)
        if record is not None and record.adopted and record.config is not None:
            message = self.runtime.config_message(record)
            socket.send(frame(protocol.KIND_CONFIG, protocol.encode(message)))

    async def async_detach(self, socket: MachineSocket) -> None:
        """The connection ended: its last will (offline), then ``disconnected``."""
        group = self._sockets.get(socket.machine_id, [])
        if socket in group:
            group.remove(socket)
        if not group:
            self._sockets.pop(socket.machine_id, None)
        will = socket.online_status
        if will is not None and not self._stopping:
            message = {
                **{key: will[key] for key in ("model", "firmware", "session") if key in will},
                "v": protocol.PROTOCOL_VERSION,
                "state": protocol.STATUS_OFFLINE,
                "ts": protocol.format_time(utcnow()),
            }
            try:
                await self.runtime.async_handle_inbound(
                    socket.machine_id, protocol.KIND_STATUS, message
                )
            except Exception:
                _LOGGER.exception("Last will of %r failed", socket)
        _LOGGER.info("Machine %s: WebSocket from %s closed", socket.machine_id, socket.remote)
        self._fire_connection(socket, STATE_DISCONNECTED)

    def _fire_connection(self, socket: MachineSocket, state: str) -> None:
        with contextlib.suppress(HubNotRunning):
            self.hub.bus.async_fire(
                EVENT_MACHINE_CONNECTION,
                {
                    "machine_id": socket.machine_id,
                    "connection_id": socket.id,
                    "transport": TRANSPORT,
                    "remote": socket.remote,
                    "state": state,
                },
                context=context_for(socket.identity),
            )

    # ---- from machines --------------------------------------------------------------------

    def refuse(self, socket: MachineSocket, reason: str, detail: str) -> None:
        """Answer a frame that is not a protocol message of this machine, and count it."""
        self.stats.refused_frames += 1
        machine_id = socket.machine_id
        self.runtime._count_error(
            machine_id, reason, detail, adopted=machine_id in self.runtime.entities
        )
        message = {"v": protocol.PROTOCOL_VERSION, "reason": reason, "message": detail}
        socket.send(frame("error", protocol.encode(message)))

    async def async_handle_frame(self, socket: MachineSocket, text: str) -> None:
        """One text frame of a signed-in machine."""
        self.stats.frames_in += 1
        try:
            value = _JSON.decode(text)
        except (ValueError, RecursionError) as error:
            self.refuse(socket, REASON_BAD_FRAME, f"the frame is not valid JSON: {error}")
            return
        if not isinstance(value, dict):
            self.refuse(socket, REASON_BAD_FRAME, "a frame is a JSON object")
            return
        if value.get("type") == "auth":
            socket.renew(value.get("access_token"))
            return
        claimed = value.get("machine_id")
        if claimed is not None and claimed != socket.machine_id:
            self.refuse(
                socket,
                REASON_WRONG_MACHINE,
                f"signed in as {socket.machine_id}, the frame speaks for {str(claimed)[:64]!r}",
            )
            return
        kind = value.get("kind")
        if kind not in INBOUND_KINDS:
            self.refuse(
                socket,
                REASON_BAD_FRAME,
                f"unknown kind {str(kind)[:64]!r}; a machine sends {', '.join(INBOUND_KINDS)}",
            )
            return
        payload = value.get("payload")
        if kind == protocol.KIND_STATUS and isinstance(payload, dict):
            self._track_status(socket, payload)
        await self.runtime.async_handle_inbound(socket.machine_id, kind, payload)

    @staticmethod
    def _track_status(socket: MachineSocket, payload: dict[str, Any]) -> None:
        try:
            status = protocol.validate(protocol.KIND_STATUS, payload)
        except protocol.ProtocolError:
            return  # the handler counts it
        if status["state"] == protocol.STATUS_ONLINE:
            socket.online_status = payload
        else:
            socket.online_status = None  # it said goodbye itself: no will

    async def async_post_events(
        self, identity: Identity, events: list[Any], wait: float
    ) -> tuple[int, dict[str, Any]]:
        """Hand ``events`` to the link; wait up to ``wait`` s for their acks (after commit)."""
        self.stats.posts += 1
        machine_id = identity.machine_id or ""
        rejected: list[dict[str, Any]] = []
        ids: list[str] = []
        for index, event in enumerate(events):
            try:
                valid = protocol.validate(protocol.KIND_EVENT, event)
            except protocol.ProtocolError as error:
                raw_id = event.get("id") if isinstance(event, dict) else None
                rejected.append(
                    {
                        "index": index,
                        "id": raw_id if isinstance(raw_id, str) else None,
                        "reason": str(error),
                    }
                )
                continue
            if valid["id"] not in ids:
                ids.append(valid["id"])
        adopted = machine_id in self.runtime.entities
        waiter = _AckWaiter(set(ids))
        if adopted and ids:
            self._waiters.setdefault(machine_id, []).append(waiter)
        try:
            for event in events:  # invalid ones too: the link counts them, as over MQTT
                await self.runtime.async_handle_inbound(machine_id, protocol.KIND_EVENT, event)
            if adopted and waiter.pending and wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.done.wait(), wait)
        finally:
            waiters = self._waiters.get(machine_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    self._waiters.pop(machine_id, None)
        answer: dict[str, Any] = {
            "acked": [i for i in ids if i not in waiter.pending],
            "pending": [i for i in ids if i in waiter.pending],
            "rejected": rejected,
        }
        if not adopted:
            answer["message"] = (
                f"machine {machine_id} is not adopted yet: keep its events and send them again "
                "once it is"
            )
        return (202 if answer["pending"] else 200), answer

    # ---- to machines (asked by the runtime) -----------------------------------------------

    async def async_deliver(self, machine_id: str, kind: str, payload: bytes) -> bool:
        """Send an encoded message to the machine's live WebSocket; False when it has none."""
        socket = self._live(machine_id)
        return socket is not None and socket.send(frame(kind, payload))

    async def async_deliver_ack(self, machine_id: str, message: dict[str, Any]) -> bool:
        """Settle POSTs waiting for these ids and send the ack to the WebSocket, if any.

        True when nothing is left for MQTT to carry.
        """
        ids: list[str] = message["ids"]
        settled: set[str] = set()
        for waiter in self._waiters.get(machine_id, ()):
            found = waiter.pending.intersection(ids)
            if found:
                waiter.pending.difference_update(found)
                settled.update(found)
                if not waiter.pending:
                    waiter.done.set()
        if await self.async_deliver(machine_id, protocol.KIND_ACK, protocol.encode(message)):
            return True
        return len(settled) == len(set(ids))


# ---- the views -------------------------------------------------------------------------------


def _transport(hub: Hub) -> MachineHttpTransport:
    runtime = hub.data.get(DOMAIN)
    transport = getattr(runtime, "http_transport", None)
    if transport is None:
        raise ApiError(503, "unavailable", "the machine link is not running")
    return transport


EVENT_MESSAGE = {"type": "object", "description": "A protocol event message (docs/protocol.md)."}


class MachineWebSocketView(ApiView):
    url = URL_WEBSOCKET
    name = "api:machine:websocket"

    @operation(
        summary="The machine protocol over a WebSocket, for machines without a broker.",
        description=(
            "Upgrade with `Upgrade: websocket` (and `Authorization: Bearer <machine token>`, "
            'or sign in with `{"type": "auth", "access_token": "..."}` first), then send '
            '`{"kind": "status|announce|telemetry|event|cmd_result", "payload": {...}}`; the hub '
            'sends `{"kind": "ack|config|cmd/<name>", "payload": {...}}`. docs/protocol.md, '
            "HTTP transport."
        ),
        machines=True,
        users=False,
        websocket=True,
        tags=("machines",),
    )
    async def get(self, request: web.Request) -> web.StreamResponse:
        transport = _transport(self.hub)
        if not is_websocket_upgrade(request):
            identity_of(request)
            raise ApiError(426, "upgrade_required", "upgrade this request to a WebSocket")
        return await MachineSocket(transport, request).async_handle()


EVENTS_ANSWER = {
    "type": "object",
    "required": ["acked", "pending", "rejected"],
    "properties": {
        "acked": {"type": "array", "items": {"type": "string"}},
        "pending": {"type": "array", "items": {"type": "string"}},
        "rejected": {"type": "array", "items": {"type": "object"}},
        "message": {"type": "string"},
    },
}


class MachineEventsView(ApiView):
    url = URL_EVENTS
    name = "api:machine:events"

    @operation(
        summary="A machine sends events; the answer lists those the hub has durably handled.",
        description=(
            "The body is a list of protocol event messages. The answer comes once every event "
            "is acknowledged (ledger events after the recorder's commit): 200 with `acked`; or "
            "after `wait` seconds: 202 with the ids still `pending`, to send again later. "
            "Invalid events are `rejected` with the reason and never acknowledged."
        ),
        machines=True,
        users=False,
        query={
            "wait": {"type": "number", "minimum": 0, "maximum": MAX_EVENTS_WAIT},
            "machine_id": {"type": "string", "maxLength": 64},
        },
        body={
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_EVENTS_PER_POST,
            "items": EVENT_MESSAGE,
        },
        responses={200: EVENTS_ANSWER, 202: EVENTS_ANSWER},
        tags=("machines",),
    )
    async def post(self, request: web.Request) -> web.Response:
        transport = _transport(self.hub)
        identity = identity_of(request)
        claimed = query(request).get("machine_id")
        if claimed is not None and claimed != identity.machine_id:
            transport.stats.refused_frames += 1
            transport.runtime._count_error(
                identity.machine_id,
                REASON_WRONG_MACHINE,
                f"signed in as {identity.machine_id}, the request speaks for {claimed[:64]!r}",
                adopted=identity.machine_id in transport.runtime.entities,
            )
            raise forbidden("a machine sends only its own events")
        wait = float(query(request).get("wait", DEFAULT_EVENTS_WAIT))
        status, answer = await transport.async_post_events(identity, body(request), wait)
        return web.json_response(answer, status=status)


VIEWS: tuple[type[ApiView], ...] = (MachineWebSocketView, MachineEventsView)
