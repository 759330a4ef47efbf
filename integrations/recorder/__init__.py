"""Recorder: keeps the money ledger, stock movements, state history and statistics in SQL.

The work is done by ``vendhub.recorder``; this integration reads the ``recorder:`` block and
starts it, so that the rest of the hub (services, the API) can use ``get_recorder(hub)``.
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.plugins import hookimpl
from vendhub.recorder.recorder import DATA_RECORDER, Recorder, recorder_config_from
from vendhub.recorder.services import keep_days, register_services

if TYPE_CHECKING:
    from vendhub.core.hub import Hub


def _time_of_day(value: Any) -> time:
    text = cv.string(value)
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise vol.Invalid(f"expected a time of day such as '04:12', got {text!r}") from None


def _db_url(value: Any) -> str:
    text = cv.string(value)
    if "://" not in text:
        raise vol.Invalid(
            "expected a database URL such as 'sqlite:////path/vendhub.db', "
            "'postgresql://user@host/vendhub' or 'mariadb://user@host/vendhub'"
        )
    return text


MIN_COMMIT_INTERVAL = 0.1
"""The shortest ``commit_interval``, in seconds. The writer thread sleeps until the next commit
is due: at 0 it never sleeps and keeps a CPU busy. Ten commits a second is plenty for history
(money is committed as soon as it arrives, whatever the interval)."""


def _commit_interval(value: Any) -> timedelta:
    period = cv.time_period(value)
    if period.total_seconds() < MIN_COMMIT_INTERVAL:
        raise vol.Invalid(
            f"expected a commit_interval of {MIN_COMMIT_INTERVAL:g} seconds or more "
            f"(up to {cv.MAX_TIME_PERIOD_SECONDS // 86400:,} days), got "
            f"{cv.describe_value(value)}: the recorder's writer would wake again at once and "
            "keep a CPU busy; the default is 5, 30 is kind to SD cards"
        )
    return period


_NAMES = vol.All(cv.ensure_list, [cv.string])

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("db_url"): _db_url,
        vol.Optional("keep_days", default=10): keep_days(1),
        vol.Optional("commit_interval", default=5): _commit_interval,
        vol.Optional("purge_time", default="04:12"): _time_of_day,
        vol.Optional("purge_batch_size", default=5000): cv.positive_int,
        vol.Optional("max_backlog", default=100_000): cv.positive_int,
        vol.Optional("include", default=dict): {
            vol.Optional("entities"): vol.All(cv.ensure_list, [cv.entity_id]),
            vol.Optional("entity_globs"): _NAMES,
            vol.Optional("domains"): _NAMES,
        },
        vol.Optional("exclude", default=dict): {
            vol.Optional("entities"): vol.All(cv.ensure_list, [cv.entity_id]),
            vol.Optional("entity_globs"): _NAMES,
            vol.Optional("domains"): _NAMES,
            vol.Optional("event_types"): _NAMES,
        },
    }
)


@hookimpl
def vendhub_config_schema() -> vol.Schema:
    """The ``recorder:`` block: database URL, retention, commit interval, filters."""
    return CONFIG_SCHEMA


@hookimpl
def vendhub_setup(hub: Hub, config: dict[str, Any]) -> Any:
    """Start the recorder; fails when the database cannot be used at all."""
    return _async_setup(hub, config or CONFIG_SCHEMA({}))


async def _async_setup(hub: Hub, config: dict[str, Any]) -> None:
    recorder = Recorder(hub, recorder_config_from(config, hub.config_dir))
    await recorder.async_start()
    hub.data[DATA_RECORDER] = recorder
    register_services(hub, recorder)


@hookimpl
def vendhub_unload(hub: Hub) -> Any:
    """At shutdown the recorder stops itself last, at FINAL_WRITE; otherwise stop it now."""
    if hub.is_stopping:
        return None
    recorder: Recorder | None = hub.data.pop(DATA_RECORDER, None)
    return recorder.async_stop() if recorder is not None else None
