"""Security headers on every answer; HSTS when the server speaks TLS."""

from __future__ import annotations

from typing import Any

from aiohttp import web

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
HSTS = "max-age=31536000; includeSubDomains"


def security_headers_middleware(*, tls: bool) -> Any:
    """A middleware that adds the headers; ``tls`` adds Strict-Transport-Security."""

    @web.middleware
    async def add_headers(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if request.path.startswith("/api"):
            headers.setdefault("Cache-Control", "no-store")
        if tls:
            headers.setdefault("Strict-Transport-Security", HSTS)
        return response

    return add_headers
