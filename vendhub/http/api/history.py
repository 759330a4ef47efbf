"""``/api/history`` and ``/api/statistics/*``: recorded states, sales and sensor statistics.

Each operation runs the recorder's own query functions (``vendhub.recorder.queries``, the
same ones its services call) through ``Recorder.async_query``; without a recorder it answers
503 ``unavailable``. Technicians get only their machines' entities and sales.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.http.api.filters import (
    NULLABLE_STRING,
    TIME,
    TIMESTAMP_STRING,
    UNAVAILABLE_RESPONSE,
    recorder_of,
    run_query,
    time_range,
)
from vendhub.http.api.schemas import MACHINE_ID
from vendhub.http.errors import not_found
from vendhub.http.scoping import sees_entity
from vendhub.http.view import ApiView, identity_of, operation, query, require_machine
from vendhub.recorder import queries

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

MAX_ENTITIES: Final = 100
_ENTITY = r"[a-z0-9_]+\.[a-z0-9_]+"
ENTITY_IDS: dict[str, Any] = {
    "type": "string",
    "pattern": f"^{_ENTITY}(,{_ENTITY}){{0,{MAX_ENTITIES - 1}}}$",
    # Keeps the request line within aiohttp's 8190 bytes even when percent-encoded.
    "maxLength": 500,
    "description": f"Entity ids separated by commas (at most {MAX_ENTITIES}, 500 characters).",
}
PERIOD: dict[str, Any] = {"enum": ["hour", "day"], "default": "hour"}
FREE_TEXT: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "pattern": "^[^\\u0000-\\u001f]+$",
}
HISTORY_STATE: dict[str, Any] = {
    "type": "object",
    "required": ["entity_id", "state", "attributes", "last_changed", "last_updated", "context_id"],
    "properties": {
        "entity_id": {"type": "string"},
        "state": {"type": ["string", "null"], "description": "null: the entity was removed."},
        "attributes": {"type": "object"},
        "last_changed": TIMESTAMP_STRING,
        "last_updated": TIMESTAMP_STRING,
        "context_id": NULLABLE_STRING,
    },
}
HISTORY: dict[str, Any] = {
    "type": "object",
    "description": "Per requested entity id, its states oldest first (the first one is the "
    "state in force at start).",
    "additionalProperties": {"type": "array", "items": HISTORY_STATE},
}
SALES_ROW: dict[str, Any] = {
    "type": "object",
    "required": [
        "period",
        "start",
        "machine_id",
        "product",
        "currency",
        "vends",
        "failed",
        "revenue",
    ],
    "properties": {
        "period": {"enum": ["hour", "day"]},
        "start": TIMESTAMP_STRING,
        "machine_id": {"type": "string"},
        "product": NULLABLE_STRING,
        "currency": {"type": "string"},
        "vends": {"type": "integer", "minimum": 0},
        "failed": {"type": "integer", "minimum": 0},
        "revenue": {"type": "integer", "description": "Minor units, completed vends only."},
    },
}
SALES_TOTAL: dict[str, Any] = {
    "type": "object",
    "required": ["currency", "vends", "failed", "revenue"],
    "properties": {
        "currency": {"type": "string"},
        "vends": {"type": "integer", "minimum": 0},
        "failed": {"type": "integer", "minimum": 0},
        "revenue": {"type": "integer"},
    },
}
SALES: dict[str, Any] = {
    "type": "object",
    "required": ["period", "start", "end", "statistics", "totals"],
    "properties": {
        "period": {"enum": ["hour", "day"]},
        "start": TIMESTAMP_STRING,
        "end": TIMESTAMP_STRING,
        "statistics": {
            "type": "array",
            "items": SALES_ROW,
            "description": "Compiled rows, oldest first (an hour or day appears once compiled).",
        },
        "totals": {
            "type": "array",
            "items": SALES_TOTAL,
            "description": "Exact totals per currency, counted from the ledger.",
        },
    },
}
SENSOR_ROW: dict[str, Any] = {
    "type": "object",
    "required": ["start", "min", "mean", "max", "samples"],
    "properties": {
        "start": TIMESTAMP_STRING,
        "min": {"type": "number"},
        "mean": {"type": "number", "description": "Time-weighted."},
        "max": {"type": "number"},
        "samples": {"type": "integer", "minimum": 0},
    },
}
SENSORS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": SENSOR_ROW},
}


class HistoryView(ApiView):
    url = "/api/history"
    name = "api:history"

    @operation(
        summary="Recorded states of entities over a period (default: the last day).",
        description="Each list starts with the state in force at `start`, then every change "
        "in [start, end), oldest first.",
        permission=Permission.read,
        query={
            "entity_ids": ENTITY_IDS,
            "start": TIME,
            "end": TIME,
            "include_attributes": {"type": "boolean", "default": True},
        },
        required_query=("entity_ids",),
        responses={200: HISTORY, 503: UNAVAILABLE_RESPONSE},
        tags=("history",),
    )
    async def get(self, request: web.Request) -> web.Response:
        recorder_of(self.hub)
        values = query(request)
        entity_ids = scoped_entity_ids(self.hub, request, values["entity_ids"])
        start, end = time_range(values, timedelta(days=1))
        include_attributes = values.get("include_attributes", True)
        if start >= end:
            return web.json_response({entity_id: [] for entity_id in entity_ids})
        found = await run_query(
            self.hub,
            lambda session: queries.state_history(
                session, entity_ids, start, end, include_attributes=include_attributes
            ),
        )
        return web.json_response(
            {entity_id: [row.as_dict() for row in rows] for entity_id, rows in found.items()}
        )


def scoped_entity_ids(hub: Hub, request: web.Request, value: str) -> list[str]:
    """The requested entity ids, each checked against the caller's machines (404 if not)."""
    identity = identity_of(request)
    entity_ids = list(dict.fromkeys(value.split(",")))
    if identity.machine_ids is not None:
        for entity_id in entity_ids:
            state = hub.states.get(entity_id)
            if not sees_entity(identity, entity_id, state.attributes if state else None):
                raise not_found(f"no entity {entity_id!r}")
    return entity_ids


class SalesStatisticsView(ApiView):
    url = "/api/statistics/sales"
    name = "api:statistics:sales"

    @operation(
        summary="Sales per hour or local day, per machine and product, with exact totals.",
        description="Default period: the last 7 days. Technicians see their machines only.",
        permission=Permission.read,
        query={
            "period": PERIOD,
            "start": TIME,
            "end": TIME,
            "machine_id": MACHINE_ID,
            "product": FREE_TEXT,
        },
        responses={200: SALES, 503: UNAVAILABLE_RESPONSE},
        tags=("statistics",),
    )
    async def get(self, request: web.Request) -> web.Response:
        recorder_of(self.hub)
        values = query(request)
        period = values.get("period", "hour")
        start, end = time_range(values, timedelta(days=7))
        machine_id = values.get("machine_id")
        product = values.get("product")
        if machine_id is not None:
            require_machine(request, machine_id)
        identity = identity_of(request)
        machines: list[str | None]
        if machine_id is None and identity.machine_ids is not None:
            machines = sorted(identity.machine_ids)
        else:
            machines = [machine_id]

        def run(session: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            rows: list[queries.SalesRow] = []
            totals: dict[str, dict[str, Any]] = {}
            for machine in machines:
                rows.extend(
                    queries.sales_statistics(
                        session,
                        period=period,
                        start=start,
                        end=end,
                        machine_id=machine,
                        product=product,
                    )
                )
                for total in queries.sales_totals(
                    session, start=start, end=end, machine_id=machine, product=product
                ):
                    into = totals.setdefault(
                        total.currency,
                        {"currency": total.currency, "vends": 0, "failed": 0, "revenue": 0},
                    )
                    into["vends"] += total.vends
                    into["failed"] += total.failed
                    into["revenue"] += total.revenue
            rows.sort(key=lambda r: (r.start, r.machine_id, r.product or "", r.currency))
            return [row.as_dict() for row in rows], [totals[c] for c in sorted(totals)]

        statistics, totals = ([], []) if start >= end else await run_query(self.hub, run)
        return web.json_response(
            {
                "period": period,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "statistics": statistics,
                "totals": totals,
            }
        )


class SensorStatisticsView(ApiView):
    url = "/api/statistics/sensors"
    name = "api:statistics:sensors"

    @operation(
        summary="Minimum, time-weighted mean and maximum of numeric entities per hour or day.",
        description="Default period: the last 7 days.",
        permission=Permission.read,
        query={"entity_ids": ENTITY_IDS, "period": PERIOD, "start": TIME, "end": TIME},
        required_query=("entity_ids",),
        responses={200: SENSORS, 503: UNAVAILABLE_RESPONSE},
        tags=("statistics",),
    )
    async def get(self, request: web.Request) -> web.Response:
        recorder_of(self.hub)
        values = query(request)
        entity_ids = scoped_entity_ids(self.hub, request, values["entity_ids"])
        period = values.get("period", "hour")
        start, end = time_range(values, timedelta(days=7))
        if start >= end:
            return web.json_response({entity_id: [] for entity_id in entity_ids})
        found = await run_query(
            self.hub,
            lambda session: queries.sensor_statistics(
                session, entity_ids, period=period, start=start, end=end
            ),
        )
        return web.json_response(
            {entity_id: [row.as_dict() for row in rows] for entity_id, rows in found.items()}
        )


VIEWS = (HistoryView, SalesStatisticsView, SensorStatisticsView)
