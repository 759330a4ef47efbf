"""``/api/transactions``, ``/api/payments``, ``/api/stock*`` and ``/api/audit``: filters,
pagination (every row exactly once), technician scoping, errors."""

from __future__ import annotations

import asyncio
from typing import Any

from vendhub.core.context import Context
from vendhub.recorder.audit import AuditEntry, async_audit
from vendhub.recorder.recorder import get_recorder

from .conftest import Api
from .test_history import vend_event


async def record(api: Api, event_type: str, data: dict[str, Any]) -> None:
    """Fire a money event as the machine link does and wait until it is committed."""
    recorder = get_recorder(api.hub)
    waiter = api.hub.loop.create_task(
        recorder.async_wait_recorded(data["machine_id"], data["event_id"], timeout=10)
    )
    await asyncio.sleep(0)
    context = Context(user_id="machine:" + data["machine_id"])
    api.hub.bus.async_fire(event_type, data, context=context)
    await waiter


async def fill_ledger(api: Api) -> None:
    """30 vends: lobby_1 (cash/card alternating, every fifth failed) and gym_2 (card)."""
    for number in range(30):
        machine = "gym_2" if number % 3 == 2 else "lobby_1"
        data = vend_event(
            f"e{number:02d}",
            machine_id=machine,
            product="Juice" if machine == "gym_2" else "Cola",
            payment_method="cash" if number % 2 else "card",
            ts=f"2024-05-06T{8 + number // 6:02d}:{number % 6 * 10:02d}:00+00:00",
            stock=20 - number,
        )
        if number % 5 == 4 and machine == "lobby_1":
            await record(api, "vend_failed", {**data, "reason": "jammed"})
        else:
            await record(api, "vend_completed", data)


async def all_pages(api: Api, path: str, token: str) -> tuple[list[dict[str, Any]], int]:
    """Follow ``next_url`` from ``path``; the items of every page and how many pages."""
    items: list[dict[str, Any]] = []
    pages = 0
    url: str | None = path
    while url is not None:
        status, body, response = await api.call("GET", url, token=token)
        assert status == 200, body
        pages += 1
        items.extend(body["items"])
        url = body["next_url"]
        if url is not None:
            assert response.headers["Link"] == f'<{url}>; rel="next"'
            assert f"before={body['next']}" in url
        assert pages < 100
    return items, pages


async def test_transactions_filters_and_pages(fleet_api: Api) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    await fill_ledger(api)

    items, pages = await all_pages(api, "/api/transactions?limit=7", token)
    assert pages == 5 and len(items) == 30
    ids = [item["id"] for item in items]
    assert ids == sorted(set(ids), reverse=True)  # each once, newest first
    assert {item["source_event_id"] for item in items} == {f"e{n:02d}" for n in range(30)}

    failed, _ = await all_pages(api, "/api/transactions?outcome=failed", token)
    assert {item["source_event_id"] for item in failed} == {"e04", "e09", "e19", "e24"}
    assert {item["failure_reason"] for item in failed} == {"jammed"}

    gym, pages = await all_pages(api, "/api/transactions?machine_id=gym_2&limit=3", token)
    assert pages == 4 and len(gym) == 10
    assert {item["machine_id"] for item in gym} == {"gym_2"}
    assert {item["product"] for item in gym} == {"Juice"}

    cash, _ = await all_pages(
        api, "/api/transactions?method=cash&product=Cola&machine_id=lobby_1", token
    )
    assert cash and all(i["payment_method"] == "cash" and i["product"] == "Cola" for i in cash)

    window, _ = await all_pages(
        api,
        "/api/transactions?since=2024-05-06T09:00:00%2B00:00&until=2024-05-06T10:00:00Z",
        token,
    )
    assert {item["source_event_id"] for item in window} == {f"e{n:02d}" for n in range(6, 12)}
    assert all(item["time"].startswith("2024-05-06T09:") for item in window)

    status, one, _ = await api.call("GET", f"/api/transactions/{ids[-1]}", token=token)
    assert status == 200 and one == items[-1]
    for missing in (ids[0] + 1, 999999, "abc", "0", "\u00b2", "1" * 19):
        status, body, _ = await api.call("GET", f"/api/transactions/{missing}", token=token)
        assert status == 404 and body["error"]["code"] == "not_found", missing


async def test_new_rows_do_not_disturb_a_pagination(fleet_api: Api) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    await fill_ledger(api)
    status, first, _ = await api.call("GET", "/api/transactions?limit=10", token=token)
    await record(api, "vend_completed", vend_event("late-1"))
    seen = [item["id"] for item in first["items"]]
    url = first["next_url"]
    while url:
        status, page, _ = await api.call("GET", url, token=token)
        assert status == 200
        seen.extend(item["id"] for item in page["items"])
        url = page["next_url"]
    assert len(seen) == len(set(seen)) == 30  # the new row is newer than the cursor


async def test_payments_filters_and_pages(fleet_api: Api) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    await fill_ledger(api)
    items, pages = await all_pages(api, "/api/payments?limit=4", token)
    assert len(items) == 26 and pages == 7  # failed vends have no payment
    assert len({item["id"] for item in items}) == 26
    assert {item["status"] for item in items} == {"captured"}
    assert {item["provider"] for item in items} == {"machine"}
    card, _ = await all_pages(api, "/api/payments?method=card&status=captured", token)
    assert card and {item["method"] for item in card} == {"card"}
    gym, _ = await all_pages(api, "/api/payments?machine_id=gym_2&provider=machine", token)
    assert len(gym) == 10 and {item["amount"] for item in gym} == {150}
    status, body, _ = await api.call("GET", "/api/payments?status=refunded", token=token)
    assert status == 200 and body == {"items": [], "next": None, "next_url": None}


async def test_ledger_refuses_bad_filters(fleet_api: Api) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    for path in (
        "/api/transactions?since=last+week",
        "/api/transactions?until=2024-02-30T00:00:00Z",
        "/api/transactions?limit=0",
        "/api/transactions?limit=1001",
        "/api/transactions?limit=ten",
        "/api/transactions?before=-3",
        "/api/transactions?before=abc",
        "/api/transactions?outcome=lost",
        "/api/transactions?machine_id=Lobby!",
        "/api/transactions?status=captured",
        "/api/payments?product=Cola",
        "/api/payments?since=2024-05-06&since=2024-05-07",
        "/api/stock/movements?kind=theft",
        "/api/stock/movements?slot=A%201",
        "/api/stock?below_par=maybe",
        "/api/audit?actor_type=robot",
    ):
        status, body, _ = await api.call("GET", path, token=token)
        assert status == 400, (path, status, body)
        assert body["error"]["code"] == "invalid_request"
    status, body, _ = await api.call("GET", "/api/transactions?since=yesterday", token=token)
    assert "since" in body["error"]["message"] and "ISO 8601" in body["error"]["message"]


async def test_payments_refuse_an_unknown_status_like_transactions_an_unknown_outcome(
    fleet_api: Api,
) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    status, body, _ = await api.call("GET", "/api/payments?status=bogus", token=token)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"
    message = body["error"]["message"]
    assert message.startswith("invalid query parameters: query/status: must be one of ")
    for known in ("authorized", "captured", "voided", "refunded", "failed"):
        assert f'"{known}"' in message
        status, body, _ = await api.call("GET", f"/api/payments?status={known}", token=token)
        assert status == 200, (known, body)


async def test_technicians_see_their_machines_ledger_only(fleet_api: Api) -> None:
    api = fleet_api
    owner = (await api.onboard())["access_token"]
    await fill_ledger(api)
    gym_tech = await api.add_user(owner, "tina", "technician", machine_ids=["gym_2"])
    items, pages = await all_pages(api, "/api/transactions?limit=4", gym_tech)
    assert len(items) == 10 and pages == 3 and {i["machine_id"] for i in items} == {"gym_2"}
    status, _, _ = await api.call("GET", "/api/transactions?machine_id=lobby_1", token=gym_tech)
    assert status == 404
    everything, _ = await all_pages(api, "/api/transactions", owner)
    lobby_id = next(i["id"] for i in everything if i["machine_id"] == "lobby_1")
    status, _, _ = await api.call("GET", f"/api/transactions/{lobby_id}", token=gym_tech)
    assert status == 404
    payments, _ = await all_pages(api, "/api/payments?limit=3", gym_tech)
    assert len(payments) == 10 and {p["machine_id"] for p in payments} == {"gym_2"}

    # A technician of both machines gets their pages merged, each row exactly once.
    both = await api.add_user(owner, "theo", "technician", machine_ids=["gym_2", "lobby_1"])
    items, _ = await all_pages(api, "/api/transactions?limit=6", both)
    ids = [i["id"] for i in items]
    assert len(ids) == 30 and ids == sorted(set(ids), reverse=True)
    nobody = await api.add_user(owner, "nina", "technician", machine_ids=[])
    status, body, _ = await api.call("GET", "/api/transactions", token=nobody)
    assert body["items"] == [] and body["next"] is None
    status, body, _ = await api.call("GET", "/api/stock", token=nobody)
    assert body == []


async def test_stock_levels_and_movements(fleet_api: Api) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    for _ in range(9):
        await api.hub.services.async_call(
            "simulator", "vend", {"machine_id": "lobby_1", "slot": "A2", "payment_method": "card"}
        )
    await api.hub.services.async_call(
        "simulator", "vend", {"machine_id": "gym_2", "slot": "A1", "payment_method": "cash"}
    )
    await get_recorder(api.hub).async_flush()

    status, levels, _ = await api.call("GET", "/api/stock", token=token)
    assert status == 200
    assert [
        (lv["machine_id"], lv["slot_code"], lv["product"], lv["quantity"]) for lv in levels
    ] == [
        ("gym_2", "A1", "Juice", 7),
        ("lobby_1", "A1", "Cola", 10),
        ("lobby_1", "A2", "Water", 1),
    ]
    water = levels[2]
    assert water["entity_id"] == "slot.lobby_1_a2" and water["capacity"] == 10
    assert water["price"] == 120 and water["currency"] == "EUR" and water["locked"] is False
    status, low, _ = await api.call("GET", "/api/stock?below_par=true", token=token)
    assert [lv["entity_id"] for lv in low] == ["slot.lobby_1_a2"]
    status, body, _ = await api.call("GET", "/api/stock?machine_id=gym_2", token=token)
    assert [lv["entity_id"] for lv in body] == ["slot.gym_2_a1"]
    status, body, _ = await api.call("GET", "/api/stock?product=Cola", token=token)
    assert [lv["entity_id"] for lv in body] == ["slot.lobby_1_a1"]

    items, pages = await all_pages(api, "/api/stock/movements?limit=4", token)
    assert len(items) == 10 and pages == 3
    assert {(i["kind"], i["quantity"]) for i in items} == {("vend", -1)}
    water_moves, _ = await all_pages(
        api, "/api/stock/movements?machine_id=lobby_1&slot=A2&kind=vend", token
    )
    assert [m["stock_after"] for m in water_moves] == list(range(1, 10))
    status, body, _ = await api.call("GET", "/api/stock/movements?kind=refill", token=token)
    assert body["items"] == []

    tech = await api.add_user(token, "tina", "technician", machine_ids=["gym_2"])
    status, body, _ = await api.call("GET", "/api/stock", token=tech)
    assert [lv["entity_id"] for lv in body] == ["slot.gym_2_a1"]
    items, _ = await all_pages(api, "/api/stock/movements", tech)
    assert [(i["machine_id"], i["product"]) for i in items] == [("gym_2", "Juice")]
    status, _, _ = await api.call("GET", "/api/stock/movements?machine_id=lobby_1", token=tech)
    assert status == 404


async def test_audit_log_for_hub_managers(fleet_api: Api) -> None:
    api = fleet_api
    owner = (await api.onboard())["access_token"]
    for number in range(5):
        await async_audit(
            api.hub,
            AuditEntry(
                actor_type="user",
                actor_id="u1" if number % 2 else "u2",
                action="vending.set_price",
                target_type="entity",
                target_id=f"slot.lobby_1_a{number}",
                before={"price": 100},
                after={"price": 100 + number, "password": "hunter2"},
            ),
        )
    items, pages = await all_pages(api, "/api/audit?limit=2", owner)
    assert pages == 3 and [i["target_id"] for i in items] == [
        f"slot.lobby_1_a{n}" for n in (4, 3, 2, 1, 0)
    ]
    assert items[0]["after"]["price"] == 104 and items[0]["after"]["password"] == "***"
    assert items[0]["actor_type"] == "user" and items[0]["action"] == "vending.set_price"
    mine, _ = await all_pages(api, "/api/audit?actor_type=user&actor_id=u1", owner)
    assert [i["target_id"] for i in mine] == ["slot.lobby_1_a3", "slot.lobby_1_a1"]
    status, body, _ = await api.call(
        "GET", "/api/audit?target_id=slot.lobby_1_a0&since=2020-01-01T00:00:00Z", token=owner
    )
    assert [i["target_id"] for i in body["items"]] == ["slot.lobby_1_a0"]
    status, body, _ = await api.call("GET", "/api/audit?until=2020-01-01T00:00:00Z", token=owner)
    assert body["items"] == []

    for role in ("operator", "viewer"):
        token = await api.add_user(owner, f"{role}x", role)
        status, body, _ = await api.call("GET", "/api/audit", token=token)
        assert status == 403 and body["error"]["code"] == "forbidden"
