"""Reloading the YAML without a restart: all of it validated first, only what changed reloaded."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vendhub.config import load_configuration
from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.plugins.manager import DATA_INTEGRATIONS, IntegrationManager
from vendhub.plugins.plan import validate_integration_config

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)


@dataclass
class ReloadReport:
    """What a reload did to each integration."""

    reloaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {"reloaded": self.reloaded, "unchanged": self.unchanged, "failed": self.failed}


async def async_reload_configuration(hub: Hub, domains: list[str] | None = None) -> ReloadReport:
    """Re-read configuration.yaml and reload the loaded integrations whose block changed, and
    the loaded ones that wait for them (they may hold what those made).

    ``domains`` limits the reload to those integrations. Every block is validated before
    anything is touched: one invalid block raises ConfigError (every issue with file and line)
    and nothing changes. Adding or removing whole integrations still needs a restart.
    """
    manager: IntegrationManager = hub.data[DATA_INTEGRATIONS]
    loaded = manager.loaded_domains
    wanted = loaded if domains is None else domains
    not_loaded = [domain for domain in wanted if domain not in loaded]
    if not_loaded:
        raise ConfigError(
            ConfigIssue(
                f"cannot reload {', '.join(not_loaded)}: not loaded (loaded: "
                f"{', '.join(sorted(loaded)) or 'none'}); a new integration needs a restart",
                None,
                None,
            )
        )
    tree = await hub.async_add_executor_job(load_configuration, hub.config_dir)
    issues: list[ConfigIssue] = []
    new_configs: dict[str, Any] = {}
    for domain in wanted:
        try:
            new_configs[domain] = validate_integration_config(
                manager.plan, domain, tree.get(domain)
            )
        except ConfigError as error:
            issues.extend(error.issues)
    if issues:
        raise ConfigError(issues)
    report = ReloadReport()
    configs = manager.plan.configs
    changed = {domain for domain, config in new_configs.items() if config != configs.get(domain)}
    # What waits for a reloaded integration may hold its objects (the uplink holds the vending
    # engines): it goes down before it and comes up after it, with its own configuration.
    to_reload = changed | _loaded_dependents(manager, changed)
    for domain in loaded:  # dependents first, as at stop
        if domain in to_reload and manager.plan.waits_for.get(domain, set()) & to_reload:
            await manager.async_unload(domain)
    # Dependencies first, as at start: the reverse of the unload order.
    for domain in reversed(loaded):
        if domain in to_reload:
            config = new_configs.get(domain, configs.get(domain))
            if await manager.async_reload(domain, config):
                report.reloaded.append(domain)
            else:
                report.failed[domain] = manager.report.failed.get(domain, "setup failed")
        elif domain in new_configs:
            report.unchanged.append(domain)
    _LOGGER.info(
        "Reloaded configuration: reloaded %s; unchanged %s%s",
        ", ".join(report.reloaded) or "nothing",
        ", ".join(report.unchanged) or "nothing",
        f"; failed {report.failed}" if report.failed else "",
    )
    return report


def _loaded_dependents(manager: IntegrationManager, reloaded: set[str]) -> set[str]:
    """The loaded integrations that wait, directly or not, for one of ``reloaded`` (its
    dependencies and after_dependencies), those themselves left out."""
    loaded = set(manager.loaded_domains)
    found: set[str] = set()
    grew = True
    while grew:
        grew = False
        for domain in loaded - reloaded - found:
            if manager.plan.waits_for.get(domain, set()) & (reloaded | found):
                found.add(domain)
                grew = True
    return found
