"""Uplink: the hub on a machine's own Pi reports to the fleet hub.

For each linked local vending machine (the ``vending:`` block) one ``MachineAgent`` speaks
the machine protocol (docs/protocol.md) to the fleet hub's broker under the machine's id:
announce and status, every ledger event of the engine through the agent's on-disk outbox
(exactly once), telemetry, the fleet's config (prices, products, capacities, par levels,
mode) applied to the engine and confirmed with ``config_applied``, and the ``restock``
command. Details: README.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.const import STORAGE_DIR
from vendhub.plugins import hookimpl

from .machine_link import MachineUplink
from .schema import CONFIG_SCHEMA, link_settings

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DOMAIN = "uplink"
VENDING_DOMAIN = "vending"
OUTBOX_FOLDER = "uplink"


class UplinkSetupError(Exception):
    """The uplink cannot start; the message says what to change."""


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``uplink:`` block: broker, credentials, machines, prefix."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: Any) -> Any:
    """Link the local machines to the fleet hub."""
    return async_setup(hub, config)


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """Store what the journal holds, say offline, close the outboxes."""
    return async_unload(hub)


def outbox_path(hub: Hub, machine_id: str) -> Any:
    """``.storage/uplink/<machine_id>.outbox.db``: the machine's events until the fleet acks."""
    return hub.path(STORAGE_DIR, OUTBOX_FOLDER, f"{machine_id}.outbox.db")


async def async_setup(hub: Hub, config: dict[str, Any]) -> bool:
    if DOMAIN in hub.data:
        _LOGGER.error("The uplink is set up already; unload it first")
        return False
    runtime = hub.data.get(VENDING_DOMAIN)
    if runtime is None:
        raise UplinkSetupError(
            "the uplink links local vending machines, but the vending integration is not "
            "running: add a vending: block with the machines (docs/vending.md)"
        )
    wanted = config.get("machines")
    machine_ids = list(wanted) if wanted is not None else sorted(runtime.machines)
    missing = [machine_id for machine_id in machine_ids if machine_id not in runtime.machines]
    if missing:
        known = ", ".join(sorted(runtime.machines)) or "none"
        raise UplinkSetupError(
            f"uplink: no local vending machine {', '.join(missing)} to link "
            f"(running: {known}; a machine that failed to set up is not linked)"
        )
    if not machine_ids:
        raise UplinkSetupError("uplink: there is no local vending machine to link")
    links = [
        MachineUplink(
            hub,
            runtime.engine(settings.machine_id),
            settings,
            outbox_path(hub, settings.machine_id),
            runtime.journal.path,
        )
        for settings in link_settings(config, machine_ids)
    ]
    hub.data[DOMAIN] = links
    started: list[MachineUplink] = []
    try:
        for link in links:
            await link.async_start()
            started.append(link)
    except BaseException:
        hub.data.pop(DOMAIN, None)
        await asyncio.gather(
            *(link.async_stop() for link in started),
            *(link.agent.stop() for link in links if link not in started),
            return_exceptions=True,
        )
        raise
    for link in links:
        _LOGGER.info(
            "Uplink: machine %s reports to %s:%d as %s",
            link.machine_id,
            link.settings.host,
            link.settings.port,
            link.settings.username or "(anonymous)",
        )
    return True


async def async_unload(hub: Hub) -> None:
    links: list[MachineUplink] | None = hub.data.pop(DOMAIN, None)
    if not links:
        return
    results = await asyncio.gather(*(link.async_stop() for link in links), return_exceptions=True)
    for link, result in zip(links, results, strict=True):
        if isinstance(result, BaseException):
            _LOGGER.error("Uplink %s did not stop cleanly: %s", link.machine_id, result)
