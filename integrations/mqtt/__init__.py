"""MQTT machine link: vending machines on a broker, through the VendHub machine protocol.

Subscribes to ``<prefix>/+/{status,announce,telemetry,event,cmd_result}``, decodes every
message with ``vendhub.machine.protocol`` and hands the adopted machines' messages to the
shared ``vendhub.machine.link.MachineLink`` (the simulator uses the same link). Machines
that announce themselves wait as pending until ``mqtt.adopt``. Events are acknowledged on
``<prefix>/<id>/ack``; sales and other ledger events only after the recorder has committed
them. See ``README.md`` beside this file.

Without a ``broker:`` block the hub starts its own broker first (``embedded_broker``: amqtt in
this process, each machine logging in with its own credentials) and connects to it as
``vendhub-hub`` with a password issued afresh at every start.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vendhub.plugins import hookimpl

from .const import DOMAIN
from .http_transport import MachineHttpTransport
from .runtime import MqttRuntime
from .schema import CONFIG_SCHEMA, uses_embedded_broker
from .services import register_services

if TYPE_CHECKING:
    import voluptuous as vol

    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``mqtt:`` block: broker, client id, keepalive, topic prefix, adoption, timeouts."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: Any) -> Any:
    """Load the machines, register the services and start connecting to the broker."""
    return async_setup(hub, config if config is not None else CONFIG_SCHEMA({}))


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """Disconnect cleanly and stop; the hub then removes the entities and the services."""
    return async_unload(hub)


async def async_setup(hub: Hub, config: dict[str, Any]) -> bool:
    """Set the MQTT link up from its validated configuration block."""
    if DOMAIN in hub.data:
        _LOGGER.error("The MQTT link is set up already; unload it first")
        return False
    if uses_embedded_broker(config):
        runtime = await _async_runtime_on_embedded_broker(hub, config)
    else:
        runtime = MqttRuntime(hub, config)
    hub.data[DOMAIN] = runtime
    try:
        await runtime.async_setup()
    except BaseException:
        hub.data.pop(DOMAIN, None)
        await runtime.async_stop()
        raise
    register_services(hub, runtime)
    # Machines without a broker: the same protocol over the HTTP API, when it runs.
    MachineHttpTransport(hub, runtime).start()
    return True


async def async_unload(hub: Hub) -> None:
    """Disconnect and forget the runtime."""
    runtime: MqttRuntime | None = hub.data.pop(DOMAIN, None)
    if runtime is not None:
        if runtime.http_transport is not None:
            await runtime.http_transport.async_stop()
        await runtime.async_stop()


async def _async_runtime_on_embedded_broker(hub: Hub, config: dict[str, Any]) -> MqttRuntime:
    """Start the embedded broker; the runtime connects to it as the hub's user.

    Raises ``EmbeddedBrokerError`` (one line saying what to change) when it cannot listen.
    """
    from vendhub.machine.credentials import CredentialStore

    from .embedded_broker import EmbeddedBroker, EmbeddedBrokerSettings

    # Only the hash is stored, and the hub needs the password itself to log in: a new one.
    password = await CredentialStore(hub).async_ensure_hub_user(rotate=True)
    assert password is not None
    broker = EmbeddedBroker(hub, EmbeddedBrokerSettings.from_config(config), config["topic_prefix"])
    await broker.async_start()
    return MqttRuntime(
        hub, config, settings=broker.hub_settings(config, password), embedded_broker=broker
    )
