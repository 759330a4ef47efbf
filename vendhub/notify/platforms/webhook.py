"""A JSON POST to any URL, signed with HMAC-SHA256 when a secret is set."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.notify.http import async_request, raise_for_status
from vendhub.notify.models import Notification
from vendhub.notify.platform import NotifyPlatform
from vendhub.notify.redact import safe_url

SIGNATURE_HEADER = "X-VendHub-Signature"
ID_HEADER = "X-VendHub-Notification-Id"


def signature(secret: str, body: bytes) -> str:
    """The value of ``X-VendHub-Signature``: ``sha256=`` and the hex HMAC of the body."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookPlatform(NotifyPlatform):
    """POSTs the notification as JSON (see ``Notification.as_payload``).

    The body is signed: ``X-VendHub-Signature: sha256=<hex HMAC-SHA256 of the exact body
    bytes with the secret>``; ``X-VendHub-Notification-Id`` stays the same across retries so
    a receiver can drop repeats. 2xx is success; 5xx, 408, 425, 429 and network errors are
    retried; any other status is final.
    """

    platform = "webhook"
    OPTIONS = {
        vol.Required("url"): cv.url,
        vol.Optional("secret"): cv.string,
        vol.Optional("method", default="POST"): vol.All(
            cv.string, vol.Upper, vol.In(["POST", "PUT"])
        ),
        vol.Optional("headers", default=dict): {cv.string: cv.string},
        vol.Optional("verify_tls", default=True): cv.boolean,
    }
    SECRET_OPTIONS = ("secret", "headers")
    URL_OPTIONS = ("url",)

    def describe(self) -> str:
        return f"webhook {safe_url(self.config['url'])}"

    def build_body(self, notification: Notification) -> bytes:
        """The exact bytes sent (and signed)."""
        payload: dict[str, Any] = notification.as_payload()
        return json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")

    async def async_send(self, notification: Notification) -> None:
        body = self.build_body(notification)
        headers = {
            **self.config["headers"],
            "Content-Type": "application/json; charset=utf-8",
            ID_HEADER: notification.id,
        }
        if self.config.get("secret"):
            headers[SIGNATURE_HEADER] = signature(self.config["secret"], body)
        shown = safe_url(self.config["url"])
        reply = await async_request(
            self.session,
            self.config["method"],
            self.config["url"],
            shown_url=shown,
            timeout=self.timeout,
            data=body,
            headers=headers,
            ssl=bool(self.config["verify_tls"]),
        )
        raise_for_status(reply, shown)
