"""The recorder's services: history, statistics, the ledger, the audit log, purge on demand,
and putting a rejected money event right.

The queries are registered read-only, so the audit log leaves them out; purge and
resubmit_rejected_money_event are audited.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.core.context import ACTOR_TYPES
from vendhub.core.errors import InvalidServiceData
from vendhub.recorder import queries
from vendhub.recorder.audit import async_start_auditing
from vendhub.recorder.ledger import ResubmitRefused, resubmit_rejected_money_event
from vendhub.util.dt import utcnow
from vendhub.util.text import shorten

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall
    from vendhub.recorder.recorder import Recorder

_LOGGER = logging.getLogger(__name__)

DOMAIN = "recorder"
PERIOD = vol.In(("hour", "day"))
_ENTITY_IDS = vol.All(cv.ensure_list, [cv.entity_id], vol.Length(min=1))
_RANGE = {
    vol.Optional("start"): cv.aware_datetime,
    vol.Optional("end"): cv.aware_datetime,
}
_LEDGER_FILTERS = {
    **_RANGE,
    vol.Optional("machine_id"): cv.string,
    vol.Optional("method"): cv.string,
    vol.Optional("limit", default=100): vol.All(cv.positive_int, vol.Range(max=1000)),
    vol.Optional("before_id"): cv.positive_int,
}

HISTORY_SCHEMA = vol.Schema(
    {
        vol.Required("entity_ids"): _ENTITY_IDS,
        **_RANGE,
        vol.Optional("include_attributes", default=True): cv.boolean,
    }
)
SALES_SCHEMA = vol.Schema(
    {
        **_RANGE,
        vol.Optional("period", default="hour"): PERIOD,
        vol.Optional("machine_id"): cv.string,
        vol.Optional("product"): cv.string,
    }
)
SENSOR_SCHEMA = vol.Schema(
    {
        vol.Required("entity_ids"): _ENTITY_IDS,
        **_RANGE,
        vol.Optional("period", default="hour"): PERIOD,
    }
)
TRANSACTIONS_SCHEMA = vol.Schema(
    {**_LEDGER_FILTERS, vol.Optional("product"): cv.string, vol.Optional("outcome"): cv.string}
)
PAYMENTS_SCHEMA = vol.Schema(
    {**_LEDGER_FILTERS, vol.Optional("status"): cv.string, vol.Optional("provider"): cv.string}
)
REJECTED_SCHEMA = vol.Schema(
    {
        vol.Optional("machine_id"): cv.string,
        vol.Optional("limit", default=100): vol.All(cv.positive_int, vol.Range(max=1000)),
        vol.Optional("before_id"): cv.positive_int,
    }
)
RESUBMIT_SCHEMA = vol.Schema(
    {
        vol.Required("id"): cv.positive_int,
        vol.Optional("data", default=dict): vol.Schema({cv.string: object}),
    }
)
MAX_KEEP_DAYS = cv.MAX_TIME_PERIOD_SECONDS // 86400
"""The longest history kept: 36,500 days (a hundred years, the longest time period taken);
the purge's cut-off, now minus ``keep_days``, must stay a date the calendar can hold."""


def keep_days(minimum: int) -> Any:
    """A validator of ``keep_days``: whole days from ``minimum`` to ``MAX_KEEP_DAYS``."""
    expected = f"keep_days from {minimum} to {MAX_KEEP_DAYS:,} days (100 years)"

    def validate(value: Any) -> int:
        days = cv.integer(value)
        if not minimum <= days <= MAX_KEEP_DAYS:
            raise vol.Invalid(
                f"expected {expected}, got {shorten(str(days))}: the purge deletes history "
                "older than now minus keep_days, and that date must lie within the calendar"
            )
        return days

    return validate


PURGE_SCHEMA = vol.Schema({vol.Optional("keep_days"): keep_days(0)})
AUDIT_LOG_FILTERS = ("actor_type", "actor_id", "target_type", "target_id", "action")
AUDIT_LOG_SCHEMA = vol.Schema(
    {
        vol.Optional("actor_type"): vol.In(ACTOR_TYPES),
        **{vol.Optional(key): cv.string for key in AUDIT_LOG_FILTERS if key != "actor_type"},
        vol.Optional("since"): cv.aware_datetime,
        vol.Optional("until"): cv.aware_datetime,
        vol.Optional("limit", default=100): vol.All(cv.positive_int, vol.Range(max=1000)),
        vol.Optional("before_id"): cv.positive_int,
    }
)


def _range(call: ServiceCall, default_days: int = 1) -> tuple[Any, Any]:
    end = call.data.get("end") or utcnow()
    start = call.data.get("start")
    if start is None:
        try:
            start = end - timedelta(days=default_days)
        except OverflowError:  # an end in the first days of year 1
            start = datetime.min.replace(tzinfo=UTC)
    if start >= end:
        raise InvalidServiceData(
            DOMAIN,
            call.service,
            f"start ({start.isoformat()}) must be before end ({end.isoformat()})",
        )
    return start, end


def register_services(hub: Hub, recorder: Recorder) -> None:
    """Register the recorder's services; each returns JSON-ready data."""

    async def history(call: ServiceCall) -> dict[str, Any]:
        """State history of entities over a period (default: the last day)."""
        start, end = _range(call)
        found = await recorder.async_query(
            lambda session: queries.state_history(
                session,
                list(call.data["entity_ids"]),
                start,
                end,
                include_attributes=call.data["include_attributes"],
            )
        )
        return {entity_id: [s.as_dict() for s in states] for entity_id, states in found.items()}

    async def sales(call: ServiceCall) -> dict[str, Any]:
        """Sales statistics per hour or day, and the exact totals from the ledger."""
        start, end = _range(call, default_days=7)
        filters = {key: call.data[key] for key in ("machine_id", "product") if key in call.data}

        def run(session: Any) -> dict[str, Any]:
            rows = queries.sales_statistics(
                session, period=call.data["period"], start=start, end=end, **filters
            )
            totals = queries.sales_totals(session, start=start, end=end, **filters)
            return {
                "statistics": [row.as_dict() for row in rows],
                "totals": [total.as_dict() for total in totals],
            }

        return await recorder.async_query(run)

    async def sensor_statistics(call: ServiceCall) -> dict[str, Any]:
        """Minimum, mean and maximum of numeric entities per hour or day."""
        start, end = _range(call, default_days=7)
        found = await recorder.async_query(
            lambda session: queries.sensor_statistics(
                session,
                list(call.data["entity_ids"]),
                period=call.data["period"],
                start=start,
                end=end,
            )
        )
        return {entity_id: [row.as_dict() for row in rows] for entity_id, rows in found.items()}

    def ledger_service(query: Any, keys: tuple[str, ...]) -> Any:
        async def handler(call: ServiceCall) -> dict[str, Any]:
            filters = {key: call.data[key] for key in keys if key in call.data}
            page = await recorder.async_query(lambda session: query(session, **filters))
            return page.as_dict()

        return handler

    async def audit_log(call: ServiceCall) -> dict[str, Any]:
        """Audit log entries, newest first, with filters and pagination."""
        filters = {
            key: call.data[key]
            for key in (*AUDIT_LOG_FILTERS, "since", "until", "limit", "before_id")
            if key in call.data
        }
        page = await recorder.async_query(lambda session: queries.audit_log(session, **filters))
        return page.as_dict()

    async def resubmit(call: ServiceCall) -> dict[str, Any]:
        """Put a rejected money event into the ledger, with the fields in ``data`` corrected;
        it leaves rejected_money_events. Refused, with nothing changed, when the ledger still
        cannot take it."""
        rejected_id, corrections = call.data["id"], call.data["data"]

        def step(session: Any) -> Any:
            try:
                return resubmit_rejected_money_event(
                    session, rejected_id, corrections, call.context
                )
            except ResubmitRefused as refused:
                return refused  # raised in the loop: not a failure of the writer

        try:
            result = await recorder.async_run_job("resubmit rejected money event", step)
        except ResubmitRefused as refused:
            raise InvalidServiceData(DOMAIN, call.service, str(refused)) from refused
        _LOGGER.info(
            "Rejected money event %d (%s %s of %s) put into the ledger by %s%s",
            rejected_id,
            result.event_type,
            result.event_id,
            result.machine_id,
            call.context.user_id or "the hub",
            "; the ledger had it already" if result.duplicate else "",
        )
        return result.as_dict()

    async def purge(call: ServiceCall) -> dict[str, Any]:
        """Purge history now (default: older than the configured keep_days)."""
        result = await recorder.async_purge(call.data.get("keep_days"))
        return {"done": result.done}

    common = ("machine_id", "method", "start", "end", "limit", "before_id")
    register = hub.services.async_register
    register(DOMAIN, "history", history, HISTORY_SCHEMA, read_only=True)
    register(DOMAIN, "sales", sales, SALES_SCHEMA, read_only=True)
    register(DOMAIN, "sensor_statistics", sensor_statistics, SENSOR_SCHEMA, read_only=True)
    register(
        DOMAIN,
        "transactions",
        ledger_service(queries.transactions, (*common, "product", "outcome")),
        TRANSACTIONS_SCHEMA,
        "Vend transactions, newest first, with filters and pagination.",
        read_only=True,
    )
    register(
        DOMAIN,
        "payments",
        ledger_service(queries.payments, (*common, "status", "provider")),
        PAYMENTS_SCHEMA,
        "Payments, newest first, with filters and pagination.",
        read_only=True,
    )
    register(DOMAIN, "audit_log", audit_log, AUDIT_LOG_SCHEMA, read_only=True)
    register(
        DOMAIN,
        "rejected_money_events",
        ledger_service(queries.rejected_money_events, ("machine_id", "limit", "before_id")),
        REJECTED_SCHEMA,
        "Money events the ledger could not take, as they came and why, newest first.",
        read_only=True,
    )
    register(
        DOMAIN,
        "resubmit_rejected_money_event",
        resubmit,
        RESUBMIT_SCHEMA,
        "Put a rejected money event into the ledger, with corrected fields.",
    )
    register(DOMAIN, "purge", purge, PURGE_SCHEMA)
    # Every other service call that may change something is audited while this recorder
    # runs (until its audit_log service is removed).
    async_start_auditing(hub)
