"""The running notify service: targets built from configuration, the HTTP session, the
dispatcher; created by the integration's setup and closed by its unload."""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import voluptuous as vol

from vendhub.core.services import describe_invalid
from vendhub.helpers.storage import Store
from vendhub.notify.const import STORAGE_DEAD_LETTERS
from vendhub.notify.dispatcher import DispatchSettings, NotifyDispatcher
from vendhub.notify.platform import NotifyPlatform, PlatformRuntime
from vendhub.notify.platforms import BUILTIN_PLATFORMS, plugin_platform
from vendhub.notify.redact import Redactor
from vendhub.notify.schema import CONF_SECRET_VALUES, validate_target

if TYPE_CHECKING:
    import pluggy

    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger("vendhub.notify")


@dataclass
class NotifyRuntime:
    """What the notify integration keeps in ``hub.data["notify"]``."""

    dispatcher: NotifyDispatcher
    session: aiohttp.ClientSession
    default_targets: list[str]
    broken_targets: dict[str, str] = field(default_factory=dict)

    @property
    def redact(self) -> Redactor:
        return self.dispatcher.redact

    async def async_close(self) -> None:
        """Stop retries and escalations, save the dead letters, close the HTTP session."""
        try:
            await self.dispatcher.async_shutdown()
        finally:
            await self.session.close()


def resolve_platform(
    name: str, plugin_manager: pluggy.PluginManager | None
) -> type[NotifyPlatform]:
    """The class of platform ``name``: built in, or from a loaded plugin; else a ValueError
    that says what is available."""
    if name in BUILTIN_PLATFORMS:
        return BUILTIN_PLATFORMS[name]
    found, problems = plugin_platform(plugin_manager, name)
    if found is not None:
        return found
    close = difflib.get_close_matches(name, list(BUILTIN_PLATFORMS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    why = f" ({'; '.join(problems)})" if problems else ""
    raise ValueError(
        f"no notify platform {name!r}{hint}; built in: {', '.join(BUILTIN_PLATFORMS)}; "
        f"a plugin must provide others through vendhub_notify_platform and be loaded{why}"
    )


def _build_targets(
    runtime: PlatformRuntime,
    configs: list[Mapping[str, Any]],
    plugin_manager: pluggy.PluginManager | None,
    redactor: Redactor,
) -> tuple[dict[str, NotifyPlatform], dict[str, str]]:
    targets: dict[str, NotifyPlatform] = {}
    broken: dict[str, str] = {}
    for config in configs:
        name = config["name"]
        try:
            platform = resolve_platform(config["platform"], plugin_manager)
            if platform.platform not in BUILTIN_PLATFORMS:
                try:
                    config = validate_target(platform, config)
                except vol.Invalid as error:
                    raise ValueError(f"invalid options: {describe_invalid(error)}") from None
            targets[name] = platform(runtime, name, config)
        except Exception as error:
            reason = redactor(error)
            broken[name] = reason
            _LOGGER.error(
                "Notify target %s (platform %s) is disabled, the others run on: %s",
                name,
                config["platform"],
                reason,
            )
    return targets, broken


async def async_start_notify(
    hub: Hub,
    config: Mapping[str, Any],
    plugin_manager: pluggy.PluginManager | None = None,
    *,
    persist_dead_letters: bool = True,
) -> NotifyRuntime:
    """Build every target of the validated ``notify:`` block and the dispatcher."""
    settings = DispatchSettings.from_config(config)
    redactor = Redactor(config.get(CONF_SECRET_VALUES, ()))
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.timeout),
        headers={"User-Agent": "VendHub notify"},
    )
    try:
        platform_runtime = PlatformRuntime(hub, session, settings.timeout)
        targets, broken = _build_targets(
            platform_runtime, config["targets"], plugin_manager, redactor
        )
        store: Store[dict[str, Any]] | None = (
            Store(hub, STORAGE_DEAD_LETTERS, 1) if persist_dead_letters else None
        )
        dispatcher = NotifyDispatcher(hub, targets, settings, redactor=redactor, store=store)
        await dispatcher.async_load()
    except BaseException:
        await session.close()
        raise
    defaults = [name for name in config["default_targets"] if name in targets]
    for name in config["default_targets"]:
        if name in broken:
            _LOGGER.warning("Default target %s is disabled (see above)", name)
    _LOGGER.info(
        "Notify targets: %s",
        dispatcher.redact(
            ", ".join(f"{name} ({platform.describe()})" for name, platform in targets.items())
            or "none"
        ),
    )
    hub.async_create_background_task(
        _async_check_targets(targets, dispatcher), name="notify: check targets"
    )
    return NotifyRuntime(dispatcher, session, defaults, broken)


async def _async_check_targets(
    targets: Mapping[str, NotifyPlatform], dispatcher: NotifyDispatcher
) -> None:
    """Say at start which targets cannot work (a mail server that is not there), once each."""

    async def check(name: str, platform: NotifyPlatform) -> None:
        try:
            problem = await platform.async_check()
        except Exception:
            _LOGGER.exception("Checking notify target %s failed", name)
            return
        if problem is not None:
            _LOGGER.warning(
                "Notify target %s: %s; notifications to it fail, and are kept as dead letters, "
                "until that is fixed (its options in the notify: block)",
                name,
                dispatcher.redact(problem),
            )

    await asyncio.gather(*(check(name, platform) for name, platform in targets.items()))
