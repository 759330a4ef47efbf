"""Resolving sessions the journal left open, and the ledger written once by a real recorder.

(The same, with a hub process killed by SIGKILL: tests/integrations/vending/test_restart.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.vending.conftest import Machine
from vendhub.core.context import Context
from vendhub.core.hub import Hub
from vendhub.recorder.models import Payment, StockMovement, VendTransaction
from vendhub.recorder.recorder import Recorder, RecorderConfig
from vendhub.vending.dispenser import DispenseOutcome, DispenseResult
from vendhub.vending.journal import VendJournal, read_journal
from vendhub.vending.money import Money
from vendhub.vending.payment import PaymentMethod, PaymentRequest
from vendhub.vending.session import SessionState, VendOutcome, VendSession
from vendhub_integrations.alarm import vendhub_setup as alarm_setup
from vendhub_integrations.vending.instant_payment import InstantPaymentProvider, read_ledger


def done(ledger: list[dict], op: str) -> int:
    return sum(1 for record in ledger if record["op"] == op and record["effect"] == "done")


async def start_recorder(hub: Hub, tmp_path: Path) -> Recorder:
    recorder = Recorder(hub, RecorderConfig(db_url=f"sqlite:///{tmp_path / 'ledger.db'}"))
    await recorder.async_start()
    hub.data["recorder"] = recorder
    return recorder


def count(recorder: Recorder, model: type) -> int:
    with recorder.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar())


async def test_the_ledger_gets_each_vend_once_through_the_recorder(
    machine: Machine, hub: Hub, tmp_path: Path
) -> None:
    recorder = await start_recorder(hub, tmp_path)
    engine = await machine.start()
    sold = await engine.async_select(slot="A1", method="card")
    await engine.async_wait(sold.id, timeout=5)
    engine.machine.dispenser.inject("A2", DispenseOutcome.jammed)
    jammed = await engine.async_select(slot="A2", method="card")
    await engine.async_wait(jammed.id, timeout=5)
    await recorder.async_flush()
    for _ in range(50):
        entry = machine.journals[0].entry(jammed.id)
        if entry is not None and entry.recorded:
            break
        await asyncio.sleep(0.02)
    assert machine.journals[0].entry(sold.id).recorded

    with recorder.engine.connect() as connection:
        rows = connection.execute(
            select(
                VendTransaction.source_event_id,
                VendTransaction.outcome,
                VendTransaction.failure_reason,
                VendTransaction.price,
                VendTransaction.payment_method,
            ).order_by(VendTransaction.id)
        ).all()
        payment = connection.execute(select(Payment.provider, Payment.provider_reference)).one()
        movement = connection.execute(
            select(StockMovement.slot_code, StockMovement.quantity, StockMovement.stock_after)
        ).one()
    assert rows == [
        (sold.id, "completed", None, 150, "card"),
        (jammed.id, "failed", "jammed", 100, "card"),
    ]
    assert payment == ("instant", f"instant-{sold.id}")
    assert movement == ("A1", -1, 4)

    # A restart that finds them unrecorded fires them again: still one row each.
    await machine.journals[0].async_set_flags(sold.id, recorded=False)
    await machine.journals[0].async_set_flags(jammed.id, recorded=False)
    await machine.stop()
    engine = await machine.start()
    assert {item.id for item in engine.resolved_after_restart} == {sold.id, jammed.id}
    await recorder.async_flush()
    assert count(recorder, VendTransaction) == 2
    assert count(recorder, Payment) == 1
    assert count(recorder, StockMovement) == 1
    for _ in range(50):
        if all(machine.journals[-1].entry(sid).recorded for sid in (sold.id, jammed.id)):
            break
        await asyncio.sleep(0.02)
    assert all(machine.journals[-1].entry(sid).recorded for sid in (sold.id, jammed.id))
    await machine.stop()
    await hub.async_stop()
    await recorder.async_stop()


async def test_a_session_cut_off_while_dispensing_is_voided_once(
    machine: Machine, hub: Hub
) -> None:
    await alarm_setup(hub=hub)
    engine = await machine.start(dispense_time=30)
    session = await engine.async_select(slot="A1", method="card")
    for _ in range(200):
        if engine.machine.dispenser.commands:
            break
        await asyncio.sleep(0.01)
    # The hub dies here: the run is cut off mid-dispense, nothing else happens.
    engine._tasks[session.id].cancel()
    await asyncio.sleep(0)
    await machine.journals[0].async_close()
    machine.engines.clear()
    machine.journals.clear()

    engine = await machine.start()
    (resolved,) = engine.resolved_after_restart
    assert resolved.id == session.id
    assert resolved.outcome is VendOutcome.dispense_failed
    assert resolved.reason == "dispense_unknown_after_restart"
    assert engine.stock["A1"] == 5
    ledger = read_ledger(machine.ledger_file)
    assert done(ledger, "void") == 1 and done(ledger, "capture") == 0
    alarm = hub.states.get("alarm.lobby_1_vend_dispense_failed")
    assert alarm is not None and "dispense_unknown_after_restart" in alarm.attributes["message"]
    await machine.stop()
    await machine.start()
    assert done(read_ledger(machine.ledger_file), "void") == 1
    (row,) = read_journal(machine.journal_path)
    assert row["state"] == "failed" and row["recorded"] and row["resolved_after_restart"]


async def crafted(
    machine: Machine, hub: Hub, state: SessionState, *, authorized: bool = True
) -> VendSession:
    """Journal a session left at ``state``, as a hub killed at that point leaves it."""
    provider = InstantPaymentProvider(hub, "lobby_1", {"ledger_file": str(machine.ledger_file)})
    session = VendSession(
        id=f"crafted{state.value}",
        machine_id="lobby_1",
        slot="A1",
        product="Cola",
        price=Money(150, "EUR"),
        method=PaymentMethod.card,
        context=Context(),
        started_at=time.time(),
        provider="instant",
        state=state,
        stock_after=5,
    )
    if authorized:
        authorization = await provider.async_authorize(
            PaymentRequest(session.id, "lobby_1", session.price, PaymentMethod.card, "A1", "Cola"),
            lambda step: None,
        )
        session = dataclasses.replace(session, authorization=authorization)
    if state in (SessionState.dispensed, SessionState.capturing, SessionState.captured):
        session = dataclasses.replace(
            session, dispense=DispenseResult(DispenseOutcome.dispensed, "A1", True), stock_after=4
        )
    if state is SessionState.captured:
        await provider.async_capture(session.authorization, session.price)
    journal = VendJournal(machine.journal_path)
    await journal.async_open()
    await journal.async_save(session, "crafted", "begin", stock=("A1", session.stock_after))
    await journal.async_close()
    return session


@pytest.mark.parametrize(
    ("state", "outcome", "voids", "captures", "ledger_event"),
    [
        (SessionState.authorized, VendOutcome.voided_error, 1, 0, None),
        (SessionState.dispensing, VendOutcome.dispense_failed, 1, 0, "vend_failed"),
        (SessionState.dispensed, VendOutcome.completed, 0, 1, "vend_completed"),
        (SessionState.capturing, VendOutcome.completed, 0, 1, "vend_completed"),
        (SessionState.captured, VendOutcome.completed, 0, 1, "vend_completed"),
        (SessionState.voiding, VendOutcome.voided_error, 1, 0, None),
    ],
)
async def test_each_open_state_is_resolved_once(
    machine: Machine,
    hub: Hub,
    events,
    state: SessionState,
    outcome: VendOutcome,
    voids: int,
    captures: int,
    ledger_event: str | None,
) -> None:
    session = await crafted(machine, hub, state)
    engine = await machine.start()
    (resolved,) = engine.resolved_after_restart
    assert resolved.outcome is outcome
    ledger = read_ledger(machine.ledger_file)
    assert done(ledger, "void") == voids
    assert done(ledger, "capture") == captures
    fired = events("vend_completed", "vend_failed")
    assert [event.event_type for event in fired] == ([ledger_event] if ledger_event else [])
    for event in fired:
        assert event.context.id == session.context.id
        assert event.data["event_id"] == session.id
    await machine.stop()
    # A second start finds nothing to do and takes no money again.
    engine = await machine.start()
    assert engine.resolved_after_restart == []
    assert read_ledger(machine.ledger_file) == ledger


async def lost_authorize(machine: Machine, hub: Hub, session_id: str = "lost1") -> VendSession:
    """A hub killed while the provider approved: the provider's authorize happened (its ledger
    has it), but the journal still says ``authorizing`` and has no authorization."""
    session = await crafted(machine, hub, SessionState.authorizing, authorized=False)
    provider = InstantPaymentProvider(hub, "lobby_1", {"ledger_file": str(machine.ledger_file)})
    await provider.async_authorize(
        PaymentRequest(session.id, "lobby_1", session.price, PaymentMethod.card, "A1", "Cola"),
        lambda step: None,
    )
    return session


def failing_release(machine: Machine, hub: Hub, times: int) -> list[InstantPaymentProvider]:
    provider = InstantPaymentProvider(hub, "lobby_1", {"ledger_file": str(machine.ledger_file)})
    provider.fail_next["release"] = times
    return [provider]


def release_steps(machine: Machine, session_id: str) -> list[tuple[str, str]]:
    (row,) = [row for row in read_journal(machine.journal_path) if row["id"] == session_id]
    return [(step, phase) for step, phase, _ in row["steps"] if step == "release"]


async def test_a_session_cut_off_while_authorizing_is_released_once(
    machine: Machine, hub: Hub, events
) -> None:
    session = await lost_authorize(machine, hub)
    engine = await machine.start()
    (resolved,) = engine.resolved_after_restart
    assert resolved.id == session.id
    assert resolved.outcome is VendOutcome.payment_error
    assert resolved.reason == "interrupted_while_authorizing"
    ledger = read_ledger(machine.ledger_file)
    assert [(record["op"], record["effect"]) for record in ledger] == [
        ("authorize", "done"),
        ("release", "done"),
    ]
    assert done(ledger, "void") == 0 and done(ledger, "capture") == 0
    assert release_steps(machine, session.id) == [("release", "begin"), ("release", "done")]
    assert events("vend_completed", "vend_failed") == []  # nothing reached the board
    await machine.stop()
    engine = await machine.start()
    assert engine.resolved_after_restart == []
    assert read_ledger(machine.ledger_file) == ledger
    (row,) = read_journal(machine.journal_path)
    assert row["state"] == "failed" and row["resolved_after_restart"]


async def test_a_release_with_nothing_at_the_provider_still_asks_it(
    machine: Machine, hub: Hub
) -> None:
    await crafted(machine, hub, SessionState.authorizing, authorized=False)
    engine = await machine.start()
    (resolved,) = engine.resolved_after_restart
    assert resolved.outcome is VendOutcome.payment_error
    assert resolved.reason == "interrupted_while_authorizing"
    assert [(r["op"], r["effect"]) for r in read_ledger(machine.ledger_file)] == [
        ("release", "nothing")
    ]


async def test_a_failed_release_is_tried_again_at_the_next_start(
    machine: Machine, hub: Hub
) -> None:
    await alarm_setup(hub=hub)
    session = await lost_authorize(machine, hub)
    engine = await machine.start(providers=failing_release(machine, hub, 1))
    assert engine.resolved_after_restart == []
    (row,) = read_journal(machine.journal_path)
    assert row["state"] == "authorizing" and not row["resolved_after_restart"]
    assert release_steps(machine, session.id) == [("release", "begin"), ("release", "error")]
    alarm = hub.states.get("alarm.lobby_1_vend_release_failed")
    assert alarm is not None
    assert "tried again at the next start" in alarm.attributes["message"]
    assert alarm.attributes["severity"] == "critical"
    # The machine sells meanwhile.
    sold = await engine.async_select(slot="A1", method="card")
    assert (await engine.async_wait(sold.id, timeout=5)).outcome is VendOutcome.completed
    await machine.stop()

    engine = await machine.start()
    (resolved,) = engine.resolved_after_restart
    assert resolved.id == session.id and resolved.reason == "interrupted_while_authorizing"
    assert done(read_ledger(machine.ledger_file), "release") == 1
    assert release_steps(machine, session.id)[-2:] == [("release", "begin"), ("release", "done")]


async def test_a_release_that_keeps_failing_is_closed_after_three_starts(
    machine: Machine, hub: Hub
) -> None:
    await alarm_setup(hub=hub)
    session = await lost_authorize(machine, hub)
    for _ in range(2):
        engine = await machine.start(providers=failing_release(machine, hub, 1))
        assert engine.resolved_after_restart == []
        await machine.stop()
    engine = await machine.start(providers=failing_release(machine, hub, 1))
    (resolved,) = engine.resolved_after_restart
    assert resolved.outcome is VendOutcome.payment_error
    assert resolved.reason == "release_failed"
    assert release_steps(machine, session.id).count(("release", "error")) == 3
    alarm = hub.states.get("alarm.lobby_1_vend_release_failed")
    assert alarm is not None and "release it at the provider by hand" in alarm.attributes["message"]
    assert session.id in alarm.attributes["message"]
    await machine.stop()
    engine = await machine.start()
    assert engine.resolved_after_restart == []
    assert done(read_ledger(machine.ledger_file), "release") == 0
