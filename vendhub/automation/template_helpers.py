"""What templates see of the hub, and the bookkeeping of one render.

Helpers (``states``, ``state_attr``, ``is_state``, ``now``, ``machine``, ``stock``, number and
time filters) note every entity and domain they read in the current render's scope, which is
what lets a template be rendered again only when something it read changed, and they check
the render's deadline.
"""

from __future__ import annotations

import ast
import logging
import math
import re
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from vendhub.config.validators import describe_value
from vendhub.core.states import State
from vendhub.util.dt import UTC, hub_time_zone, utcnow

if TYPE_CHECKING:
    from vendhub.core.hub import Hub


_LOGGER = logging.getLogger(__name__)

MAX_RENDER_SECONDS: Final = 1.0
MAX_OUTPUT_CHARS: Final = 256 * 1024

_TEMPLATE_MARKERS: Final = re.compile(r"{{|{%|{#")
_NUMBER_TEXT: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_NO_STATE_VALUES: Final = frozenset({"unknown", "unavailable"})
_MISSING: Any = object()


class _RenderLimitExceeded(Exception):
    """Raised inside a render that ran too long or grew too large (becomes a TemplateError)."""


# ---- the state of one render --------------------------------------------------------------


@dataclass
class _RenderScope:
    """What one render may spend and what it read."""

    deadline: float
    limit_seconds: float = MAX_RENDER_SECONDS
    entities: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    all_states: bool = False

    @classmethod
    def starting_now(cls, limit_seconds: float) -> _RenderScope:
        """A scope for a render that may take ``limit_seconds`` from now."""
        return cls(time.perf_counter() + limit_seconds, limit_seconds)

    def check_deadline(self) -> None:
        if time.perf_counter() > self.deadline:
            raise _RenderLimitExceeded(
                f"rendering took longer than {self.limit_seconds:g} s and was stopped"
            )


_active_render: ContextVar[_RenderScope | None] = ContextVar(
    "vendhub_template_render", default=None
)


def _check_deadline() -> None:
    scope = _active_render.get()
    if scope is not None:
        scope.check_deadline()


def _note_entity(entity_id: str) -> None:
    scope = _active_render.get()
    if scope is not None:
        scope.entities.add(entity_id)


def _note_domain(domain: str) -> None:
    scope = _active_render.get()
    if scope is not None:
        scope.domains.add(domain)


def _note_all_states() -> None:
    scope = _active_render.get()
    if scope is not None:
        scope.all_states = True


def _check_size(value: Any) -> Any:
    """Refuse a string or collection larger than the output limit; return ``value``."""
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset) and (
        len(value) > MAX_OUTPUT_CHARS
    ):
        raise _RenderLimitExceeded(
            f"a value of {len(value)} items is larger than the limit of {MAX_OUTPUT_CHARS}"
        )
    return value


def _refuse_large(expected_size: float, what: str) -> None:
    if expected_size > MAX_OUTPUT_CHARS:
        raise _RenderLimitExceeded(
            f"{what} would make {expected_size:.0f} characters, more than the limit of "
            f"{MAX_OUTPUT_CHARS}"
        )


# ---- time -----------------------------------------------------------------------------------


def hub_now(hub: Hub | None) -> datetime:
    """The current time in the hub's time zone.

    Templates' ``now()`` and the time condition read the clock here; tests control it by
    replacing ``vendhub.automation.template.utcnow``.
    """
    return utcnow().astimezone(hub_time_zone(hub))


# ---- values ---------------------------------------------------------------------------------


def _parse_result(text: str) -> Any:
    """A Python literal (number, bool, list, dict, None) as that value, anything else as text."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if value is None or isinstance(value, bool | list | dict):
        return value
    if isinstance(value, int | float):
        # "007", "1_000" and "+5" stay text: they do not read back the way they were written.
        return value if _NUMBER_TEXT.fullmatch(text) else text
    return text


def result_as_boolean(value: Any) -> bool:
    """A rendered result as a truth value: true/yes/on/enable and non-zero numbers are true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "on", "enable"):
            return True
        try:
            return float(text) != 0
        except ValueError:
            return False
    return False


def is_template_string(value: str) -> bool:
    """Whether ``value`` contains template markup ({{, {% or {#)."""
    return _TEMPLATE_MARKERS.search(value) is not None


def _invalid_input(helper: str, value: Any) -> ValueError:
    return ValueError(
        f"{helper}() got {describe_value(value)}, which it cannot convert; "
        f"give a default, e.g. {helper}(value, 0)"
    )


def _to_float(value: Any, default: Any = _MISSING) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        if default is _MISSING:
            raise _invalid_input("float", value) from None
        return default


def _to_int(value: Any, default: Any = _MISSING, base: int = 10) -> Any:
    try:
        if isinstance(value, str) and base != 10:
            return int(value, base)
        return int(float(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        if default is _MISSING:
            raise _invalid_input("int", value) from None
        return default


def _round(value: Any, precision: int = 0, method: str = "common", default: Any = _MISSING) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        if default is _MISSING:
            raise _invalid_input("round", value) from None
        return default
    if method == "ceil":
        factor = 10**precision
        rounded = math.ceil(number * factor) / factor
    elif method == "floor":
        factor = 10**precision
        rounded = math.floor(number * factor) / factor
    elif method == "common":
        rounded = round(number, precision)
    else:
        raise ValueError(f"round() method must be 'common', 'ceil' or 'floor', got {method!r}")
    return int(rounded) if precision == 0 else rounded


def _multiply(value: Any, factor: Any, default: Any = _MISSING) -> Any:
    try:
        return float(value) * float(factor)
    except (TypeError, ValueError):
        if default is _MISSING:
            raise _invalid_input("multiply", value) from None
        return default


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _relative_time(value: Any) -> Any:
    """How long ago ``value`` was, in its largest unit ("5 minutes"); other values as given."""
    if not isinstance(value, datetime):
        return value
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    seconds = (utcnow() - moment).total_seconds()
    if seconds < 0:
        return value
    for unit, size in (
        ("year", 365 * 86400),
        ("month", 30 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    count = int(seconds)
    return f"{count} second{'s' if count != 1 else ''}"


# ---- what templates see of the hub ------------------------------------------------------------


def _is_helper_protocol_name(name: str) -> bool:
    """Names Jinja and Python probe objects for, which are never a domain or object id."""
    return name.startswith("_") or name.startswith("jinja_")


class _DomainStates:
    """``states.<domain>``: ``.object_id`` gives a State (or None); iterating reads the domain."""

    __slots__ = ("_domain", "_hub")
    # The sandbox asks every callable and value these; answer them without a state lookup.
    unsafe_callable = False
    alters_data = False

    def __init__(self, hub: Hub | None, domain: str) -> None:
        self._hub = hub
        self._domain = domain

    def __getattr__(self, object_id: str) -> State | None:
        if _is_helper_protocol_name(object_id):
            raise AttributeError(object_id)
        entity_id = f"{self._domain}.{object_id}"
        _note_entity(entity_id)
        return self._hub.states.get(entity_id) if self._hub is not None else None

    __getitem__ = __getattr__

    def __iter__(self) -> Iterator[State]:
        _note_domain(self._domain)
        if self._hub is None:
            return iter(())
        found = self._hub.states.async_all(self._domain)
        return iter(sorted(found, key=lambda state: state.entity_id))

    def __len__(self) -> int:
        _note_domain(self._domain)
        return len(self._hub.states.async_entity_ids(self._domain)) if self._hub else 0

    def __repr__(self) -> str:
        return f"<states of domain {self._domain}>"


class _AllStates:
    """``states``: call it with an entity id for its state, or reach ``states.<domain>``."""

    __slots__ = ("_hub",)
    unsafe_callable = False
    alters_data = False

    def __init__(self, hub: Hub | None) -> None:
        self._hub = hub

    def __call__(self, entity_id: str) -> str:
        entity_id = str(entity_id)
        _note_entity(entity_id)
        state = self._hub.states.get(entity_id) if self._hub is not None else None
        return state.state if state is not None else "unknown"

    def __getattr__(self, domain: str) -> _DomainStates:
        if _is_helper_protocol_name(domain):
            raise AttributeError(domain)
        return _DomainStates(self._hub, domain)

    __getitem__ = __getattr__

    def __iter__(self) -> Iterator[State]:
        _note_all_states()
        if self._hub is None:
            return iter(())
        return iter(sorted(self._hub.states.async_all(), key=lambda state: state.entity_id))

    def __len__(self) -> int:
        _note_all_states()
        return len(self._hub.states) if self._hub is not None else 0

    def __repr__(self) -> str:
        return "<all states>"


class _HubHelpers:
    """The functions templates call; each notes the entities it reads."""

    def __init__(self, hub: Hub | None) -> None:
        self._hub = hub

    def _state(self, entity_id: Any) -> State | None:
        entity_id = str(entity_id)
        _note_entity(entity_id)
        return self._hub.states.get(entity_id) if self._hub is not None else None

    def state_attr(self, entity_id: Any, name: Any) -> Any:
        state = self._state(entity_id)
        return state.attributes.get(name) if state is not None else None

    def is_state(self, entity_id: Any, value: Any) -> bool:
        state = self._state(entity_id)
        if state is None:
            return False
        if isinstance(value, list | tuple | set | frozenset):
            return state.state in {str(item) for item in value}
        return state.state == str(value)

    def is_state_attr(self, entity_id: Any, name: Any, value: Any) -> bool:
        state = self._state(entity_id)
        return state is not None and name in state.attributes and state.attributes[name] == value

    def has_value(self, entity_id: Any) -> bool:
        state = self._state(entity_id)
        return state is not None and state.state not in _NO_STATE_VALUES

    def now(self) -> datetime:
        return hub_now(self._hub)

    def utcnow(self) -> datetime:
        return utcnow()

    def _aware(self, moment: datetime) -> datetime:
        """A naive moment is read in the hub's time zone."""
        if moment.tzinfo is None:
            return moment.replace(tzinfo=hub_time_zone(self._hub))
        return moment

    def as_datetime(self, value: Any, default: Any = _MISSING) -> Any:
        if isinstance(value, datetime):
            return self._aware(value)
        try:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return datetime.fromtimestamp(value, UTC)
            text = str(value).strip()
            if _NUMBER_TEXT.fullmatch(text):
                return datetime.fromtimestamp(float(text), UTC)
            return self._aware(datetime.fromisoformat(text))
        except (ValueError, OverflowError, OSError):
            if default is _MISSING:
                raise _invalid_input("as_datetime", value) from None
            return default

    def as_timestamp(self, value: Any, default: Any = _MISSING) -> Any:
        moment = self.as_datetime(value, None)
        if moment is None:
            if default is _MISSING:
                raise _invalid_input("as_timestamp", value)
            return default
        return moment.timestamp()

    def timestamp_local(self, value: Any, default: Any = _MISSING) -> Any:
        moment = self.as_datetime(value, None)
        if moment is None:
            if default is _MISSING:
                raise _invalid_input("timestamp_local", value)
            return default
        return moment.astimezone(hub_time_zone(self._hub)).isoformat()

    def timestamp_utc(self, value: Any, default: Any = _MISSING) -> Any:
        moment = self.as_datetime(value, None)
        if moment is None:
            if default is _MISSING:
                raise _invalid_input("timestamp_utc", value)
            return default
        return moment.astimezone(UTC).isoformat()

    def machine(self, machine_id: Any) -> dict[str, Any] | None:
        state = self._state(f"machine.{machine_id}")
        if state is None:
            return None
        return {
            "machine_id": str(machine_id),
            "entity_id": state.entity_id,
            "state": state.state,
            "online": state.state == "online",
            "attributes": dict(state.attributes),
            "last_changed": state.last_changed,
        }

    def stock(self, machine_id: Any, slot: Any) -> int | None:
        state = self._state(f"slot.{machine_id}_{str(slot).lower()}")
        if state is None:
            return None
        try:
            return int(float(state.state))
        except ValueError:
            return None
