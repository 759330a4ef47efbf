"""``/api/history`` and ``/api/statistics/*``: recorded content, bounds, scoping, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from tests.recorder.helpers import RecorderRows, ts
from vendhub.recorder.queries import metadata_ids_of
from vendhub.recorder.recorder import get_recorder
from vendhub.recorder.statistics import compile_period
from vendhub.util.dt import utcnow

from .conftest import Api, start_fleet_api, stop_fleet_api


async def vend(api: Api, machine_id: str, slot: str, method: str = "card") -> None:
    await api.hub.services.async_call(
        "simulator", "vend", {"machine_id": machine_id, "slot": slot, "payment_method": method}
    )


def vend_event(event_id: str, **changes: Any) -> dict[str, Any]:
    """A vend_completed event's data, as the machine link fires it."""
    data = {
        "machine_id": "lobby_1",
        "slot": "A1",
        "product": "Cola",
        "price": 150,
        "currency": "EUR",
        "payment_method": "card",
        "event_id": event_id,
        "vend_id": f"v-{event_id}",
        "ts": "2024-05-06T12:10:00+00:00",
    }
    data.update(changes)
    return data


async def test_history_of_slots_after_vends(fleet_api: Api) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    for method in ("cash", "card", "card"):
        await vend(api, "lobby_1", "A1", method)
    await vend(api, "gym_2", "A1")
    await get_recorder(api.hub).async_flush()

    status, body, _ = await api.call(
        "GET", "/api/history?entity_ids=slot.lobby_1_a1,slot.gym_2_a1", token=token
    )
    assert status == 200
    assert [row["state"] for row in body["slot.lobby_1_a1"]] == ["10", "9", "8", "7"]
    assert [row["state"] for row in body["slot.gym_2_a1"]] == ["8", "7"]
    first = body["slot.lobby_1_a1"][0]
    assert first["entity_id"] == "slot.lobby_1_a1" and first["attributes"]["product"] == "Cola"
    assert first["last_changed"] <= first["last_updated"]

    status, body, _ = await api.call(
        "GET",
        "/api/history?entity_ids=slot.lobby_1_a1&include_attributes=false",
        token=token,
    )
    assert {str(row["attributes"]) for row in body["slot.lobby_1_a1"]} == {"{}"}

    # A window after everything: only the state in force at its start.
    start = quote(utcnow().isoformat())
    status, body, _ = await api.call(
        "GET", f"/api/history?entity_ids=slot.lobby_1_a1&start={start}", token=token
    )
    assert [row["state"] for row in body["slot.lobby_1_a1"]] == ["7"]
    # A window before everything; and an empty one.
    status, body, _ = await api.call(
        "GET",
        "/api/history?entity_ids=slot.lobby_1_a1,sensor.never&start=2020-01-01T00:00:00"
        "&end=2020-01-02T00:00:00Z",
        token=token,
    )
    assert body == {"slot.lobby_1_a1": [], "sensor.never": []}
    status, body, _ = await api.call(
        "GET",
        "/api/history?entity_ids=slot.lobby_1_a1&start=2030-01-02T00:00:00&end=2030-01-01T00:00:00",
        token=token,
    )
    assert status == 200 and body == {"slot.lobby_1_a1": []}
    # An unencoded '+' (a space) in an offset is understood.
    status, body, _ = await api.call(
        "GET",
        "/api/history?entity_ids=slot.lobby_1_a1&start=2020-01-01T00:00:00+02:00",
        token=token,
    )
    assert status == 200 and len(body["slot.lobby_1_a1"]) == 4


async def test_history_refuses_bad_queries(fleet_api: Api) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    cases = {
        "/api/history": "entity_ids",
        "/api/history?entity_ids=slot.lobby_1_a1&start=yesterday": "start",
        "/api/history?entity_ids=slot.lobby_1_a1&end=2024-13-01T00:00:00": "end",
        "/api/history?entity_ids=Slot.A1": "entity_ids",
        "/api/history?entity_ids=slot.lobby_1_a1,": "entity_ids",
        "/api/history?entity_ids=slot.lobby_1_a1&limit=3": "limit",
        "/api/statistics/sales?period=week": "period",
        "/api/statistics/sales?start=2024-05-06T25:00:00": "start",
        "/api/statistics/sensors?period=hour": "entity_ids",
    }
    for path, named in cases.items():
        status, body, _ = await api.call("GET", path, token=token)
        assert status == 400, path
        assert body["error"]["code"] == "invalid_request"
        assert named in str(body["error"]), (path, body)


async def test_history_and_statistics_without_a_recorder_are_503(tmp_path: Path) -> None:
    api = await start_fleet_api(tmp_path, recorder=False)
    try:
        token = (await api.onboard())["access_token"]
        for path in (
            "/api/history?entity_ids=slot.lobby_1_a1",
            "/api/statistics/sales",
            "/api/statistics/sensors?entity_ids=sensor.lobby_1_temperature",
            "/api/transactions",
            "/api/transactions/1",
            "/api/payments",
            "/api/stock/movements",
            "/api/audit",
        ):
            status, body, _ = await api.call("GET", path, token=token)
            assert status == 503, path
            assert body["error"]["code"] == "unavailable"
            assert "recorder:" in body["error"]["message"]
        # Stock levels come from the slot entities and need no recorder.
        status, body, _ = await api.call("GET", "/api/stock", token=token)
        assert status == 200 and len(body) == 3
    finally:
        await stop_fleet_api(api)


async def test_sales_statistics_compiled_and_exact(fleet_api: Api) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    recorder = get_recorder(api.hub)
    hour = "2024-05-06T12:00:00+00:00"
    events = [
        vend_event("e1"),
        vend_event("e2", payment_method="cash"),
        vend_event("e3", slot="A2", product="Water", price=120),
        vend_event("e4", machine_id="gym_2", product="Juice", price=200),
        vend_event("e5", reason="jammed"),
    ]
    for data in events[:-1]:
        api.hub.bus.async_fire("vend_completed", data)
    api.hub.bus.async_fire("vend_failed", events[-1])
    await recorder.async_flush()
    with Session(recorder.engine) as session:
        compile_period(session, "hour", ts(hour), ts(hour) + 3600)
        session.commit()

    window = "start=2024-05-06T00:00:00Z&end=2024-05-07T00:00:00Z"
    status, body, _ = await api.call("GET", f"/api/statistics/sales?{window}", token=token)
    assert status == 200 and body["period"] == "hour"
    rows = {(r["machine_id"], r["product"]): r for r in body["statistics"]}
    assert set(rows) == {("lobby_1", "Cola"), ("lobby_1", "Water"), ("gym_2", "Juice")}
    cola = rows[("lobby_1", "Cola")]
    assert (cola["vends"], cola["failed"], cola["revenue"]) == (2, 1, 300)
    assert cola["start"] == "2024-05-06T12:00:00+00:00" and cola["currency"] == "EUR"
    assert body["totals"] == [{"currency": "EUR", "vends": 4, "failed": 1, "revenue": 620}]

    status, body, _ = await api.call(
        "GET", f"/api/statistics/sales?{window}&machine_id=lobby_1&product=Water", token=token
    )
    assert [(r["product"], r["vends"]) for r in body["statistics"]] == [("Water", 1)]
    assert body["totals"] == [{"currency": "EUR", "vends": 1, "failed": 0, "revenue": 120}]

    status, body, _ = await api.call(
        "GET", f"/api/statistics/sales?{window}&period=day", token=token
    )
    assert status == 200 and body["statistics"] == []  # the day is not compiled
    assert body["totals"][0]["vends"] == 4

    tech = await api.add_user(token, "tina", "technician", machine_ids=["gym_2"])
    status, body, _ = await api.call("GET", f"/api/statistics/sales?{window}", token=tech)
    assert [(r["machine_id"], r["revenue"]) for r in body["statistics"]] == [("gym_2", 200)]
    assert body["totals"] == [{"currency": "EUR", "vends": 1, "failed": 0, "revenue": 200}]
    status, body, _ = await api.call(
        "GET", f"/api/statistics/sales?{window}&machine_id=lobby_1", token=tech
    )
    assert status == 404


async def test_sensor_statistics(fleet_api: Api) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    recorder = get_recorder(api.hub)
    await recorder.async_flush()
    hour = ts("2024-05-06T12:00:00+00:00")
    with Session(recorder.engine) as session:
        rows = RecorderRows(session)
        # The recorder wrote the sensor's first state already: reuse its metadata row.
        rows._metadata_ids.update(metadata_ids_of(session, ["sensor.lobby_1_temperature"]))
        for minute, value in ((0, "4.0"), (30, "6.0"), (45, "5.0")):
            rows.state("sensor.lobby_1_temperature", value, hour + minute * 60)
        session.commit()
        compile_period(session, "hour", hour, hour + 3600)
        session.commit()
    status, body, _ = await api.call(
        "GET",
        "/api/statistics/sensors?entity_ids=sensor.lobby_1_temperature,sensor.gym_2_cash_box"
        "&start=2024-05-06T00:00:00Z&end=2024-05-07T00:00:00Z",
        token=token,
    )
    assert status == 200
    assert body["sensor.gym_2_cash_box"] == []
    [row] = body["sensor.lobby_1_temperature"]
    assert (row["min"], row["max"], row["start"]) == (4.0, 6.0, "2024-05-06T12:00:00+00:00")
    assert row["mean"] == 4.0 * 0.5 + 6.0 * 0.25 + 5.0 * 0.25

    tech = await api.add_user(token, "tina", "technician", machine_ids=["gym_2"])
    status, body, _ = await api.call(
        "GET", "/api/statistics/sensors?entity_ids=sensor.lobby_1_temperature", token=tech
    )
    assert status == 404
    status, body, _ = await api.call(
        "GET", "/api/history?entity_ids=slot.gym_2_a1,slot.lobby_1_a1", token=tech
    )
    assert status == 404 and "slot.lobby_1_a1" in body["error"]["message"]
    status, body, _ = await api.call("GET", "/api/history?entity_ids=slot.gym_2_a1", token=tech)
    assert status == 200 and [row["state"] for row in body["slot.gym_2_a1"]] == ["8"]
