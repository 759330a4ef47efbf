"""Vend-failure and refund rates over a machine's last vends."""

from __future__ import annotations

import uuid

from vendhub.anomaly.failure_rate import FAILURE_CODE, REFUND_CODE
from vendhub.const import EVENT_PAYMENT_REFUNDED
from vendhub.core.hub import Hub

from .conftest import (
    FakeClock,
    anomaly_alarms,
    fire_vend,
    machine_config,
    start_anomaly,
    start_simulator,
)


async def vends(
    hub: Hub, clock: FakeClock, *, completed: int = 0, failed: int = 0, reason: str = "jam"
) -> list[str]:
    ids = []
    for _ in range(completed):
        ids.append(fire_vend(hub, "lobby_1", clock.advance(minutes=1)))
    for _ in range(failed):
        ids.append(fire_vend(hub, "lobby_1", clock.advance(minutes=1), failed=True, reason=reason))
    await hub.async_block_till_done()
    return ids


def refund(hub: Hub, vend_id: str | None = None) -> None:
    hub.bus.async_fire(
        EVENT_PAYMENT_REFUNDED,
        {"machine_id": "lobby_1", "vend_id": vend_id or uuid.uuid4().hex, "amount": 150},
    )


async def test_failure_rate_raises_and_clears(hub: Hub, clock: FakeClock) -> None:
    await start_anomaly(hub, clock)
    await vends(hub, clock, completed=3, failed=5)
    assert anomaly_alarms(hub) == {}  # 8 vends: fewer than min_vends (10)
    await vends(hub, clock, completed=1, failed=1, reason="motor")
    alarm = anomaly_alarms(hub)[("lobby_1", FAILURE_CODE)]
    assert alarm.message == (
        "lobby_1: 6 of its last 10 vends failed (60%: jam 5, motor 1); more than 30% is unusual."
    )
    assert alarm.data["rate"] == 0.6
    # Still failing more than half the limit (15%): the alarm stays, and is raised only once.
    await vends(hub, clock, completed=10)
    assert anomaly_alarms(hub)[("lobby_1", FAILURE_CODE)].count == 1
    await vends(hub, clock, completed=3)  # the oldest 3 (completed) left: still 6 of 20
    assert ("lobby_1", FAILURE_CODE) in anomaly_alarms(hub)
    await vends(hub, clock, completed=3)  # 3 jams left: 3 of 20, 15%, half the limit
    assert anomaly_alarms(hub) == {}


async def test_sold_out_and_locked_are_not_failures(hub: Hub, clock: FakeClock) -> None:
    await start_anomaly(hub, clock)
    await vends(hub, clock, completed=10)
    await vends(hub, clock, failed=10, reason="sold_out")
    await vends(hub, clock, failed=10, reason="locked")
    assert anomaly_alarms(hub) == {}


async def test_failures_older_than_max_age_are_forgotten(hub: Hub, clock: FakeClock) -> None:
    await start_anomaly(hub, clock, {"failure_rate": {"max_age": "1h"}})
    await vends(hub, clock, failed=5)
    clock.advance(hours=2)
    await vends(hub, clock, completed=10)
    assert anomaly_alarms(hub) == {}


async def test_refunds_of_failed_vends_do_not_count_the_others_do(
    hub: Hub, clock: FakeClock
) -> None:
    await start_anomaly(hub, clock, {"failure_rate": {"max_failure_rate": "100%"}})
    failed = await vends(hub, clock, completed=8, failed=2)
    for vend_id in failed[-2:]:
        refund(hub, vend_id)  # the automatic refunds of the two failures
    await hub.async_block_till_done()
    assert anomaly_alarms(hub) == {}
    completed = failed[:8]
    for vend_id in completed[:3]:  # refunds of sales that went through: by hand, at the desk
        refund(hub, vend_id)
    await hub.async_block_till_done()
    alarm = anomaly_alarms(hub)[("lobby_1", REFUND_CODE)]
    assert alarm.message == (
        "lobby_1: 3 refunds against its last 10 vends (30%), not counting the automatic refunds "
        "of failed vends; more than 20% is unusual."
    )
    clock.advance(minutes=1)
    await vends(hub, clock, completed=20)  # the refunds are older than the window's vends
    assert anomaly_alarms(hub) == {}


async def test_normal_simulated_failure_rates_raise_nothing(hub: Hub, clock: FakeClock) -> None:
    simulator = await start_simulator(
        hub, machine_config(jam_rate=0.01, failure_rate=0.005, sales_per_hour=30)
    )
    await start_anomaly(hub, clock)
    for _ in range(7 * 24):
        await simulator.async_step(3600)
        clock.advance(hours=1)
    await hub.async_block_till_done()
    assert simulator.machines["lobby_1"].vends_failed > 0
    assert anomaly_alarms(hub) == {}
