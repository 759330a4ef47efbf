"""Minor units ↔ the gateway's decimal strings, and the provider's option checks."""

from __future__ import annotations

import pytest
import voluptuous as vol

from vendhub.vending.money import Money
from vendhub_integrations import qr_gateway
from vendhub_integrations.qr_gateway import QrGatewayProvider
from vendhub_integrations.qr_gateway.amounts import AmountError, as_amount, from_amount


@pytest.mark.parametrize(
    ("money", "value"),
    [
        (Money(150, "RUB"), "1.50"),
        (Money(5, "RUB"), "0.05"),
        (Money(1200, "JPY"), "1200"),
        (Money(1250, "KWD"), "1.250"),
    ],
)
def test_minor_units_and_values_go_both_ways(money: Money, value: str) -> None:
    assert as_amount(money) == {"value": value, "currency": money.currency}
    assert from_amount({"value": value, "currency": money.currency}) == money


@pytest.mark.parametrize(
    ("amount", "problem"),
    [
        ({"value": "1.505", "currency": "RUB"}, "not whole minor units of RUB"),
        ({"value": "abc", "currency": "RUB"}, "not a decimal number"),
        ({"value": 1.5, "currency": "RUB"}, "string value"),
        ({"value": "1.50", "currency": "rub"}, "ISO 4217"),
        ("1.50", "expected an amount object"),
    ],
)
def test_an_unusable_amount_says_what_is_wrong(amount: object, problem: str) -> None:
    with pytest.raises(AmountError, match=problem):
        from_amount(amount)


def test_options_name_the_bad_address() -> None:
    schema = vol.Schema(dict(QrGatewayProvider.OPTIONS))
    with pytest.raises(vol.Invalid, match=r"'185\.71\.76\.0/99' is not an IP address or CIDR"):
        schema({"shop_id": "1", "secret_key": "s", "allowed_sources": ["185.71.76.0/99"]})
    options = schema({"shop_id": "1", "secret_key": "s"})
    assert "185.71.76.0/27" in options["allowed_sources"]
    assert options["poll_interval"] == 5
    assert QrGatewayProvider.SECRET_OPTIONS == ("secret_key",)


def test_the_hook_provides_the_platform_and_nothing_else() -> None:
    assert qr_gateway.vendhub_payment_provider(platform="qr_gateway") is QrGatewayProvider
    assert qr_gateway.vendhub_payment_provider(platform="crypto") is None
