"""``/api/automations``: the configured automations; enable, disable, trigger, traces.

The list is read from the ``automation.*`` states; changes go through ``automation.turn_on``,
``turn_off`` and ``trigger`` with the caller's context (a triggered run's context carries the
caller as its user); traces come from ``automation.traces``. Automations are edited in YAML
(``automation: !include automations.yaml``) and reloaded with ``automation.reload``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.http.api.calls import SERVICE_ERRORS, call_service, json_answer
from vendhub.http.errors import not_found
from vendhub.http.view import ApiView, body, operation, params

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.states import State

DOMAIN: Final = "automation"
TAGS: Final = ("automations",)
TEXT_OR_NULL: Final = {"type": ["string", "null"]}
AUTOMATION_ID: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 255}
AUTOMATION: dict[str, Any] = {
    "type": "object",
    "required": ["id", "entity_id", "name", "enabled", "mode", "last_triggered", "running"],
    "properties": {
        "id": {"type": "string"},
        "entity_id": {"type": "string"},
        "name": {"type": "string"},
        "enabled": {"type": "boolean"},
        "mode": {**TEXT_OR_NULL, "description": "single, restart, queued or parallel."},
        "last_triggered": TEXT_OR_NULL,
        "running": {"type": "integer", "description": "Runs in progress."},
    },
}
TRACE: dict[str, Any] = {
    "type": "object",
    "required": ["run_id", "outcome", "started"],
    "properties": {
        "item_id": {"type": "string"},
        "run_id": {"type": "string"},
        "started": {"type": "string"},
        "finished": TEXT_OR_NULL,
        "duration_ms": {"type": ["number", "null"]},
        "trigger": {"type": "object"},
        "variables": {"type": "object"},
        "steps": {"type": "array", "items": {"type": "object"}},
        "outcome": {"type": "string"},
        "error": TEXT_OR_NULL,
        "context_id": TEXT_OR_NULL,
    },
}


def automation_json(state: State) -> dict[str, Any]:
    attributes = state.attributes
    automation_id = attributes.get("id")
    mode = attributes.get("mode")
    last = attributes.get("last_triggered")
    running = attributes.get("current")
    return {
        "id": automation_id if isinstance(automation_id, str) else state.object_id,
        "entity_id": state.entity_id,
        "name": state.name,
        "enabled": state.state == "on",
        "mode": mode if isinstance(mode, str) else None,
        "last_triggered": last if isinstance(last, str) else None,
        "running": running if isinstance(running, int) and not isinstance(running, bool) else 0,
    }


def automation_state(hub: Hub, automation_id: str) -> State:
    """The state of automation ``automation_id`` (its configured id), or 404."""
    for state in hub.states.async_all(DOMAIN):
        if automation_json(state)["id"] == automation_id:
            return state
    raise not_found(f"no automation {automation_id!r}")


class AutomationsView(ApiView):
    url = "/api/automations"
    name = "api:automations"

    @operation(
        summary="Every automation: enabled or not, its mode, when it last ran.",
        permission=Permission.read,
        responses={200: {"type": "array", "items": AUTOMATION}},
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        automations = [automation_json(state) for state in self.hub.states.async_all(DOMAIN)]
        return json_answer(sorted(automations, key=lambda item: item["id"]))


class AutomationView(ApiView):
    url = "/api/automations/{automation_id}"
    name = "api:automation"
    path_params = {"automation_id": AUTOMATION_ID}

    @operation(
        summary="One automation.",
        permission=Permission.read,
        responses={200: AUTOMATION},
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        state = automation_state(self.hub, params(request)["automation_id"])
        return json_answer(automation_json(state))


class _SwitchView(ApiView):
    service: str

    async def _switch(self, request: web.Request) -> web.Response:
        automation_id = params(request)["automation_id"]
        automation_state(self.hub, automation_id)
        await call_service(self.hub, request, DOMAIN, self.service, {"id": [automation_id]})
        return json_answer(automation_json(automation_state(self.hub, automation_id)))


class AutomationEnableView(_SwitchView):
    url = "/api/automations/{automation_id}/enable"
    name = "api:automation:enable"
    path_params = {"automation_id": AUTOMATION_ID}
    service = "turn_on"

    @operation(
        summary="Enable an automation: its triggers fire again (kept across reloads and "
        "restarts, unless its YAML sets initial_state).",
        permission=Permission.manage_automations,
        responses={200: AUTOMATION, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        return await self._switch(request)


class AutomationDisableView(_SwitchView):
    url = "/api/automations/{automation_id}/disable"
    name = "api:automation:disable"
    path_params = {"automation_id": AUTOMATION_ID}
    service = "turn_off"

    @operation(
        summary="Disable an automation and stop its runs in progress (kept across reloads "
        "and restarts, unless its YAML sets initial_state).",
        permission=Permission.manage_automations,
        responses={200: AUTOMATION, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        return await self._switch(request)


class AutomationTriggerView(ApiView):
    url = "/api/automations/{automation_id}/trigger"
    name = "api:automation:trigger"
    path_params = {"automation_id": AUTOMATION_ID}

    @operation(
        summary="Run an automation now and answer its trace.",
        description=(
            "Conditions are skipped unless `skip_condition` is false; `variables` are given to "
            "the run. The run waits for its actions to finish (delays included)."
        ),
        permission=Permission.manage_automations,
        body={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "skip_condition": {"type": "boolean"},
                "variables": {"type": "object", "maxProperties": 100},
            },
        },
        responses={200: TRACE, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        automation_id = params(request)["automation_id"]
        automation_state(self.hub, automation_id)
        result = await call_service(
            self.hub, request, DOMAIN, "trigger", {"id": automation_id, **body(request)}
        )
        return json_answer(result)


class AutomationTracesView(ApiView):
    url = "/api/automations/{automation_id}/traces"
    name = "api:automation:traces"
    path_params = {"automation_id": AUTOMATION_ID}

    @operation(
        summary="The kept runs of an automation, newest first (the last few of each outcome).",
        description=(
            "A trace holds the states its trigger and steps saw, of any machine, so it needs "
            "manage_hub, as the `automation.traces` service over the WebSocket does."
        ),
        permission=Permission.manage_hub,
        responses={200: {"type": "array", "items": TRACE}, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        automation_id = params(request)["automation_id"]
        automation_state(self.hub, automation_id)
        result = await call_service(self.hub, request, DOMAIN, "traces", {"id": automation_id})
        return json_answer(result if isinstance(result, list) else [])


VIEWS = (
    AutomationsView,
    AutomationView,
    AutomationEnableView,
    AutomationDisableView,
    AutomationTriggerView,
    AutomationTracesView,
)
