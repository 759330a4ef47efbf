"""Money of the hub (integer minor units) ↔ the units an MDB device counts in.

Every MDB payment device announces, in its setup reply, a *scale factor* and a number of
*decimal places*: a value ``n`` on the wire means ``n * scale_factor * 10^-decimal_places`` of
the currency. A price the device cannot express (not a whole number of its units, or more
than its field holds) is refused here with a message that says why, never rounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from vendhub.vending.money import Money

# ISO 4217 exponents other than 2.
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip

# ISO 4217 numeric codes, for checking the currency a device announces (MDB sends it as
# 0x1nnn: a leading 1, then the numeric code in BCD).
_NUMERIC = {
    "AUD": 36, "CAD": 124, "CHF": 756, "CNY": 156, "CZK": 203, "DKK": 208, "EUR": 978,
    "GBP": 826, "HUF": 348, "JPY": 392, "KZT": 398, "NOK": 578, "PLN": 985, "RUB": 643,
    "SEK": 752, "TRY": 949, "UAH": 980, "USD": 840,
}  # fmt: skip


class NotExpressible(ValueError):
    """An amount that the device's units cannot represent exactly."""


def currency_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (2 for EUR, 0 for JPY)."""
    return _EXPONENTS.get(currency.upper(), 2)


def currency_matches(announced_code: int | None, currency: str) -> bool | None:
    """Whether a device's MDB currency code (``1978`` for EUR) is ``currency``.

    None when the code says nothing we can check (a country code, or a currency not in
    the table).
    """
    if announced_code is None or not 1000 <= announced_code <= 1999:
        return None
    expected = _NUMERIC.get(currency.upper())
    if expected is None:
        return None
    return announced_code - 1000 == expected


@dataclass(frozen=True, slots=True)
class Scaling:
    """How one device counts money: ``scale_factor`` and ``decimal_places``."""

    scale_factor: int
    decimal_places: int
    max_units: int = 0xFFFF

    def __post_init__(self) -> None:
        if self.scale_factor < 1:
            raise ValueError(f"an MDB scale factor is at least 1, got {self.scale_factor}")
        if not 0 <= self.decimal_places <= 6:
            raise ValueError(f"MDB decimal places are 0..6, got {self.decimal_places}")

    def to_units(self, money: Money) -> int:
        """``money`` as a count of the device's units; NotExpressible if it is not whole."""
        exponent = currency_exponent(money.currency)
        if money.amount < 0:
            raise NotExpressible(f"{money} is negative")
        if self.decimal_places >= exponent:
            smallest = money.amount * 10 ** (self.decimal_places - exponent)
        else:
            smallest, rest = divmod(money.amount, 10 ** (exponent - self.decimal_places))
            if rest:
                raise NotExpressible(
                    f"{money} needs {exponent} decimal places; the device has {self.decimal_places}"
                )
        units, rest = divmod(smallest, self.scale_factor)
        if rest:
            raise NotExpressible(
                f"{money} is not a multiple of the device's smallest step "
                f"({self.step_text()} {money.currency}, scale factor {self.scale_factor}, "
                f"{self.decimal_places} decimal places)"
            )
        if units > self.max_units:
            raise NotExpressible(
                f"{money} is more than the device can express ({self.max_units} units of "
                f"{self.step_text()} {money.currency})"
            )
        return units

    def from_units(self, units: int, currency: str) -> Money:
        """A count of the device's units as Money of ``currency``."""
        exponent = currency_exponent(currency)
        smallest = units * self.scale_factor
        if exponent >= self.decimal_places:
            return Money(smallest * 10 ** (exponent - self.decimal_places), currency)
        amount, rest = divmod(smallest, 10 ** (self.decimal_places - exponent))
        if rest:
            raise NotExpressible(
                f"{units} units of the device are finer than the minor unit of {currency}"
            )
        return Money(amount, currency)

    def to_text(self, money: Money) -> str:
        """The amount as the Qibixx text protocol writes it: ``1`` or ``1.20``.

        Whole amounts go without decimals (the adapter's documentation writes ``D,REQ,1,5``),
        others with the device's decimal places (``D,REQ,1.20,10``).
        """
        units = self.to_units(money)
        value = Decimal(units * self.scale_factor).scaleb(-self.decimal_places)
        if value == value.to_integral_value():
            return str(int(value))
        return f"{value:.{self.decimal_places}f}"

    def parse_text(self, text: str, currency: str) -> Money:
        """An amount written by the adapter (``1.20``) as Money of ``currency``."""
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise NotExpressible(f"{text!r} is not an amount") from None
        minor = value.scaleb(currency_exponent(currency))
        if minor != minor.to_integral_value() or not value.is_finite():
            raise NotExpressible(f"{text} is finer than the minor unit of {currency}")
        return Money(int(minor), currency)

    def step_text(self) -> str:
        """The smallest amount the device can express, as text (``0.05``)."""
        step = Decimal(self.scale_factor).scaleb(-self.decimal_places)
        return f"{step:.{self.decimal_places}f}" if self.decimal_places else str(step)
