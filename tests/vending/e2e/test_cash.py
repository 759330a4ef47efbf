"""A cash vend end to end: coins and a bill into the MDB changer and validator (``mdb_cash``
on the adapter's pty pair), the product from the serial board, the change from the tubes."""

from __future__ import annotations

from vendhub.vending.money import Money
from vendhub.vending.session import SessionState, VendOutcome
from vendhub_integrations.mdb.emulator import MdbAdapterEmulator

from .conftest import (
    SALE_EVENTS,
    SELECTION,
    SerialLine,
    StartHub,
    assert_one_context,
    assert_sale_in_ledger,
    assert_stock_change_caused_by,
    cash_payment,
    wait_until,
)

TUBES_AT_START = {5: 10, 10: 10, 20: 10, 50: 10}


async def test_coins_and_a_bill_buy_a_sandwich_and_the_change_comes_from_the_tubes(
    start_hub: StartHub, mdb_line: SerialLine
) -> None:
    machine = await start_hub([cash_payment(mdb_line)])
    adapter: MdbAdapterEmulator = mdb_line.emulator
    assert adapter.tube_levels() == TUBES_AT_START

    started = await machine.select("C3", "cash")  # 6.20
    await wait_until(
        lambda: adapter.changer.enabled and adapter.validator.enabled, what="acceptance on"
    )
    assert adapter.insert_coin(100) == "cash_box"  # 1 € coins do not go to a tube
    assert adapter.insert_coin(50) == "tubes"
    await wait_until(
        lambda: (machine.engine.session(started.id) or started).progress.get("credit") == 150,
        what="a credit of 1.50",
    )
    assert adapter.insert_bill(500) == "escrow"
    final = await machine.finish(started)

    assert (final.state, final.outcome) == (SessionState.completed, VendOutcome.completed)
    assert final.authorization is not None
    assert final.authorization.provider == "mdb_cash"
    assert final.authorization.credit == Money(650, "EUR")
    credits = [
        event.data["progress"]["credit"]
        for event in machine.events.about(started, "vend_session_updated")
        if event.data["progress"].get("step") == "insert_cash"
    ]
    assert credits[-1] == 650 and 150 in credits
    # The bill completed the price, so it waited in escrow and was stacked at the capture.
    host = adapter.host_lines()
    assert "R,35,01" in host and "R,35,00" not in host
    assert dict(adapter.validator.stacked) == {500: 1}
    assert adapter.validator.returned == []
    # 30 cents of change, paid when the multi-vend wait (0.3 s) ended: 20 + 10 from the tubes.
    await wait_until(lambda: sum(adapter.changer.paid_out) == 30, what="the change paid")
    await wait_until(
        lambda: (machine.engine.session(started.id) or final).change is not None,
        what="the change on the session",
    )
    closed = machine.engine.session(started.id)
    assert closed is not None and closed.change == Money(30, "EUR")
    assert sorted(adapter.changer.paid_out, reverse=True) == [20, 10]
    assert adapter.tube_levels() == {5: 10, 10: 9, 20: 9, 50: 11}
    assert dict(adapter.changer.cash_box) == {100: 1}
    # The board drove selection 23 once; the stock went down by one.
    assert machine.drives() == [SELECTION["C3"]]
    assert machine.engine.stock["C3"] == 2 and machine.slot_state("C3") == "2"
    assert_one_context(machine.events, final, SALE_EVENTS)
    assert_stock_change_caused_by(machine.events, final, "C3")
    ledger = await machine.recorded(final)
    assert_sale_in_ledger(
        ledger,
        final,
        provider="mdb_cash",
        method="cash",
        reference=f"mdb-cash-{started.id}",
        amount=620,
        stock_after=2,
    )
    assert machine.alarms() == []
