"""Time helpers: the hub stores and compares aware UTC datetimes only."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

__all__ = ["UTC", "as_utc", "hub_time_zone", "time_zone", "utcnow"]

_LOGGER = logging.getLogger(__name__)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@lru_cache(maxsize=64)
def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; UTC (with one warning) when the name is unknown, which
    the core configuration's schema prevents."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        _LOGGER.warning("Unknown time zone %r; using UTC", name)
        return ZoneInfo("UTC")


def hub_time_zone(hub: Hub | None) -> ZoneInfo:
    """The hub's configured time zone (UTC without a hub): local days, hours and windows."""
    return time_zone(hub.config.time_zone if hub is not None else "UTC")
