"""A real Mosquitto per test module, and a small aiomqtt client that plays a vending machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from vendhub.machine import protocol

TS = "2024-05-06T12:00:00.000+00:00"


@dataclass(frozen=True, slots=True)
class Received:
    """One message a test machine received."""

    kind: str
    payload: bytes
    retain: bool
    at: float  # loop time

    @property
    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else None


def slots(**overrides: Any) -> dict[str, dict[str, Any]]:
    """The two slots every test machine announces."""
    result = {
        "A1": {"product": "Cola", "price": 150, "capacity": 10, "par": 3, "stock": 8},
        "A2": {"product": "Crisps", "price": 120, "capacity": 8, "par": 2, "stock": 5},
    }
    result.update(overrides)
    return result


def vend_data(vend_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """The data of a cash vend from slot A1."""
    data = {
        "vend_id": vend_id or uuid.uuid4().hex,
        "slot": "A1",
        "product": "Cola",
        "price": 150,
        "payment_method": "cash",
    }
    data.update(extra)
    return data


def _forget_disconnect_error(client: aiomqtt.Client) -> None:
    """Mark the error of a lost connection as seen (aiomqtt keeps it in a future that nothing
    reads when the connection dies outside ``async for``), so asyncio does not report it."""
    disconnected = client._disconnected
    if disconnected.done() and not disconnected.cancelled():
        disconnected.exception()


class TestMachine:
    """A vending machine on the broker: its last will, announce, status, events, replies.

    Records everything the hub sends it (ack, config, cmd/...). ``answer`` answers commands.
    """

    __test__ = False  # not a test class, despite its name

    def __init__(self, port: int, prefix: str, machine_id: str) -> None:
        self.port = port
        self.prefix = prefix
        self.machine_id = machine_id
        self.received: list[Received] = []
        self.answer: Callable[[str, dict[str, Any]], dict[str, Any] | None] | None = None
        self._seq = 0
        self.session = ""
        self._changed = asyncio.Condition()
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    def topic(self, kind: str) -> str:
        return protocol.topic(self.machine_id, kind, self.prefix)

    # ---- connection ----------------------------------------------------------------------

    async def connect(self) -> TestMachine:
        self.session = uuid.uuid4().hex[:16]  # new at every connection, as the protocol says
        will = protocol.encode({"v": 1, "state": "offline", "ts": TS, "session": self.session})
        self._client = aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=f"machine-{self.machine_id}-{uuid.uuid4().hex[:6]}",
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(self.topic("status"), will, qos=1, retain=True),
            keepalive=5,
        )
        await self._client.__aenter__()
        for kind in ("ack", "config", "cmd/+"):
            await self._client.subscribe(
                protocol.topic_filter(kind, self.machine_id, self.prefix), qos=1
            )
        self._reader = asyncio.create_task(self._read(self._client))
        return self

    async def close(self) -> None:
        """Disconnect cleanly (DISCONNECT: no last will)."""
        await self._stop_reader()
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)
            _forget_disconnect_error(self._client)
            self._client = None

    async def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a power cut does: the will fires."""
        assert self._client is not None
        sock = self._client._client.socket()  # the paho client's socket
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)
        await self._stop_reader()
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await self._client.__aexit__(None, None, None)
        _forget_disconnect_error(self._client)
        self._client = None

    async def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
            self._reader = None

    async def _read(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            kind = message.topic.value.split("/")[-1]
            if message.topic.value.startswith(f"{self.prefix}/{self.machine_id}/cmd/"):
                kind = "cmd/" + kind
            item = Received(kind, payload, bool(message.retain), loop.time())
            async with self._changed:
                self.received.append(item)
                self._changed.notify_all()
            if kind.startswith("cmd/") and self.answer is not None:
                command = json.loads(payload)
                result = self.answer(kind[4:], command)
                if result is not None:
                    await self.publish("cmd_result", {"v": 1, "id": command["id"], **result})

    # ---- sending -------------------------------------------------------------------------

    async def publish(
        self, kind: str, message: dict[str, Any] | bytes, *, retain: bool | None = None
    ) -> None:
        assert self._client is not None
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        await self._client.publish(
            self.topic(kind),
            payload,
            qos=protocol.qos(kind),
            retain=protocol.retained(kind) if retain is None else retain,
        )

    async def announce(self, refrigerated: bool = True, **changes: Any) -> None:
        message = {
            "v": 1,
            "ts": TS,
            "model": "VM-200",
            "firmware": "2.4.1",
            "currency": "EUR",
            "refrigerated": refrigerated,
            "capabilities": ["cash", "card"],
            "slots": slots(),
        }
        message.update(changes)
        await self.publish("announce", message)

    async def status(self, state: str = "online") -> None:
        await self.publish(
            "status",
            {
                "v": 1,
                "state": state,
                "ts": TS,
                "model": "VM-200",
                "firmware": "2.4.1",
                "session": self.session,
            },
        )

    async def event(
        self, name: str, data: dict[str, Any] | None = None, *, event_id: str | None = None
    ) -> str:
        self._seq += 1
        event_id = event_id or uuid.uuid4().hex
        await self.publish(
            "event",
            {"v": 1, "id": event_id, "seq": self._seq, "ts": TS, "event": name, "data": data or {}},
        )
        return event_id

    async def telemetry(self, readings: dict[str, Any], seq: int) -> None:
        await self.publish("telemetry", {"v": 1, "seq": seq, "ts": TS, "readings": readings})

    # ---- what the hub sent ---------------------------------------------------------------

    def of(self, kind: str) -> list[Received]:
        return [item for item in self.received if item.kind == kind]

    def acked(self) -> list[str]:
        """Every event id acked so far, in order (an id acked twice appears twice)."""
        return [event_id for item in self.of("ack") for event_id in item.json["ids"]]

    async def wait_for(self, check: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``check()`` returns something truthy, and return it."""

        async def until() -> Any:
            async with self._changed:
                while not (result := check()):
                    await self._changed.wait()
                return result

        return await asyncio.wait_for(until(), timeout)

    async def wait_acked(self, event_id: str, times: int = 1, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.acked().count(event_id) >= times, timeout)
