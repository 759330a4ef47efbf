"""The built-in notify platforms, and finding a platform by name (plugins included)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vendhub.notify.platform import NotifyPlatform
from vendhub.notify.platforms.log import LogPlatform
from vendhub.notify.platforms.ntfy import NtfyPlatform
from vendhub.notify.platforms.sms import SmsPlatform
from vendhub.notify.platforms.smtp import SmtpPlatform
from vendhub.notify.platforms.telegram import TelegramPlatform
from vendhub.notify.platforms.webhook import WebhookPlatform

if TYPE_CHECKING:
    import pluggy

_LOGGER = logging.getLogger(__name__)

BUILTIN_PLATFORMS: dict[str, type[NotifyPlatform]] = {
    cls.platform: cls
    for cls in (
        SmtpPlatform,
        WebhookPlatform,
        SmsPlatform,
        TelegramPlatform,
        NtfyPlatform,
        LogPlatform,
    )
}


def plugin_platform(
    plugin_manager: pluggy.PluginManager | None, name: str
) -> tuple[type[NotifyPlatform] | None, list[str]]:
    """Ask the loaded integrations for platform ``name`` through ``vendhub_notify_platform``.

    Each implementation is called on its own (last registered first, as pluggy would), so
    one that raises is logged and skipped instead of hiding the others. Returns the class
    (or None) and the problems met, for the error message.
    """
    problems: list[str] = []
    if plugin_manager is None:
        return None, problems
    for impl in reversed(plugin_manager.hook.vendhub_notify_platform.get_hookimpls()):
        plugin = plugin_manager.get_name(impl.plugin) or repr(impl.plugin)
        try:
            kwargs: dict[str, Any] = {"platform": name} if "platform" in impl.argnames else {}
            found = impl.function(**kwargs)
        except Exception as error:
            _LOGGER.exception("vendhub_notify_platform of %s failed for '%s'", plugin, name)
            problems.append(f"{plugin} raised {type(error).__name__}: {error}")
            continue
        if found is None:
            continue
        if isinstance(found, type) and issubclass(found, NotifyPlatform):
            return found, problems
        problems.append(f"{plugin} returned {found!r}, which is not a NotifyPlatform subclass")
    return None, problems


__all__ = [
    "BUILTIN_PLATFORMS",
    "LogPlatform",
    "NtfyPlatform",
    "SmsPlatform",
    "SmtpPlatform",
    "TelegramPlatform",
    "WebhookPlatform",
    "plugin_platform",
]
