"""``anomaly.service_login`` and ``anomaly.report_cash_count``: the facts people report."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.anomaly.cash import CashDetector
from vendhub.config import validators as cv
from vendhub.const import EVENT_CASH_COUNTED, EVENT_SERVICE_LOGIN
from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall

    from .runtime import AnomalyRuntime

DOMAIN = "anomaly"
SERVICE_LOGIN = "service_login"
SERVICE_REPORT_CASH_COUNT = "report_cash_count"

MAX_LOGIN_DURATION = timedelta(hours=24)


def _login_duration(value: Any) -> timedelta:
    period = cv.time_period(value)
    if period > MAX_LOGIN_DURATION:
        raise vol.Invalid(f"a service login lasts at most 24 hours, got {period}")
    return period


def register_services(hub: Hub, runtime: AnomalyRuntime) -> None:
    """Register the services; they fire the events the detectors (and the recorder) see."""
    login_schema = vol.Schema(
        {
            vol.Required("machine_id"): cv.slug,
            vol.Required("user"): cv.string,
            vol.Optional("duration", default=runtime.login_duration): _login_duration,
        }
    )
    count_schema = vol.Schema(
        {
            vol.Required("machine_id"): cv.slug,
            vol.Required("amount"): cv.money_minor_units,
            vol.Optional("currency", default=hub.config.currency): cv.currency,
            vol.Optional("event_id"): cv.string,
            vol.Optional("counted_by"): cv.string,
        }
    )

    def service_login(call: ServiceCall) -> dict[str, Any]:
        """A technician signs in at a machine (duration 0 signs out)."""
        seconds = call.data["duration"].total_seconds()
        now = utcnow()
        hub.bus.async_fire(
            EVENT_SERVICE_LOGIN,
            {
                "machine_id": call.data["machine_id"],
                "user": call.data["user"],
                "duration": seconds,
                "ts": now.isoformat(),
            },
            context=call.context,
        )
        return {
            "machine_id": call.data["machine_id"],
            "user": call.data["user"],
            "until": (now + call.data["duration"]).isoformat() if seconds > 0 else None,
        }

    def report_cash_count(call: ServiceCall) -> dict[str, Any]:
        """The counted cash of a collection; returns how it compares with the machine's."""
        count_id = uuid.uuid4().hex
        hub.bus.async_fire(
            EVENT_CASH_COUNTED,
            {**call.data, "count_id": count_id, "ts": utcnow().isoformat()},
            context=call.context,
        )
        detector = runtime.detectors.get("cash")
        if not isinstance(detector, CashDetector):
            return {"status": "not_checked", "detail": "the cash rule is turned off"}
        return detector.results.pop(
            count_id, {"status": "queued", "detail": "the count will be compared shortly"}
        )

    hub.services.async_register(DOMAIN, SERVICE_LOGIN, service_login, login_schema)
    hub.services.async_register(DOMAIN, SERVICE_REPORT_CASH_COUNT, report_cash_count, count_schema)
