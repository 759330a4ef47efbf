"""Deciding which integrations load, in what order, with which validated configuration.

Planning is blocking (it imports modules) and needs no running hub: ``vendhub check-config``
stops after it, ``vendhub run`` does it before the event loop starts.
"""

from __future__ import annotations

import difflib
import graphlib
import logging
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
import voluptuous as vol

from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.config.validation import validate
from vendhub.plugins import hookspecs
from vendhub.plugins.discovery import Discovery, Integration, missing_requirements

_LOGGER = logging.getLogger(__name__)

CORE_DOMAIN = "vendhub"


@dataclass
class IntegrationPlan:
    """What to set up: integrations in dependency order with their validated config."""

    plugin_manager: pluggy.PluginManager
    integrations: dict[str, Integration] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    # domain -> the domains it waits for (dependencies, and after_dependencies being loaded)
    waits_for: dict[str, set[str]] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)


def new_plugin_manager() -> pluggy.PluginManager:
    """Return a pluggy manager that knows VendHub's hookspecs."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def call_own_hook(
    manager: pluggy.PluginManager, plugin: object, hook_name: str, **kwargs: Any
) -> tuple[bool, Any]:
    """Call ``plugin``'s own implementation of ``hook_name``; (False, None) if it has none.

    Only the arguments the implementation names are passed, as pluggy itself does.
    """
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        if impl.plugin is plugin:
            return True, impl.function(**{name: kwargs[name] for name in impl.argnames})
    return False, None


def plan_integrations(config: Mapping[str, Any], discovery: Discovery) -> IntegrationPlan:
    """Resolve dependencies, import modules and validate each configured block.

    Every problem becomes a ConfigIssue naming the file and line where it can be fixed; an
    integration with a problem is excluded together with the integrations that need it.
    """
    plan = IntegrationPlan(new_plugin_manager())
    available = discovery.integrations
    wanted = [key for key in config if key != CORE_DOMAIN]

    for domain in wanted:
        if domain not in available:
            close = difflib.get_close_matches(str(domain), list(available), n=1)
            hint = (
                f"; did you mean '{close[0]}'?"
                if close
                else (f"; available: {', '.join(sorted(available))}" if available else "")
            )
            _issue(plan, config, domain, f"no integration is called '{domain}'{hint}")
            plan.excluded[str(domain)] = "unknown integration"

    needed = _with_dependencies([d for d in wanted if d in available], available, plan, config)
    for domain in needed:
        integration = available[domain]
        missing = missing_requirements(integration.manifest)
        if missing:
            _exclude(
                plan,
                config,
                domain,
                f"integration '{domain}' needs Python packages that are missing: "
                f"{'; '.join(missing)}; install them with pip into the hub's environment",
            )
            continue
        try:
            module = integration.import_module()
            plan.plugin_manager.register(module, name=domain)
        except Exception as error:
            _LOGGER.debug("Import of %s failed", domain, exc_info=True)
            where = traceback.extract_tb(error.__traceback__)[-1]
            _exclude(
                plan,
                config,
                domain,
                f"integration '{domain}' ({integration.describe()}) could not be loaded: "
                f"{type(error).__name__}: {error} (at {where.filename}:{where.lineno})",
            )
            continue
        plan.integrations[domain] = integration

    for domain, integration in list(plan.integrations.items()):
        block = config.get(domain)
        try:
            plan.configs[domain] = _validate_block(plan, integration, domain, block)
        except ConfigError as error:
            plan.issues.extend(error.issues)
            _exclude(plan, config, domain, "its configuration is invalid", report=False)

    _drop_dependents_of_excluded(plan, config)
    _order(plan, config)
    return plan


def _with_dependencies(
    roots: Iterable[str],
    available: Mapping[str, Integration],
    plan: IntegrationPlan,
    config: Mapping[str, Any],
) -> list[str]:
    needed: list[str] = []
    stack = list(roots)
    while stack:
        domain = stack.pop()
        if domain in needed:
            continue
        needed.append(domain)
        for dependency in available[domain].manifest.dependencies:
            if dependency not in available:
                _exclude(
                    plan,
                    config,
                    domain,
                    f"integration '{domain}' depends on '{dependency}', which is not installed",
                )
            elif dependency not in needed:
                stack.append(dependency)
    return [domain for domain in needed if domain not in plan.excluded]


def validate_integration_config(plan: IntegrationPlan, domain: str, block: Any) -> Any:
    """Validate ``block`` with the schema of the planned integration ``domain``.

    Raises ConfigError with located issues; used again when the configuration is reloaded.
    """
    return _validate_block(plan, plan.integrations[domain], domain, block)


def _validate_block(
    plan: IntegrationPlan, integration: Integration, domain: str, block: Any
) -> Any:
    has_hook, schema = call_own_hook(
        plan.plugin_manager, integration.module, "vendhub_config_schema"
    )
    if not has_hook or schema is None:
        if block not in (None, {}, []):
            message = f"integration '{domain}' takes no options"
            raise ConfigError(ConfigIssue.at(message, _source(block), (domain,)))
        return block
    if not isinstance(schema, vol.Schema):
        schema = vol.Schema(schema)
    return validate(schema, block if block is not None else {}, root_path=(domain,))


def _drop_dependents_of_excluded(plan: IntegrationPlan, config: Mapping[str, Any]) -> None:
    changed = True
    while changed:
        changed = False
        for domain, integration in list(plan.integrations.items()):
            for dependency in integration.manifest.dependencies:
                if dependency in plan.excluded or dependency not in plan.integrations:
                    reason = plan.excluded.get(dependency, "it is not loaded")
                    _exclude(
                        plan,
                        config,
                        domain,
                        f"integration '{domain}' is not set up because its dependency "
                        f"'{dependency}' is not: {reason}",
                    )
                    changed = True
                    break


def _order(plan: IntegrationPlan, config: Mapping[str, Any]) -> None:
    while True:
        graph = {
            domain: {
                dep
                for dep in (
                    *integration.manifest.dependencies,
                    *integration.manifest.after_dependencies,
                )
                if dep in plan.integrations
            }
            for domain, integration in plan.integrations.items()
        }
        _early_first(plan, graph)
        try:
            plan.order = list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as error:
            cycle = error.args[1]
            text = " -> ".join(cycle)
            for domain in set(cycle):
                _exclude(plan, config, domain, f"dependency cycle: {text}")
            continue
        plan.waits_for = graph
        return


def _early_first(plan: IntegrationPlan, graph: dict[str, set[str]]) -> None:
    """Make every other integration wait for the ``setup_early`` ones (such as the recorder).

    What an early integration itself needs (its dependencies, transitively) does not wait for
    it, or the order would be a cycle.
    """
    early = {d for d, i in plan.integrations.items() if i.manifest.setup_early}
    if not early:
        return
    needed_by_early: set[str] = set()
    stack = [dep for domain in early for dep in graph[domain]]
    while stack:
        domain = stack.pop()
        if domain not in needed_by_early:
            needed_by_early.add(domain)
            stack.extend(graph[domain])
    for domain, waits in graph.items():
        if domain not in early and domain not in needed_by_early:
            waits.update(early)


def _exclude(
    plan: IntegrationPlan, config: Mapping[str, Any], domain: str, reason: str, report: bool = True
) -> None:
    if domain in plan.excluded:
        return
    plan.excluded[domain] = reason
    plan.integrations.pop(domain, None)
    plan.configs.pop(domain, None)
    if report:
        _issue(plan, config, domain, reason)


def _issue(plan: IntegrationPlan, config: Mapping[str, Any], domain: Any, message: str) -> None:
    key_source = getattr(config, "key_source", None)
    source = key_source(domain) if key_source is not None else None
    plan.issues.append(ConfigIssue.at(message, source, (str(domain),) if source else ()))


def _source(value: Any) -> Any:
    return getattr(value, "source", None)
