"""Push notifications through ntfy: ``POST {server}/{topic}`` with the message as body."""

from __future__ import annotations

import base64
from email.header import Header
from typing import Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.notify.const import SEVERITY_CRITICAL, SEVERITY_INFO, SEVERITY_WARNING
from vendhub.notify.http import async_request, raise_for_status
from vendhub.notify.models import DeliveryError, Notification
from vendhub.notify.platform import NotifyPlatform

PRIORITY_BY_SEVERITY = {SEVERITY_INFO: 3, SEVERITY_WARNING: 4, SEVERITY_CRITICAL: 5}
TAG_BY_SEVERITY = {SEVERITY_WARNING: "warning", SEVERITY_CRITICAL: "rotating_light"}
_PRIORITY_NAMES = {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5, "urgent": 5}
# data key -> ntfy header, passed through as given
_HEADERS_FROM_DATA = {
    "click": "Click",
    "icon": "Icon",
    "attach": "Attach",
    "filename": "Filename",
    "actions": "Actions",
    "delay": "Delay",
    "email": "Email",
}


def header_text(text: str) -> str:
    """Header-safe text: ASCII as is, anything else as an RFC 2047 word (ntfy decodes it)."""
    text = " ".join(text.split())
    if text.isascii():
        return text
    return Header(text, "utf-8").encode()


def priority(value: Any) -> int:
    """1-5, or min/low/default/high/max/urgent."""
    if isinstance(value, str) and value.strip().lower() in _PRIORITY_NAMES:
        return _PRIORITY_NAMES[value.strip().lower()]
    number = cv.integer(value)
    if not 1 <= number <= 5:
        raise vol.Invalid(f"an ntfy priority is 1 to 5 or min/low/default/high/max, got {value}")
    return number


class NtfyPlatform(NotifyPlatform):
    """Headers: ``Title`` (with the severity), ``Priority`` (info 3, warning 4, critical 5,
    or ``data.priority``), ``Tags`` (the severity's emoji tag and ``data.tags``), and
    ``Click``/``Icon``/``Attach``/``Actions``/``Delay``/``Email`` from ``data``.
    Access-protected topics take ``token`` (Bearer) or ``username`` and ``password``."""

    platform = "ntfy"
    OPTIONS = {
        vol.Optional("server", default="https://ntfy.sh"): vol.All(
            cv.url, lambda url: url.rstrip("/")
        ),
        vol.Required("topic"): vol.All(cv.string, vol.Match(r"^[-_A-Za-z0-9]{1,64}$")),
        vol.Optional("token"): cv.string,
        vol.Optional("username"): cv.string,
        vol.Optional("password"): cv.string,
        vol.Optional("tags", default=list): vol.All(cv.ensure_list, [cv.string]),
        vol.Optional("verify_tls", default=True): cv.boolean,
    }
    SECRET_OPTIONS = ("token", "password")

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        if "token" in config and ("username" in config or "password" in config):
            raise vol.Invalid("use either 'token' or 'username' and 'password'", ["token"])
        if ("username" in config) != ("password" in config):
            missing = "password" if "username" in config else "username"
            raise vol.Invalid(f"'{missing}' is needed as well", path=[missing])
        return config

    @property
    def url(self) -> str:
        return f"{self.config['server']}/{self.config['topic']}"

    def describe(self) -> str:
        return f"ntfy {self.url}"

    def build_headers(self, notification: Notification) -> dict[str, str]:
        """The ntfy headers for ``notification``."""
        data = notification.data
        headers: dict[str, str] = {"X-VendHub-Notification-Id": notification.id}
        if notification.prefixed_title:
            headers["Title"] = header_text(notification.prefixed_title)
        level = PRIORITY_BY_SEVERITY.get(notification.severity, 3)
        if "priority" in data:
            try:
                level = priority(data["priority"])
            except vol.Invalid as error:
                raise DeliveryError(f"data.priority: {error.msg}", retryable=False) from None
        headers["Priority"] = str(level)
        tags = [*self.config["tags"]]
        if notification.severity in TAG_BY_SEVERITY:
            tags.insert(0, TAG_BY_SEVERITY[notification.severity])
        extra = data.get("tags")
        tags.extend([extra] if isinstance(extra, str) else list(extra or []))
        if tags:
            headers["Tags"] = header_text(",".join(dict.fromkeys(str(tag) for tag in tags)))
        for key, header in _HEADERS_FROM_DATA.items():
            if data.get(key) is not None:
                headers[header] = header_text(str(data[key]))
        if data.get("markdown"):
            headers["Markdown"] = "yes"
        if self.config.get("token"):
            headers["Authorization"] = f"Bearer {self.config['token']}"
        elif self.config.get("username"):
            login = f"{self.config['username']}:{self.config['password']}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(login).decode('ascii')}"
        return headers

    async def async_send(self, notification: Notification) -> None:
        reply = await async_request(
            self.session,
            "POST",
            self.url,
            shown_url=self.url,
            timeout=self.timeout,
            data=notification.message.encode("utf-8"),
            headers=self.build_headers(notification),
            ssl=bool(self.config["verify_tls"]),
        )
        raise_for_status(reply, self.url)
