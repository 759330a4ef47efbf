"""Small pieces of the alarm messages operators read: money, times, durations, ranges."""

from __future__ import annotations

from datetime import datetime, tzinfo

# Currencies whose minor unit is not a hundredth (ISO 4217 exponents other than 2).
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


def money(amount: int, currency: str) -> str:
    """``EUR 45.00`` from 4500 minor units; ``JPY 450`` from 450."""
    exponent = _EXPONENTS.get(currency.upper(), 2)
    if exponent == 0:
        return f"{currency} {amount}"
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**exponent)
    return f"{currency} {sign}{whole}.{fraction:0{exponent}d}"


def clock(moment: datetime, tz: tzinfo) -> str:
    """``14:02``: the local time of day."""
    return moment.astimezone(tz).strftime("%H:%M")


def duration(seconds: float) -> str:
    """``40 s``, ``4 min``, ``2 h 5 min``, ``3 days``: a span an operator reads at a glance."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h" if rest == 0 else f"{hours} h {rest} min"
    days = round(hours / 24)
    return f"{days} days"


def count_range(low: int, high: int) -> str:
    """``3-7``, or ``5`` when both ends are the same."""
    return str(low) if low == high else f"{low}-{high}"


def percent(fraction: float) -> str:
    """``35%``."""
    return f"{round(fraction * 100)}%"


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 item``, ``3 items``."""
    word = singular if count == 1 else (plural_form or f"{singular}s")
    return f"{count} {word}"
