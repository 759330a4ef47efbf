"""The ``qr_gateway`` payment provider: a customer pays a vend by scanning a YooKassa QR code.

One instance serves one machine. ``async_authorize`` creates a two-stage payment
(``capture: false``, ``confirmation: {"type": "qr"}``, the vend session's id as the
``Idempotence-Key``), shows ``confirmation_data`` as the QR and waits until the payment leaves
``pending``: by notification (``webhook.py``), or by polling ``GET /payments/{id}`` every
``poll_interval`` in case a notification is lost. ``waiting_for_capture`` is the
authorization; ``canceled`` is the customer's decline. Capture, cancel and refund use their own
``Idempotence-Key`` (``<session>:capture``, ``<session>:cancel``,
``<session>:refund:<minor units>``), so the engine may repeat them after a restart.

A pending YooKassa payment cannot be cancelled through the API (only ``waiting_for_capture``
can). So when the authorize is cancelled (the customer walks away, the engine times out) the
provider cancels the payment if it is already paid, and otherwise keeps following it for
``release_watch``: if the customer pays after all, it is cancelled (or refunded) at once.

Such a release follow outlives a restart: before the call that started it returns (the
cancelled authorize, ``async_release_session``, ``async_void``) the payment id, the session id,
the amount and the wall-clock time it is followed until are written at once to the Store
``qr_gateway.<machine_id>.release_watches`` (kept by ``vendhub.vending.release_watches``).
``async_start`` resumes the stored follows whose time has not run out (fetching the payment at
once, then as a live follow: notifications and polls) and drops, with an INFO line, those that
ran out while the hub was down. An ended follow is removed with a delayed save; one still
running is never removed. A store that cannot be read is logged as an ERROR naming the file,
and the provider starts without it.

After a restart that cut an authorize off, ``async_release_session`` finds the session's
payment without knowing its id: the API cannot search payments by metadata, so it lists them
(``GET /payments``, newest first, 100 a page) by status and creation time and keeps those whose
``metadata.session_id`` is the session. Held (``waiting_for_capture``) and ``pending``
payments are searched over the last 7 days (YooKassa cancels a hold not captured by then);
``succeeded`` ones, which only a method without two-stage payments gives unasked, over
``release_lookback``. Re-POSTing the create with the same ``Idempotence-Key`` would return the
payment too, but only with the very same body (the product's name included) and within 24
hours, and it makes a new payment when the first never arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.util.dt import utcnow
from vendhub.vending.money import Money
from vendhub.vending.money import describe as describe_money
from vendhub.vending.payment import (
    Authorization,
    PaymentDeclined,
    PaymentError,
    PaymentMethod,
    PaymentProvider,
    PaymentRequest,
    PaymentStatus,
    ProgressCallback,
    check_within,
    session_of,
)
from vendhub.vending.release_watches import (
    ReleaseWatch,
    ReleaseWatchNotStored,
    ReleaseWatchStore,
)

from .amounts import AmountError, as_amount, from_amount, to_value
from .client import DEFAULT_API_URL, YooKassaClient, YooKassaError
from .webhook import (
    AMOUNT_MISMATCH,
    NOT_CONFIRMED,
    PAYMENT_EVENTS,
    URL_WEBHOOK,
    YOOKASSA_NETWORKS,
    get_webhooks,
    parse_networks,
)

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

PLATFORM = "qr_gateway"
DESCRIPTION_LIMIT = 128  # YooKassa's limit for a payment's description
HOLD_LOOKBACK = timedelta(days=7)  # YooKassa cancels a payment not captured within 7 days
LIST_PAGE = 100  # the most items one GET /payments returns
LIST_PAGES = 100  # pages searched per status before giving up (10,000 payments)

PENDING = "pending"
WAITING_FOR_CAPTURE = "waiting_for_capture"
SUCCEEDED = "succeeded"
CANCELED = "canceled"

# cancellation_details.reason → the kiosk's decline reason
_DECLINE_REASONS = {
    "expired_on_confirmation": "expired",
    "expired_on_capture": "expired",
    "insufficient_funds": "insufficient_funds",
    "canceled_by_merchant": "cancelled",
}


def _seconds(value: Any) -> float:
    seconds = cv.time_period(value).total_seconds()
    if seconds <= 0:
        raise vol.Invalid(f"expected a positive duration, got {value!r}")
    return seconds


def _networks(value: Any) -> list[str]:
    values = [str(item) for item in cv.ensure_list(value)]
    try:
        parse_networks(values)
    except ValueError as error:
        raise vol.Invalid(str(error)) from None
    return values


@dataclass(slots=True)
class _Follow:
    """A payment the provider waits on: the latest checked object and a wake-up."""

    payment_id: str
    session_id: str
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    payment: dict[str, Any] | None = None


class QrGatewayProvider(PaymentProvider):
    """YooKassa payments by QR code for one machine."""

    platform: ClassVar[str] = PLATFORM
    methods: ClassVar[frozenset[PaymentMethod]] = frozenset({PaymentMethod.qr})
    OPTIONS: ClassVar[Mapping[Any, Any]] = {
        vol.Required("shop_id"): cv.string,
        vol.Required("secret_key"): cv.string,
        vol.Optional("api_url", default=DEFAULT_API_URL): cv.url,
        vol.Optional("poll_interval", default=5): _seconds,
        vol.Optional("request_timeout", default=10): _seconds,
        vol.Optional("release_watch", default="1h"): _seconds,
        vol.Optional("release_lookback", default="1d"): _seconds,
        vol.Optional("allowed_sources", default=list(YOOKASSA_NETWORKS)): _networks,
        vol.Optional("trusted_proxies", default=list): _networks,
    }
    SECRET_OPTIONS: ClassVar[tuple[str, ...]] = ("secret_key",)

    def __init__(self, hub: Hub, machine_id: str, options: Mapping[str, Any]) -> None:
        super().__init__(hub, machine_id, options)
        self.client = YooKassaClient(
            options.get("api_url", DEFAULT_API_URL),
            str(options["shop_id"]),
            str(options["secret_key"]),
            timeout=float(options.get("request_timeout", 10)),
        )
        self.request_timeout = float(options.get("request_timeout", 10))
        self.poll_interval = float(options.get("poll_interval", 5))
        self.release_watch = float(options.get("release_watch", 3600))
        self.release_lookback = float(options.get("release_lookback", 86400))
        self.allowed_sources = parse_networks(options.get("allowed_sources", YOOKASSA_NETWORKS))
        self.trusted_proxies = parse_networks(options.get("trusted_proxies", ()))
        self.webhooks = get_webhooks(hub)
        self.webhooks_served = False
        self.statuses: dict[str, str] = {}
        """Payment id → the last status fetched and checked from the gateway."""
        self._amounts: dict[str, Money] = {}
        """Payment id → the amount it is for (what was asked, then what was captured)."""
        self._refunds: dict[str, Money] = {}
        self._follows: dict[str, _Follow] = {}
        self._releases: dict[str, asyncio.Task[None]] = {}
        """Payment id → the task following it until it can be released."""
        self._watch_store = ReleaseWatchStore(hub, PLATFORM, machine_id)
        """The release follows, kept on disk until they end."""
        self._mismatch_logged: set[str] = set()

    def __repr__(self) -> str:
        return f"<QrGatewayProvider machine={self.machine_id}>"

    # ---- lifecycle --------------------------------------------------------------------

    async def async_start(self) -> None:
        self.client.open()
        self.webhooks_served = self.webhooks.attach(self)
        if self.webhooks_served:
            _LOGGER.info(
                "%s: YooKassa notifications are taken at %s; set it in the shop's settings",
                self.machine_id,
                URL_WEBHOOK,
            )
        else:
            _LOGGER.info(
                "%s: no HTTP server, so no YooKassa notifications: polling every %s s",
                self.machine_id,
                self.poll_interval,
            )
        await self._async_resume_release_watches()

    async def async_stop(self) -> None:
        self.webhooks.detach(self)
        # Stopped, not ended: the stored follows stay for the next start.
        following = list(self._releases.values())
        for task in following:
            task.cancel()
        for task in following:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._watch_store.async_flush()
        await self.client.async_close()

    # ---- what the webhook asks ----------------------------------------------------------

    def owns(self, payment_id: str) -> bool:
        return payment_id in self._amounts

    def expected_amount(self, event: str, obj: dict[str, Any]) -> Money | None:
        if event in PAYMENT_EVENTS:
            return self._amounts.get(obj["id"])
        return self._refunds.get(obj["id"])

    async def async_handle_notification(self, event: str, obj: dict[str, Any]) -> str | None:
        if event in PAYMENT_EVENTS:
            reason = await self._async_refresh(obj["id"], "notification")
            announced = event.removeprefix("payment.")
            if reason is None and self.statuses.get(obj["id"]) != announced:
                self.webhooks.reject(
                    NOT_CONFIRMED,
                    f"{event} for {obj['id']}, but the gateway says it is "
                    f"{self.statuses.get(obj['id'])}",
                    level=logging.INFO,
                )
                return NOT_CONFIRMED
            return reason
        refund = await self.client.async_get_refund(obj["id"])
        if refund.get("payment_id") != obj.get("payment_id"):
            self.webhooks.reject(
                AMOUNT_MISMATCH, f"refund {obj['id']} is not of payment {obj.get('payment_id')}"
            )
            return AMOUNT_MISMATCH
        expected = self._refunds.get(obj["id"])
        if expected is not None and _money(refund.get("amount")) != expected:
            self.webhooks.reject(AMOUNT_MISMATCH, f"refund {obj['id']} is for another amount")
            return AMOUNT_MISMATCH
        _LOGGER.info(
            "%s: refund %s of payment %s is %s",
            self.machine_id,
            obj["id"],
            obj.get("payment_id"),
            refund.get("status"),
        )
        return None

    async def _async_refresh(self, payment_id: str, origin: str) -> str | None:
        """Fetch the payment and, if it is what was asked, hand it to whoever waits on it."""
        payment = await self.client.async_get_payment(payment_id)
        reason = self._check(payment, payment_id, origin)
        if reason is not None:
            return reason
        self.statuses[payment_id] = payment["status"]
        follow = self._follows.get(payment_id)
        if follow is not None:
            follow.payment = payment
            follow.changed.set()
        return None

    def _check(self, payment: dict[str, Any], payment_id: str, origin: str) -> str | None:
        expected = self._amounts.get(payment_id)
        amount = _money(payment.get("amount"))
        if payment.get("id") == payment_id and amount == expected:
            return None
        # A stuck mismatch would be seen at every poll: say it loudly once.
        level = logging.WARNING if payment_id not in self._mismatch_logged else logging.DEBUG
        self._mismatch_logged.add(payment_id)
        self.webhooks.reject(
            AMOUNT_MISMATCH,
            f"{origin}: payment {payment_id} at the gateway is "
            f"{describe_money(amount)}, {describe_money(expected)} was asked; it is not trusted",
            level=level,
        )
        return AMOUNT_MISMATCH

    # ---- authorize --------------------------------------------------------------------

    async def async_authorize(
        self, request: PaymentRequest, progress: ProgressCallback
    ) -> Authorization:
        body = {
            "amount": as_amount(request.amount),
            "capture": False,
            "confirmation": {"type": "qr"},
            "description": (request.description or request.item)[:DESCRIPTION_LIMIT],
            "metadata": {
                "session_id": request.session_id,
                "machine_id": request.machine_id,
                "item": request.item,
            },
        }
        follow: _Follow | None = None
        try:
            payment = await self.client.async_create_payment(body, request.session_id)
            follow = self._adopt(payment, request.session_id, request.amount)
            self._follows[follow.payment_id] = follow
            confirmation = payment.get("confirmation")
            qr = confirmation.get("confirmation_data") if isinstance(confirmation, dict) else None
            if not isinstance(qr, str) or not qr:
                raise PaymentError(f"YooKassa payment {follow.payment_id} came without a QR code")
            progress({"step": "scan_qr", "qr": qr})
            payment = await self._async_wait(follow)
            return self._outcome(payment, request)
        except asyncio.CancelledError:
            await self._async_release_cancelled(follow, body, request)
            raise
        finally:
            if follow is not None and self._follows.get(follow.payment_id) is follow:
                del self._follows[follow.payment_id]

    def _adopt(self, payment: dict[str, Any], session_id: str, amount: Money) -> _Follow:
        payment_id = payment.get("id")
        if not isinstance(payment_id, str) or not payment_id:
            raise PaymentError("YooKassa created a payment without an id")
        self._amounts[payment_id] = amount
        if self._check(payment, payment_id, "created payment") is not None:
            raise PaymentError(
                f"YooKassa created payment {payment_id} for another amount than {to_value(amount)}"
            )
        self.statuses[payment_id] = str(payment.get("status"))
        return _Follow(payment_id, session_id, payment=payment)

    async def _async_wait(self, follow: _Follow) -> dict[str, Any]:
        """Wait until the payment leaves ``pending``: a notification wakes this up; without
        one the payment is fetched every ``poll_interval``."""
        while True:
            follow.changed.clear()
            payment = follow.payment
            if payment is not None and payment.get("status") != PENDING:
                return payment
            try:
                async with asyncio.timeout(self.poll_interval):
                    await follow.changed.wait()
                continue
            except TimeoutError:
                pass
            await self._async_poll(follow)

    async def _async_poll(self, follow: _Follow) -> None:
        try:
            await self._async_refresh(follow.payment_id, "poll")
        except PaymentError as error:
            _LOGGER.warning(
                "%s: cannot poll payment %s (%s); trying again in %s s",
                self.machine_id,
                follow.payment_id,
                error,
                self.poll_interval,
            )

    def _outcome(self, payment: dict[str, Any], request: PaymentRequest) -> Authorization:
        status = payment.get("status")
        method = payment.get("payment_method")
        details: dict[str, Any] = {
            "session_id": request.session_id,
            "payment_id": payment["id"],
            "payment_method": method.get("type") if isinstance(method, dict) else None,
            "test": bool(payment.get("test", False)),
        }
        if status in (WAITING_FOR_CAPTURE, SUCCEEDED):
            if status == SUCCEEDED:
                details["captured"] = True  # taken already: capture has nothing left to do
            return Authorization(
                provider=PLATFORM,
                method=request.method,
                reference=payment["id"],
                amount=request.amount,
                details=details,
            )
        if status == CANCELED:
            cancellation = payment.get("cancellation_details")
            cancellation = cancellation if isinstance(cancellation, dict) else {}
            gateway_reason = str(cancellation.get("reason", "unknown"))[:64]
            raise PaymentDeclined(
                _DECLINE_REASONS.get(gateway_reason, "declined"),
                f"YooKassa canceled payment {payment['id']}: "
                f"{str(cancellation.get('party', 'unknown'))[:32]}/{gateway_reason}",
            )
        raise PaymentError(f"YooKassa payment {payment['id']} has an unknown status {status!r}")

    # ---- leaving nothing charged --------------------------------------------------------

    async def _async_release_cancelled(
        self, follow: _Follow | None, body: dict[str, Any], request: PaymentRequest
    ) -> None:
        """The authorize was cancelled: cancel the payment, or follow it until it can be."""
        try:
            async with asyncio.timeout(2 * self.request_timeout):
                if follow is None:
                    # Cancelled before the create answered: the same Idempotence-Key returns
                    # the payment if it was made (and makes a pending one that expires if not).
                    payment = await self.client.async_create_payment(body, request.session_id)
                    follow = self._adopt(payment, request.session_id, request.amount)
                payment = await self.client.async_get_payment(follow.payment_id)
                if await self._async_release(payment, follow.session_id):
                    return
        except (PaymentError, TimeoutError) as error:
            _LOGGER.warning(
                "%s: could not release the payment of cancelled session %s now (%s); following it",
                self.machine_id,
                request.session_id,
                error,
            )
            if follow is None:
                _LOGGER.error(
                    "%s: the payment of cancelled session %s is unknown: check the shop's "
                    "payments with metadata.session_id = %s",
                    self.machine_id,
                    request.session_id,
                    request.session_id,
                )
                return
        try:
            await self._async_follow_release(
                follow.payment_id, follow.session_id, self._amounts[follow.payment_id]
            )
        except PaymentError as error:
            _LOGGER.error(
                "%s: %s; if the hub restarts before then, check payment %s at YooKassa by hand",
                self.machine_id,
                error,
                follow.payment_id,
            )

    async def _async_follow_release(self, payment_id: str, session_id: str, amount: Money) -> None:
        """Follow a pending payment for ``release_watch`` and cancel it if it is paid; stored
        before this returns, so a restart resumes it. PaymentError if it could not be stored
        (it is followed until the hub stops all the same)."""
        if payment_id in self._releases:
            return  # followed already: a repeated release
        watch = ReleaseWatch(
            payment_id, session_id, amount, utcnow() + timedelta(seconds=self.release_watch)
        )
        self._start_release_follow(watch, look_now=False)
        _LOGGER.info(
            "%s: payment %s of cancelled session %s is still pending at YooKassa (it cannot be "
            "cancelled before it is paid); following it for %s s to cancel it if it is paid",
            self.machine_id,
            payment_id,
            session_id,
            self.release_watch,
        )
        try:
            await self._watch_store.async_add(watch)
        except ReleaseWatchNotStored as error:
            raise PaymentError(f"{error}; it lasts until the hub stops") from error

    def _start_release_follow(self, watch: ReleaseWatch, *, look_now: bool) -> None:
        follow = _Follow(watch.reference, watch.session_id)
        self._follows[watch.reference] = follow
        task = self.hub.async_create_background_task(
            self._async_watch_release(watch, follow, look_now=look_now),
            name=f"qr_gateway release {watch.reference}",
        )
        self._releases[watch.reference] = task
        task.add_done_callback(lambda done: self._release_task_done(watch.reference, done))

    def _release_task_done(self, payment_id: str, task: asyncio.Task[None]) -> None:
        if self._releases.get(payment_id) is task:
            del self._releases[payment_id]

    async def _async_watch_release(
        self, watch: ReleaseWatch, follow: _Follow, *, look_now: bool
    ) -> None:
        """Release the payment once it is paid; give up at ``watch.until``. A cancel (the
        provider stopping) keeps the stored follow for the next start."""
        try:
            async with asyncio.timeout(max(0.0, (watch.until - utcnow()).total_seconds())):
                if look_now:
                    await self._async_poll(follow)  # it may have been paid while nobody looked
                while True:
                    payment = await self._async_wait(follow)
                    try:
                        if await self._async_release(payment, watch.session_id):
                            break
                    except PaymentError as error:
                        _LOGGER.warning(
                            "%s: releasing payment %s failed (%s); trying again",
                            self.machine_id,
                            watch.reference,
                            error,
                        )
                        follow.payment = None
        except TimeoutError:
            _LOGGER.warning(
                "%s: payment %s of a cancelled session stayed pending until the end of its "
                "release_watch (%s); YooKassa cancels unpaid payments when they expire",
                self.machine_id,
                watch.reference,
                watch.until.isoformat(timespec="seconds"),
            )
        finally:
            if self._follows.get(watch.reference) is follow:
                del self._follows[watch.reference]
        self._watch_store.remove(watch)

    async def _async_resume_release_watches(self) -> None:
        """Go on following the stored payments whose ``release_watch`` has not run out."""
        stored = await self._watch_store.async_load()
        for watch in stored.ran_out:
            _LOGGER.info(
                "%s: no longer following payment %s of cancelled session %s: its "
                "release_watch ran out at %s while the hub was down; YooKassa cancels "
                "unpaid payments when they expire",
                self.machine_id,
                watch.reference,
                watch.session_id,
                watch.until.isoformat(timespec="seconds"),
            )
        for watch in stored.resume:
            if watch.reference in self._releases:
                continue
            self._amounts.setdefault(watch.reference, watch.amount)
            self._start_release_follow(watch, look_now=True)
            _LOGGER.info(
                "%s: following payment %s of cancelled session %s again after the restart, "
                "until %s, to cancel it if it is paid",
                self.machine_id,
                watch.reference,
                watch.session_id,
                watch.until.isoformat(timespec="seconds"),
            )

    async def _async_release(self, payment: dict[str, Any], session_id: str) -> bool:
        """Cancel (or refund) what ``payment`` holds; False while it is still pending."""
        payment_id = str(payment.get("id"))
        status = payment.get("status")
        if status == PENDING:
            return False
        if status == WAITING_FOR_CAPTURE:
            result = await self.client.async_cancel(payment_id, f"{session_id}:cancel")
            self.statuses[payment_id] = str(result.get("status"))
            _LOGGER.info("%s: cancelled payment %s at YooKassa", self.machine_id, payment_id)
        elif status == SUCCEEDED:
            amount = _money(payment.get("amount"))
            if amount is None:
                raise PaymentError(f"payment {payment_id} has no readable amount to refund")
            left = _unrefunded(payment, amount)
            if left.amount > 0:  # a follow resumed after a restart may find it refunded
                await self._async_refund(payment_id, session_id, left)
                _LOGGER.warning(
                    "%s: payment %s of a cancelled session was taken; refunded %s",
                    self.machine_id,
                    payment_id,
                    describe_money(left),
                )
        else:
            self.statuses[payment_id] = str(status)
        return True

    async def async_release_session(self, session_id: str, amount: Money) -> None:
        """Cancel (or refund) the payment an authorize cut off by a restart left; a pending
        one is followed for ``release_watch`` (stored before this returns) and cancelled if
        the customer pays."""
        unstored: PaymentError | None = None
        for payment in await self._async_find_payments(session_id):
            payment_id = str(payment["id"])
            # The gateway's own amount: whatever it holds for this session goes back.
            self._amounts[payment_id] = _money(payment.get("amount")) or amount
            status = payment.get("status")
            _LOGGER.warning(
                "%s: session %s was cut off by a restart while its payment %s was %s; releasing it",
                self.machine_id,
                session_id,
                payment_id,
                status,
            )
            if status == PENDING:
                try:
                    await self._async_follow_release(
                        payment_id, session_id, self._amounts[payment_id]
                    )
                except PaymentError as error:
                    unstored = error  # the others are released first; the engine tries again
            elif status == WAITING_FOR_CAPTURE:
                await self._async_cancel_held(payment_id, session_id)
            elif status == SUCCEEDED:
                left = _unrefunded(payment, self._amounts[payment_id])
                if left.amount > 0:
                    await self._async_refund(payment_id, session_id, left)
        if unstored is not None:
            raise unstored

    async def _async_find_payments(self, session_id: str) -> list[dict[str, Any]]:
        """The shop's payments whose ``metadata.session_id`` is ``session_id``."""
        now = datetime.now(UTC)
        searches = (
            (PENDING, HOLD_LOOKBACK),
            (WAITING_FOR_CAPTURE, HOLD_LOOKBACK),
            (SUCCEEDED, timedelta(seconds=self.release_lookback)),
        )
        found: dict[str, dict[str, Any]] = {}
        for status, lookback in searches:
            filters = {
                "status": status,
                "created_at.gte": _timestamp(now - lookback),
                "limit": str(LIST_PAGE),
            }
            for _ in range(LIST_PAGES):
                page = await self.client.async_list_payments(filters)
                items = page.get("items")
                if not isinstance(items, list):
                    raise PaymentError("YooKassa answered a payment list without items")
                for item in items:
                    metadata = item.get("metadata") if isinstance(item, dict) else None
                    if isinstance(metadata, dict) and metadata.get("session_id") == session_id:
                        found.setdefault(str(item.get("id")), item)
                cursor = page.get("next_cursor")
                if not isinstance(cursor, str) or not cursor:
                    break
                filters = {**filters, "cursor": cursor}
            else:
                raise PaymentError(
                    f"more than {LIST_PAGES * LIST_PAGE} {status} payments to search for "
                    f"session {session_id}; lower release_lookback or release it by hand"
                )
        return list(found.values())

    async def _async_cancel_held(self, payment_id: str, session_id: str) -> None:
        try:
            result = await self.client.async_cancel(payment_id, f"{session_id}:cancel")
        except YooKassaError as error:
            if error.status != 400:
                raise
            # It changed since it was listed: cancelled already, or captured.
            result = await self.client.async_get_payment(payment_id)
            if result.get("status") == SUCCEEDED:
                amount = _money(result.get("amount")) or self._amounts[payment_id]
                await self._async_refund(payment_id, session_id, amount)
                return
        status = str(result.get("status"))
        self.statuses[payment_id] = status
        if status != CANCELED:
            raise PaymentError(f"YooKassa payment {payment_id} is {status}; it was not cancelled")
        _LOGGER.info("%s: cancelled payment %s at YooKassa", self.machine_id, payment_id)

    # ---- capture, void, refund, status --------------------------------------------------

    async def async_capture(self, authorization: Authorization, amount: Money) -> None:
        payment_id = authorization.reference
        check_within(amount, authorization.amount, "capture")
        session_id = session_of(authorization)
        self._amounts.setdefault(payment_id, authorization.amount)
        if authorization.details.get("captured"):
            return
        try:
            payment = await self.client.async_capture(
                payment_id, as_amount(amount), f"{session_id}:capture"
            )
        except YooKassaError as error:
            if error.status != 400:
                raise
            # Captured before (the key's 24 hours are over) or no longer capturable.
            payment = await self.client.async_get_payment(payment_id)
        if payment.get("status") != SUCCEEDED or _money(payment.get("amount")) != amount:
            raise PaymentError(
                f"YooKassa did not capture payment {payment_id}: it is "
                f"{payment.get('status')} for {describe_money(_money(payment.get('amount')))}"
            )
        self._amounts[payment_id] = amount
        self.statuses[payment_id] = SUCCEEDED

    async def async_void(self, authorization: Authorization) -> None:
        payment_id = authorization.reference
        session_id = session_of(authorization)
        self._amounts.setdefault(payment_id, authorization.amount)
        try:
            payment = await self.client.async_cancel(payment_id, f"{session_id}:cancel")
        except YooKassaError as error:
            if error.status != 400:
                raise
            payment = await self.client.async_get_payment(payment_id)
        status = payment.get("status")
        if status == CANCELED:
            self.statuses[payment_id] = CANCELED
            return
        if status == SUCCEEDED and authorization.details.get("captured"):
            # Taken at authorization already: giving it back is the void.
            amount = _money(payment.get("amount")) or authorization.amount
            await self._async_refund(payment_id, session_id, amount)
            return
        if status == PENDING:
            await self._async_follow_release(payment_id, session_id, self._amounts[payment_id])
            return
        raise PaymentError(f"YooKassa payment {payment_id} is {status}; it cannot be voided")

    async def async_refund(self, authorization: Authorization, amount: Money) -> None:
        check_within(amount, authorization.amount, "refund")
        self._amounts.setdefault(authorization.reference, authorization.amount)
        await self._async_refund(authorization.reference, session_of(authorization), amount)

    async def _async_refund(self, payment_id: str, session_id: str, amount: Money) -> None:
        refund = await self.client.async_create_refund(
            payment_id,
            as_amount(amount),
            f"{session_id}:refund:{amount.amount}",
            description=f"VendHub session {session_id}",
        )
        refund_id = refund.get("id")
        if isinstance(refund_id, str):
            self._refunds[refund_id] = amount
        if refund.get("status") == CANCELED:
            details = refund.get("cancellation_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            raise PaymentError(f"YooKassa canceled refund {refund_id}: {str(reason)[:64]}")
        if _money(refund.get("amount")) != amount:
            raise PaymentError(f"YooKassa refund {refund_id} is not for {describe_money(amount)}")

    async def async_status(self, authorization: Authorization) -> PaymentStatus:
        try:
            payment = await self.client.async_get_payment(authorization.reference)
        except YooKassaError as error:
            if error.status == 404:
                return PaymentStatus.unknown
            raise
        status = payment.get("status")
        self.statuses[authorization.reference] = str(status)
        if status == PENDING:
            return PaymentStatus.pending
        if status == WAITING_FOR_CAPTURE:
            return PaymentStatus.authorized
        if status == SUCCEEDED:
            refunded = _money(payment.get("refunded_amount"))
            amount = _money(payment.get("amount"))
            if refunded is not None and amount is not None and refunded.amount >= amount.amount:
                return PaymentStatus.refunded
            return PaymentStatus.captured
        if status == CANCELED:
            cancellation = payment.get("cancellation_details")
            party = cancellation.get("party") if isinstance(cancellation, dict) else None
            return PaymentStatus.voided if party == "merchant" else PaymentStatus.declined
        return PaymentStatus.unknown


def _timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as YooKassa writes ``created_at``."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _money(amount: Any) -> Money | None:
    try:
        return from_amount(amount)
    except AmountError:
        return None


def _unrefunded(payment: dict[str, Any], taken: Money) -> Money:
    """What of ``taken`` the payment's ``refunded_amount`` has not given back yet."""
    refunded = _money(payment.get("refunded_amount"))
    return Money(taken.amount - (refunded.amount if refunded is not None else 0), taken.currency)
