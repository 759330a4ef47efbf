"""Runs a voluptuous schema over loaded YAML and turns its errors into located ConfigIssues."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from vendhub.config.errors import ConfigError, ConfigIssue, KeyPath
from vendhub.config.nodes import NodeDict, NodeList, SourceLocation
from vendhub.config.validators import ListOf, describe_value

_READABLE_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "bool": "a boolean (true/false)",
    "a dictionary": "a mapping (key: value lines)",
    "dict": "a mapping (key: value lines)",
    "a list": "a list ('- item' lines)",
    "list": "a list ('- item' lines)",
}

_HIDDEN_SECRET = "<hidden>"


def validate(
    schema: vol.Schema,
    data: Any,
    *,
    root_path: KeyPath = (),
    default_source: SourceLocation | None = None,
) -> Any:
    """Validate `data` (loaded by yaml_loader) against `schema`.

    `root_path` is where `data` sits in the whole configuration, e.g. ('vendhub',).
    Every error becomes a ConfigIssue at the nearest line known; `default_source` is used
    when none is. Raises ConfigError with all of them, else returns the validated data.
    """
    try:
        return schema(data)
    except vol.Invalid as err:
        errors = list(_flatten(err))
    issues = [_issue_for(error, schema, data, root_path, default_source) for error in errors]
    raise ConfigError(dict.fromkeys(issues))


def _flatten(error: vol.Invalid) -> Iterator[vol.Invalid]:
    """voluptuous nests MultipleInvalid (e.g. one per failing list item); unnest them all."""
    if isinstance(error, vol.MultipleInvalid):
        for inner in error.errors:
            yield from _flatten(inner)
    else:
        yield error


@dataclass
class _Located:
    """How far a voluptuous path could be followed through the loaded data."""

    value: Any
    source: SourceLocation | None
    followed: bool
    secret_name: str | None
    # Where the key holding `value` was written, when `value` is a mapping entry.
    key_source: SourceLocation | None = None


def _follow(data: Any, path: list[Any], default_source: SourceLocation | None) -> _Located:
    current = data
    source = getattr(data, "source", None) or default_source
    secret_name: str | None = None
    key_source: SourceLocation | None = None
    for step in path:
        if isinstance(current, dict) and _has_key(current, step):
            step_source = current.value_source(step) if isinstance(current, NodeDict) else None
            step_secret = current.secret_name(step) if isinstance(current, NodeDict) else None
            step_key_source = _key_source(current, step)
        elif (
            isinstance(current, list)
            and isinstance(step, int)
            and -len(current) <= step < len(current)
        ):
            step_source = current.item_source(step) if isinstance(current, NodeList) else None
            step_secret = current.secret_name(step) if isinstance(current, NodeList) else None
            step_key_source = None
        elif step == 0 and not isinstance(current, list):
            # A single value that a validator such as ensure_list wrapped into a list.
            continue
        else:
            return _Located(current, source, False, secret_name, key_source)
        current = current[step]
        secret_name = secret_name or step_secret
        key_source = step_key_source
        source = step_source or getattr(current, "source", None) or source
    return _Located(current, source, True, secret_name, key_source)


def _has_key(mapping: dict[Any, Any], key: Any) -> bool:
    try:
        return key in mapping
    except TypeError:
        return False


def _issue_for(
    error: vol.Invalid,
    schema: Any,
    data: Any,
    root_path: KeyPath,
    default_source: SourceLocation | None,
) -> ConfigIssue:
    path = list(error.path)
    message = error.error_message

    if message == "extra keys not allowed" and path:
        parent = _follow(data, path[:-1], default_source)
        key = path[-1]
        source = _key_source(parent.value, key) or parent.source
        known = sorted(_known_keys(schema, path[:-1]))
        return ConfigIssue.at(_unknown_key_message(key, known), source, (*root_path, *path[:-1]))

    if isinstance(error, vol.RequiredFieldInvalid) and path:
        parent = _follow(data, path[:-1], default_source)
        key = path[-1]
        text = f"required key {str(key)!r} is missing"
        if message != "required key not provided":
            text = f"{message} (required key {str(key)!r})"
        # The line of `mapping_name:` reads better than that of the mapping's first key.
        source = parent.key_source or parent.source
        return ConfigIssue.at(text, source, (*root_path, *path[:-1]))

    if path and error.error_type is None:
        # voluptuous marks errors about a mapping's values with an error_type; an error at a
        # mapping entry without one may have been raised while validating the key itself.
        parent = _follow(data, path[:-1], default_source)
        key = path[-1]
        if (
            parent.followed
            and isinstance(parent.value, dict)
            and _has_key(parent.value, key)
            and _schema_rejects_key(schema, path[:-1], key) is not False
        ):
            source = _key_source(parent.value, key) or parent.source
            return ConfigIssue.at(
                f"invalid key {str(key)!r}: {message}", source, (*root_path, *path[:-1])
            )

    target = _follow(data, path, default_source)
    text = _readable(message)
    if target.followed and "got " not in text:
        text += f", got {describe_value(target.value)}"
    if target.secret_name is not None:
        text = _without_value(text, target.value, target.secret_name)
    return ConfigIssue.at(text, target.source, (*root_path, *path))


def _key_source(mapping: Any, key: Any) -> SourceLocation | None:
    if isinstance(mapping, NodeDict) and mapping.key_source(key) is not None:
        return mapping.key_source(key)
    return getattr(key, "source", None)


def _unknown_key_message(key: Any, known: list[str]) -> str:
    message = f"unknown key {str(key)!r}" if isinstance(key, str) else f"unknown key {key!r}"
    if not known:
        return message
    by_lower_case = {name.lower(): name for name in known}
    close = difflib.get_close_matches(str(key).lower(), list(by_lower_case), n=1)
    if close:
        return f"{message}, did you mean {by_lower_case[close[0]]!r}?"
    return f"{message}; valid keys: {', '.join(known)}"


def _readable(message: str) -> str:
    if message.startswith("expected "):
        expected = message.removeprefix("expected ")
        return f"expected {_READABLE_TYPE_NAMES.get(expected, expected)}"
    return message


def _without_value(text: str, value: Any, secret_name: str) -> str:
    """Remove a secret's value from a message, however a validator quoted it."""
    hidden = f"{_HIDDEN_SECRET} (the value of secret {secret_name!r})"
    if isinstance(value, dict | list):
        return text
    for shown in (describe_value(value), repr(value), repr(str(value)), str(value)):
        if shown:
            text = text.replace(shown, hidden)
    return text


# -- what keys the schema knows at a path, for "did you mean" -------------------------------


def _schemas_at(schema: Any, path: list[Any]) -> list[Any]:
    nodes = [schema]
    for step in path:
        nodes = [child for node in nodes for child in _children(node, step)]
    return nodes


def _known_keys(schema: Any, path: list[Any]) -> set[str]:
    return {key for node in _schemas_at(schema, path) for key in _literal_keys(node)}


def _schema_rejects_key(schema: Any, path: list[Any], key: Any) -> bool | None:
    """Whether no key of the mapping schemas at `path` accepts `key`; None if unknowable."""
    mappings = [
        structure
        for node in _schemas_at(schema, path)
        for structure in _structures(node)
        if isinstance(structure, dict)
    ]
    if not mappings:
        return None
    for mapping in mappings:
        for schema_key in mapping:
            name = _key_name(schema_key)
            if isinstance(name, str | int):
                if name == key:
                    return False
                continue
            try:
                vol.Schema(name)(key)
            except vol.Invalid:
                continue
            return False
    return True


def _structures(schema: Any) -> Iterator[Any]:
    """The dict and list schemas inside Schema / All / Any / Maybe wrappers."""
    if isinstance(schema, vol.Schema):
        yield from _structures(schema.schema)
    elif isinstance(schema, ListOf):
        yield [schema.item_schema]
    elif isinstance(schema, dict | list):
        yield schema
    elif hasattr(schema, "validators"):
        for validator in schema.validators:
            yield from _structures(validator)


def _key_name(key: Any) -> Any:
    return key.schema if isinstance(key, vol.Marker) else key


def _children(schema: Any, step: Any) -> Iterator[Any]:
    for structure in _structures(schema):
        if isinstance(structure, list) and isinstance(step, int):
            yield from structure
        elif isinstance(structure, dict):
            matched = [value for key, value in structure.items() if _key_name(key) == step]
            if matched:
                yield from matched
            else:
                yield from (
                    value
                    for key, value in structure.items()
                    if not isinstance(_key_name(key), str | int)
                )


def _literal_keys(schema: Any) -> Iterator[str]:
    for structure in _structures(schema):
        if isinstance(structure, dict):
            for key in structure:
                if isinstance(_key_name(key), str):
                    yield _key_name(key)
