"""The statistics behind the sales rule, and which hours it compares."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vendhub.anomaly.robust import count_band, mad, median, poisson_lower, poisson_upper, quantile
from vendhub.anomaly.sales_history import comparable_hours


def test_median_mad_quantile() -> None:
    assert median([5, 1, 3]) == 3
    assert median([4, 1, 3, 2]) == 2.5
    assert mad([1, 2, 3, 4, 100]) == 1
    assert quantile([0, 10], 0.25) == 2.5
    with pytest.raises(ValueError, match="no values"):
        median([])


def test_poisson_limits() -> None:
    # Rate 2: P(X > 10) = 8.3e-6 <= 3.2e-5 < P(X > 9) = 4.6e-5.
    assert poisson_upper(2.0, 3.2e-5) == 10
    # Rate 30: P(X < 11) = 2.3e-5 <= 3.2e-5 < P(X < 12) = 6.4e-5.
    assert poisson_lower(30.0, 3.2e-5) == 11
    assert poisson_lower(0.0, 3.2e-5) == 0
    assert poisson_upper(10_000.0, 3.2e-5) == pytest.approx(10_000 + 4.0 * 100 + 1, rel=1e-3)


def test_the_band_holds_ordinary_hours_and_not_spikes() -> None:
    rng = random.Random(7)
    false_alarms = 0
    for rate in (0.5, 2, 6, 12, 30):
        for _ in range(200):
            history = [_poisson(rng, rate) for _ in range(7)]
            band = count_band(history, 4, 5)
            false_alarms += sum(band.judge(_poisson(rng, rate)) is not None for _ in range(20))
    assert false_alarms == 0  # of 20,000 ordinary hours
    band = count_band([2, 3, 3, 5, 8, 2, 6], 4, 5)
    assert band.judge(10) is None
    assert band.judge(46) == "high"
    assert (band.usual_low, band.usual_high) == (2, 6)
    assert count_band([30] * 7, 4, 5).judge(0) == "low"
    # An earlier spike in the history widens the band a little, and does not move the middle.
    spiky = count_band([12, 8, 3, 3, 46, 6, 2], 4, 5)
    assert spiky.median == 6 and spiky.judge(40) == "high"


def test_comparable_hours_keep_the_local_hour_across_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # Noon in Berlin on Tuesday 2 April 2024 (summer time, 10:00 UTC).
    hour = datetime(2024, 4, 2, 10, tzinfo=UTC).timestamp()
    days = comparable_hours(hour, "hour_of_day", timedelta(days=3), berlin)
    assert [datetime.fromtimestamp(ts, berlin).strftime("%a %H:%M") for ts in days] == [
        "Mon 12:00",
        "Sun 12:00",  # 31 March: the clocks went forward that night
        "Sat 12:00",
    ]
    assert [datetime.fromtimestamp(ts, UTC).hour for ts in days] == [10, 10, 11]
    weeks = comparable_hours(hour, "hour_of_week", timedelta(days=14), berlin)
    assert [datetime.fromtimestamp(ts, berlin).strftime("%d %a %H:%M") for ts in weeks] == [
        "26 Tue 12:00",
        "19 Tue 12:00",
    ]
    recent = comparable_hours(hour, "recent_hours", timedelta(hours=3), berlin)
    assert recent == [hour - 3600, hour - 7200, hour - 10800]


def _poisson(rng: random.Random, rate: float) -> int:
    limit, count, product = pow(2.718281828459045, -rate), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
