"""A wallet vend end to end: a prepaid account in the recorder's database pays, the serial
board drops, the balance goes down by the price and the points up by the bonus rule."""

from __future__ import annotations

from typing import Any

from tests.integrations.wallet.helpers import rows as wallet_rows
from vendhub.vending.money import Money
from vendhub.vending.session import SessionState, VendOutcome
from vendhub_integrations.serial_board.emulator import Fault

from .conftest import (
    SALE_EVENTS,
    SELECTION,
    VOIDED_DISPENSE_EVENTS,
    StartHub,
    VendingHub,
    assert_failure_in_ledger,
    assert_one_context,
    assert_sale_in_ledger,
    assert_stock_change_caused_by,
)

NFC_UID = "04:A2:3B:1C:5D:80"
WALLET_BLOCK = {"wallet": {"rules": {"percent_back": 5}}}


async def wallet(machine: VendingHub, service: str, **data: Any) -> Any:
    return await machine.hub.services.async_call("wallet", service, data)


async def start_with_account(start_hub: StartHub, balance: int) -> tuple[VendingHub, str]:
    machine = await start_hub([{"platform": "wallet"}], blocks=WALLET_BLOCK)
    created = await wallet(machine, "create_account", token=NFC_UID, display_name="Ann")
    await wallet(machine, "top_up", token=NFC_UID, amount=balance, source_id="till-1")
    return machine, str(created["account_id"])


async def test_a_wallet_vend_takes_the_price_and_gives_the_bonus_points(
    start_hub: StartHub,
) -> None:
    machine, account_id = await start_with_account(start_hub, 1000)

    started = await machine.select("A1", "e_wallet", token=NFC_UID)
    final = await machine.finish(started)

    assert (final.state, final.outcome) == (SessionState.completed, VendOutcome.completed)
    assert final.authorization is not None
    assert final.authorization.provider == "wallet"
    assert final.authorization.reference == f"{account_id}:{started.id}"
    assert final.authorization.amount == Money(150, "EUR")
    assert NFC_UID not in repr(final.as_dict()), "the token is never shown"
    balance = await wallet(machine, "balance", token=NFC_UID)
    # 1000 - 150; 5 % of 150 is 7 points (a point is one minor unit, rounded down).
    assert (balance["balance"], balance["held"], balance["points"]) == (850, 0, 7)
    assert (balance["vends"], balance["currency"]) == (1, "EUR")
    assert await wallet_rows(machine.hub) == [
        ("topup", 1000, 0, "topup:till-1"),
        ("hold", -150, 0, f"hold:{started.id}"),
        ("release", 150, 0, f"release:{started.id}"),
        ("spend", -150, 7, f"spend:{started.id}"),
    ]
    assert machine.drives() == [SELECTION["A1"]]
    assert machine.engine.stock["A1"] == 4 and machine.slot_state("A1") == "4"
    assert_one_context(machine.events, final, SALE_EVENTS)
    assert_stock_change_caused_by(machine.events, final, "A1")
    ledger = await machine.recorded(final)
    assert_sale_in_ledger(
        ledger,
        final,
        provider="wallet",
        method="e_wallet",
        reference=f"{account_id}:{started.id}",
        amount=150,
        stock_after=4,
    )


async def test_a_jammed_wallet_vend_releases_the_hold_and_gives_no_points(
    start_hub: StartHub,
) -> None:
    machine, _account_id = await start_with_account(start_hub, 1000)
    machine.board.inject(Fault.jam, selection=SELECTION["B2"])

    started = await machine.select("B2", "e_wallet", token=NFC_UID)
    final = await machine.finish(started)

    assert (final.outcome, final.reason) == (VendOutcome.dispense_failed, "jammed")
    balance = await wallet(machine, "balance", token=NFC_UID)
    assert (balance["balance"], balance["held"], balance["points"]) == (1000, 0, 0)
    assert await wallet_rows(machine.hub) == [
        ("topup", 1000, 0, "topup:till-1"),
        ("hold", -120, 0, f"hold:{started.id}"),
        ("release", 120, 0, f"release:{started.id}"),
    ]
    assert machine.drives() == [SELECTION["B2"]]
    assert machine.engine.stock["B2"] == 5
    assert [alarm["code"] for alarm in machine.alarms()] == ["vend_dispense_failed"]
    assert_one_context(machine.events, final, VOIDED_DISPENSE_EVENTS)
    assert_failure_in_ledger(await machine.recorded(final), final, "jammed")
