"""The VendHub machine protocol, version 1: topics, message schemas, decode and encode.

Everything a machine and the hub say to each other is one JSON object published under
``<prefix>/<machine_id>/<kind>`` (see ``docs/protocol.md`` for the full description):

==============  ===============  ======  =======  ==============================================
kind            direction        QoS     retain   message
==============  ===============  ======  =======  ==============================================
``status``      machine → hub    1       yes      online/offline; the last will says offline
``announce``    machine → hub    1       yes      model, firmware, slots, capabilities
``telemetry``   machine → hub    0       no       ``seq`` and readings
``event``       machine → hub    1       no       unique ``id``, ``seq``, name and data
``ack``         hub → machine    1       no       event ids the hub has durably handled
``config``      hub → machine    1       yes      prices, planogram, mode
``cmd/<name>``  hub → machine    1       no       a command with a correlation ``id``
``cmd_result``  machine → hub    1       no       the outcome of a command, same ``id``
``ota/...``     reserved
==============  ===============  ======  =======  ==============================================

Every message carries ``"v": 1``, the protocol's major version. ``decode`` parses, checks the
version and validates a message (times become aware datetimes); anything wrong raises
``ProtocolError`` with a readable reason. ``encode`` writes compact JSON. Keys a schema does
not know are kept, so a newer machine of the same major version can talk to an older hub.

Nothing here knows the hub: the machine agent uses this module too.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import voluptuous as vol

PROTOCOL_VERSION: Final = 1
DEFAULT_PREFIX: Final = "vendhub"
MAX_PAYLOAD_BYTES: Final = 256 * 1024  # a larger payload is refused before parsing
MAX_SLOTS: Final = 1000
MAX_READINGS: Final = 256
MAX_ACK_IDS: Final = 1000

# ---- topics --------------------------------------------------------------------------------

KIND_STATUS: Final = "status"
KIND_ANNOUNCE: Final = "announce"
KIND_TELEMETRY: Final = "telemetry"
KIND_EVENT: Final = "event"
KIND_ACK: Final = "ack"
KIND_CONFIG: Final = "config"
KIND_COMMAND: Final = "cmd"  # published as cmd/<name>
KIND_COMMAND_RESULT: Final = "cmd_result"
KIND_OTA: Final = "ota"  # reserved: no messages yet

MACHINE_KINDS: Final = frozenset(
    {KIND_STATUS, KIND_ANNOUNCE, KIND_TELEMETRY, KIND_EVENT, KIND_COMMAND_RESULT}
)
"""What a machine publishes (and the hub subscribes to)."""
HUB_KINDS: Final = frozenset({KIND_ACK, KIND_CONFIG, KIND_COMMAND})
"""What the hub publishes (and a machine subscribes to)."""
MESSAGE_KINDS: Final = MACHINE_KINDS | HUB_KINDS

QOS: Final[Mapping[str, int]] = {
    KIND_STATUS: 1,
    KIND_ANNOUNCE: 1,
    KIND_TELEMETRY: 0,
    KIND_EVENT: 1,
    KIND_ACK: 1,
    KIND_CONFIG: 1,
    KIND_COMMAND: 1,
    KIND_COMMAND_RESULT: 1,
}
RETAINED_KINDS: Final = frozenset({KIND_STATUS, KIND_ANNOUNCE, KIND_CONFIG})

COMMAND_RESTOCK: Final = "restock"
COMMAND_LOCK_SLOTS: Final = "lock_slots"
COMMAND_SET_DOOR: Final = "set_door"
COMMAND_VEND: Final = "vend"
COMMAND_PING: Final = "ping"
COMMAND_NAMES: Final = frozenset(
    {COMMAND_RESTOCK, COMMAND_LOCK_SLOTS, COMMAND_SET_DOOR, COMMAND_VEND, COMMAND_PING}
)
"""The commands of version 1; a machine answers others with ``ok: false``."""

MACHINE_ID_PATTERN: Final = re.compile(r"[a-z0-9_]{1,64}")
COMMAND_NAME_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PREFIX_LEVEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def is_machine_id(value: object) -> bool:
    """Whether ``value`` is a valid machine id: 1 to 64 of ``a-z``, ``0-9`` and ``_``."""
    return isinstance(value, str) and MACHINE_ID_PATTERN.fullmatch(value) is not None


def base_kind(kind: str) -> str:
    """The message kind of a topic kind: ``"cmd/restock"`` gives ``"cmd"``."""
    return kind.split("/", 1)[0]


def command_name(kind: str) -> str | None:
    """The command in ``"cmd/<name>"``, or None when ``kind`` is not a command."""
    head, _, name = kind.partition("/")
    return name if head == KIND_COMMAND and name else None


def qos(kind: str) -> int:
    """The MQTT QoS a message of ``kind`` (``"cmd/restock"`` too) is published with."""
    return QOS[base_kind(kind)]


def retained(kind: str) -> bool:
    """Whether a message of ``kind`` is published retained."""
    return base_kind(kind) in RETAINED_KINDS


def _check_prefix(prefix: str) -> None:
    levels = prefix.split("/") if isinstance(prefix, str) else [None]
    if not all(isinstance(level, str) and _PREFIX_LEVEL.fullmatch(level) for level in levels):
        raise ValueError(
            f"invalid topic prefix {prefix!r}: expected one or more levels of letters, digits, "
            "'_', '.' or '-' joined by '/'"
        )


def _is_topic_kind(kind: str) -> bool:
    if kind in MESSAGE_KINDS and kind != KIND_COMMAND:
        return True
    name = command_name(kind)
    return name is not None and COMMAND_NAME_PATTERN.fullmatch(name) is not None


def topic(machine_id: str, kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The topic a message of ``kind`` for or from ``machine_id`` is published on.

    ``kind`` is a message kind (``"status"``, ``"event"``, ...) or ``"cmd/<name>"``; a bad
    machine id, kind or prefix raises ``ValueError``.
    """
    if not is_machine_id(machine_id):
        raise ValueError(
            f"invalid machine id {machine_id!r}: expected 1 to 64 lowercase letters a-z, "
            "digits and '_'"
        )
    if not isinstance(kind, str) or not _is_topic_kind(kind):
        raise ValueError(
            f"invalid message kind {kind!r}: expected one of "
            f"{', '.join(sorted(MESSAGE_KINDS - {KIND_COMMAND}))} or cmd/<name>"
        )
    _check_prefix(prefix)
    return f"{prefix}/{machine_id}/{kind}"


def topic_filter(kind: str = "#", machine_id: str = "+", prefix: str = DEFAULT_PREFIX) -> str:
    """A subscription filter: ``topic_filter("event")`` is ``"vendhub/+/event"``.

    ``kind`` may also be ``"cmd/+"`` (every command) or ``"#"`` (everything); ``machine_id``
    is ``"+"`` for every machine or one machine's id.
    """
    if machine_id != "+" and not is_machine_id(machine_id):
        raise ValueError(f"invalid machine id {machine_id!r} for a topic filter")
    if kind not in ("#", "cmd/+", "cmd/#") and not _is_topic_kind(kind):
        raise ValueError(f"invalid message kind {kind!r} for a topic filter")
    _check_prefix(prefix)
    return f"{prefix}/{machine_id}/{kind}"


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str] | None:
    """``(machine_id, kind)`` of a protocol topic, or None when it is not one.

    ``"vendhub/lobby_1/cmd/restock"`` gives ``("lobby_1", "cmd/restock")``. A topic outside
    ``prefix``, with a bad machine id, an unknown kind or under the reserved ``ota/`` gives
    None.
    """
    if not isinstance(topic, str):
        return None
    head = f"{prefix}/"
    if not topic.startswith(head):
        return None
    machine_id, _, kind = topic[len(head) :].partition("/")
    if not is_machine_id(machine_id) or not _is_topic_kind(kind):
        return None
    return machine_id, kind


# ---- values --------------------------------------------------------------------------------


def timestamp(value: Any) -> datetime:
    """An ISO 8601 time with its offset, as an aware datetime; a time without one is UTC.

    An aware or naive ``datetime`` is accepted too, so a decoded message validates again.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise vol.Invalid(f"not an ISO 8601 time: {value[:40]!r}") from None
    else:
        raise vol.Invalid(f"expected an ISO 8601 time as text, got {_describe(value)}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """``moment`` as ISO 8601 text with milliseconds and its offset (naive counts as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="milliseconds")


def new_id() -> str:
    """A fresh event or correlation id: 32 hex digits."""
    return uuid.uuid4().hex


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"text {value[:40]!r}" if len(value) <= 40 else f"text {value[:40]!r}..."
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid(f"expected a whole number, got {_describe(value)}")
    return value


def _number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise vol.Invalid(f"expected a number, got {_describe(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid(f"expected true or false, got {_describe(value)}")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise vol.Invalid(f"expected an object, got {_describe(value)}")
    return value


def _text(max_length: int) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        if not isinstance(value, str):
            raise vol.Invalid(f"expected text, got {_describe(value)}")
        if not 1 <= len(value) <= max_length:
            raise vol.Invalid(f"expected 1 to {max_length} characters, got {len(value)}")
        return value

    return validate


def _pattern(pattern: str, expected: str) -> Callable[[Any], str]:
    compiled = re.compile(pattern)

    def validate(value: Any) -> str:
        if not isinstance(value, str) or compiled.fullmatch(value) is None:
            raise vol.Invalid(f"expected {expected}, got {_describe(value)}")
        return value

    return validate


def _one_of(*choices: str) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        if value not in choices or not isinstance(value, str):
            raise vol.Invalid(f"expected one of {', '.join(choices)}, got {_describe(value)}")
        return value

    return validate


def _list_of(item: Callable[[Any], Any], min_length: int, max_length: int) -> Callable[..., Any]:
    def validate(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise vol.Invalid(f"expected a list, got {_describe(value)}")
        if not min_length <= len(value) <= max_length:
            raise vol.Invalid(f"expected {min_length} to {max_length} items, got {len(value)}")
        result = []
        for index, element in enumerate(value):
            try:
                result.append(item(element))
            except vol.Invalid as error:
                error.prepend([index])
                raise
        return result

    return validate


def _mapping_of(
    key: Callable[[Any], str], item: Callable[[Any], Any], max_length: int
) -> Callable[[Any], dict[str, Any]]:
    def validate(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise vol.Invalid(f"expected an object, got {_describe(value)}")
        if len(value) > max_length:
            raise vol.Invalid(f"expected at most {max_length} entries, got {len(value)}")
        result = {}
        for name, element in value.items():
            try:
                key(name)
            except vol.Invalid as error:
                raise vol.Invalid(f"bad key {name!r}: {error.error_message}") from None
            try:
                result[name] = item(element)
            except vol.Invalid as error:
                error.prepend([name])
                raise
        return result

    return validate


COUNT = vol.All(_whole, vol.Range(min=0, msg="expected 0 or more"))
TEXT = _text(255)
LONG_TEXT = _text(2000)
MESSAGE_ID = _pattern(r"[0-9A-Za-z_-]{8,64}", "an id of 8 to 64 letters, digits, '_' or '-'")
"""An event or correlation id; 32 hex digits (``new_id()``) is what VendHub sends."""
EVENT_ID = MESSAGE_ID
SESSION_ID = _pattern(r"[0-9A-Za-z_-]{1,64}", "a session id of 1 to 64 letters or digits")
SLOT_CODE = _pattern(r"[A-Za-z0-9_-]{1,16}", "a slot code of 1 to 16 letters or digits")
EVENT_NAME = _pattern(r"[a-z][a-z0-9_]{0,63}", "an event name of lowercase letters, digits, '_'")
CURRENCY = _pattern(r"[A-Z]{3}", "an ISO 4217 currency code such as 'EUR'")
CAPABILITY = _pattern(r"[a-z][a-z0-9_.-]{0,63}", "a capability name such as 'card'")
READING_NAME = _pattern(r"[a-z][a-z0-9_]{0,63}", "a reading name of lowercase letters, digits")


def _version(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value != PROTOCOL_VERSION:
        raise vol.Invalid(f"expected {PROTOCOL_VERSION}, got {_describe(value)}")
    return value


def _or_null(validator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def validate(value: Any) -> Any:
        if value is None:
            return None
        try:
            return validator(value)
        except vol.Invalid as error:
            expected, got, rest = error.error_message.partition(", got ")
            message = f"{expected} or null{got}{rest}"
            raise vol.Invalid(message, path=error.path) from None

    return validate


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str) and len(value) > 255:
            raise vol.Invalid(f"expected at most 255 characters, got {len(value)}")
        return value
    return _number(value)


# ---- schemas -------------------------------------------------------------------------------

STATUS_ONLINE: Final = "online"
STATUS_OFFLINE: Final = "offline"

STATUS_SCHEMA = vol.Schema(
    {
        vol.Required("v"): _version,
        vol.Required("state"): _one_of(STATUS_ONLINE, STATUS_OFFLINE),
        vol.Optional("ts"): timestamp,
        vol.Optional("model"): TEXT,
        vol.Optional("firmware"): TEXT,
        vol.Optional("session"): SESSION_ID,
    },
    extra=vol.ALLOW_EXTRA,
)


def _at_most_capacity(*fields: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def validate(slot: dict[str, Any]) -> dict[str, Any]:
        for field in fields:
            if slot[field] > slot["capacity"]:
                raise vol.Invalid(
                    f"may be at most the capacity {slot['capacity']}, got {slot[field]}",
                    path=[field],
                )
        return slot

    return validate


_SLOT_PLAN = {
    vol.Required("product"): TEXT,
    vol.Required("price"): COUNT,  # minor units: cents
    vol.Required("capacity"): vol.All(_whole, vol.Range(min=1, msg="expected 1 or more")),
    vol.Required("par"): COUNT,
}

ANNOUNCE_SLOT_SCHEMA = vol.Schema(
    vol.All(
        vol.Schema({**_SLOT_PLAN, vol.Required("stock"): COUNT}, extra=vol.ALLOW_EXTRA),
        _at_most_capacity("par", "stock"),
    )
)
CONFIG_SLOT_SCHEMA = vol.Schema(
    vol.All(vol.Schema(_SLOT_PLAN, extra=vol.ALLOW_EXTRA), _at_most_capacity("par"))
)

ANNOUNCE_SCHEMA = vol.Schema(
    {
        vol.Required("v"): _version,
        vol.Required("ts"): timestamp,
        vol.Required("model"): TEXT,
        vol.Required("firmware"): TEXT,
        vol.Required("currency"): CURRENCY,
        vol.Required("refrigerated"): _boolean,
        vol.Optional("capabilities", default=list): _list_of(CAPABILITY, 0, 64),
        vol.Required("slots"): _mapping_of(SLOT_CODE, ANNOUNCE_SLOT_SCHEMA, MAX_SLOTS),
    },
    extra=vol.ALLOW_EXTRA,
)

READING_VALIDATORS: Final[Mapping[str, Callable[[Any], Any]]] = {
    "temperature": _number,  # °C
    "compressor": _boolean,
    "door_open": _boolean,
    "cash_box": COUNT,  # minor units
    "rssi": _whole,  # dBm
    "uptime": vol.All(_number, vol.Range(min=0, msg="expected 0 or more")),  # seconds
    "disk_free_mb": vol.All(_number, vol.Range(min=0, msg="expected 0 or more")),
    "errors": COUNT,
    "software_version": TEXT,
}
"""The readings version 1 knows; others are allowed with any number, text, bool or null."""


def _readings(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise vol.Invalid(f"expected an object of readings, got {_describe(value)}")
    if len(value) > MAX_READINGS:
        raise vol.Invalid(f"expected at most {MAX_READINGS} readings, got {len(value)}")
    result = {}
    for name, reading in value.items():
        validator = READING_VALIDATORS.get(name)
        if validator is None:
            try:
                READING_NAME(name)
            except vol.Invalid as error:
                raise vol.Invalid(f"bad reading name: {error.error_message}") from None
            validator = _scalar
        try:
            result[name] = validator(reading)
        except vol.Invalid as error:
            error.prepend([name])
            raise
    return result


TELEMETRY_SCHEMA = vol.Schema(
    {
        vol.Required("v"): _version,
        vol.Required("seq"): COUNT,
        vol.Required("ts"): timestamp,
        vol.Required("readings"): _readings,
    },
    extra=vol.ALLOW_EXTRA,
)

# Telemetry is nearly every message a fleet sends, and the schema costs tens of microseconds
# a message. ``_plain_telemetry_time`` checks the common, well-formed case by hand, rule for
# rule as TELEMETRY_SCHEMA (tests/machine/test_protocol.py holds the two side by side); what
# it does not accept as plainly valid goes through the schema, which words the error.
_NUMBER, _NON_NEGATIVE, _BOOLEAN, _WHOLE, _COUNT, _TEXT = range(6)
_READING_CHECKS: Final[Mapping[str, int]] = {
    "temperature": _NUMBER,
    "compressor": _BOOLEAN,
    "door_open": _BOOLEAN,
    "cash_box": _COUNT,
    "rssi": _WHOLE,
    "uptime": _NON_NEGATIVE,
    "disk_free_mb": _NON_NEGATIVE,
    "errors": _COUNT,
    "software_version": _TEXT,
}
_READING_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CHECKED_NAMES_LIMIT = 10_000
_checked_reading_names: set[str] = set()  # other reading names found valid already


def _plain_telemetry_time(message: dict[str, Any]) -> datetime | None:
    """The time of a plainly valid telemetry message; None means: ask the schema."""
    version = message.get("v")
    seq = message.get("seq")
    ts = message.get("ts")
    readings = message.get("readings")
    if not (
        type(version) is int
        and version == PROTOCOL_VERSION
        and type(seq) is int
        and seq >= 0
        and type(ts) is str
        and len(ts) <= 64
        and type(readings) is dict
        and len(readings) <= MAX_READINGS
    ):
        return None
    checks = _READING_CHECKS
    names = _checked_reading_names
    for name, value in readings.items():
        kind = type(value)
        check = checks.get(name)
        if check is None:  # a reading version 1 does not know: a scalar
            if name not in names:
                if type(name) is not str or _READING_NAME.fullmatch(name) is None:
                    return None
                if len(names) < _CHECKED_NAMES_LIMIT:
                    names.add(name)
            if not (
                value is None
                or kind is bool
                or kind is int
                or (kind is str and len(value) <= 255)
                or (kind is float and math.isfinite(value))
            ):
                return None
        elif kind is int:
            if check in (_BOOLEAN, _TEXT) or (value < 0 and check not in (_NUMBER, _WHOLE)):
                return None
        elif kind is float:
            if (
                check not in (_NUMBER, _NON_NEGATIVE)
                or not math.isfinite(value)
                or (value < 0 and check != _NUMBER)
            ):
                return None
        elif kind is bool:
            if check != _BOOLEAN:
                return None
        elif kind is not str or check != _TEXT or not 1 <= len(value) <= 255:
            return None
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


EVENT_SCHEMA = vol.Schema(
    {
        vol.Required("v"): _version,
        vol.Required("id"): EVENT_ID,
        vol.Required("seq"): COUNT,
        vol.Required("ts"): timestamp,
        vol.Required("event"): EVENT_NAME,
        vol.Optional("data", default=dict): _object,
    },
    extra=vol.ALLOW_EXTRA,
)

EVENT_VEND_STARTED: Final = "vend_started"
EVENT_VEND_COMPLETED: Final = "vend_completed"
EVENT_VEND_FAILED: Final = "vend_failed"
EVENT_DOOR_OPENED: Final = "door_opened"
EVENT_DOOR_CLOSED: Final = "door_closed"
EVENT_RESTOCKED: Final = "restocked"
EVENT_CASH_COLLECTED: Final = "cash_collected"
EVENT_SLOTS_LOCKED: Final = "slots_locked"
EVENT_ERROR: Final = "error"
EVENT_CONFIG_APPLIED: Final = "config_applied"
"""Sent by a machine after it applied a ``config``: ``{"version": N}``, optionally with what it
rejected and why (``rejected``: ``"mode"`` or ``"slots.<code>"`` → reason). An addition to
version 1: a hub that does not know it acks and ignores it, a machine that never sends it
leaves its configs unconfirmed."""

LEDGER_EVENTS: Final = frozenset(
    {EVENT_VEND_COMPLETED, EVENT_VEND_FAILED, EVENT_CASH_COLLECTED, EVENT_RESTOCKED}
)
"""Events the recorder writes to the money ledger: the hub acks them only after its
``money_recorded``; other events are acked once processed."""

_VEND_DATA = {
    vol.Required("slot"): SLOT_CODE,
    vol.Required("product"): TEXT,
    vol.Required("price"): COUNT,
    vol.Required("payment_method"): TEXT,
    vol.Optional("vend_id"): EVENT_ID,
    vol.Optional("stock"): COUNT,
    vol.Optional("cash_box"): COUNT,
    vol.Optional("payment_provider"): TEXT,
    vol.Optional("payment_reference"): TEXT,
}

EVENT_DATA_SCHEMAS: Final[Mapping[str, vol.Schema]] = {
    EVENT_VEND_STARTED: vol.Schema(_VEND_DATA, extra=vol.ALLOW_EXTRA),
    EVENT_VEND_COMPLETED: vol.Schema(_VEND_DATA, extra=vol.ALLOW_EXTRA),
    EVENT_VEND_FAILED: vol.Schema(
        {**_VEND_DATA, vol.Required("reason"): TEXT}, extra=vol.ALLOW_EXTRA
    ),
    EVENT_DOOR_OPENED: vol.Schema({}, extra=vol.ALLOW_EXTRA),
    EVENT_DOOR_CLOSED: vol.Schema({}, extra=vol.ALLOW_EXTRA),
    EVENT_RESTOCKED: vol.Schema(
        {vol.Required("slots"): _mapping_of(SLOT_CODE, COUNT, MAX_SLOTS)}, extra=vol.ALLOW_EXTRA
    ),
    EVENT_SLOTS_LOCKED: vol.Schema(
        {vol.Required("slots"): _mapping_of(SLOT_CODE, _boolean, MAX_SLOTS)},
        extra=vol.ALLOW_EXTRA,
    ),
    EVENT_CASH_COLLECTED: vol.Schema(
        {vol.Required("amount"): COUNT, vol.Required("cash_box"): COUNT}, extra=vol.ALLOW_EXTRA
    ),
    EVENT_ERROR: vol.Schema(
        {vol.Required("code"): _text(64), vol.Required("message"): LONG_TEXT},
        extra=vol.ALLOW_EXTRA,
    ),
    EVENT_CONFIG_APPLIED: vol.Schema(
        {
            vol.Required("version"): COUNT,
            vol.Optional("rejected"): _mapping_of(_text(64), LONG_TEXT, MAX_SLOTS + 1),
        },
        extra=vol.ALLOW_EXTRA,
    ),
}
"""The data of each event version 1 knows; an unknown event passes with its data as it is."""

ACK_SCHEMA = vol.Schema(
    {
        vol.Required("v"): _version,
        vol.Required("ids"): _list_of(EVENT_ID, 1, MAX_ACK_IDS),
    },
    extra=vol.ALLOW_EXTRA,
)

MODE_NORMAL: Final = "normal"
MODE_SERVICE: Final = "service"
MODE_OUT_OF_ORDER: Final = "out_of_order"
MODE_FREE_VEND: Final = "free_vend"
MODES: Final = (MODE_NORMAL, MODE_SERVICE, MODE_OUT_OF_ORDER, MODE_FREE_VEND)

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Required("v"): _version,
        vol.Required("version"): COUNT,
        vol.Required("ts"): timestamp,
        vol.Required("mode"): _one_of(*MODES),
        vol.Required("slots"): _mapping_of(SLOT_CODE, CONFIG_SLOT_SCHEMA, MAX_SLOTS),
    },
    extra=vol.ALLOW_EXTRA,
)

COMMAND_SCHEMA = vol.Schema(
    {
        vol.Required("v"): _version,
        vol.Required("id"): MESSAGE_ID,
        vol.Required("ts"): timestamp,
        vol.Required("args"): _object,
    },
    extra=vol.ALLOW_EXTRA,
)

COMMAND_ARGS_SCHEMAS: Final[Mapping[str, vol.Schema]] = {
    COMMAND_RESTOCK: vol.Schema({vol.Optional("slot"): SLOT_CODE}, extra=vol.ALLOW_EXTRA),
    COMMAND_LOCK_SLOTS: vol.Schema(
        {
            vol.Optional("slots"): _list_of(SLOT_CODE, 1, MAX_SLOTS),
            vol.Optional("locked", default=True): _boolean,
        },
        extra=vol.ALLOW_EXTRA,
    ),
    COMMAND_SET_DOOR: vol.Schema({vol.Required("open"): _boolean}, extra=vol.ALLOW_EXTRA),
    COMMAND_VEND: vol.Schema(
        {vol.Required("slot"): SLOT_CODE, vol.Optional("payment_method"): TEXT},
        extra=vol.ALLOW_EXTRA,
    ),
    COMMAND_PING: vol.Schema({}, extra=vol.ALLOW_EXTRA),
}
"""Suggested ``args`` of the version 1 commands; ``decode`` does not apply them (see
``validate_command_args``), so hub and machine may add arguments without breaking."""


def _result_consistent(message: dict[str, Any]) -> dict[str, Any]:
    if message["ok"] and message["error"] is not None:
        raise vol.Invalid("must be null when ok is true", path=["error"])
    if not message["ok"] and message["error"] is None:
        raise vol.Invalid("is required when ok is false: say what went wrong", path=["error"])
    return message


COMMAND_RESULT_SCHEMA = vol.Schema(
    vol.All(
        vol.Schema(
            {
                vol.Required("v"): _version,
                vol.Required("id"): MESSAGE_ID,
                vol.Required("ok"): _boolean,
                vol.Optional("result", default=None): _or_null(_object),
                vol.Optional("error", default=None): _or_null(LONG_TEXT),
                vol.Optional("ts"): timestamp,
            },
            extra=vol.ALLOW_EXTRA,
        ),
        _result_consistent,
    )
)

MESSAGE_SCHEMAS: Final[Mapping[str, vol.Schema]] = {
    KIND_STATUS: STATUS_SCHEMA,
    KIND_ANNOUNCE: ANNOUNCE_SCHEMA,
    KIND_TELEMETRY: TELEMETRY_SCHEMA,
    KIND_EVENT: EVENT_SCHEMA,
    KIND_ACK: ACK_SCHEMA,
    KIND_CONFIG: CONFIG_SCHEMA,
    KIND_COMMAND: COMMAND_SCHEMA,
    KIND_COMMAND_RESULT: COMMAND_RESULT_SCHEMA,
}


# ---- errors, decode, encode ----------------------------------------------------------------


class ProtocolError(ValueError):
    """A message that cannot be accepted; ``reason`` says why, ``kind`` is its kind."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(f"bad {kind or 'unknown'} message: {reason}")
        self.reason = reason
        self.kind = kind


class UnsupportedVersion(ProtocolError):
    """A message with no ``v`` or another major version than ``PROTOCOL_VERSION``."""

    def __init__(self, reason: str, kind: str, version: Any) -> None:
        super().__init__(reason, kind)
        self.version = version


def describe_invalid(error: vol.Invalid) -> str:
    """One readable sentence per problem: ``data > price: expected a whole number, ...``."""
    errors = error.errors if isinstance(error, vol.MultipleInvalid) else [error]
    parts = []
    for item in errors:
        where = " > ".join(str(part) for part in item.path)
        message = item.error_message
        if message == "required key not provided":
            message = "is required"
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(sorted(parts))


def _check_version(message: Mapping[str, Any], kind: str) -> None:
    if "v" not in message:
        raise UnsupportedVersion(
            f"no protocol version: 'v' is missing (this side speaks version {PROTOCOL_VERSION})",
            kind,
            None,
        )
    version = message["v"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise UnsupportedVersion(
            f"the protocol version 'v' must be a whole number, got {_describe(version)}",
            kind,
            version,
        )
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"unsupported protocol version {version} (this side speaks version {PROTOCOL_VERSION})",
            kind,
            version,
        )


def validate(kind: str, message: Any) -> dict[str, Any]:
    """Check the version of an already parsed ``message`` of ``kind`` and validate it.

    Returns a new dict with times as aware datetimes and defaults filled in; the data of a
    known event is validated too. Raises ``ProtocolError``.
    """
    if kind == KIND_TELEMETRY and type(message) is dict:
        moment = _plain_telemetry_time(message)
        if moment is not None:
            return {**message, "ts": moment, "readings": dict(message["readings"])}
    schema = MESSAGE_SCHEMAS.get(base_kind(kind)) if isinstance(kind, str) else None
    if schema is None or (kind != KIND_COMMAND and not _is_topic_kind(kind)):
        raise ProtocolError(
            f"unknown message kind {kind!r}; expected one of {', '.join(sorted(MESSAGE_KINDS))}",
            str(kind),
        )
    if not isinstance(message, dict):
        raise ProtocolError(f"a message must be a JSON object, got {_describe(message)}", kind)
    _check_version(message, kind)
    try:
        valid: dict[str, Any] = schema(message)
    except vol.Invalid as error:
        raise ProtocolError(describe_invalid(error), kind) from None
    if base_kind(kind) == KIND_EVENT:
        data_schema = EVENT_DATA_SCHEMAS.get(valid["event"])
        if data_schema is not None:
            try:
                valid["data"] = data_schema(valid["data"])
            except vol.Invalid as error:
                error.prepend(["data"])
                raise ProtocolError(f"{valid['event']}: {describe_invalid(error)}", kind) from None
    return valid


def validate_command_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the ``args`` of command ``name`` against ``COMMAND_ARGS_SCHEMAS``.

    An unknown command's args pass as they are. Raises ``ProtocolError``.
    """
    schema = COMMAND_ARGS_SCHEMAS.get(name)
    if schema is None:
        return dict(args)
    try:
        return dict(schema(dict(args)))
    except vol.Invalid as error:
        error.prepend(["args"])
        raise ProtocolError(describe_invalid(error), f"cmd/{name}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


# One decoder for every message: json.loads with an argument builds a new one each call.
_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def decode(
    kind: str, payload: bytes | bytearray | memoryview | str | dict[str, Any]
) -> dict[str, Any]:
    """Parse, version-check and validate one message of ``kind`` (``"cmd/restock"`` too).

    ``payload`` is the raw MQTT payload (UTF-8 JSON), JSON text or an already parsed dict.
    Returns the validated message with times as aware datetimes. Raises ``ProtocolError``
    (``UnsupportedVersion`` for a missing or other ``v``) with a readable reason.
    """
    if isinstance(payload, dict):
        return validate(kind, payload)
    if isinstance(payload, bytes | bytearray | memoryview):
        raw = bytes(payload)
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(
                f"payload of {len(raw)} bytes is larger than {MAX_PAYLOAD_BYTES}", kind
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ProtocolError(f"payload is not UTF-8 text ({error.reason})", kind) from None
    elif isinstance(payload, str):
        text = payload
        if len(text) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(
                f"payload of {len(text)} characters is larger than {MAX_PAYLOAD_BYTES}", kind
            )
    else:
        raise ProtocolError(f"expected bytes, text or a dict, got {_describe(payload)}", kind)
    try:
        if text.startswith("\ufeff"):  # as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        message = _JSON.decode(text)
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"payload is not valid JSON: {error}", kind) from None
    if kind == KIND_TELEMETRY and type(message) is dict:
        moment = _plain_telemetry_time(message)
        if moment is not None:
            message["ts"] = moment  # the parsed message is ours: no copy
            return message
    return validate(kind, message)


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON in a protocol message")


def encode(message: Mapping[str, Any]) -> bytes:
    """``message`` as compact UTF-8 JSON; datetimes become ISO 8601 text with an offset.

    NaN and infinities raise ``ValueError``, other values JSON cannot hold ``TypeError``.
    """
    return json.dumps(
        message, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_to_json
    ).encode("utf-8")
