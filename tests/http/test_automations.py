"""/api/automations: list, enable and disable, trigger with the caller's context, traces."""

from __future__ import annotations

from pathlib import Path

from vendhub.const import EVENT_CALL_SERVICE
from vendhub.core.events import Event

from .fleet_hub import running_fleet


async def test_list_enable_disable_trigger_and_traces(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, roles=("operator", "viewer")) as fleet:
        calls: list[Event] = []
        fleet.hub.bus.async_listen(EVENT_CALL_SERVICE, calls.append)

        status, automations = await fleet.call("GET", "/api/automations", "viewer")
        assert status == 200
        assert automations == [
            {
                "id": "restock_reminder",
                "entity_id": "automation.restock_reminder",
                "name": "Restock reminder",
                "enabled": True,
                "mode": "single",
                "last_triggered": None,
                "running": 0,
            }
        ]
        status, _ = await fleet.call("POST", "/api/automations/restock_reminder/disable", "viewer")
        assert status == 403
        status, _ = await fleet.call("POST", "/api/automations/nope/disable", "operator")
        assert status == 404

        operator = f"user:{fleet.user_ids['operator']}"
        status, automation = await fleet.call(
            "POST", "/api/automations/restock_reminder/disable", "operator"
        )
        assert (status, automation["enabled"]) == (200, False)
        assert fleet.hub.states.is_state("automation.restock_reminder", "off")
        assert calls[-1].data["service"] == "turn_off"
        assert calls[-1].context.user_id == operator
        status, automation = await fleet.call("GET", "/api/automations/restock_reminder", "viewer")
        assert automation["enabled"] is False
        status, automation = await fleet.call(
            "POST", "/api/automations/restock_reminder/enable", "operator"
        )
        assert (status, automation["enabled"]) == (200, True)

        # Triggered by hand: its run (and the alarm it raises) carries the operator.
        status, trace = await fleet.call(
            "POST",
            "/api/automations/restock_reminder/trigger",
            "operator",
            {"variables": {"why": "test"}},
        )
        assert status == 200, trace
        assert trace["outcome"] == "ran" and trace["variables"]["why"] == "test"
        alarm = fleet.hub.states.get("alarm.lobby_1_restock_reminder")
        assert alarm is not None and alarm.context.user_id == operator
        status, automation = await fleet.call("GET", "/api/automations/restock_reminder", "viewer")
        assert automation["last_triggered"] is not None

        # Traces need manage_hub (an owner here), as automation.traces over the WebSocket.
        status, traces = await fleet.call(
            "GET", "/api/automations/restock_reminder/traces", "owner"
        )
        assert status == 200 and [t["run_id"] for t in traces] == [trace["run_id"]]
        status, _ = await fleet.call("GET", "/api/automations/nope/traces", "owner")
        assert status == 404
        status, _ = await fleet.call(
            "POST", "/api/automations/restock_reminder/trigger", "operator", {"when": 1}
        )
        assert status == 400
        # Every field is optional: no body at all is taken as {}.
        status, again = await fleet.call(
            "POST", "/api/automations/restock_reminder/trigger", "operator"
        )
        assert status == 200 and again["outcome"] == "ran", again
