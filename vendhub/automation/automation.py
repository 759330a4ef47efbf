"""Automations: triggers → conditions → actions, each run traced, one entity per automation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.const import EVENT_AUTOMATION_TRIGGERED
from vendhub.core.context import Context
from vendhub.util.dt import utcnow
from vendhub.util.slug import slugify

from .conditions import CONDITION_SCHEMA, async_condition_from_config
from .script import MODES, SEQUENCE_SCHEMA, Script
from .template import render_complex
from .trace import RunTrace, TraceStore, trace_run
from .triggers import TRIGGER_SCHEMA, async_attach_triggers

if TYPE_CHECKING:
    from vendhub.core.events import Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DOMAIN = "automation"


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
            vol.Optional("initial_state", default=True): cv.boolean,
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
        self._conditions: list[Any] = []
        self._detach: Unsubscribe | None = None

    async def async_setup(self) -> None:
        """Build the conditions, write the entity, and enable if configured so."""
        self._conditions = [
            await async_condition_from_config(self.hub, condition, path=f"condition/{index}")
            for index, condition in enumerate(self.condition_configs)
        ]
        if self.config["initial_state"]:
            await self.async_enable()
        else:
            self._write_state()

    async def async_enable(self) -> None:
        """Attach the triggers."""
        if self.enabled:
            return
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
        # A trigger's own ``variables:`` (rendered when it fired) join the run's variables.
        await self.async_trigger({**(trigger.get("variables") or {}), "trigger": trigger}, context)

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
        trigger = dict(run_variables.get("trigger") or {"platform": None, "description": "manual"})
        this = self.hub.states.get(self.entity_id)
        variables: dict[str, Any] = {"this": this, **run_variables, "trigger": trigger}
        run = RunTrace(item_id=self.id, trigger=trigger, context_id=run_context.id)
        with trace_run(run):
            try:
                variables.update(render_complex(self.config["variables"], variables, self.hub))
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
            result = await self.script.async_run(variables, run_context, trace=run)
        if result is None:  # dropped by the mode (single / max reached)
            run.finish("aborted", "dropped: the automation was already running (mode)")
        elif run.finished is None:
            run.finish()
        self.traces.add(run)
        self._write_state()
        return run
