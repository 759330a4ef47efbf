"""The API's own router: views come and go with their integrations, the app never restarts.

aiohttp freezes its router when the server starts, and integrations are set up, reloaded and
unloaded while it runs; so every ``/api`` request goes to ``ApiRouter.dispatch``, which matches
the path against the views registered now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from vendhub.http.errors import ApiError, not_found
from vendhub.http.keys import PARAMS_KEY
from vendhub.http.view import ApiView, Handler, Operation, checked_handler

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Route:
    """One url with its operations."""

    url: str
    pattern: re.Pattern[str]
    view: ApiView
    handlers: dict[str, Handler]
    operations: dict[str, Operation]


def _compile(url: str) -> re.Pattern[str]:
    parts = []
    position = 0
    for match in _PLACEHOLDER.finditer(url):
        parts.append(re.escape(url[position : match.start()]))
        parts.append(f"(?P<{match.group(1)}>[^/]+)")
        position = match.end()
    parts.append(re.escape(url[position:]))
    return re.compile("^" + "".join(parts) + "$")


class ApiRouter:
    """Views by url; ``dispatch`` finds the route of a request and calls its checked handler."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._routes: dict[str, Route] = {}

    @property
    def routes(self) -> list[Route]:
        return sorted(self._routes.values(), key=lambda r: r.url)

    def register(self, view_class: type[ApiView]) -> None:
        """Serve ``view_class`` at its url (replacing a view already there)."""
        view = view_class(self.hub)
        operations = view_class.operations()
        if not operations:
            raise ValueError(f"{view_class.__name__} declares no operation")
        handlers = {
            method.upper(): checked_handler(view, method, spec)
            for method, spec in operations.items()
        }
        self._routes[view_class.url] = Route(
            view_class.url, _compile(view_class.url), view, handlers, operations
        )

    def unregister(self, view_class: type[ApiView]) -> None:
        self._routes.pop(view_class.url, None)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        for route in self._routes.values():
            match = route.pattern.match(path)
            if match is None:
                continue
            method = "GET" if request.method == "HEAD" else request.method
            handler = route.handlers.get(method)
            if handler is None:
                allowed = ", ".join(sorted(route.handlers))
                raise ApiError(
                    405,
                    "method_not_allowed",
                    f"{request.method} is not allowed here; use {allowed}",
                    headers={"Allow": allowed},
                )
            request[PARAMS_KEY] = match.groupdict()
            return await handler(request)
        raise not_found(f"no API at {request.path}")
