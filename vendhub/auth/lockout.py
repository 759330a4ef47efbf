"""Sign-in rate limiting: too many failures lock a username and an address for a while."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LockoutSettings:
    """How many failures within ``window`` seconds lock a key for ``duration`` seconds."""

    failures_per_username: int = 5
    failures_per_address: int = 20
    window: float = 900.0
    duration: float = 900.0


class LoginLimiter:
    """Counts failed sign-ins per username and per remote address (in memory).

    The counts start empty when the hub starts: a restart is not a way around a lockout
    for long, since the hub takes seconds to start and the window is minutes.
    """

    def __init__(
        self, settings: LockoutSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    @staticmethod
    def _keys(username: str, address: str | None) -> list[tuple[str, int]]:
        return [(f"user:{username.strip().lower()}", 0), (f"addr:{address or '-'}", 1)]

    def _limit(self, kind: int) -> int:
        if kind == 0:
            return self.settings.failures_per_username
        return self.settings.failures_per_address

    def retry_after(self, username: str, address: str | None) -> float:
        """Seconds until this username and address may try again; 0 if they may now."""
        now = self._clock()
        waits = [
            self._locked_until.get(key, 0.0) - now for key, _kind in self._keys(username, address)
        ]
        return max(0.0, *waits)

    def failed(self, username: str, address: str | None) -> None:
        """Count one failed attempt; lock what went over its limit."""
        now = self._clock()
        for key, kind in self._keys(username, address):
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while times and times[0] < now - self.settings.window:
                times.popleft()
            if len(times) >= self._limit(kind):
                self._locked_until[key] = now + self.settings.duration
                times.clear()

    def succeeded(self, username: str) -> None:
        """A good sign-in clears the username's failures (not the address's)."""
        key = self._keys(username, None)[0][0]
        self._failures.pop(key, None)
        self._locked_until.pop(key, None)
