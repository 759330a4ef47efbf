"""``/api/websocket``: live states and events, and service calls, over one WebSocket.

The upgrade itself needs no token (browsers cannot send one): the client signs in with its
first message, or the upgrade carries the console's session cookie. A plain GET is answered
401 without a token and 426 with one (see ``view.checked_handler``).
"""

from __future__ import annotations

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.http.view import ApiView, operation
from vendhub.http.websocket import async_handle_websocket, websocket_manager


class WebSocketView(ApiView):
    url = "/api/websocket"
    name = "api:websocket"

    @operation(
        summary="The WebSocket API: states and events as they change, service calls.",
        description=(
            "Upgrade with `Upgrade: websocket`, then sign in with "
            '`{"type": "auth", "access_token": "..."}` (or upgrade with the console\'s session '
            "cookie). Protocol: docs/api-websocket.md."
        ),
        permission=Permission.read,
        websocket=True,
        tags=("websocket",),
    )
    async def get(self, request: web.Request) -> web.StreamResponse:
        return await async_handle_websocket(websocket_manager(self.hub), request)


VIEWS = (WebSocketView,)
