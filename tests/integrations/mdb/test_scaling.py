"""Hub money ↔ MDB device units, and the setup and poll bytes of the cash devices."""

from __future__ import annotations

import pytest

from vendhub.vending.money import Money
from vendhub_integrations.mdb import bill_validator, coin_changer
from vendhub_integrations.mdb.cashless import parse_reader_setup
from vendhub_integrations.mdb.scaling import NotExpressible, Scaling, currency_matches


def test_units_with_scale_factor_and_decimals() -> None:
    changer = Scaling(scale_factor=5, decimal_places=2)
    assert changer.to_units(Money(125, "EUR")) == 25
    assert changer.from_units(25, "EUR") == Money(125, "EUR")
    with pytest.raises(NotExpressible, match=r"smallest step \(0.05 EUR"):
        changer.to_units(Money(123, "EUR"))


def test_device_with_fewer_or_more_decimals_than_the_currency() -> None:
    one_decimal = Scaling(scale_factor=1, decimal_places=1)
    assert one_decimal.to_units(Money(120, "EUR")) == 12
    assert one_decimal.to_text(Money(120, "EUR")) == "1.2"
    with pytest.raises(NotExpressible, match="needs 2 decimal places"):
        one_decimal.to_units(Money(125, "EUR"))
    yen = Scaling(scale_factor=10, decimal_places=0)
    assert yen.to_units(Money(150, "JPY")) == 15
    assert yen.to_text(Money(150, "JPY")) == "150"
    three = Scaling(scale_factor=1, decimal_places=3)
    assert three.to_units(Money(5, "EUR")) == 50
    assert three.from_units(50, "EUR") == Money(5, "EUR")
    with pytest.raises(NotExpressible):
        three.from_units(55, "EUR")


def test_wire_text_as_the_adapter_writes_it() -> None:
    reader = Scaling(scale_factor=1, decimal_places=2)
    assert reader.to_text(Money(100, "EUR")) == "1"
    assert reader.to_text(Money(120, "EUR")) == "1.20"
    assert reader.parse_text("1.20", "EUR") == Money(120, "EUR")
    assert reader.parse_text("1.00", "EUR") == Money(100, "EUR")
    with pytest.raises(NotExpressible):
        reader.parse_text("1.205", "EUR")
    with pytest.raises(NotExpressible):
        reader.parse_text("abc", "EUR")
    with pytest.raises(NotExpressible, match="more than the device can express"):
        reader.to_units(Money(6_553_600, "EUR"))


def test_reader_setup_line() -> None:
    code, scaling = parse_reader_setup("d,STATUS,INIT,1,#,3,1756,1,2,30,8")
    assert code == 1756
    assert scaling == Scaling(scale_factor=1, decimal_places=2)
    assert currency_matches(code, "CHF") is True
    assert currency_matches(code, "EUR") is False
    assert currency_matches(None, "EUR") is None


def test_changer_setup_and_poll_bytes() -> None:
    # The C7900 of maehw/mdb-coin-controller: level 3, euro, scale 5, 2 decimals, tubes 0-3.
    setup = coin_changer.parse_setup(
        bytes.fromhex("031978050200 0F 0102040A1428".replace(" ", "")) + bytes(10)
    )
    assert setup.currency_code == 1978
    assert setup.scaling == Scaling(5, 2, max_units=0xFF)
    assert setup.coin_credits[:6] == (1, 2, 4, 10, 20, 40)
    assert setup.routable(3) and not setup.routable(4)
    events = coin_changer.parse_poll(bytes.fromhex("530742000B2192"))
    assert events == [
        coin_changer.CoinDeposited(coin_type=3, routing=1, coins_in_tube=7),
        coin_changer.CoinDeposited(coin_type=2, routing=0, coins_in_tube=0),
        coin_changer.ChangerStatus(0x0B),
        coin_changer.Slug(1),
        coin_changer.CoinsDispensedManually(coin_type=2, count=1, coins_in_tube=0),
    ]


def test_validator_setup_and_poll_bytes() -> None:
    setup = bill_validator.parse_setup(bytes.fromhex("01197800640201F40000FF050A1432") + bytes(12))
    assert setup.scaling == Scaling(100, 2, max_units=0xFF)
    assert setup.escrow is True
    assert setup.bill_credits[:4] == (5, 10, 20, 50)
    assert bill_validator.parse_poll(bytes.fromhex("9180A106")) == [
        bill_validator.BillRouted(1, bill_validator.ROUTE_ESCROW),
        bill_validator.BillRouted(0, bill_validator.ROUTE_STACKED),
        bill_validator.BillRouted(1, bill_validator.ROUTE_RETURNED),
        bill_validator.ValidatorStatus(0x06),
    ]
