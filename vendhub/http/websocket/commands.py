"""The commands a signed-in client may send, one handler each, with the JSON Schema of each.

A handler gets the connection, the message id and the checked message; it answers through
``connection.async_send`` at once, or returns a coroutine that does (``call_service``), which
the connection runs as a task so the next messages are read meanwhile.

Who may do what:

- ``subscribe_events``, ``subscribe_states``, ``get_states``: ``Permission.read``. A
  technician receives only what belongs to their machines (``vendhub.http.scoping``); a
  filter naming another machine is answered ``not_found``.
- ``call_service``: ``Permission.manage_hub`` calls any service. Without it, a caller may call
  only the services of ``vendhub.http.service_permissions.SERVICE_RULES``, each with the
  permission the REST API needs for the same change (a slot's price needs ``manage_catalog``;
  a restock, a command or the mode ``operate_machines``) and, for a machine's service, a
  ``machine_id`` within the caller's reach. Any other service is refused (so is a new one).
  The call runs with ``context_for(identity)``: the audit log and the service see the caller.
  It may take up to ``settings.call_timeout``; a timeout inside the service is answered with
  its own message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from vendhub.core.errors import InvalidServiceData, ServiceNotFound, VendHubError
from vendhub.http.auth import context_for
from vendhub.http.scoping import machine_of_state
from vendhub.http.service_permissions import CALLER_PERMISSIONS, service_refusal
from vendhub.http.websocket.broadcaster import EVENTS, STATES, Kind
from vendhub.http.websocket.filters import MAX_PATTERNS, EntityFilter, FilterError
from vendhub.http.websocket.messages import (
    ERR_INVALID_SERVICE_DATA,
    ERR_NOT_FOUND,
    ERR_SERVICE_ERROR,
    ERR_TIMEOUT,
    ERR_TOO_MANY,
    ERR_UNAUTHORIZED,
    error_message,
    json_bytes,
    pong_message,
    raw_result_message,
    result_message,
)
from vendhub.util.text import shorten

if TYPE_CHECKING:
    from vendhub.auth.identity import Identity
    from vendhub.http.websocket.connection import WebSocketConnection

_LOGGER = logging.getLogger(__name__)

Handler = Callable[["WebSocketConnection", int, dict[str, Any]], "Coroutine[Any, Any, None] | None"]

_BASE: dict[str, Any] = {
    "id": {"type": "integer"},
    "type": {"type": "string"},
}
_GLOB = {"type": "string", "minLength": 1, "maxLength": 255}
_MACHINE_ID = {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"}
_EVENT_TYPE = {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"}
_NAME = {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"}


def _one_or_many(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "anyOf": [
            item,
            {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_PATTERNS},
        ]
    }


ENTITY_FILTERS: dict[str, Any] = {
    "entity_id": {
        **_one_or_many(_GLOB),
        "description": "Entity id globs (`*`, `?`, `[...]`): one or a list.",
    },
    "machine_id": {**_one_or_many(_MACHINE_ID), "description": "One machine id or a list."},
}


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "type", *required],
        "additionalProperties": False,
        "properties": {**_BASE, **properties},
    }


def _describe(error: ValidationError) -> str:
    if error.validator in ("anyOf", "oneOf") and error.context:
        deepest = best_match(error.context)
        if deepest is not None:
            error = deepest
    path = "/".join(str(part) for part in error.absolute_path)
    text = shorten(error.message, 200)
    return f"{path}: {text}" if path else text


@dataclass(frozen=True)
class Command:
    """A message type: its JSON Schema and its handler."""

    schema: dict[str, Any]
    handler: Handler
    validator: Draft202012Validator = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "validator", Draft202012Validator(self.schema))

    def problems(self, message: Mapping[str, Any]) -> list[str]:
        errors = sorted(self.validator.iter_errors(message), key=lambda e: list(e.path))
        return [_describe(error) for error in errors[:10]]


# ---- ping, features --------------------------------------------------------------------------


def handle_ping(connection: WebSocketConnection, msg_id: int, message: dict[str, Any]) -> None:
    connection.async_send(pong_message(msg_id))


def handle_supported_features(
    connection: WebSocketConnection, msg_id: int, message: dict[str, Any]
) -> None:
    connection.coalesce = bool(message["features"].get("coalesce_messages"))
    connection.async_send(result_message(msg_id))


# ---- subscriptions ---------------------------------------------------------------------------


def _filter_or_error(
    connection: WebSocketConnection, msg_id: int, message: dict[str, Any]
) -> EntityFilter | None:
    identity = connection.identity
    assert identity is not None
    try:
        return EntityFilter.build(identity, message.get("entity_id"), message.get("machine_id"))
    except FilterError as error:
        connection.async_send(error_message(msg_id, ERR_NOT_FOUND, str(error)))
        return None


def _subscribe(
    connection: WebSocketConnection,
    msg_id: int,
    message: dict[str, Any],
    kind: Kind,
    event_types: tuple[str, ...],
) -> None:
    if len(connection.subscriptions) >= connection.settings.max_subscriptions:
        connection.async_send(
            error_message(
                msg_id,
                ERR_TOO_MANY,
                f"at most {connection.settings.max_subscriptions} subscriptions per connection",
            )
        )
        return
    entity_filter = _filter_or_error(connection, msg_id, message)
    if entity_filter is None:
        return
    connection.async_send(result_message(msg_id))
    connection.subscriptions[msg_id] = connection.manager.broadcaster.async_subscribe(
        connection, msg_id, kind, event_types, entity_filter
    )


def handle_subscribe_events(
    connection: WebSocketConnection, msg_id: int, message: dict[str, Any]
) -> None:
    event_type = message.get("event_type")
    types = (
        () if event_type is None else (event_type,) if isinstance(event_type, str) else event_type
    )
    _subscribe(connection, msg_id, message, EVENTS, tuple(dict.fromkeys(types)))


def handle_subscribe_states(
    connection: WebSocketConnection, msg_id: int, message: dict[str, Any]
) -> None:
    _subscribe(connection, msg_id, message, STATES, ())


def handle_unsubscribe(
    connection: WebSocketConnection, msg_id: int, message: dict[str, Any]
) -> None:
    unsubscribe = connection.subscriptions.pop(message["subscription"], None)
    if unsubscribe is None:
        connection.async_send(
            error_message(msg_id, ERR_NOT_FOUND, f"no subscription {message['subscription']}")
        )
        return
    unsubscribe()
    connection.async_send(result_message(msg_id))


# ---- states ----------------------------------------------------------------------------------


def handle_get_states(
    connection: WebSocketConnection, msg_id: int, message: dict[str, Any]
) -> None:
    entity_filter = _filter_or_error(connection, msg_id, message)
    if entity_filter is None:
        return
    states = connection.hub.states
    cache = connection.manager.state_json
    if entity_filter.everything:
        parts = [cache.get(state) for state in states.async_all()]
    else:
        matches = entity_filter.matches
        parts = [
            cache.get(state)
            for state in states.async_all()
            if matches(state.entity_id, machine_of_state(state))
        ]
    cache.prune(states)
    connection.async_send(raw_result_message(msg_id, b"[%b]" % b",".join(parts)))


# ---- services --------------------------------------------------------------------------------


def may_call(
    identity: Identity, connection: WebSocketConnection, domain: str, service: str, data: Any
) -> str | None:
    """Why ``identity`` may not call ``domain.service`` with ``data``, or None if it may."""
    return service_refusal(identity, connection.hub, domain, service, data)


def handle_call_service(
    connection: WebSocketConnection, msg_id: int, message: dict[str, Any]
) -> Coroutine[Any, Any, None] | None:
    identity = connection.identity
    assert identity is not None
    domain, service = message["domain"], message["service"]
    data = message.get("service_data") or {}
    if not connection.async_identity_valid():
        return None
    if not any(identity.has(permission) for permission in CALLER_PERMISSIONS):
        # Before the lookup: a caller who may call nothing learns nothing of what exists.
        return _refuse(
            connection, msg_id, identity, domain, service, "your role may not call services"
        )
    if not connection.hub.services.has_service(domain, service):
        connection.async_send(
            error_message(msg_id, ERR_NOT_FOUND, f"service {domain}.{service} is not registered")
        )
        return None
    problem = may_call(identity, connection, domain, service, data)
    if problem is not None:
        return _refuse(connection, msg_id, identity, domain, service, problem)
    return _async_call(connection, msg_id, identity, domain, service, data)


def _refuse(
    connection: WebSocketConnection,
    msg_id: int,
    identity: Identity,
    domain: str,
    service: str,
    problem: str,
) -> None:
    _LOGGER.info(
        "WebSocket call of %s.%s by %s refused: %s", domain, service, identity.name, problem
    )
    connection.async_send(error_message(msg_id, ERR_UNAUTHORIZED, problem))


async def _async_call(
    connection: WebSocketConnection,
    msg_id: int,
    identity: Identity,
    domain: str,
    service: str,
    data: dict[str, Any],
) -> None:
    context = context_for(identity)
    timeout = connection.settings.call_timeout
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            response = await connection.hub.services.async_call(
                domain, service, data, blocking=True, context=context
            )
    except ServiceNotFound as error:
        connection.async_send(error_message(msg_id, ERR_NOT_FOUND, str(error)))
    except InvalidServiceData as error:
        connection.async_send(error_message(msg_id, ERR_INVALID_SERVICE_DATA, error.problem))
    except TimeoutError as error:
        # The connection's limit, or a wait inside the service (vending.select's own
        # ``timeout``, a machine that does not answer a command) that ran out first.
        if limit.expired():
            problem = f"{domain}.{service} did not finish within {timeout:g} s"
        else:
            problem = str(error) or f"{domain}.{service} timed out"
        connection.async_send(error_message(msg_id, ERR_TIMEOUT, problem))
    except asyncio.CancelledError:
        raise
    except VendHubError as error:
        # A refusal's code (vending.select's outcome, say) as REST gives it in ``details``.
        details = getattr(error, "details", None) or None
        connection.async_send(error_message(msg_id, ERR_SERVICE_ERROR, str(error), details))
    except Exception as error:
        _LOGGER.warning(
            "Service %s.%s called over the WebSocket API by %s failed",
            domain,
            service,
            identity.name,
            exc_info=True,
        )
        connection.async_send(
            error_message(msg_id, ERR_SERVICE_ERROR, f"{domain}.{service} failed: {error}"[:500])
        )
    else:
        result = json_bytes({"context": context.as_dict(), "response": response})
        connection.async_send(raw_result_message(msg_id, result))


COMMANDS: dict[str, Command] = {
    "ping": Command(_schema({}), handle_ping),
    "supported_features": Command(
        _schema(
            {
                "features": {
                    "type": "object",
                    "properties": {"coalesce_messages": {"type": ["integer", "boolean"]}},
                    "maxProperties": 32,
                }
            },
            ("features",),
        ),
        handle_supported_features,
    ),
    "subscribe_events": Command(
        _schema({"event_type": _one_or_many(_EVENT_TYPE), **ENTITY_FILTERS}),
        handle_subscribe_events,
    ),
    "subscribe_states": Command(_schema(ENTITY_FILTERS), handle_subscribe_states),
    "unsubscribe": Command(
        _schema({"subscription": {"type": "integer", "minimum": 1}}, ("subscription",)),
        handle_unsubscribe,
    ),
    "get_states": Command(_schema(ENTITY_FILTERS), handle_get_states),
    "call_service": Command(
        _schema(
            {
                "domain": _NAME,
                "service": _NAME,
                "service_data": {"type": "object", "maxProperties": 256},
            },
            ("domain", "service"),
        ),
        handle_call_service,
    ),
}
