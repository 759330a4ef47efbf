"""The machine agent over HTTP: for machines that cannot reach a broker.

``HttpMachineAgent`` is a ``MachineAgent`` whose link is the hub's machine WebSocket
(``/api/machine/websocket``, docs/protocol.md "HTTP transport") instead of an MQTT client.
Everything else is the agent's own and shared with MQTT: the on-disk outbox and its resends
until acked, the ``seq`` counter, telemetry, commands (results by correlation id, repeats
answered from memory, expired ones refused), configs, the backoff between attempts and the
``online`` / ``offline`` status with a session id per connection.

``WebSocketHubClient`` stands in for the ``aiomqtt.Client`` the agent drives: ``publish`` of a
topic sends ``{"kind", "payload"}``; the hub's ``ack``, ``config`` and ``cmd/<name>`` frames
come out of ``messages`` as messages on the agent's own topics. A connection is: sign in with
the machine's credentials (``POST /api/auth/login``, grant ``machine``), open the WebSocket
with the token, wait for ``auth_ok``. The token is renewed in-band before it expires. There is
no last will to send: the hub takes the socket closing as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import aiomqtt

from vendhub.machine import protocol
from vendhub.machine.agent import OPERATION_TIMEOUT, MachineAgent

_LOGGER = logging.getLogger(__name__)

LOGIN_PATH: Final = "/api/auth/login"
WEBSOCKET_PATH: Final = "/api/machine/websocket"
DEFAULT_HTTP_PORT: Final = 8700
HEARTBEAT: Final = 30.0
RENEW_AT: Final = 0.5  # renew the access token after this share of its lifetime
_MAX_FRAME = protocol.MAX_PAYLOAD_BYTES + 4096


class HubLinkError(aiomqtt.MqttError):
    """The HTTP link failed (the agent treats it as a lost connection and retries)."""


@dataclass(frozen=True, slots=True)
class _Topic:
    value: str


@dataclass(frozen=True, slots=True)
class HubMessage:
    """A frame from the hub, shaped like the ``aiomqtt.Message`` the agent reads."""

    topic: _Topic
    payload: bytes


class WebSocketHubClient:
    """One connection to the hub's machine WebSocket, with the surface of ``aiomqtt.Client``
    that ``MachineAgent`` uses: ``async with``, ``subscribe``, ``publish``, ``messages``."""

    def __init__(
        self,
        base_url: str,
        machine_id: str,
        password: str | None,
        *,
        prefix: str,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = OPERATION_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.machine_id = machine_id
        self.password = password
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.prefix = prefix
        self._kinds = {
            protocol.topic(machine_id, kind, prefix): kind for kind in protocol.MACHINE_KINDS
        }
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._renewal: asyncio.Task[None] | None = None

    # ---- connecting -----------------------------------------------------------------------

    async def __aenter__(self) -> WebSocketHubClient:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
        )
        try:
            token, lifetime = await self._sign_in()
            self._ws = await self._session.ws_connect(
                self.base_url + WEBSOCKET_PATH,
                headers={"Authorization": f"Bearer {token}"},
                heartbeat=HEARTBEAT,
                max_msg_size=_MAX_FRAME,
                ssl=self.ssl_context if self.ssl_context is not None else True,
            )
            answer = await self._ws.receive(timeout=self.timeout)
            if answer.type is not aiohttp.WSMsgType.TEXT:
                raise HubLinkError(f"the hub closed the WebSocket at sign-in ({answer.extra})")
            hello = json.loads(answer.data)
            if hello.get("type") != "auth_ok":
                raise HubLinkError(f"the hub refused the sign-in: {hello.get('message', hello)}")
        except BaseException as error:
            await self._close()
            if isinstance(error, aiohttp.ClientError | OSError | TimeoutError | ValueError):
                raise HubLinkError(_describe(error)) from error
            raise
        self._renewal = asyncio.create_task(
            self._renew(lifetime), name=f"agent {self.machine_id} token renewal"
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewal
            self._renewal = None
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), self.timeout)
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _sign_in(self) -> tuple[str, float]:
        assert self._session is not None
        if not self.password:
            raise HubLinkError(
                f"machine {self.machine_id} has no password: the hub's HTTP transport needs "
                "the credentials 'vendhub machine add' printed"
            )
        async with self._session.post(
            self.base_url + LOGIN_PATH,
            json={
                "grant_type": "machine",
                "machine_id": self.machine_id,
                "password": self.password,
            },
            ssl=self.ssl_context if self.ssl_context is not None else True,
        ) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = {}
            if response.status != 200:
                error = body.get("error", {}) if isinstance(body, dict) else {}
                raise HubLinkError(
                    f"the hub refused machine {self.machine_id}'s credentials "
                    f"({response.status} {error.get('message', response.reason)})"
                )
        return str(body["access_token"]), float(body.get("expires_in", 3600))

    async def _renew(self, lifetime: float) -> None:
        """Sign in again before the token expires and hand the new one to the open socket."""
        while True:
            await asyncio.sleep(max(5.0, lifetime * RENEW_AT))
            try:
                token, lifetime = await self._sign_in()
                assert self._ws is not None
                await self._ws.send_str(json.dumps({"type": "auth", "access_token": token}))
            except Exception as error:  # the hub closes the socket at expiry; we reconnect
                _LOGGER.warning(
                    "Machine %s could not renew its access token: %s", self.machine_id, error
                )
                lifetime = 60.0 / RENEW_AT

    # ---- what the agent calls -------------------------------------------------------------

    async def subscribe(self, *_args: Any, **_kwargs: Any) -> None:
        """Nothing to subscribe to: the hub sends this machine's messages on its socket."""

    async def publish(
        self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False
    ) -> None:
        """Send one protocol message of the kind ``topic`` names."""
        kind = self._kinds.get(topic)
        if kind is None:
            raise HubLinkError(f"{topic} is not one of machine {self.machine_id}'s topics")
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        ws = self._ws
        if ws is None or ws.closed:
            raise HubLinkError("not connected")
        try:
            await ws.send_str(f'{{"kind":{json.dumps(kind)},"payload":{text}}}')
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as error:
            raise HubLinkError(_describe(error)) from error

    @property
    def messages(self) -> AsyncIterator[HubMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[HubMessage]:
        ws = self._ws
        if ws is None:
            raise HubLinkError("not connected")
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                value = json.loads(message.data)
                kind = value.get("kind")
            except (ValueError, AttributeError):
                _LOGGER.warning(
                    "Machine %s: the hub sent a frame that is not JSON", self.machine_id
                )
                continue
            if value.get("type") == "auth_ok":
                continue  # a renewed token was taken
            if kind == "error":
                _LOGGER.warning(
                    "Machine %s: the hub refused a frame: %s",
                    self.machine_id,
                    (value.get("payload") or {}).get("message"),
                )
                continue
            if not isinstance(kind, str) or not _is_hub_kind(kind):
                _LOGGER.debug("Machine %s: ignored a frame of kind %r", self.machine_id, kind)
                continue
            payload = json.dumps(value.get("payload"), separators=(",", ":")).encode()
            yield HubMessage(_Topic(protocol.topic(self.machine_id, kind, self.prefix)), payload)
        raise HubLinkError(f"the hub closed the WebSocket (code {ws.close_code})")


def _is_hub_kind(kind: str) -> bool:
    """``ack``, ``config`` or ``cmd/<name>``: what the hub sends a machine."""
    if kind in (protocol.KIND_ACK, protocol.KIND_CONFIG):
        return True
    name = protocol.command_name(kind)
    return name is not None and protocol.is_machine_id(name)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


class HttpMachineAgent(MachineAgent):
    """A ``MachineAgent`` on the hub's HTTP transport: ``broker_host`` / ``broker_port`` are
    the hub's HTTP API, ``tls`` means HTTPS; it signs in as ``machine_id`` with ``password``.
    """

    def __init__(self, machine_id: str, **options: Any) -> None:
        options.setdefault("broker_port", DEFAULT_HTTP_PORT)
        super().__init__(machine_id, **options)
        if self.username not in (None, machine_id):
            raise ValueError(
                f"machine {machine_id} signs in to the hub as itself, not as {self.username!r}"
            )

    @property
    def hub_url(self) -> str:
        scheme = "https" if self._tls_context is not None else "http"
        host = f"[{self.broker_host}]" if ":" in self.broker_host else self.broker_host
        return f"{scheme}://{host}:{self.broker_port}"

    def _make_client(self) -> Any:
        self.session = uuid.uuid4().hex  # this connection's: its online status carries it
        return WebSocketHubClient(
            self.hub_url,
            self.machine_id,
            self.password,
            prefix=self.prefix,
            ssl_context=self._tls_context,
        )
