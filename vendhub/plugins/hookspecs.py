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
    from vendhub.notify.platform import NotifyPlatform
    from vendhub.vending.dispenser import Dispenser
    from vendhub.vending.payment import PaymentProvider

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


@hookspec(firstresult=True)
def vendhub_notify_platform(platform: str) -> type[NotifyPlatform] | None:
    """Return the class of notify platform ``platform`` if this integration provides it.

    :param platform: the ``platform:`` of a target in the ``notify:`` block that is not built
        in (``smtp``, ``webhook``, ``sms``, ``telegram`` and ``ntfy`` are, and cannot be
        replaced).
    Return a subclass of ``vendhub.notify.platform.NotifyPlatform`` (its ``OPTIONS`` validate
    the target's options, its ``async_send`` delivers), or None for a name this integration
    does not provide. The first class returned wins; the notify integration calls each
    implementation on its own, so one that raises is logged and skipped. It asks while it
    sets up, so the providing integration must be loaded: give it a block in
    configuration.yaml (an empty one will do) or make it a dependency of a loaded one.
    """


@hookspec(firstresult=True)
def vendhub_payment_provider(platform: str) -> type[PaymentProvider] | None:
    """Return the class of payment provider ``platform`` if this integration provides it.

    :param platform: the ``platform:`` of an entry in a machine's ``payments:`` list in the
        ``vending:`` block.
    Return a subclass of ``vendhub.vending.payment.PaymentProvider``, or None for a name this
    integration does not provide. The vending integration asks each loaded integration on its
    own, so one that raises is logged and skipped.
    """


@hookspec(firstresult=True)
def vendhub_dispenser(platform: str) -> type[Dispenser] | None:
    """Return the class of dispenser board ``platform`` if this integration provides it.

    :param platform: the ``platform:`` of a machine's ``dispenser:`` in the ``vending:`` block.
    Return a subclass of ``vendhub.vending.dispenser.Dispenser``, or None.
    """
