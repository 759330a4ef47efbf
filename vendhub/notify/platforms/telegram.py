"""Telegram through the Bot API: ``POST {api_url}/bot<token>/sendMessage`` per chat."""

from __future__ import annotations

import json
from typing import Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.notify.http import async_request, is_retryable_status
from vendhub.notify.models import DeliveryError, Notification
from vendhub.notify.platform import NotifyPlatform, async_send_each
from vendhub.util.text import shorten

MAX_TEXT = 4096
# Extras a notification's ``data`` may pass straight to sendMessage.
_PASSED_THROUGH = (
    "parse_mode",
    "disable_notification",
    "protect_content",
    "message_thread_id",
    "link_preview_options",
    "reply_markup",
)


def _chat_id(value: Any) -> int | str:
    """A numeric chat id (negative for groups) or a public ``@channelname``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = cv.string(value).strip()
    if text.startswith("@") and len(text) > 1:
        return text
    try:
        return int(text)
    except ValueError:
        raise vol.Invalid(
            f"expected a numeric chat id such as 123456 or -1001234567890, or '@channelname', "
            f"got {text!r}"
        ) from None


def _bot_token(value: Any) -> str:
    text = cv.string(value).strip()
    if ":" not in text or " " in text:
        raise vol.Invalid("expected a bot token as given by @BotFather ('123456:ABC-...')")
    return text


class TelegramPlatform(NotifyPlatform):
    """Sends the text (severity and title first) to every chat id.

    The Bot API answers ``{"ok": true, "result": {...}}`` or ``{"ok": false, "error_code":
    ..., "description": ...}``; 429 (with ``parameters.retry_after``) and 5xx are retried,
    other errors (a wrong chat id, a blocked bot, a bad token) are final. The request URL
    holds the token, so it is never logged: messages show ``/bot<token>/``.
    """

    platform = "telegram"
    OPTIONS = {
        vol.Required("token"): _bot_token,
        vol.Required("chat_ids"): vol.All(cv.ensure_list, vol.Length(min=1), [_chat_id]),
        vol.Optional("api_url", default="https://api.telegram.org"): vol.All(
            cv.url, lambda url: url.rstrip("/")
        ),
        vol.Optional("parse_mode"): cv.one_of("HTML", "MarkdownV2", "Markdown"),
        vol.Optional("verify_tls", default=True): cv.boolean,
    }
    SECRET_OPTIONS = ("token",)

    @property
    def shown_url(self) -> str:
        return f"{self.config['api_url']}/bot<token>/sendMessage"

    def describe(self) -> str:
        return f"telegram {self.config['api_url']}"

    def build_request(self, notification: Notification, chat_id: int | str) -> dict[str, Any]:
        """The sendMessage parameters for one chat."""
        text = shorten(notification.text, MAX_TEXT)
        request: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if self.config.get("parse_mode"):
            request["parse_mode"] = self.config["parse_mode"]
        for key in _PASSED_THROUGH:
            if key in notification.data:
                request[key] = notification.data[key]
        return request

    async def async_send(self, notification: Notification) -> None:
        chats = {str(chat_id): chat_id for chat_id in self.config["chat_ids"]}
        await async_send_each(
            notification,
            list(chats),
            lambda chat: self._async_send_one(notification, chats[chat]),
        )

    async def _async_send_one(self, notification: Notification, chat_id: int | str) -> None:
        url = f"{self.config['api_url']}/bot{self.config['token']}/sendMessage"
        reply = await async_request(
            self.session,
            "POST",
            url,
            shown_url=self.shown_url,
            timeout=self.timeout,
            json=self.build_request(notification, chat_id),
            ssl=bool(self.config["verify_tls"]),
        )
        try:
            answer = json.loads(reply.text)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("ok") is True:
            return
        if not isinstance(answer, dict):
            raise DeliveryError(
                f"{self.shown_url} answered HTTP {reply.status} without a Bot API reply",
                retryable=is_retryable_status(reply.status),
            )
        code = answer.get("error_code", reply.status)
        code = code if isinstance(code, int) else reply.status
        parameters = answer.get("parameters") or {}
        wait = parameters.get("retry_after") if isinstance(parameters, dict) else None
        raise DeliveryError(
            f"Telegram refused the message to chat {chat_id}: {code} "
            f"{answer.get('description', 'no description')}",
            retryable=is_retryable_status(code),
            retry_after=float(wait) if isinstance(wait, int | float) else None,
        )
