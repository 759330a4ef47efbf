"""Jinja2 templates for automations: a sandbox with hub helpers, bounded rendering, tracking.

Each hub has one ``TemplateEnvironment`` (an ``ImmutableSandboxedEnvironment``) that caches
compiled templates by source. ``Template`` is what configuration holds; it renders through
the environment of the hub it is attached to. What templates see of the hub lives in
``template_helpers``; while a template renders, every entity (or domain, or the whole state
machine) it reads is noted there, so ``async_track_template_result`` (``template_tracking``)
can render it again only when one of those changes.

Rendering is bounded: a template that runs longer than ``MAX_RENDER_SECONDS`` or produces
more than ``MAX_OUTPUT_CHARS`` characters stops with a TemplateError. Every error names the
template and the line in it.

``async_`` names run in the event loop and never block; rendering is synchronous.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import jinja2
import voluptuous as vol
from jinja2 import nodes
from jinja2.runtime import Context as JinjaContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from vendhub.automation.template_helpers import (
    MAX_OUTPUT_CHARS,
    MAX_RENDER_SECONDS,
    _active_render,
    _AllStates,
    _check_deadline,
    _check_size,
    _HubHelpers,
    _is_number,
    _multiply,
    _parse_result,
    _refuse_large,
    _relative_time,
    _RenderLimitExceeded,
    _RenderScope,
    _round,
    _to_float,
    _to_int,
    hub_now,
    hub_time_zone,
    is_template_string,
    result_as_boolean,
)
from vendhub.config.validators import describe_value
from vendhub.core.errors import VendHubError

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

# Integers a template may compute with ``**`` stay below this many bits.
MAX_POWER_BITS: Final = 100_000
# A cache of compiled templates per environment, oldest dropped first.
MAX_CACHED_TEMPLATES: Final = 4096

_ENVIRONMENT_KEY: Final = "automation.template_environment"
_TEMPLATE_FILENAME: Final = "<template>"
_BOUNDED_ITERATION_FILTER: Final = "_vendhub_bounded_iteration"
_DEADLINE_CHECK_EVERY: Final = 64
# A width or precision of a million or more in a %-format or str.format spec.
_HUGE_FORMAT_WIDTH: Final = re.compile(r"[%:][^%:{}]*?\d{7,}")


class TemplateError(VendHubError):
    """A template that cannot be compiled or rendered.

    ``str()`` reads "template '<name>' line <n>: <message>" (without the line when unknown).
    """

    def __init__(
        self, message: str, template_name: str = "template", line: int | None = None
    ) -> None:
        self.message = message
        self.template_name = template_name
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" line {self.line}" if self.line is not None else ""
        return f"template '{self.template_name}'{where}: {self.message}"


class _OutputLimitExceeded(Exception):
    """The rendered text grew past the limit at ``line`` of the template."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


# ---- the sandbox ----------------------------------------------------------------------------


class _BoundedNamespace(Namespace):
    """``namespace()`` whose attributes cannot grow past the output limit."""

    def __setitem__(self, name: str, value: Any) -> None:
        _check_deadline()
        Namespace.__setitem__(self, name, _check_size(value))


@jinja2.pass_context
def _bounded_iteration(context: JinjaContext, iterable: Any) -> Any:
    """Every ``{% for %}`` iterates through here, so a long loop meets the deadline."""
    scope = _active_render.get()
    if scope is None or isinstance(iterable, jinja2.Undefined):
        return iterable
    return _iterate_with_deadline(iterable, scope)


def _iterate_with_deadline(iterable: Iterable[Any], scope: _RenderScope) -> Iterator[Any]:
    for count, item in enumerate(iterable):
        if count % _DEADLINE_CHECK_EVERY == 0:
            scope.check_deadline()
        yield item


def _bounded_filter(filter_function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so its result is checked against the limits (Jinja's pass-arg kept)."""

    @wraps(filter_function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        return _check_size(filter_function(*args, **kwargs))

    return bounded


def _refuse_amplifying_call(function: Any, args: tuple[Any, ...]) -> None:
    """Refuse str methods whose result would be far larger than their inputs."""
    # The sandbox hands out str.format wrapped; the wrapper keeps the method as __wrapped__.
    method = getattr(function, "__wrapped__", function)
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if not isinstance(owner, str):
        return
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        _refuse_large(args[0], f"str.{name}({args[0]})")
    elif name == "replace" and len(args) >= 2 and isinstance(args[1], str):
        count = owner.count(str(args[0])) if str(args[0]) else len(owner) + 1
        _refuse_large(len(owner) + count * len(args[1]), "str.replace()")
    elif name == "join" and args and hasattr(args[0], "__len__"):
        _refuse_large(len(owner) * len(args[0]), "str.join()")
    elif name == "expandtabs" and args and isinstance(args[0], int):
        _refuse_large(len(owner) + owner.count("\t") * args[0], "str.expandtabs()")
    elif name in ("format", "format_map") and _HUGE_FORMAT_WIDTH.search(owner):
        raise _RenderLimitExceeded("a format width of a million or more is refused")


def _is_huge_power(base: Any, exponent: Any) -> bool:
    if not (isinstance(base, int) and isinstance(exponent, int)) or abs(base) < 2:
        return False
    return base.bit_length() * exponent > MAX_POWER_BITS


def _filter_center(value: Any, width: int = 80) -> str:
    _refuse_large(width, f"center({width})")
    return str(value).center(width)


def _filter_indent(
    value: Any, width: int | str = 4, first: bool = False, blank: bool = False
) -> str:
    text = str(value)
    prefix_length = width if isinstance(width, int) else len(width)
    _refuse_large(len(text) + (text.count("\n") + 1) * prefix_length, "indent()")
    return jinja2.filters.do_indent(text, width, first, blank)


def _filter_replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    occurrences = text.count(old) if old else len(text) + 1
    _refuse_large(len(text) + occurrences * len(new), "replace()")
    return text.replace(old, new, -1 if count is None else count)


@jinja2.pass_eval_context
def _filter_join(eval_context: Any, value: Any, separator: str = "", attribute: Any = None) -> str:
    items = list(value)
    _refuse_large(len(separator) * len(items), "join()")
    return jinja2.filters.sync_do_join(eval_context, items, separator, attribute)


class TemplateEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox of one hub: helpers as globals and filters, limits, a compile cache."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, hub: Hub | None) -> None:
        super().__init__(undefined=jinja2.Undefined, autoescape=False)
        self.hub = hub
        self._compiled: dict[str, jinja2.Template] = {}
        helpers = _HubHelpers(hub)
        states = _AllStates(hub)
        functions: dict[str, Callable[..., Any]] = {
            "states": states,
            "state_attr": helpers.state_attr,
            "is_state": helpers.is_state,
            "is_state_attr": helpers.is_state_attr,
            "has_value": helpers.has_value,
            "now": helpers.now,
            "utcnow": helpers.utcnow,
            "as_timestamp": helpers.as_timestamp,
            "as_datetime": helpers.as_datetime,
            "timestamp_local": helpers.timestamp_local,
            "timestamp_utc": helpers.timestamp_utc,
            "relative_time": _relative_time,
            "timedelta": timedelta,
            "machine": helpers.machine,
            "stock": helpers.stock,
            "float": _to_float,
            "int": _to_int,
            "round": _round,
            "multiply": _multiply,
            "is_number": _is_number,
            "min": min,
            "max": max,
            "namespace": _BoundedNamespace,
        }
        self.globals.update(functions)
        filters: dict[str, Callable[..., Any]] = {
            "states": states,
            "state_attr": helpers.state_attr,
            "is_state": helpers.is_state,
            "is_state_attr": helpers.is_state_attr,
            "has_value": helpers.has_value,
            "as_timestamp": helpers.as_timestamp,
            "as_datetime": helpers.as_datetime,
            "timestamp_local": helpers.timestamp_local,
            "timestamp_utc": helpers.timestamp_utc,
            "relative_time": _relative_time,
            "float": _to_float,
            "int": _to_int,
            "round": _round,
            "multiply": _multiply,
            "is_number": _is_number,
            "center": _filter_center,
            "indent": _filter_indent,
            "replace": _filter_replace,
            "join": _filter_join,
        }
        self.filters.update(filters)
        self.filters = {name: _bounded_filter(function) for name, function in self.filters.items()}
        self.filters[_BOUNDED_ITERATION_FILTER] = _bounded_iteration
        self.tests.update({"has_value": helpers.has_value, "is_number": _is_number})

    # -- compile ---------------------------------------------------------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then route every for loop's iterable through the deadline check."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, _BOUNDED_ITERATION_FILTER, [], [], None, None, lineno=loop.lineno
            )
        return tree

    def compile_cached(self, source: str) -> jinja2.Template:
        """The compiled template for ``source`` (raises jinja2.TemplateSyntaxError)."""
        compiled = self._compiled.get(source)
        if compiled is None:
            compiled = self.from_string(source)
            if len(self._compiled) >= MAX_CACHED_TEMPLATES:
                del self._compiled[next(iter(self._compiled))]
            self._compiled[source] = compiled
        return compiled

    # -- sandbox hooks: every one checks the deadline ---------------------------------------

    def call(__self, __context: JinjaContext, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        _refuse_amplifying_call(__obj, args)
        result = ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)
        return _check_size(result)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _check_deadline()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _check_deadline()
        return super().getitem(obj, argument)

    def call_binop(self, context: JinjaContext, operator: str, left: Any, right: Any) -> Any:
        _check_deadline()
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int):
                    _refuse_large(len(sequence) * times, "repeating a sequence")
        elif operator == "**" and _is_huge_power(left, right):
            raise _RenderLimitExceeded(f"{left} ** {right} is larger than {MAX_POWER_BITS} bits")
        elif operator == "%" and isinstance(left, str) and _HUGE_FORMAT_WIDTH.search(left):
            raise _RenderLimitExceeded("a format width of a million or more is refused")
        return _check_size(super().call_binop(context, operator, left, right))

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        """Refuse unsafe attributes at once, instead of rendering them as nothing."""
        raise jinja2.sandbox.SecurityError(
            f"access to attribute {attribute!r} of a {type(obj).__name__!r} value is not "
            "allowed in templates"
        )


_environment_without_hub: TemplateEnvironment | None = None


def template_environment(hub: Hub | None) -> TemplateEnvironment:
    """The hub's template environment (made on first use); without a hub, one for validation."""
    global _environment_without_hub
    if hub is None:
        if _environment_without_hub is None:
            _environment_without_hub = TemplateEnvironment(None)
        return _environment_without_hub
    environment = hub.data.get(_ENVIRONMENT_KEY)
    if environment is None:
        environment = hub.data[_ENVIRONMENT_KEY] = TemplateEnvironment(hub)
    return environment


# ---- templates ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderInfo:
    """The result of one render and what it read."""

    result: Any
    entities: frozenset[str]
    domains: frozenset[str]
    all_states: bool
    error: TemplateError | None = None


class Template:
    """A template from configuration; renders in the environment of the hub it is attached to.

    ``name`` says where it came from (e.g. ``automation.fridge condition/0``) and appears in
    every error; it may be changed after construction.
    """

    def __init__(self, source: str, hub: Hub | None = None, *, name: str = "template") -> None:
        if not isinstance(source, str):
            raise TypeError(f"a template's source must be text, got {type(source).__name__}")
        self.source = source
        self.hub = hub
        self.name = name
        self.is_static: bool = not is_template_string(source)

    def __repr__(self) -> str:
        return f"Template<{self.name}: {self.source!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def attach(self, hub: Hub) -> Template:
        """Bind the template to ``hub`` (templates validated before the hub existed)."""
        self.hub = hub
        return self

    def _compiled(self) -> jinja2.Template:
        try:
            return template_environment(self.hub).compile_cached(self.source)
        except jinja2.TemplateSyntaxError as error:
            raise TemplateError(error.message or str(error), self.name, error.lineno) from None

    def ensure_valid(self) -> None:
        """Compile now; raise TemplateError (with the line) on a syntax error."""
        if not self.is_static:
            self._compiled()

    def async_render(
        self, variables: Mapping[str, Any] | None = None, *, parse_result: bool = True
    ) -> Any:
        """Render; with ``parse_result`` a literal result (number, bool, list, dict, None)
        comes back as that value, anything else as text. Raises TemplateError."""
        if self.is_static:
            return _parse_result(self.source.strip()) if parse_result else self.source
        text = self._render_text(variables, _RenderScope.starting_now(MAX_RENDER_SECONDS))
        return _parse_result(text) if parse_result else text

    def async_render_with_info(
        self, variables: Mapping[str, Any] | None = None, *, parse_result: bool = True
    ) -> RenderInfo:
        """Render and report the entities and domains read; an error is returned, not raised."""
        scope = _RenderScope.starting_now(MAX_RENDER_SECONDS)
        try:
            if self.is_static:
                text = self.source.strip() if parse_result else self.source
            else:
                text = self._render_text(variables, scope)
        except TemplateError as error:
            return RenderInfo(
                None, frozenset(scope.entities), frozenset(scope.domains), scope.all_states, error
            )
        result = _parse_result(text) if parse_result else text
        return RenderInfo(
            result, frozenset(scope.entities), frozenset(scope.domains), scope.all_states
        )

    def _render_text(self, variables: Mapping[str, Any] | None, scope: _RenderScope) -> str:
        compiled = self._compiled()
        token = _active_render.set(scope)
        chunks: Iterator[str] | None = None
        try:
            context = compiled.new_context(dict(variables) if variables else {})
            parts: list[str] = []
            size = 0
            chunks = compiled.root_render_func(context)
            for chunk in chunks:
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise _OutputLimitExceeded(
                        f"the output is larger than the limit of {MAX_OUTPUT_CHARS} characters",
                        _suspended_line(chunks, compiled),
                    )
                scope.check_deadline()
                parts.append(chunk)
        except _OutputLimitExceeded as error:
            raise TemplateError(str(error), self.name, error.line) from None
        except Exception as error:
            line = _template_line(error.__traceback__, compiled)
            if line is None:  # stopped between two chunks of output
                line = _suspended_line(chunks, compiled)
            raise TemplateError(_describe_error(error), self.name, line) from error
        finally:
            _active_render.reset(token)
        return "".join(parts).strip()


def _describe_error(error: Exception) -> str:
    if isinstance(error, _RenderLimitExceeded | jinja2.TemplateError):
        return str(error)
    if isinstance(error, RecursionError):
        return "too deep recursion"
    return f"{type(error).__name__}: {error}"


def _suspended_line(generator: Any, compiled: jinja2.Template) -> int | None:
    """The template line where the (innermost) render generator is paused."""
    line = None
    while generator is not None and getattr(generator, "gi_frame", None) is not None:
        line = compiled.get_corresponding_lineno(generator.gi_frame.f_lineno)
        generator = generator.gi_yieldfrom
    return line


def _template_line(traceback: TracebackType | None, compiled: jinja2.Template) -> int | None:
    """The template line of the innermost frame that ran template code."""
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = compiled.get_corresponding_lineno(traceback.tb_lineno)
        traceback = traceback.tb_next
    return line


def render_complex(
    value: Any, variables: Mapping[str, Any] | None = None, hub: Hub | None = None
) -> Any:
    """Render every template nested in ``value`` (dicts, lists, Template objects, strings
    with template markup); everything else is returned as it is."""
    if isinstance(value, Template):
        if value.hub is None and hub is not None:
            value.attach(hub)
        return value.async_render(variables)
    if isinstance(value, str):
        if not is_template_string(value):
            return value
        return Template(value, hub).async_render(variables)
    if isinstance(value, Mapping):
        return {
            render_complex(key, variables, hub): render_complex(item, variables, hub)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [render_complex(item, variables, hub) for item in value]
    return value


def template_validator(value: Any) -> Template:
    """Voluptuous validator: text with a template, compiled now so syntax errors show at once.

    The hub is attached later with ``Template.attach(hub)``.
    """
    if isinstance(value, Template):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise vol.Invalid(f"expected a template (text), got {describe_value(value)}")
    template = Template(str(value))
    try:
        template.ensure_valid()
    except TemplateError as error:
        where = f" on line {error.line}" if error.line is not None else ""
        raise vol.Invalid(f"invalid template{where}: {error.message}") from None
    return template


# Re-exported so ``vendhub.automation.template`` stays the one place to import from.
from vendhub.automation.template_tracking import (  # noqa: E402
    TemplateResultTracker,
    async_track_template_result,
)

__all__ = [
    "MAX_OUTPUT_CHARS",
    "MAX_RENDER_SECONDS",
    "RenderInfo",
    "Template",
    "TemplateEnvironment",
    "TemplateError",
    "TemplateResultTracker",
    "async_track_template_result",
    "hub_now",
    "hub_time_zone",
    "is_template_string",
    "render_complex",
    "result_as_boolean",
    "template_environment",
    "template_validator",
]
