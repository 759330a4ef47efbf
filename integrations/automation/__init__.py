"""Automations from YAML: ``automation: !include automations.yaml``.

Services: ``automation.trigger``, ``automation.turn_on``, ``automation.turn_off``,
``automation.reload`` (re-reads the YAML; an invalid file changes nothing and reports every
error with file and line), ``automation.traces``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.automation.automation import AUTOMATION_SCHEMA, Automation
from vendhub.automation.trace import TraceStore
from vendhub.config import load_configuration, validate
from vendhub.config import validators as cv
from vendhub.config.errors import ConfigError
from vendhub.const import EVENT_AUTOMATION_RELOADED
from vendhub.core.errors import InvalidServiceData
from vendhub.helpers.storage import StorageError, Store
from vendhub.plugins import hookimpl
from vendhub.util.slug import slugify

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall

_LOGGER = logging.getLogger(__name__)
DOMAIN = "automation"


def _unique_ids(automations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every automation needs its own id, and its own entity: ids that slugify alike collide."""
    seen: dict[str, int] = {}
    entities: dict[str, int] = {}
    errors: list[vol.Invalid] = []
    for index, automation in enumerate(automations):
        automation_id = automation["id"]
        if automation_id in seen:
            errors.append(
                vol.Invalid(
                    f"automation id '{automation_id}' is used twice (also by automation "
                    f"{seen[automation_id]}); every automation needs its own id",
                    path=[index, "id"],
                )
            )
            continue
        seen[automation_id] = index
        object_id = slugify(automation_id)
        if object_id in entities:
            first = entities[object_id]
            other = automations[first]["id"]
            errors.append(
                vol.Invalid(
                    f"automation ids '{automation_id}' and '{other}' (automation {first}) both "
                    f"become entity {DOMAIN}.{object_id} (an entity id keeps only a-z, 0-9 "
                    "and _); give this automation an id that differs from the other in "
                    "letters or digits",
                    path=[index, "id"],
                )
            )
            continue
        entities[object_id] = index
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise vol.MultipleInvalid(errors)
    return automations


CONFIG_SCHEMA = vol.Schema(
    vol.All(
        vol.Any(None, cv.ensure_list),
        lambda value: value or [],
        cv.list_of(AUTOMATION_SCHEMA),
        _unique_ids,
    )
)
TARGET = vol.Schema(
    {
        vol.Required("id"): vol.All(cv.ensure_list, [cv.string]),
    },
    extra=vol.PREVENT_EXTRA,
)
TRIGGER_SERVICE_SCHEMA = vol.Schema(
    {
        vol.Required("id"): cv.string,
        vol.Optional("skip_condition", default=True): cv.boolean,
        vol.Optional("variables", default=dict): dict,
    }
)
TRACES_SCHEMA = vol.Schema({vol.Required("id"): cv.string})


class AutomationComponent:
    """Every configured automation, keyed by id; kept in ``hub.data['automation']``."""

    SWITCHES_KEY = "automation.switches"
    SWITCHES_VERSION = 1

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.traces = TraceStore(hub)
        self.automations: dict[str, Automation] = {}
        # The on/off an operator (or the loop guard) last set, by automation id; it outlives
        # reloads and restarts (``.storage/automation.switches``).
        self.switches: dict[str, bool] = {}
        self._switches_store: Store[dict[str, bool]] = Store(
            hub, self.SWITCHES_KEY, self.SWITCHES_VERSION
        )

    async def async_load(self, configs: list[Mapping[str, Any]]) -> None:
        """Start the automations of a validated configuration."""
        await self.traces.async_load()
        try:
            stored = await self._switches_store.async_load() or {}
        except StorageError as error:
            _LOGGER.error("Automations start as configured: %s", error)
            stored = {}
        self.switches = {
            str(key): value for key, value in stored.items() if isinstance(value, bool)
        }
        for config in configs:
            await self._async_add(config)
        _LOGGER.info("Loaded %d automations", len(self.automations))

    def remember(self, automation_id: str, enabled: bool | None) -> None:
        """Keep the on/off chosen for ``automation_id`` (None: forget it) and save it soon."""
        if enabled is None:
            if self.switches.pop(automation_id, None) is None:
                return
        elif self.switches.get(automation_id) is enabled:
            return
        else:
            self.switches[automation_id] = enabled
        try:
            self._switches_store.async_delay_save(lambda: dict(self.switches), 1.0)
        except StorageError as error:
            _LOGGER.error("The on/off of automation %s is not kept: %s", automation_id, error)

    async def _async_add(self, config: Mapping[str, Any]) -> None:
        automation = Automation(self.hub, config, self.traces)
        automation.on_switched = self.remember
        try:
            await automation.async_setup(self.switches.get(automation.id))
        except Exception:
            _LOGGER.exception("Automation %s could not be set up; the others run", config["id"])
            return
        self.automations[automation.id] = automation

    def get(self, service: str, automation_id: str) -> Automation:
        """The automation ``automation_id``, or a clear error listing the known ids."""
        automation = self.automations.get(automation_id)
        if automation is None:
            known = ", ".join(sorted(self.automations)[:20]) or "none"
            raise InvalidServiceData(
                DOMAIN, service, f"no automation has id '{automation_id}'; known: {known}"
            )
        return automation

    def get_all(self, service: str, automation_ids: list[str]) -> list[Automation]:
        """The automations ``automation_ids``; if one is unknown, an error and none of them."""
        return [self.get(service, automation_id) for automation_id in automation_ids]

    async def async_reload(self) -> dict[str, list[str]]:
        """Re-read the YAML; only a valid file replaces the running automations."""
        tree = await self.hub.async_add_executor_job(load_configuration, self.hub.config_dir)
        block = tree.get(DOMAIN)
        new_configs: list[Mapping[str, Any]] = validate(CONFIG_SCHEMA, block, root_path=(DOMAIN,))
        new = {str(config["id"]): config for config in new_configs}
        report: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "unchanged": []}
        for automation_id, automation in list(self.automations.items()):
            if automation_id not in new:
                await automation.async_remove()
                del self.automations[automation_id]
                self.traces.forget(automation_id)
                self.remember(automation_id, None)
                report["removed"].append(automation_id)
            elif automation.config != new[automation_id]:
                await automation.async_remove()
                del self.automations[automation_id]
                await self._async_add(new[automation_id])
                report["changed"].append(automation_id)
            else:
                report["unchanged"].append(automation_id)
        for automation_id, config in new.items():
            if automation_id not in self.automations and automation_id not in report["changed"]:
                await self._async_add(config)
                report["added"].append(automation_id)
        _LOGGER.info(
            "Reloaded automations: %s",
            "; ".join(f"{kind} {', '.join(ids)}" for kind, ids in report.items() if ids)
            or "nothing changed",
        )
        self.hub.bus.async_fire(EVENT_AUTOMATION_RELOADED, report)
        return report

    async def async_stop(self) -> None:
        """Stop every automation (their on/off as chosen is kept: written now)."""
        for automation in self.automations.values():
            await automation.async_disable()
        try:
            await self._switches_store.async_flush()
        except Exception:
            _LOGGER.exception("Could not save the on/off of the automations")


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``automation:`` block: a list of automations (usually ``!include automations.yaml``)."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: list[Mapping[str, Any]] | None) -> Any:
    """Start every automation and register the services."""
    return _async_setup(hub, config or [])


async def _async_setup(hub: Hub, configs: list[Mapping[str, Any]]) -> None:
    component = AutomationComponent(hub)
    hub.data[DOMAIN] = component
    await component.async_load(configs)

    async def trigger(call: ServiceCall) -> dict[str, Any]:
        """Run an automation now (conditions skipped unless skip_condition is false)."""
        automation = component.get(call.service, call.data["id"])
        run = await automation.async_trigger(
            {
                **call.data["variables"],
                "trigger": {"platform": None, "description": "service call"},
            },
            call.context,
            skip_condition=call.data["skip_condition"],
        )
        return run.as_dict()

    async def turn_on(call: ServiceCall) -> None:
        """Enable automations (all ids are checked first: one unknown id changes nothing)."""
        for automation in component.get_all(call.service, call.data["id"]):
            await automation.async_enable()
            component.remember(automation.id, True)

    async def turn_off(call: ServiceCall) -> None:
        """Disable automations and stop their runs (one unknown id changes nothing)."""
        for automation in component.get_all(call.service, call.data["id"]):
            await automation.async_disable()
            component.remember(automation.id, False)

    async def reload(call: ServiceCall) -> dict[str, list[str]]:
        """Re-read the automations; an invalid file changes nothing and says why."""
        try:
            return await component.async_reload()
        except ConfigError as error:
            _LOGGER.error("Automations not reloaded; the running ones stay:\n%s", error)
            raise InvalidServiceData(
                DOMAIN, call.service, f"the file is invalid, nothing changed:\n{error}"
            ) from None

    def traces(call: ServiceCall) -> list[dict[str, Any]]:
        """The kept runs of an automation, newest first."""
        component.get(call.service, call.data["id"])
        return component.traces.runs(call.data["id"])

    hub.services.async_register(DOMAIN, "trigger", trigger, TRIGGER_SERVICE_SCHEMA)
    hub.services.async_register(DOMAIN, "turn_on", turn_on, TARGET)
    hub.services.async_register(DOMAIN, "turn_off", turn_off, TARGET)
    hub.services.async_register(DOMAIN, "reload", reload, vol.Schema({}))
    hub.services.async_register(DOMAIN, "traces", traces, TRACES_SCHEMA, read_only=True)


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """Stop the automations."""
    component: AutomationComponent | None = hub.data.pop(DOMAIN, None)
    return component.async_stop() if component is not None else None
