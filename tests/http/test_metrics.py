"""``/api/metrics``: Prometheus text, a token required, figures that move with the hub."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vendhub.const import __version__
from vendhub.recorder.recorder import get_recorder
from vendhub.util.metrics import (
    MQTT_MESSAGES_RECEIVED,
    WEBSOCKET_CLIENTS,
    metrics_registry,
)

from .conftest import Api, start_fleet_api, stop_fleet_api
from .test_history import vend_event

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(api: Api, token: str) -> Samples:
    async with api.session.get(
        api.url + "/api/metrics", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_need_a_token(fleet_api: Api) -> None:
    status, body, _ = await fleet_api.call("GET", "/api/metrics")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body, _ = await fleet_api.call("GET", "/api/metrics", token="not.a.token")
    assert status == 401


async def test_metrics_move_with_events_states_and_the_recorder(fleet_api: Api) -> None:
    api = fleet_api
    owner = (await api.onboard())["access_token"]
    viewer = await api.add_user(owner, "vera", "viewer")
    before = await scrape(api, viewer)
    assert value(before, "vendhub_info", version=__version__) == 1
    assert value(before, "vendhub_states", domain="slot") == 3
    assert value(before, "vendhub_states", domain="machine") == 2
    assert value(before, "vendhub_vends_total", outcome="completed") == 0
    assert value(before, "vendhub_websocket_clients") == 0
    assert value(before, "vendhub_recorder_connected") == 1
    assert value(before, "vendhub_recorder_queue_depth") >= 0
    assert ("vendhub_mqtt_messages_received_total", ()) not in before  # no MQTT link here

    for _ in range(3):
        await api.hub.services.async_call(
            "simulator", "vend", {"machine_id": "lobby_1", "slot": "A1", "payment_method": "card"}
        )
    api.hub.bus.async_fire("vend_failed", vend_event("f-1", reason="jammed"))
    api.hub.states.async_set("sensor.outside", "12")
    await get_recorder(api.hub).async_flush()
    after = await scrape(api, viewer)

    assert value(after, "vendhub_vends_total", outcome="completed") == 3
    assert value(after, "vendhub_vends_total", outcome="failed") == 1
    assert value(after, "vendhub_events_total", event_type="vend_completed") == 3
    assert value(after, "vendhub_events_total", event_type="vend_started") == 3
    # The hub's state changes since the API started (none before the vends here).
    assert ("vendhub_events_total", (("event_type", "state_changed"),)) not in before
    assert value(after, "vendhub_events_total", event_type="state_changed") >= 4
    assert value(after, "vendhub_states", domain="sensor") == 4
    assert value(after, "vendhub_state_writes_total") > value(before, "vendhub_state_writes_total")
    assert value(after, "vendhub_recorder_written_total", kind="money") == 4
    assert value(after, "vendhub_recorder_written_total", kind="state") > value(
        before, "vendhub_recorder_written_total", kind="state"
    )
    assert value(after, "vendhub_recorder_dropped_total", kind="state") == 0


async def test_components_register_their_own_figures(
    fleet_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    registry = metrics_registry(api.hub)
    clients = [object(), object()]
    remove_clients = registry.add_gauge(
        WEBSOCKET_CLIENTS, "WebSocket clients connected now.", lambda: len(clients)
    )
    received = {"count": 0}
    remove_mqtt = registry.add_counter(
        MQTT_MESSAGES_RECEIVED, "MQTT messages received.", lambda: received["count"]
    )
    registry.add_gauge(
        "vendhub_slots_locked",
        "Locked slots, by machine.",
        lambda: {("lobby_1",): 1, ("gym_2",): 0},
        ("machine_id",),
    )

    def broken() -> float:
        raise RuntimeError("the figure is not there")

    registry.add_gauge("vendhub_broken", "A reader that fails.", broken)
    received["count"] = 41
    with caplog.at_level(logging.ERROR):
        samples = await scrape(api, token)
    assert value(samples, "vendhub_websocket_clients") == 2
    assert value(samples, "vendhub_mqtt_messages_received_total") == 41
    assert value(samples, "vendhub_slots_locked", machine_id="lobby_1") == 1
    assert not any(name == "vendhub_broken" for name, _ in samples)
    assert "vendhub_broken" in caplog.text
    assert value(samples, "vendhub_vends_total", outcome="completed") == 0  # the rest is there

    remove_clients()
    remove_mqtt()
    samples = await scrape(api, token)
    assert value(samples, "vendhub_websocket_clients") == 0  # the hub's fallback again
    assert ("vendhub_mqtt_messages_received_total", ()) not in samples

    with pytest.raises(ValueError, match="registered already"):
        registry.add_gauge("vendhub_slots_locked", "again", lambda: 0)
    with pytest.raises(ValueError, match="_total"):
        registry.add_counter("vendhub_things_total", "named wrong", lambda: 0)
    with pytest.raises(ValueError, match="invalid metric name"):
        registry.add_counter("Vendhub-Things", "named wrong", lambda: 0)


async def test_metrics_without_a_recorder(tmp_path: Path) -> None:
    api = await start_fleet_api(tmp_path, recorder=False)
    try:
        token = (await api.onboard())["access_token"]
        samples = await scrape(api, token)
        assert value(samples, "vendhub_states", domain="slot") == 3
        assert not any(name.startswith("vendhub_recorder") for name, _ in samples)
    finally:
        await stop_fleet_api(api)


async def test_websocket_clients_are_counted(fleet_api: Api) -> None:
    api = fleet_api
    token = (await api.onboard())["access_token"]
    assert value(await scrape(api, token), "vendhub_websocket_clients") == 0
    sockets = []
    for _ in range(2):
        ws = await api.session.ws_connect(api.url + "/api/websocket")
        assert (await ws.receive_json(timeout=5))["type"] == "auth_required"
        await ws.send_json({"type": "auth", "access_token": token})
        assert (await ws.receive_json(timeout=5))["type"] == "auth_ok"
        sockets.append(ws)
    assert value(await scrape(api, token), "vendhub_websocket_clients") == 2
    await sockets[0].close()
    for _ in range(50):
        if value(await scrape(api, token), "vendhub_websocket_clients") == 1:
            break
        await asyncio.sleep(0.02)
    assert value(await scrape(api, token), "vendhub_websocket_clients") == 1
    await sockets[1].close()
