"""The Qibixx MDB Pi HAT / MDB-USB text protocol over a serial port.

The adapter takes one ASCII command per line from the host (upper-case first letter) and
answers with lines whose first letter is the command's in lower case (``D,…`` → ``d,…``,
``R,…`` → ``p,…``, ``M,…`` → ``m,…``). Cashless-master ``d,`` lines also arrive on their
own (the reader's state changes), so they go to a queue the cashless provider reads; the
generic-master ``R`` requests are strictly one request, one ``p,`` reply, serialised by a lock.

One adapter serves every MDB device of a machine (the card reader, the coin changer and the
bill validator share the bus), so providers get it through ``async_acquire_adapter`` and
share it by port. The line-by-line reference is in this integration's README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import serial_asyncio

from vendhub.vending.payment import PaymentError

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DOMAIN = "mdb"
DATA_ADAPTERS = "mdb_adapters"
DEFAULT_BAUDRATE = 115200


class AdapterError(PaymentError):
    """The adapter did not answer, or answered something this code cannot use."""


@dataclass(frozen=True, slots=True)
class MasterReply:
    """A peripheral's answer to an ``R,…`` request: ACK, NACK (no answer) or data bytes."""

    ack: bool
    data: bytes = b""

    @property
    def answered(self) -> bool:
        return self.ack or bool(self.data)


class MdbAdapter:
    """One serial connection to a Qibixx adapter."""

    def __init__(self, port: str, baudrate: int = DEFAULT_BAUDRATE) -> None:
        self.port = port
        self.baudrate = baudrate
        self.cashless_lines: asyncio.Queue[str] = asyncio.Queue()
        """Every ``d,…`` line the adapter sends, in order."""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._request_lock = asyncio.Lock()
        self._pending: tuple[str, asyncio.Future[str]] | None = None
        self._master_mode = False
        self._users = 0

    @property
    def is_open(self) -> bool:
        return self._writer is not None and self._read_task is not None

    async def async_open(self) -> None:
        """Open the serial port and start reading lines."""
        if self.is_open:
            return
        try:
            self._reader, self._writer = await serial_asyncio.open_serial_connection(
                url=self.port, baudrate=self.baudrate
            )
        except (OSError, ValueError) as error:
            raise AdapterError(f"cannot open the MDB adapter at {self.port}: {error}") from None
        self._read_task = asyncio.get_running_loop().create_task(
            self._async_read_lines(), name=f"mdb adapter {self.port}"
        )

    async def async_close(self) -> None:
        """Stop reading and close the port."""
        task, self._read_task = self._read_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._master_mode = False

    async def async_send(self, line: str) -> None:
        """Write one command line (the newline is added here)."""
        if self._writer is None:
            raise AdapterError(f"the MDB adapter at {self.port} is not open")
        _LOGGER.debug("mdb %s > %s", self.port, line)
        self._writer.write(line.encode("ascii") + b"\n")
        await self._writer.drain()

    async def async_request(self, line: str, reply_prefix: str, timeout: float) -> str:
        """Send ``line`` and return the next line starting with ``reply_prefix``."""
        async with self._request_lock:
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._pending = (reply_prefix, future)
            try:
                await self.async_send(line)
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                raise AdapterError(
                    f"the MDB adapter at {self.port} did not answer {line!r} within {timeout:g} s"
                ) from None
            finally:
                self._pending = None

    async def async_ensure_master_mode(self, timeout: float) -> None:
        """``M,1`` → ``m,ACK``: the generic master that talks to coin and bill devices."""
        if self._master_mode:
            return
        reply = await self.async_request("M,1", "m,", timeout)
        if reply != "m,ACK":
            raise AdapterError(f"the MDB adapter refused master mode: {reply!r}")
        self._master_mode = True

    async def async_master(
        self, command: int, data: bytes = b"", timeout: float = 2.0
    ) -> MasterReply:
        """Send one raw MDB command (``R,xx[,yyyy]``) and return the peripheral's answer."""
        line = f"R,{command:02X}" + (f",{data.hex().upper()}" if data else "")
        reply = await self.async_request(line, "p,", timeout)
        body = reply[2:]
        if body == "ACK":
            return MasterReply(ack=True)
        if body == "NACK":
            return MasterReply(ack=False)
        try:
            return MasterReply(ack=False, data=bytes.fromhex(body))
        except ValueError:
            raise AdapterError(f"the MDB adapter answered {line!r} with {reply!r}") from None

    async def _async_read_lines(self) -> None:
        assert self._reader is not None
        while True:
            raw = await self._reader.readline()
            if not raw:
                _LOGGER.warning("The MDB adapter at %s closed the connection", self.port)
                return
            line = raw.decode("ascii", errors="replace").strip()
            if not line:
                continue
            _LOGGER.debug("mdb %s < %s", self.port, line)
            if line.startswith("d,"):
                self.cashless_lines.put_nowait(line)
                continue
            pending = self._pending
            if pending is not None and line.startswith(pending[0]) and not pending[1].done():
                pending[1].set_result(line)
                continue
            _LOGGER.debug("mdb %s: unexpected line %r ignored", self.port, line)


async def async_acquire_adapter(hub: Hub, port: str, baudrate: int) -> MdbAdapter:
    """The machine's adapter on ``port``, opened on first use and shared by its providers."""
    adapters: dict[str, MdbAdapter] = hub.data.setdefault(DATA_ADAPTERS, {})
    adapter = adapters.get(port)
    if adapter is None:
        adapter = adapters[port] = MdbAdapter(port, baudrate)
    elif adapter.baudrate != baudrate:
        raise AdapterError(
            f"the MDB adapter at {port} is already open at {adapter.baudrate} baud, not {baudrate}"
        )
    await adapter.async_open()
    adapter._users += 1
    return adapter


async def async_release_adapter(hub: Hub, adapter: MdbAdapter) -> None:
    """Give the adapter back; the last user closes it."""
    adapter._users -= 1
    if adapter._users > 0:
        return
    adapters: dict[str, Any] = hub.data.get(DATA_ADAPTERS, {})
    if adapters.get(adapter.port) is adapter:
        del adapters[adapter.port]
    await adapter.async_close()


async def async_close_all(hub: Hub) -> None:
    """Close every adapter (the integration is unloading)."""
    adapters: dict[str, MdbAdapter] = hub.data.pop(DATA_ADAPTERS, {})
    for adapter in adapters.values():
        await adapter.async_close()
