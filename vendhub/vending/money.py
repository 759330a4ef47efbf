"""Money: an integer amount of minor units (cents, kopecks) and its ISO 4217 currency."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

_CURRENCY = re.compile(r"[A-Z]{3}")
# Currencies whose minor unit is not 1/100 (ISO 4217, and bitcoin in satoshis, as gateways
# such as BTCPay give it); every other currency has two decimals.
_DECIMALS = {
    "BTC": 8,
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),
}


class AmountError(ValueError):
    """A decimal amount that is not a whole number of its currency's minor units."""


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


def decimals(currency: str) -> int:
    """The places after the decimal point of ``currency``'s minor unit (2 for most)."""
    return _DECIMALS.get(currency, 2)


def to_decimal_text(money: Money) -> str:
    """``Money(1050, "RUB")`` → ``"10.50"``, as payment gateways write amounts."""
    places = decimals(money.currency)
    return f"{Decimal(money.amount).scaleb(-places):.{places}f}"


def from_decimal_text(value: Any, currency: Any) -> Money:
    """A gateway's ``"10.5"`` (or a number) in ``"EUR"`` → ``Money(1050, "EUR")``.

    Raises ``AmountError`` for anything that is not whole minor units of the currency.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not isinstance(currency, str):
        raise AmountError("an amount needs a decimal value and a string currency")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise AmountError(f"amount value {value[:32]!r} is not a decimal number") from None
    minor = number.scaleb(decimals(currency)) if number.is_finite() else None
    if minor is None or minor != minor.to_integral_value():
        raise AmountError(f"amount {value[:32]!r} is not whole minor units of {currency[:8]}")
    try:
        return Money(int(minor), currency)
    except ValueError as error:
        raise AmountError(str(error)) from None


def describe(money: Money | None) -> str:
    """``"10.50 RUB"`` for logs and messages; a gateway amount that could not be read says so."""
    return (
        f"{to_decimal_text(money)} {money.currency}"
        if money is not None
        else "an unreadable amount"
    )
