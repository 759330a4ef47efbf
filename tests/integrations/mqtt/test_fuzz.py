"""Random and malformed payloads never crash the MQTT link or the hub (hypothesis)."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mosquitto import Mosquitto
from vendhub_integrations.mqtt.runtime import MqttRuntime

from .broker import TS, slots, vend_data
from .conftest import link_config, make_hub, start_link, stop_hub, until

KINDS = ("status", "announce", "telemetry", "event", "cmd_result", "config", "ack", "cmd/ping")
VALID: dict[str, dict[str, Any]] = {
    "status": {"v": 1, "state": "online", "ts": TS},
    "announce": {
        "v": 1,
        "ts": TS,
        "model": "VM-200",
        "firmware": "2.4.1",
        "currency": "EUR",
        "refrigerated": True,
        "slots": slots(),
    },
    "telemetry": {"v": 1, "seq": 3, "ts": TS, "readings": {"temperature": 4.2}},
    "event": {
        "v": 1,
        "id": "e" * 32,
        "seq": 4,
        "ts": TS,
        "event": "vend_completed",
        "data": vend_data(),
    },
    "cmd_result": {"v": 1, "id": "f" * 32, "ok": True},
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid message with one key replaced, removed or added."""
    kind = draw(st.sampled_from(sorted(VALID)))
    message = json.loads(json.dumps(VALID[kind]))
    target = message
    if "data" in message and draw(st.booleans()):
        target = message["data"]
    key = draw(st.sampled_from([*sorted(target), "extra"]))
    if draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = draw(json_values)
    return json.dumps(message).encode()


payloads = (
    st.binary(max_size=64)
    | json_values.map(lambda value: json.dumps(value).encode())
    | mutated()
    | st.sampled_from([b"", b"{", b"null", b"[]", b'{"v":1}', b"\xff" * 8, b"1e999"])
)
topics = st.tuples(st.sampled_from(["lobby_1", "stranger_2", "Bad-Id", ""]), st.sampled_from(KINDS))


async def _run(broker: Mosquitto, folder: Path, messages: list[tuple[tuple[str, str], bytes]]):
    prefix = f"f{uuid.uuid4().hex[:10]}"
    hub = await make_hub(folder)
    try:
        runtime: MqttRuntime = await start_link(hub, link_config(broker, prefix))
        runtime.directory.announced("lobby_1", json.loads(json.dumps(VALID["announce"])))
        await runtime.async_adopt("lobby_1")
        for mid, ((machine_id, kind), payload) in enumerate(messages, start=1):
            topic = f"{prefix}/{machine_id}/{kind}"
            await runtime._async_on_message(aiomqtt.Message(topic, payload, 1, False, mid, None))
        assert runtime.link.stats.errors == 0
        assert runtime.connection.connected
        await until(lambda: hub.states.get("machine.lobby_1") is not None)
        # and a good message still works afterwards
        event = {**VALID["event"], "id": uuid.uuid4().hex, "event": "door_opened", "data": {}}
        message = aiomqtt.Message(f"{prefix}/lobby_1/event", json.dumps(event), 1, False, 0, None)
        await runtime._async_on_message(message)
        if hub.states.is_state("machine.lobby_1", "online"):
            assert hub.states.is_state("binary_sensor.lobby_1_door", "on")
    finally:
        await stop_hub(hub)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=st.lists(st.tuples(topics, payloads), max_size=25))
def test_random_payloads_are_dropped_without_breaking_anything(
    broker: Mosquitto, messages: list[tuple[tuple[str, str], bytes]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_run(broker, Path(folder), messages))
