"""API errors: one JSON shape, ``{"error": {"code", "message", "details"}}``, for every failure."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from vendhub.util.text import shorten

_LOGGER = logging.getLogger(__name__)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}


class ApiError(Exception):
    """An error answer: HTTP status, a stable machine-readable code and a readable message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.details, self.headers)


MAX_MESSAGE = 2_000
"""Characters of an error message at most: a service's message that quotes a huge input whole
(a 100,000-character machine id) is cut, not sent back."""


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": shorten(message, MAX_MESSAGE)}
    if details is not None:
        body["details"] = details
    return web.json_response({"error": body}, status=status, headers=headers)


def unauthorized(message: str = "authentication required") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def bad_request(message: str, details: Any = None) -> ApiError:
    return ApiError(400, "invalid_request", message, details)


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn every error under ``/api`` into the JSON shape; log what was not expected."""
    try:
        return await handler(request)
    except ApiError as error:
        return error.response()
    except web.HTTPException as error:
        if error.status < 400 or not request.path.startswith("/api"):
            raise
        code = _HTTP_CODES.get(error.status, "http_error")
        headers = {k: v for k, v in error.headers.items() if k.lower() == "allow"}
        return error_response(error.status, code, error.reason, headers=headers)
    except Exception:
        _LOGGER.exception("Error answering %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the hub could not answer; see its log")
