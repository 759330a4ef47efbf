"""``/api/health`` (public) and ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vendhub.const import __version__
from vendhub.http.openapi import openapi_document
from vendhub.http.server import get_http
from vendhub.http.view import ApiView, operation

HEALTH: dict[str, Any] = {
    "type": "object",
    "required": ["status", "version"],
    "properties": {
        "status": {"enum": ["ok", "starting", "stopping"]},
        "version": {"type": "string"},
    },
}


class HealthView(ApiView):
    url = "/api/health"
    name = "api:health"

    @operation(
        summary="Whether the hub is up (public; says nothing else).",
        public=True,
        responses={200: HEALTH},
        tags=("health",),
    )
    async def get(self, request: web.Request) -> web.Response:
        if self.hub.is_running:
            status = "ok"
        elif self.hub.is_stopping:
            status = "stopping"
        else:
            status = "starting"
        return web.json_response({"status": status, "version": __version__})


class OpenApiView(ApiView):
    url = "/api/openapi.json"
    name = "api:openapi"

    @operation(
        summary="This API's OpenAPI 3.1 document.",
        description="For users: a machine's token gets 403, as on the other user APIs.",
        responses={200: {"type": "object", "required": ["openapi", "paths"]}},
        tags=("health",),
    )
    async def get(self, request: web.Request) -> web.Response:
        server = get_http(self.hub)
        return web.json_response(openapi_document(server.router, title=self.hub.config.name))


VIEWS = (HealthView, OpenApiView)
