"""The recorder's services, through a hub started from a real configuration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub
from vendhub.recorder.recorder import get_recorder

_EARLY = datetime(2024, 1, 1, tzinfo=UTC)


async def _start_recorder_hub(tmp_path: Path, db_url: str) -> Hub:
    """A hub with only the recorder, on ``db_url``."""
    (tmp_path / "configuration.yaml").write_text(
        f'recorder:\n  db_url: "{db_url}"\n  commit_interval: 0.1\n'
    )
    prepared = await asyncio.to_thread(prepare, tmp_path)
    assert prepared.issues == []
    hub, _report = await async_start_hub(prepared)
    return hub


async def test_services_answer_from_the_database(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "configuration.yaml").write_text(
        f'recorder:\n  db_url: "{db_url}"\n  commit_interval: 0.1\n'
        "simulator:\n  summary_interval: 0\n  tick: 3600\n  machines:\n"
        "    - id: lobby_1\n      refrigerated: true\n      jam_rate: 0\n      failure_rate: 0\n"
        "      slots:\n        A1: {product: Cola, price: 150, capacity: 10}\n"
    )
    prepared = await asyncio.to_thread(prepare, tmp_path)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    try:
        assert sorted(report.loaded) == ["recorder", "simulator"]
        for method in ("cash", "card", "card"):
            await hub.services.async_call(
                "simulator",
                "vend",
                {"machine_id": "lobby_1", "slot": "A1", "payment_method": method},
            )
        await get_recorder(hub).async_flush()

        history = await hub.services.async_call(
            "recorder", "history", {"entity_ids": "slot.lobby_1_a1"}
        )
        assert [row["state"] for row in history["slot.lobby_1_a1"]] == ["10", "9", "8", "7"]

        sales = await hub.services.async_call("recorder", "sales", {"machine_id": "lobby_1"})
        assert [(t["vends"], t["revenue"], t["currency"]) for t in sales["totals"]] == [
            (3, 450, "EUR")
        ]

        page = await hub.services.async_call(
            "recorder", "transactions", {"machine_id": "lobby_1", "limit": 2}
        )
        assert [item["payment_method"] for item in page["items"]] == ["card", "card"]
        assert page["next_before_id"] is not None
        rest = await hub.services.async_call(
            "recorder", "transactions", {"before_id": page["next_before_id"]}
        )
        assert [item["payment_method"] for item in rest["items"]] == ["cash"]

        payments = await hub.services.async_call("recorder", "payments", {"method": "card"})
        assert [(p["amount"], p["status"]) for p in payments["items"]] == [
            (150, "captured"),
            (150, "captured"),
        ]

        with pytest.raises(InvalidServiceData, match="must be before end"):
            await hub.services.async_call(
                "recorder",
                "history",
                {
                    "entity_ids": ["slot.lobby_1_a1"],
                    "start": "2024-05-07T00:00:00",
                    "end": "2024-05-06T00:00:00",
                },
            )
        with pytest.raises(InvalidServiceData, match="limit"):
            await hub.services.async_call("recorder", "payments", {"limit": 5000})
        # An end at the start of year 1 leaves no room for the default period before it: a
        # refusal, not an OverflowError.
        for service, data in (
            ("sales", {}),
            ("history", {"entity_ids": ["slot.lobby_1_a1"]}),
        ):
            with pytest.raises(InvalidServiceData, match="must be before end"):
                await hub.services.async_call(
                    "recorder", service, {**data, "end": "0001-01-01T00:00:00+00:00"}
                )
    finally:
        await hub.async_stop()
    assert not hub.services.has_service("recorder", "history")


async def test_rejected_money_events_are_listed_with_their_reason(
    tmp_path: Path, db_url: str
) -> None:
    hub = await _start_recorder_hub(tmp_path, db_url)
    try:
        recorder = get_recorder(hub)
        for number, machine_id in enumerate(("lobby_1", "lobby_2", "lobby_1"), start=1):
            event_id = f"bad-{number}"
            waiter = asyncio.ensure_future(
                recorder.async_wait_recorded(machine_id, event_id, timeout=10)
            )
            await asyncio.sleep(0)
            # No price: the ledger cannot take it.
            hub.bus.async_fire(
                "vend_completed",
                {"machine_id": machine_id, "event_id": event_id, "slot": "A1", "currency": "EUR"},
            )
            assert (await waiter).rejected is True

        page = await hub.services.async_call(
            "recorder", "rejected_money_events", {"machine_id": "lobby_1", "limit": 1}
        )
        [newest] = page["items"]
        assert (newest["event_type"], newest["machine_id"], newest["event_id"]) == (
            "vend_completed",
            "lobby_1",
            "bad-3",
        )
        assert newest["data"]["slot"] == "A1" and "price" not in newest["data"]
        assert newest["error"] == "KeyError: 'price'"
        rest = await hub.services.async_call(
            "recorder",
            "rejected_money_events",
            {"machine_id": "lobby_1", "before_id": page["next_before_id"]},
        )
        assert [item["event_id"] for item in rest["items"]] == ["bad-1"]
        assert rest["next_before_id"] is None
        everything = await hub.services.async_call("recorder", "rejected_money_events", {})
        assert [item["event_id"] for item in everything["items"]] == ["bad-3", "bad-2", "bad-1"]
        with pytest.raises(InvalidServiceData, match="limit"):
            await hub.services.async_call("recorder", "rejected_money_events", {"limit": 0})
    finally:
        await hub.async_stop()


async def test_a_rejected_money_event_is_put_right_into_the_ledger(
    tmp_path: Path, db_url: str
) -> None:
    hub = await _start_recorder_hub(tmp_path, db_url)
    try:
        recorder = get_recorder(hub)
        waiter = asyncio.ensure_future(recorder.async_wait_recorded("lobby_1", "bad-1", timeout=10))
        await asyncio.sleep(0)
        hub.bus.async_fire(  # no price: the ledger cannot take it
            "vend_completed",
            {
                "machine_id": "lobby_1",
                "event_id": "bad-1",
                "slot": "A1",
                "product": "Cola",
                "currency": "EUR",
                "payment_method": "card",
                "ts": "2024-05-06T12:00:00+00:00",
                "stock": 7,
            },
        )
        assert (await waiter).rejected is True
        [rejected] = (await hub.services.async_call("recorder", "rejected_money_events", {}))[
            "items"
        ]

        # Still wrong: refused, and it stays where it is.
        with pytest.raises(InvalidServiceData, match=r"still refuses.*price.*nothing was changed"):
            await hub.services.async_call(
                "recorder",
                "resubmit_rejected_money_event",
                {"id": rejected["id"], "data": {"product": "Cola 0.5"}},
            )
        for price in ("one fifty", 1.5):
            with pytest.raises(InvalidServiceData, match="price must be a whole number"):
                await hub.services.async_call(
                    "recorder",
                    "resubmit_rejected_money_event",
                    {"id": rejected["id"], "data": {"price": price}},
                )
        with pytest.raises(InvalidServiceData, match="no rejected money event with id 999"):
            await hub.services.async_call(
                "recorder", "resubmit_rejected_money_event", {"id": 999, "data": {"price": 150}}
            )
        still = await hub.services.async_call("recorder", "rejected_money_events", {})
        assert [item["id"] for item in still["items"]] == [rejected["id"]]
        page = await hub.services.async_call("recorder", "transactions", {"start": _EARLY})
        assert page["items"] == []

        # Corrected: in the ledger, at the sale's own time, and no longer rejected.
        result = await hub.services.async_call(
            "recorder",
            "resubmit_rejected_money_event",
            {"id": rejected["id"], "data": {"price": 150}},
        )
        assert (result["event_id"], result["duplicate"], result["data"]["price"]) == (
            "bad-1",
            False,
            150,
        )
        [sale] = (await hub.services.async_call("recorder", "transactions", {"start": _EARLY}))[
            "items"
        ]
        assert (sale["machine_id"], sale["price"], sale["product"]) == ("lobby_1", 150, "Cola")
        assert sale["time"].startswith("2024-05-06T12:00:00")
        [payment] = (await hub.services.async_call("recorder", "payments", {"start": _EARLY}))[
            "items"
        ]
        assert payment["amount"] == 150
        after = await hub.services.async_call("recorder", "rejected_money_events", {})
        assert after["items"] == []
        with pytest.raises(InvalidServiceData, match="no rejected money event"):
            await hub.services.async_call(
                "recorder", "resubmit_rejected_money_event", {"id": rejected["id"]}
            )
        # It changed the ledger: the audit log has it.
        audit = await hub.services.async_call(
            "recorder", "audit_log", {"action": "recorder.resubmit_rejected_money_event"}
        )
        assert len(audit["items"]) >= 1
    finally:
        await hub.async_stop()
