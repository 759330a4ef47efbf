"""The base class of notify platforms: one configured target sends through one instance."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from vendhub.notify.models import DeliveryError
from vendhub.notify.redact import url_secrets

if TYPE_CHECKING:
    import aiohttp

    from vendhub.core.hub import Hub
    from vendhub.notify.models import Notification


@dataclass(frozen=True, slots=True)
class PlatformRuntime:
    """What every platform instance shares: the hub, one HTTP session, the attempt timeout."""

    hub: Hub
    session: aiohttp.ClientSession
    timeout: float


class NotifyPlatform:
    """Sends notifications to one configured target (``ops_email``, ``driver_sms``, ...).

    Subclasses set ``platform`` (the name used in ``platform:``), ``OPTIONS`` (voluptuous
    keys of the target besides ``name`` and ``platform``), ``SECRET_OPTIONS`` (options whose
    values must never be shown; for a mapping option, its values) and implement
    ``async_send``. ``async_send`` returns when the message was accepted and raises
    ``DeliveryError(retryable=...)`` when it was not; the dispatcher does the retrying,
    de-duplication and rate limiting. Plugins provide more platforms through the
    ``vendhub_notify_platform`` hook.
    """

    platform: ClassVar[str] = ""
    OPTIONS: ClassVar[Mapping[Any, Any]] = {}
    SECRET_OPTIONS: ClassVar[tuple[str, ...]] = ()
    URL_OPTIONS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, runtime: PlatformRuntime, name: str, config: Mapping[str, Any]) -> None:
        self.runtime = runtime
        self.name = name
        self.config = config

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Checks across options after the schema (raise ``vol.Invalid`` with a ``path``)."""
        return config

    @property
    def hub(self) -> Hub:
        return self.runtime.hub

    @property
    def session(self) -> aiohttp.ClientSession:
        return self.runtime.session

    @property
    def timeout(self) -> float:
        return self.runtime.timeout

    def secret_values(self) -> Iterable[str]:
        """Every value of this target that logs, events and results must not show."""
        for option in self.SECRET_OPTIONS:
            value = self.config.get(option)
            if isinstance(value, Mapping):
                yield from (str(item) for item in value.values() if item is not None)
            elif isinstance(value, list | tuple):
                yield from (str(item) for item in value if item is not None)
            elif value is not None:
                yield str(value)
        for option in self.URL_OPTIONS:
            if isinstance(self.config.get(option), str):
                yield from url_secrets(self.config[option])

    def describe(self) -> str:
        """A short description for logs, free of secrets (``smtp 127.0.0.1:587``)."""
        return self.platform

    async def async_send(self, notification: Notification) -> None:
        """Deliver ``notification``; raise ``DeliveryError`` when that fails."""
        raise NotImplementedError

    async def async_check(self) -> str | None:
        """A problem that makes every delivery fail, found without sending anything (a server
        that cannot be reached); None when none was found. Run once, in the background, when
        the targets are built; a problem is logged as a warning."""
        return None

    async def async_close(self) -> None:
        """Release what the instance holds; called when the integration unloads."""


async def async_send_each(
    notification: Notification,
    recipients: Iterable[str],
    send_one: Callable[[str], Awaitable[None]],
) -> None:
    """Send to each recipient an earlier attempt did not reach, in order.

    A failure is re-raised with ``delivered`` naming everyone reached so far (now or
    before), so the retry continues where this attempt stopped.
    """
    delivered = set(notification.skip_recipients)
    for recipient in recipients:
        if recipient in delivered:
            continue
        try:
            await send_one(recipient)
        except DeliveryError as error:
            error.delivered = frozenset(delivered)
            raise
        delivered.add(recipient)
