"""GET /api/automations/{id}/traces needs manage_hub, as automation.traces over the WebSocket.

A trace carries the states its trigger saw (``trigger.to_state`` of any machine's entity), so a
technician scoped to lobby_1 must not read it, and neither may anyone else the WebSocket
refuses (viewers, operators): REST and WebSocket agree.
"""

from __future__ import annotations

from pathlib import Path

from vendhub.auth.identity import Identity, IdentityKind
from vendhub.auth.roles import Role
from vendhub.http.service_permissions import service_refusal

from .fleet_hub import running_fleet

PATH = "/api/automations/restock_reminder/traces"


async def test_traces_need_manage_hub_like_the_websocket(tmp_path: Path) -> None:
    async with running_fleet(
        tmp_path, roles=("admin", "operator", "technician", "viewer")
    ) as fleet:
        hub = fleet.hub
        status, trace = await fleet.call(
            "POST",
            "/api/automations/restock_reminder/trigger",
            "operator",
            {"variables": {"seen": "kiosk_2 secret"}},
        )
        assert status == 200, trace

        for role in ("technician", "viewer", "operator"):
            status, body = await fleet.call("GET", PATH, role)
            assert status == 403, (role, body)
            assert body["error"]["code"] == "forbidden"
            assert "kiosk_2 secret" not in str(body)
        for role in ("admin", "owner"):
            status, traces = await fleet.call("GET", PATH, role)
            assert status == 200, (role, traces)
            assert [t["run_id"] for t in traces] == [trace["run_id"]]

        # The WebSocket's rule for the same service: refused to the same roles.
        for role, refused in (
            (Role.technician, True),
            (Role.viewer, True),
            (Role.operator, True),
            (Role.admin, False),
        ):
            identity = Identity(
                IdentityKind.user,
                role.value,
                role,
                user_id=role.value,
                **({"machine_ids": frozenset({"lobby_1"})} if role is Role.technician else {}),
            )
            why = service_refusal(identity, hub, "automation", "traces", {"id": "restock_reminder"})
            assert (why is not None) is refused, (role, why)
