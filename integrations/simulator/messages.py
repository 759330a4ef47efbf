"""The simulator's view of the machine protocol (``vendhub.machine.protocol``).

In one process the simulator hands the link whole messages rather than MQTT topics, so each
message says its kind in an extra ``type`` key (``event``, ``telemetry`` or ``status``); the
protocol allows extra keys. Everything else is the protocol module's.
"""

from __future__ import annotations

from typing import Any, Final

from vendhub.machine.protocol import (
    EVENT_CASH_COLLECTED,
    EVENT_DATA_SCHEMAS,
    EVENT_DOOR_CLOSED,
    EVENT_DOOR_OPENED,
    EVENT_ERROR,
    EVENT_RESTOCKED,
    EVENT_SCHEMA,
    EVENT_SLOTS_LOCKED,
    EVENT_VEND_COMPLETED,
    EVENT_VEND_FAILED,
    EVENT_VEND_STARTED,
    KIND_EVENT,
    KIND_STATUS,
    KIND_TELEMETRY,
    STATUS_SCHEMA,
    TELEMETRY_SCHEMA,
    ProtocolError,
    timestamp,
    validate,
)

__all__ = [
    "EVENT_CASH_COLLECTED",
    "EVENT_DATA_SCHEMAS",
    "EVENT_DOOR_CLOSED",
    "EVENT_DOOR_OPENED",
    "EVENT_ERROR",
    "EVENT_RESTOCKED",
    "EVENT_SCHEMA",
    "EVENT_SLOTS_LOCKED",
    "EVENT_VEND_COMPLETED",
    "EVENT_VEND_FAILED",
    "EVENT_VEND_STARTED",
    "LINK_KINDS",
    "STATUS_SCHEMA",
    "TELEMETRY_SCHEMA",
    "ProtocolError",
    "timestamp",
    "validate_message",
]

LINK_KINDS: Final = (KIND_EVENT, KIND_TELEMETRY, KIND_STATUS)
"""The message kinds the link handles."""


def validate_message(message: Any) -> dict[str, Any]:
    """Return the validated message (times parsed), or raise ``ProtocolError`` saying why.

    The kind comes from the message's ``type``; the protocol version and schema are checked
    by ``vendhub.machine.protocol.validate``, so a message without ``"v": 1`` is refused.
    """
    if not isinstance(message, dict):
        raise ProtocolError(
            f"a message must be a JSON object, got {type(message).__name__}", "unknown"
        )
    kind = message.get("type")
    if kind not in LINK_KINDS:
        raise ProtocolError(
            f"unknown message type {kind!r}; expected one of {', '.join(LINK_KINDS)}",
            str(kind),
        )
    return validate(kind, message)
