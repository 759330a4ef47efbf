"""Minor units ↔ BTCPay's decimal strings, the webhook signature, and the option checks."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import voluptuous as vol

from vendhub.vending.money import AmountError, Money, from_decimal_text, to_decimal_text
from vendhub_integrations import crypto
from vendhub_integrations.crypto import CryptoProvider
from vendhub_integrations.crypto.webhook import signature


@pytest.mark.parametrize(
    ("value", "currency", "money"),
    [
        ("2.5", "EUR", Money(250, "EUR")),
        ("2.50", "EUR", Money(250, "EUR")),
        ("0.00012345", "BTC", Money(12345, "BTC")),
        ("300", "JPY", Money(300, "JPY")),
    ],
)
def test_btcpay_amounts_become_minor_units(value: str, currency: str, money: Money) -> None:
    assert from_decimal_text(value, currency) == money


def test_minor_units_become_btcpay_amounts() -> None:
    assert to_decimal_text(Money(250, "EUR")) == "2.50"
    assert to_decimal_text(Money(12345, "BTC")) == "0.00012345"


def test_an_amount_finer_than_the_currency_is_refused() -> None:
    with pytest.raises(AmountError, match="not whole minor units of EUR"):
        from_decimal_text("2.505", "EUR")


def test_the_signature_is_btcpays_hmac_of_the_body() -> None:
    body = b'{"type":"InvoiceSettled"}'
    expected = hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    assert signature("secret", body) == f"sha256={expected}"


def test_options_check_the_speed_policy() -> None:
    schema = vol.Schema(dict(CryptoProvider.OPTIONS))
    base = {"server_url": "https://btcpay.example", "store_id": "s", "api_key": "k"}
    with pytest.raises(vol.Invalid, match="speed_policy"):
        schema({**base, "speed_policy": "Fastest"})
    options = schema(base)
    assert (options["speed_policy"], options["expiration_minutes"]) == ("HighSpeed", 15)
    assert set(CryptoProvider.SECRET_OPTIONS) == {"api_key", "webhook_secret"}


def test_the_hook_provides_the_platform_and_nothing_else() -> None:
    assert crypto.vendhub_payment_provider(platform="crypto") is CryptoProvider
    assert crypto.vendhub_payment_provider(platform="qr_gateway") is None
