"""The options of a ``serial_board`` dispenser and how slot codes become selection numbers.

By default slot ``A1`` is selection 1 and rows hold 10 columns: ``A1``…``A10`` are 1…10,
``B1`` is 11, ``C3`` is 23 (``columns_per_row`` changes the 10). A ``selections:`` map names
each slot's selection instead, for boards whose motors are wired otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from .protocol import MAX_SELECTION

CONF_PORT = "port"
CONF_BAUDRATE = "baudrate"
CONF_SELECTIONS = "selections"
CONF_COLUMNS_PER_ROW = "columns_per_row"
CONF_DISPENSE_TIMEOUT = "dispense_timeout"
CONF_DROP_SENSOR = "drop_sensor"
CONF_VEND_COMMAND = "vend_command"
CONF_ELEVATOR = "elevator"
CONF_OFFLINE_AFTER = "offline_after"
CONF_STATUS_INTERVAL = "status_interval"
CONF_RECONNECT_INTERVAL = "reconnect_interval"
CONF_SYNC_ON_START = "sync_on_start"

VEND_COMMAND_DRIVE = "drive"
"""DRIVE_SELECTION (0x06): carries the drop-sensor and elevator switches."""
VEND_COMMAND_BUY = "buy"
"""SELECT_TO_BUY (0x03): the board applies its own settings."""

DEFAULT_BAUDRATE = 57600
BAUDRATES = (9600, 19200, 38400, 57600, 115200)
_SLOT_CODE = re.compile(r"([A-Z])([0-9]{1,2})")


def default_selection(slot: str, columns_per_row: int = 10) -> int | None:
    """``A1`` → 1, ``B1`` → ``columns_per_row + 1``; None for a code outside that scheme."""
    found = _SLOT_CODE.fullmatch(slot.strip().upper())
    if found is None:
        return None
    column = int(found.group(2))
    if not 1 <= column <= columns_per_row:
        return None
    selection = (ord(found.group(1)) - ord("A")) * columns_per_row + column
    return selection if selection <= MAX_SELECTION else None


def selection_map(value: Any) -> dict[str, int]:
    """Validate a ``selections:`` map: slot code → selection number 1-999, no number twice."""
    if not isinstance(value, Mapping):
        raise vol.Invalid(
            f"selections must map slot codes to selection numbers (A1: 1), "
            f"got {type(value).__name__}"
        )
    result: dict[str, int] = {}
    owner_of: dict[int, str] = {}
    for slot, number in value.items():
        if not isinstance(slot, str) or not slot.strip():
            raise vol.Invalid(f"selections: slot code must be text such as 'A1', got {slot!r}")
        code = slot.strip().upper()
        if isinstance(number, bool) or not isinstance(number, int):
            raise vol.Invalid(
                f"selections: slot {code} must have a whole selection number, got {number!r}"
            )
        if not 1 <= number <= MAX_SELECTION:
            raise vol.Invalid(
                f"selections: slot {code} has selection {number}; "
                f"selection numbers are 1-{MAX_SELECTION}"
            )
        if code in result:
            raise vol.Invalid(f"selections: slot {code} is listed twice")
        if number in owner_of:
            raise vol.Invalid(
                f"selections: slots {owner_of[number]} and {code} both drive selection {number}"
            )
        result[code] = number
        owner_of[number] = code
    return result


def _positive_seconds(name: str) -> vol.All:
    return vol.All(
        vol.Coerce(float),
        vol.Range(min=0, min_included=False, msg=f"{name} must be a number of seconds > 0"),
    )


OPTIONS: dict[Any, Any] = {
    vol.Required(CONF_PORT): vol.All(str, vol.Length(min=1, msg="port must name a serial port")),
    vol.Optional(CONF_BAUDRATE, default=DEFAULT_BAUDRATE): vol.All(
        int, vol.In(BAUDRATES, msg=f"baudrate must be one of {', '.join(map(str, BAUDRATES))}")
    ),
    vol.Optional(CONF_SELECTIONS): selection_map,
    vol.Optional(CONF_COLUMNS_PER_ROW, default=10): vol.All(
        int, vol.Range(min=1, max=99, msg="columns_per_row must be 1-99")
    ),
    vol.Optional(CONF_DISPENSE_TIMEOUT, default=30.0): _positive_seconds(CONF_DISPENSE_TIMEOUT),
    vol.Optional(CONF_DROP_SENSOR, default=True): bool,
    vol.Optional(CONF_VEND_COMMAND, default=VEND_COMMAND_DRIVE): vol.In(
        (VEND_COMMAND_DRIVE, VEND_COMMAND_BUY), msg="vend_command must be 'drive' or 'buy'"
    ),
    vol.Optional(CONF_ELEVATOR, default=False): bool,
    vol.Optional(CONF_OFFLINE_AFTER, default=2.0): _positive_seconds(CONF_OFFLINE_AFTER),
    vol.Optional(CONF_STATUS_INTERVAL, default=60.0): _positive_seconds(CONF_STATUS_INTERVAL),
    vol.Optional(CONF_RECONNECT_INTERVAL, default=2.0): _positive_seconds(CONF_RECONNECT_INTERVAL),
    vol.Optional(CONF_SYNC_ON_START, default=False): bool,
}


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the dispenser's options; raises ``vol.Invalid`` with a message naming the
    option and the problem."""
    schema = vol.Schema(OPTIONS, extra=vol.REMOVE_EXTRA)
    try:
        return schema(dict(options))
    except vol.MultipleInvalid as error:
        first = error.errors[0]
        path = ".".join(str(part) for part in first.path)
        message = first.error_message
        if path and not message.startswith(path.split(".")[0]):
            message = f"{path}: {message}"
        raise vol.Invalid(f"serial_board dispenser: {message}") from None
