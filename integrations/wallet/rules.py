"""Bonus rules of the wallet: points back on what a customer spends, and every n-th vend free.

Configured under ``wallet: rules:``::

    wallet:
      rules:
        percent_back: 5      # 5 % of each captured amount back as points (1 point = 1 minor unit)
        nth_vend_free: 10    # the 10th, 20th, 30th ... vend of each customer costs nothing

Points are whole numbers, rounded down: 5 % of 150 cents is 7 points. A free vend earns no
points. Vends are counted per customer, across machines: every authorization that was not
voided counts, free ones too.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

import voluptuous as vol

MAX_PERCENT_BACK = Decimal(100)


def percent(value: Any) -> Decimal:
    """A percentage from 0 to 100 (``5``, ``2.5``, ``"2.5"``), kept exact as a Decimal."""
    if isinstance(value, bool):
        raise vol.Invalid(f"expected a percentage from 0 to 100, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise vol.Invalid(f"expected a percentage from 0 to 100, got {value!r}") from None
    if not number.is_finite() or not Decimal(0) <= number <= MAX_PERCENT_BACK:
        raise vol.Invalid(f"expected a percentage from 0 to 100, got {value!r}")
    return number


def _nth(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise vol.Invalid(
            f"expected a whole number of 2 or more (every n-th vend is free), got {value!r}"
        )
    return value


RULES_SCHEMA = vol.Schema(
    {
        vol.Optional("percent_back", default=0): percent,
        vol.Optional("nth_vend_free"): vol.Any(None, _nth),
    }
)


@dataclass(frozen=True, slots=True)
class BonusRules:
    """What a customer gets back; the defaults give nothing."""

    percent_back: Decimal = Decimal(0)
    nth_vend_free: int | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> BonusRules:
        """From the validated ``rules:`` block."""
        block = RULES_SCHEMA(config or {})
        return cls(block["percent_back"], block.get("nth_vend_free"))

    def points_for(self, spent: int) -> int:
        """Points earned by spending ``spent`` minor units (rounded down)."""
        if spent <= 0 or not self.percent_back:
            return 0
        points = Decimal(spent) * self.percent_back / Decimal(100)
        return int(points.to_integral_value(rounding=ROUND_FLOOR))

    def is_free(self, vend_number: int) -> bool:
        """Whether the customer's ``vend_number``-th vend (counting from 1) is free."""
        return self.nth_vend_free is not None and vend_number % self.nth_vend_free == 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the balance service and the README's examples."""
        return {"percent_back": str(self.percent_back), "nth_vend_free": self.nth_vend_free}
