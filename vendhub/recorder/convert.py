"""Turning hub values into column values and back: context ids, JSON, timestamps, texts that
must fit their columns."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, overload


def context_id_to_bytes(context_id: str | None) -> bytes | None:
    """Our context ids are hex strings; stored as bytes they take half the space.

    An id that is not even-length hex (given by hand) is stored as None rather than mangled.
    """
    if not context_id:
        return None
    try:
        return bytes.fromhex(context_id)
    except ValueError:
        return None


def bytes_to_context_id(value: bytes | None) -> str | None:
    """The inverse of ``context_id_to_bytes``."""
    return value.hex() if value else None


@overload
def fit_to_column(value: str, column: Any) -> str: ...
@overload
def fit_to_column(value: None, column: Any) -> None: ...
def fit_to_column(value: str | None, column: Any) -> str | None:
    """``value`` cut to the length of the string ``column`` (a model attribute such as
    ``Events.context_user_id``): PostgreSQL and MariaDB refuse a longer text, SQLite would
    keep it whole, so every backend stores the same."""
    length = column.type.length
    if value is None or length is None or len(value) <= length:
        return value
    return value[:length]


def _json_default(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def to_json(value: Any) -> str:
    """Compact JSON with sorted keys, so equal mappings give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def timestamp_of(value: Any, fallback: datetime) -> float:
    """Epoch seconds of an ISO 8601 string or datetime; ``fallback`` when absent or invalid."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = fallback
    else:
        moment = fallback
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def datetime_of(timestamp: float | None) -> datetime | None:
    """An aware UTC datetime from epoch seconds."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
