"""``/api/metrics``: the hub's metrics in the Prometheus text format (a token is required)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.http.metrics import CONTENT_TYPE, exposition, install_hub_metrics
from vendhub.http.view import ApiView, operation

if TYPE_CHECKING:
    from vendhub.core.hub import Hub


class MetricsView(ApiView):
    url = "/api/metrics"
    name = "api:metrics"

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        # Count events from the moment the API is served, not from the first scrape.
        install_hub_metrics(hub)

    @operation(
        summary="Metrics in the Prometheus text format 0.0.4 (text/plain).",
        description=(
            "Scrape with a long-lived token (Authorization: Bearer ...). Counters and gauges: "
            "vendhub_events_total{event_type}, vendhub_vends_total{outcome}, "
            "vendhub_states{domain}, vendhub_state_writes_total, vendhub_recorder_queue_depth, "
            "vendhub_recorder_backlog, vendhub_recorder_connected, "
            "vendhub_recorder_written_total{kind}, vendhub_recorder_dropped_total{kind}, "
            "vendhub_mqtt_messages_received_total, vendhub_websocket_clients, vendhub_info."
        ),
        permission=Permission.read,
        responses={200: {"type": "string"}},
        media_type="text/plain",
        tags=("metrics",),
    )
    async def get(self, request: web.Request) -> web.Response:
        return web.Response(body=exposition(self.hub), headers={"Content-Type": CONTENT_TYPE})


VIEWS = (MetricsView,)
