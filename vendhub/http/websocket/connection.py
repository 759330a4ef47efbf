"""One WebSocket connection: the auth phase, the message loop, the send queue and its writer.

The hub side only ever calls ``async_send``, which appends to a bounded queue; nothing the
hub does waits for a client. The manager flushes every connection with something queued at
most once per ``flush_interval``: while the client keeps up, its frames go to the socket in
one write (one JSON array per frame when it asked for ``coalesce_messages``); when the
socket's buffer is not empty, a writer task sends through aiohttp, waiting on the
transport's flow control, and messages wait in the queue. A client that lets more than
``peak_pending`` messages wait for ``peak_seconds``, or more than ``max_pending`` at any
moment, is closed with 1008 and a reason, and logged.

Whatever a client sends, the handler answers with an error result and goes on; only the auth
phase closes on bad input. Nothing raises out of ``async_handle``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from vendhub.auth.manager import DATA_AUTH
from vendhub.auth.roles import Permission
from vendhub.core.errors import HubNotRunning
from vendhub.http.errors import ApiError
from vendhub.http.keys import IDENTITY_KEY, SESSION_KEY
from vendhub.http.websocket import messages
from vendhub.http.websocket.commands import COMMANDS
from vendhub.http.websocket.messages import (
    CLOSE_POLICY,
    ERR_ID_REUSE,
    ERR_INVALID_FORMAT,
    ERR_INVALID_JSON,
    ERR_TOO_LARGE,
    ERR_TOO_MANY,
    ERR_UNKNOWN,
    ERR_UNKNOWN_COMMAND,
    error_message,
)

if TYPE_CHECKING:
    from vendhub.auth.identity import Identity
    from vendhub.auth.manager import AuthManager
    from vendhub.core.hub import Hub
    from vendhub.http.websocket.manager import WebSocketManager

_LOGGER = logging.getLogger(__name__)

MAX_ID = 2**53 - 1
MAX_TOKEN_CHARS = 8192
KNOWN_TYPES = ", ".join(sorted(COMMANDS))


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"the key {key[:64]!r} appears twice in one object")
            seen.add(key)
    return result


def parse(text: str) -> Any:
    """The JSON value of ``text``; ValueError (with a readable message) when it is not JSON."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey:
        raise
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    except ValueError as error:
        raise ValueError(f"not valid JSON: {str(error)[:200]}") from None


def refusal(identity: Identity) -> str | None:
    """Why ``identity`` may not use the WebSocket API, or None when it may."""
    if identity.is_machine:
        return "machine credentials cannot use this API; machines have their own transport"
    if not identity.has(Permission.read):
        return "your role may not read the hub's states"
    return None


def still_valid(auth: AuthManager | None, identity: Identity) -> bool:
    """Whether the sign-in behind ``identity`` still holds, unchanged (role, machines)."""
    if auth is None or identity.token_id is None or identity.user_id is None:
        return False
    record = auth.token(identity.token_id)
    if record is None or record.expired(time.time()):
        return False
    user = auth.user(identity.user_id)
    if user is None or not user.active or user.role is not identity.role:
        return False
    machine_ids = frozenset(user.machine_ids or ()) if user.role.machine_scoped else None
    return machine_ids == identity.machine_ids


def _same_origin(request: web.Request) -> bool:
    """A browser's upgrade must come from a page of this server (no cross-site hijacking)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        return urlsplit(origin).netloc.lower() == request.host.lower()
    except ValueError:
        return False


class WebSocketConnection:
    """The handler of one ``/api/websocket`` connection."""

    def __init__(self, manager: WebSocketManager, request: web.Request) -> None:
        self.manager = manager
        self.hub: Hub = manager.hub
        self.settings = manager.settings
        self.request = request
        self.ws = web.WebSocketResponse(
            heartbeat=self.settings.heartbeat,
            max_msg_size=self.settings.max_frame_bytes,
            compress=False,
        )
        self.identity: Identity | None = None
        self.subscriptions: dict[int, Callable[[], None]] = {}
        self.coalesce = False
        self.calls = 0
        self.sent = 0
        self._queue: deque[bytes] = deque()
        self._dirty = False
        self._writer: asyncio.Task[None] | None = None
        self._peak_handle: asyncio.TimerHandle | None = None
        self._recheck_handle: asyncio.TimerHandle | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_id = 0
        self._peak_pending = self.settings.peak_pending
        self._transport = request.transport
        self._loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        who = self.identity.name if self.identity is not None else "not signed in"
        return f"<WebSocket {self.request.remote} {who}>"

    @property
    def pending(self) -> int:
        """Messages queued and not yet handed to the socket."""
        return len(self._queue)

    # ---- the request handler -----------------------------------------------------------

    async def async_handle(self) -> web.WebSocketResponse:
        """Serve the connection until either side closes it; never raises (but cancellation)."""
        ws = self.ws
        await ws.prepare(self.request)
        self.manager.connections.add(self)
        try:
            self.identity = await self._async_authenticate()
            if self.identity is not None and not self._closing:
                self._schedule_recheck()
                await self._async_message_loop()
        except asyncio.CancelledError:
            self.async_close(messages.CLOSE_GOING_AWAY, "the server is stopping")
            raise
        except Exception:
            _LOGGER.exception("WebSocket handler of %r failed; closing it", self)
        finally:
            self.async_close(messages.CLOSE_GOING_AWAY, "closing")
            await self._async_finish()
        return ws

    async def _async_finish(self) -> None:
        try:
            if self._close_task is not None:
                await asyncio.wait([self._close_task], timeout=self.settings.close_timeout + 1)
        finally:
            self.manager.connections.discard(self)
            if self._writer is not None and not self._writer.done():
                self._writer.cancel()
            self._abort()

    # ---- authentication ----------------------------------------------------------------

    def _upgrade_identity(self) -> Identity | None:
        """The identity the upgrade request itself carried (bearer header or session cookie)."""
        identity: Identity | None = self.request.get(IDENTITY_KEY)
        if identity is None:
            return None
        if self.request.get(SESSION_KEY) and not _same_origin(self.request):
            _LOGGER.warning(
                "WebSocket upgrade from %s with a session cookie but from another origin (%s); "
                "it must sign in with a token",
                self.request.remote,
                self.request.headers.get("Origin", "")[:200],
            )
            return None
        return identity

    async def _async_authenticate(self) -> Identity | None:
        identity = self._upgrade_identity()
        if identity is None:
            await self._async_send_now(messages.auth_required())
            identity = await self._async_read_auth()
            if identity is None:
                return None
        problem = refusal(identity)
        if problem is not None:
            await self._async_refuse(problem)
            return None
        await self._async_send_now(messages.auth_ok())
        _LOGGER.debug("WebSocket %s signed in as %s", self.request.remote, identity.name)
        return identity

    async def _async_read_auth(self) -> Identity | None:
        try:
            message = await self.ws.receive(timeout=self.settings.auth_timeout)
        except TimeoutError:
            await self._async_refuse(f"no auth message within {self.settings.auth_timeout:g} s")
            return None
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return None
        if message.type is WSMsgType.ERROR:
            self._log_transport_error(message.data)
            return None
        if message.type is not WSMsgType.TEXT:
            await self._async_refuse('send {"type": "auth", "access_token": "..."} as JSON text')
            return None
        text = message.data
        if len(text) > self.settings.max_message_bytes:
            await self._async_refuse("the auth message is too large")
            return None
        try:
            value = parse(text)
        except ValueError as error:
            await self._async_refuse(f"the auth message is {error}")
            return None
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
        auth: AuthManager | None = self.hub.data.get(DATA_AUTH)
        identity = auth.validate_access_token(token) if auth is not None else None
        if identity is None:
            await self._async_refuse("the access token is invalid or has expired")
            return None
        return identity

    async def _async_refuse(self, reason: str) -> None:
        _LOGGER.warning("WebSocket sign-in from %s refused: %s", self.request.remote, reason)
        await self._async_send_now(messages.auth_invalid(reason))
        self.async_close(CLOSE_POLICY, "authentication failed")

    async def _async_send_now(self, data: bytes) -> None:
        """Send at once, bypassing the queue (only before the writer runs)."""
        if self.ws.closed:
            return
        try:
            async with asyncio.timeout(self.settings.close_timeout):
                await self.ws.send_frame(data, WSMsgType.TEXT)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass

    def _schedule_recheck(self) -> None:
        self._recheck_handle = self._loop.call_later(self.settings.recheck_seconds, self._recheck)

    def _recheck(self) -> None:
        self._recheck_handle = None
        if self._closing or self.identity is None:
            return
        if not self.async_identity_valid():
            return
        self._schedule_recheck()

    def async_identity_valid(self) -> bool:
        """Whether the sign-in still holds; when it does not, the connection is closed."""
        assert self.identity is not None
        if still_valid(self.hub.data.get(DATA_AUTH), self.identity):
            return True
        _LOGGER.info("WebSocket %r closed: its sign-in ended or changed", self)
        self.async_close(CLOSE_POLICY, "your sign-in ended or changed; sign in again")
        return False

    # ---- messages from the client ----------------------------------------------------------

    async def _async_message_loop(self) -> None:
        ws = self.ws
        while not self._closing:
            message = await ws.receive()
            if message.type is WSMsgType.TEXT:
                self.async_handle_text(message.data)
            elif message.type is WSMsgType.BINARY:
                self.async_send(
                    error_message(
                        None,
                        ERR_INVALID_FORMAT,
                        "binary frames are not accepted: send each message as JSON text",
                    )
                )
            elif message.type is WSMsgType.ERROR:
                self._log_transport_error(message.data)
                return
            else:  # CLOSE, CLOSING, CLOSED
                return

    def _log_transport_error(self, error: Any) -> None:
        _LOGGER.info("WebSocket %r closed by a protocol error: %s", self, error)

    def async_handle_text(self, text: str) -> None:
        """Answer one text frame: a result, an error result, or what its command sends."""
        try:
            self._handle_text(text)
        except Exception:
            _LOGGER.exception("Error answering a WebSocket message of %r", self)
            self.async_send(error_message(None, ERR_UNKNOWN, "the hub failed; see its log"))

    def _handle_text(self, text: str) -> None:
        limit = self.settings.max_message_bytes
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            self.async_send(
                error_message(None, ERR_TOO_LARGE, f"a message may have at most {limit} bytes")
            )
            return
        try:
            value = parse(text)
        except ValueError as error:
            self.async_send(error_message(None, ERR_INVALID_JSON, str(error)))
            return
        if not isinstance(value, dict):
            self.async_send(
                error_message(None, ERR_INVALID_FORMAT, "a message must be a JSON object")
            )
            return
        msg_id = value.get("id")
        if type(msg_id) is not int or not 0 < msg_id <= MAX_ID:
            self.async_send(
                error_message(
                    None,
                    ERR_INVALID_FORMAT,
                    'a message needs an "id": a positive integer, greater than the last one',
                )
            )
            return
        if msg_id <= self._last_id:
            self.async_send(
                error_message(
                    msg_id,
                    ERR_ID_REUSE,
                    f"id {msg_id} is not greater than the previous id {self._last_id}",
                )
            )
            return
        self._last_id = msg_id
        kind = value.get("type")
        if not isinstance(kind, str):
            self.async_send(
                error_message(msg_id, ERR_INVALID_FORMAT, 'a message needs a "type" string')
            )
            return
        command = COMMANDS.get(kind)
        if command is None:
            self.async_send(
                error_message(
                    msg_id,
                    ERR_UNKNOWN_COMMAND,
                    f"unknown type {kind[:64]!r}; known types: {KNOWN_TYPES}",
                )
            )
            return
        problems = command.problems(value)
        if problems:
            self.async_send(
                error_message(
                    msg_id, ERR_INVALID_FORMAT, f"invalid {kind}: {problems[0]}", problems
                )
            )
            return
        outcome = command.handler(self, msg_id, value)
        if outcome is not None:
            self._start_call(msg_id, outcome)

    def _start_call(self, msg_id: int, call: Awaitable[None]) -> None:
        if self.calls >= self.settings.max_calls:
            if asyncio.iscoroutine(call):
                call.close()
            self.async_send(
                error_message(
                    msg_id,
                    ERR_TOO_MANY,
                    f"at most {self.settings.max_calls} calls may run at once on a connection",
                )
            )
            return
        try:
            self.hub.async_create_task(
                self._async_run_call(msg_id, call), name=f"websocket call {msg_id}"
            )
        except HubNotRunning:
            if asyncio.iscoroutine(call):
                call.close()
            self.async_send(error_message(msg_id, ERR_UNKNOWN, "the hub is stopping"))
            return
        self.calls += 1

    async def _async_run_call(self, msg_id: int, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception:
            _LOGGER.exception("Error answering WebSocket message %d of %r", msg_id, self)
            self.async_send(error_message(msg_id, ERR_UNKNOWN, "the hub failed; see its log"))
        finally:
            self.calls -= 1

    # ---- messages to the client ----------------------------------------------------------

    def async_send(self, message: bytes) -> None:
        """Queue ``message`` for the client; never waits. A client too far behind is dropped."""
        if self._closing:
            return
        queue = self._queue
        queue.append(message)
        if len(queue) > self._peak_pending:
            if len(queue) > self.settings.max_pending:
                self._drop_slow(f"more than {self.settings.max_pending} messages waiting")
                return
            if self._peak_handle is None:
                self._peak_handle = self._loop.call_later(
                    self.settings.peak_seconds, self._check_peak
                )
        if not self._dirty:
            self._dirty = True
            self.manager.async_schedule_flush(self)

    def _check_peak(self) -> None:
        self._peak_handle = None
        if len(self._queue) > self.settings.peak_pending:
            self._drop_slow(
                f"more than {self.settings.peak_pending} messages waiting for "
                f"{self.settings.peak_seconds:g} s"
            )

    def _drop_slow(self, why: str) -> None:
        self.manager.dropped_slow += 1
        _LOGGER.warning(
            "WebSocket client %r dropped: it reads too slowly (%s, %d subscriptions)",
            self,
            why,
            len(self.subscriptions),
        )
        self.async_close(CLOSE_POLICY, f"too slow: {why}")

    def _take(self, limit: int) -> list[bytes]:
        """Up to ``limit`` queued messages, oldest first."""
        queue = self._queue
        if limit >= len(queue):
            batch = list(queue)
            queue.clear()
        else:
            batch = [queue.popleft() for _ in range(limit)]
        self.sent += len(batch)
        if self._peak_handle is not None and len(queue) <= self._peak_pending:
            self._peak_handle.cancel()
            self._peak_handle = None
        return batch

    def async_flush(self, frames: messages.FrameCache) -> None:
        """Hand what is queued to the socket now (the manager calls this once per flush,
        with the frames it made so far).

        While the socket keeps up (nothing left in its buffer), the frames are written to the
        transport at once, all of them in one write: server frames are unmasked, and this
        server never compresses, so a frame is a header and the JSON. Once the buffer holds
        anything, a writer task takes over and sends through aiohttp, which waits on the
        transport's flow control; messages wait in the queue meanwhile, where the limits
        apply.
        """
        self._dirty = False
        if self._closing or not self._queue:
            return
        if self._writer is not None:
            return  # the writer task is sending; it takes what is queued
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size():
            self._writer = self._loop.create_task(
                self._async_write(), name=f"websocket writer {self.request.remote}"
            )
            return
        transport.write(frames.data(self._take(len(self._queue)), self.coalesce))

    async def _async_write(self) -> None:
        ws = self.ws
        queue = self._queue
        text = WSMsgType.TEXT
        try:
            while queue and not self._closing:
                # A batch at a time, so the queue keeps counting what the client is behind.
                batch = self._take(messages.MAX_FRAME_MESSAGES)
                for payload in messages.payloads(batch, self.coalesce):
                    await ws.send_frame(payload, text)
        except (ConnectionError, RuntimeError) as error:
            _LOGGER.debug("WebSocket %r: the writer stopped: %s", self, error)
        finally:
            self._writer = None

    # ---- closing -----------------------------------------------------------------------

    def async_close(self, code: int, reason: str) -> None:
        """Close the connection (at most once): stop its subscriptions, then the socket."""
        if self._close_task is not None:
            return
        self._closing = True
        self.manager.connections.discard(self)
        self._queue.clear()
        for handle in (self._peak_handle, self._recheck_handle):
            if handle is not None:
                handle.cancel()
        self._peak_handle = self._recheck_handle = None
        for unsubscribe in self.subscriptions.values():
            unsubscribe()
        self.subscriptions.clear()
        self._close_task = self._loop.create_task(
            self._async_close(code, reason), name=f"websocket close {self.request.remote}"
        )

    async def async_wait_closed(self) -> None:
        if self._close_task is not None:
            await asyncio.shield(self._close_task)

    async def _async_close(self, code: int, reason: str) -> None:
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            await asyncio.wait([writer])
        if self.ws.closed or not self.ws.prepared:
            return
        try:
            async with asyncio.timeout(self.settings.close_timeout):
                await self.ws.close(code=code, message=reason.encode()[:123])
        except TimeoutError:
            _LOGGER.debug("WebSocket %r did not take its close frame; aborting", self)
            self._abort()
        except Exception as error:  # the socket is gone already
            _LOGGER.debug("WebSocket %r: closing failed: %s", self, error)
            self._abort()

    def _abort(self) -> None:
        transport = self._transport
        if transport is not None and (
            not transport.is_closing() or transport.get_write_buffer_size()
        ):
            transport.abort()


async def async_handle_websocket(
    manager: WebSocketManager, request: web.Request
) -> web.StreamResponse:
    """Serve ``request`` as a WebSocket connection; 426 when it is not an upgrade."""
    if not web.WebSocketResponse().can_prepare(request).ok:
        raise ApiError(
            426,
            "upgrade_required",
            "this is the WebSocket API: connect with a WebSocket client (Upgrade: websocket)",
            headers={"Upgrade": "websocket", "Connection": "Upgrade"},
        )
    return await WebSocketConnection(manager, request).async_handle()
