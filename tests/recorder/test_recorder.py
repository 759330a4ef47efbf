"""The recorder in a hub: history, the money ledger, idempotency, filters, restarts."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from vendhub.const import EVENT_MONEY_RECORDED, EVENT_STATE_CHANGED, MATCH_ALL
from vendhub.core.context import Context
from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.core.states import ReadOnlyDict, State
from vendhub.recorder.models import (
    CashCollection,
    Events,
    EventTypes,
    Payment,
    RejectedMoneyEvent,
    StateAttributes,
    States,
    StatesMeta,
    StockLevel,
    StockMovement,
    VendTransaction,
)
from vendhub.recorder.queries import sales_statistics, sales_totals
from vendhub.recorder.recorder import Recorder, RecorderConfig
from vendhub.recorder.statistics import compile_missing
from vendhub.registry import async_load_registries
from vendhub_integrations.alarm import vendhub_setup as alarm_setup
from vendhub_integrations.simulator import vendhub_config_schema as simulator_schema
from vendhub_integrations.simulator import vendhub_setup as simulator_setup


async def start_recorder(hub: Hub, db_url: str, **options: Any) -> Recorder:
    recorder = Recorder(hub, RecorderConfig(db_url=db_url, **options))
    await recorder.async_start()
    hub.data["recorder"] = recorder
    return recorder


def count(recorder: Recorder, model: Any, *where: Any) -> int:
    with recorder.engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(model).where(*where)).scalar()
        )


def vend_data(event_id: str, **changes: Any) -> dict[str, Any]:
    data = {
        "machine_id": "lobby_1",
        "slot": "A1",
        "product": "Cola",
        "price": 150,
        "currency": "EUR",
        "payment_method": "card",
        "event_id": event_id,
        "vend_id": f"v-{event_id}",
        "ts": "2024-05-06T12:00:00+00:00",
        "stock": 7,
    }
    data.update(changes)
    return data


async def test_state_changes_are_written_compactly(tmp_path: Path, db_url: str) -> None:
    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    context = Context(user_id="operator")
    hub.states.async_set("slot.lobby_1_a1", 8, {"price": 150, "product": "Cola"}, context=context)
    hub.states.async_set("slot.lobby_1_a1", 7, {"price": 150, "product": "Cola"})
    hub.states.async_set("slot.lobby_1_a1", 7, {"price": 170, "product": "Cola"})
    hub.states.async_set("sensor.lobby_1_temperature", "4.2")
    await recorder.async_flush()

    with recorder.engine.connect() as connection:
        rows = connection.execute(
            select(
                StatesMeta.entity_id,
                States.state,
                States.attributes_id,
                States.last_updated_ts,
                States.last_changed_ts,
                States.context_id,
            )
            .join(StatesMeta, StatesMeta.metadata_id == States.metadata_id)
            .order_by(States.state_id)
        ).all()
    assert [(row[0], row[1]) for row in rows] == [
        ("slot.lobby_1_a1", "8"),
        ("slot.lobby_1_a1", "7"),
        ("slot.lobby_1_a1", "7"),
        ("sensor.lobby_1_temperature", "4.2"),
    ]
    # The same attribute set is stored once; a changed one gets a new row.
    assert rows[0][2] == rows[1][2] != rows[2][2]
    assert rows[3][2] is None
    # last_changed is stored only when it differs from last_updated.
    assert rows[1][4] is None
    assert rows[2][4] == pytest.approx(rows[1][3])
    assert bytes(rows[0][5]).hex() == context.id
    await hub.async_stop()
    await recorder.async_stop()


async def test_a_batch_of_many_new_attribute_sets_is_stored_once_each(
    tmp_path: Path, db_url: str
) -> None:
    # Attribute sets new to the writer are looked up and inserted for a whole batch at once:
    # more than one insert's worth, repeats inside the batch, and sets the database has but
    # the writer forgot (a restart) must each keep one row.
    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    hub.states.async_set("sensor.known", "1", {"unit": "x"})
    await recorder.async_flush()
    recorder.writer._forget_uncommitted_ids()
    for number in range(1200):
        hub.states.async_set(f"sensor.s{number % 7}", str(number), {"uptime": number // 2})
    hub.states.async_set("sensor.known", "2", {"unit": "x"})
    await recorder.async_flush()

    with recorder.engine.connect() as connection:
        rows = connection.execute(
            select(StatesMeta.entity_id, States.state, StateAttributes.shared_attrs)
            .join(StatesMeta, StatesMeta.metadata_id == States.metadata_id)
            .join(StateAttributes, StateAttributes.attributes_id == States.attributes_id)
        ).all()
    written = {(entity_id, state): shared for entity_id, state, shared in rows}
    assert len(written) == 1202
    assert all(
        written[(f"sensor.s{number % 7}", str(number))] == f'{{"uptime":{number // 2}}}'
        for number in range(1200)
    )
    assert written[("sensor.known", "2")] == '{"unit":"x"}'
    assert count(recorder, StateAttributes) == 600 + 1
    await hub.async_stop()
    await recorder.async_stop()


async def test_attribute_sets_that_share_a_hash_stay_apart(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vendhub.recorder.writer.zlib.crc32", lambda data: 7)
    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    for number in range(30):
        hub.states.async_set(f"sensor.s{number}", "on", {"n": number})
    await recorder.async_flush()
    recorder.writer._forget_uncommitted_ids()
    for number in range(20, 40):  # half known to the database only, half new
        hub.states.async_set(f"sensor.s{number}", "off", {"n": number})
    await recorder.async_flush()

    with recorder.engine.connect() as connection:
        rows = connection.execute(
            select(StatesMeta.entity_id, States.state, StateAttributes.shared_attrs)
            .join(StatesMeta, StatesMeta.metadata_id == States.metadata_id)
            .join(StateAttributes, StateAttributes.attributes_id == States.attributes_id)
        ).all()
    assert sorted(rows) == sorted(
        [(f"sensor.s{number}", "on", f'{{"n":{number}}}') for number in range(30)]
        + [(f"sensor.s{number}", "off", f'{{"n":{number}}}') for number in range(20, 40)]
    )
    assert count(recorder, StateAttributes) == 40
    await hub.async_stop()
    await recorder.async_stop()


async def test_a_writer_that_cannot_keep_up_is_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vendhub.recorder.recorder.BEHIND_RECORDS", 3)
    hub = Hub(tmp_path)
    recorder = Recorder(hub, RecorderConfig(db_url=f"sqlite:///{tmp_path / 'v.db'}"))
    hub.data["recorder"] = recorder
    hub.bus.async_listen(MATCH_ALL, recorder._on_event)  # as started, but no writer
    for number in range(3):
        hub.states.async_set("sensor.s", str(number))
    assert not recorder.behind()
    hub.states.async_set("sensor.s", "3")
    assert recorder.behind()
    recorder.engine.dispose()
    await hub.async_stop()


async def test_a_money_event_the_ledger_cannot_take_is_kept_aside_and_the_rest_recorded(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One bad money event (here one without a price, as a plugin or an automation could
    fire) does not stop the writer (it used to, and the hub recorded nothing more): it is
    logged and kept in ``rejected_money_events`` with the reason, and acknowledged as
    recorded (rejected), so a machine does not send it forever; the events queued with it and
    after it go in the ledger."""
    hub = Hub(tmp_path)
    await alarm_setup(hub=hub)
    recorder = await start_recorder(hub, db_url)
    acks: list[Event] = []
    hub.bus.async_listen(EVENT_MONEY_RECORDED, acks.append)
    waiters = [
        asyncio.ensure_future(recorder.async_wait_recorded("lobby_1", event_id, timeout=10))
        for event_id in ("good-1", "bad-1", "good-2")
    ]
    await asyncio.sleep(0)
    bad = vend_data("bad-1")
    del bad["price"]
    # Fired in one turn of the loop: the writer takes them in one batch.
    hub.bus.async_fire("vend_completed", vend_data("good-1"))
    hub.bus.async_fire("vend_completed", bad)
    hub.bus.async_fire("vend_completed", vend_data("good-2"))
    records = await asyncio.gather(*waiters)
    assert [(record.duplicate, record.rejected) for record in records] == [
        (False, False),
        (False, True),
        (False, False),
    ]

    assert recorder.stats.money_rejected == 1
    assert recorder.stats.money_written == 2
    errors = [
        record
        for record in caplog.records
        if record.levelname == "ERROR" and record.name == "vendhub.recorder.writer"
    ]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "vend_completed event 'bad-1' of machine 'lobby_1'" in message
    assert "KeyError" in message and "kept in rejected_money_events" in message
    with recorder.engine.connect() as connection:
        kept = connection.execute(select(RejectedMoneyEvent)).one()
    assert (kept.event_type, kept.machine_id, kept.source_event_id) == (
        "vend_completed",
        "lobby_1",
        "bad-1",
    )
    assert json.loads(kept.event_data) == bad
    assert kept.error.startswith("KeyError")
    # The operator hears of it through an alarm, not only the log.
    await hub.async_block_till_done()
    alarm = hub.states.get("alarm.lobby_1_money_event_rejected")
    assert alarm is not None and alarm.state == "raised"
    assert alarm.attributes["severity"] == "critical"
    assert "'bad-1'" in alarm.attributes["message"]
    assert "rejected_money_events" in alarm.attributes["message"]
    await recorder.async_flush()
    assert {ack.data["event_id"]: ack.data["rejected"] for ack in acks} == {
        "good-1": False,
        "bad-1": True,
        "good-2": False,
    }

    waiter = asyncio.ensure_future(recorder.async_wait_recorded("lobby_1", "good-3", timeout=10))
    await asyncio.sleep(0)
    hub.bus.async_fire("vend_completed", vend_data("good-3"))
    assert (await waiter).rejected is False
    assert count(recorder, VendTransaction) == 3
    assert count(recorder, VendTransaction, VendTransaction.source_event_id == "bad-1") == 0
    await hub.async_stop()
    await recorder.async_stop()


async def test_a_sale_of_a_machine_with_a_long_id_is_recorded(tmp_path: Path, db_url: str) -> None:
    """The context of a machine's sale names it as ``machine:<id>``: with a 64-character id
    (the longest the protocol allows) that is 72 characters, which PostgreSQL and MariaDB
    refused in the ledger's user columns, so the sale itself was refused."""
    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    machine_id = "m" * 64
    waiter = asyncio.ensure_future(recorder.async_wait_recorded(machine_id, "e-1", timeout=10))
    await asyncio.sleep(0)
    hub.bus.async_fire(
        "vend_completed",
        vend_data("e-1", machine_id=machine_id),
        context=Context(user_id=f"machine:{machine_id}"),
    )
    record = await waiter
    assert (record.duplicate, record.rejected) == (False, False)
    assert count(recorder, VendTransaction, VendTransaction.machine_id == machine_id) == 1
    assert count(recorder, StockMovement, StockMovement.machine_id == machine_id) == 1
    await hub.async_stop()
    await recorder.async_stop()


async def test_two_machines_may_number_their_events_alike(tmp_path: Path, db_url: str) -> None:
    """Event ids are unique per machine only: the same id from two machines, paid through the
    same provider, is two sales (it stopped the recorder's writer when payments were unique
    per provider and event id alone)."""
    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    for machine_id in ("lobby_1", "lobby_2"):
        waiter = asyncio.ensure_future(
            recorder.async_wait_recorded(machine_id, "00000001", timeout=10)
        )
        await asyncio.sleep(0)
        hub.bus.async_fire(
            "vend_completed",
            vend_data("00000001", machine_id=machine_id, payment_provider="sumup"),
        )
        assert (await waiter).duplicate is False
    # And the writer still records what comes next.
    waiter = asyncio.ensure_future(recorder.async_wait_recorded("lobby_1", "00000002", timeout=10))
    await asyncio.sleep(0)
    hub.bus.async_fire("vend_completed", vend_data("00000002", payment_provider="sumup"))
    assert (await waiter).duplicate is False

    assert count(recorder, VendTransaction) == 3
    assert count(recorder, Payment) == 3
    assert count(recorder, Payment, Payment.machine_id == "lobby_2") == 1
    await hub.async_stop()
    await recorder.async_stop()


async def test_a_late_event_does_not_take_the_stock_level_back(tmp_path: Path, db_url: str) -> None:
    """The level is the newest event's: a sale of 12:00 that arrives after one of 12:05 (sent
    again from an outbox) is in the ledger, and the level stays the 12:05 one."""
    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    hub.bus.async_fire(
        "vend_completed", vend_data("later", ts="2024-05-06T12:05:00+00:00", stock=6)
    )
    await recorder.async_flush()
    hub.bus.async_fire("vend_completed", vend_data("earlier", stock=7))
    hub.bus.async_fire(
        "vend_completed",
        vend_data("other slot", slot="A2", ts="2024-05-06T11:00:00+00:00", stock=4),
    )
    await recorder.async_flush()

    assert count(recorder, VendTransaction) == 3
    with recorder.engine.connect() as connection:
        levels = dict(connection.execute(select(StockLevel.slot_code, StockLevel.quantity)).all())
    assert levels == {"A1": 6, "A2": 4}
    await hub.async_stop()
    await recorder.async_stop()


async def test_the_same_vend_event_three_times_is_recorded_once(
    tmp_path: Path, db_url: str
) -> None:
    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    acks: list[Event] = []
    hub.bus.async_listen(EVENT_MONEY_RECORDED, acks.append)
    waiter = asyncio.ensure_future(recorder.async_wait_recorded("lobby_1", "e-1", timeout=10))
    await asyncio.sleep(0)
    for _ in range(3):
        hub.bus.async_fire("vend_completed", vend_data("e-1"))
    record = await waiter
    await recorder.async_flush()
    for _ in range(20):
        if len(acks) == 3:
            break
        await asyncio.sleep(0.05)

    assert record.duplicate is False
    assert count(recorder, VendTransaction) == 1
    assert count(recorder, StockMovement) == 1
    assert count(recorder, Payment) == 1
    assert [ack.data["duplicate"] for ack in acks] == [False, True, True]
    assert recorder.stats.money_written == 1 and recorder.stats.money_duplicates == 2
    await hub.async_stop()
    await recorder.async_stop()

    # A replay after a restart (the in-memory de-duplication is gone) is still recorded once.
    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    waiter = asyncio.ensure_future(recorder.async_wait_recorded("lobby_1", "e-1", timeout=10))
    await asyncio.sleep(0)
    hub.bus.async_fire("vend_completed", vend_data("e-1"))
    assert (await waiter).duplicate is True
    assert count(recorder, VendTransaction) == 1
    await hub.async_stop()
    await recorder.async_stop()


async def test_money_records_of_every_kind(tmp_path: Path, db_url: str) -> None:
    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    hub.bus.async_fire("vend_completed", vend_data("e-1"))
    hub.bus.async_fire(
        "vend_failed", vend_data("e-2", slot="A2", reason="jam", payment_method="cash")
    )
    hub.bus.async_fire(
        "stock_refilled",
        {
            "machine_id": "lobby_1",
            "event_id": "e-3",
            "ts": "2024-05-06T13:00:00+00:00",
            "slots": {
                "A1": {"product": "Cola", "added": 3, "stock": 10},
                "A2": {"product": "Crisps", "added": 1, "stock": 8},
            },
        },
        context=Context(user_id="driver_7"),
    )
    hub.bus.async_fire(
        "cash_collected",
        {
            "machine_id": "lobby_1",
            "event_id": "e-4",
            "ts": "2024-05-06T14:00:00+00:00",
            "amount": 4550,
            "currency": "EUR",
        },
        context=Context(user_id="driver_7"),
    )
    await recorder.async_flush()

    with recorder.engine.connect() as connection:
        transactions = connection.execute(
            select(
                VendTransaction.outcome, VendTransaction.failure_reason, VendTransaction.price
            ).order_by(VendTransaction.id)
        ).all()
        payments = connection.execute(
            select(Payment.method, Payment.amount, Payment.status, Payment.provider)
        ).all()
        movements = connection.execute(
            select(
                StockMovement.kind,
                StockMovement.slot_code,
                StockMovement.quantity,
                StockMovement.stock_after,
                StockMovement.user_id,
            ).order_by(StockMovement.id)
        ).all()
        levels = dict(connection.execute(select(StockLevel.slot_code, StockLevel.quantity)).all())
        cash = connection.execute(select(CashCollection.amount, CashCollection.collected_by)).one()
        recorded_types = set(connection.execute(select(EventTypes.event_type)).scalars())
    assert [tuple(row) for row in transactions] == [
        ("completed", None, 150),
        ("failed", "jam", 150),
    ]
    assert [tuple(row) for row in payments] == [("card", 150, "captured", "machine")]
    assert [tuple(row) for row in movements] == [
        ("vend", "A1", -1, 7, None),
        ("refill", "A1", 3, 10, "driver_7"),
        ("refill", "A2", 1, 8, "driver_7"),
    ]
    assert levels == {"A1": 10, "A2": 8}
    assert tuple(cash) == (4550, "driver_7")
    assert {"vend_completed", "vend_failed", "stock_refilled", "cash_collected"} <= recorded_types
    await hub.async_stop()
    await recorder.async_stop()


async def test_filters_decide_what_history_is_kept(tmp_path: Path, db_url: str) -> None:
    hub = Hub(tmp_path)
    recorder = await start_recorder(
        hub,
        db_url,
        exclude_domains=frozenset({"sensor"}),
        exclude_entity_globs=("slot.*_b*",),
        exclude_event_types=frozenset({"noisy_event"}),
    )
    hub.states.async_set("sensor.lobby_1_temperature", "4.0")
    hub.states.async_set("slot.lobby_1_a1", "3")
    hub.states.async_set("slot.lobby_1_b1", "3")
    hub.bus.async_fire("noisy_event", {"x": 1})
    hub.bus.async_fire("door_left_open", {"machine_id": "lobby_1"})
    await recorder.async_flush()
    with recorder.engine.connect() as connection:
        entity_ids = set(connection.execute(select(StatesMeta.entity_id)).scalars())
        event_types = set(
            connection.execute(
                select(EventTypes.event_type).join(
                    Events, Events.event_type_id == EventTypes.event_type_id
                )
            ).scalars()
        )
    assert entity_ids == {"slot.lobby_1_a1"}
    assert "door_left_open" in event_types and "noisy_event" not in event_types
    await hub.async_stop()
    await recorder.async_stop()


async def test_simulated_fleet_history_and_ledger_survive_a_restart(
    tmp_path: Path, db_url: str
) -> None:
    config = simulator_schema()(
        {
            "seed": 3,
            "tick": 3600,
            "start": "2024-05-06T08:00:00+00:00",
            "fleet": {"count": 3, "slots_per_machine": 6, "sales_per_hour": 30},
        }
    )
    hub = Hub(tmp_path)
    await async_load_registries(hub)
    recorder = await start_recorder(hub, db_url)
    assert await simulator_setup(hub=hub, config=config)
    runtime = hub.data["simulator"]
    for _ in range(4):  # four simulated hours
        await runtime.async_step(3600)
    await recorder.async_flush()
    transactions = count(recorder, VendTransaction)
    payments = count(recorder, Payment)
    states = count(recorder, States)
    await hub.async_stop()
    await recorder.async_stop()
    assert transactions > 20 and payments > 0 and states > transactions

    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    assert count(recorder, VendTransaction) == transactions
    assert count(recorder, Payment) == payments
    assert count(recorder, States) == states
    assert count(recorder, Payment) == count(
        recorder, VendTransaction, VendTransaction.outcome == "completed"
    )

    # The statistics, compiled from what was recorded, agree with the transactions.
    zone = ZoneInfo("UTC")
    later = datetime(2024, 5, 8, tzinfo=UTC).timestamp()
    await recorder.async_run_job(
        "compile",
        lambda session: compile_missing(session, later, zone),
        more=lambda result: result.pending,
    )
    start, end = datetime(2024, 5, 6, tzinfo=UTC), datetime(2024, 5, 7, tzinfo=UTC)
    [totals] = await recorder.async_query(
        lambda session: sales_totals(session, start=start, end=end)
    )
    hourly = await recorder.async_query(
        lambda session: sales_statistics(session, period="hour", start=start, end=end)
    )
    daily = await recorder.async_query(
        lambda session: sales_statistics(session, period="day", start=start, end=end)
    )
    for rows in (hourly, daily):
        assert sum(row.vends for row in rows) == totals.vends
        assert sum(row.failed for row in rows) == totals.failed
        assert sum(row.revenue for row in rows) == totals.revenue
    assert totals.vends + totals.failed == transactions
    assert totals.vends == payments
    await hub.async_stop()
    await recorder.async_stop()


async def test_writing_after_a_purge_removed_cached_rows(tmp_path: Path, db_url: str) -> None:
    hub = Hub(tmp_path)
    recorder = await start_recorder(hub, db_url)
    attributes = ReadOnlyDict({"unit_of_measurement": "°C"})
    old = datetime.now(UTC) - timedelta(days=2)
    for minute in range(3):  # history from two days ago, with one shared attribute set
        moment = old + timedelta(minutes=minute)
        state = State("sensor.old_fridge", str(4 + minute), attributes, moment, moment)
        hub.bus.async_fire(
            EVENT_STATE_CHANGED,
            {"entity_id": "sensor.old_fridge", "old_state": None, "new_state": state},
        )
    await recorder.async_flush()
    now = datetime.now(UTC).timestamp()
    await recorder.async_run_job(
        "compile",
        lambda session: compile_missing(session, now, ZoneInfo("UTC")),
        more=lambda result: result.pending,
    )
    result = await recorder.async_purge(keep_days=1)
    assert result.done
    assert count(recorder, States) == 0
    assert count(recorder, StateAttributes) == 0

    # The writer had the purged entity and attribute set cached: it must not refer to them.
    hub.states.async_set("sensor.old_fridge", "5", attributes)
    await recorder.async_flush()
    with recorder.engine.connect() as connection:
        row = connection.execute(
            select(StatesMeta.entity_id, States.state, StateAttributes.shared_attrs)
            .join(StatesMeta, StatesMeta.metadata_id == States.metadata_id)
            .join(StateAttributes, StateAttributes.attributes_id == States.attributes_id)
        ).one()
    assert tuple(row) == ("sensor.old_fridge", "5", '{"unit_of_measurement":"\\u00b0C"}')
    assert recorder.writer.is_alive()
    await hub.async_stop()
    await recorder.async_stop()
