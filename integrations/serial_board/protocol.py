"""The bytes of the common vending-controller ("VMC ↔ upper computer") serial protocol.

Frames are ``FA FB | command | length | packNo + text | XOR``: ``length`` counts the packNo
and the text, and the XOR covers every byte before it, the ``FA FB`` included. POLL and ACK
carry no packNo (``FA FB 41 00 40``, ``FA FB 42 00 43``). The board (VMC) polls; the host
answers. Sources and the exact layouts are in this integration's README.md.

This module is pure: frame encoding and decoding, a stream parser that finds frames again
after line noise, and the payloads of the commands this integration and its emulator use.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

STX = b"\xfa\xfb"
MAX_PACK_NO = 255
MAX_SELECTION = 999
"""Selection numbers are 1-999; 0 and 1000-1009 mean "all" in price and stock commands."""
TEMPERATURE_NOT_READ = 0xAA
"""What the board sends in a temperature byte it has not read yet."""


class Command(IntEnum):
    """Command bytes (the direction is the reference's)."""

    CHECK_SELECTION = 0x01  # host → board
    SELECTION_STATUS = 0x02  # board → host, the answer to CHECK_SELECTION
    SELECT_TO_BUY = 0x03  # host → board
    DISPENSING_STATUS = 0x04  # board → host
    SELECT_OR_CANCEL = 0x05  # both
    DRIVE_SELECTION = 0x06  # host → board
    SELECTION_INFO = 0x11  # board → host
    SYNC = 0x31  # both: information synchronisation
    POLL = 0x41  # board → host
    ACK = 0x42  # both
    MACHINE_STATUS_REQUEST = 0x51  # host → board
    MACHINE_STATUS = 0x52  # board → host


class DispenseStatus(IntEnum):
    """The status byte of a DISPENSING_STATUS frame (the codes vending boards use)."""

    DISPENSING = 0x01
    SUCCESS = 0x02
    JAMMED = 0x03
    MOTOR_DID_NOT_STOP = 0x04
    NO_MOTOR = 0x06
    ELEVATOR_ERROR = 0x07
    ELEVATOR_ASCENDING = 0x10
    ELEVATOR_DESCENDING = 0x11
    ELEVATOR_ASCENDING_ERROR = 0x12
    ELEVATOR_DESCENDING_ERROR = 0x13
    TAKE_OUT_PRODUCT = 0x24
    TERMINATED = 0xFF


IN_PROGRESS_STATUSES = frozenset({0x01, 0x10, 0x11, 0x14, 0x16, 0x18, 0x19, 0x22, 0x23, 0x26})
"""Statuses that say the vend is still going (motor turning, elevator or oven moving)."""


class ProtocolError(ValueError):
    """Bytes that are not a frame, or a frame whose text does not fit its command."""


def xor_checksum(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def next_pack_no(pack_no: int) -> int:
    """The packNo after ``pack_no``: 1 … 255, then 1 again."""
    return pack_no % MAX_PACK_NO + 1


@dataclass(frozen=True, slots=True)
class Frame:
    command: int
    payload: bytes = b""
    """packNo + text (empty for POLL and ACK)."""

    @property
    def pack_no(self) -> int | None:
        return self.payload[0] if self.payload else None

    @property
    def text(self) -> bytes:
        return self.payload[1:]

    def encode(self) -> bytes:
        return encode_frame(self.command, self.payload)

    def describe(self) -> str:
        try:
            name = Command(self.command).name
        except ValueError:
            name = f"0x{self.command:02X}"
        return f"{name} {self.encode().hex(' ').upper()}"


def encode_frame(command: int, payload: bytes = b"") -> bytes:
    if not 0 <= command <= 0xFF:
        raise ProtocolError(f"command byte out of range: {command}")
    if len(payload) > 0xFF:
        raise ProtocolError(f"payload of {len(payload)} bytes does not fit the length byte")
    head = STX + bytes((command, len(payload))) + payload
    return head + bytes((xor_checksum(head),))


def decode_frame(raw: bytes) -> Frame:
    """One whole frame → ``Frame``; raises ``ProtocolError`` naming what is wrong."""
    if len(raw) < 5:
        raise ProtocolError(f"frame of {len(raw)} bytes is shorter than the 5-byte minimum")
    if raw[:2] != STX:
        raise ProtocolError(f"frame starts with {raw[:2].hex(' ')}, not fa fb")
    length = raw[3]
    if len(raw) != length + 5:
        raise ProtocolError(f"length byte says {length}, frame carries {len(raw) - 5}")
    expected = xor_checksum(raw[:-1])
    if raw[-1] != expected:
        raise ProtocolError(f"XOR is {raw[-1]:02x}, expected {expected:02x}")
    return Frame(raw[2], bytes(raw[4:-1]))


POLL_FRAME = encode_frame(Command.POLL)
ACK_FRAME = encode_frame(Command.ACK)


class FrameParser:
    """Turns a byte stream into frames and finds the next frame again after noise.

    Bytes before an ``FA FB`` are dropped; a candidate frame with a wrong XOR loses its first
    byte and the search goes on from the next one. A header whose length byte claims more
    bytes than have come gives way as soon as a complete, valid frame starts after it, so a
    corrupted length cannot swallow the polls that follow it.
    """

    MAX_BUFFER = 4096

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.frames = 0
        self.discarded_bytes = 0
        self.bad_checksums = 0

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                break
            frames.append(frame)
        if len(self._buffer) > self.MAX_BUFFER:
            self._discard(len(self._buffer) - 1)
        return frames

    def _discard(self, count: int) -> None:
        if count > 0:
            del self._buffer[:count]
            self.discarded_bytes += count

    def _next_frame(self) -> Frame | None:
        buffer = self._buffer
        while True:
            start = buffer.find(STX)
            if start < 0:
                # keep a trailing FA: it may be the first half of the next STX
                self._discard(len(buffer) - 1 if buffer.endswith(b"\xfa") else len(buffer))
                return None
            self._discard(start)
            if len(buffer) < 5:
                return None
            end = buffer[3] + 5
            if len(buffer) < end:
                later = self._valid_frame_after(1)
                if later is None:
                    return None
                self._discard(later)
                continue
            if xor_checksum(buffer[: end - 1]) != buffer[end - 1]:
                self.bad_checksums += 1
                self._discard(1)
                continue
            frame = Frame(buffer[2], bytes(buffer[4 : end - 1]))
            del buffer[:end]
            self.frames += 1
            return frame

    def _valid_frame_after(self, offset: int) -> int | None:
        buffer = self._buffer
        position = buffer.find(STX, offset)
        while position >= 0:
            if len(buffer) - position >= 5:
                end = position + buffer[position + 3] + 5
                complete = end <= len(buffer)
                if complete and xor_checksum(buffer[position : end - 1]) == buffer[end - 1]:
                    return position
            position = buffer.find(STX, position + 1)
        return None


# ---- payloads ---------------------------------------------------------------------------


def _selection_bytes(selection: int) -> bytes:
    if not 1 <= selection <= MAX_SELECTION:
        raise ProtocolError(f"selection {selection} is outside 1-{MAX_SELECTION}")
    return selection.to_bytes(2, "big")


def drive_selection_payload(
    pack_no: int, selection: int, *, drop_sensor: bool, elevator: bool = False
) -> bytes:
    """DRIVE_SELECTION (0x06): packNo, drop sensor on (1/0), elevator on (1/0), selection."""
    return bytes((pack_no, int(drop_sensor), int(elevator))) + _selection_bytes(selection)


def select_to_buy_payload(pack_no: int, selection: int) -> bytes:
    """SELECT_TO_BUY (0x03): packNo, selection."""
    return bytes((pack_no,)) + _selection_bytes(selection)


@dataclass(frozen=True, slots=True)
class VendRequest:
    """A host's SELECT_TO_BUY or DRIVE_SELECTION as the board reads it."""

    command: int
    pack_no: int
    selection: int
    drop_sensor: bool
    elevator: bool

    @classmethod
    def parse(cls, frame: Frame) -> VendRequest:
        payload = frame.payload
        if frame.command == Command.SELECT_TO_BUY and len(payload) == 3:
            return cls(frame.command, payload[0], int.from_bytes(payload[1:3], "big"), False, False)
        if frame.command == Command.DRIVE_SELECTION and len(payload) == 5:
            return cls(
                frame.command,
                payload[0],
                int.from_bytes(payload[3:5], "big"),
                payload[1] == 1,
                payload[2] == 1,
            )
        raise ProtocolError(f"not a vend request: {frame.describe()}")


@dataclass(frozen=True, slots=True)
class DispenseReport:
    """DISPENSING_STATUS (0x04): packNo, status, selection, and one optional byte.

    The reference gives the optional fifth byte to lunch-box machines (the microwave number).
    This integration reads it as the drop sensor's verdict (1 = product seen, 0 = not seen)
    when it asked for the drop sensor: see README.md, "Drop sensor", for why and the caveat.
    """

    pack_no: int
    status: int
    selection: int
    extra: int | None = None

    @classmethod
    def parse(cls, frame: Frame) -> DispenseReport:
        payload = frame.payload
        if frame.command != Command.DISPENSING_STATUS or len(payload) not in (4, 5):
            raise ProtocolError(f"not a dispensing status: {frame.describe()}")
        extra = payload[4] if len(payload) == 5 else None
        return cls(payload[0], payload[1], int.from_bytes(payload[2:4], "big"), extra)

    def payload(self) -> bytes:
        data = bytes((self.pack_no, self.status)) + self.selection.to_bytes(2, "big")
        return data + (bytes((self.extra,)) if self.extra is not None else b"")

    @property
    def in_progress(self) -> bool:
        return self.status in IN_PROGRESS_STATUSES

    @property
    def status_name(self) -> str:
        try:
            return DispenseStatus(self.status).name.lower()
        except ValueError:
            return f"status 0x{self.status:02x}"


def _signed(byte: int) -> int:
    return byte - 0x100 if byte >= 0x80 else byte


@dataclass(frozen=True, slots=True)
class MachineStatusReport:
    """MACHINE_STATUS (0x52), the answer to MACHINE_STATUS_REQUEST (0x51).

    packNo, bill acceptor, coin acceptor, card reader, temperature controller, temperature
    (signed °C; 0xAA = not read yet), door (0 = closed), bill change (4), coin change (4),
    machine id (10 ASCII), temperatures of up to 8 cabinets (master first), and optionally
    humidities of up to 8 cabinets.
    """

    pack_no: int
    bill_acceptor: int
    coin_acceptor: int
    card_reader: int
    temperature_controller: int
    temperature: int | None
    door_open: bool
    bill_change: int = 0
    coin_change: int = 0
    machine_id: str = ""
    cabinet_temperatures: tuple[int | None, ...] = ()

    @classmethod
    def parse(cls, frame: Frame) -> MachineStatusReport:
        data = frame.payload
        if frame.command != Command.MACHINE_STATUS or len(data) < 7:
            raise ProtocolError(f"not a machine status: {frame.describe()}")

        def temperature(byte: int) -> int | None:
            return None if byte == TEMPERATURE_NOT_READ else _signed(byte)

        return cls(
            pack_no=data[0],
            bill_acceptor=data[1],
            coin_acceptor=data[2],
            card_reader=data[3],
            temperature_controller=data[4],
            temperature=temperature(data[5]),
            door_open=data[6] != 0,
            bill_change=int.from_bytes(data[7:11], "big") if len(data) >= 11 else 0,
            coin_change=int.from_bytes(data[11:15], "big") if len(data) >= 15 else 0,
            machine_id=data[15:25].decode("ascii", "replace").strip("\x00 ")
            if len(data) >= 25
            else "",
            cabinet_temperatures=tuple(temperature(byte) for byte in data[25:33]),
        )

    def payload(self) -> bytes:
        def temperature(value: int | None) -> int:
            return TEMPERATURE_NOT_READ if value is None else value & 0xFF

        cabinets = list(self.cabinet_temperatures[:8])
        cabinets += [None] * (8 - len(cabinets))
        return (
            bytes(
                (
                    self.pack_no,
                    self.bill_acceptor,
                    self.coin_acceptor,
                    self.card_reader,
                    self.temperature_controller,
                    temperature(self.temperature),
                    int(self.door_open),
                )
            )
            + self.bill_change.to_bytes(4, "big")
            + self.coin_change.to_bytes(4, "big")
            + self.machine_id.encode("ascii")[:10].ljust(10, b"0")
            + bytes(temperature(value) for value in cabinets)
        )


@dataclass(frozen=True, slots=True)
class SelectionInfo:
    """SELECTION_INFO (0x11): packNo, selection (2), price (4, minor units), stock (1),
    capacity (1), product id (2), status (1: 0 = normal, 1 = paused)."""

    pack_no: int
    selection: int
    price: int
    inventory: int
    capacity: int
    product_id: int
    paused: bool

    @classmethod
    def parse(cls, frame: Frame) -> SelectionInfo:
        data = frame.payload
        if frame.command != Command.SELECTION_INFO or len(data) < 12:
            raise ProtocolError(f"not a selection info: {frame.describe()}")
        return cls(
            data[0],
            int.from_bytes(data[1:3], "big"),
            int.from_bytes(data[3:7], "big"),
            data[7],
            data[8],
            int.from_bytes(data[9:11], "big"),
            data[11] == 1,
        )

    def payload(self) -> bytes:
        return (
            bytes((self.pack_no,))
            + self.selection.to_bytes(2, "big")
            + self.price.to_bytes(4, "big")
            + bytes((self.inventory, self.capacity))
            + self.product_id.to_bytes(2, "big")
            + bytes((int(self.paused),))
        )
