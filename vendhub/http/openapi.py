"""``/api/openapi.json``: the OpenAPI 3.1 document, made from the router's own declarations."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from vendhub.const import __version__
from vendhub.http.errors import ERROR_SCHEMA
from vendhub.http.router import ApiRouter, Route
from vendhub.http.view import Operation

_ERROR_TEXT = {
    400: "The request is invalid; details say what is wrong.",
    401: "No valid access token or session.",
    403: "The caller may not do this.",
    404: "Not found (or outside the caller's machines).",
    405: "Method not allowed.",
    409: "Conflicts with the current state.",
    413: "The body is too large.",
    415: "The body is not JSON.",
    429: "Too many attempts; see Retry-After.",
    503: "What the operation needs is not set up or cannot be reached now; the message says what.",
    504: "The machine or service did not answer in time.",
}


def _error_statuses(route: Route, spec: Operation) -> set[int]:
    statuses = {405}
    if not spec.public:
        statuses |= {401, 403}
    if spec.body is not None:
        statuses |= {400, 413, 415}
    # Every operation checks its query, and refuses parameters it does not take.
    statuses.add(400)
    if "{" in route.url:
        statuses.add(404)
    return statuses


def _operation(route: Route, method: str, spec: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": f"{route.view.name}:{method}",
        "summary": spec.summary,
        "tags": list(spec.tags) or [route.url.split("/")[2] if route.url.count("/") > 1 else "api"],
    }
    if spec.description:
        document["description"] = spec.description
    if spec.public:
        document["security"] = []
    parameters: list[dict[str, Any]] = []
    for name, schema in type(route.view).path_params.items():
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, schema in spec.query.items():
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": name in spec.required_query,
                "schema": schema,
            }
        )
    if parameters:
        document["parameters"] = parameters
    if spec.body is not None:
        document["requestBody"] = {
            # A body whose every field is optional may be left out (view.py takes it as {}).
            "required": not Draft202012Validator(spec.body).is_valid({}),
            "content": {"application/json": {"schema": spec.body}},
        }
    responses: dict[str, Any] = {}
    for status, schema in sorted(spec.responses.items()):
        answer: dict[str, Any] = {"description": _ERROR_TEXT.get(status, "Success.")}
        if schema is not None:
            media_type = spec.media_type if status < 300 else "application/json"
            answer["content"] = {media_type: {"schema": schema}}
        responses[str(status)] = answer
    for status in sorted(_error_statuses(route, spec)):
        responses.setdefault(
            str(status),
            {
                "description": _ERROR_TEXT[status],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        )
    document["responses"] = responses
    return document


def openapi_document(router: ApiRouter, *, title: str) -> dict[str, Any]:
    """The whole document for the routes registered now."""
    paths: dict[str, Any] = {}
    for route in router.routes:
        if any(spec.websocket for spec in route.operations.values()):
            continue
        paths[route.url] = {
            method: _operation(route, method, spec) for method, spec in route.operations.items()
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{title} API", "version": __version__},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
        "security": [{"bearer": []}],
    }
