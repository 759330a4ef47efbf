"""How a resource declares its routes: ``ApiView`` classes with ``@operation`` methods.

An operation says who may call it (public, any signed-in user, a permission, machines), the
JSON Schemas of its query parameters and body (which validate each request before the handler
runs) and of its answers (which ``/api/openapi.json`` publishes). One declaration serves the
router, the checks and the documentation, so they cannot drift apart.
"""

from __future__ import annotations

import json
import re
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
from vendhub.util.text import shorten

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


def quoted(value: Any) -> str:
    """``repr(value)`` for an error message, a long value cut short (``shorten``)."""
    return repr(shorten(value)) if isinstance(value, str) else shorten(repr(value))


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
        raise not_found(f"no machine {quoted(machine_id)}")


def require_machine(request: web.Request, machine_id: str) -> None:
    """Refuse (as not found) a machine outside the caller's reach."""
    if not identity_of(request).sees_machine(machine_id):
        raise not_found(f"no machine {quoted(machine_id)}")


def _unexpected(error: ValidationError, noun: tuple[str, str]) -> str:
    """``additionalProperties: false``: the unexpected names, a few, each cut short."""
    instance = error.instance if isinstance(error.instance, dict) else {}
    known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    patterns = error.schema.get("patternProperties", {}) if isinstance(error.schema, dict) else {}
    extras = sorted(
        str(name)
        for name in instance
        if name not in known and not any(re.search(p, str(name)) for p in patterns)
    )
    if not extras:
        return f"has unexpected {noun[1]}"
    shown = ", ".join(quoted(name) for name in extras[:5])
    more = f" and {len(extras) - 5} more" if len(extras) > 5 else ""
    return f"unexpected {noun[0] if len(extras) == 1 else noun[1]} {shown}{more}"


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


_TEMPLATES: dict[str, Callable[[Any], str]] = {
    "minLength": lambda n: f"must have at least {_count(n, 'character', 'characters')}",
    "maxLength": lambda n: f"must have at most {_count(n, 'character', 'characters')}",
    "minimum": lambda n: f"must be at least {n}",
    "maximum": lambda n: f"must be at most {n}",
    "exclusiveMinimum": lambda n: f"must be above {n}",
    "exclusiveMaximum": lambda n: f"must be below {n}",
    "minItems": lambda n: f"must have at least {_count(n, 'item', 'items')}",
    "maxItems": lambda n: f"must have at most {_count(n, 'item', 'items')}",
    "minProperties": lambda n: f"must have at least {_count(n, 'property', 'properties')}",
    "maxProperties": lambda n: f"must have at most {_count(n, 'property', 'properties')}",
    "pattern": lambda p: f"must match {p}",
    "type": lambda t: f"must be of type {t}",
    "enum": lambda values: f"must be one of {', '.join(map(json.dumps, values))}",
    "const": lambda value: f"must be {json.dumps(value)}",
    "format": lambda name: f"must be a valid {name}",
}


def _describe(error: ValidationError, noun: tuple[str, str] = ("property", "properties")) -> str:
    """What is wrong, without repeating the value (it may be a password); ``noun``: what an
    unexpected name is (a query's are parameters)."""
    rule, limit = error.validator, error.validator_value
    if rule == "required":
        return error.message  # names from the schema, not from the request
    if rule == "additionalProperties":
        return _unexpected(error, noun)
    template = _TEMPLATES.get(str(rule))
    return template(limit) if template is not None else f"is invalid ({rule})"


def _tags(branch: Any, name: str) -> list[Any]:
    """The values of the required property ``name`` that select ``branch`` (its ``const`` or
    ``enum``); none when ``name`` is not such a property."""
    if not isinstance(branch, dict) or name not in branch.get("required", ()):
        return []
    rule = branch.get("properties", {}).get(name)
    if not isinstance(rule, dict):
        return []
    if "const" in rule:
        return [rule["const"]]
    enum = rule.get("enum")
    return list(enum) if isinstance(enum, list) else []


def _discriminator(branches: Any) -> str | None:
    """The property that tells the forms of a ``oneOf`` apart (login's ``grant_type``): one that
    every form requires with a ``const`` or an ``enum``."""
    if not isinstance(branches, list) or not branches:
        return None
    common: set[str] | None = None
    for branch in branches:
        if not isinstance(branch, dict) or not isinstance(branch.get("properties"), dict):
            return None
        names = {name for name in branch["properties"] if _tags(branch, name)}
        common = names if common is None else common & names
    return min(common) if common else None


def _same(value: Any, tag: Any) -> bool:
    """JSON equality (``true`` is not ``1``)."""
    return value == tag and isinstance(value, bool) == isinstance(tag, bool)


def _path_key(error: ValidationError) -> list[tuple[bool, Any]]:
    """Errors in the order of where they are (indexes and names never compare)."""
    return [(isinstance(part, str), part) for part in error.absolute_path]


def _problems(error: ValidationError) -> list[ValidationError]:
    """The errors that say what is wrong. A ``oneOf``/``anyOf`` gives way to the errors of the
    form the value chose by its discriminator (``grant_type``: what is wrong with this grant;
    an unknown one: the grants there are); without one, to the closest form's error."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [error]
    branches = error.validator_value
    name = _discriminator(branches)
    if name is not None and isinstance(error.instance, dict):
        if name not in error.instance:
            message = f"{name!r} is a required property"
            return [ValidationError(message, validator="required", path=error.absolute_path)]
        value = error.instance[name]
        chosen = {
            index
            for index, branch in enumerate(branches)
            if any(_same(value, tag) for tag in _tags(branch, name))
        }
        if not chosen:
            allowed: list[Any] = []
            for tag in (tag for branch in branches for tag in _tags(branch, name)):
                if not any(_same(tag, known) for known in allowed):
                    allowed.append(tag)
            message = f"{name} must be one of {', '.join(map(json.dumps, allowed))}"
            return [
                ValidationError(
                    message,
                    validator="enum",
                    validator_value=allowed,
                    path=[*error.absolute_path, name],
                )
            ]
        errors = [e for e in error.context if e.relative_schema_path[0] in chosen]
        if len(chosen) == 1 and errors:
            return [leaf for e in sorted(errors, key=_path_key) for leaf in _problems(e)]
        if errors:
            closest = best_match(errors)
            return _problems(closest) if closest is not None else [error]
    closest = best_match(error.context)
    return _problems(closest) if closest is not None else [error]


def _schema_errors(validator: Draft202012Validator, value: Any, where: str) -> list[str]:
    problems = []
    for error in sorted(validator.iter_errors(value), key=_path_key):
        for problem in _problems(error):
            path = "/".join(shorten(str(part)) for part in problem.absolute_path)
            noun = (
                ("parameter", "parameters")
                if where == "query" and not path
                else ("property", "properties")
            )
            problems.append(f"{where}{'/' + path if path else ''}: {_describe(problem, noun)}")
            if len(problems) == 20:
                return problems
    return problems


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
                what = name.removesuffix("_id").replace("_", " ")
                raise not_found(f"no such {what}: {quoted(value)}")
        if len(request.query) != len(set(request.query.keys())):
            raise bad_request("a query parameter is given twice")
        query = _coerce_query(dict(request.query), spec.query)
        if query_validator is not None:
            problems = _schema_errors(query_validator, query, "query")
            if problems:
                raise bad_request(f"invalid query parameters: {problems[0]}", problems)
        elif query and not spec.websocket:
            names = sorted(query)
            shown = ", ".join(shorten(name) for name in names[:10])
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            raise bad_request(f"unexpected query parameters: {shown}{more}")
        request[QUERY_KEY] = query
        if body_validator is not None:
            request[BODY_KEY] = await _read_body(request, body_validator)
        return await handler(request)

    handle.__name__ = f"{type(view).__name__}.{method}"
    return handle


async def _read_body(request: web.Request, validator: Draft202012Validator) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    raw = await request.read()
    if not raw.strip() and validator.is_valid({}):
        return {}  # no body where every field is optional (trigger, cancel): as {}
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)"
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"the body is not valid JSON: {error}") from None
    problems = _schema_errors(validator, body, "body")
    if problems:
        raise bad_request(f"invalid request body: {problems[0]}", problems)
    return body
