"""The WebSocket API at ``/api/websocket`` (protocol: ``docs/api-websocket.md``).

``connection.py`` serves one connection (auth phase, message loop, send queue and writer);
``commands.py`` has one handler per message type; ``messages.py`` the message shapes and the
JSON serialised once; ``broadcaster.py`` the hub-wide fan-out of events to subscriptions;
``filters.py`` entity globs and machine scoping; ``manager.py`` the per-hub settings and
connections.
"""

from vendhub.http.websocket.connection import WebSocketConnection, async_handle_websocket
from vendhub.http.websocket.manager import WebSocketManager, WebSocketSettings, websocket_manager

__all__ = [
    "WebSocketConnection",
    "WebSocketManager",
    "WebSocketSettings",
    "async_handle_websocket",
    "websocket_manager",
]
