"""Money ↔ the gateway's amount objects (``{"value": "10.50", "currency": "RUB"}``)."""

from __future__ import annotations

from typing import Any

from vendhub.vending.money import AmountError, Money, from_decimal_text, to_decimal_text

to_value = to_decimal_text


def from_amount(amount: Any) -> Money:
    """A gateway ``{"value": "10.50", "currency": "RUB"}`` → ``Money(1050, "RUB")``."""
    if not isinstance(amount, dict):
        raise AmountError(f"expected an amount object, got {type(amount).__name__}")
    value = amount.get("value")
    if not isinstance(value, str):
        raise AmountError("an amount needs a string value and a string currency")
    return from_decimal_text(value, amount.get("currency"))


def as_amount(money: Money) -> dict[str, str]:
    return {"value": to_decimal_text(money), "currency": money.currency}


__all__ = ["AmountError", "as_amount", "from_amount", "to_value"]
