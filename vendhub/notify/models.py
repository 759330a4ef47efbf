"""What a notify platform is given (a Notification) and what it raises (DeliveryError)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from vendhub.core.context import Context, new_context_id
from vendhub.core.errors import VendHubError
from vendhub.notify.const import SEVERITY_INFO, SEVERITY_PREFIX
from vendhub.util.dt import utcnow
from vendhub.util.text import shorten

_SEQUENCE = itertools.count(1)


def new_notification_id() -> str:
    """An id unique across processes, ordered by creation within one."""
    return f"n{new_context_id()}{next(_SEQUENCE):x}"


def _frozen(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True, slots=True)
class Notification:
    """One message on its way to one target.

    ``target`` is the name of the target this copy is for; ``data`` holds platform extras
    (``html`` for email, ``tags`` for ntfy, ``parse_mode`` for telegram, ...).
    ``skip_recipients`` lists recipients an earlier attempt already reached, so a retry
    of a multi-recipient platform (sms, telegram) does not send them the message twice.
    """

    message: str
    title: str | None = None
    severity: str = SEVERITY_INFO
    data: Mapping[str, Any] = field(default_factory=dict)
    target: str = ""
    dedupe_key: str | None = None
    escalated: bool = False
    id: str = field(default_factory=new_notification_id)
    created: datetime = field(default_factory=utcnow)
    context: Context = field(default_factory=Context)
    skip_recipients: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _frozen(self.data))

    @property
    def prefixed_title(self) -> str | None:
        """The title with the severity in front (``[CRITICAL] Fridge too warm``)."""
        if not self.title:
            return None
        return f"{SEVERITY_PREFIX.get(self.severity, '')}{self.title}"

    @property
    def subject(self) -> str:
        """A one-line subject: the title, else the message's first line, with the severity."""
        first_line = next((line.strip() for line in self.message.splitlines() if line.strip()), "")
        text = shorten(self.title or first_line or "VendHub notification", 120)
        return f"{SEVERITY_PREFIX.get(self.severity, '')}{text}"

    @property
    def text(self) -> str:
        """The message with the (prefixed) title as its first line, for plain-text channels."""
        title = self.prefixed_title
        return f"{title}\n\n{self.message}" if title else self.message

    def as_payload(self) -> dict[str, Any]:
        """JSON-ready fields a receiver needs (used as the webhook body)."""
        return {
            "id": self.id,
            "target": self.target,
            "title": self.title,
            "message": self.message,
            "severity": self.severity,
            "data": dict(self.data),
            "dedupe_key": self.dedupe_key,
            "escalated": self.escalated,
            "created": self.created.isoformat(),
            "context_id": self.context.id,
        }


class DeliveryError(VendHubError):
    """A platform could not deliver a notification.

    ``retryable`` says whether trying again later may succeed (a timeout, a 503) or not (a
    refused login, a 400 for a bad chat id). ``retry_after`` is the delay the receiver asked
    for, in seconds, if it asked. ``delivered`` lists recipients that did get the message
    before the failure. The message must never contain a secret: the dispatcher redacts
    known secrets anyway, but a platform names hosts, never full URLs with tokens.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        delivered: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.delivered = delivered
