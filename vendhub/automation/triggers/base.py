"""What every trigger platform shares: the attached trigger, firing it, and ``for:`` timers."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import voluptuous as vol

from vendhub.automation.template import Template, TemplateError, render_complex
from vendhub.config import validators as cv
from vendhub.core.context import Context
from vendhub.core.errors import HubNotRunning

if TYPE_CHECKING:
    from vendhub.core.events import Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger("vendhub.automation.triggers")

TriggerAction: TypeAlias = Callable[[dict[str, Any], Context | None], Any]
"""Called with the ``trigger`` variables and the context of what caused it; may be async."""

TriggerData: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ForPeriod:
    """A ``for:`` duration: fixed, or templates rendered each time the condition starts to hold."""

    duration: timedelta | None = None
    template: Template | None = None
    parts: Mapping[str, Any] | None = None  # {minutes: "{{ ... }}"}: values may be templates

    @property
    def is_static(self) -> bool:
        """True when the duration is known without rendering."""
        return self.duration is not None

    def templates(self) -> list[Template]:
        """The templates in the period (none when it is fixed)."""
        found = [self.template] if self.template is not None else []
        return found + [part for part in (self.parts or {}).values() if isinstance(part, Template)]

    def resolve(self, variables: Mapping[str, Any]) -> timedelta:
        """The duration for this start; raises TemplateError or vol.Invalid."""
        if self.duration is not None:
            return self.duration
        if self.template is not None:
            return cv.time_period(self.template.async_render(variables))
        rendered = {
            key: value.async_render(variables) if isinstance(value, Template) else value
            for key, value in (self.parts or {}).items()
        }
        return cv.time_period(rendered)

    def __str__(self) -> str:
        if self.duration is not None:
            return str(self.duration)
        if self.template is not None:
            return self.template.source
        return str(dict(self.parts or {}))


@dataclass(slots=True)
class AttachedTrigger:
    """One trigger of one automation, attached: knows how to fire and how to report problems."""

    hub: Hub
    automation_name: str
    index: int
    trigger_id: str
    platform: str
    action: TriggerAction
    variables: Mapping[str, Any] = field(default_factory=dict)
    trigger_variables: Mapping[str, Any] | None = None

    @property
    def label(self) -> str:
        """'automation 'Fridge alarm' trigger 1 (numeric_state)' for log lines."""
        return f"automation '{self.automation_name}' trigger {self.index} ({self.platform})"

    def template_variables(self, **extra: Any) -> dict[str, Any]:
        """The automation's variables plus ``extra``, for rendering a template of this trigger."""
        return {**self.variables, **extra}

    def fire(self, data: TriggerData, context: Context | None) -> None:
        """Call the action with the trigger variables; a failing action is logged, not raised."""
        trigger: TriggerData = {
            "platform": self.platform,
            "id": self.trigger_id,
            "idx": str(self.index),
            **data,
        }
        if self.trigger_variables:
            try:
                trigger["variables"] = render_complex(
                    dict(self.trigger_variables),
                    self.template_variables(trigger=trigger),
                    self.hub,
                )
            except Exception as error:
                _LOGGER.error(
                    "%s: its variables could not be rendered, so it did not fire: %s",
                    self.label,
                    error,
                )
                return
        try:
            result = self.action(trigger, context)
        except Exception:
            _LOGGER.exception("%s: the action failed on %s", self.label, data.get("description"))
            return
        if inspect.isawaitable(result):
            try:
                self.hub.async_create_task(
                    self._guard(result, data.get("description")), name=f"{self.label} action"
                )
            except HubNotRunning:
                _LOGGER.warning("%s: fired while the hub is stopped; ignored", self.label)
                if inspect.iscoroutine(result):
                    result.close()

    async def _guard(self, result: Awaitable[Any], description: Any) -> None:
        try:
            await result
        except Exception:
            _LOGGER.exception("%s: the action failed on %s", self.label, description)

    def warn(self, message: str, *args: Any) -> None:
        """Log a warning prefixed with this trigger's label."""
        _LOGGER.warning("%s: " + message, self.label, *args)

    def error(self, message: str, *args: Any) -> None:
        """Log an error prefixed with this trigger's label."""
        _LOGGER.error("%s: " + message, self.label, *args)


class ForTimers:
    """The ``for:`` waits of one trigger, one per key (an entity id, or one for the trigger).

    ``start`` fires at once when there is no ``for:``; otherwise it fires after the period
    unless ``cancel`` comes first. The period is added to the trigger data as ``for``.
    """

    def __init__(self, trigger: AttachedTrigger, period: ForPeriod | None) -> None:
        self._trigger = trigger
        self._period = period
        self._pending: dict[Hashable, asyncio.TimerHandle] = {}

    def is_pending(self, key: Hashable) -> bool:
        """Whether a wait for ``key`` is running."""
        return key in self._pending

    def start(self, key: Hashable, data: TriggerData, context: Context | None) -> None:
        """Fire now (no ``for:``) or after the period; a running wait for ``key`` is replaced."""
        self.cancel(key)
        if self._period is None:
            self._trigger.fire({**data, "for": None}, context)
            return
        try:
            duration = self._period.resolve(
                self._trigger.template_variables(trigger={**data, "for": None})
            )
        except (TemplateError, vol.Invalid) as error:
            self._trigger.error("its 'for' period could not be worked out: %s", error)
            return

        def elapsed() -> None:
            if self._pending.get(key) is handle:
                del self._pending[key]
                self._trigger.fire({**data, "for": duration}, context)

        handle = self._trigger.hub.loop.call_later(duration.total_seconds(), elapsed)
        self._pending[key] = handle

    def cancel(self, key: Hashable) -> None:
        """Stop the wait for ``key``, if one is running."""
        handle = self._pending.pop(key, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        """Stop every wait."""
        pending, self._pending = self._pending, {}
        for handle in pending.values():
            handle.cancel()


def combine_unsubscribes(*unsubscribes: Unsubscribe) -> Unsubscribe:
    """One callable that calls all of ``unsubscribes`` (each once, failures logged)."""
    remaining = list(unsubscribes)

    def unsubscribe_all() -> None:
        while remaining:
            try:
                remaining.pop()()
            except Exception:
                _LOGGER.exception("Detaching a trigger failed")

    return unsubscribe_all
