"""What the read resources share: time filters, the recorder, cursor pagination.

Times in queries are ISO 8601 (``2024-05-06T12:00:00+02:00``; without an offset, UTC); a bad
one is a 400 that names the parameter. An empty range (``since`` not before ``until``)
matches nothing rather than being an error. Lists are paged newest first with keyset
cursors: an answer's ``next`` is the cursor to pass as ``before`` for the next page (None on
the last), and ``next_url`` the whole url of that page, so every row comes exactly once
however many rows are added meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web

from vendhub.http.errors import ERROR_SCHEMA, ApiError, bad_request
from vendhub.http.view import identity_of
from vendhub.recorder.recorder import DATA_RECORDER, Recorder
from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_T = TypeVar("_T")

UNAVAILABLE = 503
TIME: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "maxLength": 64,
    "description": "ISO 8601 date and time, e.g. 2024-05-06T12:00:00+02:00 (UTC if no offset).",
}
CURSOR: dict[str, Any] = {
    "type": "string",
    "pattern": "^[1-9][0-9]{0,17}$",
    "description": "The `next` of the previous page.",
}
LIMIT: dict[str, Any] = {
    "type": "integer",
    "minimum": 1,
    "maximum": 1000,
    "default": 100,
    "description": "Rows per page (1 to 1000).",
}
PAGED_QUERY: dict[str, dict[str, Any]] = {"limit": LIMIT, "before": CURSOR}
TIMESTAMP_STRING: dict[str, Any] = {"type": "string", "format": "date-time"}
NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
UNAVAILABLE_RESPONSE: dict[str, Any] = {
    **ERROR_SCHEMA,
    "description": "The recorder is not configured (code `unavailable`).",
}
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def page_schema(item: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a page of ``item``s."""
    return {
        "type": "object",
        "required": ["items", "next", "next_url"],
        "properties": {
            "items": {"type": "array", "items": item},
            "next": {
                "type": ["string", "null"],
                "description": "Pass as `before` for the next page; null on the last page.",
            },
            "next_url": {
                "type": ["string", "null"],
                "description": "The url of the next page (same filters); null on the last.",
            },
        },
    }


def unavailable(message: str) -> ApiError:
    """503 ``unavailable``: what the answer needs is not configured or not running."""
    return ApiError(UNAVAILABLE, "unavailable", message)


def recorder_of(hub: Hub) -> Recorder:
    """The running recorder, or 503 saying how to configure one."""
    recorder: Recorder | None = hub.data.get(DATA_RECORDER)
    if recorder is None:
        raise unavailable(
            "the recorder is not set up, so there is no history, ledger or statistics: "
            "add 'recorder:' to configuration.yaml"
        )
    return recorder


async def run_query(hub: Hub, func: Callable[..., _T], *args: Any) -> _T:
    """``func(session, *args)`` through the recorder (503 when there is none)."""
    recorder = recorder_of(hub)
    try:
        return await recorder.async_query(func, *args)
    except ValueError as error:
        # The query functions refuse impossible arguments (e.g. a time out of range).
        raise bad_request(str(error)) from None


def parse_time(value: str, name: str) -> datetime:
    """An aware datetime from an ISO 8601 query value, or a 400 naming ``name``."""
    text = value.strip()
    # An unencoded '+' of an offset arrives as a space.
    if " " in text and "T" in text.upper():
        text = text.replace(" ", "+")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(
            f"{name} is not an ISO 8601 date and time: {value!r}; "
            "write it like 2024-05-06T12:00:00+02:00 (UTC if no offset)",
            {"parameter": name},
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def optional_time(values: dict[str, Any], name: str) -> datetime | None:
    value = values.get(name)
    return None if value is None else parse_time(value, name)


def time_range(
    values: dict[str, Any], default: timedelta, start: str = "start", end: str = "end"
) -> tuple[datetime, datetime]:
    """``values[start]``, ``values[end]``: by default ``end`` is now, ``start`` is ``default``
    before it."""
    until = optional_time(values, end) or utcnow()
    since = optional_time(values, start)
    if since is None:
        try:
            since = until - default
        except OverflowError:
            since = _EARLIEST
    return since, until


def before_id(values: dict[str, Any]) -> int | None:
    cursor = values.get("before")
    return None if cursor is None else int(cursor)


def page_answer(
    request: web.Request, items: list[dict[str, Any]], next_before_id: int | None
) -> web.Response:
    """A page as JSON: its items, the next cursor and the next page's url."""
    next_cursor = None if next_before_id is None else str(next_before_id)
    next_url = None
    if next_cursor is not None:
        next_query = {key: value for key, value in request.query.items() if key != "before"}
        next_query["before"] = next_cursor
        next_url = f"{request.path}?{urlencode(next_query)}"
    headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else None
    return web.json_response(
        {"items": items, "next": next_cursor, "next_url": next_url}, headers=headers
    )


async def scoped_page(
    request: web.Request,
    machine_id: str | None,
    fetch: Callable[[str | None], Awaitable[tuple[Sequence[Any], int | None]]],
    limit: int,
) -> tuple[list[Any], int | None]:
    """A page of rows the caller may see, newest (highest id) first.

    ``fetch(machine_id)`` returns one page (rows with an ``id``, next cursor) of one machine,
    or of every machine for None. A technician without a ``machine_id`` filter gets the
    pages of each of their machines merged: the ``limit`` highest ids of the union, which
    keeps keyset pagination exact.
    """
    identity = identity_of(request)
    if machine_id is not None or identity.machine_ids is None:
        rows, next_id = await fetch(machine_id)
        return list(rows), next_id
    merged: list[Any] = []
    more = False
    for machine in sorted(identity.machine_ids):
        rows, next_id = await fetch(machine)
        merged.extend(rows)
        more = more or next_id is not None
    merged.sort(key=lambda row: row.id, reverse=True)
    more = more or len(merged) > limit
    merged = merged[:limit]
    return merged, (merged[-1].id if more and merged else None)
