"""The step runner behind ``Script``: one handler per action type, each traced at its path.

A ``ScriptRunner`` executes one run's sequence. Every step runs inside a trace step named by
its path (``action/0``, ``action/2/then/1``, ``action/3/repeat/sequence/0``) and records what
it did. A false ``condition`` ends only the sequence it is in; ``stop`` ends the whole run;
an exception becomes a ``StepFailed`` that carries the path of the step where it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.core.errors import VendHubError

from .conditions import async_condition_from_config
from .template import (
    Template,
    TemplateError,
    async_track_template_result,
    is_template_string,
    render_complex,
    result_as_boolean,
)
from .trace import (
    RunTrace,
    TraceStep,
    current_run,
    trace_set_result,
    trace_step,
    trace_variables_changed,
)
from .triggers import async_attach_triggers

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.hub import Hub

# The key that names each action type, in the order they are looked for.
ACTION_TYPES: tuple[str, ...] = (
    "service",
    "delay",
    "wait_template",
    "wait_for_trigger",
    "choose",
    "if",
    "repeat",
    "condition",
    "event",
    "notify",
    "stop",
    "variables",
    "parallel",
    "sequence",
)
# Keys every action may have, whatever its type.
COMMON_KEYS: tuple[str, ...] = ("alias", "enabled", "continue_on_error")
MAX_REPEAT_ITERATIONS = 10_000
# Past this many steps a run's trace keeps no more (a long repeat would fill memory).
MAX_TRACED_STEPS = 2_000
TRUNCATED_PATH = "trace/truncated"

_MISSING = object()


class ScriptError(VendHubError):
    """A step could not run: a value rendered to something unusable, a repeat ran too long."""


class StopRun(Exception):
    """Raised by the ``stop`` action (and a wait that timed out) to end the whole run."""

    def __init__(self, reason: str, error: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class StepFailed(Exception):
    """A step raised ``error``; ``path`` is the innermost step that failed."""

    def __init__(self, path: str, error: BaseException) -> None:
        super().__init__(f"{path}: {describe_error(error)}")
        self.path = path
        self.error = error


def describe_error(error: BaseException) -> str:
    """``TypeName: message`` (or just the type name when the message is empty)."""
    if isinstance(error, StepFailed):
        return describe_error(error.error)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def is_template(value: Any) -> bool:
    """True for a Template or a string with ``{{``, ``{%`` or ``{#`` in it."""
    if isinstance(value, Template):
        return True
    return isinstance(value, str) and is_template_string(value)


def has_template(value: Any) -> bool:
    """True when a template is anywhere inside ``value`` (mappings and lists included)."""
    if isinstance(value, Mapping):
        return any(has_template(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_template(item) for item in value)
    return is_template(value)


def action_type(config: Mapping[str, Any]) -> str | None:
    """The type of a validated action: the first of ``ACTION_TYPES`` among its keys."""
    for kind in ACTION_TYPES:
        if kind in config:
            return kind
    return None


async def _resolve(value: Any) -> Any:
    """Await ``value`` if it is awaitable (the template and condition APIs may be either)."""
    if inspect.isawaitable(value):
        return await value
    return value


class StepCache:
    """Templates and condition checkers of one script, built once and shared by its runs."""

    def __init__(self, hub: Hub, name: str) -> None:
        self.hub = hub
        self.name = name
        self._templates: dict[str, Template] = {}
        self._complex: dict[str, Any] = {}
        self._conditions: dict[str, Any] = {}

    def template(self, key: str, source: Any) -> Template:
        """The Template for ``source`` at ``key`` (e.g. ``action/1/wait_template``), named
        after the script and the key so that its errors say where it is."""
        template = self._templates.get(key)
        if template is None:
            text = source.source if isinstance(source, Template) else str(source)
            template = Template(text, self.hub, name=f"{self.name} {key}")
            self._templates[key] = template
        return template

    def complex(self, key: str, value: Any) -> Any:
        """``value`` (mappings, lists) with its template strings as named Templates."""
        if key not in self._complex:
            self._complex[key] = self._bind(value, key)
        return self._complex[key]

    def _bind(self, value: Any, where: str) -> Any:
        if is_template(value):
            return self.template(where, value)
        if isinstance(value, Mapping):
            return {name: self._bind(item, f"{where}/{name}") for name, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._bind(item, f"{where}/{index}") for index, item in enumerate(value)]
        return value

    async def condition(self, key: str, config: Any) -> Any:
        """The ConditionChecker for ``config`` at ``key``."""
        checker = self._conditions.get(key)
        if checker is None:
            checker = await _resolve(async_condition_from_config(self.hub, config, path=key))
            self._conditions[key] = checker
        return checker


Handler = Callable[["ScriptRunner", Mapping[str, Any], str, dict[str, Any]], Awaitable[bool]]


class ScriptRunner:
    """Runs the steps of one script run with its context and variables."""

    def __init__(
        self,
        hub: Hub,
        name: str,
        context: Context,
        cache: StepCache,
        logger: logging.Logger,
    ) -> None:
        self.hub = hub
        self.name = name
        self.context = context
        self.cache = cache
        self.logger = logger
        self._truncated = False

    # -- sequences and steps ------------------------------------------------------------

    async def async_run_sequence(
        self, actions: list[Mapping[str, Any]], path: str, variables: dict[str, Any]
    ) -> None:
        """Run ``actions`` in order; a false ``condition`` ends this sequence quietly."""
        for index, config in enumerate(actions):
            if not await self._async_run_step(config, f"{path}/{index}", variables):
                return

    async def _async_run_step(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        kind = action_type(config)
        with self._step(path) as step:
            if config.get("alias"):
                trace_set_result(alias=config["alias"])
            if not config.get("enabled", True):
                trace_set_result(enabled=False)
                return True
            if kind is None:
                raise StepFailed(path, ScriptError(f"not an action: {dict(config)!r}"))
            try:
                return await _HANDLERS[kind](self, config, path, variables)
            except (StopRun, StepFailed) as error:
                if isinstance(error, StopRun) or not config.get("continue_on_error"):
                    raise
                failed = error
            except Exception as error:
                failed = StepFailed(path, error)
                if not config.get("continue_on_error"):
                    raise failed from error
            self.logger.warning(
                "Script '%s': step %s failed, continuing (continue_on_error): %s",
                self.name,
                failed.path,
                describe_error(failed),
            )
            if step is not None:
                step.error = self._step_error(failed, path)
            trace_set_result(continued_on_error=True)
            return True

    @staticmethod
    def _step_error(failed: StepFailed, path: str) -> str:
        if failed.path == path:
            return describe_error(failed)
        return f"failed at {failed.path}: {describe_error(failed)}"

    @contextlib.contextmanager
    def _step(self, path: str) -> Iterator[TraceStep | None]:
        """A trace step at ``path``; kept out of the trace once it has ``MAX_TRACED_STEPS``."""
        run = current_run()
        transient = run is not None and len(run.steps) >= MAX_TRACED_STEPS
        if transient:
            self._note_truncated(path)
        step: TraceStep | None = None
        try:
            with trace_step(path) as step:
                yield step
        except StopRun:
            if step is not None:  # a stop is not an error of the steps it passes through
                step.error = None
            raise
        except StepFailed as failed:
            if step is not None:
                step.error = self._step_error(failed, path)
            raise
        finally:
            if transient and run is not None and step is not None:
                if run.steps and run.steps[-1] is step:
                    run.steps.pop()
                else:
                    with contextlib.suppress(ValueError):
                        run.steps.remove(step)

    def _note_truncated(self, path: str) -> None:
        """Mark (once) where the trace stopped keeping steps."""
        if not self._truncated:
            self._truncated = True
            with trace_step(TRUNCATED_PATH):
                trace_set_result(after_steps=MAX_TRACED_STEPS, next_path=path)

    # -- rendering ----------------------------------------------------------------------

    async def _render(self, key: str, value: Any, variables: Mapping[str, Any]) -> Any:
        """Render one template (cached by ``key``) or return a plain value as it is."""
        if not is_template(value):
            return value
        return await _resolve(self.cache.template(key, value).async_render(variables))

    async def _render_complex(self, key: str, value: Any, variables: Mapping[str, Any]) -> Any:
        """Render the templates nested in a config value (mappings, lists) found at ``key``."""
        if not has_template(value):
            return value
        return await _resolve(render_complex(self.cache.complex(key, value), variables, self.hub))

    async def _render_mapping(
        self, key: str, value: Any, variables: Mapping[str, Any]
    ) -> dict[str, Any]:
        rendered = await self._render_complex(key, value or {}, variables)
        if not isinstance(rendered, Mapping):
            what = key.rsplit("/", 1)[-1]
            raise ScriptError(f"{what} must be a mapping, the template gave {rendered!r}")
        return dict(rendered)

    async def _seconds(self, key: str, value: Any, variables: Mapping[str, Any]) -> float:
        """A time period (seconds, '5s', '00:01:00', {minutes: 1}, or a template of one)."""
        if is_template(value):
            rendered = await self._render(key, value, variables)
        else:
            rendered = await self._render_complex(key, value, variables)
        try:
            return cv.time_period(rendered).total_seconds()
        except vol.Invalid as error:
            raise ScriptError(f"{key.rsplit('/', 1)[-1]}: {error.error_message}") from None

    async def _timeout(
        self, config: Mapping[str, Any], path: str, variables: Mapping[str, Any]
    ) -> float | None:
        if config.get("timeout") is None:
            return None
        return await self._seconds(f"{path}/timeout", config["timeout"], variables)

    # -- conditions and waits -------------------------------------------------------------

    async def _check(
        self, path: str, config: Any, variables: Mapping[str, Any], *, merge: bool = False
    ) -> bool:
        """Evaluate one condition; its checker traces itself (result and why) at ``path``.

        With ``merge`` the checker's step is folded into the step already open at ``path``
        (the ``condition`` action), so the trace has one step there, not two.
        """
        checker = await self.cache.condition(path, config)
        run = current_run()
        if run is None:
            return bool(await _resolve(checker(variables)))
        before = len(run.steps)
        try:
            return bool(await _resolve(checker(variables)))
        finally:
            self._settle_condition_steps(run, before, path if merge else None)

    def _settle_condition_steps(self, run: RunTrace, before: int, merge_path: str | None) -> None:
        """Merge or keep the steps a checker just recorded, within ``MAX_TRACED_STEPS``."""
        added = run.steps[before:]
        del run.steps[before:]
        if merge_path is not None:
            own = next((item for item in reversed(run.steps) if item.path == merge_path), None)
            if own is not None:
                for item in added:
                    if item.path == merge_path:
                        own.result.update(item.result)
                added = [item for item in added if item.path != merge_path]
        if not added:
            return
        if before >= MAX_TRACED_STEPS:
            self._note_truncated(added[0].path)
            return
        run.steps.extend(added)

    async def _conditions_met(
        self, configs: list[Any], path: str, variables: Mapping[str, Any]
    ) -> bool:
        """True when every condition holds; each is traced at ``path/<index>``."""
        for index, config in enumerate(configs):
            if not await self._check(f"{path}/{index}", config, variables):
                return False
        return True

    @staticmethod
    async def _wait(future: asyncio.Future[Any], timeout: float | None) -> bool:
        """Wait for ``future``; False when ``timeout`` seconds passed first."""
        if timeout is None:
            await future
            return True
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        return True

    def _finish_wait(
        self,
        config: Mapping[str, Any],
        variables: dict[str, Any],
        wait: dict[str, Any],
        timeout: float | None,
    ) -> bool:
        variables["wait"] = wait
        trace_set_result(wait=wait)
        trace_variables_changed({"wait": wait})
        if not wait["completed"] and not config.get("continue_on_timeout", True):
            raise StopRun(f"the wait timed out after {timeout:g} s (continue_on_timeout: false)")
        return True

    # -- action handlers ----------------------------------------------------------------

    async def _service(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        name = str(await self._render(f"{path}/service", config["service"], variables))
        domain, dot, service = name.strip().partition(".")
        if not dot or not domain or not service:
            raise ScriptError(f"service name {name!r} is not of the form 'domain.service'")
        data = await self._render_mapping(f"{path}/data", config.get("data"), variables)
        data.update(await self._render_mapping(f"{path}/target", config.get("target"), variables))
        await self._call_service(domain, service, data, config.get("response_variable"), variables)
        return True

    async def _call_service(
        self,
        domain: str,
        service: str,
        data: dict[str, Any],
        response_variable: str | None,
        variables: dict[str, Any],
    ) -> None:
        trace_set_result(service=f"{domain}.{service}", data=data)
        response = await self.hub.services.async_call(
            domain, service, data, blocking=True, context=self.context
        )
        if response_variable:
            variables[response_variable] = response
            trace_set_result(response=response)
            trace_variables_changed({response_variable: response})

    async def _delay(self, config: Mapping[str, Any], path: str, variables: dict[str, Any]) -> bool:
        seconds = await self._seconds(f"{path}/delay", config["delay"], variables)
        trace_set_result(delay=seconds)
        await asyncio.sleep(seconds)
        trace_set_result(done=True)
        return True

    async def _wait_template(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        template = self.cache.template(f"{path}/wait_template", config["wait_template"])
        timeout = await self._timeout(config, path, variables)
        trace_set_result(wait_template=getattr(template, "source", str(config["wait_template"])))
        loop = asyncio.get_running_loop()
        started = loop.time()
        snapshot = dict(variables)
        if result_as_boolean(await _resolve(template.async_render(snapshot))):
            completed = True
        else:
            done: asyncio.Future[None] = loop.create_future()

            def changed(new: Any, old: Any) -> None:
                if result_as_boolean(new) and not done.done():
                    done.set_result(None)

            def failed(error: TemplateError) -> None:
                if not done.done():
                    done.set_exception(error)

            unsubscribe = async_track_template_result(
                self.hub, template, changed, snapshot, on_error=failed
            )
            try:
                completed = await self._wait(done, timeout)
            finally:
                unsubscribe()
        remaining = None if timeout is None else max(0.0, timeout - (loop.time() - started))
        wait = {"completed": completed, "remaining": remaining}
        return self._finish_wait(config, variables, wait, timeout)

    async def _wait_for_trigger(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        timeout = await self._timeout(config, path, variables)
        trace_set_result(timeout=timeout)
        loop = asyncio.get_running_loop()
        started = loop.time()
        fired: asyncio.Future[dict[str, Any]] = loop.create_future()

        def on_trigger(trigger: dict[str, Any], context: Context | None = None) -> None:
            if not fired.done():
                fired.set_result(trigger)

        unsubscribe = await _resolve(
            async_attach_triggers(
                self.hub,
                list(config["wait_for_trigger"]),
                on_trigger,
                name=f"{self.name} {path}",
                variables=dict(variables),
            )
        )
        try:
            completed = await self._wait(fired, timeout)
        finally:
            unsubscribe()
        remaining = None if timeout is None else max(0.0, timeout - (loop.time() - started))
        trigger = fired.result() if completed else None
        wait = {"completed": completed, "remaining": remaining, "trigger": trigger}
        return self._finish_wait(config, variables, wait, timeout)

    async def _choose(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        for index, option in enumerate(config["choose"]):
            option_path = f"{path}/choose/{index}"
            if await self._conditions_met(
                option["conditions"], f"{option_path}/conditions", variables
            ):
                trace_set_result(choice=index)
                await self.async_run_sequence(
                    option["sequence"], f"{option_path}/sequence", variables
                )
                return True
        if "default" in config:
            trace_set_result(choice="default")
            await self.async_run_sequence(config["default"], f"{path}/default", variables)
        else:
            trace_set_result(choice=None)
        return True

    async def _if(self, config: Mapping[str, Any], path: str, variables: dict[str, Any]) -> bool:
        met = await self._conditions_met(config["if"], f"{path}/if", variables)
        branch = "then" if met else ("else" if "else" in config else None)
        trace_set_result(result=met, choice=branch)
        if branch is not None:
            await self.async_run_sequence(config[branch], f"{path}/{branch}", variables)
        return True

    async def _repeat(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        repeat = config["repeat"]
        sequence_path = f"{path}/repeat/sequence"
        saved = variables.get("repeat", _MISSING)
        index = 0

        def begin(number: int, total: int | None = None, item: Any = _MISSING) -> None:
            info: dict[str, Any] = {"index": number, "first": number == 1}
            if total is not None:
                info["last"] = number == total
            if item is not _MISSING:
                info["item"] = item
            variables["repeat"] = info
            trace_variables_changed({"repeat": info})

        try:
            if "count" in repeat or "for_each" in repeat:
                items = await self._repeat_items(repeat, path, variables)
                for index, item in enumerate(items, 1):
                    begin(index, len(items), item)
                    await self.async_run_sequence(repeat["sequence"], sequence_path, variables)
                    await asyncio.sleep(0)  # a tight loop must not starve the event loop
            else:
                kind = "while" if "while" in repeat else "until"
                while True:
                    begin(index + 1)
                    if kind == "while" and not await self._conditions_met(
                        repeat["while"], f"{path}/repeat/while", variables
                    ):
                        break
                    if index >= MAX_REPEAT_ITERATIONS:
                        raise ScriptError(
                            f"repeat stopped after {MAX_REPEAT_ITERATIONS} iterations "
                            f"(the limit): its '{kind}' condition never ended it"
                        )
                    index += 1
                    await self.async_run_sequence(repeat["sequence"], sequence_path, variables)
                    if kind == "until" and await self._conditions_met(
                        repeat["until"], f"{path}/repeat/until", variables
                    ):
                        break
                    await asyncio.sleep(0)
        finally:
            trace_set_result(iterations=index)
            if saved is _MISSING:
                variables.pop("repeat", None)
            else:
                variables["repeat"] = saved
        return True

    async def _repeat_items(
        self, repeat: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> list[Any]:
        if "count" in repeat:
            value = await self._render(f"{path}/repeat/count", repeat["count"], variables)
            try:
                count = cv.non_negative_int(value)
            except vol.Invalid:
                raise ScriptError(
                    f"repeat count must be a whole number of 0 or more, got {value!r}"
                ) from None
            size = count
            items: list[Any] = [_MISSING] * min(count, MAX_REPEAT_ITERATIONS)
        else:
            key = f"{path}/repeat/for_each"
            value = repeat["for_each"]
            if is_template(value):
                value = await self._render(key, value, variables)
            else:
                value = await self._render_complex(key, value, variables)
            if not isinstance(value, list | tuple):
                raise ScriptError(f"repeat for_each must give a list, got {value!r}")
            items = list(value)
            size = len(items)
        if size > MAX_REPEAT_ITERATIONS:
            raise ScriptError(
                f"repeat of {size} iterations is over the limit of {MAX_REPEAT_ITERATIONS}"
            )
        return items

    async def _condition(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        condition = {key: value for key, value in config.items() if key not in COMMON_KEYS}
        if await self._check(path, condition, variables, merge=True):
            return True
        trace_set_result(stopped="the condition is false: the rest of this sequence was skipped")
        return False

    async def _event(self, config: Mapping[str, Any], path: str, variables: dict[str, Any]) -> bool:
        event_type = str(await self._render(f"{path}/event", config["event"], variables))
        data = await self._render_mapping(f"{path}/event_data", config.get("event_data"), variables)
        trace_set_result(event=event_type, event_data=data)
        self.hub.bus.async_fire(event_type, data, context=self.context)
        return True

    async def _notify(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        data = await self._render_mapping(f"{path}/notify", config["notify"], variables)
        await self._call_service("notify", "send", data, None, variables)
        return True

    async def _stop(self, config: Mapping[str, Any], path: str, variables: dict[str, Any]) -> bool:
        reason = str(await self._render(f"{path}/stop", config["stop"], variables))
        error = bool(config.get("error", False))
        trace_set_result(stop=reason, error=error)
        raise StopRun(reason, error)

    async def _variables(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        changed: dict[str, Any] = {}
        for name, value in config["variables"].items():
            rendered = await self._render_complex(f"{path}/variables/{name}", value, variables)
            variables[name] = changed[name] = rendered
        trace_variables_changed(changed)
        return True

    async def _parallel(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        tasks = [
            asyncio.create_task(
                self.async_run_sequence(
                    branch, f"{path}/parallel/{index}/sequence", dict(variables)
                ),
                name=f"script {self.name} {path}/parallel/{index}",
            )
            for index, branch in enumerate(config["parallel"])
        ]
        trace_set_result(branches=len(tasks))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            pending = [task for task in tasks if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        errors = [task.exception() for task in tasks if not task.cancelled()]
        first = next((error for error in errors if error is not None), None)
        if first is not None:
            raise first
        return True

    async def _sequence(
        self, config: Mapping[str, Any], path: str, variables: dict[str, Any]
    ) -> bool:
        await self.async_run_sequence(config["sequence"], f"{path}/sequence", variables)
        return True


_HANDLERS: dict[str, Handler] = {
    "service": ScriptRunner._service,
    "delay": ScriptRunner._delay,
    "wait_template": ScriptRunner._wait_template,
    "wait_for_trigger": ScriptRunner._wait_for_trigger,
    "choose": ScriptRunner._choose,
    "if": ScriptRunner._if,
    "repeat": ScriptRunner._repeat,
    "condition": ScriptRunner._condition,
    "event": ScriptRunner._event,
    "notify": ScriptRunner._notify,
    "stop": ScriptRunner._stop,
    "variables": ScriptRunner._variables,
    "parallel": ScriptRunner._parallel,
    "sequence": ScriptRunner._sequence,
}
