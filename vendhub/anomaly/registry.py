"""The detectors there are, their settings blocks, and building the configured ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vendhub.util.dt import utcnow

from . import cash, credentials, declines, door, failure_rate, sales_rate
from .base import AlarmSink, Clock, Detector

if TYPE_CHECKING:
    from vendhub.core.hub import Hub


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """One detector: its key in the ``anomaly:`` block, its settings, how to build it."""

    name: str
    schema: dict[Any, Any]
    checks: tuple[Callable[[Any], Any], ...]
    settings_from: Callable[[dict[str, Any]], Any]
    build: Callable[..., Detector]


DETECTORS: tuple[DetectorSpec, ...] = (
    DetectorSpec(
        "sales_rate",
        sales_rate.SCHEMA,
        (),
        sales_rate.SalesRateSettings.from_config,
        sales_rate.SalesRateDetector,
    ),
    DetectorSpec(
        "failure_rate",
        failure_rate.SCHEMA,
        failure_rate.CHECKS,
        failure_rate.FailureRateSettings.from_config,
        failure_rate.FailureRateDetector,
    ),
    DetectorSpec("door", door.SCHEMA, (), door.DoorSettings.from_config, door.DoorDetector),
    DetectorSpec("cash", cash.SCHEMA, (), cash.CashSettings.from_config, cash.CashDetector),
    DetectorSpec(
        "declines",
        declines.SCHEMA,
        (),
        declines.DeclineSettings.from_config,
        declines.DeclineDetector,
    ),
    DetectorSpec(
        "credentials",
        credentials.SCHEMA,
        (),
        credentials.CredentialSettings.from_config,
        credentials.CredentialsDetector,
    ),
)


def build_detectors(
    hub: Hub, sink: AlarmSink, config: dict[str, Any], *, clock: Clock = utcnow
) -> dict[str, Detector]:
    """The enabled detectors of a validated ``anomaly:`` block, by name (not started)."""
    detectors: dict[str, Detector] = {}
    for spec in DETECTORS:
        block = config.get(spec.name, {})
        if not block.get("enabled", True):
            continue
        settings = spec.settings_from(block)
        detectors[spec.name] = spec.build(hub, sink, settings, clock=clock)
    return detectors
