"""Sales per hour against the machine's own history: in memory and from the recorder."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.orm import Session

from vendhub.anomaly.sales_rate import CODE, SalesRateDetector, Verdict
from vendhub.core.hub import Hub
from vendhub.recorder.models.statistics import SalesStatistic, StatisticsRun
from vendhub.recorder.recorder import get_recorder
from vendhub_integrations.recorder import CONFIG_SCHEMA as RECORDER_SCHEMA
from vendhub_integrations.recorder import vendhub_setup as recorder_setup

from .conftest import (
    START,
    FakeClock,
    anomaly_alarms,
    fire_vend,
    start_anomaly,
    start_simulator,
)

KEY = ("lobby_1", CODE)


def detector_of(runtime: object) -> SalesRateDetector:
    detector = runtime.detectors["sales_rate"]  # type: ignore[attr-defined]
    assert isinstance(detector, SalesRateDetector)
    return detector


async def evaluate_hour(hub: Hub, clock: FakeClock, detector: SalesRateDetector, hour: datetime):
    """Judge the hour starting at ``hour``, as the hourly timer does 2 minutes after it."""
    clock.now = hour + timedelta(hours=1, minutes=2)
    verdicts = await detector.async_evaluate()
    await hub.async_block_till_done()
    return {verdict.machine_id: verdict for verdict in verdicts}


async def test_simulated_machine_spike_raises_and_the_next_usual_hour_clears(
    hub: Hub, clock: FakeClock
) -> None:
    simulator = await start_simulator(hub)
    detector = detector_of(await start_anomaly(hub, clock))
    judged: list[Verdict] = []
    for index in range(8 * 24):
        hour = START + timedelta(hours=index)
        day, hour_of_day = divmod(index, 24)
        spike = hour_of_day == 12 and day in (3, 7)
        if spike:  # a crowd (or a free-vend fault) at noon: 40 extra sales
            for _ in range(40):
                await hub.services.async_call(
                    "simulator", "vend", {"machine_id": "lobby_1", "slot": "A1"}
                )
        await simulator.async_step(3600)
        verdict = (await evaluate_hour(hub, clock, detector, hour))["lobby_1"]
        judged.append(verdict)
        if day < 7:
            # Fewer than 7 earlier days at this hour: never judged, even the spike of day 3.
            assert verdict.direction is None
            assert verdict.reason == f"not enough history ({day} of 7 hours)"
            assert anomaly_alarms(hub) == {}
        elif spike:
            assert verdict.direction == "high"
            alarm = anomaly_alarms(hub)[KEY]
            assert alarm.severity == "warning"
            assert re.fullmatch(
                r"lobby_1 sold (\d+) items in the last hour \(12:00-13:00\); its usual for this "
                r"hour is (\d+)-(\d+) \(median ([\d.]+) over 7 days\)\. "
                r"Check for free vends or a payment fault\.",
                alarm.message,
            ), alarm.message
            assert alarm.data["sold"] == verdict.sold >= 40
            assert alarm.data["source"] == "memory"
            assert alarm.data["usual_high"] < 15
        elif hour_of_day == 13 and day == 7:
            assert verdict.reason == "usual"
            assert KEY not in anomaly_alarms(hub)  # the usual hour after the spike cleared it
        else:
            assert verdict.reason == "usual", verdict
            assert anomaly_alarms(hub) == {}
    assert sum(1 for verdict in judged if verdict.direction == "high") == 1


async def test_low_sales_and_the_direction_setting(hub: Hub, clock: FakeClock) -> None:
    hub.states.async_set("machine.lobby_1", "online", {"mode": "normal"})
    detector = detector_of(
        await start_anomaly(
            hub,
            clock,
            {
                "sales_rate": {
                    "compare_with": "recent_hours",
                    "history": "6h",
                    "min_samples": 6,
                    "direction": "high",
                }
            },
        )
    )
    for index in range(6):
        hour = START + timedelta(hours=index)
        for minute in range(20):
            fire_vend(hub, "lobby_1", hour + timedelta(minutes=minute * 3))
        verdict = (await evaluate_hour(hub, clock, detector, hour))["lobby_1"]
        assert verdict.direction is None
    # Hour 6: nothing sold. That is low, but only high is wanted.
    verdict = (await evaluate_hour(hub, clock, detector, START + timedelta(hours=6)))["lobby_1"]
    assert verdict.band is not None and verdict.band.judge(0) == "low"
    assert verdict.direction is None
    assert anomaly_alarms(hub) == {}
    # Hour 7: 70 sold against 20 an hour (and the quiet hour 6).
    for second in range(70):
        fire_vend(hub, "lobby_1", START + timedelta(hours=7, seconds=second * 50))
    verdict = (await evaluate_hour(hub, clock, detector, START + timedelta(hours=7)))["lobby_1"]
    assert verdict.direction == "high"
    assert anomaly_alarms(hub)[KEY].message == (
        "lobby_1 sold 70 items in the last hour (07:00-08:00); its usual is 20 an hour "
        "(median 20 over the 6 hours before). Check for free vends or a payment fault."
    )


async def test_a_quiet_hour_against_a_busy_history(hub: Hub, clock: FakeClock) -> None:
    hub.states.async_set("machine.lobby_1", "online", {"mode": "normal"})
    detector = detector_of(await start_anomaly(hub, clock))
    for index in range(7 * 24 + 12):
        hour = START + timedelta(hours=index)
        for minute in range(30):
            fire_vend(hub, "lobby_1", hour + timedelta(minutes=minute))
        await evaluate_hour(hub, clock, detector, hour)
    assert anomaly_alarms(hub) == {}
    noon = START + timedelta(days=7, hours=12)
    verdict = (await evaluate_hour(hub, clock, detector, noon))["lobby_1"]
    assert verdict.direction == "low"
    assert anomaly_alarms(hub)[KEY].message == (
        "lobby_1 sold only 0 items in the last hour (12:00-13:00); its usual for this hour is "
        "30 (median 30 over 7 days). Check that it dispenses and takes payment."
    )
    for minute in range(28):
        fire_vend(hub, "lobby_1", noon + timedelta(hours=1, minutes=minute))
    await evaluate_hour(hub, clock, detector, noon + timedelta(hours=1))
    assert anomaly_alarms(hub) == {}


async def test_hours_offline_or_in_service_are_neither_judged_nor_history(
    hub: Hub, clock: FakeClock
) -> None:
    hub.states.async_set("machine.lobby_1", "online", {"mode": "normal"})
    hub.states.async_set("machine.gym_drinks", "online", {"mode": "normal"})
    detector = detector_of(await start_anomaly(hub, clock))
    clock.now = START + timedelta(minutes=20)
    hub.states.async_set("machine.lobby_1", "offline", {"mode": "normal"})
    clock.now = START + timedelta(minutes=40)
    hub.states.async_set("machine.lobby_1", "online", {"mode": "normal"})
    hub.states.async_set("machine.gym_drinks", "online", {"mode": "service"})
    verdicts = await evaluate_hour(hub, clock, detector, START)
    assert verdicts == {}
    assert detector.memory.counts == {}
    # Next hour: lobby_1 is fine again; gym_drinks is still in service mode.
    verdicts = await evaluate_hour(hub, clock, detector, START + timedelta(hours=1))
    assert list(verdicts) == ["lobby_1"]
    assert list(detector.memory.counts) == ["lobby_1"]


async def test_an_hour_watched_only_in_part_is_not_judged(hub: Hub, clock: FakeClock) -> None:
    clock.now = START + timedelta(minutes=30)  # the hub started at 00:30
    hub.states.async_set("machine.lobby_1", "online", {"mode": "normal"})
    detector = detector_of(await start_anomaly(hub, clock))
    assert await evaluate_hour(hub, clock, detector, START) == {}
    assert list(await evaluate_hour(hub, clock, detector, START + timedelta(hours=1))) == [
        "lobby_1"
    ]


async def test_history_from_the_recorder_statistics(
    hub: Hub, clock: FakeClock, tmp_path: Path
) -> None:
    await recorder_setup(
        hub=hub, config=RECORDER_SCHEMA({"db_url": f"sqlite:///{tmp_path / 'vendhub.db'}"})
    )
    noon = START + timedelta(days=10, hours=12)
    day = timedelta(days=1)

    def fill(session: Session) -> None:
        # Compiled noon hours of the 10 days before; lobby_1's first sale was 8 days before.
        # It sold 5 (Cola 3 + Water 2) at noon on days -8 .. -2 and nothing on day -1.
        runs = [
            {"period": "hour", "start_ts": (noon - day * days).timestamp(), "compiled_ts": 0.0}
            for days in range(1, 11)
        ]
        rows = [
            {
                "period": "hour",
                "start_ts": (noon - day * days).timestamp(),
                "machine_id": "lobby_1",
                "product": product,
                "currency": "EUR",
                "vends": vends,
                "failed": 0,
                "revenue": vends * 150,
            }
            for days in range(2, 9)
            for product, vends in (("Cola", 3), ("Water", 2))
        ]
        session.execute(insert(StatisticsRun), runs)
        session.execute(insert(SalesStatistic), rows)
        session.commit()

    await get_recorder(hub).async_run_job("test statistics", fill)
    clock.now = noon - timedelta(minutes=5)
    hub.states.async_set("machine.lobby_1", "online", {"mode": "normal"})
    detector = detector_of(await start_anomaly(hub, clock))
    for minute in range(20):
        fire_vend(hub, "lobby_1", noon + timedelta(minutes=minute))
    verdict = (await evaluate_hour(hub, clock, detector, noon))["lobby_1"]
    assert verdict.band is not None and verdict.band.samples == 8  # days -8 .. -1, not -9, -10
    assert verdict.band.median == 5
    alarm = anomaly_alarms(hub)[KEY]
    assert alarm.data["source"] == "recorder"
    assert alarm.message == (
        "lobby_1 sold 20 items in the last hour (12:00-13:00); its usual for this hour is 5 "
        "(median 5 over 8 days). Check for free vends or a payment fault."
    )
