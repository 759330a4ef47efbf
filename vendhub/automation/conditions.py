"""Conditions: what must hold before an automation acts, each recording its result and why.

``CONDITION_SCHEMA`` validates one condition from YAML (``state``, ``numeric_state``,
``template`` or a bare template string, ``time``, ``and``/``or``/``not`` (also written
``and: [...]``), ``trigger``). ``async_condition_from_config`` turns it into a
``ConditionChecker``: called with the run's variables it returns True or False and records
into the current trace the result and the reason ("sensor.x is 9.1, not below 8").

A condition that cannot be evaluated (a missing entity, a state that is not a number) is
False, with the reason traced; a template that fails to render raises its TemplateError
after the failure is traced, so the run ends as an error that names the template's line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import time, timedelta
from typing import TYPE_CHECKING, Any, Final

import voluptuous as vol

from vendhub.automation.template import (
    Template,
    TemplateError,
    hub_now,
    is_template_string,
    result_as_boolean,
    template_validator,
)
from vendhub.automation.trace import trace_condition
from vendhub.config.validators import (
    boolean,
    describe_value,
    ensure_list,
    entity_id,
    list_of,
    one_of,
    string,
    time_period,
)
from vendhub.core.errors import VendHubError
from vendhub.core.states import State, valid_entity_id

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

CONDITION_TYPES: Final = (
    "state",
    "numeric_state",
    "template",
    "time",
    "and",
    "or",
    "not",
    "trigger",
)
LOGICAL_CONDITION_TYPES: Final = ("and", "or", "not")
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# What one condition type computes: (result, why) for the run's variables.
Evaluation = Callable[[Mapping[str, Any]], tuple[bool, str]]


class ConditionError(VendHubError):
    """A condition that cannot be evaluated; the checker treats it as False."""


# ---- validation -----------------------------------------------------------------------------


def _at_least_one(value: Any) -> list[Any]:
    items = ensure_list(value)
    if not items:
        raise vol.Invalid("expected at least one item, got an empty list")
    return items


_ENTITY_IDS = vol.All(_at_least_one, list_of(entity_id))

_COMMON_KEYS: dict[Any, Any] = {
    vol.Optional("alias"): string,
    vol.Optional("enabled", default=True): boolean,
}

_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_MINUTES_PER_DAY = 24 * 60


def time_of_day(value: Any) -> time:
    """'HH:MM' or 'HH:MM:SS'. Also the number YAML makes of an unquoted 22:00 (sexagesimal)."""
    expected = "a time of day such as '22:00' or '06:30:00'"
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        # YAML 1.1 reads unquoted 22:00 as 22*60+0 and 22:00:30 as 22*3600+0*60+30; numbers
        # between the two ranges (e.g. 25:00) cannot be told apart, so they are refused.
        if value < _MINUTES_PER_DAY:
            return time(value // 60, value % 60)
        if 3600 <= value < 24 * 3600:
            return time(value // 3600, value // 60 % 60, value % 60)
        raise vol.Invalid(
            f"expected {expected}, got the number {value}: YAML reads an unquoted time such "
            "as 22:00 as a number; put the time in quotes ('22:00')"
        )
    if isinstance(value, str):
        match = _TIME_OF_DAY.fullmatch(value.strip())
        if match:
            hours, minutes, seconds = (int(part or 0) for part in match.groups())
            if hours < 24 and minutes < 60 and seconds < 60:
                return time(hours, minutes, seconds)
    raise vol.Invalid(f"expected {expected}, got {describe_value(value)}")


def number_or_entity_id(value: Any) -> float | str:
    """A number, or the id of an entity whose state is the number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            if valid_entity_id(value.strip()):
                return value.strip()
    raise vol.Invalid(
        "expected a number or an entity id such as 'sensor.lobby_1_temperature', "
        f"got {describe_value(value)}"
    )


def _state_values(value: Any) -> list[Any]:
    """One or more wanted values; the state is text, an attribute may be any plain value."""
    items = _at_least_one(value)
    for index, item in enumerate(items):
        if item is None or isinstance(item, dict | list):
            raise vol.Invalid(
                f"expected a state value (text or a number), got {describe_value(item)}",
                path=[index],
            )
    return items


_STATE_SCHEMA = vol.Schema(
    {
        vol.Required("condition"): "state",
        vol.Required("entity_id"): _ENTITY_IDS,
        vol.Required("state"): _state_values,
        vol.Optional("attribute"): string,
        vol.Optional("for"): time_period,
        vol.Optional("match", default="all"): one_of("all", "any"),
        **_COMMON_KEYS,
    }
)


def _validate_state_condition(value: Any) -> dict[str, Any]:
    config: dict[str, Any] = _STATE_SCHEMA(value)
    if "attribute" in config:
        return config
    for index, wanted in enumerate(config["state"]):
        if isinstance(wanted, bool):
            raise vol.Invalid(
                f"expected a state as text, got {describe_value(wanted)}: YAML reads unquoted "
                "on/off/yes/no/true/false as a boolean; put the state in quotes ('on')",
                path=["state", index],
            )
    config["state"] = [str(wanted) for wanted in config["state"]]
    return config


_NUMERIC_STATE_SCHEMA = vol.Schema(
    {
        vol.Required("condition"): "numeric_state",
        vol.Required("entity_id"): _ENTITY_IDS,
        vol.Optional("above"): number_or_entity_id,
        vol.Optional("below"): number_or_entity_id,
        vol.Optional("attribute"): string,
        vol.Optional("value_template"): template_validator,
        **_COMMON_KEYS,
    }
)


def _validate_numeric_state_condition(value: Any) -> dict[str, Any]:
    config: dict[str, Any] = _NUMERIC_STATE_SCHEMA(value)
    above, below = config.get("above"), config.get("below")
    if above is None and below is None:
        raise vol.Invalid("a numeric_state condition needs 'above', 'below' or both; got neither")
    if isinstance(above, float) and isinstance(below, float) and above >= below:
        raise vol.Invalid(
            f"'above' ({above:g}) must be less than 'below' ({below:g}), "
            "or no value can ever match",
            path=["above"],
        )
    return config


_TEMPLATE_SCHEMA = vol.Schema(
    {
        vol.Required("condition"): "template",
        vol.Required("value_template"): template_validator,
        **_COMMON_KEYS,
    }
)

_TIME_SCHEMA = vol.Schema(
    {
        vol.Required("condition"): "time",
        vol.Optional("after"): time_of_day,
        vol.Optional("before"): time_of_day,
        vol.Optional("weekday"): vol.All(_at_least_one, list_of(one_of(*WEEKDAYS))),
        **_COMMON_KEYS,
    }
)


def _validate_time_condition(value: Any) -> dict[str, Any]:
    config: dict[str, Any] = _TIME_SCHEMA(value)
    if not {"after", "before", "weekday"} & config.keys():
        raise vol.Invalid("a time condition needs 'after', 'before' or 'weekday'; got none of them")
    return config


_TRIGGER_SCHEMA = vol.Schema(
    {
        vol.Required("condition"): "trigger",
        vol.Required("id"): vol.All(_at_least_one, list_of(string)),
        **_COMMON_KEYS,
    }
)


def validate_condition(value: Any) -> dict[str, Any]:
    """Validate one condition; a bare template string and ``and: [...]`` are expanded."""
    if isinstance(value, Template) or (isinstance(value, str) and is_template_string(value)):
        return {
            "condition": "template",
            "value_template": template_validator(value),
            "enabled": True,
        }
    if not isinstance(value, dict):
        raise vol.Invalid(
            "expected a condition (a mapping with 'condition:') or a template such as "
            f"\"{{{{ is_state('binary_sensor.door', 'off') }}}}\", got {describe_value(value)}"
        )
    if "condition" not in value:
        for kind in LOGICAL_CONDITION_TYPES:
            if kind in value:
                config = _with_known_keys(_LOGICAL_SHORTHAND_SCHEMAS[kind], kind, value)
                config["conditions"] = config.pop(kind)
                config["condition"] = kind
                return config
        raise vol.RequiredFieldInvalid(
            f"a condition needs 'condition:', one of {', '.join(CONDITION_TYPES)}",
            path=["condition"],
        )
    try:
        kind = one_of(*CONDITION_TYPES)(value["condition"])
    except vol.Invalid as error:
        raise vol.Invalid(
            error.error_message, path=["condition"], error_type="invalid condition type"
        ) from None
    return _with_known_keys(_VALIDATORS[kind], kind, {**value, "condition": kind})


def _with_known_keys(
    validator: Callable[[Any], dict[str, Any]], kind: str, value: dict[str, Any]
) -> dict[str, Any]:
    """Run ``validator``; an unknown key of the condition is named with the keys it may have."""
    try:
        return validator(value)
    except vol.Invalid as error:
        errors = error.errors if isinstance(error, vol.MultipleInvalid) else [error]
        raise vol.MultipleInvalid([_explain_unknown_key(item, kind) for item in errors]) from None


def _explain_unknown_key(error: vol.Invalid, kind: str) -> vol.Invalid:
    if error.error_message != "extra keys not allowed" or len(error.path) != 1:
        return error
    key = error.path[0]
    known = _KNOWN_KEYS[kind]
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f", did you mean {close[0]!r}?" if close else f"; its keys are {', '.join(known)}"
    return vol.Invalid(f"not a key of a {kind} condition{hint}", path=[key])


CONDITION_SCHEMA = vol.Schema(validate_condition)
CONDITIONS_SCHEMA = vol.All(ensure_list, list_of(validate_condition))

_LOGICAL_SCHEMAS = {
    kind: vol.Schema(
        {
            vol.Required("condition"): kind,
            vol.Required("conditions"): vol.All(_at_least_one, list_of(validate_condition)),
            **_COMMON_KEYS,
        }
    )
    for kind in LOGICAL_CONDITION_TYPES
}
_LOGICAL_SHORTHAND_SCHEMAS = {
    kind: vol.Schema(
        {
            vol.Required(kind): vol.All(_at_least_one, list_of(validate_condition)),
            **_COMMON_KEYS,
        }
    )
    for kind in LOGICAL_CONDITION_TYPES
}
_KNOWN_KEYS: dict[str, list[str]] = {
    kind: sorted(str(getattr(key, "schema", key)) for key in schema.schema)
    for kind, schema in {
        "state": _STATE_SCHEMA,
        "numeric_state": _NUMERIC_STATE_SCHEMA,
        "template": _TEMPLATE_SCHEMA,
        "time": _TIME_SCHEMA,
        "trigger": _TRIGGER_SCHEMA,
        **_LOGICAL_SCHEMAS,
    }.items()
}
_VALIDATORS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "state": _validate_state_condition,
    "numeric_state": _validate_numeric_state_condition,
    "template": _TEMPLATE_SCHEMA,
    "time": _validate_time_condition,
    "trigger": _TRIGGER_SCHEMA,
    **_LOGICAL_SCHEMAS,
}


# ---- checkers -------------------------------------------------------------------------------


class ConditionChecker:
    """A built condition: ``checker(variables) -> bool``, recorded into the current trace."""

    def __init__(
        self,
        kind: str,
        path: str,
        evaluate: Evaluation,
        description: str,
        *,
        alias: str | None = None,
        enabled: bool = True,
    ) -> None:
        self.kind = kind
        self.path = path
        self.alias = alias
        self.enabled = enabled
        self._evaluate = evaluate
        self._description = description

    def __call__(self, variables: Mapping[str, Any] | None = None) -> bool:
        if not self.enabled:
            trace_condition(self.path, True, "disabled, so it passes")
            return True
        try:
            result, why = self._evaluate(variables or {})
        except ConditionError as error:
            result, why = False, str(error)
        except TemplateError as error:
            trace_condition(self.path, False, f"error: {error}")
            raise
        trace_condition(self.path, result, why)
        return result

    def describe(self) -> str:
        """What the condition checks, in words (its alias when it has one)."""
        return self.alias or self._description

    def __repr__(self) -> str:
        return f"<ConditionChecker {self.path}: {self.describe()}>"


async def async_condition_from_config(
    hub: Hub, config: Mapping[str, Any] | str, *, path: str = "condition"
) -> ConditionChecker:
    """Build the checker for one condition (validated here if it was not yet).

    ``path`` is where it sits (``condition/0``); it names the trace step and nested
    conditions are recorded below it (``condition/0/conditions/1``). The checker itself is
    a plain callable: ``checker(variables) -> bool``.
    """
    return build_condition(hub, config, path=path)


def build_condition(
    hub: Hub, config: Mapping[str, Any] | str, *, path: str = "condition"
) -> ConditionChecker:
    """``async_condition_from_config`` for code that cannot await (nested conditions)."""
    validated = validate_condition(config)
    kind: str = validated["condition"]
    evaluate, description = _BUILDERS[kind](hub, validated, path)
    return ConditionChecker(
        kind,
        path,
        evaluate,
        description,
        alias=validated.get("alias"),
        enabled=validated.get("enabled", True),
    )


def _quoted_choices(values: Sequence[Any]) -> str:
    shown = [repr(value) for value in values]
    return shown[0] if len(shown) == 1 else f"one of {', '.join(shown)}"


def _duration(period: timedelta) -> str:
    seconds = int(period.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes:
        parts.append(f"{minutes} min")
    if seconds or not parts:
        parts.append(f"{seconds} s")
    return " ".join(parts)


def _combine(results: list[tuple[bool, str]], match: str) -> tuple[bool, str]:
    passed = [ok for ok, _ in results]
    result = all(passed) if match == "all" else any(passed)
    return result, "; ".join(why for _, why in results)


def _existing_state(hub: Hub, entity: str) -> State:
    state = hub.states.get(entity)
    if state is None:
        raise ConditionError(f"{entity} does not exist")
    return state


# -- state


def _build_state(hub: Hub, config: dict[str, Any], path: str) -> tuple[Evaluation, str]:
    entities: list[str] = config["entity_id"]
    wanted: list[Any] = config["state"]
    attribute: str | None = config.get("attribute")
    period: timedelta | None = config.get("for")
    match: str = config["match"]

    def matches(value: Any) -> bool:
        if attribute is None:
            return value in wanted
        return any(value == item or str(value) == str(item) for item in wanted)

    def check_entity(entity: str) -> tuple[bool, str]:
        state = hub.states.get(entity)
        if state is None:
            return False, f"{entity} does not exist"
        label = entity if attribute is None else f"{entity} attribute {attribute}"
        if attribute is not None and attribute not in state.attributes:
            return False, f"{entity} has no attribute {attribute!r}"
        value = state.state if attribute is None else state.attributes[attribute]
        if not matches(value):
            return False, f"{label} is {value!r}, not {_quoted_choices(wanted)}"
        if period is None:
            return True, f"{label} is {value!r}"
        since = state.last_changed if attribute is None else state.last_updated
        held = hub_now(hub) - since
        if held < period:
            return False, (
                f"{label} is {value!r} for {_duration(held)}, less than {_duration(period)}"
            )
        return True, f"{label} is {value!r} for {_duration(held)}"

    def evaluate(variables: Mapping[str, Any]) -> tuple[bool, str]:
        return _combine([check_entity(entity) for entity in entities], match)

    subject = ", ".join(entities) if attribute is None else f"{', '.join(entities)} {attribute}"
    description = f"{subject} {'are' if len(entities) > 1 else 'is'} {_quoted_choices(wanted)}"
    if period is not None:
        description += f" for {_duration(period)}"
    if len(entities) > 1:
        description += f" (match {match})"
    return evaluate, description


# -- numeric_state


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _build_numeric_state(hub: Hub, config: dict[str, Any], path: str) -> tuple[Evaluation, str]:
    entities: list[str] = config["entity_id"]
    attribute: str | None = config.get("attribute")
    above: float | str | None = config.get("above")
    below: float | str | None = config.get("below")
    value_template: Template | None = config.get("value_template")
    if value_template is not None:
        value_template = Template(value_template.source, hub, name=f"{path}/value_template")

    def bound(limit: float | str) -> tuple[float, str]:
        if isinstance(limit, float):
            return limit, f"{limit:g}"
        number = _as_number(_existing_state(hub, limit).state)
        if number is None:
            raise ConditionError(
                f"{limit} (the limit) is {_existing_state(hub, limit).state!r}, not a number"
            )
        return number, f"{limit} ({number:g})"

    def value_of(entity: str, variables: Mapping[str, Any]) -> tuple[float, str]:
        state = _existing_state(hub, entity)
        label = entity if attribute is None else f"{entity} attribute {attribute}"
        if attribute is not None:
            if attribute not in state.attributes:
                raise ConditionError(f"{entity} has no attribute {attribute!r}")
            raw = state.attributes[attribute]
        else:
            raw = state.state
        if value_template is not None:
            raw = value_template.async_render({**variables, "state": state, "value": raw})
            label = f"{label} (by value_template)"
        number = _as_number(raw)
        if number is None:
            raise ConditionError(f"{label} is {raw!r}, not a number")
        return number, label

    def check_entity(entity: str, variables: Mapping[str, Any]) -> tuple[bool, str]:
        number, label = value_of(entity, variables)
        passed: list[str] = []
        if above is not None:
            limit, shown = bound(above)
            if not number > limit:
                return False, f"{label} is {number:g}, not above {shown}"
            passed.append(f"above {shown}")
        if below is not None:
            limit, shown = bound(below)
            if not number < limit:
                return False, f"{label} is {number:g}, not below {shown}"
            passed.append(f"below {shown}")
        return True, f"{label} is {number:g}, {' and '.join(passed)}"

    def evaluate(variables: Mapping[str, Any]) -> tuple[bool, str]:
        return _combine([check_entity(entity, variables) for entity in entities], "all")

    limits = [
        f"{word} {limit if isinstance(limit, str) else f'{limit:g}'}"
        for word, limit in (("above", above), ("below", below))
        if limit is not None
    ]
    subject = ", ".join(entities) if attribute is None else f"{', '.join(entities)} {attribute}"
    return evaluate, f"{subject} {' and '.join(limits)}"


# -- template


def _build_template(hub: Hub, config: dict[str, Any], path: str) -> tuple[Evaluation, str]:
    given: Template = config["value_template"]
    name = given.name if given.name != "template" else f"{path}/value_template"
    template = Template(given.source, hub, name=name)

    def evaluate(variables: Mapping[str, Any]) -> tuple[bool, str]:
        result = template.async_render(variables)
        return result_as_boolean(result), f"the template rendered {result!r}"

    return evaluate, f"template {template.source.strip()}"


# -- time


def _build_time(hub: Hub, config: dict[str, Any], path: str) -> tuple[Evaluation, str]:
    after: time | None = config.get("after")
    before: time | None = config.get("before")
    weekdays: list[str] | None = config.get("weekday")

    if after is not None and before is not None:
        window = f"between {after:%H:%M:%S} and {before:%H:%M:%S}"
    elif after is not None:
        window = f"after {after:%H:%M:%S}"
    elif before is not None:
        window = f"before {before:%H:%M:%S}"
    else:
        window = ""

    def in_window(moment: time) -> bool:
        if after is not None and before is not None:
            if after <= before:
                return after <= moment < before
            return moment >= after or moment < before  # the window crosses midnight
        if after is not None:
            return moment >= after
        if before is not None:
            return moment < before
        return True

    def evaluate(variables: Mapping[str, Any]) -> tuple[bool, str]:
        now = hub_now(hub)
        moment = now.time()
        reasons: list[str] = []
        result = True
        if window:
            inside = in_window(moment)
            result = inside
            reasons.append(f"{moment:%H:%M:%S} is {'' if inside else 'not '}{window}")
        if weekdays is not None:
            today = WEEKDAYS[now.weekday()]
            if today in weekdays:
                reasons.append(f"today is {today}")
            else:
                result = False
                reasons.append(f"today is {today}, not {', '.join(weekdays)}")
        return result, "; ".join(reasons)

    description = f"time {window}".rstrip()
    if weekdays is not None:
        description += f" on {', '.join(weekdays)}"
    return evaluate, description


# -- trigger


def _build_trigger(hub: Hub, config: dict[str, Any], path: str) -> tuple[Evaluation, str]:
    wanted: list[str] = config["id"]

    def evaluate(variables: Mapping[str, Any]) -> tuple[bool, str]:
        trigger = variables.get("trigger")
        trigger_id = trigger.get("id") if isinstance(trigger, Mapping) else None
        if trigger_id is None:
            return False, "the run has no trigger id"
        if str(trigger_id) in wanted:
            return True, f"the trigger id is {trigger_id!r}"
        return False, f"the trigger id is {trigger_id!r}, not {_quoted_choices(wanted)}"

    return evaluate, f"triggered by {_quoted_choices(wanted)}"


# -- and, or, not


def _build_logical(hub: Hub, config: dict[str, Any], path: str) -> tuple[Evaluation, str]:
    kind: str = config["condition"]
    children = [
        build_condition(hub, child, path=f"{path}/conditions/{index}")
        for index, child in enumerate(config["conditions"])
    ]
    count = len(children)

    def evaluate_and(variables: Mapping[str, Any]) -> tuple[bool, str]:
        for index, child in enumerate(children):
            if not child(variables):
                return False, f"condition {index} failed: {child.describe()}"
        return True, f"all {count} conditions passed"

    def evaluate_or(variables: Mapping[str, Any]) -> tuple[bool, str]:
        for index, child in enumerate(children):
            if child(variables):
                return True, f"condition {index} passed: {child.describe()}"
        return False, f"none of {count} conditions passed"

    def evaluate_not(variables: Mapping[str, Any]) -> tuple[bool, str]:
        for index, child in enumerate(children):
            if child(variables):
                return False, f"condition {index} passed, so 'not' fails: {child.describe()}"
        return True, f"none of {count} conditions passed"

    parts = ", ".join(f"({child.describe()})" for child in children)
    if kind == "and":
        return evaluate_and, f"all of {parts}"
    if kind == "or":
        return evaluate_or, f"any of {parts}"
    return evaluate_not, f"none of {parts}"


_BUILDERS: dict[str, Callable[[Hub, dict[str, Any], str], tuple[Evaluation, str]]] = {
    "state": _build_state,
    "numeric_state": _build_numeric_state,
    "template": _build_template,
    "time": _build_time,
    "trigger": _build_trigger,
    "and": _build_logical,
    "or": _build_logical,
    "not": _build_logical,
}


__all__ = [
    "CONDITIONS_SCHEMA",
    "CONDITION_SCHEMA",
    "CONDITION_TYPES",
    "ConditionChecker",
    "ConditionError",
    "async_condition_from_config",
    "build_condition",
    "number_or_entity_id",
    "time_of_day",
    "validate_condition",
]
