"""An emulated Qibixx MDB adapter with a card reader, a coin changer and a bill validator
behind it, for tests and demos: it opens the device end of a serial pty pair and answers the
host's lines as the adapter documents them (this integration's README lists every line).

``MdbAdapterEmulator`` keeps device state (reader states, tubes, escrow, cash box) and takes
a customer's actions from the test: ``present_card()``, ``insert_coin(value)``,
``insert_bill(value)``. Faults: a card that is denied, a reader that never answers, a reply
that is lost, a tube that jams. ``ScriptedAdapter`` instead plays one recorded host ↔ adapter
transcript (the corpus sessions) line for line and notes every line the host got wrong.
Values are in the devices' smallest unit, which with the defaults (2 decimal places) is the
euro cent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import serial_asyncio

_LOGGER = logging.getLogger(__name__)


class _LineDevice:
    """The device end of the serial line: read host lines, write adapter lines."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.transcript: list[tuple[str, str]] = []
        """("host", line) and ("adapter", line) in the order they crossed the line."""
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def async_start(self) -> None:
        reader, self._writer = await serial_asyncio.open_serial_connection(
            url=self.port, baudrate=115200
        )
        self._task = asyncio.get_running_loop().create_task(self._async_serve(reader))

    async def async_stop(self) -> None:
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None

    async def __aenter__(self) -> _LineDevice:
        await self.async_start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.async_stop()

    def host_lines(self) -> list[str]:
        return [line for side, line in self.transcript if side == "host"]

    def send(self, line: str) -> None:
        """Write one adapter line."""
        if self._writer is None:
            return
        self.transcript.append(("adapter", line))
        self._writer.write(line.encode("ascii") + b"\n")

    def later(self, delay: float, action: Any) -> asyncio.Task[None]:
        """Run ``action()`` after ``delay`` seconds (a customer acting, a device working)."""

        async def run() -> None:
            await asyncio.sleep(delay)
            action()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _async_serve(self, reader: asyncio.StreamReader) -> None:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            line = raw.decode("ascii", errors="replace").strip()
            if not line:
                continue
            self.transcript.append(("host", line))
            try:
                self.handle(line)
            except Exception:  # an emulator bug must show in the test, not kill the loop
                _LOGGER.exception("emulator failed on %r", line)
                self.send("d,ERR,emulator")
            if self._writer is not None:
                await self._writer.drain()

    def handle(self, line: str) -> None:
        raise NotImplementedError


class ScriptedAdapter(_LineDevice):
    """Plays one transcript: each expected host line, then the adapter lines that follow it."""

    def __init__(self, port: str, steps: Sequence[Mapping[str, str]]) -> None:
        super().__init__(port)
        self._steps = list(steps)
        self._next = 0
        self.errors: list[str] = []

    @property
    def finished(self) -> bool:
        return self._next >= len(self._steps)

    def handle(self, line: str) -> None:
        if self.finished:
            self.errors.append(f"unexpected host line {line!r} after the end of the script")
            return
        expected = self._steps[self._next]
        if expected["from"] != "host" or expected["line"] != line:
            self.errors.append(f"step {self._next}: expected {expected}, host sent {line!r}")
            self.send("d,ERR,-1")
            return
        self._next += 1
        while not self.finished and self._steps[self._next]["from"] == "adapter":
            self.send(self._steps[self._next]["line"])
            self._next += 1


@dataclass
class ReaderSetup:
    """What the emulated card reader announces (MDB cashless setup, config data)."""

    level: int = 3
    currency_code: int = 1978
    scale_factor: int = 1
    decimal_places: int = 2
    max_response_time: int = 30
    flags: int = 8


@dataclass
class EmulatedChanger:
    """A coin changer: coin values per type, which go to tubes, tube contents."""

    coin_values: Sequence[int] = (5, 10, 20, 50, 100, 200)
    scale_factor: int = 5
    decimal_places: int = 2
    tube_types: Sequence[int] = (0, 1, 2, 3)
    tube_capacity: int = 60
    currency_code: int = 0x1978
    present: bool = True
    tubes: dict[int, int] = field(default_factory=dict)
    """Coin type → coins in its tube."""
    jammed: set[int] = field(default_factory=set)
    """Coin types whose tube pays nothing (a tube jam)."""
    enabled: int = 0
    cash_box: Counter[int] = field(default_factory=Counter)
    paid_out: list[int] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)

    def coin_type(self, value: int) -> int:
        if value not in self.coin_values:
            raise ValueError(f"the changer knows coins {list(self.coin_values)}, not {value}")
        return list(self.coin_values).index(value)


@dataclass
class EmulatedValidator:
    """A bill validator with an escrow position."""

    bill_values: Sequence[int] = (500, 1000, 2000, 5000)
    scale_factor: int = 100
    decimal_places: int = 2
    currency_code: int = 0x1978
    present: bool = True
    enabled: int = 0
    escrow_enabled: int = 0
    in_escrow: int | None = None
    stacked: Counter[int] = field(default_factory=Counter)
    returned: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)

    def bill_type(self, value: int) -> int:
        if value not in self.bill_values:
            raise ValueError(f"the validator knows bills {list(self.bill_values)}, not {value}")
        return list(self.bill_values).index(value)


class MdbAdapterEmulator(_LineDevice):
    """The adapter with its devices; attributes are the devices' state for assertions."""

    def __init__(
        self,
        port: str,
        *,
        reader: ReaderSetup | None = None,
        changer: EmulatedChanger | None = None,
        validator: EmulatedValidator | None = None,
        card_result: str = "approve",
        present_delay: float | None = 0.05,
        send_vend_status: bool = True,
        send_reset_status: bool = True,
        funds: str = "-1",
    ) -> None:
        super().__init__(port)
        self.reader = reader or ReaderSetup()
        self.changer = changer if changer is not None else EmulatedChanger()
        self.validator = validator if validator is not None else EmulatedValidator()
        self.card_result = card_result
        """``approve``, ``deny`` or ``silent`` (the reader never answers the vend request)."""
        self.present_delay = present_delay
        """Seconds from the vend request to the card; None: wait for ``present_card()``."""
        self.send_vend_status = send_vend_status
        self.send_reset_status = send_reset_status
        self.funds = funds
        self.charged: list[str] = []
        """Amounts of vends completed with D,END (the money the reader took)."""
        self.reversed: list[str] = []
        """Amounts approved and then reversed with D,END,-1."""
        self.master_mode = False
        self._cashless_mode: int | None = None
        self._reader_state = "OFF"
        self._pending_price: str | None = None
        self._approved: str | None = None
        self._card_task: asyncio.Task[None] | None = None
        self._lose: list[str] = []

    # --- the customer and the faults ---------------------------------------------------

    def lose_reply(self, command_prefix: str) -> None:
        """The next host line starting with ``command_prefix`` is obeyed but not answered."""
        self._lose.append(command_prefix)

    def present_card(self) -> None:
        """The customer presents a card (taps, inserts, holds a phone)."""
        if self._reader_state == "VEND" and self._pending_price is not None:
            self._answer_vend()
        elif self._reader_state == "IDLE" and self._cashless_mode == 1:
            self._reader_state = "SESSION"
            self.send(f"d,STATUS,CREDIT,{self.funds}")

    def insert_coin(self, value: int) -> str:
        """A coin of ``value``; returns where it went: tubes, cash_box or returned."""
        changer = self.changer
        coin_type = changer.coin_type(value)
        if not changer.enabled >> coin_type & 1:
            changer.returned.append(value)
            return "returned"
        count = changer.tubes.get(coin_type, 0)
        if coin_type in changer.tube_types and count < changer.tube_capacity:
            changer.tubes[coin_type] = count + 1
            changer.events += [0x50 | coin_type, count + 1]
            return "tubes"
        changer.cash_box[value] += 1
        changer.events += [0x40 | coin_type, min(count, 255)]
        return "cash_box"

    def insert_bill(self, value: int) -> str:
        """A bill of ``value``; returns escrow, stacked or rejected."""
        validator = self.validator
        bill_type = validator.bill_type(value)
        if not validator.enabled >> bill_type & 1 or validator.in_escrow is not None:
            validator.rejected.append(value)
            return "rejected"
        if validator.escrow_enabled >> bill_type & 1:
            validator.in_escrow = bill_type
            validator.events.append(0x90 | bill_type)
            return "escrow"
        validator.stacked[value] += 1
        validator.events.append(0x80 | bill_type)
        return "stacked"

    def tube_levels(self) -> dict[int, int]:
        """Coin value → coins in its tube."""
        return {
            self.changer.coin_values[t]: self.changer.tubes.get(t, 0)
            for t in self.changer.tube_types
        }

    def set_tube(self, value: int, count: int) -> None:
        self.changer.tubes[self.changer.coin_type(value)] = count

    # --- the protocol ------------------------------------------------------------------

    def send(self, line: str) -> None:
        if self._losing is not None:
            self.transcript.append(("lost", line))
            return
        super().send(line)

    _losing: str | None = None

    def handle(self, line: str) -> None:
        self._losing = next((p for p in self._lose if line.startswith(p)), None)
        if self._losing is not None:
            self._lose.remove(self._losing)
        try:
            command, _, rest = line.partition(",")
            if command == "D":
                self._cashless(rest)
            elif command == "M":
                self.master_mode = rest == "1"
                self.send("m,ACK" if rest in ("0", "1") else "m,NACK")
            elif command == "R":
                self.send(self._master(rest))
            elif command == "V":
                self.send("v,3.8.0.0,EMULATOR0001")
            else:
                self.send(f"{command.lower()},NACK")
        finally:
            self._losing = None

    def _cashless(self, rest: str) -> None:
        args = rest.split(",")
        name = args[0]
        if name in ("1", "2"):
            if self._cashless_mode is not None:
                self.send('d,ERR,"cashless master is on"')
                return
            self._cashless_mode = int(name)
            self._reader_state = "INIT"
            if self.send_reset_status:
                self.send("d,STATUS,RESET")
            self.send("d,STATUS,INIT,1")
        elif name == "0":
            self._cashless_mode = None
            self._reader_state = "OFF"
            self.send("d,STATUS,OFF")
        elif name == "STATUS":
            if self._cashless_mode is None:
                self.send("d,ERR,-1")
                return
            r = self.reader
            state = {"SESSION": "CREDIT", "APPROVED": "RESULT"}.get(
                self._reader_state, self._reader_state
            )
            self.send(
                f"d,STATUS,{state},#,{r.level},{r.currency_code},{r.scale_factor},"
                f"{r.decimal_places},{r.max_response_time},{r.flags},{self._cashless_mode}"
            )
        elif name == "READER":
            if self._cashless_mode is None:
                self.send('d,ERR,"-1"')
            elif args[1:] == ["1"]:
                self._reader_state = "IDLE"
                self.send("d,STATUS,IDLE")
            else:
                self._reader_state = "INIT"
                self.send("d,STATUS,INIT,1")
        elif name == "REQ":
            self._vend_request(args[1:])
        elif name == "END":
            self._vend_end(args[1:])
        else:
            self.send("d,ERR,-1")

    def _vend_request(self, args: list[str]) -> None:
        if args == ["-1"]:
            if self._card_task is not None:
                self._card_task.cancel()
                self._card_task = None
            if self._reader_state in ("VEND", "SESSION"):
                self._pending_price = None
                self._reader_state = "IDLE"
                self.send("d,STATUS,RESULT,-1")
            elif self._reader_state == "APPROVED":
                self.send("d,ERR,-1")
            else:
                self.send("d,STATUS,IDLE")
            return
        try:
            Decimal(args[0])
            int(args[1])
        except (IndexError, InvalidOperation, ValueError):
            self.send("d,ERR,-1")
            return
        always_idle = self._cashless_mode == 2 and self._reader_state == "IDLE"
        if not always_idle and self._reader_state != "SESSION":
            self.send("d,ERR,-1")
            return
        self._pending_price = args[0]
        if self._reader_state == "SESSION":
            self._reader_state = "VEND"
            self._answer_vend()
            return
        self._reader_state = "VEND"
        if self.send_vend_status:
            self.send("d,STATUS,VEND")
        if self.present_delay is not None:
            self._card_task = self.later(self.present_delay, self.present_card)

    def _answer_vend(self) -> None:
        price = self._pending_price
        if price is None or self.card_result == "silent":
            return
        self._card_task = None
        if self.card_result == "deny":
            self._pending_price = None
            self._reader_state = "IDLE"
            self.send("d,STATUS,RESULT,-1")
            return
        amount = f"{Decimal(price):.{self.reader.decimal_places}f}"
        self._approved = amount
        self._reader_state = "APPROVED"
        self.send(f"d,STATUS,RESULT,1,{amount}")

    def _vend_end(self, args: list[str]) -> None:
        if self._reader_state != "APPROVED" or self._approved is None:
            self.send("d,ERR,-1")
            return
        (self.reversed if args == ["-1"] else self.charged).append(self._approved)
        self._approved = self._pending_price = None
        self._reader_state = "IDLE"
        self.send("d,STATUS,IDLE")

    # --- generic master: raw MDB to the coin changer and the bill validator ------------

    def _master(self, rest: str) -> str:
        if not self.master_mode:
            return "p,NACK"
        parts = rest.split(",")
        try:
            command = int(parts[0], 16)
            data = bytes.fromhex(parts[1]) if len(parts) > 1 else b""
        except ValueError:
            return "p,NACK"
        if command & 0xF8 == 0x08 and self.changer.present:
            reply = self._changer_command(command, data)
        elif command & 0xF8 == 0x30 and self.validator.present:
            reply = self._validator_command(command, data)
        else:
            return "p,NACK"
        return "p,ACK" if reply is None else "p," + reply.hex().upper()

    def _changer_command(self, command: int, data: bytes) -> bytes | None:
        changer = self.changer
        credits = [value // changer.scale_factor for value in changer.coin_values]
        if command == 0x08:  # RESET
            changer.enabled = 0
            changer.events = [0x0B]
            return None
        if command == 0x09:  # SETUP
            routing = sum(1 << t for t in changer.tube_types)
            return (
                bytes([3])
                + changer.currency_code.to_bytes(2, "big")
                + bytes([changer.scale_factor, changer.decimal_places])
                + routing.to_bytes(2, "big")
                + bytes(credits + [0] * (16 - len(credits)))
            )
        if command == 0x0A:  # TUBE STATUS
            full = sum(
                1 << t
                for t in changer.tube_types
                if changer.tubes.get(t, 0) >= changer.tube_capacity
            )
            counts = [min(changer.tubes.get(t, 0), 255) for t in range(16)]
            return full.to_bytes(2, "big") + bytes(counts)
        if command == 0x0B:  # POLL
            events, changer.events = changer.events[:16], changer.events[16:]
            return bytes(events) if events else None
        if command == 0x0C:  # COIN TYPE
            changer.enabled = int.from_bytes(data[:2], "big")
            return None
        if command == 0x0D:  # DISPENSE
            count, coin_type = data[0] >> 4, data[0] & 0x0F
            have = changer.tubes.get(coin_type, 0)
            paid = 0 if coin_type in changer.jammed else min(count, have)
            changer.tubes[coin_type] = have - paid
            changer.paid_out += [changer.coin_values[coin_type]] * paid
            changer.events.append(0x02)  # payout busy, reported once
            if coin_type in changer.jammed:
                changer.events.append(0x07)  # tube jam
            return None
        return None

    def _validator_command(self, command: int, data: bytes) -> bytes | None:
        validator = self.validator
        if command == 0x30:  # RESET
            validator.enabled = validator.escrow_enabled = 0
            validator.events = [0x06]
            return None
        if command == 0x31:  # SETUP
            credits = [value // validator.scale_factor for value in validator.bill_values]
            return (
                bytes([1])
                + validator.currency_code.to_bytes(2, "big")
                + validator.scale_factor.to_bytes(2, "big")
                + bytes([validator.decimal_places])
                + (500).to_bytes(2, "big")
                + (0).to_bytes(2, "big")
                + bytes([0xFF])
                + bytes(credits + [0] * (16 - len(credits)))
            )
        if command == 0x33:  # POLL
            events, validator.events = validator.events[:16], validator.events[16:]
            return bytes(events) if events else None
        if command == 0x34:  # BILL TYPE
            validator.enabled = int.from_bytes(data[:2], "big")
            validator.escrow_enabled = int.from_bytes(data[2:4], "big")
            return None
        if command == 0x35:  # ESCROW
            if validator.in_escrow is None:
                validator.events.append(0x0A)  # invalid escrow request
                return None
            bill_type, validator.in_escrow = validator.in_escrow, None
            value = validator.bill_values[bill_type]
            if data[:1] == b"\x01":
                validator.stacked[value] += 1
                validator.events.append(0x80 | bill_type)
            else:
                validator.returned.append(value)
                validator.events.append(0xA0 | bill_type)
            return None
        if command == 0x36:  # STACKER
            return sum(validator.stacked.values()).to_bytes(2, "big")
        return None


def transcript_lines(transcript: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """The transcript in the corpus's shape: ``{"from": "host"|"adapter", "line": …}``."""
    return [{"from": side, "line": line} for side, line in transcript if side != "lost"]
