"""The audit log: who changed what and when, redacted, committed at once, on every backend."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.integrations.mqtt.broker import TestMachine
from tests.integrations.mqtt.conftest import link_config, start_link, until
from tests.mosquitto import Mosquitto
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.context import (
    ACTOR_AUTOMATION,
    ACTOR_MACHINE,
    ACTOR_SYSTEM,
    ACTOR_TOKEN,
    ACTOR_USER,
    Actor,
    Context,
    actor_user_id,
    parse_actor,
)
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub
from vendhub.core.services import Service, ServiceCall
from vendhub.recorder.audit import (
    MAX_JSON_CHARS,
    AuditEntry,
    async_audit,
    async_audit_log,
    audit_remote_address,
)
from vendhub.recorder.models import AuditLogEntry
from vendhub.recorder.queries import AuditRow, Page
from vendhub.recorder.recorder import Recorder, RecorderConfig
from vendhub.recorder.services import register_services
from vendhub.registry import async_load_registries
from vendhub.util.redact import MASK, is_secret_key, redact_data, redact_text
from vendhub_integrations.mqtt import vendhub_unload as mqtt_unload

# Long enough that nothing of the history is committed during a test: what is visible was
# committed at once.
NEVER = 3600.0
ANNA = Context.for_actor(ACTOR_USER, "anna")

PASSWORD = "hunter2-Pa55word-77"
API_TOKEN = "tok_live_9f8e7d6c5b4a"
CARD_NUMBER = "4111 1111 1111 1111"
URL_TOKEN = "qs-secret-123abc"
BEARER = "eyJhbGciOiJIUzI1NiJ9.payload.sig"
RETURNED_TOKEN = "vh_tok_returned_31337"
ATTRIBUTE_KEY = "attr-api-key-424242"


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    instance = Hub(tmp_path)
    await async_load_registries(instance)
    yield instance
    if not instance.is_stopping:
        await instance.async_stop()


@pytest.fixture
async def recorder(hub: Hub, db_url: str) -> AsyncIterator[Recorder]:
    """The recorder with its services (and so the auditor), history never committed."""
    instance = Recorder(hub, RecorderConfig(db_url=db_url, commit_interval=NEVER))
    await instance.async_start()
    hub.data["recorder"] = instance
    register_services(hub, instance)
    yield instance
    await instance.async_stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


def register_set_price(hub: Hub) -> None:
    """A service that changes an entity, as the vending domain's set_price will."""

    def set_price(call: ServiceCall) -> dict[str, Any]:
        entity_id = call.data["entity_id"]
        state = hub.states.get(entity_id)
        assert state is not None
        hub.states.async_set(
            entity_id,
            state.state,
            {**state.attributes, "price": call.data["price"]},
            context=call.context,
        )
        return {"entity_id": entity_id, "price": call.data["price"]}

    hub.services.async_register("vending", "set_price", set_price)


async def entries(hub: Hub, count: int, **filters: Any) -> list[AuditRow]:
    """Wait (without flushing the recorder) until ``count`` entries match; newest first."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        page = await async_audit_log(hub, **filters)
        if len(page.items) >= count:
            assert len(page.items) == count, [item.action for item in page.items]
            return page.items
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{count} audit entries expected, found {len(page.items)}")
        await asyncio.sleep(0.01)


# ---- service calls ------------------------------------------------------------------------------


async def test_a_users_change_is_audited_with_who_what_when_before_and_after(
    hub: Hub, recorder: Recorder
) -> None:
    register_set_price(hub)
    hub.states.async_set("slot.lobby_1_a1", "8", {"product": "Cola", "price": 150})
    started = datetime.now(UTC)
    with audit_remote_address("192.0.2.7"):
        result = await hub.services.async_call(
            "vending", "set_price", {"entity_id": "slot.lobby_1_a1", "price": 180}, context=ANNA
        )
    assert result == {"entity_id": "slot.lobby_1_a1", "price": 180}

    [entry] = await entries(hub, 1)
    assert (entry.actor_type, entry.actor_id) == ("user", "anna")
    assert entry.action == "vending.set_price"
    assert (entry.target_type, entry.target_id) == ("entity", "slot.lobby_1_a1")
    assert started <= entry.time <= datetime.now(UTC)
    assert entry.before == {
        "states": {
            "slot.lobby_1_a1": {"state": "8", "attributes": {"product": "Cola", "price": 150}}
        }
    }
    assert entry.after == {
        "service_data": {"entity_id": "slot.lobby_1_a1", "price": 180},
        "states": {
            "slot.lobby_1_a1": {"state": "8", "attributes": {"product": "Cola", "price": 180}}
        },
        "result": {"entity_id": "slot.lobby_1_a1", "price": 180},
    }
    assert entry.context_id == ANNA.id
    assert entry.remote_address == "192.0.2.7"
    # committed at once: the history of the same change is still waiting for its commit
    assert recorder.stats.states_written == 0


async def test_tokens_machines_system_and_failed_calls(hub: Hub, recorder: Recorder) -> None:
    def fail(call: ServiceCall) -> None:
        raise InvalidServiceData("vending", "refill", "slot A9 does not exist")

    hub.services.async_register("vending", "refill", fail)
    hub.services.async_register("vending", "noop", lambda call: None)
    token = Context.for_actor(ACTOR_TOKEN, "t-42")
    machine = Context.for_actor(ACTOR_MACHINE, "lobby_1")
    with pytest.raises(InvalidServiceData):
        await hub.services.async_call("vending", "refill", {"machine_id": "lobby_1"}, context=token)
    await hub.services.async_call("vending", "noop", {"machine_id": "lobby_1"}, context=machine)
    # what a machine's change causes stays the machine's
    await hub.services.async_call("vending", "noop", {}, context=machine.child())
    await hub.services.async_call("vending", "noop", {"id": ["x", "y"]})
    # non-blocking calls are audited when they end
    await hub.services.async_call("vending", "noop", {"id": "later"}, blocking=False)

    newest_first = await entries(hub, 5)
    later, system, child, by_machine, failed = newest_first
    assert (failed.actor_type, failed.actor_id, failed.action) == (
        "token",
        "t-42",
        "vending.refill",
    )
    assert (failed.target_type, failed.target_id) == ("machine", "lobby_1")
    assert failed.after["error"] == (
        "InvalidServiceData: invalid data for service vending.refill: slot A9 does not exist"
    )
    assert "result" not in failed.after
    assert (by_machine.actor_type, by_machine.actor_id) == ("machine", "lobby_1")
    assert by_machine.remote_address is None
    assert (child.actor_type, child.actor_id) == ("machine", "lobby_1")
    assert (system.actor_type, system.actor_id) == ("system", None)
    assert (system.target_type, system.target_id) == ("vending", "x,y")
    assert system.before is None
    assert later.target_id == "later"


async def test_secrets_are_redacted_in_the_row_and_never_logged(
    hub: Hub, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub.states.async_set("sensor.gateway", "ok", {"api_key": ATTRIBUTE_KEY, "mode": "live"})

    def configure(call: ServiceCall) -> dict[str, Any]:
        hub.states.async_set(
            "sensor.gateway", "reconfigured", {"api_key": ATTRIBUTE_KEY}, context=call.context
        )
        # a careless service echoes the password under an innocent name, and returns a token
        return {"token": RETURNED_TOKEN, "echo": call.data["password"]}

    def fail(call: ServiceCall) -> None:
        raise ValueError(f"password {call.data['password']} refused")

    hub.services.async_register("gateway", "configure", configure)
    hub.services.async_register("gateway", "check", fail)
    data = {
        "entity_id": "sensor.gateway",
        "username": "anna",
        "password": PASSWORD,
        "apiKey": API_TOKEN,
        "headers": {"Authorization": f"Bearer {BEARER}", "X-Request": "1"},
        "card": CARD_NUMBER,
        "note": f"paid with {CARD_NUMBER.replace(' ', '')} yesterday",
        "callback": f"https://hooks.example.com/cb?token={URL_TOKEN}&x=1",
        "bearer_note": f"sent Bearer {BEARER}",
    }
    await hub.services.async_call("gateway", "configure", data, context=ANNA)
    with pytest.raises(ValueError):
        await hub.services.async_call("gateway", "check", data, context=ANNA)

    check, configure_entry = await entries(hub, 2)
    after = configure_entry.after
    assert after["service_data"]["username"] == "anna"
    assert after["service_data"]["password"] == MASK
    assert after["service_data"]["apiKey"] == MASK
    assert after["service_data"]["headers"] == {"Authorization": MASK, "X-Request": "1"}
    assert after["service_data"]["card"] == MASK
    assert after["service_data"]["note"] == f"paid with {MASK} yesterday"
    assert after["service_data"]["bearer_note"] == f"sent Bearer {MASK}"
    assert after["result"] == {"token": MASK, "echo": MASK}
    assert configure_entry.before == {
        "states": {
            "sensor.gateway": {"state": "ok", "attributes": {"api_key": MASK, "mode": "live"}}
        }
    }
    assert after["states"]["sensor.gateway"]["attributes"]["api_key"] == MASK
    assert check.after["error"] == f"ValueError: password {MASK} refused"

    with recorder.engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(select(AuditLogEntry.__table__))]
    stored = repr(rows)
    assert len(rows) == 2
    secrets = (PASSWORD, API_TOKEN, CARD_NUMBER, CARD_NUMBER.replace(" ", ""), URL_TOKEN)
    for secret in (*secrets, BEARER, RETURNED_TOKEN, ATTRIBUTE_KEY):
        assert secret not in stored
        assert secret not in caplog.text


async def test_read_only_services_are_not_audited(hub: Hub, recorder: Recorder) -> None:
    hub.services.async_register("vending", "catalog", lambda call: {"items": []}, read_only=True)
    hub.services.async_register("vending", "noop", lambda call: None)
    assert hub.services.is_read_only("recorder", "history")
    assert not hub.services.is_read_only("recorder", "purge")
    for service, data in (
        ("history", {"entity_ids": "slot.lobby_1_a1"}),
        ("sales", {}),
        ("sensor_statistics", {"entity_ids": "sensor.x"}),
        ("transactions", {}),
        ("payments", {}),
        ("audit_log", {}),
    ):
        await hub.services.async_call("recorder", service, data, context=ANNA)
    await hub.services.async_call("vending", "catalog", {}, context=ANNA)
    await hub.services.async_call("vending", "noop", {}, context=ANNA)

    # the writer keeps the order: the change came last, so an audited read would show by now
    [entry] = await entries(hub, 1)
    assert entry.action == "vending.noop"


async def test_the_query_filters_and_paginates(hub: Hub, recorder: Recorder) -> None:
    now = datetime.now(UTC)
    written = []
    for minutes, actor, target in (
        (50, (ACTOR_USER, "anna"), ("machine", "lobby_1")),
        (40, (ACTOR_USER, "ben"), ("machine", "lobby_1")),
        (30, (ACTOR_TOKEN, "t-1"), ("machine", "gym_2")),
        (20, (ACTOR_USER, "anna"), ("entity", "slot.gym_2_a1")),
        (10, (ACTOR_AUTOMATION, "automation.restock"), ("machine", "lobby_1")),
    ):
        written.append(
            await async_audit(
                hub,
                AuditEntry(
                    ts=now - timedelta(minutes=minutes),
                    actor_type=actor[0],
                    actor_id=actor[1],
                    action="vending.set_price",
                    target_type=target[0],
                    target_id=target[1],
                    before={"price": minutes},
                    after={"price": minutes + 1},
                ),
            )
        )
    assert written == sorted(written)
    with audit_remote_address("198.51.100.4"):
        signed_in = await async_audit(
            hub, AuditEntry.for_context(ANNA, "auth.login", target_type="user", target_id="anna")
        )
    [login] = (await async_audit_log(hub, action="auth.login")).items
    assert (login.id, login.actor_type, login.actor_id) == (signed_in, "user", "anna")
    assert (login.remote_address, login.context_id) == ("198.51.100.4", ANNA.id)
    assert written[-1] < signed_in

    def ids(page: Page[AuditRow]) -> list[int]:
        return [item.id for item in page.items]

    assert ids(await async_audit_log(hub, action="vending.set_price")) == written[::-1]
    anna = await async_audit_log(hub, actor_type="user", actor_id="anna")
    assert ids(anna) == [signed_in, written[3], written[0]]
    assert anna.items[2].before == {"price": 50}
    assert ids(await async_audit_log(hub, target_type="machine", target_id="lobby_1")) == [
        written[4],
        written[1],
        written[0],
    ]
    assert ids(await async_audit_log(hub, actor_type="automation")) == [written[4]]
    assert ids(await async_audit_log(hub, action="alarm.acknowledge")) == []
    window = await async_audit_log(
        hub, since=now - timedelta(minutes=45), until=now - timedelta(minutes=20)
    )
    assert ids(window) == [written[2], written[1]]

    first = await async_audit_log(hub, limit=3)
    assert ids(first) == [signed_in, written[4], written[3]]
    second = await async_audit_log(hub, limit=2, before_id=first.next_before_id)
    assert ids(second) == [written[2], written[1]]
    last = await async_audit_log(hub, limit=2, before_id=second.next_before_id)
    assert ids(last) == [written[0]]
    assert last.next_before_id is None

    # the same through the read-only service, as the API will call it
    page = await hub.services.async_call(
        "recorder",
        "audit_log",
        {"actor_type": "user", "action": "vending.set_price", "limit": 1},
        context=ANNA,
    )
    assert [item["id"] for item in page["items"]] == [written[3]]
    assert page["items"][0]["actor_id"] == "anna"
    assert page["items"][0]["after"] == {"price": 21}
    assert page["next_before_id"] == written[3]
    with pytest.raises(InvalidServiceData):
        await hub.services.async_call("recorder", "audit_log", {"actor_type": "robot"})


async def test_entries_are_committed_at_once_and_never_purged(hub: Hub, recorder: Recorder) -> None:
    hub.states.async_set("sensor.lobby_1_temperature", "4.1")
    old = datetime.now(UTC) - timedelta(days=400)
    row_id = await async_audit(
        hub,
        AuditEntry(ts=old, actor_type=ACTOR_SYSTEM, actor_id=None, action="vendhub.reload"),
    )
    # visible to another connection at once, while the history waits for its commit
    with recorder.engine.connect() as connection:
        action = connection.execute(
            select(AuditLogEntry.action).where(AuditLogEntry.id == row_id)
        ).scalar()
    assert action == "vendhub.reload"
    assert recorder.stats.states_written == 0

    await recorder.async_flush()
    assert recorder.stats.states_written == 1
    result = await recorder.async_purge(keep_days=0)
    assert result.done
    assert [item.id for item in (await async_audit_log(hub)).items] == [row_id]
    assert (await async_audit_log(hub)).items[0].time.year == old.year


async def test_auditing_stops_with_the_recorders_services(hub: Hub, recorder: Recorder) -> None:
    hub.services.async_register("vending", "noop", lambda call: None)
    await hub.services.async_call("vending", "noop", {"id": "before"}, context=ANNA)
    await entries(hub, 1)
    # registering the services again replaces the auditor: still one entry per call
    register_services(hub, recorder)
    await hub.services.async_call("vending", "noop", {"id": "again"}, context=ANNA)
    await entries(hub, 2)
    hub.services.async_remove_domain("recorder")
    await hub.services.async_call("vending", "noop", {"id": "after"}, context=ANNA)
    row_id = await async_audit(
        hub, AuditEntry(actor_type=ACTOR_USER, actor_id="anna", action="marker")
    )
    page = await async_audit_log(hub)
    assert [item.action for item in page.items] == ["marker", "vending.noop", "vending.noop"]
    assert [item.target_id for item in page.items[1:]] == ["again", "before"]
    assert page.items[0].id == row_id


# ---- automations, alarms and adoption, end to end ----------------------------------------------


async def test_automation_actions_and_alarm_acknowledgement(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "configuration.yaml").write_text(
        f'recorder:\n  db_url: "{db_url}"\n  commit_interval: {NEVER}\n'
        "alarm:\n"
        "automation:\n"
        "  - id: warm_fridge\n"
        "    trigger:\n"
        "      - platform: numeric_state\n"
        "        entity_id: sensor.lobby_1_temperature\n"
        "        above: 8\n"
        "    action:\n"
        "      - service: alarm.raise\n"
        "        data: {code: fridge_warm, message: Fridge warm, machine_id: lobby_1}\n"
    )
    prepared = await asyncio.to_thread(prepare, tmp_path)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    try:
        assert report.failed == {}
        hub.states.async_set("sensor.lobby_1_temperature", "4.0")
        # a user's change triggers the automation: what the automation does is its own
        hub.states.async_set("sensor.lobby_1_temperature", "9.5", context=ANNA)
        [raised] = await entries(hub, 1)
        assert (raised.actor_type, raised.actor_id) == ("automation", "automation.warm_fridge")
        assert raised.action == "alarm.raise"
        assert (raised.target_type, raised.target_id) == ("machine", "lobby_1")
        assert raised.before == {"states": {"alarm.lobby_1_fridge_warm": None}}
        assert raised.after["states"]["alarm.lobby_1_fridge_warm"]["state"] == "raised"

        # the operator acknowledges it (through the API: a user context)
        await hub.services.async_call(
            "alarm", "acknowledge", {"machine_id": "lobby_1", "code": "fridge_warm"}, context=ANNA
        )
        acknowledged, _ = await entries(hub, 2)
        assert (acknowledged.actor_type, acknowledged.actor_id) == ("user", "anna")
        assert acknowledged.action == "alarm.acknowledge"
        before = acknowledged.before["states"]["alarm.lobby_1_fridge_warm"]
        after = acknowledged.after["states"]["alarm.lobby_1_fridge_warm"]
        assert (before["state"], after["state"]) == ("raised", "acknowledged")
        assert acknowledged.after["result"]["status"] == "acknowledged"

        # turning the automation off is a change too
        await hub.services.async_call("automation", "turn_off", {"id": "warm_fridge"}, context=ANNA)
        [turned_off] = await entries(hub, 1, action="automation.turn_off")
        assert (turned_off.target_type, turned_off.target_id) == ("automation", "warm_fridge")
        assert turned_off.before["states"]["automation.warm_fridge"]["state"] == "on"
        assert turned_off.after["states"]["automation.warm_fridge"]["state"] == "off"
    finally:
        await hub.async_stop()


async def test_adopting_a_machine_is_audited(
    hub: Hub, recorder: Recorder, broker: Mosquitto
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    runtime = await start_link(hub, link_config(broker, prefix))
    machine = await TestMachine(broker.port, prefix, "lobby_1").connect()
    try:
        await machine.status("online")
        await machine.announce(refrigerated=True)
        await until(lambda: runtime.directory.get("lobby_1") is not None)
        await hub.services.async_call(
            "mqtt", "adopt", {"machine_id": "lobby_1", "name": "Lobby 1"}, context=ANNA
        )
        [adopted] = await entries(hub, 1, action="mqtt.adopt")
        assert (adopted.actor_type, adopted.actor_id) == ("user", "anna")
        assert (adopted.target_type, adopted.target_id) == ("machine", "lobby_1")
        assert adopted.after["service_data"] == {"machine_id": "lobby_1", "name": "Lobby 1"}
        assert "machine.lobby_1" in adopted.after["result"]["entities"]
        # the machine's entity did not exist before; after, it is online
        assert adopted.before == {"states": {"machine.lobby_1": None}}
        assert adopted.after["states"]["machine.lobby_1"]["state"] == "online"
        assert adopted.context_id == ANNA.id
    finally:
        await machine.close()
        await mqtt_unload(hub=hub)


# ---- the parts, without a database -------------------------------------------------------------


def test_the_actor_convention() -> None:
    assert parse_actor(None) == Actor("system", None)
    assert parse_actor("user:anna") == Actor("user", "anna")
    assert parse_actor("token:t-1") == Actor("token", "t-1")
    assert parse_actor("machine:lobby_1") == Actor("machine", "lobby_1")
    assert parse_actor("automation:automation.x") == Actor("automation", "automation.x")
    # user ids from before the convention, and ids that merely contain a colon, are users
    assert parse_actor("operator_anna") == Actor("user", "operator_anna")
    assert parse_actor("ldap:anna") == Actor("user", "ldap:anna")
    assert parse_actor("machine:") == Actor("user", "machine:")
    assert actor_user_id("machine", "lobby_1") == "machine:lobby_1"
    assert Actor("token", "t-1").user_id == "token:t-1"
    assert Actor("system", None).user_id is None
    with pytest.raises(ValueError):
        actor_user_id("system", "x")
    with pytest.raises(ValueError):
        actor_user_id("user", "")
    context = Context.for_actor("machine", "lobby_1")
    assert context.user_id == "machine:lobby_1"
    assert context.actor == Actor("machine", "lobby_1")
    assert context.child().actor == Actor("machine", "lobby_1")
    assert Context().actor == Actor("system", None)


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("new_password", True),
        ("passwd", True),
        ("api_key", True),
        ("apiKey", True),
        ("APIKey", True),
        ("access_token", True),
        ("X-Auth-Token", True),
        ("Authorization", True),
        ("client_secret", True),
        ("card_number", True),
        ("cardNumber", True),
        ("pin", True),
        ("cvv", True),
        ("key", True),
        ("username", False),
        ("price", False),
        ("ping", False),
        ("machine_id", False),
        ("keypad", False),
        ("spinner", False),
        ("payment_reference", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_card_numbers_and_tokens_in_text() -> None:
    assert redact_text("card 4111-1111-1111-1111 ok") == f"card {MASK} ok"
    assert redact_text("5500005555555559") == MASK
    # digit strings that fail the Luhn check (ids, timestamps) stay
    assert redact_text("order 4111111111111112") == "order 4111111111111112"
    assert redact_text("at 1715000000000") == "at 1715000000000"
    assert redact_text("temperature 4.1111111111111111") == "temperature 4.1111111111111111"
    assert redact_text("Authorization: Bearer abcdefgh12345") == f"Authorization: Bearer {MASK}"
    assert redact_text("https://bob:pw123@host/x") == f"https://bob:{MASK}@host/x"
    assert redact_data({"n": 4111111111111111, "m": 42, "ok": True}) == {
        "n": MASK,
        "m": 42,
        "ok": True,
    }
    assert redact_data({"t": datetime(2024, 5, 6, tzinfo=UTC), "s": {1, 2}}) == {
        "t": "2024-05-06T00:00:00+00:00",
        "s": [1, 2],
    }


def test_an_entry_fits_its_columns() -> None:
    entry = AuditEntry(
        actor_type=ACTOR_AUTOMATION,
        actor_id="automation." + "x" * 100,
        action="a.\x00b" + "c" * 100,
        target_type="t" * 50,
        target_id="slot." + "y" * 300,
        before={"small": 1, "big": "z" * (MAX_JSON_CHARS + 10)},
        after={"password": PASSWORD, "text": "\ud800 lone surrogate"},
        context_id="not hex",
        remote_address="2001:db8::1",
    )
    row = entry.row()
    assert len(row["actor_id"]) == 64
    assert row["action"].startswith("a.b") and len(row["action"]) == 64
    assert len(row["target_type"]) == 32 and len(row["target_id"]) == 255
    assert row["before"] == '{"big":{"chars":60012,"truncated":true},"small":1}'
    assert PASSWORD not in row["after"]
    assert row["context_id"] is None
    with pytest.raises(ValueError, match="actor_type"):
        AuditEntry(actor_type="robot", actor_id=None, action="x")


async def test_observers_see_calls_end_blocking_or_not(hub: Hub) -> None:
    seen: list[tuple[str, Any, str | None]] = []

    def observer(call: ServiceCall, service: Service) -> Any:
        if service.read_only:
            return None
        return lambda result, error: seen.append(
            (call.service, result, type(error).__name__ if error else None)
        )

    async def slow(call: ServiceCall) -> str:
        await asyncio.sleep(0.01)
        return "slow done"

    def broken_observer(call: ServiceCall, service: Service) -> None:
        raise RuntimeError("observer bug")

    hub.services.async_register("demo", "slow", slow)
    hub.services.async_register("demo", "read", lambda call: "read", read_only=True)
    hub.services.async_register("demo", "fail", lambda call: 1 / 0)
    stop = hub.services.async_observe_calls(observer)
    hub.services.async_observe_calls(broken_observer)
    assert await hub.services.async_call("demo", "read") == "read"
    await hub.services.async_call("demo", "slow", blocking=False)
    with pytest.raises(ZeroDivisionError):
        await hub.services.async_call("demo", "fail")
    with pytest.raises(TimeoutError):
        await hub.services.async_call("demo", "slow", timeout=0.001)
    await asyncio.sleep(0.05)
    assert sorted(seen, key=str) == sorted(
        [
            ("fail", None, "ZeroDivisionError"),
            ("slow", None, "CancelledError"),
            ("slow", "slow done", None),
        ],
        key=str,
    )
    stop()
    await hub.services.async_call("demo", "slow")
    assert len(seen) == 3
