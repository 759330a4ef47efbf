"""Vend-failure and refund rates per machine, over its last vends.

For each machine the detector keeps its last ``window_vends`` vend outcomes (``vend_completed``
and ``vend_failed``) no older than ``max_age``. Failures whose reason is in
``ignore_reasons`` (by default ``sold_out`` and ``locked``: the machine said no, nothing
broke) are left out altogether.

- Failure rate: failed / vends in the window. Above ``max_failure_rate`` (with at least
  ``min_vends`` vends) raises ``anomaly_failure_rate``; at or below ``clear_ratio`` times the
  limit it clears.
- Refund rate: ``payment_refunded`` events of the machine since the window's oldest vend,
  per vend in the window. A refund that names the ``vend_id`` of a failed vend is the
  automatic refund of that failure and does not count; the rest (refunds of completed vends,
  refunds made by hand) do. Above ``max_refund_rate`` raises ``anomaly_refund_rate``, and it
  clears like the failure rate.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.const import EVENT_PAYMENT_REFUNDED, EVENT_VEND_COMPLETED, EVENT_VEND_FAILED
from vendhub.util.dt import utcnow

from . import text
from .base import AlarmRequest, AlarmSink, Clock, Detector, machine_id_of
from .validation import period_at_least, severity

if TYPE_CHECKING:
    from vendhub.core.events import Event
    from vendhub.core.hub import Hub

FAILURE_CODE = "anomaly_failure_rate"
REFUND_CODE = "anomaly_refund_rate"
# Failed vends whose id is remembered, per machine, to tell automatic refunds from the rest.
FAILED_VEND_IDS_KEPT = 256
REFUNDS_KEPT = 1000


def _check_window(config: dict[str, Any]) -> dict[str, Any]:
    if config["min_vends"] > config["window_vends"]:
        raise vol.Invalid(
            f"expected at most window_vends ({config['window_vends']}), got "
            f"{config['min_vends']}: a window of {config['window_vends']} vends never holds "
            f"{config['min_vends']}",
            path=["min_vends"],
        )
    return config


SCHEMA: dict[Any, Any] = {
    vol.Optional("enabled", default=True): cv.boolean,
    vol.Optional("window_vends", default=20): cv.positive_int,
    vol.Optional("min_vends", default=10): cv.positive_int,
    vol.Optional("max_age", default="24h"): period_at_least(timedelta(minutes=1)),
    vol.Optional("max_failure_rate", default=0.3): cv.percentage,
    vol.Optional("max_refund_rate", default=0.2): cv.percentage,
    vol.Optional("clear_ratio", default=0.5): cv.percentage,
    vol.Optional("ignore_reasons", default=["sold_out", "locked"]): vol.All(
        cv.ensure_list, [cv.string]
    ),
    vol.Optional("severity", default="warning"): severity,
}
CHECKS = (_check_window,)


@dataclass(frozen=True, slots=True)
class FailureRateSettings:
    """The ``failure_rate:`` settings."""

    enabled: bool = True
    window_vends: int = 20
    min_vends: int = 10
    max_age: timedelta = timedelta(hours=24)
    max_failure_rate: float = 0.3
    max_refund_rate: float = 0.2
    clear_ratio: float = 0.5
    ignore_reasons: tuple[str, ...] = ("sold_out", "locked")
    severity: str = "warning"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FailureRateSettings:
        """From the validated block."""
        return cls(**{**config, "ignore_reasons": tuple(config["ignore_reasons"])})


@dataclass(frozen=True, slots=True)
class _Outcome:
    at: float
    failed: bool
    reason: str | None


class _MachineWindow:
    """One machine's recent vends, refunds and failed vend ids."""

    def __init__(self, size: int) -> None:
        self.outcomes: deque[_Outcome] = deque(maxlen=size)
        self.refunds: deque[float] = deque(maxlen=REFUNDS_KEPT)
        self.failed_vends: deque[str] = deque(maxlen=FAILED_VEND_IDS_KEPT)

    def prune(self, oldest: float) -> None:
        while self.outcomes and self.outcomes[0].at < oldest:
            self.outcomes.popleft()
        since = self.outcomes[0].at if self.outcomes else oldest
        while self.refunds and self.refunds[0] < since:
            self.refunds.popleft()


class FailureRateDetector(Detector):
    """Raises ``anomaly_failure_rate`` and ``anomaly_refund_rate`` per machine."""

    name = "failure_rate"
    codes = (FAILURE_CODE, REFUND_CODE)

    def __init__(
        self, hub: Hub, sink: AlarmSink, settings: FailureRateSettings, *, clock: Clock = utcnow
    ) -> None:
        super().__init__(hub, sink, clock=clock)
        self.settings = settings
        self.windows: dict[str, _MachineWindow] = {}

    def _subscribe(self) -> None:
        self.listen(EVENT_VEND_COMPLETED, self._on_vend)
        self.listen(EVENT_VEND_FAILED, self._on_vend)
        self.listen(EVENT_PAYMENT_REFUNDED, self._on_refund)

    def _window(self, machine_id: str) -> _MachineWindow:
        window = self.windows.get(machine_id)
        if window is None:
            window = self.windows[machine_id] = _MachineWindow(self.settings.window_vends)
        return window

    def _on_vend(self, event: Event) -> None:
        machine_id = machine_id_of(event)
        if machine_id is None:
            return
        failed = event.event_type == EVENT_VEND_FAILED
        reason = str(event.data.get("reason") or "unknown") if failed else None
        if reason in self.settings.ignore_reasons:
            return
        window = self._window(machine_id)
        now = self.now().timestamp()
        window.outcomes.append(_Outcome(now, failed, reason))
        vend_id = event.data.get("vend_id")
        if failed and isinstance(vend_id, str):
            window.failed_vends.append(vend_id)
        self._judge(machine_id, window, now)

    def _on_refund(self, event: Event) -> None:
        machine_id = machine_id_of(event)
        if machine_id is None:
            return
        window = self._window(machine_id)
        if event.data.get("vend_id") in window.failed_vends:
            return  # the automatic refund of a failed vend
        now = self.now().timestamp()
        window.refunds.append(now)
        self._judge(machine_id, window, now)

    def _judge(self, machine_id: str, window: _MachineWindow, now: float) -> None:
        settings = self.settings
        window.prune(now - settings.max_age.total_seconds())
        vends = len(window.outcomes)
        if vends < settings.min_vends:
            return
        failures = Counter(o.reason for o in window.outcomes if o.failed)
        failed = sum(failures.values())
        self._rate(
            machine_id,
            FAILURE_CODE,
            failed / vends,
            settings.max_failure_rate,
            lambda rate: self._failure_message(machine_id, failed, vends, rate, failures),
            {"failed": failed, "vends": vends, "reasons": dict(failures)},
        )
        refunds = len(window.refunds)
        self._rate(
            machine_id,
            REFUND_CODE,
            refunds / vends,
            settings.max_refund_rate,
            lambda rate: (
                f"{machine_id}: {text.plural(refunds, 'refund')} against its last "
                f"{text.plural(vends, 'vend')} ({text.percent(rate)}), not counting the "
                f"automatic refunds of failed vends; more than "
                f"{text.percent(settings.max_refund_rate)} is unusual."
            ),
            {"refunds": refunds, "vends": vends},
        )

    def _rate(
        self,
        machine_id: str,
        code: str,
        rate: float,
        limit: float,
        message: Any,
        data: dict[str, Any],
    ) -> None:
        if rate > limit:
            self.raise_once(
                AlarmRequest(
                    code,
                    machine_id,
                    self.settings.severity,
                    message(rate),
                    {**data, "rate": round(rate, 4), "limit": limit},
                )
            )
        elif rate <= limit * self.settings.clear_ratio:
            self.end_episode(machine_id, code)

    def _failure_message(
        self, machine_id: str, failed: int, vends: int, rate: float, reasons: Counter[str | None]
    ) -> str:
        by_reason = ", ".join(f"{reason} {count}" for reason, count in reasons.most_common())
        return (
            f"{machine_id}: {failed} of its last {text.plural(vends, 'vend')} failed "
            f"({text.percent(rate)}: {by_reason}); more than "
            f"{text.percent(self.settings.max_failure_rate)} is unusual."
        )
