"""The hooks an integration may implement.

Each integration is a pluggy plugin registered under its domain. The hub calls an
integration's own implementation of these hooks (never a chain across integrations), awaits
what it returns with a timeout, and isolates its failures. Hook arguments are only ever added,
never removed or renamed; an implementation may accept any subset of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import voluptuous as vol

    from vendhub.core.hub import Hub

PROJECT_NAME = "vendhub"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def vendhub_config_schema() -> vol.Schema | None:
    """Return the voluptuous schema of this integration's block in configuration.yaml.

    Returning None means the block takes no options (it may be empty or absent). The hub
    validates the block before setup, so errors point at the file and line.
    """


@hookspec
def vendhub_setup(hub: Hub, config: Any) -> Awaitable[bool | None] | bool | None:
    """Set up the integration; may return a coroutine, which the hub awaits with a timeout.

    :param hub: the running hub.
    :param config: this integration's block, validated by its schema (None when absent).
    Returning False, raising, or timing out marks the integration failed; the hub runs on.
    """


@hookspec
def vendhub_unload(hub: Hub) -> Awaitable[None] | None:
    """Undo the setup: stop tasks, close connections; may return a coroutine to await.

    :param hub: the hub; the integration's entities and services are removed afterwards
        by the hub itself.
    """
