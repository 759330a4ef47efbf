"""Commands to machines: ``cmd/<name>`` with a correlation id, answered by ``cmd_result``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vendhub.core.errors import VendHubError
from vendhub.machine import protocol
from vendhub.util.dt import utcnow

_LOGGER = logging.getLogger(__name__)

Publisher = Callable[[str, str, bytes], Awaitable[None]]  # machine_id, kind, payload


class CommandTimeout(VendHubError, TimeoutError):
    """A machine did not answer a command in time."""


class CommandCancelled(VendHubError):
    """The MQTT link was unloaded while a command waited for its answer."""


@dataclass(slots=True)
class _Pending:
    machine_id: str
    name: str
    future: asyncio.Future[dict[str, Any]]


class CommandRunner:
    """Publishes commands and matches the machines' results to them by correlation id."""

    def __init__(self, publish: Publisher) -> None:
        self._publish = publish
        self._pending: dict[str, _Pending] = {}
        self.unmatched = 0  # results nobody waited for (late, or not ours)

    @property
    def pending(self) -> int:
        """Commands waiting for their result."""
        return len(self._pending)

    async def async_run(
        self, machine_id: str, name: str, args: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Send command ``name`` to ``machine_id`` and return its result.

        Returns ``{"machine_id", "command", "id", "ok", "result", "error"}``; raises
        CommandTimeout when no result comes within ``timeout`` seconds.
        """
        correlation_id = protocol.new_id()
        message = {
            "v": protocol.PROTOCOL_VERSION,
            "id": correlation_id,
            "ts": utcnow(),
            "args": args,
        }
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = _Pending(machine_id, name, future)
        try:
            await self._publish(
                machine_id, f"{protocol.KIND_COMMAND}/{name}", protocol.encode(message)
            )
            try:
                result = await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                raise CommandTimeout(
                    f"machine {machine_id} did not answer command '{name}' within {timeout:g} s "
                    f"(correlation id {correlation_id}); is it online and subscribed to "
                    "its cmd topics?"
                ) from None
        finally:
            self._pending.pop(correlation_id, None)
        return {
            "machine_id": machine_id,
            "command": name,
            "id": correlation_id,
            "ok": result["ok"],
            "result": result.get("result"),
            "error": result.get("error"),
        }

    def resolve(self, machine_id: str, result: dict[str, Any]) -> bool:
        """Hand a decoded ``cmd_result`` to the command waiting for it; False if none is."""
        pending = self._pending.get(result["id"])
        if pending is None or pending.machine_id != machine_id:
            self.unmatched += 1
            _LOGGER.debug(
                "Dropped a cmd_result from %s for %s: no command waits for it",
                machine_id,
                result["id"],
            )
            return False
        if not pending.future.done():
            pending.future.set_result(result)
        return True

    def cancel_all(self) -> None:
        """Fail every waiting command (the link is going away)."""
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(
                    CommandCancelled(
                        f"command '{pending.name}' to {pending.machine_id} was cancelled: "
                        "the MQTT link was unloaded"
                    )
                )
        self._pending.clear()
