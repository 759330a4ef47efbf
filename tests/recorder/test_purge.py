"""Purging history in batches: only old history, orphans afterwards, statistics first."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from tests.recorder.helpers import RecorderRows, count_rows, ts
from vendhub.recorder.models import (
    CashCollection,
    EventLogEntry,
    Events,
    EventTypes,
    Payment,
    PaymentStatusChange,
    SalesStatistic,
    SensorStatistic,
    StateAttributes,
    States,
    StatesMeta,
    StatisticsRun,
    StockLevel,
    StockMovement,
    VendTransaction,
)
from vendhub.recorder.purge import PurgeBatchResult, purge_batch
from vendhub.recorder.statistics import compile_missing, compile_period

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0
CUTOFF = ts("2024-05-10T00:00:00")
NEVER_PURGED = (
    VendTransaction,
    Payment,
    PaymentStatusChange,
    CashCollection,
    StockMovement,
    StockLevel,
    EventLogEntry,
    SalesStatistic,
    SensorStatistic,
    StatisticsRun,
)


def compile_all(session: Session, now_ts: float) -> None:
    while compile_missing(session, now_ts, BERLIN, max_periods=100).pending:
        pass


def purge_until_done(session: Session, cutoff_ts: float, batch_size: int) -> list[PurgeBatchResult]:
    results = [purge_batch(session, cutoff_ts, batch_size)]
    while not results[-1].done:
        results.append(purge_batch(session, cutoff_ts, batch_size))
        assert len(results) < 100
    return results


def never_purged_counts(session: Session) -> dict[str, int]:
    return {model.__tablename__: count_rows(session, model) for model in NEVER_PURGED}


def test_purge_deletes_old_history_in_committed_batches_and_never_the_ledger(
    migrated_engine: Engine, session: Session, rows: RecorderRows
) -> None:
    # 72 fridge readings from 18:00 to 05:50 (36 before the cutoff), 24 events (12 before).
    first = ts("2024-05-09T18:00:00")
    for index in range(72):
        rows.state(
            "sensor.fridge", str(4 + index % 3), first + index * 600, attributes={"unit": "C"}
        )
    for index in range(24):
        rows.event("vend_completed", ts("2024-05-09T20:00:00") + index * 1200, {"n": index})
    # Ledger, stock and the event log, all older than the cutoff.
    for day in range(1, 4):
        rows.vend(ts(f"2024-05-0{day}T12:00:00"), price=150)
        rows.vend(ts(f"2024-05-0{day}T12:30:00"), outcome="failed")
        rows.payment(ts(f"2024-05-0{day}T13:00:00"), status="refunded")
        rows.cash_collection(ts(f"2024-05-0{day}T18:00:00"))
        rows.stock(ts(f"2024-05-0{day}T19:00:00"), slot_code=f"A{day}")
    session.execute(
        insert(EventLogEntry).values(
            machine_id="lobby_1",
            kind="fault",
            code="coin_jam",
            severity="error",
            message="coin jam",
            ts=ts("2024-05-01T08:00:00"),
        )
    )
    session.commit()
    compile_all(session, ts("2024-05-10T07:00:00"))
    kept = never_purged_counts(session)
    assert kept["vend_transactions"] == 6 and kept["statistics_runs"] > 0

    first_batch = purge_batch(session, CUTOFF, batch_size=10)
    # Committed: another connection already sees it.
    with migrated_engine.connect() as other:
        assert other.execute(select(func.count()).select_from(States)).scalar() == 62
    results = [first_batch, *purge_until_done(session, CUTOFF, batch_size=10)]

    assert [(r.states_deleted, r.events_deleted, r.done) for r in results] == [
        (10, 0, False),
        (10, 0, False),
        (10, 0, False),
        (6, 4, False),
        (0, 8, False),
        (0, 0, True),
    ]
    assert all(r.kept_for_statistics_from is None for r in results)
    assert count_rows(session, States) == 36
    assert count_rows(session, Events) == 12
    assert session.execute(select(func.min(States.last_updated_ts))).scalar() == CUTOFF
    assert session.execute(select(func.min(Events.time_fired_ts))).scalar() == CUTOFF
    assert never_purged_counts(session) == kept
    # Still referenced: nothing else went.
    assert (count_rows(session, StateAttributes), count_rows(session, StatesMeta)) == (1, 1)
    assert count_rows(session, EventTypes) == 1


@pytest.mark.parametrize("indexed_references", [False, True], ids=["scan", "indexed"])
def test_orphaned_attributes_entities_and_event_types_go_in_a_later_batch(
    session: Session, rows: RecorderRows, indexed_references: bool
) -> None:
    if indexed_references:  # the NOT EXISTS form (MariaDB always has these foreign-key indexes)
        session.execute(text("CREATE INDEX ix_test_states_attributes ON states (attributes_id)"))
        session.execute(text("CREATE INDEX ix_test_events_type ON events (event_type_id)"))
    old, new = CUTOFF - 2 * HOUR, CUTOFF + HOUR
    only_old_attributes = rows.attributes_id({"firmware": "1.0"})
    shared_attributes = rows.attributes_id({"unit": "C"})
    gone_entity = rows.metadata_id("machine.gone")
    numeric_entity = rows.metadata_id("sensor.retired")
    rows.state("machine.gone", "online", old, attributes={"firmware": "1.0"})
    rows.state("sensor.retired", "7.5", old + 60)
    rows.state("sensor.fridge", "5", old + 120, attributes={"unit": "C"})
    rows.state("sensor.fridge", "6", new, attributes={"unit": "C"})
    rows.event("door_opened", old)
    rows.event("vend_completed", old + 10)
    rows.event("vend_completed", new)
    door_type = session.execute(
        select(EventTypes.event_type_id).where(EventTypes.event_type == "door_opened")
    ).scalar_one()
    session.commit()
    compile_all(session, CUTOFF + 2 * HOUR)

    results = purge_until_done(session, CUTOFF, batch_size=100)

    assert [(r.states_deleted, r.events_deleted, r.done) for r in results] == [
        (3, 2, False),
        (0, 0, True),
    ]
    orphans = results[-1]
    assert orphans.removed_attributes_ids == {only_old_attributes}
    assert orphans.removed_metadata_ids == {gone_entity}  # sensor.retired has statistics
    assert orphans.removed_event_type_ids == {door_type}
    assert (
        orphans.state_attributes_deleted,
        orphans.states_meta_deleted,
        orphans.event_types_deleted,
    ) == (1, 1, 1)
    assert set(session.execute(select(StateAttributes.attributes_id)).scalars()) == {
        shared_attributes
    }
    assert set(session.execute(select(StatesMeta.entity_id)).scalars()) == {
        "sensor.retired",
        "sensor.fridge",
    }
    assert numeric_entity in set(session.execute(select(SensorStatistic.metadata_id)).scalars())
    assert set(session.execute(select(EventTypes.event_type)).scalars()) == {"vend_completed"}
    assert orphans.as_dict()["state_attributes_deleted"] == 1


def test_orphans_are_removed_in_bounded_batches(session: Session, rows: RecorderRows) -> None:
    for index in range(7):
        rows.attributes_id({"unused": index})
    session.commit()

    results = purge_until_done(session, CUTOFF, batch_size=3)

    assert [r.state_attributes_deleted for r in results] == [3, 3, 1]
    assert [r.done for r in results] == [False, False, True]
    assert count_rows(session, StateAttributes) == 0


def test_states_of_uncompiled_hours_are_kept_until_compiled(
    session: Session, rows: RecorderRows
) -> None:
    # 20:00 to 01:50, every 10 minutes: 24 states in the 4 hours before the cutoff.
    for index in range(36):
        rows.state("sensor.fridge", str(index), ts("2024-05-09T20:00:00") + index * 600)
    for index in range(3):
        rows.event("vend_completed", ts("2024-05-09T21:00:00") + index * 60)
    session.commit()

    nothing_compiled = purge_until_done(session, CUTOFF, batch_size=100)

    assert [(r.states_deleted, r.events_deleted) for r in nothing_compiled] == [(0, 3), (0, 0)]
    assert {r.kept_for_statistics_from for r in nothing_compiled} == {ts("2024-05-09T20:00:00")}
    assert count_rows(session, States) == 36

    for hour in ("2024-05-09T20:00:00", "2024-05-09T21:00:00"):
        compile_period(session, "hour", ts(hour), ts(hour) + HOUR)
    session.commit()
    two_hours = purge_until_done(session, CUTOFF, batch_size=100)

    assert sum(r.states_deleted for r in two_hours) == 12
    assert two_hours[0].kept_for_statistics_from == ts("2024-05-09T22:00:00")
    assert session.execute(select(func.min(States.last_updated_ts))).scalar() == ts(
        "2024-05-09T22:00:00"
    )

    compile_all(session, ts("2024-05-10T03:00:00"))
    rest = purge_until_done(session, CUTOFF, batch_size=5)

    assert sum(r.states_deleted for r in rest) == 12
    assert all(r.kept_for_statistics_from is None for r in rest)
    assert count_rows(session, States) == 12
    # The statistics of the purged hours stay.
    assert (
        count_rows(
            session,
            SensorStatistic,
            SensorStatistic.period == "hour",
            SensorStatistic.start_ts < CUTOFF,
        )
        == 4
    )


def test_purge_batch_size_must_be_positive(session: Session) -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        purge_batch(session, CUTOFF, batch_size=0)
