"""How a REST handler calls an integration's service, and how its errors become answers.

Every change the API makes goes through ``hub.services.async_call`` with the caller's context
(``request_context``), so it is audited like any other call. The core names services, never
imports an integration: a service that is not registered means its integration is not set up,
which is answered as 503 ``unavailable`` saying what to configure.

Errors: ``ServiceNotFound`` → 503 ``unavailable``; ``InvalidServiceData`` → 400 with its
message; a timeout (``TimeoutError``, such as a machine that does not answer a command) → 504
``timeout``; a hub error that is also a ValueError (the request cannot be served: a sold-out
slot) → 400 with its ``details``; any other hub error (the broker cannot be reached, the hub is
stopping) → 503.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from vendhub.core.errors import InvalidServiceData, ServiceNotFound, VendHubError
from vendhub.http.auth import request_context
from vendhub.http.errors import ApiError, bad_request

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

UNAVAILABLE: Final = 503
TIMEOUT: Final = 504
SERVICE_ERRORS: Final[dict[int, dict[str, Any] | None]] = {
    UNAVAILABLE: None,
    TIMEOUT: None,
}
"""The statuses ``call_service`` may answer beyond 400: add them to an operation's responses."""


def unavailable(message: str) -> ApiError:
    return ApiError(UNAVAILABLE, "unavailable", message)


def not_set_up(domain: str, service: str) -> ApiError:
    """The answer when ``domain.service`` is not registered: its integration is not set up."""
    return unavailable(
        f"{domain}.{service} is not available: the {domain} integration is not set up "
        f"(add a `{domain}:` block to configuration.yaml)"
    )


async def call_service(
    hub: Hub,
    request: web.Request,
    domain: str,
    service: str,
    data: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
) -> Any:
    """Call ``domain.service`` as the request's caller and return its result (errors mapped)."""
    try:
        return await hub.services.async_call(
            domain,
            service,
            data,
            blocking=True,
            context=request_context(request),
            timeout=timeout,
        )
    except ServiceNotFound:
        raise not_set_up(domain, service) from None
    except InvalidServiceData as error:
        raise bad_request(error.problem, {"service": f"{domain}.{service}"}) from None
    except TimeoutError as error:
        raise ApiError(
            TIMEOUT,
            "timeout",
            str(error)
            or f"{domain}.{service} did not finish "
            + ("in time" if timeout is None else f"within {timeout:g} s"),
        ) from None
    except VendHubError as error:
        if isinstance(error, ValueError):
            # The hub's own errors that are also ValueErrors refuse this request (a sold-out
            # slot, say); any detail they carry (``details``) goes into the answer.
            details = {"service": f"{domain}.{service}", **getattr(error, "details", {})}
            raise bad_request(str(error), details) from None
        raise unavailable(str(error)) from None


def _plain(value: Any) -> Any:
    """What ``json.dumps`` cannot write: times as ISO 8601, sets as lists, the rest as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


dumps = partial(json.dumps, default=_plain)


def json_answer(data: Any, status: int = 200) -> web.Response:
    """A JSON answer that also takes the datetimes and sets a service result may hold."""
    return web.json_response(data, status=status, dumps=dumps)
