"""Money: an integer amount of minor units (cents, kopecks) and its ISO 4217 currency."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CURRENCY = re.compile(r"[A-Z]{3}")


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were combined."""


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """``amount`` minor units of ``currency``; never a float."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount) is not int:
            raise TypeError(f"money is whole minor units, got {self.amount!r}")
        if not _CURRENCY.fullmatch(self.currency):
            raise ValueError(f"expected an ISO 4217 currency such as EUR, got {self.currency!r}")

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self} and {other}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} (minor units)"

    def as_dict(self) -> dict[str, int | str]:
        return {"amount": self.amount, "currency": self.currency}
