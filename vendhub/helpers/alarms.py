"""Raising an operator alarm from anywhere in the hub, where the ``alarm`` integration runs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

ALARM_DOMAIN = "alarm"


async def async_raise_alarm(
    hub: Hub,
    code: str,
    message: str,
    *,
    machine_id: str | None = None,
    severity: str = "warning",
    data: Mapping[str, Any] | None = None,
    context: Context | None = None,
) -> bool:
    """Call ``alarm.raise``; False when no alarm service is set up or the call failed (logged:
    the alarm integration's trouble must not stop whoever noticed the problem)."""
    if not hub.services.has_service(ALARM_DOMAIN, "raise"):
        return False
    try:
        await hub.services.async_call(
            ALARM_DOMAIN,
            "raise",
            {
                "code": code,
                "machine_id": machine_id,
                "severity": severity,
                "message": message,
                "data": dict(data or {}),
            },
            context=context,
        )
    except Exception:
        _LOGGER.exception("Could not raise alarm %s of %s", code, machine_id or "the hub")
        return False
    return True
