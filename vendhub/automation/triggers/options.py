"""Validators shared by the trigger platforms' schemas, and the per-platform schema wrapper."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import voluptuous as vol

from vendhub.automation.template import Template, template_validator
from vendhub.config import validators as cv

from .base import ForPeriod

_TEMPLATE_MARKERS = ("{{", "{%", "{#")


def looks_like_template(value: Any) -> bool:
    """Whether ``value`` is text with Jinja markup in it."""
    return isinstance(value, str) and any(marker in value for marker in _TEMPLATE_MARKERS)


def template(value: Any) -> Template:
    """A Jinja2 template (syntax checked now; bound to the hub when the trigger attaches)."""
    if isinstance(value, Template):
        return value
    return template_validator(value)


def text_list(value: Any) -> list[str]:
    """One text or a list of texts, as a list."""
    return [cv.string(item) for item in _non_empty_list(value)]


def entity_ids(value: Any) -> list[str]:
    """One entity id, a comma-separated line of them, or a list, as a list without repeats."""
    if isinstance(value, str) and "," in value:
        value = [part.strip() for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(cv.entity_id(item) for item in _non_empty_list(value)))


def _non_empty_list(value: Any) -> list[Any]:
    items = cv.ensure_list(value)
    if not items:
        raise vol.Invalid("expected at least one value, got an empty list")
    return items


def for_period(value: Any) -> ForPeriod:
    """How long a condition must hold: a time period, a template, or a mapping of templates."""
    if isinstance(value, ForPeriod):
        return value
    if isinstance(value, Template) or looks_like_template(value):
        return ForPeriod(template=template(value))
    if isinstance(value, Mapping) and any(
        isinstance(part, Template) or looks_like_template(part) for part in value.values()
    ):
        parts = {
            str(key): template(part)
            if isinstance(part, Template) or looks_like_template(part)
            else part
            for key, part in value.items()
        }
        return ForPeriod(parts=parts)
    duration = cv.time_period(value)
    if duration <= timedelta():
        raise vol.Invalid("a 'for' period must be longer than 0 seconds; leave 'for' out instead")
    return ForPeriod(duration=duration)


def trigger_variables(value: Any) -> dict[str, Any]:
    """Variables (values may be templates) rendered each time the trigger fires."""
    if not isinstance(value, Mapping):
        raise vol.Invalid(
            f"expected a mapping of variable names to values, got {cv.describe_value(value)}"
        )
    return {
        cv.string(key): template(item) if looks_like_template(item) else item
        for key, item in value.items()
    }


COMMON_OPTIONS: dict[Any, Any] = {
    vol.Required("platform"): str,
    vol.Optional("id"): cv.string,
    vol.Optional("enabled", default=True): cv.boolean,
    vol.Optional("variables"): trigger_variables,
}


class PlatformSchema:
    """The schema of one platform's options; unknown options are named with a suggestion.

    ``checks`` run on the validated mapping, for rules that span options (``above`` below
    ``below``, at least one of ``hours``/``minutes``/``seconds``, ...).
    """

    def __init__(
        self,
        platform: str,
        options: Mapping[Any, Any],
        *checks: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.platform = platform
        self.schema = vol.Schema({**COMMON_OPTIONS, **options})
        self.known_options = sorted(str(key) for key in self.schema.schema)
        self.checks = checks

    def __call__(self, config: Any) -> dict[str, Any]:
        errors = [
            vol.Invalid(self._unknown_option_message(key), path=[key])
            for key in config
            if str(key) not in self.known_options
        ]
        known_only = {key: value for key, value in config.items() if key in self.known_options}
        try:
            validated: dict[str, Any] = self.schema(known_only)
        except vol.MultipleInvalid as error:
            errors.extend(error.errors)
        except vol.Invalid as error:
            errors.append(error)
        if errors:
            raise vol.MultipleInvalid(errors)
        for check in self.checks:
            validated = check(validated)
        return validated

    def _unknown_option_message(self, key: Any) -> str:
        options = [option for option in self.known_options if option != "platform"]
        close = difflib.get_close_matches(str(key), options, n=1)
        if close:
            return f"not an option of a {self.platform} trigger, did you mean '{close[0]}'?"
        return f"not an option of a {self.platform} trigger; its options: {', '.join(options)}"
