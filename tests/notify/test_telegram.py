"""Telegram against a local server that implements the Bot API's sendMessage."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aiohttp import web

from tests.notify.conftest import (
    FAST_RETRY,
    HttpReceiver,
    Received,
    StartNotify,
    capture,
    wait_until,
)
from vendhub.core.hub import Hub

TOKEN = "123456:AAH-bot-token-very-secret"


class BotApi:
    """sendMessage as the Bot API documents it: known chats get a Message, others a 400."""

    def __init__(self, chats: set[int | str]) -> None:
        self.chats = chats
        self.next_message_id = 100

    def __call__(self, request: Received) -> web.Response:
        if request.path != f"/bot{TOKEN}/sendMessage":
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        params = json.loads(request.body)
        if params["chat_id"] not in self.chats:
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                status=400,
            )
        self.next_message_id += 1
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "message_id": self.next_message_id,
                    "date": 1715000000,
                    "chat": {"id": params["chat_id"], "type": "private"},
                    "text": params["text"],
                },
            }
        )


def telegram(server: HttpReceiver, chat_ids: list[Any], **options: Any) -> dict[str, Any]:
    return {
        "name": "ops_telegram",
        "platform": "telegram",
        "token": TOKEN,
        "chat_ids": chat_ids,
        "api_url": server.url,
        **options,
    }


async def test_send_message_to_every_chat(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    http_server.default = BotApi({123456, -1001234567890})
    await start_notify({"targets": [telegram(http_server, [123456, "-1001234567890"])]})

    result = await hub.services.async_call(
        "notify",
        "send",
        {
            "message": "Slot A1 at lobby_1: 1 left",
            "title": "Low stock",
            "severity": "warning",
            "data": {"disable_notification": True, "ignored": "x"},
        },
    )

    assert result["targets"]["ops_telegram"] == {"status": "sent", "attempts": 1}
    assert [request.path for request in http_server.requests] == [f"/bot{TOKEN}/sendMessage"] * 2
    first, second = (json.loads(request.body) for request in http_server.requests)
    assert first == {
        "chat_id": 123456,
        "text": "[WARNING] Low stock\n\nSlot A1 at lobby_1: 1 left",
        "disable_notification": True,
    }
    assert second["chat_id"] == -1001234567890


async def test_bot_api_error_is_final_and_hides_the_token(
    hub: Hub,
    start_notify: StartNotify,
    http_server: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    http_server.default = BotApi({123456})
    await start_notify(
        {"targets": [telegram(http_server, [999])], "retry": FAST_RETRY, "dead_letter_after": 5}
    )
    failed = capture(hub, "notify_failed")

    result = await hub.services.async_call("notify", "send", {"message": "hello"})

    outcome = result["targets"]["ops_telegram"]
    assert outcome["status"] == "dead_lettered"
    assert outcome["attempts"] == 1
    assert outcome["error"] == (
        "Telegram refused the message to chat 999: 400 Bad Request: chat not found"
    )
    assert failed[0].data["retryable"] is False
    await hub.async_block_till_done()
    assert len(http_server.requests) == 1
    assert TOKEN not in caplog.text
    assert "AAH-bot-token" not in caplog.text
    assert TOKEN not in json.dumps(result)


async def test_too_many_requests_waits_as_asked(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    api = BotApi({123456})
    http_server.then(
        lambda _request: web.json_response(
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 0.3},
            },
            status=429,
        )
    )
    http_server.default = api
    await start_notify({"targets": [telegram(http_server, [123456])], "retry": FAST_RETRY})
    sent = capture(hub, "notify_sent")

    result = await hub.services.async_call("notify", "send", {"message": "hello"})

    assert result["targets"]["ops_telegram"]["status"] == "queued"
    assert result["targets"]["ops_telegram"]["retry_in"] == pytest.approx(0.3)
    await wait_until(lambda: bool(sent))
    first, second = http_server.requests
    assert second.at - first.at >= 0.29
    assert sent[0].data["attempts"] == 2


async def test_wrong_token_shows_no_token(
    hub: Hub,
    start_notify: StartNotify,
    http_server: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    http_server.default = BotApi({123456})
    other = "654321:ZZZ-another-secret-token"
    await start_notify({"targets": [telegram(http_server, [123456], token=other)]})

    result = await hub.services.async_call("notify", "send", {"message": "hello"})

    outcome = result["targets"]["ops_telegram"]
    assert outcome["status"] == "dead_lettered"
    assert "404 Not Found" in outcome["error"]
    assert other not in caplog.text
    assert other not in json.dumps(result)


async def test_unreachable_api_names_the_url_without_token(
    hub: Hub,
    start_notify: StartNotify,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await start_notify(
        {
            "targets": [
                {
                    "name": "ops_telegram",
                    "platform": "telegram",
                    "token": TOKEN,
                    "chat_ids": [1],
                    "api_url": "http://127.0.0.1:9",
                }
            ],
            "retry": FAST_RETRY,
        }
    )

    result = await hub.services.async_call("notify", "send", {"message": "hello"})

    outcome = result["targets"]["ops_telegram"]
    assert outcome["status"] == "queued"
    assert outcome["error"].startswith(
        "cannot reach http://127.0.0.1:9/bot<token>/sendMessage: ClientConnectorError"
    )
    assert TOKEN not in caplog.text
