"""``SerialBoardDispenser``: the host side of a vending controller board on a serial port.

The board polls; the host answers every poll at once, from the serial callback, with its
oldest unacknowledged command or an ACK, and ACKs every data frame the board sends. A command
is sent again at each poll until the board ACKs it (with the same packNo, so the board can
tell a retransmission); a data frame the board sends twice (same command, same packNo and
text: our ACK was lost) is ACKed again but acted on once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import serial
import serial_asyncio

from vendhub.vending.dispenser import (
    DispenseOutcome,
    Dispenser,
    DispenserError,
    DispenseResult,
    DispenserStatus,
)

from .options import (
    CONF_BAUDRATE,
    CONF_COLUMNS_PER_ROW,
    CONF_DISPENSE_TIMEOUT,
    CONF_DROP_SENSOR,
    CONF_ELEVATOR,
    CONF_OFFLINE_AFTER,
    CONF_PORT,
    CONF_RECONNECT_INTERVAL,
    CONF_SELECTIONS,
    CONF_STATUS_INTERVAL,
    CONF_SYNC_ON_START,
    CONF_VEND_COMMAND,
    OPTIONS,
    VEND_COMMAND_DRIVE,
    default_selection,
    validate_options,
)
from .protocol import (
    ACK_FRAME,
    Command,
    DispenseReport,
    DispenseStatus,
    Frame,
    FrameParser,
    MachineStatusReport,
    ProtocolError,
    SelectionInfo,
    encode_frame,
    next_pack_no,
)

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

PLATFORM = "serial_board"
MAX_SENDS = 5
"""The reference lets either side send a packet up to 5 times."""

_FAILURE_OUTCOMES: Mapping[int, DispenseOutcome] = {
    DispenseStatus.JAMMED: DispenseOutcome.jammed,
    DispenseStatus.MOTOR_DID_NOT_STOP: DispenseOutcome.motor_stuck,
    DispenseStatus.NO_MOTOR: DispenseOutcome.no_motor,
}
_SUCCESS_STATUSES = frozenset({DispenseStatus.SUCCESS, DispenseStatus.TAKE_OUT_PRODUCT})


@dataclass(eq=False)
class _Outgoing:
    """A host command waiting for its poll and then for the board's ACK."""

    command: int
    text: bytes
    on_give_up: Callable[[str], None] | None = None
    pack_no: int | None = None
    sends: int = 0

    def frame(self) -> bytes:
        assert self.pack_no is not None
        return encode_frame(self.command, bytes((self.pack_no,)) + self.text)


@dataclass
class LinkStats:
    """What the host saw on the line (for logs and tests)."""

    polls: int = 0
    acks_sent: int = 0
    commands_sent: int = 0
    retransmissions: int = 0
    commands_acked: int = 0
    commands_given_up: int = 0
    duplicates_ignored: int = 0
    stray_acks: int = 0
    late_reports: list[DispenseReport] = field(default_factory=list)


class _LineProtocol(asyncio.Protocol):
    def __init__(self, board: SerialBoardDispenser) -> None:
        self._board = board

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._board._on_connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._board._on_bytes(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._board._on_connection_lost(exc)


class SerialBoardDispenser(Dispenser):
    """A vending controller (VMC) board speaking the ``FA FB`` protocol at 57600 8N1."""

    platform: ClassVar[str] = PLATFORM
    OPTIONS: ClassVar[Mapping[Any, Any]] = OPTIONS

    def __init__(self, hub: Hub, machine_id: str, options: Mapping[str, Any]) -> None:
        config = validate_options(options)
        super().__init__(hub, machine_id, config)
        self.port: str = config[CONF_PORT]
        self._baudrate: int = config[CONF_BAUDRATE]
        self._selections: dict[str, int] | None = config.get(CONF_SELECTIONS)
        self._columns_per_row: int = config[CONF_COLUMNS_PER_ROW]
        self._dispense_timeout: float = config[CONF_DISPENSE_TIMEOUT]
        self._drop_sensor: bool = config[CONF_DROP_SENSOR]
        self._drive: bool = config[CONF_VEND_COMMAND] == VEND_COMMAND_DRIVE
        self._elevator: bool = config[CONF_ELEVATOR]
        self._offline_after: float = config[CONF_OFFLINE_AFTER]
        self._status_interval: float = config[CONF_STATUS_INTERVAL]
        self._reconnect_interval: float = config[CONF_RECONNECT_INTERVAL]
        self._sync_on_start: bool = config[CONF_SYNC_ON_START]

        self._transport: asyncio.Transport | None = None
        self._parser = FrameParser()
        self._queue: deque[_Outgoing] = deque()
        self._pack_no = 1
        self._last_data_frame: Frame | None = None
        self._waiter: tuple[int, asyncio.Future[DispenseReport]] | None = None
        self._vend_lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._online = False
        self._last_frame_at: float | None = None
        self._connected_at: float | None = None
        self._silence_logged = False
        self._port_loss_logged = False
        self._next_status_request = 0.0
        self._synced = False
        self._status = DispenserStatus(online=False)
        self.stats = LinkStats()
        self.selection_info: dict[int, SelectionInfo] = {}
        """What the board reported of each selection (after ``sync_on_start``)."""

    # ---- slot codes --------------------------------------------------------------------

    def selection_for(self, slot: str) -> int | None:
        """The board's selection number of ``slot``, or None when it has none."""
        code = slot.strip().upper()
        if self._selections is not None:
            return self._selections.get(code)
        return default_selection(code, self._columns_per_row)

    # ---- lifecycle ---------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self._online

    @property
    def frame_parser(self) -> FrameParser:
        """The parser of the current connection: its counters tell how much noise it skipped."""
        return self._parser

    async def async_start(self) -> None:
        self._stopping = False
        try:
            await self._async_open()
        except (OSError, serial.SerialException) as error:
            raise DispenserError(f"cannot open serial port {self.port}: {error}") from error
        self._supervisor = self.hub.async_create_background_task(
            self._async_supervise(), name=f"serial_board {self.machine_id} supervisor"
        )

    async def async_stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._set_online(False)

    async def _async_open(self) -> None:
        loop = asyncio.get_running_loop()
        await serial_asyncio.create_serial_connection(
            loop,
            lambda: _LineProtocol(self),
            self.port,
            baudrate=self._baudrate,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
        )

    # ---- the line (runs in serial callbacks: answers go out before anything awaits) ------

    def _on_connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._parser = FrameParser()
        self._connected_at = asyncio.get_running_loop().time()
        self._last_data_frame = None
        if self._port_loss_logged:
            _LOGGER.info("Serial port %s of %s is open again", self.port, self.machine_id)
        self._port_loss_logged = False

    def _on_connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._set_online(False)
        if not self._stopping and not self._port_loss_logged:
            _LOGGER.warning(
                "Serial port %s of %s closed (%s); trying to reopen it every %.0f s",
                self.port,
                self.machine_id,
                exc or "end of file",
                self._reconnect_interval,
            )
            self._port_loss_logged = True

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _on_bytes(self, data: bytes) -> None:
        frames = self._parser.feed(data)
        if not frames:
            return
        self._last_frame_at = asyncio.get_running_loop().time()
        self._set_online(True)
        for frame in frames:
            self._on_frame(frame)

    def _on_frame(self, frame: Frame) -> None:
        if frame.command == Command.POLL:
            self.stats.polls += 1
            self._answer_poll()
        elif frame.command == Command.ACK:
            self._on_board_ack()
        else:
            self._write(ACK_FRAME)
            self.stats.acks_sent += 1
            if frame == self._last_data_frame:
                self.stats.duplicates_ignored += 1
                _LOGGER.debug("Board of %s repeated %s; ACKed again", self.machine_id, frame)
                return
            self._last_data_frame = frame
            self._on_data(frame)

    def _answer_poll(self) -> None:
        while self._queue and self._queue[0].sends >= MAX_SENDS:
            given_up = self._queue.popleft()
            self.stats.commands_given_up += 1
            reason = (
                f"the board did not acknowledge command 0x{given_up.command:02X} "
                f"after {MAX_SENDS} sends"
            )
            _LOGGER.warning("%s (%s)", reason, self.machine_id)
            if given_up.on_give_up is not None:
                given_up.on_give_up(reason)
        if not self._queue:
            self._write(ACK_FRAME)
            self.stats.acks_sent += 1
            return
        head = self._queue[0]
        if head.pack_no is None:
            head.pack_no = self._pack_no
        elif head.sends:
            self.stats.retransmissions += 1
        head.sends += 1
        self.stats.commands_sent += 1
        self._write(head.frame())

    def _on_board_ack(self) -> None:
        if not self._queue or self._queue[0].sends == 0:
            self.stats.stray_acks += 1
            return
        self._queue.popleft()
        self.stats.commands_acked += 1
        self._pack_no = next_pack_no(self._pack_no)

    def _on_data(self, frame: Frame) -> None:
        try:
            if frame.command == Command.DISPENSING_STATUS:
                self._on_dispense_report(DispenseReport.parse(frame))
            elif frame.command == Command.MACHINE_STATUS:
                self._on_machine_status(MachineStatusReport.parse(frame))
            elif frame.command == Command.SELECTION_INFO:
                info = SelectionInfo.parse(frame)
                self.selection_info[info.selection] = info
            else:
                _LOGGER.debug("Board of %s sent %s; ACKed", self.machine_id, frame.describe())
        except ProtocolError as error:
            _LOGGER.warning("Board of %s sent a malformed frame: %s", self.machine_id, error)

    def _on_dispense_report(self, report: DispenseReport) -> None:
        if report.in_progress:
            _LOGGER.debug(
                "Selection %d of %s: %s", report.selection, self.machine_id, report.status_name
            )
            return
        waiter = self._waiter
        if waiter is not None and waiter[0] == report.selection and not waiter[1].done():
            waiter[1].set_result(report)
            return
        self.stats.late_reports.append(report)
        _LOGGER.warning(
            "Board of %s reported %s for selection %d, which no vend is waiting for",
            self.machine_id,
            report.status_name,
            report.selection,
        )

    def _on_machine_status(self, report: MachineStatusReport) -> None:
        faults = (
            (f"temperature_controller=0x{report.temperature_controller:02x}",)
            if report.temperature_controller
            else ()
        )
        self._update_status(
            replace(
                self._status,
                temperature=float(report.temperature) if report.temperature is not None else None,
                door_open=report.door_open,
                faults=faults,
            )
        )

    # ---- status ------------------------------------------------------------------------

    def _set_online(self, online: bool) -> None:
        if online == self._online:
            return
        self._online = online
        if online:
            if self._silence_logged:
                _LOGGER.info("Board on %s of %s is polling again", self.port, self.machine_id)
            self._silence_logged = False
            self._next_status_request = 0.0
        self._update_status(replace(self._status, online=online))

    def _update_status(self, status: DispenserStatus) -> None:
        if status == self._status:
            return
        self._status = status
        self._async_publish_status(status)

    async def async_status(self) -> DispenserStatus:
        return self._status

    async def _async_supervise(self) -> None:
        tick = min(0.25, self._offline_after / 4)
        loop = asyncio.get_running_loop()
        next_reopen = 0.0
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if self._transport is None:
                if now >= next_reopen:
                    next_reopen = now + self._reconnect_interval
                    try:
                        await self._async_open()
                    except (OSError, serial.SerialException) as error:
                        _LOGGER.debug("Serial port %s still unavailable: %s", self.port, error)
                continue
            heard = self._last_frame_at if self._last_frame_at is not None else self._connected_at
            if heard is not None and now - heard > self._offline_after:
                self._set_online(False)
                if not self._silence_logged:
                    _LOGGER.warning(
                        "Board on %s of %s stopped polling (nothing for %.1f s); offline",
                        self.port,
                        self.machine_id,
                        now - heard,
                    )
                    self._silence_logged = True
            if not self._online:
                continue
            if self._sync_on_start and not self._synced:
                self._synced = True
                self._enqueue(Command.SYNC, b"")
            if now >= self._next_status_request:
                self._next_status_request = now + self._status_interval
                if not any(item.command == Command.MACHINE_STATUS_REQUEST for item in self._queue):
                    self._enqueue(Command.MACHINE_STATUS_REQUEST, b"")

    def _enqueue(
        self, command: int, text: bytes, on_give_up: Callable[[str], None] | None = None
    ) -> _Outgoing:
        item = _Outgoing(command, text, on_give_up)
        self._queue.append(item)
        return item

    def _withdraw(self, item: _Outgoing, *, answered: bool) -> None:
        """Take a vend command off the queue once its vend is over, so that a board that
        comes back later never drives a vend the engine has already given up."""
        try:
            self._queue.remove(item)
        except ValueError:
            return
        if item.sends and not answered:
            _LOGGER.warning(
                "Vend command to %s was sent %d time(s), never acknowledged and is withdrawn",
                self.machine_id,
                item.sends,
            )

    # ---- the vend ----------------------------------------------------------------------

    async def async_dispense(self, slot: str, vend_id: str) -> DispenseResult:
        selection = self.selection_for(slot)
        if selection is None:
            return DispenseResult(
                DispenseOutcome.error,
                slot,
                detail=f"slot {slot} has no selection number on this board",
            )
        async with self._vend_lock:
            if self._transport is None:
                raise DispenserError(f"serial port {self.port} is not open")
            if not self._online:
                raise DispenserError(f"the board on {self.port} is not polling")
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[DispenseReport] = loop.create_future()

            def give_up(reason: str) -> None:
                if not waiter.done():
                    waiter.set_exception(DispenserError(reason))

            if self._drive:
                text = bytes((int(self._drop_sensor), int(self._elevator))) + selection.to_bytes(
                    2, "big"
                )
                command = self._enqueue(Command.DRIVE_SELECTION, text, give_up)
            else:
                text = selection.to_bytes(2, "big")
                command = self._enqueue(Command.SELECT_TO_BUY, text, give_up)
            self._waiter = (selection, waiter)
            _LOGGER.debug("Vend %s: slot %s → selection %d", vend_id, slot, selection)
            try:
                async with asyncio.timeout(self._dispense_timeout):
                    report = await waiter
            except TimeoutError:
                return DispenseResult(
                    DispenseOutcome.timeout,
                    slot,
                    detail=f"no final status for selection {selection} "
                    f"within {self._dispense_timeout:g} s",
                )
            except DispenserError as error:
                return DispenseResult(DispenseOutcome.timeout, slot, detail=str(error))
            finally:
                self._waiter = None
                answered = waiter.done() and not waiter.cancelled() and not waiter.exception()
                self._withdraw(command, answered=answered)
        return self._result(slot, report)

    def _result(self, slot: str, report: DispenseReport) -> DispenseResult:
        detail = f"selection {report.selection}: {report.status_name}"
        if report.status in _SUCCESS_STATUSES:
            drop_seen: bool | None = None
            if self._drop_sensor and report.extra is not None:
                drop_seen = report.extra == 1
            if drop_seen is False:
                return DispenseResult(
                    DispenseOutcome.not_dropped,
                    slot,
                    drop_confirmed=False,
                    detail=f"{detail}, but the drop sensor saw nothing",
                )
            return DispenseResult(
                DispenseOutcome.dispensed, slot, drop_confirmed=drop_seen, detail=detail
            )
        outcome = _FAILURE_OUTCOMES.get(report.status, DispenseOutcome.error)
        return DispenseResult(outcome, slot, detail=detail)
