"""The WebSocket API's messages: their shapes, error codes, and JSON serialised once.

Everything the server sends is built here as UTF-8 JSON bytes. A pushed event is made of
the subscription's prefix and the event's JSON, which is serialised once per event and
shared by every connection that receives it (``event_message``); a state's JSON is kept in
``StateJsonCache`` while the state is current, so ``get_states`` and the state pushes never
serialise the same ``State`` twice.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from vendhub.const import __version__

if TYPE_CHECKING:
    from vendhub.core.events import Event
    from vendhub.core.states import State, StateMachine

PROTOCOL_VERSION: Final = 1

# Error codes of a failed result ({"success": false, "error": {"code", "message"}}).
ERR_INVALID_JSON: Final = "invalid_json"
"""The frame is not JSON text (or holds a duplicate key)."""
ERR_INVALID_FORMAT: Final = "invalid_format"
"""The message is JSON but not a valid message: not an object, no id, wrong field types."""
ERR_ID_REUSE: Final = "id_reuse"
"""The id is not greater than the previous message's id."""
ERR_UNKNOWN_COMMAND: Final = "unknown_command"
ERR_TOO_LARGE: Final = "message_too_large"
ERR_UNAUTHORIZED: Final = "unauthorized"
"""The connection's identity may not do this."""
ERR_NOT_FOUND: Final = "not_found"
"""No such subscription, service, or machine (within the caller's reach)."""
ERR_INVALID_SERVICE_DATA: Final = "invalid_service_data"
ERR_TIMEOUT: Final = "timeout"
ERR_SERVICE_ERROR: Final = "service_error"
"""The service ran and failed; the message says why."""
ERR_TOO_MANY: Final = "too_many"
"""Too many subscriptions or calls in flight on this connection."""
ERR_UNKNOWN: Final = "unknown_error"
"""A fault of the hub's; it is logged."""

# Close codes (RFC 6455 section 7.4.1).
CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008
"""Authentication failed or ended, or the client was too slow to read what it asked for."""
CLOSE_TOO_BIG: Final = 1009


def _plain(value: Any) -> Any:
    """What ``json`` cannot write itself: times as ISO 8601, sets as lists, the rest as text."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has neither) and every key as text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_finite(item) for item in value]
    if hasattr(value, "as_dict"):
        return _finite(value.as_dict())
    return value


_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain
)


def json_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; NaN and infinities become null, keys text, values
    JSON does not know text (times as ISO 8601)."""
    try:
        return _ENCODER.encode(value).encode()
    except (ValueError, TypeError):
        return _ENCODER.encode(_finite(value)).encode()


def auth_required() -> bytes:
    return json_bytes(
        {"type": "auth_required", "version": __version__, "protocol": PROTOCOL_VERSION}
    )


def auth_ok() -> bytes:
    return json_bytes({"type": "auth_ok", "version": __version__, "protocol": PROTOCOL_VERSION})


def auth_invalid(message: str) -> bytes:
    return json_bytes({"type": "auth_invalid", "message": message})


def result_message(msg_id: int, result: Any = None) -> bytes:
    return json_bytes({"id": msg_id, "type": "result", "success": True, "result": result})


def raw_result_message(msg_id: int, result_json: bytes) -> bytes:
    """A successful result whose ``result`` is already JSON."""
    return b'{"id":%d,"type":"result","success":true,"result":%b}' % (msg_id, result_json)


def error_message(msg_id: int | None, code: str, message: str, details: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return json_bytes({"id": msg_id, "type": "result", "success": False, "error": error})


def pong_message(msg_id: int) -> bytes:
    return b'{"id":%d,"type":"pong"}' % msg_id


def event_prefix(subscription_id: int) -> bytes:
    """The part of every push of a subscription before the event's JSON."""
    return b'{"id":%d,"type":"event","event":' % subscription_id


def event_message(prefix: bytes, event_json: bytes) -> bytes:
    """One push: ``{"id": <subscription>, "type": "event", "event": <event_json>}``."""
    return b"%b%b}" % (prefix, event_json)


_LEN_SHORT = struct.Struct("!BB").pack
_LEN_MEDIUM = struct.Struct("!BBH").pack
_LEN_LONG = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked, uncompressed text frame (RFC 6455 section 5.2) holding ``payload``."""
    size = len(payload)
    if size < 126:
        return _LEN_SHORT(0x81, size) + payload
    if size < 65536:
        return _LEN_MEDIUM(0x81, 126, size) + payload
    return _LEN_LONG(0x81, 127, size) + payload


def coalesced(messages: Iterable[bytes]) -> bytes:
    """Several messages in one frame, as a JSON array (for clients that asked for it)."""
    return b"[%b]" % b",".join(messages)


MAX_FRAME_MESSAGES: Final = 256
"""At most this many messages go in one coalesced frame."""


def payloads(batch: list[bytes], coalesce: bool) -> list[bytes]:
    """Frame payloads for ``batch``: each message, or JSON arrays of up to
    ``MAX_FRAME_MESSAGES`` when the client coalesces."""
    if not coalesce or len(batch) == 1:
        return batch
    return [
        coalesced(batch[start : start + MAX_FRAME_MESSAGES])
        if len(batch) - start > 1
        else batch[start]
        for start in range(0, len(batch), MAX_FRAME_MESSAGES)
    ]


class FrameCache:
    """The frames made during one flush of every connection.

    A pushed message is one object shared by every connection it goes to, and connections
    with the same subscriptions have the same queue: their bytes for the socket are made
    once, by the first of them, and written as they are to the others.
    """

    __slots__ = ("_frames", "_last")

    def __init__(self) -> None:
        # id(message) -> (message, frame); holding the message keeps its id from being reused.
        self._frames: dict[int, tuple[bytes, bytes]] = {}
        self._last: tuple[bool, list[bytes], bytes] | None = None

    def data(self, batch: list[bytes], coalesce: bool) -> bytes:
        """The frames of ``batch``, joined for one write."""
        last = self._last
        if last is not None and last[0] is coalesce and last[1] == batch:
            return last[2]
        if coalesce:
            data = b"".join([text_frame(payload) for payload in payloads(batch, True)])
        else:
            frames = self._frames
            parts = []
            for message in batch:
                entry = frames.get(id(message))
                if entry is None or entry[0] is not message:
                    entry = frames[id(message)] = (message, text_frame(message))
                parts.append(entry[1])
            data = b"".join(parts)
        self._last = (coalesce, batch, data)
        return data


def event_json(event: Event) -> bytes:
    """The JSON of an event as subscribers of ``subscribe_events`` receive it."""
    return json_bytes(event.as_dict())


def state_change_json(entity_id: str, new_state_json: bytes | None) -> bytes:
    """What ``subscribe_states`` pushes: ``{"entity_id", "new_state"}`` (null: removed)."""
    return b'{"entity_id":%b,"new_state":%b}' % (
        json_bytes(entity_id),
        b"null" if new_state_json is None else new_state_json,
    )


class StateJsonCache:
    """The JSON of each current ``State``, made once per state object.

    States are immutable and replaced on every change, so an entry is good while its state
    is the entity's current one; entries of removed entities are pruned when the cache has
    grown well past the number of states (``prune``) or when they are removed (``drop``).
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, tuple[State, bytes]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, state: State) -> bytes:
        entry = self._entries.get(state.entity_id)
        if entry is not None and entry[0] is state:
            return entry[1]
        data = json_bytes(state.as_dict())
        self._entries[state.entity_id] = (state, data)
        return data

    def prune(self, states: StateMachine) -> None:
        """Forget entries that are no longer current, once there are far too many of them."""
        if len(self._entries) > 2 * len(states) + 1000:
            self._entries = {
                entity_id: entry
                for entity_id, entry in self._entries.items()
                if states.get(entity_id) is entry[0]
            }

    def drop(self, entity_id: str) -> None:
        self._entries.pop(entity_id, None)
