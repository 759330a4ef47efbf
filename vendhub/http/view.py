"""How a resource declares its routes: ``ApiView`` classes with ``@operation`` methods.

An operation says who may call it (public, any signed-in user, a permission, machines), the
JSON Schemas of its query parameters and body (which validate each request before the handler
runs) and of its answers (which ``/api/openapi.json`` publishes). One declaration serves the
router, the checks and the documentation, so they cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from vendhub.auth.identity import Identity
from vendhub.auth.roles import Permission
from vendhub.http.errors import ApiError, bad_request, forbidden, not_found, unauthorized
from vendhub.http.keys import AUTH_PROBLEM_KEY, BODY_KEY, IDENTITY_KEY, PARAMS_KEY, QUERY_KEY

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

METHODS = ("get", "post", "put", "patch", "delete")
MAX_BODY_BYTES = 1024 * 1024

Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    """What one method of a view accepts, requires and answers."""

    summary: str
    permission: Permission | None = None
    """None: any signed-in user (not a machine) may call it."""
    public: bool = False
    """No identity needed (health, login, onboarding)."""
    machines: bool = False
    """Machines may call it (they may call nothing else)."""
    users: bool = True
    """Users may call it (False for machine-only operations)."""
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    required_query: tuple[str, ...] = ()
    body: dict[str, Any] | None = None
    responses: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    """Status → JSON Schema of the answer (None: no body)."""
    description: str = ""
    tags: tuple[str, ...] = ()
    websocket: bool = False
    """A WebSocket endpoint: an upgrade request needs no identity (the connection signs in
    with its first message); any other request is checked as usual."""
    media_type: str = "application/json"
    """The content type of the success answers (``text/plain`` for the metrics)."""

    def validators(self) -> tuple[Draft202012Validator | None, Draft202012Validator | None]:
        query = None
        if self.query:
            query = Draft202012Validator(
                {
                    "type": "object",
                    "properties": self.query,
                    "required": list(self.required_query),
                    "additionalProperties": False,
                }
            )
        body = Draft202012Validator(self.body) if self.body is not None else None
        return query, body


def operation(**kwargs: Any) -> Callable[[Handler], Handler]:
    """Declare a view method as an API operation (see ``Operation`` for the arguments)."""
    spec = Operation(**kwargs)

    def mark(handler: Handler) -> Handler:
        handler.__api_operation__ = spec  # type: ignore[attr-defined]
        return handler

    return mark


class ApiView:
    """A resource at ``url`` (aiohttp's ``{name}`` placeholders); methods are operations."""

    url: ClassVar[str]
    name: ClassVar[str]
    path_params: ClassVar[dict[str, dict[str, Any]]] = {}
    """JSON Schema of each ``{placeholder}`` in the url, for the document."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @classmethod
    def operations(cls) -> dict[str, Operation]:
        found: dict[str, Operation] = {}
        for method in METHODS:
            handler = getattr(cls, method, None)
            spec = getattr(handler, "__api_operation__", None)
            if spec is not None:
                found[method] = spec
        return found


def identity_of(request: web.Request) -> Identity:
    """The caller of an authenticated request."""
    identity: Identity | None = request.get(IDENTITY_KEY)
    if identity is None:
        raise request.get(AUTH_PROBLEM_KEY) or unauthorized()
    return identity


def params(request: web.Request) -> dict[str, str]:
    """The url's ``{placeholders}`` of this request."""
    return request[PARAMS_KEY]


def query(request: web.Request) -> dict[str, Any]:
    """The checked query parameters of this request."""
    return request[QUERY_KEY]


def body(request: web.Request) -> Any:
    """The checked JSON body of this request."""
    return request[BODY_KEY]


def require(request: web.Request, permission: Permission, machine_id: str | None = None) -> None:
    """Refuse the request unless its caller holds ``permission`` (on ``machine_id``)."""
    identity = identity_of(request)
    if not identity.has(permission):
        raise forbidden(f"your role may not {permission.value.replace('_', ' ')}")
    if machine_id is not None and not identity.sees_machine(machine_id):
        raise not_found(f"no machine {machine_id!r}")


def require_machine(request: web.Request, machine_id: str) -> None:
    """Refuse (as not found) a machine outside the caller's reach."""
    if not identity_of(request).sees_machine(machine_id):
        raise not_found(f"no machine {machine_id!r}")


_SAFE_MESSAGES = frozenset({"required", "additionalProperties", "minProperties", "maxProperties"})


def _describe(error: ValidationError) -> str:
    """What is wrong, without repeating the value (it may be a password)."""
    rule, limit = error.validator, error.validator_value
    if rule in _SAFE_MESSAGES:
        return error.message
    if rule == "oneOf" and error.context:
        deepest = best_match(error.context)
        return _describe(deepest) if deepest is not None else "matches none of the forms"
    templates: dict[str, Callable[[Any], str]] = {
        "minLength": lambda n: f"must have at least {n} characters",
        "maxLength": lambda n: f"must have at most {n} characters",
        "minimum": lambda n: f"must be at least {n}",
        "maximum": lambda n: f"must be at most {n}",
        "minItems": lambda n: f"must have at least {n} items",
        "maxItems": lambda n: f"must have at most {n} items",
        "pattern": lambda p: f"must match {p}",
        "type": lambda t: f"must be of type {t}",
        "enum": lambda values: f"must be one of {', '.join(map(json.dumps, values))}",
        "const": lambda value: f"must be {json.dumps(value)}",
        "format": lambda name: f"must be a valid {name}",
    }
    template = templates.get(str(rule))
    return template(limit) if template is not None else f"is invalid ({rule})"


def _schema_errors(validator: Draft202012Validator, value: Any, where: str) -> list[str]:
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.path)):
        path = "/".join(str(p) for p in error.absolute_path)
        problems.append(f"{where}{'/' + path if path else ''}: {_describe(error)}")
    return problems[:20]


def _coerce_query(raw: dict[str, str], schema: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Query strings → the types their schema asks for (integers, numbers, booleans)."""
    values: dict[str, Any] = {}
    for name, text in raw.items():
        kind = schema.get(name, {}).get("type")
        if kind == "integer":
            try:
                values[name] = int(text)
            except ValueError:
                values[name] = text
        elif kind == "number":
            try:
                values[name] = float(text)
            except ValueError:
                values[name] = text
        elif kind == "boolean":
            values[name] = {"true": True, "false": False}.get(text.lower(), text)
        else:
            values[name] = text
    return values


def is_websocket_upgrade(request: web.Request) -> bool:
    """Whether ``request`` asks to become a WebSocket (``Upgrade: websocket``)."""
    return request.headers.get("Upgrade", "").strip().lower() == "websocket"


def checked_handler(view: ApiView, method: str, spec: Operation) -> Handler:
    """The aiohttp handler: caller, permission, query and body checked, then the view's method."""
    handler: Handler = getattr(view, method)
    query_validator, body_validator = spec.validators()
    path_validators = {
        name: Draft202012Validator(schema) for name, schema in type(view).path_params.items()
    }

    async def handle(request: web.Request) -> web.StreamResponse:
        if not spec.public and not (spec.websocket and is_websocket_upgrade(request)):
            identity = identity_of(request)
            if identity.is_machine and not spec.machines:
                raise forbidden("machine credentials cannot call this API")
            if not identity.is_machine and not spec.users:
                raise forbidden("only machines call this API")
            if spec.permission is not None and not identity.is_machine:
                require(request, spec.permission)
        for name, validator in path_validators.items():
            value = request[PARAMS_KEY].get(name)
            if value is not None and not validator.is_valid(value):
                raise not_found(f"no such {name.removesuffix('_id').replace('_', ' ')}: {value!r}")
        if len(request.query) != len(set(request.query.keys())):
            raise bad_request("a query parameter is given twice")
        query = _coerce_query(dict(request.query), spec.query)
        if query_validator is not None:
            problems = _schema_errors(query_validator, query, "query")
            if problems:
                raise bad_request(f"invalid query parameters: {problems[0]}", problems)
        elif query and not spec.websocket:
            raise bad_request(f"unexpected query parameters: {', '.join(sorted(query))}")
        request[QUERY_KEY] = query
        if body_validator is not None:
            request[BODY_KEY] = await _read_body(request, body_validator)
        return await handler(request)

    handle.__name__ = f"{type(view).__name__}.{method}"
    return handle


async def _read_body(request: web.Request, validator: Draft202012Validator) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)"
        )
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"the body is not valid JSON: {error}") from None
    problems = _schema_errors(validator, body, "body")
    if problems:
        raise bad_request(f"invalid request body: {problems[0]}", problems)
    return body
