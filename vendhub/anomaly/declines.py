"""Repeated declined cards from one card token.

Payment integrations fire ``payment_declined`` with the ``machine_id`` and the card's
``card_token`` (or ``token``): the provider's stable token or fingerprint of the card,
never the card number. When one token is declined ``max_declines`` times within ``window``,
at one machine or at several, someone may be trying stolen cards or guessing numbers: the
detector raises ``anomaly_declined_card_<fingerprint>`` (one alarm per card) on the machine
of the first decline of the burst, and each further decline of that card counts on it. The
fingerprint is the start of a SHA-256 of the token, so the token itself never appears in an
alarm or a log. Declines without a token cannot be told apart and are not counted.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.const import EVENT_PAYMENT_DECLINED
from vendhub.util.dt import hub_time_zone, utcnow

from . import text
from .base import AlarmRequest, AlarmSink, Clock, Detector, machine_id_of
from .validation import period_at_least, severity

if TYPE_CHECKING:
    from vendhub.core.events import Event
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

CODE = "anomaly_declined_card"
TOKEN_KEYS = ("card_token", "token")
FINGERPRINT_LENGTH = 12
# Cards followed at once; the oldest is forgotten past this (a flood of random tokens).
TOKENS_KEPT = 10_000

SCHEMA: dict[Any, Any] = {
    vol.Optional("enabled", default=True): cv.boolean,
    vol.Optional("max_declines", default=3): vol.All(
        cv.positive_int, vol.Range(min=2, msg="expected 2 or more: one decline is no pattern")
    ),
    vol.Optional("window", default="10min"): period_at_least(timedelta(seconds=10)),
    vol.Optional("severity", default="warning"): severity,
}


@dataclass(frozen=True, slots=True)
class DeclineSettings:
    """The ``declines:`` settings."""

    enabled: bool = True
    max_declines: int = 3
    window: timedelta = timedelta(minutes=10)
    severity: str = "warning"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DeclineSettings:
        """From the validated block."""
        return cls(**config)


@dataclass(frozen=True, slots=True)
class _Decline:
    at: datetime
    machine_id: str
    reason: str | None


def fingerprint(token: str) -> str:
    """A short, one-way name for a card token, safe to show and log."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:FINGERPRINT_LENGTH]


def card_token(data: Any) -> str | None:
    """The event's card token (``card_token``, else ``token``) when it is non-empty text."""
    for key in TOKEN_KEYS:
        token = data.get(key)
        if isinstance(token, str) and token:
            return token
    return None


class DeclineDetector(Detector):
    """Raises ``anomaly_declined_card_<fingerprint>`` for a card declined again and again."""

    name = "declines"
    codes = (CODE,)

    def __init__(
        self, hub: Hub, sink: AlarmSink, settings: DeclineSettings, *, clock: Clock = utcnow
    ) -> None:
        super().__init__(hub, sink, clock=clock)
        self.settings = settings
        self.tz = hub_time_zone(hub)
        self.declines: dict[str, deque[_Decline]] = {}  # fingerprint -> recent declines
        self.burst_machine: dict[str, str] = {}  # fingerprint -> machine the alarm is on
        self.without_token = 0

    def _subscribe(self) -> None:
        self.listen(EVENT_PAYMENT_DECLINED, self._on_declined)

    def _on_declined(self, event: Event) -> None:
        machine_id = machine_id_of(event)
        token = card_token(event.data)
        if machine_id is None or token is None:
            if self.without_token == 0:
                _LOGGER.info(
                    "A payment_declined event without machine_id or card_token: declines can "
                    "only be followed per card when payment integrations send the card's token"
                )
            self.without_token += 1
            return
        card = fingerprint(token)
        now = self.now()
        oldest = now - self.settings.window
        recent = self.declines.pop(card, None) or deque()
        while recent and recent[0].at < oldest:
            recent.popleft()
        reason = event.data.get("reason")
        recent.append(_Decline(now, machine_id, str(reason) if reason else None))
        self.declines[card] = recent  # most recently declined last
        if len(self.declines) > TOKENS_KEPT:
            forgotten = next(iter(self.declines))
            del self.declines[forgotten]
            self.burst_machine.pop(forgotten, None)
        if len(recent) == 1:
            self.burst_machine.pop(card, None)  # a new burst
        if len(recent) < self.settings.max_declines:
            return
        on_machine = self.burst_machine.setdefault(card, recent[0].machine_id)
        self.raise_again(
            AlarmRequest(
                f"{CODE}_{card}",
                on_machine,
                self.settings.severity,
                self._message(card, recent),
                {
                    "fingerprint": card,
                    "declines": len(recent),
                    "machines": sorted({d.machine_id for d in recent}),
                    "reasons": [d.reason for d in recent],
                },
            ),
            event.context,
        )

    def _message(self, card: str, recent: deque[_Decline]) -> str:
        machines = list(dict.fromkeys(d.machine_id for d in recent))
        where = f"at {machines[0]}" if len(machines) == 1 else f"at {', '.join(machines)}"
        span = (recent[-1].at - recent[0].at).total_seconds()
        last_reason = recent[-1].reason
        reason = f" (last reason: {last_reason})" if last_reason else ""
        return (
            f"A card (fingerprint {card}) was declined {len(recent)} times in "
            f"{text.duration(span)} {where}{reason}: someone may be trying stolen cards."
        )
