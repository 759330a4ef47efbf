"""``/api/config``: the safe parts of the hub's configuration.

Only what a console or a script needs to present data (name, currency, time zone, languages,
units, version, loaded integrations, whether onboarding is done). Never a secret, a database
URL, a password or an integration's own block: it is built field by field, not filtered.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vendhub.auth.manager import DATA_AUTH
from vendhub.auth.roles import Permission
from vendhub.const import __version__
from vendhub.http.view import ApiView, operation
from vendhub.plugins.manager import DATA_INTEGRATIONS

CONFIG: dict[str, Any] = {
    "type": "object",
    "required": [
        "name",
        "currency",
        "time_zone",
        "languages",
        "units",
        "version",
        "integrations",
        "onboarded",
    ],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "currency": {"type": "string", "description": "ISO 4217 code of money amounts."},
        "time_zone": {"type": "string", "description": "IANA time zone, e.g. Europe/Berlin."},
        "languages": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The first is the default.",
        },
        "units": {"enum": ["metric", "imperial"]},
        "version": {"type": "string"},
        "integrations": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The integrations set up now, sorted.",
        },
        "onboarded": {"type": "boolean", "description": "Whether the owner exists."},
    },
}


class ConfigView(ApiView):
    url = "/api/config"
    name = "api:config"

    @operation(
        summary="The hub's name, currency, time zone, languages, units, version, integrations.",
        description="Never secrets, database URLs or passwords.",
        permission=Permission.read,
        responses={200: CONFIG},
        tags=("config",),
    )
    async def get(self, request: web.Request) -> web.Response:
        config = self.hub.config
        manager = self.hub.data.get(DATA_INTEGRATIONS)
        integrations = sorted(manager.loaded_domains) if manager is not None else []
        auth = self.hub.data.get(DATA_AUTH)
        return web.json_response(
            {
                "name": config.name,
                "currency": config.currency,
                "time_zone": config.time_zone,
                "languages": list(config.languages),
                "units": config.units,
                "version": __version__,
                "integrations": integrations,
                "onboarded": bool(auth is not None and auth.onboarded),
            }
        )


VIEWS = (ConfigView,)
