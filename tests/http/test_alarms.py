"""/api/alarms: list with filters and history, acknowledge and clear, technicians' reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .fleet_hub import FleetApi, running_fleet


async def raise_alarm(fleet: FleetApi, code: str, machine_id: str | None, **extra: Any) -> str:
    alarm = await fleet.hub.services.async_call(
        "alarm", "raise", {"code": code, "message": code, "machine_id": machine_id, **extra}
    )
    return str(alarm["id"])


async def test_alarms_filters_history_acknowledge_and_clear(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, roles=("operator", "technician")) as fleet:
        warm = await raise_alarm(fleet, "fridge_warm", "lobby_1", severity="critical")
        jam = await raise_alarm(fleet, "coin_jam", "kiosk_2")
        disk = await raise_alarm(fleet, "disk_low", None, severity="info")

        status, alarms = await fleet.call("GET", "/api/alarms", "operator")
        assert status == 200
        assert [a["id"] for a in alarms] == [disk, jam, warm]  # newest first
        status, alarms = await fleet.call("GET", "/api/alarms?severity=critical", "operator")
        assert [a["code"] for a in alarms] == ["fridge_warm"]
        status, alarms = await fleet.call("GET", "/api/alarms?machine_id=kiosk_2", "operator")
        assert [a["code"] for a in alarms] == ["coin_jam"]
        status, alarms = await fleet.call("GET", "/api/alarms?limit=1", "operator")
        assert [a["id"] for a in alarms] == [disk]
        status, _ = await fleet.call("GET", "/api/alarms?severity=huge", "operator")
        assert status == 400

        # A technician of lobby_1 sees its alarm only (not kiosk_2's, not the hub's).
        status, alarms = await fleet.call("GET", "/api/alarms", "technician")
        assert [a["id"] for a in alarms] == [warm]
        status, body = await fleet.call("POST", f"/api/alarms/{jam}/acknowledge", "technician")
        assert status == 404 and body["error"]["code"] == "not_found"
        status, _ = await fleet.call("POST", f"/api/alarms/{disk}/acknowledge", "technician")
        assert status == 404

        technician = f"user:{fleet.user_ids['technician']}"
        status, alarm = await fleet.call("POST", f"/api/alarms/{warm}/acknowledge", "technician")
        assert status == 200, alarm
        assert alarm["status"] == "acknowledged" and alarm["acknowledged_by"] == technician
        state = fleet.hub.states.get("alarm.lobby_1_fridge_warm")
        assert state.state == "acknowledged" and state.context.user_id == technician

        operator = f"user:{fleet.user_ids['operator']}"
        status, alarm = await fleet.call("POST", f"/api/alarms/{jam}/clear", "operator")
        assert (status, alarm["status"], alarm["cleared_by"]) == (200, "cleared", operator)
        status, _ = await fleet.call("POST", f"/api/alarms/{jam}/clear", "operator")
        assert status == 404  # no longer active
        status, _ = await fleet.call("POST", "/api/alarms/nope/acknowledge", "operator")
        assert status == 404

        # History: the cleared alarm, alone with active=false, after the active ones without.
        status, alarms = await fleet.call("GET", "/api/alarms?active=false", "operator")
        assert [(a["id"], a["status"]) for a in alarms] == [(jam, "cleared")]
        status, alarms = await fleet.call("GET", "/api/alarms?active=true", "operator")
        assert {a["id"] for a in alarms} == {warm, disk}
        status, alarms = await fleet.call("GET", "/api/alarms", "operator")
        assert [a["id"] for a in alarms] == [disk, warm, jam]

        status, machines = await fleet.call("GET", "/api/machines", "operator")
        assert {m["id"]: m["open_alarms"] for m in machines} == {"kiosk_2": 0, "lobby_1": 1}
