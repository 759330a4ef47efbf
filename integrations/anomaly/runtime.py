"""What one set-up anomaly integration owns: its detectors and their alarm sink."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from vendhub.anomaly.registry import build_detectors
from vendhub.util.dt import utcnow

from .alarm_sink import ServiceAlarmSink

if TYPE_CHECKING:
    from vendhub.anomaly.base import Clock, Detector
    from vendhub.core.hub import Hub

DEFAULT_LOGIN_DURATION = timedelta(minutes=30)


class AnomalyRuntime:
    """The detectors of a validated ``anomaly:`` block; kept in ``hub.data["anomaly"]``."""

    def __init__(self, hub: Hub, config: dict[str, Any], *, clock: Clock = utcnow) -> None:
        self.hub = hub
        self.config = config
        self.sink = ServiceAlarmSink(hub)
        self.detectors: dict[str, Detector] = build_detectors(hub, self.sink, config, clock=clock)
        door = config.get("door", {})
        self.login_duration: timedelta = door.get("login_duration", DEFAULT_LOGIN_DURATION)

    async def async_start(self) -> None:
        """Learn the active alarms, load saved history, start every detector."""
        await self.sink.async_start()
        for detector in self.detectors.values():
            await detector.async_load()
        for detector in self.detectors.values():
            detector.async_start()

    async def async_stop(self) -> None:
        """Stop every detector and the sink."""
        for detector in self.detectors.values():
            await detector.async_stop()
        self.sink.stop()
