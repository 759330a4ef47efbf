"""The real ``SerialBoardDispenser`` against the emulated board, over socat pty pairs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import voluptuous as vol

from tests.serial_pty import PtyPair, pty_pair
from vendhub.core.hub import Hub
from vendhub.vending.dispenser import DispenseOutcome, DispenserError, DispenserStatus
from vendhub_integrations.serial_board import vendhub_dispenser
from vendhub_integrations.serial_board.board import SerialBoardDispenser
from vendhub_integrations.serial_board.emulator import Fault, SerialBoardEmulator
from vendhub_integrations.serial_board.protocol import Command, SelectionInfo

from .conftest import dispenser_options, wait_until

DEADLINE = 0.1


def test_hook_returns_the_class_for_its_platform_only() -> None:
    assert vendhub_dispenser("serial_board") is SerialBoardDispenser
    assert vendhub_dispenser("mdb") is None


async def test_success_drives_the_selection_once(
    dispenser: SerialBoardDispenser, emulator: SerialBoardEmulator
) -> None:
    result = await dispenser.async_dispense("B3", "vend-1")
    assert result.outcome is DispenseOutcome.dispensed
    assert result.drop_confirmed is True
    assert result.slot == "B3"
    [drive] = emulator.record.drives
    assert drive.command == Command.DRIVE_SELECTION
    assert (drive.selection, drive.drop_sensor, drive.elevator) == (13, True, False)
    assert emulator.record.late_answers(DEADLINE) == []


@pytest.mark.parametrize(
    ("fault", "outcome", "drop_confirmed"),
    [
        (Fault.jam, DispenseOutcome.jammed, None),
        (Fault.motor_stuck, DispenseOutcome.motor_stuck, None),
        (Fault.no_motor, DispenseOutcome.no_motor, None),
        (Fault.no_drop, DispenseOutcome.not_dropped, False),
    ],
)
async def test_each_fault_maps_to_its_outcome(
    dispenser: SerialBoardDispenser,
    emulator: SerialBoardEmulator,
    fault: Fault,
    outcome: DispenseOutcome,
    drop_confirmed: bool | None,
) -> None:
    emulator.inject(fault, selection=1)
    result = await dispenser.async_dispense("A1", "vend-fault")
    assert result.outcome is outcome
    assert result.drop_confirmed is drop_confirmed
    assert emulator.pending_faults == []
    after = await dispenser.async_dispense("A1", "vend-after")
    assert after.outcome is DispenseOutcome.dispensed


async def test_selection_without_a_motor(
    hub: Hub, serial_pair: PtyPair, statuses: list[DispenserStatus]
) -> None:
    board = SerialBoardEmulator(serial_pair.device, poll_interval=0.1, motors=range(1, 11))
    await board.async_start()
    dispenser = SerialBoardDispenser(hub, "m", dispenser_options(serial_pair.host))
    await dispenser.async_start()
    try:
        await wait_until(lambda: dispenser.online)
        result = await dispenser.async_dispense("B5", "vend-1")
        assert result.outcome is DispenseOutcome.no_motor
        assert "selection 15" in (result.detail or "")
    finally:
        await dispenser.async_stop()
        await board.async_stop()


async def test_slot_outside_the_map_is_an_error_outcome(
    dispenser: SerialBoardDispenser, emulator: SerialBoardEmulator
) -> None:
    result = await dispenser.async_dispense("A11", "vend-1")
    assert result.outcome is DispenseOutcome.error
    assert result.detail == "slot A11 has no selection number on this board"
    assert emulator.record.drives == []


async def test_explicit_selection_map_and_buy_command(hub: Hub, serial_pair: PtyPair) -> None:
    board = SerialBoardEmulator(serial_pair.device, poll_interval=0.1, dispense_time=0.05)
    await board.async_start()
    options = dispenser_options(
        serial_pair.host, selections={"A1": 101, "a2": 7}, vend_command="buy"
    )
    dispenser = SerialBoardDispenser(hub, "m", options)
    await dispenser.async_start()
    try:
        await wait_until(lambda: dispenser.online)
        assert (await dispenser.async_dispense("A2", "v1")).outcome is DispenseOutcome.dispensed
        result = await dispenser.async_dispense("A1", "v2")
        # SELECT_TO_BUY carries no drop-sensor switch: the board's success stands alone
        assert (result.outcome, result.drop_confirmed) == (DispenseOutcome.dispensed, None)
        assert [(d.command, d.selection) for d in board.record.drives] == [
            (Command.SELECT_TO_BUY, 7),
            (Command.SELECT_TO_BUY, 101),
        ]
    finally:
        await dispenser.async_stop()
        await board.async_stop()


async def test_garbage_on_the_line_is_skipped(
    dispenser: SerialBoardDispenser, emulator: SerialBoardEmulator
) -> None:
    for _ in range(3):
        emulator.inject(Fault.garbage)
    emulator.write_raw(b"\x13\x37\xfa\xfb\x04\x05")  # a torn header straight onto the line
    result = await dispenser.async_dispense("A2", "vend-1")
    assert result.outcome is DispenseOutcome.dispensed
    assert dispenser.frame_parser.bad_checksums >= 3
    assert dispenser.frame_parser.discarded_bytes > 0
    assert emulator.record.missing_answers() == []
    assert emulator.record.late_answers(DEADLINE) == []


async def test_lost_status_is_sent_again_and_the_host_waits_for_it(
    dispenser: SerialBoardDispenser, emulator: SerialBoardEmulator
) -> None:
    emulator.inject(Fault.lost_status)
    result = await dispenser.async_dispense("A3", "vend-1")
    assert result.outcome is DispenseOutcome.dispensed
    assert emulator.record.frames_lost == 1
    assert len(emulator.record.drives) == 1


async def test_lost_ack_makes_the_host_resend_with_the_same_pack_no(
    dispenser: SerialBoardDispenser, emulator: SerialBoardEmulator
) -> None:
    emulator.dispense_time = 0.5  # long enough for the next poll to come before the end
    emulator.inject(Fault.lost_ack)
    result = await dispenser.async_dispense("A4", "vend-1")
    assert result.outcome is DispenseOutcome.dispensed
    first, second = emulator.record.vend_requests
    assert first == second  # same packNo, same selection: a retransmission
    assert len(emulator.record.drives) == 1  # the board drove once
    assert emulator.record.duplicate_commands == 1
    assert dispenser.stats.retransmissions == 1


async def test_repeated_status_is_acked_but_acted_on_once(
    dispenser: SerialBoardDispenser, emulator: SerialBoardEmulator
) -> None:
    emulator.inject(Fault.repeat_status)
    acks_before = dispenser.stats.acks_sent
    first = await dispenser.async_dispense("A5", "vend-1")
    assert first.outcome is DispenseOutcome.dispensed
    await wait_until(lambda: dispenser.stats.duplicates_ignored == 1)

    def acks_to_status() -> int:
        return sum(
            1
            for answer in emulator.record.answers
            if answer.to == "DISPENSING_STATUS" and answer.reply is not None
        )

    # the board sent the final status twice and got an ACK for each ("dispensing", the final
    # status, its repetition); the board records the last ACK once it has read it
    await wait_until(lambda: acks_to_status() == 3)
    assert dispenser.stats.acks_sent > acks_before
    assert dispenser.stats.late_reports == []
    # the stale repetition did not end the next vend of the same selection early
    emulator.dispense_time = 0.4
    second = await dispenser.async_dispense("A5", "vend-2")
    assert second.outcome is DispenseOutcome.dispensed
    assert len(emulator.record.drives) == 2


async def test_every_poll_answered_within_100_ms_at_200_ms_polling(
    hub: Hub, serial_pair: PtyPair
) -> None:
    board = SerialBoardEmulator(serial_pair.device, poll_interval=0.2, dispense_time=0.1)
    await board.async_start()
    dispenser = SerialBoardDispenser(hub, "m", dispenser_options(serial_pair.host))
    await dispenser.async_start()
    try:
        await wait_until(lambda: dispenser.online)
        faults = [None, Fault.jam, Fault.garbage, Fault.lost_ack, None, Fault.repeat_status]
        outcomes = []
        for index, fault in enumerate(faults * 2):
            if fault is not None:
                board.inject(fault)
            result = await dispenser.async_dispense(f"C{index % 10 + 1}", f"vend-{index}")
            outcomes.append(result.outcome)
        assert outcomes.count(DispenseOutcome.dispensed) == 10
        assert outcomes.count(DispenseOutcome.jammed) == 2
        record = board.record
        polls = [answer for answer in record.answers if answer.to == "poll"]
        assert len(polls) >= 12
        assert len(record.answers) >= 3 * 12  # a poll, "dispensing" and the final status each
        assert record.missing_answers() == []
        assert record.late_answers(DEADLINE) == [], record.late_answers(DEADLINE)
        assert max(record.latencies()) < DEADLINE
        assert len(record.drives) == 12
    finally:
        await dispenser.async_stop()
        await board.async_stop()


async def test_temperature_and_door_are_published(
    dispenser: SerialBoardDispenser,
    emulator: SerialBoardEmulator,
    statuses: list[DispenserStatus],
) -> None:
    await wait_until(lambda: any(status.temperature == 4.0 for status in statuses))
    assert (await dispenser.async_status()).temperature == 4.0
    assert statuses[0].online is True
    emulator.temperature = -2
    emulator.door_open = True
    await wait_until(lambda: statuses[-1].temperature == -2.0 and statuses[-1].door_open is True)
    latest = await dispenser.async_status()
    assert latest == DispenserStatus(online=True, temperature=-2.0, door_open=True)
    requests = [f for f in emulator.record.commands if f.command == Command.MACHINE_STATUS_REQUEST]
    assert len(requests) >= 2


async def test_silent_board_goes_offline_once_and_comes_back(
    dispenser: SerialBoardDispenser,
    emulator: SerialBoardEmulator,
    statuses: list[DispenserStatus],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vendhub_integrations.serial_board")
    emulator.go_silent()
    await wait_until(lambda: not dispenser.online)
    await asyncio.sleep(1.0)  # silence goes on: still one warning
    silent = [r for r in caplog.records if "stopped polling" in r.getMessage()]
    assert len(silent) == 1
    assert silent[0].levelno == logging.WARNING
    assert statuses[-1].online is False
    with pytest.raises(DispenserError, match="is not polling"):
        await dispenser.async_dispense("A1", "vend-1")
    emulator.resume()
    await wait_until(lambda: dispenser.online)
    assert statuses[-1].online is True
    assert any("polling again" in r.getMessage() for r in caplog.records)
    assert (await dispenser.async_dispense("A1", "vend-2")).outcome is DispenseOutcome.dispensed


async def test_board_silent_mid_vend_times_out(hub: Hub, serial_pair: PtyPair) -> None:
    board = SerialBoardEmulator(serial_pair.device, poll_interval=0.1, dispense_time=0.5)
    await board.async_start()
    options = dispenser_options(serial_pair.host, dispense_timeout=1.5)
    dispenser = SerialBoardDispenser(hub, "m", options)
    await dispenser.async_start()
    try:
        await wait_until(lambda: dispenser.online)
        vend = asyncio.create_task(dispenser.async_dispense("A1", "vend-1"))
        await wait_until(lambda: len(board.record.drives) == 1)
        board.go_silent()
        result = await vend
        assert result.outcome is DispenseOutcome.timeout
        assert "no final status for selection 1 within 1.5 s" in (result.detail or "")
    finally:
        await dispenser.async_stop()
        await board.async_stop()


async def test_reconnects_when_the_port_comes_back(
    hub: Hub, tmp_path: Path, statuses: list[DispenserStatus], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vendhub_integrations.serial_board")
    port = tmp_path / "ttyVMC"  # a stable name, as udev gives a USB adapter
    dispenser: SerialBoardDispenser | None = None
    try:
        async with pty_pair() as first:
            port.symlink_to(first.host)
            board = SerialBoardEmulator(first.device, poll_interval=0.1, dispense_time=0.05)
            await board.async_start()
            dispenser = SerialBoardDispenser(hub, "m", dispenser_options(str(port)))
            dispenser.async_listen(statuses.append)
            await dispenser.async_start()
            await wait_until(lambda: dispenser is not None and dispenser.online)
            await board.async_stop()
        await wait_until(lambda: dispenser is not None and not dispenser.online)
        assert any("closed" in r.getMessage() for r in caplog.records)
        port.unlink()
        async with pty_pair() as second:
            port.symlink_to(second.host)
            board = SerialBoardEmulator(second.device, poll_interval=0.1, dispense_time=0.05)
            await board.async_start()
            try:
                await wait_until(lambda: dispenser is not None and dispenser.online)
                result = await dispenser.async_dispense("A1", "vend-after-reconnect")
                assert result.outcome is DispenseOutcome.dispensed
                assert any("open again" in r.getMessage() for r in caplog.records)
            finally:
                await dispenser.async_stop()
                await board.async_stop()
    finally:
        if dispenser is not None:
            await dispenser.async_stop()
    online_changes = [status.online for status in statuses]
    online_changes = [
        online
        for index, online in enumerate(online_changes)
        if index == 0 or online != online_changes[index - 1]
    ]
    assert online_changes == [True, False, True, False]  # the last: stopped at the end


async def test_sync_reports_selection_info(hub: Hub, serial_pair: PtyPair) -> None:
    infos = [
        SelectionInfo(0, number, 150 + number, 5, 10, 3000 + number, False) for number in (1, 2)
    ]
    board = SerialBoardEmulator(serial_pair.device, poll_interval=0.1, selection_info=infos)
    await board.async_start()
    options = dispenser_options(serial_pair.host, sync_on_start=True)
    dispenser = SerialBoardDispenser(hub, "m", options)
    await dispenser.async_start()
    try:
        await wait_until(lambda: len(dispenser.selection_info) == 2)
        assert dispenser.selection_info[2].price == 152
        assert dispenser.selection_info[1].product_id == 3001
    finally:
        await dispenser.async_stop()
        await board.async_stop()


async def test_unopenable_port_is_a_dispenser_error(hub: Hub, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tty"
    dispenser = SerialBoardDispenser(hub, "m", dispenser_options(str(missing)))
    with pytest.raises(DispenserError, match=f"cannot open serial port {missing}"):
        await dispenser.async_start()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"selections": {"A1": 4, "B2": 4}}, "slots A1 and B2 both drive selection 4"),
        ({"selections": {"A1": 0}}, "slot A1 has selection 0"),
        ({"port": ""}, "port must name a serial port"),
        ({"vend_command": "spin"}, "vend_command must be 'drive' or 'buy'"),
    ],
)
def test_config_errors_are_named(hub: Hub, options: dict[str, object], message: str) -> None:
    with pytest.raises(vol.Invalid, match=message):
        SerialBoardDispenser(hub, "m", {"port": "/dev/ttyS0", **options})
