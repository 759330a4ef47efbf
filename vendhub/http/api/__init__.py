"""The REST resources, one module each; every module lists its views in ``VIEWS``.

``all_views()`` is what the http integration serves: add a new module's name to
``RESOURCE_MODULES`` and it is routed, checked and documented in ``/api/openapi.json``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vendhub.http.view import ApiView

RESOURCE_MODULES: tuple[str, ...] = (
    "health",
    "auth",
    "users",
    "config",
    "states",
    "history",
    "ledger",
    "stock",
    "audit",
    "metrics",
    "machines",
    "catalog",
    "alarms",
    "automations",
    "services",
    "websocket",
    "kiosk",
)


def all_views() -> list[type[ApiView]]:
    views: list[type[ApiView]] = []
    for name in RESOURCE_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        views.extend(module.VIEWS)
    return views
