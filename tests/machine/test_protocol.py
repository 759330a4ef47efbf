"""The machine protocol: topics, schemas, decode and encode."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from vendhub.machine import protocol
from vendhub.machine.protocol import (
    DEFAULT_PREFIX,
    PROTOCOL_VERSION,
    ProtocolError,
    UnsupportedVersion,
    decode,
    encode,
    parse_topic,
    topic,
)
from vendhub.machine.virtual import VirtualMachine

TS = "2024-05-06T12:00:00.000+02:00"
AT = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
EVENT_ID = "0123456789abcdef0123456789abcdef"


def status(**fields: Any) -> dict[str, Any]:
    message = {
        "v": 1,
        "state": "online",
        "ts": TS,
        "model": "VX-200",
        "firmware": "2.1.0",
        "session": "9f3a",
    }
    message.update(fields)
    return message


def announce(**fields: Any) -> dict[str, Any]:
    message = {
        "v": 1,
        "ts": TS,
        "model": "VX-200",
        "firmware": "2.1.0",
        "currency": "EUR",
        "refrigerated": True,
        "capabilities": ["cash", "card"],
        "slots": {"A1": {"product": "Cola", "price": 150, "capacity": 10, "par": 3, "stock": 7}},
    }
    message.update(fields)
    return message


def telemetry(**fields: Any) -> dict[str, Any]:
    message = {
        "v": 1,
        "seq": 12,
        "ts": TS,
        "readings": {
            "temperature": 4.25,
            "compressor": True,
            "door_open": False,
            "cash_box": 1250,
            "rssi": -71,
            "uptime": 3600.5,
            "disk_free_mb": 812.0,
            "errors": 0,
            "software_version": "2.1.0",
        },
    }
    message.update(fields)
    return message


def event(name: str = "door_opened", data: dict[str, Any] | None = None, **fields: Any) -> dict:
    message: dict[str, Any] = {
        "v": 1,
        "id": EVENT_ID,
        "seq": 3,
        "ts": TS,
        "event": name,
        "data": {} if data is None else data,
    }
    message.update(fields)
    return message


def vend_data(**fields: Any) -> dict[str, Any]:
    data = {
        "vend_id": "fedcba9876543210",
        "slot": "A1",
        "product": "Cola",
        "price": 150,
        "payment_method": "card",
        "stock": 6,
        "cash_box": 1250,
    }
    data.update(fields)
    return data


def config(**fields: Any) -> dict[str, Any]:
    message = {
        "v": 1,
        "version": 4,
        "ts": TS,
        "mode": "normal",
        "slots": {"A1": {"product": "Cola", "price": 160, "capacity": 10, "par": 3}},
    }
    message.update(fields)
    return message


def command(**fields: Any) -> dict[str, Any]:
    message = {"v": 1, "id": "c0ffee00c0ffee00", "ts": TS, "args": {"slot": "A1"}}
    message.update(fields)
    return message


def result(**fields: Any) -> dict[str, Any]:
    message = {"v": 1, "id": "c0ffee00c0ffee00", "ok": True, "result": {"stock": 10}}
    message.update(fields)
    return message


def refusal(kind: str, payload: Any) -> str:
    """Decode ``payload``, which must be refused; return the reason."""
    with pytest.raises(ProtocolError) as caught:
        decode(kind, payload)
    assert caught.value.kind == kind
    assert str(caught.value) == f"bad {kind} message: {caught.value.reason}"
    return caught.value.reason


# ---- topics --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    ["status", "announce", "telemetry", "event", "ack", "config", "cmd_result", "cmd/restock"],
)
def test_topic_and_parse_topic_round_trip(kind: str) -> None:
    name = topic("lobby_1", kind)
    assert name == f"vendhub/lobby_1/{kind}"
    assert parse_topic(name) == ("lobby_1", kind)
    other = topic("kiosk_22", kind, prefix="site/north")
    assert other == f"site/north/kiosk_22/{kind}"
    assert parse_topic(other, prefix="site/north") == ("kiosk_22", kind)


@pytest.mark.parametrize(
    "name",
    [
        "other/lobby_1/status",  # wrong prefix
        "vendhubx/lobby_1/status",  # a prefix that only starts alike
        "lobby_1/status",  # no prefix
        "vendhub/Lobby_1/status",  # machine ids are lowercase
        "vendhub/lobby-1/status",  # ... of a-z, 0-9 and _
        "vendhub//status",  # empty machine id
        f"vendhub/{'m' * 65}/status",  # machine id too long
        "vendhub/lobby_1/gossip",  # unknown kind
        "vendhub/lobby_1/cmd",  # a command without a name
        "vendhub/lobby_1/cmd/",  # ... or with an empty one
        "vendhub/lobby_1/cmd/Restock",  # command names are lowercase
        "vendhub/lobby_1/cmd/restock/now",  # one level only
        "vendhub/lobby_1/ota/firmware",  # reserved
        "vendhub/lobby_1/status/extra",
        "vendhub/lobby_1",
        "vendhub/+/status",
    ],
)
def test_parse_topic_refuses_what_is_not_a_protocol_topic(name: str) -> None:
    assert parse_topic(name) is None


def test_parse_topic_of_another_prefix_is_none_and_not_text_is_none() -> None:
    assert parse_topic("site/north/lobby_1/event") is None
    assert parse_topic("site/north/lobby_1/event", prefix="site/north") == ("lobby_1", "event")
    assert parse_topic(b"vendhub/lobby_1/event") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("machine_id", "kind", "prefix", "problem"),
    [
        ("Lobby", "status", DEFAULT_PREFIX, "invalid machine id 'Lobby'"),
        ("a/b", "status", DEFAULT_PREFIX, "invalid machine id 'a/b'"),
        ("+", "status", DEFAULT_PREFIX, "invalid machine id '+'"),
        ("", "status", DEFAULT_PREFIX, "invalid machine id ''"),
        ("lobby_1", "gossip", DEFAULT_PREFIX, "invalid message kind 'gossip'"),
        ("lobby_1", "cmd", DEFAULT_PREFIX, "invalid message kind 'cmd'"),
        ("lobby_1", "ota/firmware", DEFAULT_PREFIX, "invalid message kind 'ota/firmware'"),
        ("lobby_1", "status", "vendhub/", "invalid topic prefix 'vendhub/'"),
        ("lobby_1", "status", "", "invalid topic prefix ''"),
        ("lobby_1", "status", "vend#hub", "invalid topic prefix 'vend#hub'"),
    ],
)
def test_topic_refuses_bad_parts(machine_id: str, kind: str, prefix: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        topic(machine_id, kind, prefix)


def test_topic_filters_qos_and_retain() -> None:
    assert protocol.topic_filter("event") == "vendhub/+/event"
    assert protocol.topic_filter("cmd/+", machine_id="lobby_1") == "vendhub/lobby_1/cmd/+"
    assert protocol.topic_filter() == "vendhub/+/#"
    with pytest.raises(ValueError, match="invalid message kind"):
        protocol.topic_filter("gossip")
    qos = {kind: protocol.qos(kind) for kind in ("status", "telemetry", "event", "cmd/ping")}
    assert qos == {"status": 1, "telemetry": 0, "event": 1, "cmd/ping": 1}
    retained = [kind for kind in sorted(protocol.QOS) if protocol.retained(kind)]
    assert retained == ["announce", "config", "status"]
    assert protocol.command_name("cmd/lock_slots") == "lock_slots"
    assert protocol.command_name("cmd_result") is None


# ---- decode: good messages -----------------------------------------------------------------


def test_status_decodes_with_an_aware_time() -> None:
    valid = decode("status", encode(status()))
    assert valid == {
        "v": 1,
        "state": "online",
        "ts": datetime(2024, 5, 6, 10, 0, tzinfo=UTC),
        "model": "VX-200",
        "firmware": "2.1.0",
        "session": "9f3a",
    }
    assert valid["ts"].utcoffset() == timedelta(hours=2)
    # the last will may be as short as this
    assert decode("status", '{"v":1,"state":"offline"}') == {"v": 1, "state": "offline"}


def test_a_time_without_an_offset_is_utc_and_z_is_understood() -> None:
    naive = decode("status", status(ts="2024-05-06T10:00:00"))["ts"]
    zulu = decode("status", status(ts="2024-05-06T10:00:00Z"))["ts"]
    assert naive == zulu == AT
    assert naive.tzinfo is UTC and zulu.tzinfo is not None
    offset = decode("status", status(ts="2024-05-06T05:30:00-04:30"))["ts"]
    assert offset == AT and offset.utcoffset() == timedelta(hours=-4, minutes=-30)


def test_announce_decodes_and_capabilities_default_to_none() -> None:
    valid = decode("announce", announce())
    assert valid["slots"] == {
        "A1": {"product": "Cola", "price": 150, "capacity": 10, "par": 3, "stock": 7}
    }
    assert valid["capabilities"] == ["cash", "card"]
    assert valid["refrigerated"] is True and valid["currency"] == "EUR"
    message = announce()
    del message["capabilities"]
    assert decode("announce", message)["capabilities"] == []


_ODD_VALUES: list[Any] = [
    0,
    1,
    -1,
    -0.0,
    0.5,
    -4.25,
    2**70,
    float("inf"),
    float("-inf"),
    float("nan"),
    True,
    False,
    None,
    "",
    "x",
    "y" * 255,
    "z" * 256,
    [],
    {},
    [1],
]


def _by_schema(message: Any) -> dict[str, Any] | str:
    """What the schema alone makes of a telemetry message: the result or the error."""
    try:
        if not isinstance(message, dict):
            raise ProtocolError("not an object", "telemetry")
        protocol._check_version(message, "telemetry")
        return dict(protocol.TELEMETRY_SCHEMA(message))
    except vol.Invalid as error:
        return f"bad telemetry message: {protocol.describe_invalid(error)}"
    except ProtocolError as error:
        return str(error)


def _by_decode(payload: Any) -> dict[str, Any] | str:
    try:
        return decode("telemetry", payload)
    except ProtocolError as error:
        return str(error)


def test_the_telemetry_fast_path_knows_the_readings_the_schema_knows() -> None:
    assert set(protocol._READING_CHECKS) == set(protocol.READING_VALIDATORS)


def test_telemetry_decodes_as_the_schema_says_for_odd_messages() -> None:
    # The common case skips the schema (see protocol._plain_telemetry_time): every message
    # must come out as the schema alone would have it, accepted or refused with its reason.
    rng = random.Random(5)
    names = [*protocol.READING_VALIDATORS, "humidity", "a", "x" * 64, "x" * 65, "Bad", "1st", ""]
    tops: dict[str, list[Any]] = {
        "v": [1, 1.0, True, 2, "1"],
        "seq": [0, 7, -1, 1.5, True, None, "3"],
        "ts": [TS, "2024-05-06T10:00:00", "2024-05-06T10:00:00Z", "yesterday", 5, "9" * 65],
    }
    for name in names:  # every reading with every kind of value, alone
        for value in _ODD_VALUES:
            single = {"v": 1, "seq": 3, "ts": TS, "readings": {name: value}}
            assert _by_decode(single) == _by_schema(single), single
    for _ in range(3000):
        readings = {rng.choice(names): rng.choice(_ODD_VALUES) for _ in range(rng.randint(0, 4))}
        message: dict[str, Any] = {"v": 1, "seq": 3, "ts": TS, "readings": readings}
        for key in rng.sample(list(tops), rng.randint(0, 1)):
            message[key] = rng.choice(tops[key])
        if rng.random() < 0.05:
            del message[rng.choice(["v", "seq", "ts", "readings"])]
        if rng.random() < 0.05:
            message["readings"] = rng.choice([[], None, "x", {f"r{i}": 1 for i in range(257)}])
        if rng.random() < 0.1:
            message["extra"] = {"kept": True}
        expected = _by_schema(message)
        assert _by_decode(message) == expected, message
        if isinstance(expected, dict):
            assert _by_decode(message) is not message
        payload = json.dumps(message)
        if "NaN" not in payload and "Infinity" not in payload:
            assert _by_decode(payload.encode()) == _by_schema(json.loads(payload)), payload


def test_the_telemetry_fast_path_leaves_a_given_message_as_it_was() -> None:
    message = telemetry()
    before = json.loads(json.dumps(message))
    valid = decode("telemetry", message)
    assert message == before
    assert valid["ts"] == AT
    assert valid["readings"] is not message["readings"]


def test_telemetry_decodes_known_and_unknown_readings() -> None:
    message = telemetry()
    message["readings"]["humidity"] = 41
    message["readings"]["coin_tube_note"] = None
    valid = decode("telemetry", message)
    assert valid["seq"] == 12
    assert valid["readings"]["temperature"] == 4.25
    assert valid["readings"]["rssi"] == -71
    assert valid["readings"]["humidity"] == 41
    assert valid["readings"]["coin_tube_note"] is None
    # an integer temperature is a number too
    assert decode("telemetry", telemetry(readings={"temperature": 4}))["readings"] == {
        "temperature": 4
    }
    assert decode("telemetry", telemetry(readings={}))["readings"] == {}


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("vend_started", vend_data()),
        ("vend_completed", vend_data()),
        ("vend_failed", vend_data(reason="jam")),
        ("door_opened", {}),
        ("door_closed", {}),
        ("restocked", {"slots": {"A1": 10, "B2": 0}}),
        ("cash_collected", {"amount": 1250, "cash_box": 0}),
        ("slots_locked", {"slots": {"A1": True, "A2": False}}),
        ("error", {"code": "E_COIN_JAM", "message": "coin mech jammed at tube 2"}),
    ],
)
def test_every_known_event_decodes(name: str, data: dict[str, Any]) -> None:
    valid = decode("event", event(name, data))
    assert valid["event"] == name
    assert valid["data"] == data
    assert valid["id"] == EVENT_ID and valid["seq"] == 3 and valid["ts"] == AT


def test_an_unknown_event_passes_with_its_data_and_missing_data_is_empty() -> None:
    valid = decode("event", event("coin_tube_low", {"tube": 2, "anything": [1, 2]}))
    assert valid["data"] == {"tube": 2, "anything": [1, 2]}
    message = event()
    del message["data"]
    assert decode("event", message)["data"] == {}


def test_unknown_keys_are_kept_for_newer_machines_of_the_same_version() -> None:
    valid = decode("event", event("vend_completed", vend_data(coupon="X1"), priority="high"))
    assert valid["priority"] == "high"
    assert valid["data"]["coupon"] == "X1"


def test_ack_config_command_and_result_decode() -> None:
    assert decode("ack", {"v": 1, "ids": [EVENT_ID, "abcdefgh"]}) == {
        "v": 1,
        "ids": [EVENT_ID, "abcdefgh"],
    }
    valid_config = decode("config", config(mode="free_vend"))
    assert valid_config["version"] == 4 and valid_config["mode"] == "free_vend"
    assert valid_config["slots"]["A1"] == {
        "product": "Cola",
        "price": 160,
        "capacity": 10,
        "par": 3,
    }
    assert decode("config", config(slots={}))["slots"] == {}
    valid_command = decode("cmd/restock", command())
    assert valid_command == {"v": 1, "id": "c0ffee00c0ffee00", "ts": AT, "args": {"slot": "A1"}}
    assert decode("cmd", command(args={}))["args"] == {}
    assert decode("cmd_result", result()) == {
        "v": 1,
        "id": "c0ffee00c0ffee00",
        "ok": True,
        "result": {"stock": 10},
        "error": None,
    }
    failed = decode("cmd_result", result(ok=False, result=None, error="no slot Z9"))
    assert (failed["ok"], failed["result"], failed["error"]) == (False, None, "no slot Z9")


def test_decode_accepts_bytes_text_and_dicts_alike_and_validates_again() -> None:
    message = event("vend_completed", vend_data())
    from_bytes = decode("event", encode(message))
    from_text = decode("event", json.dumps(message))
    from_dict = decode("event", message)
    assert from_bytes == from_text == from_dict
    assert decode("event", bytearray(encode(message))) == from_bytes
    # a decoded message, times and all, decodes again to the same
    assert decode("event", from_dict) == from_dict
    assert message["ts"] == TS  # the caller's dict is left as it was


def test_virtual_machine_messages_are_valid_protocol_messages() -> None:
    slots = {"A1": {"product": "Cola", "price": 150, "capacity": 10}}
    machine = VirtualMachine(
        "lobby_1", slots, seed=3, start=AT, refrigerated=True, sales_per_hour=30
    )
    messages = machine.step(2 * 3600) + machine.restock() + [machine.status_message()]
    kinds = {message["type"] for message in messages}
    assert kinds == {"event", "telemetry", "status"}
    for message in messages:
        assert message["v"] == PROTOCOL_VERSION
        valid = decode(message["type"], encode(message))
        assert valid["ts"].tzinfo is not None


# ---- decode: refusals ----------------------------------------------------------------------


def test_bad_json_is_refused_with_the_reason() -> None:
    assert refusal("event", b"{not json").startswith("payload is not valid JSON: ")
    assert refusal("event", b"").startswith("payload is not valid JSON: ")
    assert refusal("event", b"\xff\xfe") == "payload is not UTF-8 text (invalid start byte)"
    assert refusal("event", '{"v":1,"x":NaN}') == (
        "payload is not valid JSON: NaN is not a number JSON allows"
    )
    assert refusal("event", "[1, 2]") == "a message must be a JSON object, got a list"
    assert refusal("event", '"text"') == "a message must be a JSON object, got text 'text'"
    assert refusal("event", "null") == "a message must be a JSON object, got null"
    assert refusal("event", 42) == "expected bytes, text or a dict, got the number 42"


def test_an_oversized_payload_is_refused_before_parsing() -> None:
    payload = b" " * (protocol.MAX_PAYLOAD_BYTES + 1)
    assert refusal("telemetry", payload) == (
        f"payload of {protocol.MAX_PAYLOAD_BYTES + 1} bytes is larger than "
        f"{protocol.MAX_PAYLOAD_BYTES}"
    )


def test_a_deeply_nested_payload_is_refused_not_crashing() -> None:
    payload = "[" * 100_000 + "]" * 100_000
    assert refusal("event", payload).startswith("payload is not valid JSON")


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        (2, "unsupported protocol version 2 (this side speaks version 1)"),
        (0, "unsupported protocol version 0 (this side speaks version 1)"),
        ("1", "the protocol version 'v' must be a whole number, got text '1'"),
        (1.0, "the protocol version 'v' must be a whole number, got the number 1.0"),
        (True, "the protocol version 'v' must be a whole number, got true"),
        (None, "the protocol version 'v' must be a whole number, got null"),
    ],
)
def test_another_version_is_refused(version: Any, reason: str) -> None:
    with pytest.raises(UnsupportedVersion) as caught:
        decode("telemetry", encode(telemetry(v=version)))
    assert caught.value.reason == reason
    assert caught.value.version == version
    assert caught.value.kind == "telemetry"


def test_a_message_without_a_version_is_refused() -> None:
    message = status()
    del message["v"]
    with pytest.raises(UnsupportedVersion) as caught:
        decode("status", message)
    assert caught.value.reason == "no protocol version: 'v' is missing (this side speaks version 1)"
    assert caught.value.version is None


def test_an_unknown_kind_is_refused() -> None:
    assert refusal("gossip", status()).startswith("unknown message kind 'gossip'; expected one of")
    assert refusal("cmd/Bad", command()).startswith("unknown message kind 'cmd/Bad'")
    assert refusal("ota/firmware", {"v": 1}).startswith("unknown message kind 'ota/firmware'")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (status(state="sleepy"), "state: expected one of online, offline, got text 'sleepy'"),
        (status(ts="yesterday"), "ts: not an ISO 8601 time: 'yesterday'"),
        (status(ts=1715000000), "ts: expected an ISO 8601 time as text, got the number 1715000000"),
        (status(model=""), "model: expected 1 to 255 characters, got 0"),
        (status(firmware=2), "firmware: expected text, got the number 2"),
        (status(session="a b"), "session: expected a session id of 1 to 64 letters or digits, "
         "got text 'a b'"),
        ({"v": 1}, "state: is required"),
    ],
)  # fmt: skip
def test_bad_status_is_refused(message: dict[str, Any], reason: str) -> None:
    assert refusal("status", message) == reason


def _slot(**fields: Any) -> dict[str, Any]:
    slot = {"product": "Cola", "price": 150, "capacity": 10, "par": 3, "stock": 7}
    slot.update(fields)
    return slot


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (announce(currency="euro"),
         "currency: expected an ISO 4217 currency code such as 'EUR', got text 'euro'"),
        (announce(refrigerated=1), "refrigerated: expected true or false, got the number 1"),
        (announce(capabilities="card"), "capabilities: expected a list, got text 'card'"),
        (announce(capabilities=["Card"]),
         "capabilities > 0: expected a capability name such as 'card', got text 'Card'"),
        (announce(slots={"A1": _slot(price=-1)}), "slots > A1 > price: expected 0 or more"),
        (announce(slots={"A1": _slot(price=1.5)}),
         "slots > A1 > price: expected a whole number, got the number 1.5"),
        (announce(slots={"A1": _slot(capacity=0, par=0, stock=0)}),
         "slots > A1 > capacity: expected 1 or more"),
        (announce(slots={"A1": _slot(stock=11)}),
         "slots > A1 > stock: may be at most the capacity 10, got 11"),
        (announce(slots={"A1": _slot(par=12)}),
         "slots > A1 > par: may be at most the capacity 10, got 12"),
        (announce(slots={"A 1": _slot()}),
         "slots: bad key 'A 1': expected a slot code of 1 to 16 letters or digits, "
         "got text 'A 1'"),
        (announce(slots=[_slot()]), "slots: expected an object, got a list"),
        ({"v": 1, "ts": TS},
         "currency: is required; firmware: is required; model: is required; "
         "refrigerated: is required; slots: is required"),
    ],
)  # fmt: skip
def test_bad_announce_is_refused(message: dict[str, Any], reason: str) -> None:
    assert refusal("announce", message) == reason


def test_an_announce_with_a_missing_slot_field_names_it() -> None:
    slot = _slot()
    del slot["par"]
    assert refusal("announce", announce(slots={"B4": slot})) == "slots > B4 > par: is required"
    too_many = {f"S{n}": _slot() for n in range(protocol.MAX_SLOTS + 1)}
    assert refusal("announce", announce(slots=too_many)) == (
        f"slots: expected at most {protocol.MAX_SLOTS} entries, got {protocol.MAX_SLOTS + 1}"
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (telemetry(seq=-1), "seq: expected 0 or more"),
        (telemetry(seq="7"), "seq: expected a whole number, got text '7'"),
        (telemetry(seq=True), "seq: expected a whole number, got true"),
        (telemetry(readings=[4.2]), "readings: expected an object of readings, got a list"),
        (telemetry(readings={"temperature": "4.2"}),
         "readings > temperature: expected a number, got text '4.2'"),
        (telemetry(readings={"temperature": True}),
         "readings > temperature: expected a number, got true"),
        (telemetry(readings={"compressor": 1}),
         "readings > compressor: expected true or false, got the number 1"),
        (telemetry(readings={"cash_box": -5}), "readings > cash_box: expected 0 or more"),
        (telemetry(readings={"rssi": -70.5}),
         "readings > rssi: expected a whole number, got the number -70.5"),
        (telemetry(readings={"uptime": -1.0}), "readings > uptime: expected 0 or more"),
        (telemetry(readings={"software_version": ""}),
         "readings > software_version: expected 1 to 255 characters, got 0"),
        (telemetry(readings={"humidity": [40]}),
         "readings > humidity: expected a number, got a list"),
        (telemetry(readings={"Bad Name": 1}),
         "readings: bad reading name: expected a reading name of lowercase letters, digits, "
         "got text 'Bad Name'"),
    ],
)  # fmt: skip
def test_bad_telemetry_is_refused(message: dict[str, Any], reason: str) -> None:
    assert refusal("telemetry", message) == reason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (event(id="short"),
         "id: expected an id of 8 to 64 letters, digits, '_' or '-', got text 'short'"),
        (event(id="a" * 65),
         "id: expected an id of 8 to 64 letters, digits, '_' or '-', got text "
         "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'..."),
        (event(id="abc/def/ghi"),
         "id: expected an id of 8 to 64 letters, digits, '_' or '-', got text 'abc/def/ghi'"),
        (event(id=12345678), "id: expected an id of 8 to 64 letters, digits, '_' or '-', "
         "got the number 12345678"),
        (event(seq=1.5), "seq: expected a whole number, got the number 1.5"),
        (event(event="Vend Completed"),
         "event: expected an event name of lowercase letters, digits, '_', "
         "got text 'Vend Completed'"),
        (event(data=[1]), "data: expected an object, got a list"),
        ({"v": 1, "event": "door_opened"}, "id: is required; seq: is required; ts: is required"),
        (event("vend_completed", {"slot": "A1"}),
         "vend_completed: data > payment_method: is required; data > price: is required; "
         "data > product: is required"),
        (event("vend_completed", vend_data(price="1.50")),
         "vend_completed: data > price: expected a whole number, got text '1.50'"),
        (event("vend_completed", vend_data(vend_id="x")),
         "vend_completed: data > vend_id: expected an id of 8 to 64 letters, digits, '_' or "
         "'-', got text 'x'"),
        (event("vend_failed", vend_data()), "vend_failed: data > reason: is required"),
        (event("restocked", {"slots": {"A1": -3}}),
         "restocked: data > slots > A1: expected 0 or more"),
        (event("restocked", {}), "restocked: data > slots: is required"),
        (event("slots_locked", {"slots": {"A1": "yes"}}),
         "slots_locked: data > slots > A1: expected true or false, got text 'yes'"),
        (event("cash_collected", {"amount": 100}),
         "cash_collected: data > cash_box: is required"),
        (event("error", {"code": "E1"}), "error: data > message: is required"),
        (event("error", {"code": "E" * 65, "message": "m"}),
         "error: data > code: expected 1 to 64 characters, got 65"),
    ],
)  # fmt: skip
def test_bad_event_is_refused(message: dict[str, Any], reason: str) -> None:
    assert refusal("event", message) == reason


@pytest.mark.parametrize(
    ("kind", "message", "reason"),
    [
        ("ack", {"v": 1, "ids": []}, "ids: expected 1 to 1000 items, got 0"),
        ("ack", {"v": 1, "ids": EVENT_ID}, "ids: expected a list, got text "
         "'0123456789abcdef0123456789abcdef'"),
        ("ack", {"v": 1, "ids": [EVENT_ID, "x" * 65]},
         "ids > 1: expected an id of 8 to 64 letters, digits, '_' or '-', got text "
         "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'..."),
        ("ack", {"v": 1}, "ids: is required"),
        ("config", config(mode="party"),
         "mode: expected one of normal, service, out_of_order, free_vend, got text 'party'"),
        ("config", config(version=-1), "version: expected 0 or more"),
        ("config", config(slots={"A1": {"product": "Cola", "price": 160, "capacity": 10}}),
         "slots > A1 > par: is required"),
        ("config",
         config(slots={"A1": {"product": "Cola", "price": 160, "capacity": 2, "par": 3}}),
         "slots > A1 > par: may be at most the capacity 2, got 3"),
        ("cmd/restock", command(args=None), "args: expected an object, got null"),
        ("cmd/restock", command(id="c" * 65),
         "id: expected an id of 8 to 64 letters, digits, '_' or '-', got text "
         "'cccccccccccccccccccccccccccccccccccccccc'..."),
        ("cmd/ping", {"v": 1, "id": "c0ffee00c0ffee00"}, "args: is required; ts: is required"),
        ("cmd_result", result(ok="yes"), "ok: expected true or false, got text 'yes'"),
        ("cmd_result", result(ok=False, result=None),
         "error: is required when ok is false: say what went wrong"),
        ("cmd_result", result(error="but it failed"), "error: must be null when ok is true"),
        ("cmd_result", result(result=[1]), "result: expected an object or null, got a list"),
        ("cmd_result", result(ok=False, error=5),
         "error: expected text or null, got the number 5"),
        ("cmd_result", result(id=None), "id: expected an id of 8 to 64 letters, digits, '_' or "
         "'-', got null"),
    ],
)  # fmt: skip
def test_bad_hub_messages_and_results_are_refused(
    kind: str, message: dict[str, Any], reason: str
) -> None:
    assert refusal(kind, message) == reason


def test_command_args_are_checked_only_on_request() -> None:
    assert decode("cmd/set_door", command(args={"open": "wide"}))["args"] == {"open": "wide"}
    with pytest.raises(ProtocolError) as caught:
        protocol.validate_command_args("set_door", {"open": "wide"})
    assert caught.value.reason == "args > open: expected true or false, got text 'wide'"
    assert caught.value.kind == "cmd/set_door"
    assert protocol.validate_command_args("lock_slots", {"slots": ["A1"]}) == {
        "slots": ["A1"],
        "locked": True,
    }
    assert protocol.validate_command_args("self_destruct", {"now": 1}) == {"now": 1}


def test_protocol_errors_are_value_errors_with_a_readable_message() -> None:
    with pytest.raises(ValueError, match=r"^bad event message: seq: expected 0 or more$"):
        decode("event", event(seq=-4))


# ---- encode --------------------------------------------------------------------------------


def test_encode_is_compact_utf8_json_with_times_as_iso_text() -> None:
    moment = datetime(2024, 5, 6, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    payload = encode({"v": 1, "ts": moment, "data": {"product": "Café", "n": [1, 2]}})
    assert (
        payload
        == (
            '{"v":1,"ts":"2024-05-06T12:00:00.250+02:00","data":{"product":"Café","n":[1,2]}}'
        ).encode()
    )
    assert b" " not in encode(telemetry())
    assert encode({"ts": datetime(2024, 5, 6, 10, 0)}) == b'{"ts":"2024-05-06T10:00:00.000+00:00"}'


def test_encode_then_decode_round_trips_every_kind() -> None:
    cases = {
        "status": status(),
        "announce": announce(),
        "telemetry": telemetry(),
        "event": event("vend_failed", vend_data(reason="jam")),
        "ack": {"v": 1, "ids": [EVENT_ID]},
        "config": config(),
        "cmd/vend": command(),
        "cmd_result": result(),
    }
    for kind, message in cases.items():
        decoded = decode(kind, encode(message))
        again = decode(kind, encode(decoded))
        assert again == decoded, kind
        if "ts" in message:
            assert decoded["ts"] == AT, kind


def test_encode_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(ValueError, match="Out of range float values"):
        encode({"v": 1, "readings": {"temperature": float("nan")}})
    with pytest.raises(TypeError, match="cannot write set as JSON"):
        encode({"v": 1, "ids": {"a"}})


def test_new_ids_are_valid_event_ids_and_unique() -> None:
    ids = {protocol.new_id() for _ in range(100)}
    assert len(ids) == 100
    for item in ids:
        assert len(item) == 32
        assert decode("ack", {"v": 1, "ids": [item]})["ids"] == [item]


def test_every_json_example_in_the_protocol_page_decodes() -> None:
    page = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    kind = None
    decoded: dict[str, int] = {}
    for part in re.split(r"(^### `[^`]+`|^```json\n.*?^```)", page, flags=re.M | re.S):
        if part.startswith("### `"):
            kind = part[5:-1].replace("cmd/<name>", "cmd/restock")
        elif part.startswith("```json"):
            assert kind is not None
            for line in part.splitlines()[1:-1]:
                assert decode(kind, line)["v"] == 1
                decoded[kind] = decoded.get(kind, 0) + 1
    assert decoded == {
        "status": 1,
        "announce": 1,
        "telemetry": 1,
        "event": 5,  # config_applied twice
        "ack": 1,
        "config": 1,
        "cmd/restock": 1,
        "cmd_result": 2,
    }
