"""/api/machines, /api/products and /api/planograms on virtual machines (the simulator link)."""

from __future__ import annotations

from pathlib import Path

from .fleet_hub import running_fleet


async def test_machines_list_and_detail_come_from_the_states(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, roles=("viewer",)) as fleet:
        status, machines = await fleet.call("GET", "/api/machines", "viewer")
        assert status == 200
        assert [m["id"] for m in machines] == ["kiosk_2", "lobby_1"]
        kiosk, lobby = machines
        assert {key: lobby[key] for key in ("name", "online", "mode", "link", "location")} == {
            "name": "Lobby",
            "online": True,
            "mode": "normal",
            "link": "simulator",
            "location": "Main lobby",
        }
        assert (lobby["firmware"], lobby["model"]) == ("1.0.0", "VendHub Simulator")
        assert lobby["slot_count"] == 2 and lobby["open_alarms"] == 0
        assert lobby["stock"] == {"items": 15, "capacity": 18, "empty_slots": 0, "low_slots": 0}
        # kiosk A1 is empty (0 < par 2), B1 full.
        assert kiosk["stock"] == {"items": 12, "capacity": 22, "empty_slots": 1, "low_slots": 1}

        status, detail = await fleet.call("GET", "/api/machines/lobby_1", "viewer")
        assert status == 200
        assert detail["slots"] == [
            {
                "code": "A1",
                "entity_id": "slot.lobby_1_a1",
                "product": "Cola",
                "price": 150,
                "currency": "EUR",
                "capacity": 10,
                "par": 2,
                "stock": 10,
                "locked": False,
                "available": True,
            },
            {
                "code": "A2",
                "entity_id": "slot.lobby_1_a2",
                "product": "Crisps",
                "price": 120,
                "currency": "EUR",
                "capacity": 8,
                "par": 2,
                "stock": 5,
                "locked": False,
                "available": True,
            },
        ]
        status, slot = await fleet.call("GET", "/api/machines/lobby_1/slots/a2", "viewer")
        assert status == 200 and slot["code"] == "A2" and slot["stock"] == 5

        await fleet.hub.services.async_call(
            "alarm", "raise", {"code": "door_forced", "message": "Door", "machine_id": "lobby_1"}
        )
        status, machines = await fleet.call("GET", "/api/machines?online=true", "viewer")
        assert [m["open_alarms"] for m in machines] == [0, 1]
        status, machines = await fleet.call("GET", "/api/machines?link=mqtt", "viewer")
        assert (status, machines) == (200, [])

        for path in ("/api/machines/nope", "/api/machines/lobby_1/slots/Z9", "/api/planograms/x"):
            status, body = await fleet.call("GET", path, "viewer")
            assert status == 404 and body["error"]["code"] == "not_found", path

        status, products = await fleet.call("GET", "/api/products", "viewer")
        assert status == 200
        assert products[0] == {
            "product": "Cola",
            "currency": "EUR",
            "price_min": 150,
            "price_max": 160,
            "machines": ["kiosk_2", "lobby_1"],
            "slots": 2,
            "stock": 10,
        }
        assert [p["product"] for p in products] == ["Cola", "Crisps", "Water"]
        status, products = await fleet.call("GET", "/api/products?machine_id=kiosk_2", "viewer")
        assert [(p["product"], p["price_min"]) for p in products] == [("Cola", 160), ("Water", 100)]

        status, planogram = await fleet.call("GET", "/api/planograms/kiosk_2", "viewer")
        assert status == 200 and planogram["mode"] == "normal"
        assert [s["code"] for s in planogram["slots"]] == ["A1", "B1"]


async def test_prices_and_planograms_change_through_the_simulator_with_the_callers_context(
    tmp_path: Path,
) -> None:
    async with running_fleet(tmp_path, roles=("operator",)) as fleet:
        hub = fleet.hub
        operator = f"user:{fleet.user_ids['operator']}"

        status, answer = await fleet.call(
            "PUT", "/api/machines/lobby_1/slots/a1", "operator", {"price": 170}
        )
        assert status == 200, answer
        assert answer["delivery"] == "applied" and answer["slot"]["price"] == 170
        state = hub.states.get("slot.lobby_1_a1")
        assert state.attributes["price"] == 170 and state.context.user_id == operator
        # The virtual machine sells at the new price.
        sale = await hub.services.async_call(
            "simulator", "vend", {"machine_id": "lobby_1", "slot": "A1"}
        )
        assert sale["price"] == 170

        # JSON's 180.0 is a whole number too.
        status, answer = await fleet.call(
            "PUT", "/api/machines/kiosk_2/slots/A1", "operator", {"price": 180.0}
        )
        assert (status, answer["slot"]["price"]) == (200, 180)

        # A smaller capacity takes the stock and the par down with it.
        status, answer = await fleet.call(
            "PUT", "/api/machines/lobby_1/slots/A2", "operator", {"capacity": 1, "product": "Nuts"}
        )
        assert status == 200, answer
        assert {k: answer["slot"][k] for k in ("product", "capacity", "par", "stock")} == {
            "product": "Nuts",
            "capacity": 1,
            "par": 1,
            "stock": 1,
        }

        # A new slot needs product, price and capacity; it starts empty.
        status, body = await fleet.call(
            "PUT", "/api/machines/lobby_1/slots/C1", "operator", {"price": 100}
        )
        assert status == 404 and "product, capacity" in body["error"]["message"]
        status, answer = await fleet.call(
            "PUT",
            "/api/machines/lobby_1/slots/C1",
            "operator",
            {"product": "Gum", "price": 90, "capacity": 20},
        )
        assert status == 201, answer
        assert answer["slot"]["stock"] == 0 and answer["slot"]["par"] == 5
        assert hub.states.get("slot.lobby_1_c1").attributes["product"] == "Gum"

        # Several slots at once, one change.
        status, planogram = await fleet.call(
            "PUT",
            "/api/planograms/kiosk_2",
            "operator",
            {"slots": {"a1": {"price": 165}, "B1": {"price": 110, "product": "Still water"}}},
        )
        assert status == 200, planogram
        assert planogram["delivery"] == "applied"
        assert [(s["code"], s["product"], s["price"]) for s in planogram["slots"]] == [
            ("A1", "Cola", 165),
            ("B1", "Still water", 110),
        ]
        for entity_id in ("slot.kiosk_2_a1", "slot.kiosk_2_b1"):
            assert hub.states.get(entity_id).context.user_id == operator

        # Bad values are refused before anything changes.
        for change in ({"price": -1}, {"price": 1.5}, {}, {"colour": "red"}, {"par": 5}):
            status, body = await fleet.call(
                "PUT", "/api/machines/lobby_1/slots/A1", "operator", change
            )
            assert status == 400, (change, body)
        assert hub.states.get("slot.lobby_1_a1").attributes["price"] == 170
        status, body = await fleet.call(
            "PUT", "/api/machines/lobby_1/slots/A%C3%BC", "operator", {"price": 1}
        )
        assert status == 404 and body["error"]["code"] == "not_found"


async def test_mode_commands_and_restock(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, roles=("operator",)) as fleet:
        hub = fleet.hub
        operator = f"user:{fleet.user_ids['operator']}"

        status, answer = await fleet.call(
            "PUT", "/api/machines/lobby_1/mode", "operator", {"mode": "out_of_order"}
        )
        assert (status, answer["mode"], answer["delivery"]) == (200, "out_of_order", "applied")
        machine = hub.states.get("machine.lobby_1")
        assert machine.attributes["mode"] == "out_of_order"
        assert machine.context.user_id == operator
        status, _ = await fleet.call("PUT", "/api/machines/lobby_1/mode", "operator", {"mode": "x"})
        assert status == 400

        status, result = await fleet.call(
            "POST", "/api/machines/lobby_1/commands/ping", "operator", {}
        )
        assert status == 200 and result["ok"] is True and result["command"] == "ping"
        status, result = await fleet.call(
            "POST", "/api/machines/lobby_1/commands/set_door", "operator", {"open": True}
        )
        assert (status, result["ok"], result["result"]) == (200, True, {"open": True})
        door = hub.states.get("binary_sensor.lobby_1_door")
        assert door.state == "on" and door.context.user_id == operator
        status, result = await fleet.call(
            "POST", "/api/machines/lobby_1/commands/vend", "operator", {"slot": "A1"}
        )
        assert status == 200 and result["ok"] is True
        assert result["result"]["outcome"] == "completed"
        assert hub.states.get("slot.lobby_1_a1").state == "9"
        # A machine refuses what it cannot do; the hub refuses malformed arguments.
        status, result = await fleet.call(
            "POST", "/api/machines/lobby_1/commands/vend", "operator", {"slot": "Z9"}
        )
        assert status == 200 and result["ok"] is False and "no slot 'Z9'" in result["error"]
        status, result = await fleet.call(
            "POST", "/api/machines/lobby_1/commands/self_destruct", "operator", {}
        )
        assert status == 200 and result["ok"] is False
        status, body = await fleet.call(
            "POST", "/api/machines/lobby_1/commands/Ping", "operator", {}
        )
        assert status == 404 and body["error"]["code"] == "not_found"
        status, body = await fleet.call(
            "POST", "/api/machines/lobby_1/commands/set_door", "operator", {}
        )
        assert status == 400 and "open" in body["error"]["message"]

        status, result = await fleet.call(
            "POST", "/api/machines/lobby_1/restock", "operator", {"slot": "a1"}
        )
        assert status == 200 and result["ok"] is True
        assert result["result"] == {"slots": {"A1": 10}}
        slot = hub.states.get("slot.lobby_1_a1")
        assert slot.state == "10" and slot.context.user_id == operator
        status, result = await fleet.call("POST", "/api/machines/kiosk_2/restock", "operator", {})
        assert result["result"] == {"slots": {"A1": 10, "B1": 12}}
        status, _ = await fleet.call(
            "POST", "/api/machines/kiosk_2/restock", "operator", {"slot": "Q7"}
        )
        assert status == 404


async def test_adoption_needs_the_mqtt_link_and_virtual_machines_stay(tmp_path: Path) -> None:
    async with running_fleet(tmp_path) as fleet:
        status, pending = await fleet.call("GET", "/api/machines/pending", "owner")
        assert (status, pending) == (200, [])
        status, body = await fleet.call("POST", "/api/machines/new_1/adopt", "owner", {})
        assert status == 404 and "mqtt integration" in body["error"]["message"]
        status, body = await fleet.call("POST", "/api/machines/lobby_1/adopt", "owner", {})
        assert status == 409
        status, body = await fleet.call("DELETE", "/api/machines/lobby_1", "owner")
        assert status == 409 and body["error"]["code"] == "not_supported"
        status, body = await fleet.call("DELETE", "/api/machines/new_1", "owner")
        assert status == 404
        # "pending" is not a machine id here.
        status, _ = await fleet.call("DELETE", "/api/machines/pending", "owner")
        assert status == 405
