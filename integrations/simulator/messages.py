"""The machine protocol's messages, as they arrive from a machine, and their schemas.

Three kinds of message, told apart by ``type``:

- ``event``: ``{"type": "event", "id": <unique hex id>, "seq": n, "ts": iso, "event": name,
  "data": {...}}``; the same ``id`` may arrive more than once and counts once.
- ``telemetry``: ``{"type": "telemetry", "seq": n, "ts": iso, "readings": {name: value}}``.
- ``status``: ``{"type": "status", "ts": iso, "state": "online"|"offline", "model",
  "firmware"}``, retained by the broker; the last will says ``offline``.

Unknown keys are allowed so that newer machines can talk to an older hub.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import voluptuous as vol

EVENT_VEND_STARTED: Final = "vend_started"
EVENT_VEND_COMPLETED: Final = "vend_completed"
EVENT_VEND_FAILED: Final = "vend_failed"
EVENT_DOOR_OPENED: Final = "door_opened"
EVENT_DOOR_CLOSED: Final = "door_closed"
EVENT_RESTOCKED: Final = "restocked"
EVENT_CASH_COLLECTED: Final = "cash_collected"
EVENT_SLOTS_LOCKED: Final = "slots_locked"


def timestamp(value: Any) -> datetime:
    """An ISO 8601 time; a time without an offset is taken as UTC."""
    if not isinstance(value, str):
        raise vol.Invalid("expected an ISO 8601 time as text")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise vol.Invalid(f"not an ISO 8601 time: {value[:40]!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid("expected a whole number")
    return value


COUNT = vol.All(_whole, vol.Range(min=0))
TEXT = vol.All(str, vol.Length(min=1, max=255))
EVENT_ID = vol.All(
    str, vol.Match(r"^[0-9A-Za-z_-]{8,64}$", msg="expected 8 to 64 letters, digits, _ or -")
)

EVENT_SCHEMA = vol.Schema(
    {
        vol.Required("type"): "event",
        vol.Required("id"): EVENT_ID,
        vol.Required("seq"): COUNT,
        vol.Required("ts"): timestamp,
        vol.Required("event"): vol.All(str, vol.Match(r"^[a-z][a-z0-9_]{0,63}$")),
        vol.Optional("data", default=dict): dict,
    },
    extra=vol.ALLOW_EXTRA,
)

TELEMETRY_SCHEMA = vol.Schema(
    {
        vol.Required("type"): "telemetry",
        vol.Required("seq"): COUNT,
        vol.Required("ts"): timestamp,
        vol.Required("readings"): {
            vol.All(str, vol.Length(min=1, max=64)): vol.Any(bool, int, float, str, None)
        },
    },
    extra=vol.ALLOW_EXTRA,
)

STATUS_SCHEMA = vol.Schema(
    {
        vol.Required("type"): "status",
        vol.Required("state"): vol.In(("online", "offline")),
        vol.Optional("ts"): timestamp,
        vol.Optional("seq"): COUNT,
        vol.Optional("model"): TEXT,
        vol.Optional("firmware"): TEXT,
    },
    extra=vol.ALLOW_EXTRA,
)

MESSAGE_SCHEMAS: Final = {
    "event": EVENT_SCHEMA,
    "telemetry": TELEMETRY_SCHEMA,
    "status": STATUS_SCHEMA,
}

_VEND_DATA = {
    vol.Required("slot"): TEXT,
    vol.Required("product"): TEXT,
    vol.Required("price"): COUNT,
    vol.Required("payment_method"): TEXT,
    vol.Optional("vend_id"): EVENT_ID,
    vol.Optional("stock"): COUNT,
    vol.Optional("cash_box"): COUNT,
}

EVENT_DATA_SCHEMAS: Final = {
    EVENT_VEND_STARTED: vol.Schema(_VEND_DATA, extra=vol.ALLOW_EXTRA),
    EVENT_VEND_COMPLETED: vol.Schema(_VEND_DATA, extra=vol.ALLOW_EXTRA),
    EVENT_VEND_FAILED: vol.Schema(
        {**_VEND_DATA, vol.Required("reason"): TEXT}, extra=vol.ALLOW_EXTRA
    ),
    EVENT_DOOR_OPENED: vol.Schema({}, extra=vol.ALLOW_EXTRA),
    EVENT_DOOR_CLOSED: vol.Schema({}, extra=vol.ALLOW_EXTRA),
    EVENT_RESTOCKED: vol.Schema({vol.Required("slots"): {TEXT: COUNT}}, extra=vol.ALLOW_EXTRA),
    EVENT_SLOTS_LOCKED: vol.Schema({vol.Required("slots"): {TEXT: bool}}, extra=vol.ALLOW_EXTRA),
    EVENT_CASH_COLLECTED: vol.Schema(
        {vol.Required("amount"): COUNT, vol.Required("cash_box"): COUNT}, extra=vol.ALLOW_EXTRA
    ),
}


def validate_message(message: Any) -> dict[str, Any]:
    """Return the validated message (times parsed), or raise ``vol.Invalid`` saying why.

    The ``data`` of an event this hub knows is validated too; other events pass with
    their data as it is.
    """
    if not isinstance(message, dict):
        raise vol.Invalid(f"a message must be a JSON object, got {type(message).__name__}")
    schema = MESSAGE_SCHEMAS.get(message.get("type"))  # type: ignore[arg-type]
    if schema is None:
        raise vol.Invalid(
            f"unknown message type {message.get('type')!r}; expected one of "
            f"{', '.join(MESSAGE_SCHEMAS)}",
            path=["type"],
        )
    valid: dict[str, Any] = schema(message)
    if valid["type"] == "event":
        data_schema = EVENT_DATA_SCHEMAS.get(valid["event"])
        if data_schema is not None:
            try:
                valid["data"] = data_schema(valid["data"])
            except vol.Invalid as error:
                error.prepend(["data"])
                raise
    return valid
