"""SMS through a generic HTTP gateway: templated JSON, form and URL requests."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
import voluptuous as vol

from tests.notify.conftest import FAST_RETRY, HttpReceiver, StartNotify, capture, status, wait_until
from vendhub.core.hub import Hub
from vendhub.notify.schema import CONFIG_SCHEMA

NUMBERS = ["+491701234567", "+491709876543"]


def sms(server: HttpReceiver, **options: Any) -> dict[str, Any]:
    return {
        "name": "driver_sms",
        "platform": "sms",
        "url": f"{server.url}/send",
        "method": "POST",
        "headers": {"Authorization": "Bearer sms-gateway-key-42"},
        "body": '{"to": "{{ to }}", "text": "{{ message }}", "prio": "{{ severity }}"}',
        "recipients": NUMBERS,
        **options,
    }


async def test_templated_json_body_per_recipient(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": [sms(http_server)]})
    message = 'Slot "A1" empty\nat lobby_1 \\ back door'

    result = await hub.services.async_call(
        "notify", "send", {"message": message, "severity": "warning"}
    )

    assert result["targets"]["driver_sms"] == {"status": "sent", "attempts": 1}
    assert len(http_server.requests) == 2
    for request, number in zip(http_server.requests, NUMBERS, strict=True):
        assert request.method == "POST"
        assert request.path == "/send"
        assert request.header("Authorization") == "Bearer sms-gateway-key-42"
        assert request.header("Content-Type") == "application/json; charset=utf-8"
        # quotes, a newline and a backslash in the message still make valid JSON
        assert json.loads(request.body) == {"to": number, "text": message, "prio": "warning"}


async def test_form_body(hub: Hub, start_notify: StartNotify, http_server: HttpReceiver) -> None:
    await start_notify(
        {
            "targets": [
                sms(
                    http_server,
                    body="api_key=k-77&to={{ to }}&text={{ text }}",
                    recipients=NUMBERS[0],
                )
            ]
        }
    )

    await hub.services.async_call(
        "notify", "send", {"message": "Cash box full & door open", "title": "Lobby 1"}
    )

    [request] = http_server.requests
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    assert parse_qs(request.body.decode()) == {
        "api_key": ["k-77"],
        "to": [NUMBERS[0]],
        "text": ["Lobby 1\n\nCash box full & door open"],
    }


async def test_mapping_body_as_form(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify(
        {
            "targets": [
                sms(
                    http_server,
                    body={"number": "{{ to }}", "msg": "{{ message }}", "flash": 0},
                    body_format="form",
                    recipients=NUMBERS[1],
                )
            ]
        }
    )

    await hub.services.async_call("notify", "send", {"message": "Fridge 9 °C"})

    [request] = http_server.requests
    assert parse_qs(request.body.decode()) == {
        "number": [NUMBERS[1]],
        "msg": ["Fridge 9 °C"],
        "flash": ["0"],
    }


async def test_get_with_templated_url(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    target = sms(
        http_server,
        method="GET",
        url=http_server.url + "/api?user=fleet&to={{ to }}&text={{ message }}",
        recipients=NUMBERS[0],
    )
    del target["body"]
    await start_notify({"targets": [target]})

    await hub.services.async_call("notify", "send", {"message": "A&B = 50% off?"})

    [request] = http_server.requests
    assert request.method == "GET"
    assert request.body == b""
    assert request.query == {"user": "fleet", "to": NUMBERS[0], "text": "A&B = 50% off?"}


async def test_retry_sends_only_to_recipients_not_reached(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    http_server.then(status(200), status(502, "gateway busy"))
    await start_notify({"targets": [sms(http_server)], "retry": FAST_RETRY})
    sent = capture(hub, "notify_sent")

    result = await hub.services.async_call("notify", "send", {"message": "Machine offline"})

    assert result["targets"]["driver_sms"]["status"] == "queued"
    assert "(to +491709876543)" in result["targets"]["driver_sms"]["error"]
    await wait_until(lambda: bool(sent))
    recipients = [json.loads(request.body)["to"] for request in http_server.requests]
    assert recipients == [NUMBERS[0], NUMBERS[1], NUMBERS[1]]


def test_unknown_template_variable_is_a_config_error() -> None:
    with pytest.raises(vol.Invalid) as caught:
        CONFIG_SCHEMA(
            {
                "targets": [
                    {
                        "name": "driver_sms",
                        "platform": "sms",
                        "url": "https://gateway.example/send",
                        "body": '{"to": "{{ number }}", "text": "{{ message }}"}',
                        "recipients": ["+491701234567"],
                    }
                ]
            }
        )
    assert caught.value.path == ["targets", 0, "body"]
    assert "unknown template variable(s) number" in str(caught.value)
    assert "available: data, id, message" in str(caught.value)


def test_template_syntax_error_names_the_line() -> None:
    with pytest.raises(vol.Invalid) as caught:
        CONFIG_SCHEMA(
            {
                "targets": [
                    {
                        "name": "driver_sms",
                        "platform": "sms",
                        "url": "https://gateway.example/send",
                        "body": '{\n"to": "{{ to }",\n"text": "{{ message }}"}',
                        "recipients": ["+491701234567"],
                    }
                ]
            }
        )
    assert caught.value.path == ["targets", 0, "body"]
    assert "template error on line 2" in str(caught.value)


def test_formats_are_guessed() -> None:
    bodies = ["to={{ to }}", "[{{ to }}]", '{"to": "{{ to }}"}', "{{ message }}"]
    config = CONFIG_SCHEMA(
        {
            "targets": [
                {
                    "name": f"gateway_{index}",
                    "platform": "sms",
                    "url": "https://gateway.example/send",
                    "body": body,
                    "recipients": ["+491701234567"],
                }
                for index, body in enumerate(bodies)
            ]
        }
    )
    formats = [target["body_format"] for target in config["targets"]]
    assert formats == ["form", "json", "json", "text"]
