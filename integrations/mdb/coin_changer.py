"""The MDB coin changer (address 0x08), driven with raw commands through the adapter's
generic master (``R,08`` … ``R,0F``): reset, setup, tube status, poll, coin type, dispense.

Byte layouts follow the MDB 4.2 specification, section 5 (as used with this adapter by
maehw/mdb-coin-controller); the README lists every command.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .adapter import AdapterError, MdbAdapter
from .scaling import Scaling

RESET = 0x08
SETUP = 0x09
TUBE_STATUS = 0x0A
POLL = 0x0B
COIN_TYPE = 0x0C
DISPENSE = 0x0D

ROUTE_CASH_BOX = 0
ROUTE_TUBES = 1
ROUTE_NOT_USED = 2
ROUTE_REJECTED = 3

STATUS_PAYOUT_BUSY = 0x02
STATUS_CHANGER_BUSY = 0x0A
STATUS_JUST_RESET = 0x0B
STATUS_NAMES = {
    0x01: "escrow request",
    0x02: "changer payout busy",
    0x03: "no credit",
    0x04: "defective tube sensor",
    0x05: "double arrival",
    0x06: "acceptor unplugged",
    0x07: "tube jam",
    0x08: "ROM checksum error",
    0x09: "coin routing error",
    0x0A: "changer busy",
    0x0B: "changer was reset",
    0x0C: "coin jam",
    0x0D: "possible credited coin removal",
}
MAX_COINS_PER_DISPENSE = 15


@dataclass(frozen=True, slots=True)
class CoinDeposited:
    coin_type: int
    routing: int
    coins_in_tube: int


@dataclass(frozen=True, slots=True)
class CoinsDispensedManually:
    coin_type: int
    count: int
    coins_in_tube: int


@dataclass(frozen=True, slots=True)
class ChangerStatus:
    code: int

    @property
    def name(self) -> str:
        return STATUS_NAMES.get(self.code, f"status 0x{self.code:02X}")


@dataclass(frozen=True, slots=True)
class Slug:
    count: int


ChangerEvent = CoinDeposited | CoinsDispensedManually | ChangerStatus | Slug


@dataclass(frozen=True, slots=True)
class ChangerSetup:
    level: int
    currency_code: int
    scaling: Scaling
    tube_routing: int
    """Bit n set: coin type n can go to a tube (and so be paid out)."""
    coin_credits: tuple[int, ...]
    """Per coin type, its value in the changer's units (0: type not used)."""

    def routable(self, coin_type: int) -> bool:
        return bool(self.tube_routing >> coin_type & 1)


@dataclass(slots=True)
class TubeStatus:
    full: int = 0
    counts: list[int] = field(default_factory=lambda: [0] * 16)


def _bcd(value: int) -> int:
    text = f"{value:04X}"
    return int(text) if text.isdigit() else value


def parse_setup(data: bytes) -> ChangerSetup:
    """Z1 level, Z2-Z3 currency, Z4 scale factor, Z5 decimals, Z6-Z7 tube routing,
    Z8-Z23 coin type credits."""
    if len(data) < 7:
        raise AdapterError(f"the coin changer's setup is too short: {data.hex()}")
    credits = tuple(data[7:23]) + (0,) * (16 - len(data[7:23]))
    return ChangerSetup(
        level=data[0],
        currency_code=_bcd(int.from_bytes(data[1:3], "big")),
        scaling=Scaling(scale_factor=data[3], decimal_places=data[4], max_units=0xFF),
        tube_routing=int.from_bytes(data[5:7], "big"),
        coin_credits=credits,
    )


def parse_tube_status(data: bytes) -> TubeStatus:
    """Z1-Z2 tube full bits, Z3-Z18 coins in each tube."""
    if len(data) < 2:
        raise AdapterError(f"the coin changer's tube status is too short: {data.hex()}")
    counts = list(data[2:18]) + [0] * (16 - len(data[2:18]))
    return TubeStatus(full=int.from_bytes(data[0:2], "big"), counts=counts)


def parse_poll(data: bytes) -> list[ChangerEvent]:
    """Up to 16 bytes of activity: 1yyyxxxx zz (dispensed manually), 01yyxxxx zz
    (deposited), 001xxxxx (slugs), otherwise a status code."""
    events: list[ChangerEvent] = []
    index = 0
    while index < len(data):
        byte = data[index]
        if byte & 0x80:
            tube = data[index + 1] if index + 1 < len(data) else 0
            events.append(CoinsDispensedManually(byte & 0x0F, (byte >> 4) & 0x07, tube))
            index += 2
        elif byte & 0x40:
            tube = data[index + 1] if index + 1 < len(data) else 0
            events.append(CoinDeposited(byte & 0x0F, (byte >> 4) & 0x03, tube))
            index += 2
        elif byte & 0x20:
            events.append(Slug(byte & 0x1F))
            index += 1
        else:
            events.append(ChangerStatus(byte))
            index += 1
    return events


class CoinChanger:
    """Commands to the changer; what it last said about itself."""

    def __init__(self, adapter: MdbAdapter, reply_timeout: float) -> None:
        self._adapter = adapter
        self._timeout = reply_timeout
        self.setup: ChangerSetup | None = None
        self.tubes = TubeStatus()

    async def _async_command(self, command: int, data: bytes = b"") -> bytes:
        reply = await self._adapter.async_master(command, data, self._timeout)
        if not reply.answered:
            raise AdapterError(f"the coin changer did not answer command 0x{command:02X} (p,NACK)")
        return reply.data

    async def async_initialise(self, max_polls: int = 10) -> ChangerSetup:
        """RESET, POLL until it has nothing more to say, SETUP, TUBE STATUS, coins off."""
        await self._async_command(RESET)
        for _ in range(max_polls):
            if not await self._async_command(POLL):
                break
        else:
            raise AdapterError(f"the coin changer kept reporting after {max_polls} polls")
        self.setup = parse_setup(await self._async_command(SETUP))
        await self.async_read_tubes()
        await self.async_enable(False)
        return self.setup

    async def async_read_tubes(self) -> TubeStatus:
        self.tubes = parse_tube_status(await self._async_command(TUBE_STATUS))
        return self.tubes

    async def async_poll(self) -> list[ChangerEvent]:
        events = parse_poll(await self._async_command(POLL))
        for event in events:
            if isinstance(event, CoinDeposited | CoinsDispensedManually):
                self.tubes.counts[event.coin_type] = event.coins_in_tube
        return events

    async def async_enable(self, accept: bool) -> None:
        """COIN TYPE: accept every coin type the changer knows (or none); manual dispense on."""
        assert self.setup is not None
        known = sum(1 << n for n, credit in enumerate(self.setup.coin_credits) if credit)
        mask = known if accept else 0
        await self._async_command(COIN_TYPE, mask.to_bytes(2, "big") + known.to_bytes(2, "big"))

    async def async_dispense(self, coin_type: int, count: int, busy_timeout: float) -> None:
        """DISPENSE ``count`` coins of ``coin_type`` (15 at most) and wait until paid out."""
        if not 0 < count <= MAX_COINS_PER_DISPENSE:
            raise ValueError(f"a DISPENSE command pays 1..15 coins, not {count}")
        await self._async_command(DISPENSE, bytes([count << 4 | coin_type]))
        async with asyncio.timeout(busy_timeout):
            while True:
                events = await self.async_poll()
                busy = any(
                    isinstance(event, ChangerStatus)
                    and event.code in (STATUS_PAYOUT_BUSY, STATUS_CHANGER_BUSY)
                    for event in events
                )
                if not busy:
                    return
                await asyncio.sleep(0.05)
