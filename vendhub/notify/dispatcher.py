"""The dispatcher: every notification passes de-duplication, the rate limit, delivery with
retries and backoff, the dead-letter list, and escalation, per target."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from vendhub.core.context import Context
from vendhub.notify.const import (
    EVENT_NOTIFY_ESCALATED,
    EVENT_NOTIFY_FAILED,
    EVENT_NOTIFY_SENT,
    SEVERITY_INFO,
)
from vendhub.notify.escalation import Escalation, EscalationScheduler
from vendhub.notify.limits import Deduplicator, RateLimiter, dedupe_key_of
from vendhub.notify.models import DeliveryError, Notification
from vendhub.notify.platform import NotifyPlatform
from vendhub.notify.redact import Redactor
from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.helpers.storage import Store

_LOGGER = logging.getLogger("vendhub.notify")

STATUS_SENT = "sent"
STATUS_DEDUPLICATED = "deduplicated"
STATUS_RATE_LIMITED = "rate_limited"
STATUS_QUEUED = "queued"
STATUS_DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """The delivery rules of the ``notify:`` block, in seconds."""

    dedupe_window: float = 600.0
    rate_count: int = 10
    rate_period: float = 60.0
    first_delay: float = 2.0
    max_delay: float = 300.0
    max_attempts: int = 5
    timeout: float = 10.0
    keep_dead_letters: int = 200

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DispatchSettings:
        """From the validated ``notify:`` block.

        A message is tried at most ``retry.attempts`` times and goes to the dead-letter list
        after ``dead_letter_after`` failed attempts, whichever comes first.
        """
        retry = config["retry"]
        attempts = config["dead_letter_after"]
        if retry.get("attempts"):
            attempts = min(attempts, retry["attempts"])
        return cls(
            dedupe_window=config["dedupe_window"].total_seconds(),
            rate_count=config["rate_limit"]["count"],
            rate_period=config["rate_limit"]["period"].total_seconds(),
            first_delay=retry["first_delay"].total_seconds(),
            max_delay=retry["max_delay"].total_seconds(),
            max_attempts=attempts,
            timeout=config["timeout"].total_seconds(),
            keep_dead_letters=config["keep_dead_letters"],
        )

    def backoff(self, failures: int, asked: float | None = None) -> float:
        """The wait before the next attempt after ``failures`` failed ones: ``first_delay``
        doubled each time, at least what the receiver ``asked`` for, at most ``max_delay``."""
        delay = self.first_delay * (2 ** max(0, failures - 1))
        if asked is not None:
            delay = max(delay, asked)
        return min(delay, self.max_delay)


@dataclass(slots=True)
class _Delivery:
    """One notification on its way to one target."""

    notification: Notification
    platform: NotifyPlatform
    dedupe: str
    attempts: int = 0
    first_attempt: datetime = field(default_factory=utcnow)
    last_error: str = ""


class NotifyDispatcher:
    """Sends notifications to named targets and keeps what could not be delivered.

    ``async_send`` returns after the first attempt at every target; retries run in tracked
    background tasks. Results, events and log lines pass through the redactor, so no
    configured secret appears in them.
    """

    def __init__(
        self,
        hub: Hub,
        targets: Mapping[str, NotifyPlatform],
        settings: DispatchSettings,
        *,
        redactor: Redactor | None = None,
        store: Store[dict[str, Any]] | None = None,
    ) -> None:
        self.hub = hub
        self.targets = dict(targets)
        self.settings = settings
        self.redact = redactor or Redactor()
        for platform in self.targets.values():
            self.redact.add(platform.secret_values())
        clock = hub.loop.time
        self.deduplicator = Deduplicator(settings.dedupe_window, clock)
        self.rate_limiter = RateLimiter(settings.rate_count, settings.rate_period, clock)
        self.escalations = EscalationScheduler(hub, self._async_escalate)
        self.dead_letters: list[dict[str, Any]] = []
        self._store = store
        self._retries: dict[asyncio.Task[None], _Delivery] = {}
        self._closed = False

    # ---- lifecycle ---------------------------------------------------------------------

    async def async_load(self) -> None:
        """Read the dead letters kept from earlier runs."""
        if self._store is None:
            return
        stored = await self._store.async_load()
        if stored:
            self.dead_letters = list(stored.get("dead_letters", []))
            if self.dead_letters:
                _LOGGER.warning(
                    "%d undelivered notifications are in the dead-letter list "
                    "(notify.dead_letters shows them, notify.resend_dead_letters retries)",
                    len(self.dead_letters),
                )

    async def async_shutdown(self) -> None:
        """Stop retries (their messages go to the dead-letter list), cancel escalations,
        save the list and close every platform."""
        self._closed = True
        cancelled = self.escalations.cancel_all()
        if cancelled:
            _LOGGER.warning("%d pending escalations were cancelled by the unload", cancelled)
        pending = list(self._retries.items())
        self._retries.clear()
        for task, _ in pending:
            task.cancel()
        for task, delivery in pending:
            await asyncio.gather(task, return_exceptions=True)
            self._dead_letter(
                delivery,
                f"still undelivered when notify was unloaded (last error: {delivery.last_error})",
                fire_event=False,
            )
        if self._store is not None:
            await self._store.async_flush()
        for name, platform in self.targets.items():
            try:
                await platform.async_close()
            except Exception as error:
                _LOGGER.warning("Closing target %s failed: %s", name, self.redact(error))

    @property
    def pending_retries(self) -> int:
        """Deliveries waiting for their next attempt."""
        return len(self._retries)

    # ---- sending -----------------------------------------------------------------------

    async def async_send(
        self,
        message: str,
        targets: Iterable[str],
        *,
        title: str | None = None,
        severity: str = SEVERITY_INFO,
        data: Mapping[str, Any] | None = None,
        dedupe_key: str | None = None,
        context: Context | None = None,
        escalate: Mapping[str, Any] | None = None,
        escalated: bool = False,
    ) -> dict[str, Any]:
        """Send ``message`` to every target in ``targets`` (names known to this dispatcher).

        Returns ``{"id": ..., "targets": {name: {"status": ..., ...}}, "escalation": ...}``
        where status is ``sent``, ``deduplicated``, ``rate_limited``, ``queued`` (it failed
        and will be retried) or ``dead_lettered``.
        """
        names = list(dict.fromkeys(targets))
        unknown = [name for name in names if name not in self.targets]
        if unknown:
            raise KeyError(f"unknown notify targets: {', '.join(unknown)}")
        base = Notification(
            message=message,
            title=title,
            severity=severity,
            data=data or {},
            dedupe_key=dedupe_key,
            escalated=escalated,
            context=context or Context(),
        )
        key = dedupe_key_of(dedupe_key, title, message)
        if escalated:  # not the same as the message it escalates, which went out just before
            key += "\x00escalated"
        results = await asyncio.gather(
            *(self._async_first_attempt(base, name, key) for name in names)
        )
        outcome: dict[str, Any] = {
            "id": base.id,
            "targets": dict(zip(names, results, strict=True)),
            "escalation": None,
        }
        if escalate:
            outcome["escalation"] = self._schedule_escalation(base, key, escalate)
        return outcome

    async def _async_first_attempt(
        self, base: Notification, name: str, key: str, *, check_dedupe: bool = True
    ) -> dict[str, Any]:
        if check_dedupe:
            suppressed = self.deduplicator.check(name, key)
            if suppressed is not None:
                _LOGGER.info(
                    "Notification %s to %s suppressed: the same message went there within "
                    "the last %g s (%d repeats suppressed)",
                    base.id,
                    name,
                    self.settings.dedupe_window,
                    suppressed,
                )
                return {"status": STATUS_DEDUPLICATED, "suppressed": suppressed}
        allowed, dropped = self.rate_limiter.acquire(name)
        if not allowed:
            if dropped == 1:
                _LOGGER.warning(
                    "Target %s is over its rate limit of %d messages per %g s; dropping "
                    "messages until it clears",
                    name,
                    self.settings.rate_count,
                    self.settings.rate_period,
                )
            else:
                _LOGGER.debug("Notification %s to %s dropped by the rate limit", base.id, name)
            return {"status": STATUS_RATE_LIMITED, "dropped": dropped}
        if dropped:
            _LOGGER.warning(
                "Target %s is below its rate limit again; %d messages were dropped",
                name,
                dropped,
            )
        self.deduplicator.remember(name, key)
        delivery = _Delivery(replace(base, target=name), self.targets[name], key)
        return await self._async_attempt(delivery, first=True)

    async def _async_attempt(self, delivery: _Delivery, *, first: bool) -> dict[str, Any]:
        """One attempt; on a retryable failure the next is scheduled in the background."""
        delivery.attempts += 1
        error = await self._async_try_send(delivery)
        if error is None:
            self._sent(delivery)
            return {"status": STATUS_SENT, "attempts": delivery.attempts}
        delivery.last_error = self.redact(error)
        if error.delivered:
            delivery.notification = replace(
                delivery.notification,
                skip_recipients=delivery.notification.skip_recipients | error.delivered,
            )
        if not error.retryable or delivery.attempts >= self.settings.max_attempts:
            self._dead_letter(delivery, delivery.last_error, retryable=error.retryable)
            return {
                "status": STATUS_DEAD_LETTERED,
                "attempts": delivery.attempts,
                "error": delivery.last_error,
            }
        if self._closed:
            self._dead_letter(delivery, f"notify is unloading (last error: {delivery.last_error})")
            return {
                "status": STATUS_DEAD_LETTERED,
                "attempts": delivery.attempts,
                "error": delivery.last_error,
            }
        delay = self.settings.backoff(delivery.attempts, error.retry_after)
        _LOGGER.warning(
            "Notification %s to %s failed (attempt %d of %d): %s; retrying in %.3g s",
            delivery.notification.id,
            delivery.notification.target,
            delivery.attempts,
            self.settings.max_attempts,
            delivery.last_error,
            delay,
        )
        if first:
            self._start_retries(delivery, delay)
        return {
            "status": STATUS_QUEUED,
            "attempts": delivery.attempts,
            "error": delivery.last_error,
            "retry_in": delay,
        }

    async def _async_try_send(self, delivery: _Delivery) -> DeliveryError | None:
        platform = delivery.platform
        # A platform bounds each request by ``timeout``; this bounds a whole attempt (several
        # recipients, or a plugin that forgot a timeout).
        limit = self.settings.timeout * 4
        try:
            async with asyncio.timeout(limit):
                await platform.async_send(delivery.notification)
        except DeliveryError as error:
            return error
        except TimeoutError:
            return DeliveryError(
                f"{platform.describe()} took longer than {limit:g} s", retryable=True
            )
        except Exception as error:
            _LOGGER.error(
                "Target %s (%s) raised %s instead of a DeliveryError (a bug in the platform): %s",
                delivery.notification.target,
                platform.describe(),
                type(error).__name__,
                self.redact(error),
            )
            return DeliveryError(f"{type(error).__name__}: {error}", retryable=False)
        return None

    def _start_retries(self, delivery: _Delivery, delay: float) -> None:
        task = self.hub.async_create_background_task(
            self._async_retry_loop(delivery, delay),
            name=f"notify retry {delivery.notification.id} to {delivery.notification.target}",
        )
        self._retries[task] = delivery
        task.add_done_callback(lambda done: self._retries.pop(done, None))

    async def _async_retry_loop(self, delivery: _Delivery, delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            if self._closed:
                return
            result = await self._async_attempt(delivery, first=False)
            if result["status"] != STATUS_QUEUED:
                return
            delay = result["retry_in"]

    def _sent(self, delivery: _Delivery) -> None:
        notification = delivery.notification
        if delivery.attempts > 1:
            _LOGGER.info(
                "Notification %s reached %s at attempt %d",
                notification.id,
                notification.target,
                delivery.attempts,
            )
        else:
            _LOGGER.debug("Notification %s sent to %s", notification.id, notification.target)
        self.hub.bus.async_fire(
            EVENT_NOTIFY_SENT,
            {**self._event_data(delivery), "attempts": delivery.attempts},
            context=notification.context,
        )

    def _dead_letter(
        self,
        delivery: _Delivery,
        error: str,
        *,
        retryable: bool = True,
        fire_event: bool = True,
    ) -> None:
        notification = delivery.notification
        self.deduplicator.forget(notification.target, delivery.dedupe)
        letter = {
            **self._event_data(delivery),
            "data": self._plain(dict(notification.data)),
            "dedupe_key": notification.dedupe_key,
            "attempts": delivery.attempts,
            "error": error,
            "first_attempt": delivery.first_attempt.isoformat(),
            "failed_at": utcnow().isoformat(),
            "skip_recipients": sorted(notification.skip_recipients),
        }
        self.dead_letters.append(letter)
        del self.dead_letters[: -self.settings.keep_dead_letters]
        self._save_dead_letters()
        _LOGGER.error(
            "Notification %s to %s failed for good after %d attempt%s: %s; "
            "it is kept in the dead-letter list",
            notification.id,
            notification.target,
            delivery.attempts,
            "" if delivery.attempts == 1 else "s",
            error,
        )
        if fire_event:
            self.hub.bus.async_fire(
                EVENT_NOTIFY_FAILED,
                {
                    **self._event_data(delivery),
                    "attempts": delivery.attempts,
                    "error": error,
                    "retryable": retryable,
                    "dead_lettered": True,
                },
                context=notification.context,
            )

    def _event_data(self, delivery: _Delivery) -> dict[str, Any]:
        notification = delivery.notification
        return {
            "id": notification.id,
            "target": notification.target,
            "platform": delivery.platform.platform,
            "title": self.redact(notification.title) if notification.title else None,
            "message": self.redact(notification.message),
            "severity": notification.severity,
            "escalated": notification.escalated,
        }

    def _plain(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(key): self._plain(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._plain(item) for item in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.redact(value)

    # ---- dead letters ------------------------------------------------------------------

    def _save_dead_letters(self) -> None:
        if self._store is not None:
            self._store.async_delay_save(lambda: {"dead_letters": list(self.dead_letters)}, 1.0)

    def take_dead_letters(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Remove and return the dead letters with ``ids`` (every one when None)."""
        wanted = None if ids is None else set(ids)
        taken = [letter for letter in self.dead_letters if wanted is None or letter["id"] in wanted]
        if taken:
            self.dead_letters = [letter for letter in self.dead_letters if letter not in taken]
            self._save_dead_letters()
        return taken

    async def async_resend_dead_letters(
        self, ids: Iterable[str] | None = None, context: Context | None = None
    ) -> dict[str, Any]:
        """Try the dead letters again (rate limit applies, de-duplication does not).

        Letters whose target no longer exists stay in the list. Returns the result per
        letter id and target.
        """
        results: dict[str, Any] = {}
        for letter in self.take_dead_letters(ids):
            name = letter["target"]
            platform = self.targets.get(name)
            if platform is None:
                self.dead_letters.append(letter)
                self._save_dead_letters()
                results[letter["id"]] = {
                    "target": name,
                    "status": STATUS_DEAD_LETTERED,
                    "error": f"target {name!r} is not configured any more",
                }
                continue
            notification = Notification(
                message=letter["message"],
                title=letter.get("title"),
                severity=letter.get("severity", SEVERITY_INFO),
                data=letter.get("data") or {},
                target=name,
                dedupe_key=letter.get("dedupe_key"),
                escalated=bool(letter.get("escalated")),
                id=letter["id"],
                context=context or Context(),
                skip_recipients=frozenset(letter.get("skip_recipients", ())),
            )
            key = dedupe_key_of(notification.dedupe_key, notification.title, notification.message)
            result = await self._async_first_attempt(notification, name, key, check_dedupe=False)
            results[letter["id"]] = {"target": name, **result}
        return results

    # ---- escalation --------------------------------------------------------------------

    def _schedule_escalation(
        self, base: Notification, key: str, escalate: Mapping[str, Any]
    ) -> dict[str, Any]:
        if self._closed:
            return {"status": "not_scheduled", "reason": "notify is unloading"}
        after = escalate["after"]
        if not isinstance(after, timedelta):
            after = timedelta(seconds=float(after))
        targets = list(dict.fromkeys(escalate["target"]))
        escalation, new = self.escalations.schedule(
            base,
            key=f"{key}\x00{','.join(targets)}",
            after=after,
            targets=targets,
            unless=escalate.get("unless"),
        )
        return {**escalation.as_dict(), "status": "scheduled" if new else "already_pending"}

    async def _async_escalate(self, escalation: Escalation) -> None:
        if self._closed:
            return
        original = escalation.notification
        result = await self.async_send(
            original.message,
            escalation.targets,
            title=original.title,
            severity=original.severity,
            data=original.data,
            dedupe_key=original.dedupe_key,
            context=original.context.child(),
            escalated=True,
        )
        self.hub.bus.async_fire(
            EVENT_NOTIFY_ESCALATED,
            {
                "escalation_id": escalation.id,
                "notification_id": original.id,
                "id": result["id"],
                "targets": result["targets"],
                "after": escalation.after.total_seconds(),
            },
            context=original.context,
        )
