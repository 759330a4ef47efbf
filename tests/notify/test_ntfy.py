"""ntfy push: POST {server}/{topic} with Title, Priority and Tags headers."""

from __future__ import annotations

from email.header import decode_header, make_header
from typing import Any

from tests.notify.conftest import HttpReceiver, StartNotify
from vendhub.core.hub import Hub


def ntfy(server: HttpReceiver, **options: Any) -> dict[str, Any]:
    return {
        "name": "ops_push",
        "platform": "ntfy",
        "server": server.url,
        "topic": "vendhub-alerts",
        **options,
    }


async def test_headers_follow_the_severity(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": [ntfy(http_server, tags=["vending"])]})

    result = await hub.services.async_call(
        "notify",
        "send",
        {
            "message": "Fridge at 9.5 °C for 15 minutes",
            "title": "lobby_2 too warm",
            "severity": "critical",
            "data": {"tags": ["fridge"], "click": "https://hub.example/machines/lobby_2"},
        },
    )

    assert result["targets"]["ops_push"] == {"status": "sent", "attempts": 1}
    [request] = http_server.requests
    assert request.method == "POST"
    assert request.path == "/vendhub-alerts"
    assert request.body.decode() == "Fridge at 9.5 °C for 15 minutes"
    assert request.header("Title") == "[CRITICAL] lobby_2 too warm"
    assert request.header("Priority") == "5"
    assert request.header("Tags") == "rotating_light,vending,fridge"
    assert request.header("Click") == "https://hub.example/machines/lobby_2"
    assert request.header("Authorization") is None


async def test_info_priority_and_overrides(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": [ntfy(http_server, token="tk_ntfy_access_token")]})

    await hub.services.async_call("notify", "send", {"message": "Daily report ready"})
    await hub.services.async_call(
        "notify", "send", {"message": "Restock soon", "data": {"priority": "high"}}
    )

    first, second = http_server.requests
    assert first.header("Priority") == "3"
    assert first.header("Title") is None
    assert first.header("Tags") is None
    assert first.header("Authorization") == "Bearer tk_ntfy_access_token"
    assert second.header("Priority") == "4"


async def test_non_ascii_title_is_rfc2047_encoded(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": [ntfy(http_server, username="ops", password="pw-ntfy-1")]})

    await hub.services.async_call(
        "notify", "send", {"message": "Kühlschrank zu warm", "title": "Café Süd, 9 °C"}
    )

    [request] = http_server.requests
    title = request.header("Title")
    assert title is not None and title.startswith("=?utf-8?")
    assert str(make_header(decode_header(title))) == "Café Süd, 9 °C"
    assert request.body.decode() == "Kühlschrank zu warm"
    assert request.header("Authorization") == "Basic b3BzOnB3LW50ZnktMQ=="  # ops:pw-ntfy-1


async def test_bad_priority_in_data_is_final(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": [ntfy(http_server)]})

    result = await hub.services.async_call(
        "notify", "send", {"message": "x", "data": {"priority": 9}}
    )

    outcome = result["targets"]["ops_push"]
    assert outcome["status"] == "dead_lettered"
    assert outcome["error"].startswith("data.priority: an ntfy priority is 1 to 5")
    assert http_server.requests == []
