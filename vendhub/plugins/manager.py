"""Setting integrations up and unloading them, each isolated from the others' failures."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vendhub.const import EVENT_HUB_STOP, EVENT_INTEGRATION_LOADED
from vendhub.helpers.entity_platform import async_remove_entities
from vendhub.plugins.plan import IntegrationPlan, call_own_hook

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DATA_INTEGRATIONS = "core.integrations"
DEFAULT_SETUP_TIMEOUT = 60.0
DEFAULT_UNLOAD_TIMEOUT = 2.0


@dataclass
class SetupReport:
    """What happened to each planned integration when the hub started."""

    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class IntegrationManager:
    """Sets up the planned integrations in dependency order, concurrently where independent."""

    def __init__(
        self,
        hub: Hub,
        plan: IntegrationPlan,
        setup_timeout: float = DEFAULT_SETUP_TIMEOUT,
        unload_timeout: float = DEFAULT_UNLOAD_TIMEOUT,
    ) -> None:
        self.hub = hub
        self.plan = plan
        self.setup_timeout = setup_timeout
        self.unload_timeout = unload_timeout
        self.report = SetupReport()
        self._unload_order: list[str] = []
        hub.data[DATA_INTEGRATIONS] = self
        hub.bus.async_listen_once(EVENT_HUB_STOP, self._on_hub_stop)

    @property
    def loaded_domains(self) -> list[str]:
        """The integrations set up and not unloaded since, dependents first."""
        return list(self._unload_order)

    @property
    def plugin_manager(self) -> Any:
        """The pluggy PluginManager holding every loaded integration module."""
        return self.plan.plugin_manager

    async def async_setup_all(self) -> SetupReport:
        """Set up every planned integration; an integration starts once what it waits for is done.

        A dependency that failed makes its dependents fail with a reason naming it; an
        after-dependency that failed is simply no longer waited for.
        """
        done: dict[str, asyncio.Event] = {d: asyncio.Event() for d in self.plan.order}

        async def setup_when_ready(domain: str) -> None:
            for other in self.plan.waits_for.get(domain, ()):
                await done[other].wait()
            try:
                broken = [
                    dep
                    for dep in self.plan.integrations[domain].manifest.dependencies
                    if dep in self.report.failed
                ]
                if broken:
                    self._fail(domain, f"its dependency '{broken[0]}' failed to set up")
                    return
                await self._async_setup_one(domain)
            finally:
                done[domain].set()

        await asyncio.gather(*(setup_when_ready(domain) for domain in self.plan.order))
        return self.report

    async def _async_setup_one(self, domain: str) -> None:
        integration = self.plan.integrations[domain]
        started = time.monotonic()
        _LOGGER.debug("Setting up %s", integration.describe())
        try:
            _, result = call_own_hook(
                self.plugin_manager,
                integration.module,
                "vendhub_setup",
                hub=self.hub,
                config=self.plan.configs.get(domain),
            )
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(_awaitable(result), self.setup_timeout)
        except TimeoutError:
            self._fail(domain, f"setup did not finish within {self.setup_timeout:g} s")
            return
        except Exception as error:
            _LOGGER.debug("Setup of %s raised", domain, exc_info=True)
            self._fail(domain, f"setup raised {type(error).__name__}: {error}", error)
            return
        if result is False:
            self._fail(domain, "setup returned False (see the messages above for why)")
            return
        seconds = time.monotonic() - started
        self.report.loaded.append(domain)
        self.report.seconds[domain] = seconds
        self._unload_order.insert(0, domain)
        _LOGGER.info("Set up %s in %.2f s", integration.describe(), seconds)
        self.hub.bus.async_fire(EVENT_INTEGRATION_LOADED, {"domain": domain})

    def _fail(self, domain: str, reason: str, error: BaseException | None = None) -> None:
        self.report.failed[domain] = reason
        _LOGGER.error(
            "Integration %s failed and is disabled; the hub runs on without it: %s",
            domain,
            reason,
            exc_info=error if _LOGGER.isEnabledFor(logging.DEBUG) else None,
        )

    async def async_unload(self, domain: str) -> bool:
        """Unload one loaded integration: its hook, then its services. False if not loaded."""
        if domain not in self._unload_order:
            return False
        self._unload_order.remove(domain)
        integration = self.plan.integrations[domain]
        try:
            _, result = call_own_hook(
                self.plugin_manager, integration.module, "vendhub_unload", hub=self.hub
            )
            if inspect.isawaitable(result):
                await asyncio.wait_for(_awaitable(result), self.unload_timeout)
        except TimeoutError:
            _LOGGER.warning(
                "Unloading %s took longer than %g s; going on", domain, self.unload_timeout
            )
        except Exception:
            _LOGGER.exception("Unloading %s failed; going on", domain)
        await self._remove_owned(domain)
        _LOGGER.info("Unloaded %s", domain)
        return True

    async def async_reload(self, domain: str, config: Any) -> bool:
        """Unload ``domain`` and set it up again with ``config``; True when it is loaded after."""
        await self.async_unload(domain)
        self.plan.configs[domain] = config
        if domain in self.report.loaded:
            self.report.loaded.remove(domain)
        self.report.failed.pop(domain, None)
        await self._async_setup_one(domain)
        return domain in self._unload_order

    async def _remove_owned(self, domain: str) -> None:
        await async_remove_entities(self.hub, domain)
        self.hub.services.async_remove_domain(domain)

    async def async_unload_all(self) -> None:
        """Unload every loaded integration, dependents before what they depend on."""
        for domain in list(self._unload_order):
            await self.async_unload(domain)

    def _on_hub_stop(self, _event: Any) -> None:
        self.hub.async_create_task(self.async_unload_all(), name="unload integrations")


async def _awaitable(result: Any) -> Any:
    return await result
