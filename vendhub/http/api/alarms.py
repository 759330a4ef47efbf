"""``/api/alarms``: active alarms and the recently cleared ones; acknowledge and clear.

Read through ``alarm.list`` (which keeps the last 500 cleared alarms besides the active ones)
and changed through ``alarm.acknowledge`` and ``alarm.clear``, with the caller's context (the
alarm records ``user:<id>`` as who acknowledged or cleared it). Technicians see and act on
their machines' alarms only, not on the hub's own (alarms without a machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from vendhub.auth.identity import Identity
from vendhub.auth.roles import Permission
from vendhub.http.api.calls import SERVICE_ERRORS, call_service, json_answer
from vendhub.http.api.schemas import MACHINE_ID
from vendhub.http.errors import not_found
from vendhub.http.view import ApiView, identity_of, operation, params, query

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

DOMAIN: Final = "alarm"
TAGS: Final = ("alarms",)
SEVERITY: dict[str, Any] = {"enum": ["info", "warning", "critical"]}
TEXT_OR_NULL: Final = {"type": ["string", "null"]}
ALARM: dict[str, Any] = {
    "type": "object",
    "required": ["id", "code", "machine_id", "severity", "message", "status", "raised_at"],
    "properties": {
        "id": {"type": "string"},
        "code": {"type": "string"},
        "machine_id": {**TEXT_OR_NULL, "description": "Null for an alarm of the hub itself."},
        "severity": SEVERITY,
        "message": {"type": "string"},
        "status": {"enum": ["raised", "acknowledged", "cleared"]},
        "count": {"type": "integer", "description": "Times it was raised while active."},
        "raised_at": {"type": "string"},
        "last_raised_at": TEXT_OR_NULL,
        "acknowledged_at": TEXT_OR_NULL,
        "acknowledged_by": {**TEXT_OR_NULL, "description": "Who: `user:<id>`, `token:<id>`."},
        "cleared_at": TEXT_OR_NULL,
        "cleared_by": TEXT_OR_NULL,
        "data": {"type": "object"},
    },
}
ALARM_ID: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 64}


def sees_alarm(identity: Identity, alarm: dict[str, Any]) -> bool:
    """Technicians see their machines' alarms; the others see every alarm."""
    machine_id = alarm.get("machine_id")
    if machine_id is None:
        return identity.machine_ids is None and not identity.is_machine
    return identity.sees_machine(str(machine_id))


async def alarms(
    hub: Hub, request: web.Request, *, include_cleared: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The active alarms and (when asked) the cleared ones, newest first, as alarm.list says."""
    result = await call_service(hub, request, DOMAIN, "list", {"include_cleared": include_cleared})
    active = [a for a in result.get("active", []) if isinstance(a, dict)]
    cleared = [a for a in result.get("cleared", []) if isinstance(a, dict)]
    active.sort(key=lambda alarm: str(alarm.get("raised_at")), reverse=True)
    return active, cleared


async def active_alarm_in_reach(hub: Hub, request: web.Request, alarm_id: str) -> dict[str, Any]:
    """The active alarm ``alarm_id``, or 404 (none, cleared, or outside the caller's reach)."""
    active, _ = await alarms(hub, request, include_cleared=False)
    alarm = next((a for a in active if a.get("id") == alarm_id), None)
    if alarm is None or not sees_alarm(identity_of(request), alarm):
        raise not_found(f"no active alarm {alarm_id!r}")
    return alarm


class AlarmsView(ApiView):
    url = "/api/alarms"
    name = "api:alarms"

    @operation(
        summary="Alarms: the active ones, and the recently cleared ones (history).",
        description=(
            "Without `active`, active alarms (newest first) then cleared ones (most recently "
            "cleared first; the hub keeps the last 500). `active=true`: only active ones; "
            "`active=false`: only cleared ones. Technicians get their machines' alarms only. "
            "503 when the alarm integration is not set up."
        ),
        permission=Permission.read,
        query={
            "machine_id": MACHINE_ID,
            "active": {"type": "boolean"},
            "severity": SEVERITY,
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
        responses={200: {"type": "array", "items": ALARM}, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        wanted = query(request)
        identity = identity_of(request)
        active, cleared = await alarms(
            self.hub, request, include_cleared=wanted.get("active") is not True
        )
        chosen = {True: active, False: cleared}.get(wanted.get("active"), active + cleared)
        found = [
            alarm
            for alarm in chosen
            if sees_alarm(identity, alarm)
            and ("machine_id" not in wanted or alarm.get("machine_id") == wanted["machine_id"])
            and ("severity" not in wanted or alarm.get("severity") == wanted["severity"])
        ]
        return json_answer(found[: wanted.get("limit", 1000)])


class AlarmAcknowledgeView(ApiView):
    url = "/api/alarms/{alarm_id}/acknowledge"
    name = "api:alarm:acknowledge"
    path_params = {"alarm_id": ALARM_ID}

    @operation(
        summary="Acknowledge an active alarm: you have seen it (it stays active).",
        permission=Permission.operate_machines,
        responses={200: ALARM, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        alarm_id = params(request)["alarm_id"]
        await active_alarm_in_reach(self.hub, request, alarm_id)
        result = await call_service(
            self.hub, request, DOMAIN, "acknowledge", {"alarm_id": alarm_id}
        )
        return json_answer(result)


class AlarmClearView(ApiView):
    url = "/api/alarms/{alarm_id}/clear"
    name = "api:alarm:clear"
    path_params = {"alarm_id": ALARM_ID}

    @operation(
        summary="Clear an active alarm: it ends and joins the history.",
        permission=Permission.operate_machines,
        responses={200: ALARM, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        alarm_id = params(request)["alarm_id"]
        await active_alarm_in_reach(self.hub, request, alarm_id)
        result = await call_service(self.hub, request, DOMAIN, "clear", {"alarm_id": alarm_id})
        return json_answer(result)


VIEWS = (AlarmsView, AlarmAcknowledgeView, AlarmClearView)
