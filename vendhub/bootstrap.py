"""From a configuration folder to a running hub: load, validate, plan, set up, run, stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import voluptuous as vol

from vendhub.config import load_configuration, validate_core
from vendhub.config import validators as cv
from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.const import __version__
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import CoreConfig, Hub
from vendhub.core.services import ServiceCall
from vendhub.instance_lock import HubAlreadyRunning, hold_instance_lock
from vendhub.plugins.discovery import Discovery, discover_integrations
from vendhub.plugins.manager import IntegrationManager, SetupReport
from vendhub.plugins.plan import IntegrationPlan, plan_integrations
from vendhub.plugins.reload import async_reload_configuration
from vendhub.registry import async_load_registries
from vendhub.util.heap import freeze_startup_heap

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
    report = await async_setup_and_start(hub, prepared, setup_timeout)
    return hub, report


async def async_setup_and_start(
    hub: Hub, prepared: PreparedConfig, setup_timeout: float | None = None
) -> SetupReport:
    """Load the registries, set up the planned integrations and start ``hub``."""
    await async_load_registries(hub)
    kwargs: dict[str, Any] = {} if setup_timeout is None else {"setup_timeout": setup_timeout}
    manager = IntegrationManager(hub, prepared.plan, **kwargs)
    register_core_services(hub)
    report = await manager.async_setup_all()
    await hub.async_start()
    freeze_startup_heap()
    return report


async def async_run(prepared: PreparedConfig, started: float | None = None) -> int:
    """Run the hub until SIGINT or SIGTERM, then stop it gracefully; return the exit code.

    A signal during start-up cancels the start and stops what was set up so far.
    ``started`` is the ``time.monotonic()`` reading when the command began, for the log.
    """
    started = time.monotonic() if started is None else started
    try:
        with hold_instance_lock(prepared.config_dir):
            return await _async_run_locked(prepared, started)
    except HubAlreadyRunning as error:
        _LOGGER.error("VendHub not started: %s", error)
        return 1


async def _async_run_locked(prepared: PreparedConfig, started: float) -> int:
    for issue in prepared.issues:
        _LOGGER.error("Configuration problem, the rest runs on: %s", issue)
    loop = asyncio.get_running_loop()
    hub = Hub(prepared.config_dir, prepared.core)
    startup = loop.create_task(async_setup_and_start(hub, prepared), name="hub start")
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _request_stop, hub, signum, startup)
    try:
        try:
            report = await startup
        except asyncio.CancelledError:
            if not hub.is_stopping:
                raise
            return await hub.async_wait_stopped()
        _log_running(hub, prepared, report, started)
        return await hub.async_wait_stopped()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _log_running(hub: Hub, prepared: PreparedConfig, report: SetupReport, started: float) -> None:
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


def register_core_services(hub: Hub) -> None:
    """``vendhub.reload``: re-read the YAML and reload what changed, nothing if it is invalid."""

    async def reload(call: ServiceCall) -> dict[str, Any]:
        """Reload the loaded integrations whose configuration changed."""
        try:
            report = await async_reload_configuration(hub, call.data.get("domains"))
        except ConfigError as error:
            _LOGGER.error("Configuration not reloaded; nothing changed:\n%s", error)
            raise InvalidServiceData("vendhub", "reload", f"nothing changed:\n{error}") from None
        return report.as_dict()

    hub.services.async_register(
        "vendhub",
        "reload",
        reload,
        vol.Schema({vol.Optional("domains"): vol.All(cv.ensure_list, [cv.slug])}),
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _request_stop(hub: Hub, signum: int, startup: asyncio.Task[Any]) -> None:
    name = signal.Signals(signum).name
    if hub.is_stopping:
        _LOGGER.warning("Already stopping; received %s again", name)
        return
    if not startup.done():
        _LOGGER.info("Received %s during start-up; cancelling the start and stopping", name)
        startup.cancel()
    else:
        _LOGGER.info("Received %s; stopping", name)
    # Not a tracked task: the stop must not wait for itself.
    hub.data["core.stop_task"] = hub.loop.create_task(hub.async_stop(0), name="hub stop")


__all__ = [
    "ConfigError",
    "PreparedConfig",
    "async_run",
    "async_setup_and_start",
    "async_start_hub",
    "prepare",
]
