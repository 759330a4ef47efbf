"""From a configuration folder to a running hub: load, validate, plan, set up, run, stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vendhub.config import load_configuration, validate_core
from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.const import __version__
from vendhub.core.hub import CoreConfig, Hub
from vendhub.plugins.discovery import Discovery, discover_integrations
from vendhub.plugins.manager import IntegrationManager, SetupReport
from vendhub.plugins.plan import IntegrationPlan, plan_integrations
from vendhub.registry import async_load_registries

_LOGGER = logging.getLogger(__name__)


@dataclass
class PreparedConfig:
    """A configuration folder read, validated and planned; nothing is running yet."""

    config_dir: Path
    core: CoreConfig
    discovery: Discovery
    plan: IntegrationPlan

    @property
    def issues(self) -> list[ConfigIssue]:
        """Every problem found in the integrations' configuration and loading."""
        return self.plan.issues


def prepare(config_dir: Path | str) -> PreparedConfig:
    """Load and validate the configuration and plan the integrations (blocking).

    Raises ConfigError when the configuration cannot be used at all (unreadable YAML, an
    invalid ``vendhub:`` block); problems of single integrations are in ``issues``.
    """
    folder = Path(config_dir).resolve()
    tree = load_configuration(folder)
    core_block = validate_core(tree)
    core = CoreConfig(
        name=core_block["name"],
        currency=core_block["currency"],
        time_zone=core_block["time_zone"],
        languages=tuple(core_block["languages"]),
        units=core_block["units"],
    )
    discovery = discover_integrations(folder)
    plan = plan_integrations(tree, discovery)
    plan.issues[:0] = [ConfigIssue(problem, None, None) for problem in discovery.problems]
    return PreparedConfig(folder, core, discovery, plan)


async def async_start_hub(
    prepared: PreparedConfig, setup_timeout: float | None = None
) -> tuple[Hub, SetupReport]:
    """Create the hub, load the registries, set up the integrations and start it."""
    hub = Hub(prepared.config_dir, prepared.core)
    await async_load_registries(hub)
    kwargs: dict[str, Any] = {} if setup_timeout is None else {"setup_timeout": setup_timeout}
    manager = IntegrationManager(hub, prepared.plan, **kwargs)
    report = await manager.async_setup_all()
    await hub.async_start()
    return hub, report


async def async_run(prepared: PreparedConfig, started: float | None = None) -> int:
    """Run the hub until SIGINT or SIGTERM, then stop it gracefully; return the exit code.

    ``started`` is the ``time.monotonic()`` reading when the command began, for the log.
    """
    started = time.monotonic() if started is None else started
    for issue in prepared.issues:
        _LOGGER.error("Configuration problem, the rest runs on: %s", issue)
    hub, report = await async_start_hub(prepared)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _request_stop, hub, signum)
    failed = "; ".join(f"{domain}: {reason}" for domain, reason in report.failed.items())
    _LOGGER.info(
        "VendHub %s '%s' is running: %s loaded (%s)%s, %d entities, "
        "started in %.1f s; configuration %s",
        __version__,
        hub.config.name,
        _count(len(report.loaded), "integration"),
        ", ".join(report.loaded) or "none",
        f", {len(report.failed)} failed ({failed})" if report.failed else "",
        len(hub.states),
        time.monotonic() - started,
        prepared.config_dir,
    )
    try:
        return await hub.async_wait_stopped()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _request_stop(hub: Hub, signum: int) -> None:
    if hub.is_stopping:
        _LOGGER.warning("Already stopping; received %s again", signal.Signals(signum).name)
        return
    _LOGGER.info("Received %s; stopping", signal.Signals(signum).name)
    # Not a tracked task: the stop must not wait for itself.
    stopping = hub.loop.create_task(hub.async_stop(0), name="hub stop")
    hub.data["core.stop_task"] = stopping


__all__ = ["ConfigError", "PreparedConfig", "async_run", "async_start_hub", "prepare"]
