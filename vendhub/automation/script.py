"""Scripts: validated action sequences and the runs that execute them, with modes and traces.

``SEQUENCE_SCHEMA`` validates a list of actions (``ACTION_SCHEMA`` one action; the type is
the key that names it: ``service``/``action``, ``delay``, ``wait_template``, ...). A ``Script``
runs a validated sequence: each ``async_run`` is a task of its own with a child Context and a
``RunTrace``; ``mode`` decides what a run that starts while others are running does. The
per-action handlers live in ``actions.py``.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.config.validators import describe_value
from vendhub.core.context import Context
from vendhub.core.errors import HubNotRunning, VendHubError

from .actions import (
    ACTION_TYPES,
    COMMON_KEYS,
    MAX_REPEAT_ITERATIONS,
    ScriptError,
    ScriptRunner,
    StepCache,
    StepFailed,
    StopRun,
    describe_error,
    has_template,
    is_template,
)
from .conditions import CONDITION_SCHEMA
from .template import Template, template_validator
from .trace import RunTrace, trace_run
from .triggers import TRIGGER_SCHEMA

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

__all__ = [
    "ACTION_SCHEMA",
    "MAX_REPEAT_ITERATIONS",
    "MODES",
    "SEQUENCE_SCHEMA",
    "Script",
    "ScriptError",
    "ScriptRunResult",
]

_LOGGER = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("single", "restart", "queued", "parallel")
_SERVICE_NAME = r"^[a-z0-9_]+\.[a-z0-9_]+$"

# -- validators -------------------------------------------------------------------------------


def _template(value: Any) -> Any:
    """Text that may be a template; a template's syntax is checked now."""
    if isinstance(value, Template):
        return value
    text = cv.string(value)
    if is_template(text):
        template_validator(text)  # raises vol.Invalid naming the line of a syntax error
    return text


def _or_template(validator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``validator``, unless the value is a template (rendered when the step runs)."""

    def validate(value: Any) -> Any:
        return _template(value) if is_template(value) else validator(value)

    return validate


def _templated(value: Any) -> Any:
    """Any data (mappings, lists, scalars) whose template strings must be valid templates."""
    if isinstance(value, Mapping):
        return {key: _templated(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_templated(item) for item in value]
    return _template(value) if is_template(value) else value


def _data(value: Any) -> dict[str, Any]:
    """A mapping of data (service data, event data); templates allowed in its values."""
    if not isinstance(value, Mapping):
        raise vol.Invalid(f"expected a mapping (key: value lines), got {describe_value(value)}")
    return {str(key): _templated(item) for key, item in value.items()}


def _time_period(value: Any) -> Any:
    """A time period, a template of one, or a mapping such as {minutes: '{{ n }}'}."""
    if is_template(value):
        return _template(value)
    if isinstance(value, Mapping) and has_template(value):
        cv.time_period({key: 0 if is_template(item) else item for key, item in value.items()})
        return {key: _templated(item) for key, item in value.items()}
    return cv.time_period(value)


def _service_name(value: Any) -> Any:
    if is_template(value):
        return _template(value)
    text = cv.string(value)
    if _matches(text):
        return text
    guess = text.strip().lower().replace(" ", "_")
    hint = f", did you mean {guess!r}?" if _matches(guess) else ""
    raise vol.Invalid(
        f"expected a service name such as 'notify.send' (domain.service), got {text!r}{hint}"
    )


def _matches(text: str) -> bool:
    try:
        vol.Match(_SERVICE_NAME)(text)
    except vol.Invalid:
        return False
    return True


def _entity_ids(value: Any) -> Any:
    if is_template(value):
        return _template(value)
    if isinstance(value, list):
        return [_or_template(cv.entity_id)(item) for item in value]
    return cv.entity_id(value)


def _event_type(value: Any) -> Any:
    text = _template(value)
    if isinstance(text, str) and not text.strip():
        raise vol.Invalid("expected an event type such as 'vend_completed', got empty text")
    return text


def _variable_name(value: Any) -> str:
    text = cv.string(value)
    if not text.isidentifier():
        raise vol.Invalid(
            f"expected a variable name (letters, digits and _, not starting with a digit), "
            f"got {text!r}"
        )
    return text


def _variables(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise vol.Invalid(f"expected a mapping of variable: value, got {describe_value(value)}")
    return {_variable_name(key): _templated(item) for key, item in value.items()}


def _for_each(value: Any) -> Any:
    if is_template(value):
        return _template(value)
    if not isinstance(value, list):
        raise vol.Invalid(f"expected a list of items or a template, got {describe_value(value)}")
    return _templated(value)


class _Mapping:
    """A mapping schema whose unknown keys are reported with a "did you mean"."""

    def __init__(self, what: str, fields: dict[Any, Any]) -> None:
        self.what = what
        self.schema = vol.Schema(fields)
        self.keys = sorted(
            str(key.schema if isinstance(key, vol.Marker) else key) for key in fields
        )

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise vol.Invalid(f"expected {self.what} as a mapping, got {describe_value(value)}")
        try:
            return self.schema(dict(value))
        except vol.MultipleInvalid as error:
            raise vol.MultipleInvalid([self._explain(item) for item in error.errors]) from None

    def _explain(self, error: vol.Invalid) -> vol.Invalid:
        if error.error_message != "extra keys not allowed" or len(error.path) != 1:
            return error
        key = error.path[0]
        close = difflib.get_close_matches(str(key), self.keys, n=1)
        hint = f", did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(self.keys)}"
        return vol.Invalid(
            f"{self.what} got an unknown key {str(key)!r}{hint}",
            path=[key],
            error_type="unknown key",
        )


def _sequence(value: Any) -> list[dict[str, Any]]:
    return cv.list_of(_validate_action)(cv.ensure_list(value))  # type: ignore[no-any-return]


_CONDITIONS = vol.All(cv.ensure_list, cv.list_of(CONDITION_SCHEMA))
_TRIGGERS = vol.All(cv.ensure_list, cv.list_of(TRIGGER_SCHEMA))
_COMMON: dict[Any, Any] = {
    vol.Optional("alias"): cv.string,
    vol.Optional("enabled", default=True): cv.boolean,
    vol.Optional("continue_on_error", default=False): cv.boolean,
}
_COMMON_SCHEMA = vol.Schema(_COMMON)
_WAIT: dict[Any, Any] = {
    vol.Optional("timeout"): _time_period,
    vol.Optional("continue_on_timeout", default=True): cv.boolean,
}


def _action(kind: str, fields: dict[Any, Any]) -> _Mapping:
    return _Mapping(f"a '{kind}' action", {**_COMMON, **fields})


def _one_repeat_kind(config: dict[str, Any]) -> dict[str, Any]:
    kinds = [kind for kind in ("count", "while", "until", "for_each") if kind in config]
    if len(kinds) != 1:
        given = f"got {', '.join(repr(kind) for kind in kinds)}" if kinds else "got none"
        raise vol.Invalid(
            f"a repeat needs exactly one of 'count', 'while', 'until', 'for_each'; {given}"
        )
    return config


def _parallel(value: Any) -> list[list[dict[str, Any]]]:
    branches = cv.ensure_list(value)
    result: list[list[dict[str, Any]]] = []
    errors: list[vol.Invalid] = []
    for index, branch in enumerate(branches):
        try:
            result.append(
                _sequence(branch) if isinstance(branch, list) else [_validate_action(branch)]
            )
        except vol.Invalid as error:
            for item in error.errors if isinstance(error, vol.MultipleInvalid) else [error]:
                item.prepend([index])
                errors.append(item)
    if errors:
        raise vol.MultipleInvalid(errors)
    return result


_NOTIFY_FIELDS: dict[Any, Any] = {
    vol.Optional("title"): _template,
    vol.Optional("target"): vol.Any(_template, [_template]),
    vol.Optional("data"): _data,
}
_NOTIFY_MAPPING = _Mapping(
    "a 'notify' message",
    {
        vol.Required("message"): _template,
        **_NOTIFY_FIELDS,
        vol.Optional("severity"): _template,
        vol.Optional("dedupe_key"): _template,
        vol.Optional("escalate"): _data,
    },
)


def _notify_message(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return _NOTIFY_MAPPING(value)  # type: ignore[no-any-return]
    return {"message": _template(value)}


def _merge_notify(config: dict[str, Any]) -> dict[str, Any]:
    """``notify: text`` with ``title``/``target``/``data`` beside it → one message mapping."""
    message = dict(config["notify"])
    for key in ("title", "target", "data"):
        if key in config:
            if key in message:
                raise vol.Invalid(f"'{key}' is given twice, in the message and beside it", [key])
            message[key] = config.pop(key)
    config["notify"] = message
    return config


def _condition_action(config: dict[str, Any]) -> dict[str, Any]:
    common = {key: value for key, value in config.items() if key in COMMON_KEYS}
    condition = {key: value for key, value in config.items() if key not in COMMON_KEYS}
    if set(condition) == {"condition"} and is_template(condition["condition"]):
        condition = {"condition": "template", "value_template": condition["condition"]}
    validated = CONDITION_SCHEMA(condition)
    if not isinstance(validated, Mapping):
        raise vol.Invalid("expected a condition as a mapping such as 'condition: state'")
    return {**validated, **_COMMON_SCHEMA(common)}  # the action's enabled/alias win


_ACTION_SCHEMAS: dict[str, Callable[[Any], Any]] = {
    "service": _action(
        "service",
        {
            vol.Required("service"): _service_name,
            vol.Optional("data"): _data,
            vol.Optional("target"): _Mapping(
                "a 'target'",
                {
                    vol.Optional("entity_id"): _entity_ids,
                    vol.Optional("machine_id"): vol.Any(_template, [_template]),
                },
            ),
            vol.Optional("response_variable"): _variable_name,
        },
    ),
    "delay": _action("delay", {vol.Required("delay"): _time_period}),
    "wait_template": _action("wait_template", {vol.Required("wait_template"): _template, **_WAIT}),
    "wait_for_trigger": _action(
        "wait_for_trigger", {vol.Required("wait_for_trigger"): _TRIGGERS, **_WAIT}
    ),
    "choose": _action(
        "choose",
        {
            vol.Required("choose"): vol.All(
                cv.ensure_list,
                cv.list_of(
                    _Mapping(
                        "a 'choose' option",
                        {
                            vol.Optional("alias"): cv.string,
                            vol.Required("conditions"): _CONDITIONS,
                            vol.Required("sequence"): _sequence,
                        },
                    )
                ),
            ),
            vol.Optional("default"): _sequence,
        },
    ),
    "if": _action(
        "if",
        {
            vol.Required("if"): _CONDITIONS,
            vol.Required("then"): _sequence,
            vol.Optional("else"): _sequence,
        },
    ),
    "repeat": _action(
        "repeat",
        {
            vol.Required("repeat"): vol.All(
                _Mapping(
                    "a 'repeat'",
                    {
                        vol.Optional("count"): _or_template(cv.non_negative_int),
                        vol.Optional("while"): _CONDITIONS,
                        vol.Optional("until"): _CONDITIONS,
                        vol.Optional("for_each"): _for_each,
                        vol.Required("sequence"): _sequence,
                    },
                ),
                _one_repeat_kind,
            )
        },
    ),
    "condition": _condition_action,
    "event": _action(
        "event",
        {vol.Required("event"): _event_type, vol.Optional("event_data"): _data},
    ),
    "notify": vol.All(
        _action("notify", {vol.Required("notify"): _notify_message, **_NOTIFY_FIELDS}),
        _merge_notify,
    ),
    "stop": _action(
        "stop",
        {vol.Required("stop"): _template, vol.Optional("error", default=False): cv.boolean},
    ),
    "variables": _action("variables", {vol.Required("variables"): _variables}),
    "parallel": _action("parallel", {vol.Required("parallel"): _parallel}),
    "sequence": _action("sequence", {vol.Required("sequence"): _sequence}),
}
_TYPE_KEYS = (*ACTION_TYPES, "action")


class _ValidatedAction(dict[str, Any]):
    """An action that passed ACTION_SCHEMA (validating it again returns it as it is)."""


def _validate_action(value: Any) -> dict[str, Any]:
    if isinstance(value, _ValidatedAction):
        return value
    if not isinstance(value, Mapping):
        raise vol.Invalid(
            "expected an action: a mapping such as 'service: notify.send' or 'delay: 5', "
            f"got {describe_value(value)}"
        )
    kinds = [key for key in value if key in _TYPE_KEYS]
    if not kinds:
        raise vol.Invalid(_unknown_action_message(value))
    if len(kinds) > 1:
        raise vol.Invalid(
            f"an action has exactly one type, got {' and '.join(repr(k) for k in kinds)}; "
            "write them as separate actions"
        )
    config = dict(value)
    if kinds[0] == "action":  # `action:` is the newer name of `service:`
        config["service"] = config.pop("action")
    kind = "service" if kinds[0] == "action" else kinds[0]
    return _ValidatedAction(_ACTION_SCHEMAS[kind](config))


def _unknown_action_message(value: Mapping[Any, Any]) -> str:
    listed = ", ".join(repr(kind) for kind in _TYPE_KEYS)
    keys = [str(key) for key in value if key not in COMMON_KEYS]
    message = f"expected an action with one of {listed} as its key, got "
    message += f"the keys {', '.join(repr(key) for key in keys)}" if keys else "no type key"
    for key in keys:
        close = difflib.get_close_matches(key.lower(), list(_TYPE_KEYS), n=1)
        if close:
            return f"{message}; did you mean {close[0]!r} instead of {key!r}?"
    return message


ACTION_SCHEMA = vol.Schema(_validate_action)
SEQUENCE_SCHEMA = vol.Schema(_sequence)

# -- running ----------------------------------------------------------------------------------


@dataclass
class ScriptRunResult:
    """How a run ended: ``outcome`` (ran, error, stopped, aborted), why, and its variables."""

    outcome: str
    trace: RunTrace
    context: Context
    variables: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    stop_reason: str | None = None


class Script:
    """A sequence of actions that runs on request, by ``mode``, each run traced."""

    def __init__(
        self,
        hub: Hub,
        sequence: list[dict[str, Any]],
        *,
        name: str,
        mode: str = "single",
        max_runs: int = 10,
        logger: logging.Logger | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown script mode {mode!r}; expected one of {', '.join(MODES)}")
        if max_runs < 1:
            raise ValueError(f"max_runs must be 1 or more, got {max_runs}")
        self.hub = hub
        self.name = name
        self.mode = mode
        self.max_runs = max_runs
        self.logger = logger or _LOGGER
        self.sequence: list[dict[str, Any]] = SEQUENCE_SCHEMA(sequence)
        self._cache = StepCache(hub, name)
        self._runs: list[asyncio.Task[ScriptRunResult]] = []
        self._abort_reasons: dict[asyncio.Task[ScriptRunResult], str] = {}
        self._queue = asyncio.Lock()  # FIFO: queued runs take their turn in arrival order

    @property
    def is_running(self) -> bool:
        """True while a run is in progress (or waiting in the queue)."""
        return bool(self._runs)

    @property
    def runs(self) -> int:
        """How many runs are in progress, queued ones included."""
        return len(self._runs)

    async def async_run(
        self,
        variables: Mapping[str, Any] | None = None,
        context: Context | None = None,
        *,
        trace: RunTrace | None = None,
        run_context: Context | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> ScriptRunResult | None:
        """Run the sequence and return how it ended; None when the mode dropped the run.

        The run gets a child of ``context`` for its service calls and events (or
        ``run_context`` itself when given). ``trace`` (e.g. opened by an automation with its
        trigger) is finished with the outcome. ``on_start`` is called once the run is admitted
        and counted in ``runs``, before its first step (never for a dropped run).
        """
        if not self._admit():
            return None
        if run_context is None:
            run_context = context.child() if context is not None else Context()
        if trace is None:
            trace = RunTrace(item_id=self.name, context_id=run_context.id)
            trace.variables = dict(variables or {})
        elif trace.context_id is None:
            trace.context_id = run_context.id
        try:
            task = self.hub.async_create_task(
                self._async_execute(dict(variables or {}), run_context, trace),
                name=f"script {self.name}",
            )
        except HubNotRunning as error:
            self.logger.warning("Script '%s' did not run: %s", self.name, error)
            trace.finish("aborted", str(error))
            return None
        self._runs.append(task)
        task.add_done_callback(self._forget)
        if on_start is not None:
            try:
                on_start()
            except Exception:
                self.logger.exception("Script '%s': on_start failed", self.name)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                # Cancelled (by a restart or a stop) before its first step: nothing ran.
                reason = self._abort_reasons.pop(task, "cancelled")
                trace.finish("aborted", reason)
                return ScriptRunResult("aborted", trace, run_context, {}, reason)
            self._abort_reasons.setdefault(task, "the caller was cancelled")
            task.cancel()
            raise

    def _forget(self, task: asyncio.Task[ScriptRunResult]) -> None:
        if task in self._runs:
            self._runs.remove(task)
        if not task.cancelled():
            self._abort_reasons.pop(task, None)

    def _admit(self) -> bool:
        running = len(self._runs)
        if not running or self.mode == "restart":
            return True
        if self.mode == "single":
            self.logger.warning(
                "Script '%s' is already running: the new run was dropped (mode single)",
                self.name,
            )
            return False
        if running >= self.max_runs:
            self.logger.warning(
                "Script '%s' already has %d runs: the new run was dropped (mode %s, max %d)",
                self.name,
                running,
                self.mode,
                self.max_runs,
            )
            return False
        return True

    async def async_stop(self) -> None:
        """Cancel every run (queued ones too) and wait until they have ended (``aborted``)."""
        me = asyncio.current_task()
        tasks = [task for task in self._runs if task is not me]
        self._cancel(tasks, "stopped (async_stop)")
        if tasks:
            await asyncio.wait(tasks)

    def _cancel(self, tasks: list[asyncio.Task[ScriptRunResult]], reason: str) -> None:
        for task in tasks:
            self._abort_reasons.setdefault(task, reason)
            task.cancel()

    async def _async_execute(
        self, variables: dict[str, Any], context: Context, trace: RunTrace
    ) -> ScriptRunResult:
        me = asyncio.current_task()
        runner = ScriptRunner(self.hub, self.name, context, self._cache, self.logger)
        outcome, error, reason = "ran", None, None
        with trace_run(trace):
            try:
                if self.mode == "restart":
                    # Only the runs that started before this one: a newer one cancels this.
                    others = self._runs[: self._runs.index(me)] if me in self._runs else []
                    if others:
                        self.logger.info(
                            "Script '%s' restarted: %d run(s) aborted", self.name, len(others)
                        )
                        self._cancel(others, "restarted by a new run (mode restart)")
                        await asyncio.wait(others)
                if self.mode == "queued":
                    async with self._queue:
                        await runner.async_run_sequence(self.sequence, "action", variables)
                else:
                    await runner.async_run_sequence(self.sequence, "action", variables)
            except StopRun as stop:
                outcome = "error" if stop.error else "stopped"
                reason = stop.reason
                error = stop.reason if stop.error else None
                if stop.error:
                    self.logger.error("Script '%s' stopped with an error: %s", self.name, reason)
            except StepFailed as failed:
                outcome, error = "error", describe_error(failed)
                self._log_failure(failed)
            except asyncio.CancelledError:
                outcome = "aborted"
                error = self._abort_reasons.get(me, "cancelled")  # type: ignore[arg-type]
            except Exception as unexpected:  # a bug outside any step; never leaves the run
                outcome, error = "error", describe_error(unexpected)
                self.logger.exception("Script '%s' failed", self.name)
            finally:
                if me in self._runs:
                    self._runs.remove(me)  # type: ignore[arg-type]
                self._abort_reasons.pop(me, None)  # type: ignore[arg-type]
        trace.finish(outcome, error)
        return ScriptRunResult(outcome, trace, context, variables, error, reason)

    def _log_failure(self, failed: StepFailed) -> None:
        expected = isinstance(failed.error, VendHubError | vol.Invalid)
        self.logger.error(
            "Script '%s' failed at step %s: %s",
            self.name,
            failed.path,
            describe_error(failed),
            exc_info=None if expected else failed.error,
        )
