"""Robust statistics of small count samples: the band of usual hourly sales.

Hourly sales are small whole numbers with outliers of their own (a party, a broken payment
terminal, an earlier anomaly), so the centre is the median, and the history's own spread is
its median absolute deviation (MAD, scaled by 1.4826 to estimate a standard deviation), which
a few odd hours do not move. That alone is not enough for counts: sales of a machine are
roughly a Poisson process, whose counts scatter by chance far more, relative to their size,
when they are small (a machine that sells 2 an hour sells 7 in some hour every few weeks),
and a median of a week of such hours may be well off the true rate. So the band is the widest
of three:

- the Poisson band: the counts a Poisson process would reach by chance no more often than a
  normal variable strays ``sensitivity`` standard deviations (4: about 3 in 100,000 hours),
  at a rate taken generously (the larger of the median and the trimmed mean, plus twice its
  standard error) for the upper limit and sparingly (the smaller of them, minus twice it)
  for the lower one;
- median ± sensitivity x 1.4826 x MAD: a history that scatters more than Poisson (weather,
  events) widens the band by its own measure;
- median ± ``min_difference``: differences too small for an operator to act on.

Simulated Poisson histories of 7 to 28 hours at rates from 0.5 to 60 an hour leave about 5
ordinary hours in a million outside this band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

MAD_TO_SIGMA = 1.4826
# Above this rate the Poisson limits come from the normal approximation (exact sums underflow).
POISSON_EXACT_UP_TO = 200.0
# Tails below this cannot be told from 0 in floating point sums.
MIN_TAIL = 1e-12

Direction = Literal["high", "low"]


def median(values: Sequence[float]) -> float:
    """The median; ValueError for no values."""
    if not values:
        raise ValueError("the median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def mad(values: Sequence[float], centre: float | None = None) -> float:
    """The median absolute deviation from ``centre`` (default: the median)."""
    middle = median(values) if centre is None else centre
    return median([abs(value - middle) for value in values])


def quantile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile (0 to 1) with linear interpolation between neighbours."""
    if not values:
        raise ValueError("the quantile of no values")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be from 0 to 1, got {share}")
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass(frozen=True, slots=True)
class Band:
    """What a history says about the next value: its centre, spread and limits."""

    median: float
    rate: float  # the trimmed mean
    low: float  # below this is unusually low
    high: float  # above this is unusually high
    usual_low: int  # the lower quartile, rounded: "usual" in messages
    usual_high: int  # the upper quartile, rounded
    samples: int

    def judge(self, value: float) -> Direction | None:
        """``high`` above the band, ``low`` below it, None inside."""
        if value > self.high:
            return "high"
        if value < self.low:
            return "low"
        return None


def normal_tail(deviations: float) -> float:
    """P(Z > deviations) for a standard normal Z."""
    return 0.5 * math.erfc(deviations / math.sqrt(2))


def poisson_upper(rate: float, tail: float) -> float:
    """The smallest count x with P(X > x) <= tail for X ~ Poisson(rate)."""
    if rate > POISSON_EXACT_UP_TO:
        return rate + _z(tail) * math.sqrt(rate) + 1
    tail = max(tail, MIN_TAIL)
    term = math.exp(-rate)
    total = term
    count = 0
    while 1.0 - total > tail:
        count += 1
        term *= rate / count
        total += term
    return float(count)


def poisson_lower(rate: float, tail: float) -> float:
    """The largest count x with P(X < x) <= tail for X ~ Poisson(rate)."""
    if rate > POISSON_EXACT_UP_TO:
        return max(0.0, rate - _z(tail) * math.sqrt(rate))
    term = math.exp(-rate)
    below = 0.0  # P(X < count)
    count = 0
    while below + term <= tail:
        below += term
        count += 1
        term *= rate / count
    return float(count)


def _z(tail: float) -> float:
    """The deviations whose normal tail is ``tail`` (by bisection; tails are tiny here)."""
    low, high = 0.0, 40.0
    for _ in range(100):
        middle = (low + high) / 2
        if normal_tail(middle) > tail:
            low = middle
        else:
            high = middle
    return high


def trimmed_mean(values: Sequence[float], share: float = 0.2) -> float:
    """The mean without the lowest and highest ``share`` of the values."""
    ordered = sorted(values)
    cut = int(len(ordered) * share)
    kept = ordered[cut : len(ordered) - cut] or ordered
    return sum(kept) / len(kept)


def count_band(history: Sequence[float], sensitivity: float, min_difference: float) -> Band:
    """The band of usual counts for the next hour, from the counts of comparable hours.

    See the module's description. ValueError for an empty history or a sensitivity <= 0.
    """
    if sensitivity <= 0:
        raise ValueError(f"sensitivity must be positive, got {sensitivity}")
    centre = median(history)
    mean = trimmed_mean(history)
    samples = len(history)
    tail = normal_tail(sensitivity)
    error = 2 * math.sqrt(max(centre, mean, 0.5) / samples)
    generous = max(centre, mean) + error
    sparing = max(min(centre, mean) - error, 0.0)
    scatter = sensitivity * MAD_TO_SIGMA * mad(history, centre)
    return Band(
        median=centre,
        rate=mean,
        low=min(poisson_lower(sparing, tail), centre - scatter, centre - min_difference),
        high=max(poisson_upper(generous, tail), centre + scatter, centre + min_difference),
        usual_low=round(quantile(history, 0.25)),
        usual_high=round(quantile(history, 0.75)),
        samples=samples,
    )
