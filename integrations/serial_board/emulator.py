"""An emulated vending controller board for tests and integrators, on a real serial line.

``SerialBoardEmulator`` opens the device end of a pty pair (or any serial port) and behaves
like the board: it polls every ``poll_interval`` (200 ms, as the reference says), sends its
data frames (dispensing status, machine status, selection info) and waits for the host's
ACK, sends each again (same packNo) until it is ACKed, ACKs the host's commands and ignores a
command sent twice with the same packNo. It measures how long the host takes to answer each
frame and records every answer later than ``answer_deadline`` (100 ms).

Faults are injected one at a time with ``inject``: jammed selection, motor that does not
stop, missing motor, success without a drop, a lost dispensing status, a lost ACK to the
host, an ignored host ACK (so the board repeats itself), and garbage on the line.

Run it by hand against a port: ``python -m vendhub_integrations.serial_board.emulator PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import serial
import serial_asyncio

from .protocol import (
    ACK_FRAME,
    POLL_FRAME,
    Command,
    DispenseReport,
    DispenseStatus,
    Frame,
    FrameParser,
    MachineStatusReport,
    ProtocolError,
    SelectionInfo,
    VendRequest,
    encode_frame,
    next_pack_no,
)

_LOGGER = logging.getLogger(__name__)

GARBAGE = (
    b"\x00\x13\xfa\x37\xfb"
    + encode_frame(Command.DISPENSING_STATUS, b"\x09\x02\x00\x01")[:-1]
    + b"\x00"  # a whole frame with a wrong XOR
    + b"\xfa\xfb\x99\xc8\x01\x02"  # a header whose length (200) never comes
)
"""Line noise: stray bytes, a frame with a bad checksum, and a truncated long header."""


class Fault(StrEnum):
    jam = "jam"  # the selection reports "jammed"
    motor_stuck = "motor_stuck"  # "motor doesn't stop normally"
    no_motor = "no_motor"  # "motor doesn't exist"
    no_drop = "no_drop"  # success, but the drop sensor saw nothing
    lost_status = "lost_status"  # the final dispensing status is lost on the line once
    lost_ack = "lost_ack"  # the board's ACK of the next vend command is lost once
    repeat_status = "repeat_status"  # the board misses the host's ACK of its final status once
    garbage = "garbage"  # noise on the line before the board's next frame


VEND_FAULTS = frozenset(
    {
        Fault.jam,
        Fault.motor_stuck,
        Fault.no_motor,
        Fault.no_drop,
        Fault.lost_status,
        Fault.repeat_status,
    }
)


@dataclass(frozen=True, slots=True)
class Answer:
    """How the host answered one frame of the board."""

    to: str
    """``poll`` or the name of the data frame."""
    latency: float | None
    """Seconds from the board's write to the host's complete answer; None: no answer."""
    reply: Frame | None


@dataclass(eq=False)
class _DataFrame:
    command: int
    text: bytes
    pack_no: int | None = None
    sends: int = 0
    lose_first_send: bool = False
    ignore_first_ack: bool = False

    def frame(self) -> bytes:
        assert self.pack_no is not None
        return encode_frame(self.command, bytes((self.pack_no,)) + self.text)


@dataclass
class EmulatorRecord:
    """What happened on the line, for tests to assert on."""

    answers: list[Answer] = field(default_factory=list)
    vend_requests: list[VendRequest] = field(default_factory=list)
    """Every vend command the host sent, retransmissions included."""
    drives: list[VendRequest] = field(default_factory=list)
    """The vend commands the board acted on (one per real vend)."""
    duplicate_commands: int = 0
    commands: list[Frame] = field(default_factory=list)
    unexpected_frames: list[Frame] = field(default_factory=list)
    frames_lost: int = 0
    frames_dropped_after_retries: int = 0

    def latencies(self) -> list[float]:
        return [answer.latency for answer in self.answers if answer.latency is not None]

    def late_answers(self, deadline: float) -> list[Answer]:
        return [a for a in self.answers if a.latency is not None and a.latency > deadline]

    def missing_answers(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.latency is None]


class _DeviceLine(asyncio.Protocol):
    def __init__(self, emulator: SerialBoardEmulator) -> None:
        self._emulator = emulator

    def data_received(self, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        for frame in self._emulator.parser.feed(data):
            self._emulator._incoming.put_nowait((frame, now))

    def connection_lost(self, exc: Exception | None) -> None:
        self._emulator._line_closed.set()


class SerialBoardEmulator:
    """A vending controller board that polls the host over a serial port."""

    def __init__(
        self,
        port: str,
        *,
        poll_interval: float = 0.2,
        answer_deadline: float = 0.1,
        dispense_time: float = 0.3,
        temperature: int | None = 5,
        door_open: bool = False,
        motors: Iterable[int] = range(1, 261),
        selection_info: Iterable[SelectionInfo] = (),
        machine_id: str = "0000000001",
        max_sends: int = 5,
        baudrate: int = 57600,
    ) -> None:
        self.port = port
        self.poll_interval = poll_interval
        self.answer_deadline = answer_deadline
        self.dispense_time = dispense_time
        self.temperature = temperature
        self.door_open = door_open
        self.motors = frozenset(motors)
        self.selection_info = list(selection_info)
        self.machine_id = machine_id
        self.max_sends = max_sends
        self.baudrate = baudrate
        self.record = EmulatorRecord()
        self.parser = FrameParser()
        self._incoming: asyncio.Queue[tuple[Frame, float]] = asyncio.Queue()
        self._line_closed = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._outbox: deque[_DataFrame] = deque()
        self._faults: list[tuple[Fault, int | None]] = []
        self._pack_no = 1
        self._last_command: tuple[int, int | None] | None = None
        self._silent = False
        self._loop_task: asyncio.Task[None] | None = None
        self._vend_tasks: set[asyncio.Task[None]] = set()

    # ---- control -----------------------------------------------------------------------

    async def async_start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await serial_asyncio.create_serial_connection(
            loop,
            lambda: _DeviceLine(self),
            self.port,
            baudrate=self.baudrate,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
        )
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._loop_task = loop.create_task(self._async_run(), name="serial board emulator")

    async def async_stop(self) -> None:
        for task in [self._loop_task, *self._vend_tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._loop_task = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def inject(self, fault: Fault | str, *, selection: int | None = None) -> None:
        """Make the next vend (of ``selection``, if given) or frame suffer ``fault`` once."""
        self._faults.append((Fault(fault), selection))

    @property
    def pending_faults(self) -> list[tuple[Fault, int | None]]:
        return list(self._faults)

    def go_silent(self) -> None:
        """Stop polling, as a board that hangs or loses power."""
        self._silent = True

    def resume(self) -> None:
        self._silent = False

    def write_raw(self, data: bytes) -> None:
        """Put bytes on the line now (noise, or hand-made frames)."""
        if self._transport is not None:
            self._transport.write(data)

    # ---- the board's cycle ---------------------------------------------------------------

    async def _async_run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            if not self._silent:
                await self._async_exchange_data_frames()
                if not self._silent:
                    await self._async_poll()
            await asyncio.sleep(max(0.0, started + self.poll_interval - loop.time()))

    def _take_fault(self, wanted: frozenset[Fault], selection: int | None = None) -> Fault | None:
        for index, (fault, target) in enumerate(self._faults):
            if fault in wanted and (target is None or target == selection):
                del self._faults[index]
                return fault
        return None

    def _send(self, data: bytes) -> float:
        if self._take_fault(frozenset({Fault.garbage})) is not None:
            self.write_raw(GARBAGE)
        self._drain_unexpected()
        self.write_raw(data)
        return asyncio.get_running_loop().time()

    def _drain_unexpected(self) -> None:
        while not self._incoming.empty():
            frame, _ = self._incoming.get_nowait()
            self.record.unexpected_frames.append(frame)

    async def _async_answer(self, to: str, sent_at: float) -> Frame | None:
        try:
            async with asyncio.timeout(max(self.poll_interval, 2 * self.answer_deadline)):
                frame, received_at = await self._incoming.get()
        except TimeoutError:
            self.record.answers.append(Answer(to, None, None))
            _LOGGER.warning("Emulated board: no answer to %s", to)
            return None
        latency = received_at - sent_at
        self.record.answers.append(Answer(to, latency, frame))
        if latency > self.answer_deadline:
            _LOGGER.warning("Emulated board: answer to %s took %.0f ms", to, latency * 1000)
        return frame

    async def _async_exchange_data_frames(self) -> None:
        while self._outbox and not self._silent:
            item = self._outbox[0]
            if item.sends >= self.max_sends:
                self._outbox.popleft()
                self.record.frames_dropped_after_retries += 1
                continue
            if item.pack_no is None:
                item.pack_no = self._pack_no
            item.sends += 1
            name = Command(item.command).name
            if item.lose_first_send and item.sends == 1:
                self.record.frames_lost += 1
                return  # lost on the line: the host never sees it; sent again next cycle
            reply = await self._async_answer(name, self._send(item.frame()))
            if reply is None:
                return
            if reply.command != Command.ACK:
                self.record.unexpected_frames.append(reply)
                return
            if item.ignore_first_ack and item.sends == 1:
                return  # as if the ACK were lost: the same frame goes again next cycle
            self._outbox.popleft()
            self._pack_no = next_pack_no(self._pack_no)

    async def _async_poll(self) -> None:
        reply = await self._async_answer("poll", self._send(POLL_FRAME))
        if reply is not None and reply.command != Command.ACK:
            self._on_command(reply)

    def _on_command(self, frame: Frame) -> None:
        self.record.commands.append(frame)
        ack_lost = False
        if frame.command in (Command.SELECT_TO_BUY, Command.DRIVE_SELECTION):
            with contextlib.suppress(ProtocolError):
                request = VendRequest.parse(frame)
                self.record.vend_requests.append(request)
                lost_ack = frozenset({Fault.lost_ack})
                ack_lost = self._take_fault(lost_ack, request.selection) is not None
        if not ack_lost:
            self.write_raw(ACK_FRAME)
        key = (frame.command, frame.pack_no)
        if key == self._last_command:
            self.record.duplicate_commands += 1
            return
        self._last_command = key
        if frame.command in (Command.SELECT_TO_BUY, Command.DRIVE_SELECTION):
            try:
                request = VendRequest.parse(frame)
            except ProtocolError as error:
                _LOGGER.warning("Emulated board: %s", error)
                return
            self.record.drives.append(request)
            task = asyncio.get_running_loop().create_task(self._async_vend(request))
            self._vend_tasks.add(task)
            task.add_done_callback(self._vend_tasks.discard)
        elif frame.command == Command.MACHINE_STATUS_REQUEST:
            self._queue_machine_status()
        elif frame.command == Command.SYNC:
            for info in self.selection_info:
                self._outbox.append(_DataFrame(Command.SELECTION_INFO, info.payload()[1:]))

    def _queue_machine_status(self) -> None:
        report = MachineStatusReport(
            pack_no=0,
            bill_acceptor=0,
            coin_acceptor=0,
            card_reader=0,
            temperature_controller=0,
            temperature=self.temperature,
            door_open=self.door_open,
            machine_id=self.machine_id,
            cabinet_temperatures=(self.temperature,),
        )
        self._outbox.append(_DataFrame(Command.MACHINE_STATUS, report.payload()[1:]))

    def _status_frame(self, status: int, selection: int, extra: int | None = None) -> _DataFrame:
        text = DispenseReport(0, status, selection, extra).payload()[1:]
        return _DataFrame(Command.DISPENSING_STATUS, text)

    async def _async_vend(self, request: VendRequest) -> None:
        selection = request.selection
        fault = self._take_fault(VEND_FAULTS, selection)
        if selection not in self.motors or fault is Fault.no_motor:
            self._outbox.append(self._status_frame(DispenseStatus.NO_MOTOR, selection))
            return
        self._outbox.append(self._status_frame(DispenseStatus.DISPENSING, selection))
        await asyncio.sleep(self.dispense_time)
        drop: int | None = 1 if request.drop_sensor else None
        if fault is Fault.jam:
            final = self._status_frame(DispenseStatus.JAMMED, selection)
        elif fault is Fault.motor_stuck:
            final = self._status_frame(DispenseStatus.MOTOR_DID_NOT_STOP, selection)
        elif fault is Fault.no_drop:
            final = self._status_frame(DispenseStatus.SUCCESS, selection, 0)
        else:
            final = self._status_frame(DispenseStatus.SUCCESS, selection, drop)
        final.lose_first_send = fault is Fault.lost_status
        final.ignore_first_ack = fault is Fault.repeat_status
        self._outbox.append(final)


async def _async_main(arguments: argparse.Namespace) -> None:
    emulator = SerialBoardEmulator(
        arguments.port,
        poll_interval=arguments.poll_interval,
        dispense_time=arguments.dispense_time,
        temperature=arguments.temperature,
    )
    await emulator.async_start()
    try:
        await emulator._line_closed.wait()
    finally:
        await emulator.async_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Emulate a vending controller board.")
    parser.add_argument("port", help="the serial port (or pty) the board speaks on")
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--dispense-time", type=float, default=0.3)
    parser.add_argument("--temperature", type=int, default=5)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_async_main(parser.parse_args()))


if __name__ == "__main__":
    main()
