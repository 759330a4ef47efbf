"""Automations: triggers → conditions → actions, each run traced, one entity per automation."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.const import EVENT_AUTOMATION_TRIGGERED
from vendhub.core.context import Context
from vendhub.helpers.alarms import async_raise_alarm
from vendhub.util.dt import utcnow
from vendhub.util.slug import slugify

from .conditions import CONDITION_SCHEMA, async_condition_from_config
from .script import MODES, SEQUENCE_SCHEMA, Script
from .template import TemplateError, render_complex
from .trace import RunTrace, TraceStore, trace_run
from .triggers import TRIGGER_SCHEMA, async_attach_triggers

if TYPE_CHECKING:
    from vendhub.core.events import Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DOMAIN = "automation"

LOOP_LIMIT = 100
"""Runs an automation may cause of itself within ``LOOP_WINDOW`` seconds; past that it loops
(its actions fire its own trigger) and is turned off, with an error in the log and an alarm."""
LOOP_WINDOW = 1.0
_OWN_CONTEXTS_KEPT = 4 * LOOP_LIMIT
"""How many of its recent run contexts an automation remembers to recognise its own."""


def _one_of_pair(single: str, plural: str) -> Any:
    """Accept ``trigger:`` or ``triggers:`` (not both), and so on."""

    def check(config: dict[str, Any]) -> dict[str, Any]:
        if single in config and plural in config:
            raise vol.Invalid(f"use either '{single}' or '{plural}', not both", path=[plural])
        return config

    return check


AUTOMATION_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("id"): cv.string,
            vol.Optional("alias"): cv.string,
            vol.Optional("description"): cv.string,
            # Unset: the on/off an operator last chose (kept across reloads and restarts),
            # else on. Set: this state at every start and every reload that changes it.
            vol.Optional("initial_state"): cv.boolean,
            vol.Optional("mode", default="single"): vol.In(MODES),
            vol.Optional("max", default=10): cv.positive_int,
            vol.Optional("variables", default=dict): dict,
            vol.Optional("trigger"): vol.All(cv.ensure_list, cv.list_of(TRIGGER_SCHEMA)),
            vol.Optional("triggers"): vol.All(cv.ensure_list, cv.list_of(TRIGGER_SCHEMA)),
            vol.Optional("condition"): vol.All(cv.ensure_list, cv.list_of(CONDITION_SCHEMA)),
            vol.Optional("conditions"): vol.All(cv.ensure_list, cv.list_of(CONDITION_SCHEMA)),
            vol.Optional("action"): SEQUENCE_SCHEMA,
            vol.Optional("actions"): SEQUENCE_SCHEMA,
        }
    ),
    _one_of_pair("trigger", "triggers"),
    _one_of_pair("condition", "conditions"),
    _one_of_pair("action", "actions"),
)


class Automation:
    """One configured automation, its entity ``automation.<id>`` and its runs."""

    def __init__(self, hub: Hub, config: Mapping[str, Any], traces: TraceStore) -> None:
        self.hub = hub
        self.config = config
        self.id: str = str(config["id"])
        self.alias: str = config.get("alias") or self.id
        self.entity_id = f"{DOMAIN}.{slugify(self.id)}"
        self.traces = traces
        self.triggers: list[dict[str, Any]] = list(
            config.get("triggers") or config.get("trigger") or []
        )
        self.condition_configs: list[Any] = list(
            config.get("conditions") or config.get("condition") or []
        )
        self.script = Script(
            hub,
            list(config.get("actions") or config.get("action") or []),
            name=f"automation {self.id}",
            mode=config["mode"],
            max_runs=config["max"],
            logger=logging.getLogger(f"{__name__}.{slugify(self.id)}"),
        )
        self.enabled = False
        self.last_triggered: str | None = None
        self.on_switched: Callable[[str, bool], None] | None = None
        """Told when the automation turns itself off (the loop guard), to keep it off."""
        self._conditions: list[Any] = []
        self._detach: Unsubscribe | None = None
        # The loop guard: the contexts of its recent runs, and when runs they caused began.
        self._own_contexts: dict[str, None] = {}
        self._self_caused: deque[float] = deque()
        self._loop_stopped = False

    async def async_setup(self, restored: bool | None = None) -> None:
        """Build the conditions, write the entity, and enable it or not.

        As Home Assistant: ``initial_state`` when the YAML sets it, else ``restored`` (the on/off
        an operator last chose, None if never), else on.
        """
        self._conditions = [
            await async_condition_from_config(self.hub, condition, path=f"condition/{index}")
            for index, condition in enumerate(self.condition_configs)
        ]
        enabled = self.config.get("initial_state")
        if enabled is None:
            enabled = True if restored is None else restored
        if enabled:
            await self.async_enable()
        else:
            self._write_state()

    async def async_enable(self) -> None:
        """Attach the triggers."""
        if self.enabled:
            return
        self._self_caused.clear()
        self._loop_stopped = False
        self._detach = await async_attach_triggers(
            self.hub,
            self.triggers,
            self._async_on_trigger,
            name=self.alias,
            variables=self.config["variables"],
        )
        self.enabled = True
        self._write_state()

    async def async_disable(self, stop_runs: bool = True) -> None:
        """Detach the triggers and, unless told otherwise, stop the runs in progress."""
        if self._detach is not None:
            self._detach()
            self._detach = None
        self.enabled = False
        if stop_runs:
            await self.script.async_stop()
        self._write_state()

    async def async_remove(self) -> None:
        """Stop everything and remove the entity."""
        await self.async_disable()
        self.hub.states.async_remove(self.entity_id)

    def _write_state(self, context: Context | None = None) -> None:
        self.hub.states.async_set(
            self.entity_id,
            "on" if self.enabled else "off",
            {
                "id": self.id,
                "friendly_name": self.alias,
                "mode": self.config["mode"],
                "last_triggered": self.last_triggered,
                "current": self.script.runs if hasattr(self.script, "runs") else 0,
            },
            context=context,
        )

    async def _async_on_trigger(
        self, trigger: dict[str, Any], context: Context | None = None
    ) -> None:
        if self._loop_stopped:
            return
        if context is not None and self._caused_by_itself(context):
            now = self.hub.loop.time()
            caused = self._self_caused
            caused.append(now)
            while caused and caused[0] <= now - LOOP_WINDOW:
                caused.popleft()
            if len(caused) > LOOP_LIMIT:
                await self._async_stop_loop(trigger)
                return
        # A trigger's own ``variables:`` (rendered when it fired) join the run's variables.
        await self.async_trigger({**(trigger.get("variables") or {}), "trigger": trigger}, context)

    def _render_variables(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The automation's ``variables:``, each rendered with ``variables``; an error names
        the variable (``template 'variables/<name>' line <n>``)."""
        rendered: dict[str, Any] = {}
        for name, value in self.config["variables"].items():
            try:
                rendered[name] = render_complex(value, variables, self.hub)
            except TemplateError as error:
                if error.template_name != "template":
                    raise
                raise TemplateError(error.message, f"variables/{name}", error.line) from None
        return rendered

    def _caused_by_itself(self, context: Context) -> bool:
        """Whether ``context`` comes from one of this automation's recent runs: their own
        context, the one of their actions, or one their actions' service calls made."""
        own = self._own_contexts
        return context.id in own or (context.parent_id is not None and context.parent_id in own)

    def _remember_own(self, *context_ids: str) -> None:
        own = self._own_contexts
        for context_id in context_ids:
            own[context_id] = None
        while len(own) > _OWN_CONTEXTS_KEPT:
            del own[next(iter(own))]

    async def _async_stop_loop(self, trigger: Mapping[str, Any]) -> None:
        """Turn off an automation that keeps triggering itself; say so in the log and an alarm."""
        self._loop_stopped = True
        why = (
            f"it triggered itself more than {LOOP_LIMIT} times within {LOOP_WINDOW:g} s "
            f"(its actions cause its own trigger: {trigger.get('description') or 'a trigger'}), "
            "so it was turned off; fix its triggers or actions, then turn it on again"
        )
        _LOGGER.error("Automation %s (%s) loops: %s", self.alias, self.entity_id, why)
        await self.async_disable()
        if self.on_switched is not None:
            self.on_switched(self.id, False)
        await async_raise_alarm(
            self.hub,
            f"automation_loop_{slugify(self.id)}",
            f"Automation {self.alias} ({self.entity_id}) was turned off: {why}",
            severity="critical",
            data={"automation_id": self.id, "entity_id": self.entity_id},
        )

    async def async_trigger(
        self,
        run_variables: Mapping[str, Any],
        context: Context | None = None,
        skip_condition: bool = False,
    ) -> RunTrace:
        """Run the automation: conditions (unless skipped), then the actions; return the trace."""
        run_context = Context(
            user_id=context.user_id if context else None,
            parent_id=context.id if context else None,
        )
        actions_context = run_context.child()
        self._remember_own(run_context.id, actions_context.id)
        trigger = dict(run_variables.get("trigger") or {"platform": None, "description": "manual"})
        this = self.hub.states.get(self.entity_id)
        variables: dict[str, Any] = {"this": this, **run_variables, "trigger": trigger}
        run = RunTrace(item_id=self.id, trigger=trigger, context_id=run_context.id)
        with trace_run(run):
            try:
                variables.update(self._render_variables(variables))
                if not skip_condition:
                    for index, check in enumerate(self._conditions):
                        if not check(variables):
                            run.variables = dict(variables)
                            run.finish("condition_failed")
                            self.traces.add(run)
                            _LOGGER.debug(
                                "%s: condition %d not met (%s)",
                                self.alias,
                                index,
                                check.describe(),
                            )
                            return run
            except Exception as error:
                run.finish("error", f"{type(error).__name__}: {error}")
                self.traces.add(run)
                _LOGGER.error("Automation %s failed before its actions: %s", self.alias, error)
                return run
            run.variables = dict(variables)

            def started() -> None:
                # Once the mode admitted the run (a dropped run is not "triggered") and it is
                # counted in ``current``, before its first step.
                self.last_triggered = utcnow().isoformat()
                self._write_state(run_context)
                self.hub.bus.async_fire(
                    EVENT_AUTOMATION_TRIGGERED,
                    {
                        "entity_id": self.entity_id,
                        "id": self.id,
                        "name": self.alias,
                        "source": trigger.get("description"),
                    },
                    context=run_context,
                )

            result = await self.script.async_run(
                variables,
                run_context,
                trace=run,
                run_context=actions_context,
                on_start=started,
            )
        if result is None:  # dropped by the mode (single / max reached)
            run.finish("aborted", "dropped: the automation was already running (mode)")
        elif run.finished is None:
            run.finish()
        self.traces.add(run)
        self._write_state()
        return run
