"""The notify integration the way the hub runs it: configuration folder, secrets, plugins."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from tests.notify.conftest import HttpReceiver, SmtpServer, capture, status, wait_until
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub
from vendhub.notify.schema import CONFIG_SCHEMA

SECRETS = {
    "smtp_user": "driver-bot",
    "smtp_password": "s3cret-smtp-pass",
    "hook_secret": "hmac-key-5d1c0ffee",
    "hook_path_token": "T0K3N-in-the-path-77",
    "sms_auth": "Bearer sms-token-abcdef",
    "telegram_token": "987654:AAF-telegram-token-zyx",
    "pager_key": "acme-pager-key-31337",
}

PAGER_PLUGIN = """
import voluptuous as vol

from vendhub.notify.models import DeliveryError
from vendhub.notify.platform import NotifyPlatform
from vendhub.plugins import hookimpl


class AcmePager(NotifyPlatform):
    platform = "acme_pager"
    OPTIONS = {vol.Required("pager_id"): int, vol.Optional("api_key"): str}
    SECRET_OPTIONS = ("api_key",)

    def describe(self):
        return f"acme pager {self.config['pager_id']}"

    async def async_send(self, notification):
        if notification.data.get("fail"):
            raise DeliveryError(f"pager refused key {self.config['api_key']}", retryable=False)
        pages = self.hub.data.setdefault("acme_pages", [])
        pages.append((self.config["pager_id"], notification.severity, notification.message))


@hookimpl
def vendhub_notify_platform(platform):
    return AcmePager if platform == "acme_pager" else None
"""


@pytest.fixture(autouse=True)
def forget_custom_modules() -> Iterator[None]:
    yield
    for name in [n for n in sys.modules if n.startswith("vendhub_custom_integrations")]:
        del sys.modules[name]


def write_folder(config_dir: Path, configuration: str, secrets: dict[str, str]) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(textwrap.dedent(configuration).lstrip())
    (config_dir / "secrets.yaml").write_text(
        "".join(f"{key}: {json.dumps(value)}\n" for key, value in secrets.items())
    )


def write_pager_plugin(config_dir: Path) -> None:
    folder = config_dir / "custom_integrations" / "acme_pager"
    folder.mkdir(parents=True)
    manifest = {"domain": "acme_pager", "name": "Acme pager", "version": "1.0.0",
                "iot_class": "cloud_push"}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "__init__.py").write_text(PAGER_PLUGIN)


def configuration(smtp_port: int, http_url: str) -> str:
    return f"""
        acme_pager:
        notify:
          targets:
            - name: ops_email
              platform: smtp
              host: 127.0.0.1
              port: {smtp_port}
              username: !secret smtp_user
              password: !secret smtp_password
              sender: vendhub@example.com
              recipients: [driver@example.com]
            - name: ops_webhook
              platform: webhook
              url: !secret hook_url
              secret: !secret hook_secret
            - name: driver_sms
              platform: sms
              url: {http_url}/sms/send
              headers: {{Authorization: !secret sms_auth}}
              body: '{{"to": "{{{{ to }}}}", "text": "{{{{ message }}}}"}}'
              recipients: ["+491701234567"]
            - name: ops_telegram
              platform: telegram
              token: !secret telegram_token
              chat_ids: [123456]
              api_url: {http_url}
            - name: pager
              platform: acme_pager
              pager_id: 42
              api_key: !secret pager_key
            - name: broken_pager
              platform: acme_pager
              pager_id: not-a-number
          default_targets: [ops_email]
          retry: {{first_delay: 50ms, max_delay: 100ms}}
          dead_letter_after: 2
        """


def all_secrets(http_url: str) -> dict[str, str]:
    return {**SECRETS, "hook_url": f"{http_url}/hooks/{SECRETS['hook_path_token']}"}


async def test_hub_runs_notify_from_a_config_folder_without_leaking_secrets(
    tmp_path: Path,
    smtp_server: SmtpServer,
    http_server: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    write_folder(
        tmp_path,
        configuration(smtp_server.port, http_server.url),
        all_secrets(http_server.url),
    )
    write_pager_plugin(tmp_path)
    prepared = prepare(tmp_path)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    sent, failed = capture(hub, "notify_sent"), capture(hub, "notify_failed")
    calls = capture(hub, "call_service")
    results: list[Any] = []
    try:
        assert report.failed == {}
        assert set(report.loaded) >= {"notify", "acme_pager"}

        # the default target: email, with the login from secrets.yaml
        results.append(await hub.services.async_call("notify", "send", {"message": "Low stock"}))
        assert results[-1]["targets"] == {"ops_email": {"status": "sent", "attempts": 1}}
        assert smtp_server.handler.messages[0].login == "driver-bot"

        # every other platform, the plugin's included
        results.append(
            await hub.services.async_call(
                "notify",
                "send",
                {
                    "message": "Fridge too warm",
                    "severity": "critical",
                    "target": ["ops_webhook", "driver_sms", "ops_telegram", "pager"],
                },
            )
        )
        # this server answers telegram with a plain "ok", which is no Bot API reply
        statuses = {name: item["status"] for name, item in results[-1]["targets"].items()}
        assert statuses == {
            "ops_webhook": "sent",
            "driver_sms": "sent",
            "ops_telegram": "dead_lettered",
            "pager": "sent",
        }
        assert hub.data["acme_pages"] == [(42, "critical", "Fridge too warm")]
        by_path = {request.path: request for request in http_server.requests}
        hook = by_path[f"/hooks/{SECRETS['hook_path_token']}"]
        assert str(hook.header("X-VendHub-Signature")).startswith("sha256=")
        assert by_path["/sms/send"].header("Authorization") == SECRETS["sms_auth"]
        assert f"/bot{SECRETS['telegram_token']}/sendMessage" in by_path

        # failures: the webhook answers 500 until it is dead-lettered, the plugin refuses
        http_server.default = status(500, "down")
        failed_before = len(failed)
        results.append(
            await hub.services.async_call(
                "notify", "send", {"message": "Door open", "target": "ops_webhook"}
            )
        )
        await wait_until(lambda: len(failed) > failed_before)
        results.append(
            await hub.services.async_call(
                "notify", "send", {"message": "x", "target": "pager", "data": {"fail": True}}
            )
        )
        assert results[-1]["targets"]["pager"]["error"] == "pager refused key **REDACTED**"

        # a target whose options the plugin's schema refuses is reported, not hidden
        with pytest.raises(InvalidServiceData) as caught:
            await hub.services.async_call(
                "notify", "send", {"message": "x", "target": "broken_pager"}
            )
        assert "'broken_pager' is configured but could not be set up: invalid options" in str(
            caught.value
        )
        assert "pager_id" in str(caught.value)
        results.append(await hub.services.async_call("notify", "dead_letters", {}))
        assert len(results[-1]["dead_letters"]) == 3
    finally:
        await hub.async_stop()

    shown = caplog.text + json.dumps(results, default=str)
    events = [event.as_dict() for event in (*sent, *failed, *calls)]
    assert len(sent) == 4 and len(failed) == 3
    shown += json.dumps(events, default=str)
    assert "Broken notify target" not in shown
    assert "Notify target broken_pager (platform acme_pager) is disabled" in caplog.text
    for name, value in all_secrets(http_server.url).items():
        if name == "smtp_user":
            continue  # a login name is not a secret to aiosmtpd's own debug log
        assert value not in shown, f"secret {name} leaked"
    assert "**REDACTED**" in caplog.text
    stored = json.loads((tmp_path / ".storage" / "notify.dead_letters").read_text())
    assert len(stored["data"]["dead_letters"]) == 3
    assert SECRETS["pager_key"] not in json.dumps(stored)


async def test_config_errors_point_at_file_and_line(tmp_path: Path) -> None:
    write_folder(
        tmp_path,
        """
        notify:
          targets:
            - name: ops_email
              platform: smtp
              host: 127.0.0.1
              sender: vendhub@example.com
              recipients: driver@example.com
              starttls: true
              tls: true
            - name: ops_push
              platform: ntfi
              topic: alerts
            - name: ops_email
              platform: webhook
              url: https://example.com/hook
              secrets: x
          default_targets: [ops_mail]
        """,
        {},
    )

    prepared = prepare(tmp_path)

    messages = sorted(str(issue) for issue in prepared.issues)
    assert messages == [
        "configuration.yaml:11: [notify > targets > 1 > platform] unknown notify platform, "
        "got 'ntfi'; did you mean 'ntfy'? (built in: smtp, webhook, sms, telegram, ntfy, log)",
        "configuration.yaml:16: [notify > targets > 2] unknown key 'secrets', did you mean "
        "'secret'?",
        "configuration.yaml:9: [notify > targets > 0 > tls] got both 'tls: true' and "
        "'starttls: true'; use tls for implicit TLS (usually port 465) or starttls (usually "
        "port 587), not both",
    ]


def test_cross_checks() -> None:
    target = {"name": "a", "platform": "webhook", "url": "https://example.com/h"}
    with pytest.raises(vol.Invalid) as caught:
        CONFIG_SCHEMA({"targets": [target, dict(target)]})
    assert caught.value.path == ["targets", 1, "name"]
    assert "target name 'a' is used twice" in str(caught.value)

    with pytest.raises(vol.Invalid) as caught:
        CONFIG_SCHEMA({"targets": [target], "default_targets": ["a", "b"]})
    assert caught.value.path == ["default_targets", 1]
    assert "unknown notify target 'b'; known targets: a" in str(caught.value)

    config = CONFIG_SCHEMA(
        {
            "targets": [target],
            "dedupe_window": "10min",
            "rate_limit": {"count": 10, "period": "1min"},
            "retry": {"attempts": 5, "first_delay": "2s", "max_delay": "5min"},
            "dead_letter_after": 5,
        }
    )
    assert config["dedupe_window"].total_seconds() == 600
    assert config["rate_limit"]["period"].total_seconds() == 60
    assert config["retry"]["max_delay"].total_seconds() == 300
    assert config["default_targets"] == ["a"]


async def test_stopping_the_hub_unloads_notify(tmp_path: Path, http_server: HttpReceiver) -> None:
    write_folder(
        tmp_path,
        f"""
        notify:
          targets:
            - name: ops
              platform: webhook
              url: {http_server.url}/ops
        """,
        {},
    )
    hub, report = await async_start_hub(prepare(tmp_path))
    assert report.loaded == ["notify"]
    runtime = hub.data["notify"]
    assert hub.services.has_service("notify", "send")

    await hub.async_stop()

    assert runtime.session.closed
    assert "notify" not in hub.data
    assert not hub.services.has_service("notify", "send")


async def test_setup_from_a_config_built_in_code(hub: Hub) -> None:
    """Calling the hooks with a config built in code (no !secret marks) still redacts the
    platforms' secret options."""
    from vendhub_integrations.notify import vendhub_config_schema, vendhub_setup, vendhub_unload

    config = vendhub_config_schema()(
        {"targets": [{"name": "x", "platform": "ntfy", "topic": "t", "token": "tok-123456"}]}
    )
    assert config["secret_values"] == []
    assert await vendhub_setup(hub=hub, config=config) is True
    runtime = hub.data["notify"]
    assert runtime.redact("token tok-123456") == "token **REDACTED**"
    await vendhub_unload(hub=hub)
    assert runtime.session.closed
