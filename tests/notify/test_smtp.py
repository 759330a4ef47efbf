"""Email to a real SMTP server (aiosmtpd): plain relay, login, STARTTLS, refusals."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.notify.conftest import (
    FAST_RETRY,
    MailHandler,
    SmtpServer,
    StartNotify,
    capture,
    free_port,
    wait_until,
)
from vendhub.core.hub import Hub


def smtp_target(server: SmtpServer, **options: Any) -> dict[str, Any]:
    return {
        "name": "ops_email",
        "platform": "smtp",
        "host": "127.0.0.1",
        "port": server.port,
        "sender": "vendhub@example.com",
        "recipients": ["driver@example.com", "ops@example.com"],
        **options,
    }


async def test_email_reaches_the_smtp_server(
    hub: Hub, start_notify: StartNotify, smtp_server: SmtpServer
) -> None:
    await start_notify({"targets": [smtp_target(smtp_server)]})
    sent = capture(hub, "notify_sent")

    result = await hub.services.async_call(
        "notify",
        "send",
        {
            "message": "Slot A1 of lobby_1 has 2 items left.\nPar is 5.",
            "title": "Low stock",
            "severity": "warning",
            "data": {"html": "<p>Slot <b>A1</b> has 2 items left.</p>"},
        },
    )

    assert result["targets"] == {"ops_email": {"status": "sent", "attempts": 1}}
    [mail] = smtp_server.handler.messages
    assert mail.mail_from == "vendhub@example.com"
    assert mail.rcpt_tos == ["driver@example.com", "ops@example.com"]
    assert mail.login is None
    message = mail.message
    assert message["Subject"] == "[WARNING] Low stock"
    assert message["From"] == "vendhub@example.com"
    assert message["To"] == "driver@example.com, ops@example.com"
    assert message["X-VendHub-Severity"] == "warning"
    assert message["X-VendHub-Notification-Id"] == result["id"]
    assert mail.body() == "Slot A1 of lobby_1 has 2 items left.\nPar is 5.\n"
    assert mail.body("html").strip() == "<p>Slot <b>A1</b> has 2 items left.</p>"
    [event] = sent
    assert event.data["id"] == result["id"]
    assert event.data["target"] == "ops_email"
    assert event.data["platform"] == "smtp"
    assert event.data["attempts"] == 1


async def test_subject_without_title_is_the_first_line(
    hub: Hub, start_notify: StartNotify, smtp_server: SmtpServer
) -> None:
    await start_notify({"targets": [smtp_target(smtp_server)]})

    await hub.services.async_call(
        "notify",
        "send",
        {"message": "\nFridge of lobby_2 at 9.5 °C\nsince 12:00", "severity": "critical"},
    )

    [mail] = smtp_server.handler.messages
    assert mail.message["Subject"] == "[CRITICAL] Fridge of lobby_2 at 9.5 °C"
    assert mail.body() == "\nFridge of lobby_2 at 9.5 °C\nsince 12:00\n"


async def test_login_with_username_and_password(
    hub: Hub,
    start_notify: StartNotify,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await start_notify(
        {"targets": [smtp_target(smtp_server, username="driver-bot", password="s3cret-smtp-pass")]}
    )

    result = await hub.services.async_call("notify", "send", {"message": "Cash box 90 % full"})

    assert result["targets"]["ops_email"]["status"] == "sent"
    [mail] = smtp_server.handler.messages
    assert mail.login == "driver-bot"
    assert smtp_server.handler.logins == [("driver-bot", "s3cret-smtp-pass")]
    assert "s3cret-smtp-pass" not in caplog.text


async def test_wrong_password_is_final_and_not_shown(
    hub: Hub,
    start_notify: StartNotify,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await start_notify(
        {
            "targets": [smtp_target(smtp_server, username="driver-bot", password="wrong-pass-123")],
            "retry": FAST_RETRY,
        }
    )
    failed = capture(hub, "notify_failed")

    result = await hub.services.async_call("notify", "send", {"message": "Door open"})

    outcome = result["targets"]["ops_email"]
    assert outcome["status"] == "dead_lettered"
    assert outcome["attempts"] == 1
    assert "refused the login: 535" in outcome["error"]
    assert smtp_server.handler.messages == []
    assert failed[0].data["retryable"] is False
    assert "wrong-pass-123" not in caplog.text
    assert "wrong-pass-123" not in str(result)
    assert "wrong-pass-123" not in str(failed[0].data)


async def test_starttls_with_a_self_signed_certificate(
    hub: Hub, start_notify: StartNotify, starttls_smtp_server: SmtpServer
) -> None:
    await start_notify(
        {
            "targets": [
                smtp_target(
                    starttls_smtp_server,
                    starttls=True,
                    verify_tls=False,
                    username="driver-bot",
                    password="s3cret-smtp-pass",
                )
            ]
        }
    )

    result = await hub.services.async_call("notify", "send", {"message": "Over TLS"})

    assert result["targets"]["ops_email"] == {"status": "sent", "attempts": 1}
    [mail] = starttls_smtp_server.handler.messages
    assert mail.login == "driver-bot"
    assert mail.body() == "Over TLS\n"


async def test_certificate_is_verified_by_default(
    hub: Hub, start_notify: StartNotify, starttls_smtp_server: SmtpServer
) -> None:
    await start_notify(
        {"targets": [smtp_target(starttls_smtp_server, starttls=True)], "retry": FAST_RETRY}
    )

    result = await hub.services.async_call("notify", "send", {"message": "Over TLS"})

    outcome = result["targets"]["ops_email"]
    assert outcome["status"] == "queued"
    assert "CERTIFICATE_VERIFY_FAILED" in outcome["error"] or "certificate" in outcome["error"]
    assert starttls_smtp_server.handler.messages == []


async def test_refused_recipient_is_not_retried(
    hub: Hub, start_notify: StartNotify, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.refuse = {
        "driver@example.com": "550 5.1.1 no such user",
        "ops@example.com": "550 5.1.1 no such user",
    }
    await start_notify({"targets": [smtp_target(smtp_server)], "retry": FAST_RETRY})

    result = await hub.services.async_call("notify", "send", {"message": "Jam in A3"})

    outcome = result["targets"]["ops_email"]
    assert outcome["status"] == "dead_lettered"
    assert outcome["attempts"] == 1
    assert "driver@example.com: 550" in outcome["error"]


async def test_one_refused_recipient_does_not_stop_the_others(
    hub: Hub,
    start_notify: StartNotify,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    smtp_server.handler.refuse = {"ops@example.com": "550 5.1.1 no such user"}
    await start_notify({"targets": [smtp_target(smtp_server)]})

    result = await hub.services.async_call("notify", "send", {"message": "Jam in A3"})

    assert result["targets"]["ops_email"]["status"] == "sent"
    [mail] = smtp_server.handler.messages
    assert mail.rcpt_tos == ["driver@example.com"]
    assert "refused ops@example.com (550)" in caplog.text


async def test_server_down_is_retried_then_delivered(
    hub: Hub, start_notify: StartNotify, tmp_path: Path
) -> None:
    port = free_port()
    await start_notify(
        {
            "targets": [
                {
                    "name": "ops_email",
                    "platform": "smtp",
                    "host": "127.0.0.1",
                    "port": port,
                    "sender": "vendhub@example.com",
                    "recipients": "driver@example.com",
                }
            ],
            "retry": {"first_delay": 0.3, "max_delay": 1},
        }
    )
    sent = capture(hub, "notify_sent")

    result = await hub.services.async_call("notify", "send", {"message": "Machine offline"})

    assert result["targets"]["ops_email"]["status"] == "queued"
    assert result["targets"]["ops_email"]["retry_in"] == pytest.approx(0.3)
    handler = MailHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    await hub.async_add_executor_job(controller.start)
    try:
        await wait_until(lambda: bool(sent))
    finally:
        await hub.async_add_executor_job(controller.stop)
    assert sent[0].data["attempts"] == 2
    assert handler.messages[0].body() == "Machine offline\n"


async def test_a_mail_server_that_is_not_there_is_named_once_at_start(
    hub: Hub, start_notify: StartNotify, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens on it
    target = {**smtp_target(SmtpServer(MailHandler(), port)), "name": "route_driver"}
    with caplog.at_level(logging.WARNING, logger="vendhub.notify"):
        runtime = await start_notify({"targets": [target]})
        await wait_until(lambda: "cannot be reached" in caplog.text)
    [warning] = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert warning.startswith(
        f"Notify target route_driver: smtp 127.0.0.1:{port} cannot be reached ("
    )
    assert warning.endswith(
        "); notifications to it fail, and are kept as dead letters, until that is fixed (its "
        "options in the notify: block)"
    )
    assert await runtime.dispatcher.targets["route_driver"].async_check() is not None


async def test_a_mail_server_that_is_there_passes_the_check(
    hub: Hub, start_notify: StartNotify, smtp_server: SmtpServer
) -> None:
    runtime = await start_notify({"targets": [smtp_target(smtp_server)]})
    assert await runtime.dispatcher.targets["ops_email"].async_check() is None
    assert smtp_server.handler.messages == []  # nothing was sent
