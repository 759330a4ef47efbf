"""Card vends end to end: the MDB card reader (``mdb``) and the serial board, each on its own
pty pair, under the hub's vend engine, with the recorder and alarms running."""

from __future__ import annotations

from vendhub.vending.money import Money
from vendhub.vending.session import SessionState, VendOutcome
from vendhub_integrations.mdb.emulator import MdbAdapterEmulator
from vendhub_integrations.serial_board.emulator import Fault

from .conftest import (
    SALE_EVENTS,
    SELECTION,
    VOIDED_DISPENSE_EVENTS,
    SerialLine,
    StartHub,
    assert_failure_in_ledger,
    assert_one_context,
    assert_sale_in_ledger,
    assert_stock_change_caused_by,
    card_payment,
)


def vend_lines(reader: MdbAdapterEmulator) -> list[str]:
    """The host's lines about vends (the set-up lines before them are left out)."""
    return [line for line in reader.host_lines() if line.startswith(("D,REQ", "D,END"))]


async def test_an_approved_card_vend_is_dispensed_then_captured(
    start_hub: StartHub, mdb_line: SerialLine
) -> None:
    machine = await start_hub([card_payment(mdb_line)])
    reader: MdbAdapterEmulator = mdb_line.emulator

    started = await machine.select("A1", "card")
    final = await machine.finish(started)

    assert (final.state, final.outcome) == (SessionState.completed, VendOutcome.completed)
    assert final.authorization is not None
    assert final.authorization.provider == "mdb"
    assert final.authorization.reference == f"mdb-{started.id}"
    assert final.authorization.amount == Money(150, "EUR")
    # The reader: one vend request for 1.50, approved, then vend success (D,END) and the
    # session complete (the reader back to IDLE); nothing reversed.
    assert vend_lines(reader) == ["D,REQ,1.50,101", "D,END"]
    assert reader.charged == ["1.50"] and reader.reversed == []
    transcript = reader.transcript
    end = transcript.index(("host", "D,END"))
    assert ("adapter", "d,STATUS,RESULT,1,1.50") in transcript[:end]
    assert transcript[end + 1] == ("adapter", "d,STATUS,IDLE")
    # The board drove selection 1 once; the stock went down by one, in the engine and entity.
    assert machine.drives() == [SELECTION["A1"]]
    assert final.stock_after == 4 and machine.engine.stock["A1"] == 4
    assert machine.slot_state("A1") == "4"
    assert_one_context(machine.events, final, SALE_EVENTS)
    assert_stock_change_caused_by(machine.events, final, "A1")
    ledger = await machine.recorded(final)
    assert_sale_in_ledger(
        ledger,
        final,
        provider="mdb",
        method="card",
        reference=f"mdb-{started.id}",
        amount=150,
        stock_after=4,
    )
    assert machine.alarms() == []


async def test_a_jammed_card_vend_is_voided_at_the_reader_and_alarmed(
    start_hub: StartHub, mdb_line: SerialLine
) -> None:
    machine = await start_hub([card_payment(mdb_line)])
    reader: MdbAdapterEmulator = mdb_line.emulator
    machine.board.inject(Fault.jam, selection=SELECTION["B2"])

    started = await machine.select("B2", "card")
    final = await machine.finish(started)

    assert (final.state, final.outcome) == (SessionState.failed, VendOutcome.dispense_failed)
    assert final.reason == "jammed"
    assert final.dispense is not None and final.dispense.outcome.value == "jammed"
    # Approved, then reversed with vend failure (D,END,-1): nothing taken.
    assert vend_lines(reader) == ["D,REQ,1.20,202", "D,END,-1"]
    assert reader.charged == [] and reader.reversed == ["1.20"]
    assert machine.drives() == [SELECTION["B2"]]
    assert machine.engine.stock["B2"] == 5 and machine.slot_state("B2") == "5"
    assert [
        event
        for event in machine.events.of("state_changed")
        if event.data["entity_id"] == "slot.lobby_1_b2"
    ] == []
    assert_one_context(machine.events, final, VOIDED_DISPENSE_EVENTS)
    (alarm,) = machine.alarms()
    assert (alarm["code"], alarm["severity"], alarm["machine_id"]) == (
        "vend_dispense_failed",
        "warning",
        "lobby_1",
    )
    assert alarm["data"]["session_id"] == started.id and alarm["data"]["reason"] == "jammed"
    (raised,) = machine.events.of("alarm_raised")
    assert raised.context.id == final.context.id
    ledger = await machine.recorded(final)
    assert_failure_in_ledger(ledger, final, "jammed")


async def test_a_card_vend_without_a_drop_is_voided_and_the_next_one_sells(
    start_hub: StartHub, mdb_line: SerialLine
) -> None:
    machine = await start_hub([card_payment(mdb_line)])
    reader: MdbAdapterEmulator = mdb_line.emulator
    machine.board.inject(Fault.no_drop, selection=SELECTION["A1"])

    failed = await machine.finish(await machine.select("A1", "card"))

    assert failed.outcome is VendOutcome.dispense_failed and failed.reason == "not_dropped"
    assert failed.dispense is not None and failed.dispense.drop_confirmed is False
    assert reader.charged == [] and reader.reversed == ["1.50"]
    assert machine.engine.stock["A1"] == 5
    (alarm,) = machine.alarms()
    assert alarm["code"] == "vend_dispense_failed"
    assert alarm["data"]["reason"] == "not_dropped"
    assert_one_context(machine.events, failed, VOIDED_DISPENSE_EVENTS)
    ledger = await machine.recorded(failed)
    assert_failure_in_ledger(ledger, failed, "not_dropped")

    # The fault was one-shot: the customer tries again and gets the product.
    sold = await machine.finish(await machine.select("A1", "card"))
    assert sold.outcome is VendOutcome.completed
    assert reader.charged == ["1.50"] and reader.reversed == ["1.50"]
    assert machine.drives() == [SELECTION["A1"], SELECTION["A1"]]
    assert machine.engine.stock["A1"] == 4
    ledger = await machine.recorded(sold)
    assert [vend["outcome"] for vend in ledger.vends] == ["failed", "completed"]
    assert len(ledger.payments) == 1 and ledger.payments[0]["source_event_id"] == sold.id


async def test_a_sale_is_in_the_ledger_once_across_a_repeat_and_a_restart(
    start_hub: StartHub, mdb_line: SerialLine
) -> None:
    machine = await start_hub([card_payment(mdb_line)])
    reader: MdbAdapterEmulator = mdb_line.emulator
    sold = await machine.finish(await machine.select("A1", "card"))
    first = await machine.recorded(sold)
    assert (len(first.vends), len(first.payments), len(first.stock_movements)) == (1, 1, 1)

    # The same sale reported again (as a retry would) is recognised by its event id.
    (completed,) = machine.events.of("vend_completed")
    machine.hub.bus.async_fire("vend_completed", dict(completed.data), context=completed.context)
    repeat = await machine.events.wait_for(
        lambda event: event.event_type == "money_recorded" and event.data["duplicate"]
    )
    assert repeat.data["event_id"] == sold.id
    assert await machine.ledger() == first

    # A restart on the same journal and database settles nothing twice.
    await machine.hub.async_stop()
    again = await start_hub([card_payment(mdb_line)])
    assert again.engine.resolved_after_restart == []
    assert again.engine.stock["A1"] == 4 and again.slot_state("A1") == "4"
    sold_again = await again.finish(await again.select("A1", "card"))
    assert sold_again.outcome is VendOutcome.completed
    ledger = await again.recorded(sold_again)
    assert [vend["source_event_id"] for vend in ledger.vends] == [sold.id, sold_again.id]
    assert [payment["source_event_id"] for payment in ledger.payments] == [sold.id, sold_again.id]
    assert [movement["stock_after"] for movement in ledger.stock_movements] == [4, 3]
    assert reader.charged == ["1.50", "1.50"]
    assert again.drives() == [SELECTION["A1"], SELECTION["A1"]]
