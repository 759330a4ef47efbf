"""Webhooks to a local HTTP server: HMAC signature, retries with backoff, dead letters."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.notify.conftest import (
    FAST_RETRY,
    HttpReceiver,
    StartNotify,
    capture,
    status,
    wait_until,
)
from vendhub.core.context import Context
from vendhub.core.hub import Hub
from vendhub.notify.dispatcher import DispatchSettings

SECRET = "hook-secret-9f8e7d"


def webhook(server: HttpReceiver, **options: Any) -> dict[str, Any]:
    return {
        "name": "ops_webhook",
        "platform": "webhook",
        "url": f"{server.url}/hooks/vendhub",
        "secret": SECRET,
        **options,
    }


async def test_body_is_json_and_signature_verifies(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    await start_notify({"targets": [webhook(http_server)]})
    context = Context(user_id="operator-1")

    result = await hub.services.async_call(
        "notify",
        "send",
        {
            "message": 'Fridge "lobby_2" at 9.5 °C',
            "title": "Temperature",
            "severity": "critical",
            "data": {"machine_id": "lobby_2", "reading": 9.5},
            "dedupe_key": "fridge-lobby_2",
        },
        context=context,
    )

    assert result["targets"]["ops_webhook"] == {"status": "sent", "attempts": 1}
    [request] = http_server.requests
    assert request.method == "POST"
    assert request.path == "/hooks/vendhub"
    assert request.header("Content-Type") == "application/json; charset=utf-8"
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.header("X-VendHub-Signature") == f"sha256={expected}"
    assert request.header("X-VendHub-Notification-Id") == result["id"]
    body = json.loads(request.body)
    assert body["id"] == result["id"]
    assert body["target"] == "ops_webhook"
    assert body["title"] == "Temperature"
    assert body["message"] == 'Fridge "lobby_2" at 9.5 °C'
    assert body["severity"] == "critical"
    assert body["data"] == {"machine_id": "lobby_2", "reading": 9.5}
    assert body["dedupe_key"] == "fridge-lobby_2"
    assert body["escalated"] is False
    # the notification's context is caused by the service call's
    assert body["context_id"] != context.id


async def test_without_secret_there_is_no_signature(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    target = webhook(http_server, headers={"X-Fleet": "north"})
    del target["secret"]
    await start_notify({"targets": [target]})

    await hub.services.async_call("notify", "send", {"message": "hello"})

    [request] = http_server.requests
    assert request.header("X-VendHub-Signature") is None
    assert request.header("X-Fleet") == "north"
    assert json.loads(request.body)["message"] == "hello"


async def test_retries_with_backoff_on_500_then_success(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    http_server.then(status(500, "boom"), status(502), status(503))
    await start_notify(
        {
            "targets": [webhook(http_server)],
            "retry": {"first_delay": 0.1, "max_delay": 1},
            "dead_letter_after": 5,
        }
    )
    sent = capture(hub, "notify_sent")

    result = await hub.services.async_call("notify", "send", {"message": "Coin jam"})

    outcome = result["targets"]["ops_webhook"]
    assert outcome["status"] == "queued"
    assert outcome["attempts"] == 1
    assert outcome["retry_in"] == pytest.approx(0.1)
    assert "HTTP 500: boom" in outcome["error"]
    # the caller did not wait for the retries
    assert len(http_server.requests) == 1

    requests = await http_server.wait_for(4)
    await wait_until(lambda: bool(sent))
    assert sent[0].data["attempts"] == 4
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
    assert gaps[0] >= 0.09
    assert gaps[1] >= 0.19
    assert gaps[2] >= 0.39
    assert gaps[2] > gaps[1] > gaps[0]
    ids = {request.header("X-VendHub-Notification-Id") for request in requests}
    assert ids == {result["id"]}
    bodies = {request.body for request in requests}
    assert len(bodies) == 1  # the same signed body each time


async def test_dead_letter_after_n_failures(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver, tmp_path: Path
) -> None:
    http_server.default = status(503, "maintenance")
    runtime = await start_notify(
        {"targets": [webhook(http_server)], "retry": FAST_RETRY, "dead_letter_after": 3}
    )
    failed = capture(hub, "notify_failed")
    sent = capture(hub, "notify_sent")

    result = await hub.services.async_call(
        "notify", "send", {"message": "Bill validator offline", "title": "Payment"}
    )
    assert result["targets"]["ops_webhook"]["status"] == "queued"
    await wait_until(lambda: bool(failed))

    assert len(http_server.requests) == 3
    assert sent == []
    event = failed[0].data
    assert event["id"] == result["id"]
    assert event["target"] == "ops_webhook"
    assert event["attempts"] == 3
    assert event["dead_lettered"] is True
    assert event["retryable"] is True
    assert "HTTP 503: maintenance" in event["error"]
    # The retry task ends just after it fires notify_failed: no retry is left behind.
    await wait_until(lambda: runtime.dispatcher.pending_retries == 0)

    listed = await hub.services.async_call("notify", "dead_letters", {})
    [letter] = listed["dead_letters"]
    assert letter["id"] == result["id"]
    assert letter["message"] == "Bill validator offline"
    assert letter["title"] == "Payment"
    assert letter["attempts"] == 3

    # the list is kept on disk
    await runtime.dispatcher._store.async_flush()  # type: ignore[union-attr]
    stored = json.loads((tmp_path / ".storage" / "notify.dead_letters").read_text())
    assert [item["id"] for item in stored["data"]["dead_letters"]] == [result["id"]]

    # once the receiver works again, the operator resends it
    http_server.default = status(200)
    resent = await hub.services.async_call("notify", "resend_dead_letters", {})
    assert resent == {result["id"]: {"target": "ops_webhook", "status": "sent", "attempts": 1}}
    assert json.loads(http_server.requests[-1].body)["id"] == result["id"]
    assert (await hub.services.async_call("notify", "dead_letters", {})) == {"dead_letters": []}


async def test_client_error_is_not_retried(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    http_server.default = status(400, "bad payload")
    await start_notify({"targets": [webhook(http_server)], "retry": FAST_RETRY})
    failed = capture(hub, "notify_failed")

    result = await hub.services.async_call("notify", "send", {"message": "x"})

    outcome = result["targets"]["ops_webhook"]
    assert outcome == {
        "status": "dead_lettered",
        "attempts": 1,
        "error": f"{http_server.url}/hooks/vendhub answered HTTP 400: bad payload",
    }
    assert failed[0].data["retryable"] is False
    await hub.async_block_till_done()
    assert len(http_server.requests) == 1


async def test_retry_after_is_honoured(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    http_server.then(status(429, "slow down", **{"Retry-After": "0.4"}))
    await start_notify({"targets": [webhook(http_server)], "retry": FAST_RETRY})
    sent = capture(hub, "notify_sent")

    result = await hub.services.async_call("notify", "send", {"message": "x"})

    assert result["targets"]["ops_webhook"]["retry_in"] == pytest.approx(0.4)
    requests = await http_server.wait_for(2)
    await wait_until(lambda: bool(sent))
    assert requests[1].at - requests[0].at >= 0.39


def test_backoff_doubles_up_to_the_maximum() -> None:
    settings = DispatchSettings(first_delay=2, max_delay=10)
    assert [settings.backoff(failures) for failures in range(1, 6)] == [2, 4, 8, 10, 10]
    assert settings.backoff(1, asked=7) == 7
    assert settings.backoff(1, asked=60) == 10


async def test_unreachable_receiver_is_retried(
    hub: Hub, start_notify: StartNotify, http_server: HttpReceiver
) -> None:
    closed_url = "http://127.0.0.1:9/hook"  # discard port: nothing listens
    await start_notify(
        {
            "targets": [{"name": "ops_webhook", "platform": "webhook", "url": closed_url}],
            "retry": FAST_RETRY,
            "dead_letter_after": 2,
        }
    )
    failed = capture(hub, "notify_failed")

    result = await hub.services.async_call("notify", "send", {"message": "x"})

    outcome = result["targets"]["ops_webhook"]
    assert outcome["status"] == "queued"
    assert outcome["error"].startswith("cannot reach http://127.0.0.1:9/hook: ClientConnector")
    await wait_until(lambda: bool(failed))
    assert failed[0].data["attempts"] == 2


async def test_unload_moves_pending_retries_to_the_dead_letters(
    hub: Hub,
    start_notify: StartNotify,
    http_server: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from vendhub_integrations.notify import vendhub_unload

    http_server.default = status(500)
    runtime = await start_notify(
        {"targets": [webhook(http_server)], "retry": {"first_delay": 60, "max_delay": 60}}
    )
    result = await hub.services.async_call("notify", "send", {"message": "Refill lobby_1"})
    assert result["targets"]["ops_webhook"]["status"] == "queued"
    assert runtime.dispatcher.pending_retries == 1

    caplog.set_level(logging.INFO)
    await vendhub_unload(hub=hub)

    assert runtime.dispatcher.pending_retries == 0
    assert runtime.session.closed
    [letter] = runtime.dispatcher.dead_letters
    assert letter["message"] == "Refill lobby_1"
    assert letter["error"].startswith("still undelivered when notify was unloaded")
    assert "HTTP 500" in letter["error"]
