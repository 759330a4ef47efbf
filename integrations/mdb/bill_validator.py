"""The MDB bill validator (address 0x30), driven with raw commands through the adapter's
generic master (``R,30`` … ``R,36``): reset, setup, poll, bill type, escrow, stacker.

Byte layouts follow the MDB 4.2 specification, section 6; the README lists every command.
"""

from __future__ import annotations

from dataclasses import dataclass

from .adapter import AdapterError, MdbAdapter
from .scaling import Scaling

RESET = 0x30
SETUP = 0x31
POLL = 0x33
BILL_TYPE = 0x34
ESCROW = 0x35
STACKER = 0x36

ROUTE_STACKED = 0
ROUTE_ESCROW = 1
ROUTE_RETURNED = 2
ROUTE_TO_RECYCLER = 3
ROUTE_DISABLED_REJECTED = 4

STATUS_JUST_RESET = 0x06
STATUS_INVALID_ESCROW = 0x0A
STATUS_NAMES = {
    0x01: "defective motor",
    0x02: "sensor problem",
    0x03: "validator busy",
    0x04: "ROM checksum error",
    0x05: "validator jammed",
    0x06: "validator was reset",
    0x07: "bill removed",
    0x08: "cash box out of position",
    0x09: "unit disabled",
    0x0A: "invalid escrow request",
    0x0B: "bill rejected",
    0x0C: "possible credited bill removal",
}


@dataclass(frozen=True, slots=True)
class BillRouted:
    """1yyyxxxx: bill type xxxx went to yyy (stacked, escrow, returned, …)."""

    bill_type: int
    routing: int


@dataclass(frozen=True, slots=True)
class ValidatorStatus:
    code: int

    @property
    def name(self) -> str:
        return STATUS_NAMES.get(self.code, f"status 0x{self.code:02X}")


@dataclass(frozen=True, slots=True)
class InsertedWhileDisabled:
    attempts: int


ValidatorEvent = BillRouted | ValidatorStatus | InsertedWhileDisabled


@dataclass(frozen=True, slots=True)
class ValidatorSetup:
    level: int
    currency_code: int
    scaling: Scaling
    escrow: bool
    bill_credits: tuple[int, ...]


def parse_setup(data: bytes) -> ValidatorSetup:
    """Z1 level, Z2-Z3 currency, Z4-Z5 scale factor, Z6 decimals, Z7-Z8 stacker capacity,
    Z9-Z10 security levels, Z11 escrow (0xFF) or not (0x00), Z12-Z27 bill type credits."""
    if len(data) < 11:
        raise AdapterError(f"the bill validator's setup is too short: {data.hex()}")
    code_text = data[1:3].hex()
    credits = tuple(data[11:27]) + (0,) * (16 - len(data[11:27]))
    return ValidatorSetup(
        level=data[0],
        currency_code=int(code_text) if code_text.isdigit() else int(code_text, 16),
        scaling=Scaling(
            scale_factor=int.from_bytes(data[3:5], "big"), decimal_places=data[5], max_units=0xFF
        ),
        escrow=data[10] == 0xFF,
        bill_credits=credits,
    )


def parse_poll(data: bytes) -> list[ValidatorEvent]:
    events: list[ValidatorEvent] = []
    for byte in data:
        if byte & 0x80:
            events.append(BillRouted(byte & 0x0F, (byte >> 4) & 0x07))
        elif byte & 0xE0 == 0x40:
            events.append(InsertedWhileDisabled(byte & 0x1F))
        else:
            events.append(ValidatorStatus(byte))
    return events


class BillValidator:
    """Commands to the validator; what it last said about itself."""

    def __init__(self, adapter: MdbAdapter, reply_timeout: float) -> None:
        self._adapter = adapter
        self._timeout = reply_timeout
        self.setup: ValidatorSetup | None = None

    async def _async_command(self, command: int, data: bytes = b"") -> bytes:
        reply = await self._adapter.async_master(command, data, self._timeout)
        if not reply.answered:
            raise AdapterError(
                f"the bill validator did not answer command 0x{command:02X} (p,NACK)"
            )
        return reply.data

    async def async_initialise(self, max_polls: int = 10) -> ValidatorSetup:
        """RESET, POLL until it has nothing more to say, SETUP, bills off."""
        await self._async_command(RESET)
        for _ in range(max_polls):
            if not await self._async_command(POLL):
                break
        else:
            raise AdapterError(f"the bill validator kept reporting after {max_polls} polls")
        self.setup = parse_setup(await self._async_command(SETUP))
        await self.async_enable(False)
        return self.setup

    async def async_poll(self) -> list[ValidatorEvent]:
        return parse_poll(await self._async_command(POLL))

    async def async_enable(self, accept: bool) -> None:
        """BILL TYPE: accept every known bill type (or none), each through escrow."""
        assert self.setup is not None
        known = sum(1 << n for n, credit in enumerate(self.setup.bill_credits) if credit)
        mask = known if accept else 0
        escrow = mask if self.setup.escrow else 0
        await self._async_command(BILL_TYPE, mask.to_bytes(2, "big") + escrow.to_bytes(2, "big"))

    async def async_escrow(self, stack: bool) -> None:
        """ESCROW: 0x01 stacks the bill held in escrow, 0x00 returns it."""
        await self._async_command(ESCROW, b"\x01" if stack else b"\x00")

    async def async_stacker(self) -> tuple[bool, int]:
        """STACKER: (full, bills in the stacker)."""
        data = await self._async_command(STACKER)
        value = int.from_bytes(data[:2], "big")
        return bool(value & 0x8000), value & 0x7FFF
