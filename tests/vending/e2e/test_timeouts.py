"""Sessions that time out waiting for the customer charge nothing: the card reader's request
is cancelled, inserted coins come back, an unpaid QR payment is never taken (and cancelled at
the gateway if the customer pays after all)."""

from __future__ import annotations

from vendhub.vending.session import SessionState, VendOutcome, VendSession
from vendhub_integrations.mdb.emulator import MdbAdapterEmulator

from .conftest import (
    SerialLine,
    StartHub,
    VendingHub,
    assert_one_context,
    card_payment,
    cash_payment,
    wait_until,
)

PAYMENT_TIMEOUT = {"payment": 0.6}


async def assert_nothing_sold(machine: VendingHub, final: VendSession, slot: str) -> None:
    """No dispense, no stock change, no vend or payment events past the start, no ledger."""
    assert (final.state, final.outcome) == (SessionState.failed, VendOutcome.payment_timeout)
    assert final.authorization is None
    assert machine.drives() == []
    assert machine.engine.stock[slot] == 5 and machine.slot_state(slot) == "5"
    # No vend_failed: nothing reached the board.
    assert_one_context(machine.events, final, ["vend_started"])
    ledger = await machine.ledger()
    assert (ledger.vends, ledger.payments, ledger.stock_movements) == ([], [], [])
    assert machine.alarms() == []


async def test_a_card_never_presented_cancels_the_readers_request(
    start_hub: StartHub, mdb_line: SerialLine
) -> None:
    reader: MdbAdapterEmulator = mdb_line.emulator
    reader.present_delay = None  # the customer walks away
    machine = await start_hub([card_payment(mdb_line)], timeouts=PAYMENT_TIMEOUT)

    started = await machine.select("A1", "card")
    final = await machine.finish(started)

    await assert_nothing_sold(machine, final, "A1")
    vend_lines = [line for line in reader.host_lines() if line.startswith(("D,REQ", "D,END"))]
    assert vend_lines == ["D,REQ,1.50,101", "D,REQ,-1"]
    cancel = reader.transcript.index(("host", "D,REQ,-1"))
    assert reader.transcript[cancel + 1] == ("adapter", "d,STATUS,RESULT,-1")
    assert reader.charged == [] and reader.reversed == []


async def test_coins_inserted_before_the_timeout_are_returned(
    start_hub: StartHub, mdb_line: SerialLine
) -> None:
    adapter: MdbAdapterEmulator = mdb_line.emulator
    machine = await start_hub([cash_payment(mdb_line)], timeouts=PAYMENT_TIMEOUT)
    tubes_before = adapter.tube_levels()

    started = await machine.select("A1", "cash")  # 1.50
    await wait_until(lambda: adapter.changer.enabled, what="coin acceptance on")
    adapter.insert_coin(50)
    adapter.insert_coin(20)
    final = await machine.finish(started)

    await assert_nothing_sold(machine, final, "A1")
    credits = [
        event.data["progress"].get("credit")
        for event in machine.events.about(started, "vend_session_updated")
    ]
    assert 70 in credits, "the 70 cents were counted before the timeout"
    assert sorted(adapter.changer.paid_out, reverse=True) == [50, 20]
    assert adapter.tube_levels() == tubes_before
    assert adapter.changer.enabled == 0, "acceptance is off again"
