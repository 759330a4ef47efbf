"""Typed keys of what the HTTP layer keeps on a request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

if TYPE_CHECKING:
    pass

IDENTITY_KEY: Final = web.RequestKey["Identity | None"]("vendhub_identity")
"""The caller's ``Identity``, or None when none (or an invalid one) was presented."""
AUTH_PROBLEM_KEY: Final = web.RequestKey["ApiError | None"]("vendhub_auth_problem")
"""The ApiError to answer if the operation needs an identity and there is none."""
SESSION_KEY: Final = web.RequestKey[bool]("vendhub_session_auth")
"""True when the caller is authenticated by the console's session cookie."""
PARAMS_KEY: Final = web.RequestKey[dict[str, str]]("vendhub_params")
"""The url's ``{placeholders}``."""
QUERY_KEY: Final = web.RequestKey[dict[str, Any]]("vendhub_query")
"""The query parameters, converted to their schema's types and checked."""
BODY_KEY: Final = web.RequestKey[Any]("vendhub_body")
"""The JSON body, checked against the operation's schema."""

SESSION_COOKIE: Final = "vendhub_session"
CSRF_COOKIE: Final = "vendhub_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
