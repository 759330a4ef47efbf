"""Cash collected against the machine's cash box, and against the counted cash."""

from __future__ import annotations

from typing import Any

from vendhub.anomaly.cash import BOX_CODE, COUNT_CODE
from vendhub.core.hub import Hub
from vendhub_integrations.simulator.runtime import SimulatorRuntime

from .conftest import FakeClock, anomaly_alarms, start_anomaly, start_simulator


async def cash_sales(hub: Hub, count: int) -> None:
    for _ in range(count):  # Cola at 1.50, paid in cash
        await hub.services.async_call(
            "simulator", "vend", {"machine_id": "lobby_1", "slot": "A1", "payment_method": "cash"}
        )


async def collect(simulator: SimulatorRuntime, amount: int | None = None) -> str:
    """The machine's cash collection, through the link; ``amount`` overrides what it says."""
    messages = simulator.machines["lobby_1"].collect_cash()
    if amount is not None:
        messages[0]["data"]["amount"] = amount
    await simulator.async_feed("lobby_1", messages)
    await simulator.hub.async_block_till_done()
    return str(messages[0]["id"])


async def count(hub: Hub, amount: int, **data: Any) -> dict[str, Any]:
    result = await hub.services.async_call(
        "anomaly", "report_cash_count", {"machine_id": "lobby_1", "amount": amount, **data}
    )
    await hub.async_block_till_done()
    assert isinstance(result, dict)
    return result


async def test_counted_cash_matches_or_raises_and_a_recount_clears(
    hub: Hub, clock: FakeClock
) -> None:
    simulator = await start_simulator(hub)
    await start_anomaly(hub, clock)
    await cash_sales(hub, 3)
    first = await collect(simulator)
    assert anomaly_alarms(hub) == {}  # 4.50 in the box, 4.50 taken out
    assert await count(hub, 450) == {
        "event_id": first,
        "reported": 450,
        "counted": 450,
        "currency": "EUR",
        "difference": 0,
        "status": "matched",
    }

    await cash_sales(hub, 2)
    second = await collect(simulator)
    result = await count(hub, 250, counted_by="driver_bob")
    assert result["status"] == "mismatch"
    assert result["event_id"] == second and result["difference"] == -50
    alarm = anomaly_alarms(hub)[("lobby_1", COUNT_CODE)]
    assert alarm.severity == "critical"
    assert alarm.message == (
        "lobby_1 reported EUR 3.00 collected at 06 May 00:00; EUR 2.50 was counted by "
        "driver_bob (EUR 0.50 short)."
    )
    # Counted again: the 0.50 was found in the bag.
    assert (await count(hub, 300, event_id=second))["status"] == "matched"
    assert anomaly_alarms(hub) == {}


async def test_box_that_does_not_add_up(hub: Hub, clock: FakeClock) -> None:
    simulator = await start_simulator(hub)
    await start_anomaly(hub, clock)
    await cash_sales(hub, 3)
    await collect(simulator, amount=100)  # says 1.00 taken out, leaves 0 of 4.50
    alarm = anomaly_alarms(hub)[("lobby_1", BOX_CODE)]
    assert alarm.message == (
        "lobby_1 reported EUR 1.00 collected at 06 May 00:00, but its cash box went from "
        "EUR 4.50 to EUR 0.00 (EUR 4.50): EUR 3.50 less than the box showed."
    )


async def test_a_count_before_its_collection_waits_for_it(hub: Hub, clock: FakeClock) -> None:
    simulator = await start_simulator(hub)
    await start_anomaly(hub, clock)
    await cash_sales(hub, 2)
    messages = simulator.machines["lobby_1"].collect_cash()  # collected, not yet sent
    result = await count(hub, 200, event_id=messages[0]["id"])
    assert result["status"] == "waiting"
    assert anomaly_alarms(hub) == {}
    await simulator.async_feed("lobby_1", messages)
    await hub.async_block_till_done()
    assert anomaly_alarms(hub)[("lobby_1", COUNT_CODE)].message.endswith(
        "EUR 2.00 was counted (EUR 1.00 short)."
    )


async def test_tolerance_and_currency(hub: Hub, clock: FakeClock) -> None:
    simulator = await start_simulator(hub)
    await start_anomaly(hub, clock, {"cash": {"tolerance": 100}})
    await cash_sales(hub, 2)
    await collect(simulator)
    assert (await count(hub, 250))["status"] == "matched"  # 0.50 under: within 1.00

    await cash_sales(hub, 1)
    await collect(simulator)
    result = await count(hub, 150, currency="USD")
    assert result["status"] == "mismatch"
    assert "counted in USD, but the machine reports EUR" in result["detail"]
