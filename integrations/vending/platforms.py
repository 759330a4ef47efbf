"""Finding a dispenser or payment provider class by platform name: built in, or from the
loaded integrations through the ``vendhub_dispenser`` / ``vendhub_payment_provider`` hooks."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vendhub.config.errors import ConfigError, KeyPath
from vendhub.config.validation import validate
from vendhub.vending.dispenser import Dispenser
from vendhub.vending.payment import PaymentProvider

from .schema import (
    BUILTIN_DISPENSERS,
    BUILTIN_PROVIDERS,
    PlatformEntry,
    platform_options_schema,
)

if TYPE_CHECKING:
    import pluggy

_LOGGER = logging.getLogger(__name__)

HOOK_DISPENSER = "vendhub_dispenser"
HOOK_PAYMENT_PROVIDER = "vendhub_payment_provider"


def plugin_class(
    plugin_manager: pluggy.PluginManager | None, hook_name: str, name: str, base: type
) -> tuple[type | None, list[str]]:
    """Ask each loaded integration's ``hook_name`` for platform ``name``.

    Each implementation is called on its own (last registered first, as pluggy would), so one
    that raises is logged and skipped instead of hiding the others. Returns the class (or
    None) and the problems met, for the error message.
    """
    problems: list[str] = []
    if plugin_manager is None:
        return None, problems
    for impl in reversed(getattr(plugin_manager.hook, hook_name).get_hookimpls()):
        plugin = plugin_manager.get_name(impl.plugin) or repr(impl.plugin)
        try:
            kwargs: dict[str, Any] = {"platform": name} if "platform" in impl.argnames else {}
            found = impl.function(**kwargs)
        except Exception as error:
            _LOGGER.exception("%s of %s failed for '%s'", hook_name, plugin, name)
            problems.append(f"{plugin} raised {type(error).__name__}: {error}")
            continue
        if found is None:
            continue
        if isinstance(found, type) and issubclass(found, base):
            return found, problems
        problems.append(f"{plugin} returned {found!r}, which is not a {base.__name__} subclass")
    return None, problems


def _resolve(
    entry: PlatformEntry,
    kind: str,
    builtins: Mapping[str, type],
    hook_name: str,
    base: type,
    plugin_manager: pluggy.PluginManager | None,
    where: KeyPath,
) -> tuple[type, Mapping[str, Any]]:
    cls = builtins.get(entry.platform)
    problems: list[str] = []
    if cls is None:
        cls, problems = plugin_class(plugin_manager, hook_name, entry.platform, base)
    if cls is None:
        close = difflib.get_close_matches(entry.platform, list(builtins), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        why = f" ({'; '.join(problems)})" if problems else ""
        raise ValueError(
            f"[{' > '.join(map(str, where))}] no {kind} platform {entry.platform!r}{hint}; "
            f"built in: {', '.join(builtins)}; a plugin provides others through {hook_name} "
            f"and must be loaded (give it a block in configuration.yaml){why}"
        )
    if entry.validated:
        return cls, entry.options
    options = validate(platform_options_schema(cls), entry.options, root_path=where)
    return cls, options


def resolve_dispenser(
    entry: PlatformEntry, plugin_manager: pluggy.PluginManager | None, machine_id: str
) -> tuple[type[Dispenser], Mapping[str, Any]]:
    """The dispenser class and its validated options; ValueError or ConfigError (with file
    and line) when it cannot be had."""
    return _resolve(
        entry,
        "dispenser",
        BUILTIN_DISPENSERS,
        HOOK_DISPENSER,
        Dispenser,
        plugin_manager,
        ("vending", "machines", machine_id, "dispenser"),
    )


def resolve_provider(
    entry: PlatformEntry,
    plugin_manager: pluggy.PluginManager | None,
    machine_id: str,
    index: int,
) -> tuple[type[PaymentProvider], Mapping[str, Any]]:
    """The payment provider class and its validated options (see ``resolve_dispenser``)."""
    return _resolve(
        entry,
        "payment provider",
        BUILTIN_PROVIDERS,
        HOOK_PAYMENT_PROVIDER,
        PaymentProvider,
        plugin_manager,
        ("vending", "machines", machine_id, "payments", index),
    )


__all__ = ["ConfigError", "plugin_class", "resolve_dispenser", "resolve_provider"]
