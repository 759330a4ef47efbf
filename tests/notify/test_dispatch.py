"""De-duplication, rate limits, escalation, targets and templates of notify.send."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from tests.notify.conftest import HttpReceiver, StartNotify, capture, wait_until
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub


def hooks(server: HttpReceiver, *names: str) -> list[dict[str, Any]]:
    return [{"name": name, "platform": "webhook", "url": f"{server.url}/{name}"} for name in names]


def paths(server: HttpReceiver) -> list[str]:
    return [request.path for request in server.requests]


def messages(server: HttpReceiver) -> list[str]:
    return [json.loads(request.body)["message"] for request in server.requests]


async def send(hub: Hub, **data: Any) -> dict[str, Any]:
    result = await hub.services.async_call("notify", "send", data)
    assert isinstance(result, dict)
    return result


async def test_same_dedupe_key_within_the_window_is_suppressed(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": hooks(http_server, "ops"), "dedupe_window": "10min"})

    first = await send(hub, message="A1 low (2 left)", dedupe_key="low:lobby_1:A1")
    second = await send(hub, message="A1 low (1 left)", dedupe_key="low:lobby_1:A1")
    third = await send(hub, message="A1 low (0 left)", dedupe_key="low:lobby_1:A1")
    other = await send(hub, message="A2 low", dedupe_key="low:lobby_1:A2")

    assert first["targets"]["ops"]["status"] == "sent"
    assert second["targets"]["ops"] == {"status": "deduplicated", "suppressed": 1}
    assert third["targets"]["ops"] == {"status": "deduplicated", "suppressed": 2}
    assert other["targets"]["ops"]["status"] == "sent"
    assert messages(http_server) == ["A1 low (2 left)", "A2 low"]


async def test_without_key_the_message_and_target_are_the_key(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": hooks(http_server, "ops", "driver")})

    await send(hub, message="Machine lobby_3 offline", target="ops")
    repeat = await send(hub, message="Machine lobby_3 offline", target=["ops", "driver"])
    titled = await send(hub, message="Machine lobby_3 offline", title="Offline", target="ops")

    assert repeat["targets"]["ops"]["status"] == "deduplicated"
    assert repeat["targets"]["driver"]["status"] == "sent"
    assert titled["targets"]["ops"]["status"] == "sent"
    assert paths(http_server) == ["/ops", "/driver", "/ops"]


async def test_after_the_window_the_message_goes_again(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": hooks(http_server, "ops"), "dedupe_window": 0.5})

    await send(hub, message="Door open", dedupe_key="door")
    suppressed = await send(hub, message="Door open", dedupe_key="door")
    await asyncio.sleep(0.55)
    again = await send(hub, message="Door open", dedupe_key="door")

    assert suppressed["targets"]["ops"]["status"] == "deduplicated"
    assert again["targets"]["ops"]["status"] == "sent"
    assert len(http_server.requests) == 2


async def test_rate_limit_per_target(
    hub: Hub,
    start_notify: StartNotify,
    http_server: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    await start_notify(
        {
            "targets": hooks(http_server, "ops", "driver"),
            "rate_limit": {"count": 3, "period": 1},
            "dedupe_window": 0,
        }
    )

    results = [await send(hub, message=f"vend failure {n}", target="ops") for n in range(5)]
    driver = await send(hub, message="unrelated", target="driver")

    assert [result["targets"]["ops"]["status"] for result in results] == [
        "sent",
        "sent",
        "sent",
        "rate_limited",
        "rate_limited",
    ]
    assert results[3]["targets"]["ops"]["dropped"] == 1
    assert results[4]["targets"]["ops"]["dropped"] == 2
    assert driver["targets"]["driver"]["status"] == "sent"
    assert messages(http_server) == [
        "vend failure 0",
        "vend failure 1",
        "vend failure 2",
        "unrelated",
    ]
    assert caplog.text.count("Target ops is over its rate limit of 3 messages per 1 s") == 1

    await asyncio.sleep(1.05)
    later = await send(hub, message="vend failure 5", target="ops")
    assert later["targets"]["ops"]["status"] == "sent"
    assert "Target ops is below its rate limit again; 2 messages were dropped" in caplog.text


async def test_escalation_fires_when_not_acknowledged(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify(
        {"targets": hooks(http_server, "driver", "manager"), "default_targets": ["driver"]}
    )
    escalated = capture(hub, "notify_escalated")

    result = await send(
        hub,
        message="Fridge lobby_2 at 9 °C",
        title="Temperature alarm",
        severity="critical",
        escalate={
            "after": 0.2,
            "target": "manager",
            "unless": {"event": "alarm_acknowledged", "alarm_id": "alarm-7"},
        },
    )

    escalation = result["escalation"]
    assert escalation["status"] == "scheduled"
    assert escalation["targets"] == ["manager"]
    assert escalation["after"] == 0.2
    assert paths(http_server) == ["/driver"]
    # another alarm's acknowledgement does not cancel it
    hub.bus.async_fire("alarm_acknowledged", {"alarm_id": "alarm-8"})

    await wait_until(lambda: bool(escalated))

    assert paths(http_server) == ["/driver", "/manager"]
    body = json.loads(http_server.requests[1].body)
    assert body["message"] == "Fridge lobby_2 at 9 °C"
    assert body["title"] == "Temperature alarm"
    assert body["severity"] == "critical"
    assert body["escalated"] is True
    event = escalated[0].data
    assert event["escalation_id"] == escalation["id"]
    assert event["notification_id"] == result["id"]
    assert event["targets"] == {"manager": {"status": "sent", "attempts": 1}}


async def test_an_escalation_reaches_a_target_that_had_the_message_already(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": hooks(http_server, "ops")})
    escalated = capture(hub, "notify_escalated")
    await send(hub, message="Fridge warm", target="ops", escalate={"after": 0.1, "target": "ops"})
    await wait_until(lambda: bool(escalated))
    assert escalated[0].data["targets"] == {"ops": {"status": "sent", "attempts": 1}}
    bodies = [json.loads(request.body) for request in http_server.requests]
    assert [body["escalated"] for body in bodies] == [False, True]


async def test_escalation_is_cancelled_by_the_acknowledgement(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    runtime = await start_notify(
        {"targets": hooks(http_server, "driver", "manager"), "default_targets": ["driver"]}
    )
    escalated = capture(hub, "notify_escalated")

    result = await send(
        hub,
        message="Machine lobby_1 offline",
        escalate={
            "after": 0.2,
            "target": ["manager"],
            "unless": {"event": "alarm_acknowledged", "alarm_id": 7},
        },
    )
    assert len(runtime.dispatcher.escalations.pending) == 1
    hub.bus.async_fire("alarm_acknowledged", {"alarm_id": "7", "user": "ops"})

    assert runtime.dispatcher.escalations.pending == []
    await asyncio.sleep(0.3)
    assert escalated == []
    assert paths(http_server) == ["/driver"]
    assert result["escalation"]["status"] == "scheduled"


async def test_repeated_alert_does_not_stack_escalations(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    runtime = await start_notify(
        {"targets": hooks(http_server, "driver", "manager"), "default_targets": ["driver"]}
    )
    escalate = {"after": 60, "target": "manager"}

    first = await send(hub, message="Jam A3", dedupe_key="jam:A3", escalate=escalate)
    second = await send(hub, message="Jam A3", dedupe_key="jam:A3", escalate=escalate)

    assert second["targets"]["driver"]["status"] == "deduplicated"
    assert second["escalation"]["status"] == "already_pending"
    assert second["escalation"]["id"] == first["escalation"]["id"]
    assert len(runtime.dispatcher.escalations.pending) == 1

    cancelled = await hub.services.async_call(
        "notify", "cancel_escalation", {"id": first["escalation"]["id"]}
    )
    assert cancelled == {"cancelled": True}
    assert runtime.dispatcher.escalations.pending == []


async def test_unknown_target_lists_the_known_ones(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": hooks(http_server, "ops_email", "ops_webhook")})

    with pytest.raises(InvalidServiceData) as caught:
        await send(hub, message="x", target=["ops_webhook", "ops_mail"])

    assert str(caught.value) == (
        "invalid data for service notify.send: target: unknown notify target 'ops_mail' "
        "(did you mean 'ops_email'?); known targets: ops_email, ops_webhook"
    )
    assert http_server.requests == []

    with pytest.raises(InvalidServiceData) as caught:
        await send(hub, message="x", escalate={"after": 5, "target": "boss"})
    assert "escalate > target: unknown notify target 'boss'" in str(caught.value)


async def test_without_target_the_default_targets_get_it(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify(
        {"targets": hooks(http_server, "a", "b", "c"), "default_targets": ["c", "a"]}
    )

    result = await send(hub, message="to the defaults")

    assert list(result["targets"]) == ["c", "a"]
    assert sorted(paths(http_server)) == ["/a", "/c"]


async def test_default_targets_are_all_targets_when_not_configured(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": hooks(http_server, "a", "b")})

    result = await send(hub, message="to everyone")

    assert list(result["targets"]) == ["a", "b"]


async def test_no_target_and_no_defaults_is_an_error(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": hooks(http_server, "a", "b"), "default_targets": []})

    with pytest.raises(InvalidServiceData) as caught:
        await send(hub, message="to nobody")

    assert "no target given and there are no default targets; known targets: a, b" in str(
        caught.value
    )


async def test_message_and_title_are_templates(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": hooks(http_server, "ops")})
    hub.states.async_set("slot.lobby_1_a1", "2", {"product": "Cola"})

    await send(
        hub,
        title="{{ state_attr('slot.lobby_1_a1', 'product') }} low",
        message="Only {{ states('slot.lobby_1_a1') }} left ({{ severity }})",
        severity="warning",
    )

    body = json.loads(http_server.requests[0].body)
    assert body["title"] == "Cola low"
    assert body["message"] == "Only 2 left (warning)"


async def test_template_error_names_the_template(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": hooks(http_server, "ops")})

    # The caller's mistake: refused as bad service data (HTTP 400), naming template and line.
    with pytest.raises(InvalidServiceData) as caught:
        await send(hub, message="line one\n{{ states('x' }}")

    assert caught.value.problem.startswith("template 'notify.send message' line 2: ")
    assert http_server.requests == []


async def test_a_message_longer_than_a_template_may_render_is_refused(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": hooks(http_server, "ops")})
    with pytest.raises(InvalidServiceData) as caught:
        await send(hub, message="x" * 1_000_000)
    assert "1,000,000 characters, more than the 262,144 a notification takes" in str(
        caught.value.problem
    )
    assert http_server.requests == []


async def test_sent_event_carries_a_child_context(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    from vendhub.core.context import Context

    await start_notify({"targets": hooks(http_server, "ops")})
    sent = capture(hub, "notify_sent")
    context = Context(user_id="user-1")

    await hub.services.async_call("notify", "send", {"message": "x"}, context=context)

    assert sent[0].context.parent_id == context.id
    assert sent[0].context.user_id == "user-1"


async def test_log_platform_writes_the_notification_into_the_log(
    hub: Hub, start_notify: StartNotify, caplog: pytest.LogCaptureFixture
) -> None:
    await start_notify({"targets": [{"name": "hub_log", "platform": "log"}]})
    with caplog.at_level(logging.INFO, logger="vendhub.notifications"):
        result = await hub.services.async_call(
            "notify", "send", {"message": "Fridge warm", "title": "gym", "severity": "critical"}
        )
    assert result["targets"]["hub_log"]["status"] == "sent"
    [record] = [r for r in caplog.records if r.name == "vendhub.notifications"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "[hub_log] gym: Fridge warm"
