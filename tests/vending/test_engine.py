"""The vend engine's state machine with the simulator board and the instant providers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.vending.conftest import PLANOGRAM, Machine
from vendhub.core.context import Context
from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.vending import engine as engine_module
from vendhub.vending.dispenser import DispenseOutcome, DispenserError
from vendhub.vending.engine import MachineSetup, Timeouts, VendEngine
from vendhub.vending.journal import VendJournal, read_journal
from vendhub.vending.money import Money
from vendhub.vending.payment import (
    Authorization,
    PaymentRequest,
    PaymentStatus,
    ProgressCallback,
)
from vendhub.vending.planogram import MachineMode
from vendhub.vending.session import SessionState, VendOutcome, VendRefused
from vendhub_integrations.alarm import vendhub_setup as alarm_setup
from vendhub_integrations.vending.instant_payment import InstantPaymentProvider, read_ledger
from vendhub_integrations.vending.simulator_board import SimulatorDispenser

Events = Callable[..., list[Event]]


def effective(ledger: list[dict], op: str) -> list[dict]:
    return [record for record in ledger if record["op"] == op and record["effect"] == "done"]


async def test_a_card_vend_runs_every_step_with_one_context(
    machine: Machine, events: Events, hub: Hub
) -> None:
    engine = await machine.start()
    caller = Context(user_id="user:kiosk")
    started = await engine.async_select(slot="A1", method="card", context=caller)
    assert started.state is SessionState.authorizing
    assert started.context.parent_id == caller.id
    assert started.context.user_id == "user:kiosk"

    final = await engine.async_wait(started.id, timeout=5)

    assert final.state is SessionState.completed
    assert final.outcome is VendOutcome.completed
    assert final.stock_after == 4 and engine.stock["A1"] == 4
    assert final.authorization is not None
    assert final.authorization.reference == f"instant-{started.id}"
    updates = [
        event.data
        for event in events("vend_session_updated")
        if event.data["session_id"] == started.id
    ]
    # Progress from the provider is an update too (the kiosk shows it), in the same state.
    assert {"step": "processing"} in [update["progress"] for update in updates]
    states = [update["state"] for update in updates]
    states = [
        state for index, state in enumerate(states) if index == 0 or states[index - 1] != state
    ]
    assert states == [
        "authorizing",
        "authorized",
        "dispensing",
        "dispensed",
        "capturing",
        "captured",
        "completed",
    ]
    session_events = [event for event in events() if event.context.id == started.context.id]
    assert [
        event.event_type for event in session_events if event.event_type != "vend_session_updated"
    ] == [
        "vend_started",
        "payment_authorized",
        "payment_captured",
        "vend_completed",
    ]
    # Every event of the session carries the session's one context.
    for event_type in ("vend_started", "payment_authorized", "payment_captured", "vend_completed"):
        (event,) = events(event_type)
        assert event.context.id == started.context.id
    (completed,) = events("vend_completed")
    assert completed.data["event_id"] == started.id
    assert completed.data["vend_id"] == started.id
    assert completed.data["price"] == 150 and completed.data["currency"] == "EUR"
    assert completed.data["payment_provider"] == "instant"
    assert completed.data["payment_method"] == "card"
    assert completed.data["payment_reference"] == f"instant-{started.id}"
    assert completed.data["stock"] == 4 and completed.data["product"] == "Cola"
    ledger = read_ledger(machine.ledger_file)
    assert [record["op"] for record in ledger] == ["authorize", "capture", "close"]
    steps = [(row.step, row.phase) for row in machine.journals[0].steps(started.id)]
    assert steps == [
        ("authorize", "begin"),
        ("authorize", "done"),
        ("dispense", "begin"),
        ("dispense", "done"),
        ("capture", "begin"),
        ("capture", "done"),
        ("record", "done"),
    ]
    entry = machine.journals[0].entry(started.id)
    assert entry is not None and entry.recorded and entry.session.state is SessionState.completed
    # The stock entity listener saw the change with a context caused by the session.
    assert machine.journals[0].stock("lobby_1")["A1"] == 4


async def test_refusals_name_the_reason(machine: Machine) -> None:
    engine = await machine.start()
    with pytest.raises(VendRefused) as refused:
        await engine.async_select(slot="Z9", method="card")
    assert refused.value.code is VendOutcome.unknown_slot
    with pytest.raises(VendRefused) as refused:
        await engine.async_select(slot="B1", method="card")
    assert refused.value.code is VendOutcome.sold_out
    assert "Chips" in refused.value.message
    with pytest.raises(VendRefused) as refused:
        await engine.async_select(slot="A1", method="cash")
    assert refused.value.code is VendOutcome.method_not_accepted
    assert "card" in refused.value.message
    with pytest.raises(VendRefused) as refused:
        await engine.async_select(slot="A1", method="bitcoins")
    assert refused.value.code is VendOutcome.method_not_accepted
    await engine.async_set_mode(MachineMode.service)
    with pytest.raises(VendRefused) as refused:
        await engine.async_select(slot="A1", method="card")
    assert refused.value.code is VendOutcome.service_mode
    await engine.async_set_mode("out_of_order")
    with pytest.raises(VendRefused) as refused:
        await engine.async_select(slot="A1", method="card")
    assert refused.value.code is VendOutcome.out_of_order
    assert read_ledger(machine.ledger_file) == []


async def test_a_mode_set_while_running_survives_a_restart_until_the_configuration_changes(
    machine: Machine,
) -> None:
    engine = await machine.start()
    await engine.async_set_mode(MachineMode.out_of_order)
    await machine.stop()

    engine = await machine.start()
    assert engine.mode is MachineMode.out_of_order
    with pytest.raises(VendRefused) as refused:
        await engine.async_select(slot="A1", method="card")
    assert refused.value.code is VendOutcome.out_of_order
    await machine.stop()

    # The operator edits the configuration's mode: that one applies from this start on.
    engine = await machine.start(mode=MachineMode.free_vend)
    assert engine.mode is MachineMode.free_vend
    await machine.stop()
    engine = await machine.start(mode=MachineMode.free_vend)
    assert engine.mode is MachineMode.free_vend
    await engine.async_set_mode(MachineMode.normal)
    await machine.stop()
    engine = await machine.start(mode=MachineMode.free_vend)
    assert engine.mode is MachineMode.normal


async def test_a_machine_serves_one_session_at_a_time(machine: Machine) -> None:
    engine = await machine.start(dispense_time=0.3)
    first = await engine.async_select(slot="A1", method="card")
    with pytest.raises(VendRefused) as refused:
        await engine.async_select(slot="A2", method="card")
    assert refused.value.code is VendOutcome.busy
    assert (await engine.async_wait(first.id, timeout=5)).outcome is VendOutcome.completed
    second = await engine.async_select(slot="A2", method="card")
    assert (await engine.async_wait(second.id, timeout=5)).outcome is VendOutcome.completed
    with pytest.raises(VendRefused) as refused:
        await engine.async_select(slot="A2", method="card")
    assert refused.value.code is VendOutcome.sold_out


async def test_a_declined_payment_dispenses_nothing(machine: Machine, events: Events) -> None:
    engine = await machine.start(provider_options={"decline_tokens": ["stolen"]})
    session = await engine.async_select(slot="A1", method="nfc", token="stolen")
    final = await engine.async_wait(session.id, timeout=5)
    assert final.state is SessionState.failed
    assert final.outcome is VendOutcome.declined and final.reason == "declined"
    assert engine.stock["A1"] == 5
    assert not engine.machine.dispenser.commands
    (declined,) = events("payment_declined")
    assert declined.context.id == session.context.id
    assert declined.data["amount"] == 150 and declined.data["reason"] == "declined"
    assert "stolen" not in repr(declined.data)  # the token itself is never fired
    assert events("vend_failed", "vend_completed", "payment_authorized") == []
    assert read_ledger(machine.ledger_file) == []
    # What the provider last told the customer stays in the final snapshot.
    assert final.progress == {"step": "processing"}


async def test_a_session_of_before_a_restart_is_read_from_the_journal(
    machine: Machine,
) -> None:
    engine = await machine.start()
    session = await engine.async_select(slot="A1", method="card")
    final = await engine.async_wait(session.id, timeout=5)
    await machine.stop()

    restarted = await machine.start()
    assert restarted.session(session.id) == final
    assert restarted.session("0" * 32) is None


async def test_sessions_past_those_kept_in_memory_are_read_from_the_journal(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "SESSIONS_IN_MEMORY", 2)
    engine = await machine.start()
    finals = []
    for _ in range(4):
        session = await engine.async_select(slot="A1", method="card")
        finals.append(await engine.async_wait(session.id, timeout=5))

    assert len(engine._sessions) == 2, "only the latest stay in memory"
    for final in finals:
        assert engine.session(final.id) == final
        assert await engine.async_wait(final.id) == final


async def test_a_jam_voids_raises_an_alarm_and_keeps_the_stock(
    machine: Machine, events: Events, hub: Hub
) -> None:
    await alarm_setup(hub=hub)
    engine = await machine.start()
    engine.machine.dispenser.inject("A1", DispenseOutcome.jammed)
    session = await engine.async_select(slot="A1", method="card")
    final = await engine.async_wait(session.id, timeout=5)

    assert final.outcome is VendOutcome.dispense_failed
    assert final.state is SessionState.failed and final.reason == "jammed"
    assert engine.stock["A1"] == 5 and final.stock_after == 5
    ledger = read_ledger(machine.ledger_file)
    assert [record["op"] for record in ledger] == ["authorize", "void", "close"]
    assert effective(ledger, "capture") == []
    (voided,) = events("payment_voided")
    (failed,) = events("vend_failed")
    assert voided.context.id == failed.context.id == session.context.id
    assert failed.data["reason"] == "jammed" and failed.data["event_id"] == session.id
    alarm = hub.states.get("alarm.lobby_1_vend_dispense_failed")
    assert alarm is not None and alarm.state == "raised"
    assert "jammed" in alarm.attributes["message"]
    (raised,) = events("alarm_raised")
    assert raised.context.id == session.context.id


async def test_a_jam_whose_void_fails_does_not_say_the_payment_was_released(
    machine: Machine, hub: Hub
) -> None:
    await alarm_setup(hub=hub)
    engine = await machine.start()
    provider = engine.machine.providers[0]
    assert isinstance(provider, InstantPaymentProvider)
    provider.fail_next["void"] = 10
    engine.machine.dispenser.inject("A1", DispenseOutcome.jammed)
    session = await engine.async_select(slot="A1", method="card")
    await engine.async_wait(session.id, timeout=10)

    void_failed = hub.states.get("alarm.lobby_1_vend_void_failed")
    assert void_failed is not None and void_failed.attributes["severity"] == "critical"
    dispense = hub.states.get("alarm.lobby_1_vend_dispense_failed").attributes["message"]
    assert dispense.endswith("the payment could NOT be released (see the vend_void_failed alarm)")
    assert "was released" not in dispense


async def test_a_board_that_cannot_be_reached_voids(machine: Machine) -> None:
    engine = await machine.start()
    engine.machine.dispenser.inject("A1", DispenserError("port closed"))
    session = await engine.async_select(slot="A1", method="card")
    final = await engine.async_wait(session.id, timeout=5)
    assert final.outcome is VendOutcome.dispense_failed and final.reason == "error"
    assert final.dispense is not None and final.dispense.detail == "port closed"
    assert len(effective(read_ledger(machine.ledger_file), "void")) == 1


async def test_a_dispense_timeout_voids(machine: Machine) -> None:
    engine = await machine.start(
        dispense_time=5, timeouts=Timeouts(payment=5, dispense=0.1, capture=1, void=1)
    )
    session = await engine.async_select(slot="A1", method="card")
    final = await engine.async_wait(session.id, timeout=5)
    assert final.outcome is VendOutcome.dispense_failed and final.reason == "timeout"
    assert engine.stock["A1"] == 5
    assert len(effective(read_ledger(machine.ledger_file), "void")) == 1


async def test_a_payment_timeout_charges_nothing(machine: Machine, events: Events) -> None:
    engine = await machine.start(
        provider_options={"approval_delay": 10},
        timeouts=Timeouts(payment=0.1, dispense=1, capture=1, void=1),
    )
    session = await engine.async_select(slot="A1", method="card")
    final = await engine.async_wait(session.id, timeout=5)
    assert final.outcome is VendOutcome.payment_timeout
    assert read_ledger(machine.ledger_file) == []
    assert not engine.machine.dispenser.commands
    assert events("vend_failed") == []


async def test_cancel_while_paying_charges_nothing(machine: Machine) -> None:
    engine = await machine.start(provider_options={"approval_delay": 10})
    session = await engine.async_select(slot="A1", method="card")
    await asyncio.sleep(0.05)
    cancelled = await engine.async_cancel(session.id)
    assert cancelled.outcome is VendOutcome.cancelled
    assert cancelled.state is SessionState.failed
    assert read_ledger(machine.ledger_file) == []
    assert not engine.machine.dispenser.commands
    # The machine is free again.
    engine.machine.providers[0].approval_delay = 0
    again = await engine.async_select(slot="A1", method="card")
    assert (await engine.async_wait(again.id, timeout=5)).outcome is VendOutcome.completed


async def test_cancel_comes_too_late_once_the_product_is_dropping(machine: Machine) -> None:
    engine = await machine.start(dispense_time=0.3)
    session = await engine.async_select(slot="A1", method="card")
    for _ in range(100):
        if engine.session(session.id).state is SessionState.dispensing:
            break
        await asyncio.sleep(0.01)
    snapshot = await engine.async_cancel(session.id)
    assert snapshot.state is SessionState.dispensing
    final = await engine.async_wait(session.id, timeout=5)
    assert final.outcome is VendOutcome.completed


async def test_free_vend_dispenses_without_payment(machine: Machine, events: Events) -> None:
    engine = await machine.start(mode=MachineMode.free_vend)
    session = await engine.async_select(slot="A1", method="card")
    final = await engine.async_wait(session.id, timeout=5)
    assert final.outcome is VendOutcome.completed and final.free_vend
    assert final.authorization is None and engine.stock["A1"] == 4
    assert read_ledger(machine.ledger_file) == []
    (completed,) = events("vend_completed")
    assert completed.data["price"] == 0
    assert completed.data["payment_method"] == "free_vend"


async def test_capture_that_keeps_failing_leaves_the_sale_to_the_journal(
    machine: Machine, events: Events, hub: Hub
) -> None:
    await alarm_setup(hub=hub)
    engine = await machine.start()
    provider = engine.machine.providers[0]
    assert isinstance(provider, InstantPaymentProvider)
    provider.fail_next["capture"] = 3
    session = await engine.async_select(slot="A1", method="card")
    final = await engine.async_wait(session.id, timeout=10)
    assert final.outcome is VendOutcome.capture_failed
    assert final.finished  # for the customer: the product is out
    assert read_journal(machine.journal_path)[0]["state"] == "capturing"  # capture again
    assert engine.stock["A1"] == 4  # the product did drop
    assert hub.states.get("alarm.lobby_1_vend_capture_failed") is not None
    assert events("vend_completed") == []
    await machine.stop()

    # The next start captures it and records the sale, once.
    engine = await machine.start()
    assert [item.id for item in engine.resolved_after_restart] == [session.id]
    resolved = engine.session(session.id)
    assert resolved.outcome is VendOutcome.completed
    assert len(effective(read_ledger(machine.ledger_file), "capture")) == 1
    (completed,) = events("vend_completed")
    assert completed.data["event_id"] == session.id
    assert completed.context.id == session.context.id
    await machine.stop()
    engine = await machine.start()
    assert engine.resolved_after_restart == []


class CapturingProvider(InstantPaymentProvider):
    """Like a QR gateway that takes the money as the customer pays: void cannot undo it."""

    platform = "capturing"

    async def async_authorize(
        self, request: PaymentRequest, progress: ProgressCallback
    ) -> Authorization:
        authorization = await super().async_authorize(request, progress)
        self.payments[authorization.reference].status = PaymentStatus.captured
        return authorization


async def test_money_already_taken_is_refunded_when_the_dispense_fails(
    machine: Machine, events: Events, hub: Hub
) -> None:
    provider = CapturingProvider(hub, "lobby_1", {"ledger_file": str(machine.ledger_file)})
    engine = await machine.start(providers=[provider])
    engine.machine.dispenser.inject("A1", DispenseOutcome.not_dropped)
    session = await engine.async_select(slot="A1", method="qr")
    final = await engine.async_wait(session.id, timeout=5)
    assert final.outcome is VendOutcome.refunded_dispense_failed
    assert final.refunded == Money(150, "EUR")
    assert len(effective(read_ledger(machine.ledger_file), "refund")) == 1
    (refunded,) = events("payment_refunded")
    assert refunded.data["vend_id"] == session.id and refunded.data["amount"] == 150
    assert refunded.context.id == session.context.id


async def test_cash_credit_pays_the_next_vend_then_the_change(
    machine: Machine, events: Events
) -> None:
    engine = await machine.start(
        cash={"insert": 500},
        timeouts=Timeouts(payment=5, dispense=5, capture=2, void=2, multi_vend=0.3),
    )
    first = await engine.async_select(slot="A1", method="cash")
    first_final = await engine.async_wait(first.id, timeout=5)
    assert first_final.outcome is VendOutcome.completed
    assert first_final.credit_left == Money(350, "EUR")
    assert first_final.change is None

    second = await engine.async_select(slot="A2", method="cash")
    second_final = await engine.async_wait(second.id, timeout=5)
    assert second_final.outcome is VendOutcome.completed
    assert second_final.credit_left == Money(250, "EUR")
    assert second_final.authorization.reference == first_final.authorization.reference

    for _ in range(100):
        if engine.session(second.id).change is not None:
            break
        await asyncio.sleep(0.02)
    assert engine.session(second.id).change == Money(250, "EUR")
    ledger = [
        record
        for record in read_ledger(machine.ledger_file)
        if record["provider"] == "instant_cash"
    ]
    assert [record["op"] for record in ledger] == ["authorize", "capture", "capture", "close"]
    assert ledger[-1]["amount"] == 250
    assert len(events("vend_completed")) == 2
    entry = machine.journals[0].entry(second.id)
    assert entry is not None and not entry.close_pending


async def test_credit_too_small_for_the_next_product_is_paid_out_first(machine: Machine) -> None:
    engine = await machine.start(cash={"insert": 200})
    first = await engine.async_select(slot="A1", method="cash")
    assert (await engine.async_wait(first.id, timeout=5)).credit_left == Money(50, "EUR")
    second = await engine.async_select(slot="A2", method="cash")
    await engine.async_wait(second.id, timeout=5)
    assert engine.session(first.id).change == Money(50, "EUR")
    ops = [
        (record["op"], record["amount"])
        for record in read_ledger(machine.ledger_file)
        if record["provider"] == "instant_cash"
    ]
    assert ops[:4] == [("authorize", 150), ("capture", 150), ("close", 50), ("authorize", 100)]


async def test_restock_sets_stock_and_fires_the_ledger_fields(
    machine: Machine, events: Events
) -> None:
    engine = await machine.start()
    context = Context(user_id="user:driver")
    changes = await engine.async_restock({"B1": 6, "A1": 7}, context=context)
    assert changes["B1"] == {"product": "Chips", "added": 6, "stock": 6}
    assert changes["A1"]["added"] == 2
    (refilled,) = events("stock_refilled")
    assert refilled.data["machine_id"] == "lobby_1" and refilled.data["slots"] == changes
    assert refilled.context is context
    with pytest.raises(ValueError, match="capacity 6"):
        await engine.async_restock({"B1": 7})
    filled = await engine.async_restock()
    assert filled["A1"]["stock"] == 8  # par
    await machine.stop()
    engine = await machine.start()
    assert engine.stock == {"A1": 8, "A2": 10, "B1": 6}


async def test_a_cancel_before_the_provider_is_asked_asks_nothing(machine: Machine) -> None:
    engine = await machine.start()
    session = await engine.async_select(slot="A1", method="card")
    # The session's task has not run yet: the provider has not been asked.
    cancelled = await engine.async_cancel(session.id)
    assert cancelled.outcome is VendOutcome.cancelled
    assert read_ledger(machine.ledger_file) == []
    assert not engine.machine.dispenser.commands
    steps = [(row.step, row.phase) for row in machine.journals[0].steps(session.id)]
    assert steps == [("authorize", "begin"), ("authorize", "done")]


async def test_listeners_of_single_event_types_hear_every_step(machine: Machine, hub: Hub) -> None:
    """The engine makes an event's data only when someone listens: a listener of one event
    type (no match-all listener on the bus) still hears each of its events, in order."""
    heard: list[Event] = []
    hub.bus.async_listen("vend_session_updated", heard.append)
    hub.bus.async_listen("vend_completed", heard.append)
    engine = await machine.start()
    started = await engine.async_select(slot="A1", method="card")
    final = await engine.async_wait(started.id, timeout=5)
    assert final.outcome is VendOutcome.completed
    states = [event.data["state"] for event in heard if event.event_type != "vend_completed"]
    assert states == [
        "authorizing",
        "authorizing",  # the provider's progress
        "authorized",
        "dispensing",
        "dispensed",
        "capturing",
        "captured",
        "completed",
    ]
    assert heard[-1].event_type == "vend_completed"
    assert heard[-1].data["payment_reference"] == f"instant-{started.id}"
    assert heard[-2].data == final.as_dict()
    assert {event.context.id for event in heard} == {started.context.id}


async def test_machines_selecting_in_the_same_turn_share_journal_commits(
    hub: Hub, tmp_path: Path
) -> None:
    journal = VendJournal(tmp_path / ".storage" / "vending.journal.db")
    engines = [
        VendEngine(
            hub,
            MachineSetup(
                machine_id=f"lobby_{number}",
                currency="EUR",
                planogram=PLANOGRAM,
                stock={"A1": 5},
                dispenser=SimulatorDispenser(hub, f"lobby_{number}", {"dispense_time": 0}),
                providers=[InstantPaymentProvider(hub, f"lobby_{number}", {})],
            ),
            journal,
        )
        for number in range(10)
    ]
    for engine in engines:
        await engine.async_start()
    try:
        before = journal.commits
        sessions = await asyncio.gather(
            *(engine.async_select(slot="A1", method="card") for engine in engines)
        )
        # The ten "authorize begin" rows went in one transaction (one fsync).
        assert journal.commits == before + 1
        finals = [
            await engine.async_wait(session.id, timeout=5)
            for engine, session in zip(engines, sessions, strict=True)
        ]
        assert all(final.outcome is VendOutcome.completed for final in finals)
        rows = {row["id"]: row for row in read_journal(journal.path)}
        for session in sessions:
            assert rows[session.id]["state"] == "completed"
            assert [step[:2] for step in rows[session.id]["steps"]] == [
                ("authorize", "begin"),
                ("authorize", "done"),
                ("dispense", "begin"),
                ("dispense", "done"),
                ("capture", "begin"),
                ("capture", "done"),
                ("record", "done"),
            ]
        assert all(journal.stock(engine.machine_id) == {"A1": 4} for engine in engines)
        # Sessions started together have ids that sort together (UUID version 7: time first).
        assert all(uuid.UUID(session.id).version == 7 for session in sessions)
        await asyncio.sleep(0.002)
        later = await engines[0].async_select(slot="A1", method="card")
        await engines[0].async_wait(later.id, timeout=5)
        assert later.id > max(session.id for session in sessions)
    finally:
        for engine in engines:
            await engine.async_stop()
        await journal.async_close()
