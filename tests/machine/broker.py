"""A real Mosquitto for the machine tests, on a free port, and a test client playing the hub."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

MOSQUITTO = "mosquitto"


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def kind(self) -> str:
        return self.topic.split("/", 2)[2]

    @property
    def machine_id(self) -> str:
        return self.topic.split("/", 2)[1]

    @property
    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else None


class HubClient:
    """A plain aiomqtt client that records everything under ``prefix/#``."""

    def __init__(self, port: int, prefix: str = "vendhub", identifier: str | None = None) -> None:
        self.port = port
        self.prefix = prefix
        self.identifier = identifier
        self.messages: list[Received] = []
        self._changed = asyncio.Condition()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HubClient:
        self._client = aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=self.identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
        )
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.prefix}/#", qos=1)
        self._task = asyncio.create_task(self._read(self._client))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            item = Received(message.topic.value, payload, bool(message.retain), message.qos)
            async with self._changed:
                self.messages.append(item)
                self._changed.notify_all()

    def of(self, kind: str, machine_id: str | None = None) -> list[Received]:
        return [
            m
            for m in self.messages
            if m.kind == kind and (machine_id is None or m.machine_id == machine_id)
        ]

    async def wait_for(self, check: Callable[[HubClient], Any], timeout: float = 10.0) -> Any:
        """Wait until ``check(self)`` returns something truthy; return it."""

        async def until() -> Any:
            async with self._changed:
                while True:
                    result = check(self)
                    if result:
                        return result
                    await self._changed.wait()

        return await asyncio.wait_for(until(), timeout)

    async def wait_message(
        self,
        kind: str,
        machine_id: str | None = None,
        where: Callable[[Received], bool] = lambda _m: True,
        timeout: float = 10.0,
    ) -> Received:
        def check(hub: HubClient) -> Received | None:
            found = [m for m in hub.of(kind, machine_id) if where(m)]
            return found[-1] if found else None

        return await self.wait_for(check, timeout)

    async def publish(
        self, topic: str, message: Any, *, qos: int = 1, retain: bool = False
    ) -> None:
        assert self._client is not None
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        await self._client.publish(topic, payload, qos=qos, retain=retain)
