"""Fraud and anomaly detection: the rules of ``vendhub.anomaly`` raise alarms (docs/anomaly.md).

Reads the ``anomaly:`` block, starts the enabled detectors, sends their alarms through the
``alarm`` integration, and registers ``anomaly.service_login`` and
``anomaly.report_cash_count``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vendhub.anomaly.schema import CONFIG_SCHEMA
from vendhub.plugins import hookimpl
from vendhub.util.dt import utcnow

from .runtime import AnomalyRuntime
from .services import DOMAIN, register_services

if TYPE_CHECKING:
    import voluptuous as vol

    from vendhub.anomaly.base import Clock
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``anomaly:`` block: one section per rule, each with ``enabled`` and its settings."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: dict[str, Any] | None) -> Any:
    """Start the enabled detectors and register the services."""
    return async_setup(hub, config if config is not None else CONFIG_SCHEMA({}))


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """Stop the detectors; the hub then removes the services."""
    return async_unload(hub)


async def async_setup(hub: Hub, config: dict[str, Any], *, clock: Clock = utcnow) -> bool:
    """Set the detectors up from the validated block (``clock``: tests give their own)."""
    if DOMAIN in hub.data:
        _LOGGER.error("Anomaly detection is set up already; unload it first")
        return False
    runtime = AnomalyRuntime(hub, config, clock=clock)
    await runtime.async_start()
    hub.data[DOMAIN] = runtime
    register_services(hub, runtime)
    _LOGGER.info(
        "Anomaly detection: %s", ", ".join(runtime.detectors) or "every rule is turned off"
    )
    return True


async def async_unload(hub: Hub) -> None:
    """Stop the detectors."""
    runtime: AnomalyRuntime | None = hub.data.pop(DOMAIN, None)
    if runtime is not None:
        await runtime.async_stop()
