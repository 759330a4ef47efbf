"""Rendering a template again only when an entity it read changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from vendhub.automation.template import RenderInfo, Template, TemplateError
from vendhub.const import EVENT_STATE_CHANGED
from vendhub.core.events import Event, Unsubscribe
from vendhub.core.timers import async_track_state_change

_LOGGER = logging.getLogger(__name__)

if TYPE_CHECKING:
    from vendhub.core.hub import Hub


# ---- re-render when what a template read changes -----------------------------------------------


class TemplateResultTracker:
    """Renders a template whenever an entity its last render read changes.

    Calling the tracker (it is the ``Unsubscribe`` that ``async_track_template_result``
    returns) stops it. ``result`` is the latest good result, ``info`` the latest render.
    """

    def __init__(
        self,
        hub: Hub,
        template: Template,
        action: Callable[[Any, Any], Any],
        variables: Mapping[str, Any] | None,
        on_error: Callable[[TemplateError], Any] | None,
    ) -> None:
        if template.hub is None:
            template.attach(hub)
        self.hub = hub
        self.template = template
        self.action = action
        self.variables = variables
        self.on_error = on_error
        self.result: Any = None
        self.info: RenderInfo | None = None
        self.renders = 0
        self._unsubscribe_listeners: Unsubscribe | None = None
        self._listening_to: tuple[frozenset[str], frozenset[str], bool] | None = None
        self._stopped = False

    def async_start(self) -> None:
        """Render for the first time and listen to what it read (no action is called)."""
        info = self._render()
        if info.error is None:
            self.result = info.result

    def async_refresh(self) -> None:
        """Render again now (e.g. because time passed) and call the action on a change."""
        if self._stopped:
            return
        info = self._render()
        if info.error is not None or info.result == self.result:
            return
        old, self.result = self.result, info.result
        self._call_action(info.result, old)

    def _render(self) -> RenderInfo:
        self.renders += 1
        info = self.template.async_render_with_info(self.variables)
        self.info = info
        self._listen_to(info)
        if info.error is not None:
            self._report(info.error)
        return info

    def _report(self, error: TemplateError) -> None:
        if self.on_error is None:
            _LOGGER.error("Error rendering %s", error)
            return
        try:
            self.on_error(error)
        except Exception:
            _LOGGER.exception("Error handler of template %s failed", self.template.name)

    def _call_action(self, new: Any, old: Any) -> None:
        try:
            outcome = self.action(new, old)
            if asyncio.iscoroutine(outcome):
                self.hub.async_create_task(outcome, name=f"template {self.template.name} changed")
        except Exception:
            _LOGGER.exception("Action for template %s failed", self.template.name)

    def _listen_to(self, info: RenderInfo) -> None:
        wanted = (info.entities, info.domains, info.all_states)
        if wanted == self._listening_to:
            return
        if self._unsubscribe_listeners is not None:
            self._unsubscribe_listeners()
            self._unsubscribe_listeners = None
        self._listening_to = wanted
        entities, domains, all_states = wanted
        if all_states or domains:

            def relevant(event: Event) -> bool:
                entity_id: str = event.data["entity_id"]
                return all_states or entity_id in entities or entity_id.partition(".")[0] in domains

            self._unsubscribe_listeners = self.hub.bus.async_listen(
                EVENT_STATE_CHANGED, self._on_state_changed, relevant
            )
        elif entities:
            self._unsubscribe_listeners = async_track_state_change(
                self.hub, entities, self._on_state_changed
            )

    def _on_state_changed(self, event: Event) -> None:
        self.async_refresh()

    def __call__(self) -> None:
        """Stop listening."""
        self._stopped = True
        if self._unsubscribe_listeners is not None:
            self._unsubscribe_listeners()
            self._unsubscribe_listeners = None


def async_track_template_result(
    hub: Hub,
    template: Template,
    action: Callable[[Any, Any], Any],
    variables: Mapping[str, Any] | None = None,
    *,
    on_error: Callable[[TemplateError], Any] | None = None,
) -> TemplateResultTracker:
    """Render ``template`` now, and again only when an entity the last render read changes
    (any state, if it iterated ``states``; any of a domain, if it iterated ``states.<domain>``).

    ``action(new_result, old_result)`` is called (a coroutine is run as a task) when the
    result changes. A render error goes to ``on_error``, or to the log; the last good result
    stays. Returns the tracker, which is the unsubscribe callable.
    """
    tracker = TemplateResultTracker(hub, template, action, variables, on_error)
    tracker.async_start()
    return tracker
