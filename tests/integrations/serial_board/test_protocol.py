"""The FA FB framing, its stream parser, the payloads and the dispenser's options."""

from __future__ import annotations

import pytest
import voluptuous as vol

from vendhub_integrations.serial_board.emulator import GARBAGE
from vendhub_integrations.serial_board.options import (
    default_selection,
    selection_map,
    validate_options,
)
from vendhub_integrations.serial_board.protocol import (
    ACK_FRAME,
    POLL_FRAME,
    Command,
    DispenseReport,
    Frame,
    FrameParser,
    MachineStatusReport,
    ProtocolError,
    SelectionInfo,
    VendRequest,
    decode_frame,
    drive_selection_payload,
    encode_frame,
    next_pack_no,
    select_to_buy_payload,
)

# A machine status frame captured from a real board, quoted in a public vending server's
# source (see README.md): temperature 0x13 = 19 °C, cabinet temperatures 13 AA… (AA = unread).
REAL_MACHINE_STATUS = bytes.fromhex(
    "fafb52215400010000130000000000000000003030303030303030303013aaaaaaaaaaaaaa8d"
)


def test_poll_and_ack_are_the_reference_bytes() -> None:
    assert bytes.fromhex("fa fb 41 00 40") == POLL_FRAME
    assert bytes.fromhex("fa fb 42 00 43") == ACK_FRAME


def test_xor_covers_the_stx_bytes() -> None:
    frame = encode_frame(Command.DRIVE_SELECTION, drive_selection_payload(7, 12, drop_sensor=True))
    # FA^FB = 01, ^06 = 07, ^05 = 02, ^07 = 05, ^01 = 04, ^00 ^00, ^0C = 08
    assert frame == bytes.fromhex("fa fb 06 05 07 01 00 00 0c 08")
    assert decode_frame(frame) == Frame(Command.DRIVE_SELECTION, bytes.fromhex("07 01 00 00 0c"))


def test_select_to_buy_bytes() -> None:
    frame = encode_frame(Command.SELECT_TO_BUY, select_to_buy_payload(1, 23))
    # FA^FB = 01, ^03 = 02, ^03 = 01, ^01 = 00, ^00, ^17 = 17
    assert frame == bytes.fromhex("fa fb 03 03 01 00 17 17")
    request = VendRequest.parse(decode_frame(frame))
    assert (request.pack_no, request.selection, request.drop_sensor) == (1, 23, False)


def test_real_machine_status_frame_decodes() -> None:
    report = MachineStatusReport.parse(decode_frame(REAL_MACHINE_STATUS))
    assert report.pack_no == 0x54
    assert report.temperature == 19
    assert report.door_open is False
    assert report.machine_id == "0000000000"
    assert report.cabinet_temperatures == (19, None, None, None, None, None, None, None)


def test_machine_status_round_trip_with_negative_temperature() -> None:
    report = MachineStatusReport(3, 0, 0, 0, 0, -18, True, 500, 250, "VM00000042", (-18, 4))
    parsed = MachineStatusReport.parse(Frame(Command.MACHINE_STATUS, report.payload()))
    assert parsed.temperature == -18
    assert parsed.door_open is True
    assert (parsed.bill_change, parsed.coin_change) == (500, 250)
    assert parsed.machine_id == "VM00000042"
    assert parsed.cabinet_temperatures[:3] == (-18, 4, None)


def test_dispense_report_and_selection_info_round_trip() -> None:
    report = DispenseReport(9, 0x03, 517)
    assert DispenseReport.parse(Frame(Command.DISPENSING_STATUS, report.payload())) == report
    assert report.status_name == "jammed"
    info = SelectionInfo(4, 12, 150, 7, 10, 3001, False)
    assert SelectionInfo.parse(Frame(Command.SELECTION_INFO, info.payload())) == info


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (bytes.fromhex("fa fb 41 00 41"), "XOR is 41, expected 40"),
        (bytes.fromhex("fa fc 41 00 40"), "not fa fb"),
        (bytes.fromhex("fa fb 41 01 40"), "length byte says 1"),
        (bytes.fromhex("fa fb 41"), "shorter than the 5-byte minimum"),
    ],
)
def test_decode_names_the_problem(raw: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode_frame(raw)


def test_pack_no_wraps_from_255_to_1() -> None:
    assert next_pack_no(1) == 2
    assert next_pack_no(255) == 1


def test_parser_resynchronises_after_garbage() -> None:
    parser = FrameParser()
    status = encode_frame(Command.DISPENSING_STATUS, bytes.fromhex("05 02 00 01"))
    frames = parser.feed(GARBAGE + POLL_FRAME + GARBAGE + status + ACK_FRAME)
    assert [frame.command for frame in frames] == [Command.POLL, Command.DISPENSING_STATUS, 0x42]
    assert parser.bad_checksums == 2
    assert parser.discarded_bytes == 2 * len(GARBAGE)


def test_parser_assembles_frames_fed_byte_by_byte() -> None:
    parser = FrameParser()
    stream = b"\x00\xfa" + REAL_MACHINE_STATUS + POLL_FRAME
    frames = [frame for byte in stream for frame in parser.feed(bytes((byte,)))]
    assert [frame.command for frame in frames] == [Command.MACHINE_STATUS, Command.POLL]
    assert parser.discarded_bytes == 2


def test_truncated_long_header_does_not_swallow_the_next_poll() -> None:
    parser = FrameParser()
    assert parser.feed(bytes.fromhex("fa fb 52 c8 01 02 03")) == []
    assert parser.feed(POLL_FRAME) == [Frame(Command.POLL)]


@pytest.mark.parametrize(
    ("slot", "selection"),
    [("A1", 1), ("a10", 10), ("B1", 11), ("C3", 23), ("Z10", 260), ("A11", None), ("AA1", None)],
)
def test_default_selection_rows_of_ten(slot: str, selection: int | None) -> None:
    assert default_selection(slot) == selection


def test_default_selection_other_row_size() -> None:
    assert default_selection("B1", columns_per_row=8) == 9


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"A1": 3, "B2": 3}, "slots A1 and B2 both drive selection 3"),
        ({"A1": 0}, "slot A1 has selection 0; selection numbers are 1-999"),
        ({"A1": 1000}, "slot A1 has selection 1000"),
        ({"A1": "one"}, "slot A1 must have a whole selection number, got 'one'"),
        ({5: 1}, "slot code must be text such as 'A1', got 5"),
        ({"a1": 1, "A1": 2}, "slot A1 is listed twice"),
        (["A1"], "selections must map slot codes to selection numbers"),
    ],
)
def test_bad_selection_maps_are_named(value: object, message: str) -> None:
    with pytest.raises(vol.Invalid, match=message):
        selection_map(value)


def test_options_defaults_and_errors() -> None:
    options = validate_options({"port": "/dev/ttyS1", "selections": {"a1": 12}})
    assert options["baudrate"] == 57600
    assert options["selections"] == {"A1": 12}
    assert options["vend_command"] == "drive"
    with pytest.raises(vol.Invalid, match="required key not provided"):
        validate_options({})
    with pytest.raises(vol.Invalid, match="baudrate must be one of 9600"):
        validate_options({"port": "/dev/ttyS1", "baudrate": 12345})
    with pytest.raises(vol.Invalid, match="serial_board dispenser: selections: slots A1 and B1"):
        validate_options({"port": "/dev/ttyS1", "selections": {"A1": 2, "B1": 2}})
    with pytest.raises(vol.Invalid, match="dispense_timeout must be a number of seconds > 0"):
        validate_options({"port": "/dev/ttyS1", "dispense_timeout": 0})
