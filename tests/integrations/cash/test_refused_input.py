"""What the cash services refuse: a machine the hub does not have, another currency than the
machine's, a collection time in the future or long ago, an absurd amount, a boolean limit.
Each refusal is InvalidServiceData (HTTP 400) that names the field, and leaves nothing behind:
no collection row, no event log entry, no alarm, no entity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub
from vendhub.recorder.models import CashCollection, EventLogEntry
from vendhub.recorder.recorder import get_recorder
from vendhub.registry import DATA_ENTITY_REGISTRY
from vendhub.util.dt import utcnow

from .test_cash import (
    LOCAL_MACHINE,
    MACHINE,
    USD_MACHINE,
    active_alarms,
    record,
    recorded,
    start_hub,
)


class Watch:
    """What the hub holds before the calls, to show that a refused call changed none of it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.entity_ids = set(hub.states.async_entity_ids())
        self.registered = set(hub.data[DATA_ENTITY_REGISTRY].entities)
        self.raised = recorded(hub, "alarm_raised")
        self.collections_recorded = recorded(hub, "cash_collection_recorded")

    async def rows(self) -> tuple[int, int]:
        def count(session: Session) -> tuple[int, int]:
            collections = session.execute(select(func.count()).select_from(CashCollection))
            log = session.execute(select(func.count()).select_from(EventLogEntry))
            return collections.scalar_one(), log.scalar_one()

        recorder = get_recorder(self.hub)
        await recorder.async_flush()
        return await recorder.async_query(count)

    async def assert_nothing_stored(self) -> None:
        await self.hub.async_block_till_done()
        assert await self.rows() == (0, 0)
        assert self.raised == [] and self.collections_recorded == []
        assert await active_alarms(self.hub) == []
        assert set(self.hub.states.async_entity_ids()) == self.entity_ids
        assert set(self.hub.data[DATA_ENTITY_REGISTRY].entities) == self.registered


@pytest.fixture
async def hub(tmp_path: Path, db_url: str) -> AsyncIterator[Hub]:
    hub = await start_hub(tmp_path, db_url)
    try:
        yield hub
    finally:
        await hub.async_stop()


async def refused(hub: Hub, service: str, data: dict[str, Any]) -> str:
    """The problem the refusal of ``cash.<service>`` names."""
    with pytest.raises(InvalidServiceData) as caught:
        await hub.services.async_call("cash", service, data)
    return caught.value.problem


async def test_a_collection_for_a_machine_the_hub_does_not_have_is_refused(hub: Hub) -> None:
    watch = Watch(hub)
    problem = await refused(
        hub, "record_collection", {"machine_id": "nope", "counted": 100, "collected_by": "r"}
    )
    assert problem == (
        "machine_id: the hub has no machine 'nope' (no machine entity); give the id of one "
        f"of its machines: {USD_MACHINE}, {LOCAL_MACHINE}, {MACHINE}"
    )
    problem = await refused(
        hub, "record_collection", {"machine_id": "lobby_2", "counted": 100, "collected_by": "r"}
    )
    assert problem.endswith(f"no machine 'lobby_2' (no machine entity); did you mean {MACHINE!r}?")
    await watch.assert_nothing_stored()
    assert hub.states.get("sensor.nope_last_cash_collection") is None


async def test_levels_of_a_machine_the_hub_does_not_have_are_refused(hub: Hub) -> None:
    watch = Watch(hub)
    problem = await refused(hub, "report_levels", {"machine_id": "nope", "tubes": {"10": 1}})
    assert problem.startswith("machine_id: the hub has no machine 'nope'")
    # A cash provider's own report of such a machine is ignored too.
    hub.bus.async_fire("cash_levels_reported", {"machine_id": "nope", "tubes": {"10": 1}})
    hub.bus.async_fire(
        "cash_levels_reported", {"machine_id": "ghost", "tubes": {"10": 1}, "cash_box": 5}
    )
    await watch.assert_nothing_stored()
    assert hub.states.get("sensor.nope_coin_tubes") is None
    assert hub.states.get("sensor.ghost_cash_box") is None


async def test_a_collection_in_another_currency_than_the_machines_is_refused(hub: Hub) -> None:
    watch = Watch(hub)
    for currency in ("USD", "XYZ"):
        problem = await refused(
            hub,
            "record_collection",
            {"machine_id": MACHINE, "counted": 100, "collected_by": "r", "currency": currency},
        )
        assert problem == (
            f"currency: {MACHINE} takes EUR, not {currency}; count the collection in EUR "
            "(or leave currency out)"
        )
    problem = await refused(
        hub, "report_levels", {"machine_id": LOCAL_MACHINE, "currency": "USD", "tubes": {"10": 1}}
    )
    assert problem.startswith(f"currency: {LOCAL_MACHINE} takes EUR, not USD;")
    await watch.assert_nothing_stored()
    report = await hub.services.async_call("cash", "collections", {"machine_id": MACHINE})
    assert report["totals"] == [] and report["items"] == []

    # The machine's own currency, not the hub's: airport_2 takes US dollars.
    problem = await refused(
        hub,
        "record_collection",
        {"machine_id": USD_MACHINE, "counted": 1, "collected_by": "r", "currency": "EUR"},
    )
    assert problem.startswith(f"currency: {USD_MACHINE} takes USD, not EUR;")
    result = await hub.services.async_call(
        "cash", "record_collection", {"machine_id": USD_MACHINE, "counted": 0, "collected_by": "r"}
    )
    assert result["currency"] == "USD"


async def refused_collected_at(hub: Hub, collected_at: str) -> str:
    return await refused(
        hub,
        "record_collection",
        {"machine_id": MACHINE, "counted": 0, "collected_by": "r", "collected_at": collected_at},
    )


async def test_a_collection_in_the_future_is_refused(hub: Hub) -> None:
    watch = Watch(hub)
    problem = await refused_collected_at(hub, "9999-12-31T23:59:59Z")
    assert problem.startswith(
        "collected_at: 9999-12-31T23:59:59+00:00 is in the future (the hub's clock says "
    )
    assert problem.endswith(
        "); give the time the cash was collected, or leave collected_at out for now"
    )
    in_an_hour = (utcnow() + timedelta(hours=1)).isoformat()
    assert "is in the future" in await refused_collected_at(hub, in_an_hour)
    await watch.assert_nothing_stored()

    # A handheld's clock a little ahead is taken.
    await record(hub, counted=0, collected_at=(utcnow() + timedelta(minutes=2)).isoformat())


async def test_a_collection_long_ago_is_refused(hub: Hub) -> None:
    watch = Watch(hub)
    assert await refused_collected_at(hub, "0001-01-01T00:00:00Z") == (
        "collected_at: 0001-01-01T00:00:00+00:00 is more than 366 days ago; give the time the "
        "cash was collected (a count is compared with what the machine reported since its "
        "last counted collection)"
    )
    last_year = (utcnow() - timedelta(days=400)).isoformat()
    assert "is more than 366 days ago" in await refused_collected_at(hub, last_year)
    await watch.assert_nothing_stored()

    # Yesterday's collection, entered today, is taken.
    await record(hub, counted=0, collected_at=(utcnow() - timedelta(days=1)).isoformat())


async def test_a_collection_dated_before_the_last_counted_one_is_refused(hub: Hub) -> None:
    yesterday = utcnow() - timedelta(days=1)
    await record(hub, counted=0, collection_id="mon", collected_at=yesterday.isoformat())
    watch = Watch(hub)
    rows = await watch.rows()
    earlier = (yesterday - timedelta(hours=3)).replace(microsecond=0)
    problem = await refused_collected_at(hub, earlier.isoformat())
    assert problem == (
        f"collected_at: {earlier.isoformat()} is before {MACHINE}'s last counted collection "
        f"'mon' ({yesterday.replace(microsecond=0).isoformat()}); a count is compared with "
        "what went in since the one before it, so record collections in the order they were "
        "made"
    )
    await hub.async_block_till_done()
    assert await watch.rows() == rows
    assert watch.raised == [] and watch.collections_recorded == []

    # The same collection sent again answers what was recorded; a later one is taken.
    again = await record(hub, counted=0, collection_id="mon", collected_at=earlier.isoformat())
    assert again["collection_id"] == "mon" and again["duplicate"] is True
    later = await record(hub, counted=0, collected_at=utcnow().isoformat())
    assert later["duplicate"] is False


async def test_an_absurd_amount_is_refused(hub: Hub) -> None:
    watch = Watch(hub)
    problem = await refused(
        hub,
        "record_collection",
        {"machine_id": MACHINE, "counted": 100_000_001, "collected_by": "r"},
    )
    assert problem == (
        "counted: 100,000,001 minor units is more than the 100,000,000 that cash accounting "
        "takes; check the figure (a larger one needs cash: max_amount raised)"
    )
    # Refused by cv.money_minor_units or by the cash integration: a 400, never SQLite's 500.
    problem = await refused(
        hub,
        "record_collection",
        {"machine_id": MACHINE, "counted": 99999999999999999999999, "collected_by": "r"},
    )
    assert problem.startswith("counted: ") and len(problem) < 300, problem
    for data, field in (
        ({"tubes": {"10": 1}, "cash_box": 100_000_001}, "cash_box"),
        ({"tubes": {"200": 500_001}}, "tubes (the coins' value)"),
        ({"tubes": {"100000001": 1}}, "tubes (the coins' value)"),
    ):
        problem = await refused(hub, "report_levels", {"machine_id": LOCAL_MACHINE, **data})
        assert problem.startswith(f"{field}: "), problem
    await watch.assert_nothing_stored()
    result = await record(hub, counted=100_000_000)  # the largest taken
    assert result["counted"] == 100_000_000


async def test_an_absurd_amount_is_refused_by_the_configured_bound(
    tmp_path: Path, db_url: str
) -> None:
    hub = await start_hub(tmp_path, db_url, extra="  max_amount: 50000\n")
    try:
        watch = Watch(hub)
        problem = await refused(
            hub,
            "record_collection",
            {"machine_id": MACHINE, "counted": 50_001, "collected_by": "r"},
        )
        assert problem == (
            "counted: 50,001 minor units is more than the 50,000 that cash accounting takes; "
            "check the figure (a larger one needs cash: max_amount raised)"
        )
        await watch.assert_nothing_stored()
    finally:
        await hub.async_stop()


async def test_a_boolean_limit_is_refused(hub: Hub) -> None:
    for limit, problem in (
        (True, "limit: expected a positive integer"),
        (0, "limit: expected a positive integer"),
        (1001, "limit: expected a limit of 1 to 1000"),
    ):
        assert (await refused(hub, "collections", {"limit": limit})).startswith(problem)
    assert (await hub.services.async_call("cash", "collections", {"limit": 1}))["items"] == []
