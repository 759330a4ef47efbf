"""``/api/services``: every registered service, and calling any of them (owners and admins).

The escape hatch for what has no resource of its own yet: ``POST
/api/services/{domain}/{service}`` calls the service with the body as its data and the caller's
context, so it is audited like every other change.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.core.errors import ServiceNotFound
from vendhub.http.api.calls import SERVICE_ERRORS, call_service, json_answer
from vendhub.http.errors import ApiError, not_found
from vendhub.http.view import ApiView, body, operation, params

TAGS: Final = ("services",)
NAME: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9_]{1,64}$"}
SERVICE_LIST: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["domain", "services"],
        "properties": {
            "domain": {"type": "string"},
            "services": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["service", "description", "read_only"],
                    "properties": {
                        "service": {"type": "string"},
                        "description": {"type": "string"},
                        "read_only": {"type": "boolean"},
                    },
                },
            },
        },
    },
}


class ServicesView(ApiView):
    url = "/api/services"
    name = "api:services"

    @operation(
        summary="Every registered service by domain, with a one-line description.",
        permission=Permission.read,
        responses={200: SERVICE_LIST},
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        registered = self.hub.services.async_services()
        return json_answer(
            [
                {
                    "domain": domain,
                    "services": [
                        {
                            "service": name,
                            "description": service.description,
                            "read_only": service.read_only,
                        }
                        for name, service in sorted(registered[domain].items())
                    ],
                }
                for domain in sorted(registered)
            ]
        )


class ServiceCallView(ApiView):
    url = "/api/services/{domain}/{service}"
    name = "api:service:call"
    path_params = {"domain": NAME, "service": NAME}

    @operation(
        summary="Call any service with the body as its data, and answer its result.",
        description=(
            "For owners and admins (manage_hub). The call is blocking and audited with your "
            "identity; 404 for a service that is not registered, 400 when the data does not "
            "fit its schema or the service refuses it."
        ),
        permission=Permission.manage_hub,
        body={"type": "object"},
        responses={
            200: {
                "type": "object",
                "required": ["result"],
                "properties": {"result": {"description": "What the service returned."}},
            },
            **SERVICE_ERRORS,
        },
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        path = params(request)
        domain, service = path["domain"].lower(), path["service"].lower()
        if not self.hub.services.has_service(domain, service):
            known = sorted(self.hub.services.async_services().get(domain, {}))
            raise not_found(str(ServiceNotFound(domain, service, known or None)))
        try:
            result = await call_service(self.hub, request, domain, service, body(request))
        except (ValueError, LookupError) as error:
            # What a handler raises about its data (an unknown slot, a bad value) is the
            # caller's mistake, not the hub's.
            raise ApiError(400, "service_failed", f"{domain}.{service}: {error}") from None
        return json_answer({"result": result})


VIEWS = (ServicesView, ServiceCallView)
