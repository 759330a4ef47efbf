"""Notifications into the hub's own log: a target that always works, for demos and audits."""

from __future__ import annotations

import logging

import voluptuous as vol

from vendhub.notify.const import SEVERITY_CRITICAL, SEVERITY_WARNING
from vendhub.notify.models import Notification
from vendhub.notify.platform import NotifyPlatform

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LOGGER = logging.getLogger("vendhub.notifications")


class LogPlatform(NotifyPlatform):
    """Writes each notification as one line of the ``vendhub.notifications`` logger.

    ``level`` (debug, info, warning; default info) is raised to warning for warnings and to
    error for critical notifications.
    """

    platform = "log"
    OPTIONS = {vol.Optional("level", default="info"): vol.In(tuple(_LEVELS))}

    async def async_send(self, notification: Notification) -> None:
        level: int = _LEVELS[self.config["level"]]
        if notification.severity == SEVERITY_WARNING:
            level = max(level, logging.WARNING)
        elif notification.severity == SEVERITY_CRITICAL:
            level = logging.ERROR
        title = f"{notification.title}: " if notification.title else ""
        LOGGER.log(level, "[%s] %s%s", self.name, title, notification.message)

    def describe(self) -> str:
        return f"log ({self.config['level']})"
