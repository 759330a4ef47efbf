"""Notifications: email, webhooks, SMS gateways, Telegram and ntfy, with de-duplication,
rate limits, retries, a dead-letter list and escalation.

The work is done by ``vendhub.notify``; this integration reads the ``notify:`` block, builds
the targets (asking loaded plugins for platforms that are not built in) and registers the
``notify.*`` services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.notify.const import DATA_NOTIFY
from vendhub.notify.runtime import NotifyRuntime, async_start_notify
from vendhub.notify.schema import CONFIG_SCHEMA
from vendhub.notify.services import register_services
from vendhub.plugins import hookimpl
from vendhub.plugins.manager import DATA_INTEGRATIONS

if TYPE_CHECKING:
    from vendhub.core.hub import Hub


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``notify:`` block: targets, default targets, dedupe window, rate limit, retries."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: dict[str, Any]) -> Any:
    """Build the targets and register ``notify.send`` and the dead-letter services."""
    return _async_setup(hub, config)


async def _async_setup(hub: Hub, config: dict[str, Any]) -> bool:
    manager = hub.data.get(DATA_INTEGRATIONS)
    plugin_manager = manager.plugin_manager if manager is not None else None
    runtime = await async_start_notify(hub, config, plugin_manager)
    hub.data[DATA_NOTIFY] = runtime
    register_services(hub, runtime)
    return True


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """Stop retries and escalations (undelivered messages go to the dead-letter list) and
    close the HTTP session."""
    runtime: NotifyRuntime | None = hub.data.pop(DATA_NOTIFY, None)
    return runtime.async_close() if runtime is not None else None
