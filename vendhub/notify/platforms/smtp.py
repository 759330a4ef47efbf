"""Email through an SMTP server (aiosmtplib): STARTTLS, implicit TLS, or a plain local relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib
import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.notify.models import DeliveryError, Notification
from vendhub.notify.platform import NotifyPlatform

_LOGGER = logging.getLogger(__name__)


def _email(value: Any) -> str:
    text = cv.string(value).strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or " " in text:
        raise vol.Invalid(f"expected an email address such as 'ops@example.com', got {text!r}")
    return text


class SmtpPlatform(NotifyPlatform):
    """One email per notification to every recipient; the subject carries the severity."""

    platform = "smtp"
    OPTIONS = {
        vol.Required("host"): cv.string,
        vol.Optional("port"): cv.port,
        vol.Optional("username"): cv.string,
        vol.Optional("password"): cv.string,
        vol.Required("sender"): _email,
        vol.Required("recipients"): vol.All(cv.ensure_list, vol.Length(min=1), [_email]),
        vol.Optional("starttls", default=False): cv.boolean,
        vol.Optional("tls", default=False): cv.boolean,
        vol.Optional("verify_tls", default=True): cv.boolean,
    }
    SECRET_OPTIONS = ("password",)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        if config["starttls"] and config["tls"]:
            raise vol.Invalid(
                "got both 'tls: true' and 'starttls: true'; use tls for implicit TLS "
                "(usually port 465) or starttls (usually port 587), not both",
                path=["tls"],
            )
        if ("username" in config) != ("password" in config):
            missing = "password" if "username" in config else "username"
            raise vol.Invalid(f"'{missing}' is needed as well for SMTP login", path=[missing])
        if "port" not in config:
            config["port"] = 465 if config["tls"] else 587 if config["starttls"] else 25
        return config

    def describe(self) -> str:
        return f"smtp {self.config['host']}:{self.config['port']}"

    def build_message(self, notification: Notification) -> EmailMessage:
        """The email for ``notification``: plain text, with an HTML part if data has ``html``."""
        message = EmailMessage()
        message["From"] = self.config["sender"]
        message["To"] = ", ".join(self.config["recipients"])
        message["Subject"] = notification.subject
        message["Date"] = formatdate(localtime=False)
        domain = self.config["sender"].rpartition("@")[2]
        message["Message-ID"] = make_msgid(idstring=notification.id, domain=domain)
        message["X-VendHub-Severity"] = notification.severity
        message["X-VendHub-Notification-Id"] = notification.id
        message.set_content(notification.message)
        html = notification.data.get("html")
        if isinstance(html, str) and html:
            message.add_alternative(html, subtype="html")
        return message

    async def async_check(self) -> str | None:
        """The SMTP server must at least take a connection (nothing is sent)."""
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.config["host"], self.config["port"]), self.timeout
            )
        except (OSError, TimeoutError) as error:
            reason = str(error) or type(error).__name__
            return f"{self.describe()} cannot be reached ({reason})"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None

    async def async_send(self, notification: Notification) -> None:
        config = self.config
        where = self.describe()
        try:
            refused, _ = await aiosmtplib.send(
                self.build_message(notification),
                hostname=config["host"],
                port=config["port"],
                username=config.get("username"),
                password=config.get("password"),
                use_tls=config["tls"],
                start_tls=config["starttls"],
                validate_certs=config["verify_tls"],
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as error:
            raise DeliveryError(
                f"{where} refused the login: {error.code} {error.message}", retryable=False
            ) from None
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refusal.code for refusal in error.recipients]
            raise DeliveryError(
                f"{where} refused every recipient: "
                + "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients),
                retryable=any(400 <= code < 500 for code in codes),
            ) from None
        except aiosmtplib.SMTPResponseException as error:
            raise DeliveryError(
                f"{where} answered {error.code} {error.message}",
                retryable=not 500 <= error.code < 600,
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise DeliveryError(
                f"{where}: {type(error).__name__}: {error}", retryable=True
            ) from None
        if refused:
            _LOGGER.warning(
                "Target %s: %s accepted the email but refused %s",
                self.name,
                where,
                ", ".join(f"{address} ({reply.code})" for address, reply in refused.items()),
            )
