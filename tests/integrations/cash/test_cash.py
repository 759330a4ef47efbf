"""Cash accounting with a simulated machine on the real machine link, the real recorder
(each backend) and the real alarm integration."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub
from vendhub.recorder.models import CashCollection, EventLogEntry
from vendhub.recorder.recorder import get_recorder

MACHINE = "lobby_1"  # simulated: its link keeps its cash box
LOCAL_MACHINE = "kiosk_9"  # driven by this hub (vending): no cash box but a local provider's
USD_MACHINE = "airport_2"  # a local machine that takes US dollars (the hub's currency is EUR)


async def start_hub(config_dir: Path, db_url: str, tolerance: int = 20, extra: str = "") -> Hub:
    (config_dir / "configuration.yaml").write_text(
        f'recorder:\n  db_url: "{db_url}"\n  commit_interval: 0.1\n'
        f"alarm:\ncash:\n  tolerance: {tolerance}\n  severity: warning\n{extra}"
        "simulator:\n  summary_interval: 0\n  tick: 3600\n  machines:\n"
        f"    - id: {MACHINE}\n      jam_rate: 0\n      failure_rate: 0\n"
        "      slots:\n        A1: {product: Cola, price: 150, capacity: 20}\n"
        "vending:\n  machines:\n"
        f"    {LOCAL_MACHINE}:\n"
        "      planogram: {A1: {product: Gum, price: 80, capacity: 5}}\n"
        "      dispenser: {platform: simulator, dispense_time: 0}\n"
        f"    {USD_MACHINE}:\n      currency: USD\n"
        "      planogram: {A1: {product: Gum, price: 80, capacity: 5}}\n"
        "      dispenser: {platform: simulator, dispense_time: 0}\n"
    )
    prepared = await asyncio.to_thread(prepare, config_dir)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    assert report.failed == {}
    assert {"cash", "alarm", "recorder", "simulator", "vending"} <= set(report.loaded)
    return hub


async def sell_for_cash(hub: Hub, times: int) -> None:
    for _ in range(times):
        await hub.services.async_call(
            "simulator", "vend", {"machine_id": MACHINE, "slot": "A1", "payment_method": "cash"}
        )


async def machine_reports_collection(hub: Hub) -> None:
    """The route driver opens the cash box: the machine reports what was taken out."""
    runtime = hub.data["simulator"]
    await runtime.async_feed(MACHINE, runtime.machine(MACHINE).collect_cash(), None)


def recorded(hub: Hub, event_type: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    hub.bus.async_listen(event_type, lambda event: seen.append(dict(event.data)))
    return seen


async def record(hub: Hub, **data: Any) -> dict[str, Any]:
    return await hub.services.async_call(
        "cash", "record_collection", {"machine_id": MACHINE, "collected_by": "route_7", **data}
    )


async def active_alarms(hub: Hub) -> list[dict[str, Any]]:
    return (await hub.services.async_call("alarm", "list", {}))["active"]


async def test_a_collection_short_beyond_the_tolerance_raises_an_alarm(
    tmp_path: Path, db_url: str
) -> None:
    hub = await start_hub(tmp_path, db_url)
    try:
        raised = recorded(hub, "alarm_raised")
        await sell_for_cash(hub, 3)
        assert hub.states.get(f"sensor.{MACHINE}_cash_box").state == "450"
        await machine_reports_collection(hub)

        result = await record(hub, counted=400, collection_id="route7-0501")
        assert (result["expected"], result["difference"], result["status"]) == (
            450,
            -50,
            "discrepancy",
        )
        assert result["expected_source"] == "machine_reported"
        await hub.async_block_till_done()
        assert [(a["code"], a["machine_id"], a["severity"]) for a in raised] == [
            ("cash_discrepancy", MACHINE, "warning")
        ]
        (alarm,) = await active_alarms(hub)
        assert alarm["data"]["difference"] == -50 and alarm["data"]["collected_by"] == "route_7"
        assert "0.50 EUR short" in alarm["message"]

        again = await record(hub, counted=400, collection_id="route7-0501")
        assert again["duplicate"] is True

        def stored(session: Session) -> tuple[list[Any], list[Any]]:
            collections = session.execute(
                select(
                    CashCollection.source_event_id,
                    CashCollection.amount,
                    CashCollection.collected_by,
                ).order_by(CashCollection.id)
            ).all()
            log = session.execute(
                select(EventLogEntry.kind, EventLogEntry.code, EventLogEntry.source_event_id)
            ).all()
            return [tuple(row) for row in collections], [tuple(row) for row in log]

        collections, log = await get_recorder(hub).async_query(stored)
        assert collections[1:] == [("counted:route7-0501", 400, "route_7")]
        assert collections[0][1] == 450  # the machine's own report, written by the recorder
        assert log == [("cash", "cash_discrepancy", "counted:route7-0501")]
        last = hub.states.get(f"sensor.{MACHINE}_last_cash_collection")
        assert last.state == "400" and last.attributes["difference"] == -50
        assert len(raised) == 1
    finally:
        await hub.async_stop()


async def test_a_collection_within_the_tolerance_raises_no_alarm(
    tmp_path: Path, db_url: str
) -> None:
    hub = await start_hub(tmp_path, db_url)
    try:
        raised = recorded(hub, "alarm_raised")
        updated = recorded(hub, "alarm_updated")
        await sell_for_cash(hub, 2)
        await machine_reports_collection(hub)
        first = await record(hub, counted=290)  # 10 short, the tolerance is 20
        assert (first["expected"], first["status"]) == (300, "matched")

        # A machine that does not report its collections: its cash box counts.
        await sell_for_cash(hub, 2)
        second = await record(hub, counted=300)
        assert (second["expected_source"], second["expected"], second["status"]) == (
            "cash_box",
            300,
            "matched",
        )
        await sell_for_cash(hub, 1)  # the box counter, never reset, shows 450
        third = await record(hub, counted=150)
        assert (third["expected"], third["difference"]) == (150, 0)
        await hub.async_block_till_done()
        assert raised == [] and updated == []
        assert await active_alarms(hub) == []

        report = await hub.services.async_call("cash", "collections", {"machine_id": MACHINE})
        assert [item["counted"] for item in report["items"]] == [150, 300, 290]
        assert report["totals"] == [
            {
                "machine_id": MACHINE,
                "currency": "EUR",
                "collections": 3,
                "counted": 740,
                "expected": 750,
                "difference": -10,
                "discrepancies": 0,
            }
        ]
        assert report["not_counted"] == []
        await machine_reports_collection(hub)
        report = await hub.services.async_call("cash", "collections", {})
        assert [item["amount"] for item in report["not_counted"]] == [450]

        with pytest.raises(InvalidServiceData, match="collected_by"):
            await hub.services.async_call(
                "cash", "record_collection", {"machine_id": MACHINE, "counted": 100}
            )
        with pytest.raises(InvalidServiceData, match="minor units"):
            await record(hub, counted=12.5)
    finally:
        await hub.async_stop()


async def test_a_local_cash_provider_reports_tubes_and_cash_box(
    tmp_path: Path, db_url: str
) -> None:
    hub = await start_hub(tmp_path, db_url)
    try:
        hub.bus.async_fire(
            "cash_levels_reported",
            {
                "machine_id": LOCAL_MACHINE,
                "currency": "EUR",
                "tubes": {"10": 25, "50": 12},
                "cash_box": 1200,
                "source": "mdb",
            },
        )
        await hub.async_block_till_done()
        tubes = hub.states.get(f"sensor.{LOCAL_MACHINE}_coin_tubes")
        assert tubes.state == "850"
        assert tubes.attributes["tubes"] == {"10": 25, "50": 12}
        assert tubes.attributes["coins"] == 37
        assert hub.states.get(f"sensor.{LOCAL_MACHINE}_cash_box").state == "1200"

        await hub.services.async_call(
            "cash",
            "report_levels",
            {"machine_id": LOCAL_MACHINE, "tubes": {"10": 20, "50": 12}, "cash_box": 1300},
        )
        await hub.async_block_till_done()
        assert hub.states.get(f"sensor.{LOCAL_MACHINE}_coin_tubes").state == "800"
        assert hub.states.get(f"sensor.{LOCAL_MACHINE}_cash_box").state == "1300"

        # The machine link keeps lobby_1's cash box: a local figure does not replace it.
        await sell_for_cash(hub, 1)
        await hub.services.async_call(
            "cash", "report_levels", {"machine_id": MACHINE, "tubes": {"100": 3}, "cash_box": 9}
        )
        await hub.async_block_till_done()
        assert hub.states.get(f"sensor.{MACHINE}_cash_box").state == "150"
        assert hub.states.get(f"sensor.{MACHINE}_coin_tubes").state == "300"

        result = await hub.services.async_call(
            "cash",
            "record_collection",
            {"machine_id": LOCAL_MACHINE, "counted": 1000, "collected_by": "route_2"},
        )
        assert (result["expected_source"], result["expected"]) == ("cash_box", 1300)
        await hub.async_block_till_done()
        (alarm,) = await active_alarms(hub)
        assert (alarm["machine_id"], alarm["code"]) == (LOCAL_MACHINE, "cash_discrepancy")

        with pytest.raises(InvalidServiceData, match="whole number of coins"):
            await hub.services.async_call(
                "cash", "report_levels", {"machine_id": LOCAL_MACHINE, "tubes": {"10": -1}}
            )
    finally:
        await hub.async_stop()
