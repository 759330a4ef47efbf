"""De-duplication and per-target rate limiting of notifications (monotonic clock)."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


def dedupe_key_of(dedupe_key: str | None, title: str | None, message: str) -> str:
    """The given key, else a digest of title and message."""
    if dedupe_key:
        return f"key:{dedupe_key}"
    digest = hashlib.sha256(f"{title or ''}\x00{message}".encode()).hexdigest()[:32]
    return f"text:{digest}"


@dataclass(slots=True)
class _Seen:
    expires: float
    suppressed: int = 0


class Deduplicator:
    """Remembers what went to which target for ``window`` seconds; repeats are suppressed.

    The window runs from the first message; repeats within it do not extend it.
    """

    def __init__(self, window: float, clock: Callable[[], float]) -> None:
        self.window = window
        self._clock = clock
        self._seen: dict[tuple[str, str], _Seen] = {}

    def check(self, target: str, key: str) -> int | None:
        """None if ``key`` may go to ``target`` now; else how many repeats were suppressed
        so far in its window (this one included)."""
        if self.window <= 0:
            return None
        now = self._clock()
        self._prune(now)
        seen = self._seen.get((target, key))
        if seen is None:
            return None
        seen.suppressed += 1
        return seen.suppressed

    def remember(self, target: str, key: str) -> None:
        """Record that ``key`` went (or is going) to ``target`` now."""
        if self.window > 0:
            self._seen[(target, key)] = _Seen(self._clock() + self.window)

    def forget(self, target: str, key: str) -> None:
        """Let the next ``key`` to ``target`` through (its delivery failed for good)."""
        self._seen.pop((target, key), None)

    def _prune(self, now: float) -> None:
        expired = [item for item, seen in self._seen.items() if seen.expires <= now]
        for item in expired:
            del self._seen[item]

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(slots=True)
class _Bucket:
    sent: deque[float]
    dropped: int = 0
    dropped_total: int = 0


class RateLimiter:
    """At most ``count`` messages per target in any ``period`` seconds (a sliding window)."""

    def __init__(self, count: int, period: float, clock: Callable[[], float]) -> None:
        self.count = count
        self.period = period
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, target: str) -> tuple[bool, int]:
        """Take a slot for one message to ``target``.

        Returns (allowed, dropped): when allowed, ``dropped`` is how many messages were
        dropped since the last one that went through (to report them); when refused, how
        many have been dropped in this run so far, this one included.
        """
        now = self._clock()
        bucket = self._buckets.setdefault(target, _Bucket(deque()))
        while bucket.sent and bucket.sent[0] <= now - self.period:
            bucket.sent.popleft()
        if len(bucket.sent) >= self.count:
            bucket.dropped += 1
            bucket.dropped_total += 1
            return False, bucket.dropped
        bucket.sent.append(now)
        dropped, bucket.dropped = bucket.dropped, 0
        return True, dropped

    def dropped_total(self, target: str) -> int:
        """Messages to ``target`` dropped by the limit since setup."""
        bucket = self._buckets.get(target)
        return bucket.dropped_total if bucket else 0
