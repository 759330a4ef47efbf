"""The ``crypto`` payment provider: a customer pays a vend with bitcoin through BTCPay Server.

One instance serves one machine (one BTCPay store). ``async_authorize`` creates an invoice in
the price's currency (``metadata.orderId`` = the vend session's id, so a repeated authorize
finds the invoice instead of making a second one), shows its ``checkoutLink`` as the QR and
waits for BTCPay's verdict, by webhook (``webhook.py``) or by polling ``GET`` every
``poll_interval`` in case a webhook is lost:

- ``Settled`` is the authorization. Settled crypto is taken: capture has nothing to do (a
  capture of less than was paid refunds the rest), and void or refund request a refund.
- ``Processing`` (paid, waiting for confirmations) shows ``{"step": "processing"}``.
- ``New`` with ``PaidPartial`` keeps waiting (the customer may send the rest) and shows
  ``{"step": "scan_qr", "qr": ..., "paid_partially": true}``.
- ``Expired`` declines (``expired``). If it was partly paid, a refund is due: the provider
  requests one (``refundVariant: RateThen``: what was paid, in the coin it was paid in),
  records it in ``refunds_due`` and shows ``{"step": "refund_claim", "url": <claim link>}``.
- ``Invalid`` declines (``declined``).
- ``Settled`` with ``PaidOver`` authorizes, and the excess is requested back
  (``refundVariant: OverpaidAmount``) and recorded the same way.

Refunds in BTCPay are pull payments: the customer claims them at their link with an address,
and the store approves the payout. Greenfield has no idempotence keys, so each refund's pull
payment carries a description ``vendhub:<session>:<what>`` and is looked for before another is
requested. A cancelled authorize marks an unpaid invoice ``Invalid``; one already paid is
refunded. ``async_release_session`` does the same after a restart that cut an authorize off,
finding the session's invoices by ``orderId`` (``GET /invoices?orderId=<session>``).

An invoice still confirming cannot be released yet, so it is *followed* (by webhook and by
poll, as an authorize waits) for ``release_watch`` and refunded once settled. Each follow is
saved (invoice, session, amount, the UTC time it ends, the store) to
``.storage/crypto.<machine>.release_watches`` (kept by ``vendhub.vending.release_watches``,
the store id as its scope) before the cancelled authorize re-raises and before
``async_release_session`` returns: the engine never counts as dealt with a payment that a
restart could forget. ``async_start`` resumes the saved follows whose time has not run out
(looking at the invoice at once) and drops the others with an ERROR naming the invoice to
check (as when a follow runs out while the hub is up), and those of another store too. A
follow leaves the file when it ends (released, or its time ran out), never when the provider
stops. A follow that cannot be saved still runs, with an ERROR;
``async_release_session`` then raises ``PaymentError``, so the engine tries the release again
at its next start. A file that cannot be read is logged at ERROR with its path, and the
provider starts without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.util.dt import utcnow
from vendhub.vending.money import AmountError, Money, from_decimal_text, to_decimal_text
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

from .client import BTCPayClient, BTCPayError
from .webhook import AMOUNT_MISMATCH, URL_WEBHOOK, get_webhooks

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

PLATFORM = "crypto"

NEW = "New"
PROCESSING = "Processing"
SETTLED = "Settled"
EXPIRED = "Expired"
INVALID = "Invalid"
PAID_PARTIAL = "PaidPartial"
PAID_OVER = "PaidOver"
SPEED_POLICIES = ("HighSpeed", "MediumSpeed", "LowMediumSpeed", "LowSpeed")


def _seconds(value: Any) -> float:
    seconds = cv.time_period(value).total_seconds()
    if seconds <= 0:
        raise vol.Invalid(f"expected a positive duration, got {value!r}")
    return seconds


@dataclass(slots=True)
class RefundDue:
    """Money a customer is owed back: requested at BTCPay (``pull_payment_id``) or not yet."""

    session_id: str
    invoice_id: str
    reason: str  # partial_payment, overpaid, cancelled, void, refund
    pull_payment_id: str | None = None
    claim_link: str | None = None
    problem: str | None = None


@dataclass(slots=True)
class _Follow:
    invoice_id: str
    session_id: str
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    invoice: dict[str, Any] | None = None


class CryptoProvider(PaymentProvider):
    """Bitcoin payments through one BTCPay Server store for one machine."""

    platform: ClassVar[str] = PLATFORM
    methods: ClassVar[frozenset[PaymentMethod]] = frozenset({PaymentMethod.crypto})
    OPTIONS: ClassVar[Mapping[Any, Any]] = {
        vol.Required("server_url"): cv.url,
        vol.Required("store_id"): cv.string,
        vol.Required("api_key"): cv.string,
        vol.Optional("webhook_secret"): cv.string,
        vol.Optional("poll_interval", default=5): _seconds,
        vol.Optional("request_timeout", default=10): _seconds,
        vol.Optional("expiration_minutes", default=15): vol.All(
            cv.positive_int, vol.Range(min=1, max=1440)
        ),
        vol.Optional("speed_policy", default="HighSpeed"): cv.one_of(*SPEED_POLICIES),
        vol.Optional("refund_payment_method", default="BTC"): cv.string,
        vol.Optional("release_watch", default="2h"): _seconds,
    }
    SECRET_OPTIONS: ClassVar[tuple[str, ...]] = ("api_key", "webhook_secret")

    def __init__(self, hub: Hub, machine_id: str, options: Mapping[str, Any]) -> None:
        super().__init__(hub, machine_id, options)
        self.store_id = str(options["store_id"])
        self.webhook_secret: str | None = options.get("webhook_secret")
        self.request_timeout = float(options.get("request_timeout", 10))
        self.client = BTCPayClient(
            str(options["server_url"]),
            self.store_id,
            str(options["api_key"]),
            timeout=self.request_timeout,
        )
        self.poll_interval = float(options.get("poll_interval", 5))
        self.release_watch = float(options.get("release_watch", 7200))
        self.expiration_minutes = int(options.get("expiration_minutes", 15))
        self.speed_policy = str(options.get("speed_policy", "HighSpeed"))
        self.refund_payment_method = str(options.get("refund_payment_method", "BTC"))
        self.webhooks = get_webhooks(hub)
        self.webhooks_served = False
        self.statuses: dict[str, str] = {}
        """Invoice id → the last status fetched and checked (``Settled/PaidOver``)."""
        self.refunds_due: list[RefundDue] = []
        self._invoices: dict[str, tuple[str, Money]] = {}  # invoice id → (session, amount)
        self._follows: dict[str, _Follow] = {}  # invoice id → its running authorize
        self._release_follows: dict[str, _Follow] = {}  # invoice id → its running release
        self._watch_store = ReleaseWatchStore(
            hub, PLATFORM, machine_id, scope=self.store_id, scope_name="BTCPay store"
        )
        self._release_lock = asyncio.Lock()  # one release at a time: refunds look, then ask
        self._releases: set[asyncio.Task[None]] = set()
        self._mismatch_logged: set[str] = set()

    def __repr__(self) -> str:
        return f"<CryptoProvider machine={self.machine_id} store={self.store_id}>"

    # ---- lifecycle --------------------------------------------------------------------

    async def async_start(self) -> None:
        self.client.open()
        if self.webhook_secret:
            self.webhooks_served = self.webhooks.attach(self)
        if self.webhooks_served:
            _LOGGER.info(
                "%s: BTCPay webhooks are taken at %s (store %s)",
                self.machine_id,
                URL_WEBHOOK,
                self.store_id,
            )
        else:
            _LOGGER.info(
                "%s: no %s, so no BTCPay webhooks: polling every %s s",
                self.machine_id,
                "webhook_secret" if not self.webhook_secret else "HTTP server",
                self.poll_interval,
            )
        await self._async_resume_release_watches()

    async def async_stop(self) -> None:
        self.webhooks.detach(self)
        for task in list(self._releases):
            task.cancel()
        for task in list(self._releases):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._watch_store.async_flush()
        await self.client.async_close()

    # ---- what the webhook asks ----------------------------------------------------------

    def owns(self, invoice_id: str) -> bool:
        return invoice_id in self._invoices

    async def async_handle_webhook(self, event: dict[str, Any]) -> str | None:
        return await self._async_refresh(str(event["invoiceId"]), f"webhook {event['type']}")

    async def _async_refresh(self, invoice_id: str, origin: str) -> str | None:
        invoice = await self.client.async_get_invoice(invoice_id)
        reason = self._check(invoice, invoice_id, origin)
        if reason is not None:
            return reason
        self.statuses[invoice_id] = _state(invoice)
        for follow in (self._follows.get(invoice_id), self._release_follows.get(invoice_id)):
            if follow is not None:
                follow.invoice = invoice
                follow.changed.set()
        return None

    def _check(self, invoice: dict[str, Any], invoice_id: str, origin: str) -> str | None:
        session_id, expected = self._invoices[invoice_id]
        amount = _money(invoice.get("amount"), invoice.get("currency"))
        metadata = invoice.get("metadata")
        order_id = metadata.get("orderId") if isinstance(metadata, dict) else None
        if invoice.get("id") == invoice_id and amount == expected and order_id == session_id:
            return None
        level = logging.WARNING if invoice_id not in self._mismatch_logged else logging.DEBUG
        self._mismatch_logged.add(invoice_id)
        self.webhooks.reject(
            AMOUNT_MISMATCH,
            f"{origin}: invoice {invoice_id} is {describe_money(amount)} for order "
            f"{str(order_id)[:64]}, {describe_money(expected)} for {session_id} was asked; "
            "it is not trusted",
            level=level,
        )
        return AMOUNT_MISMATCH

    # ---- authorize --------------------------------------------------------------------

    async def async_authorize(
        self, request: PaymentRequest, progress: ProgressCallback
    ) -> Authorization:
        follow: _Follow | None = None
        try:
            invoice = await self._async_invoice_for(request)
            follow = _Follow(str(invoice["id"]), request.session_id, invoice=invoice)
            self._follows[follow.invoice_id] = follow
            link = invoice.get("checkoutLink")
            if not isinstance(link, str) or not link:
                raise PaymentError(f"BTCPay invoice {follow.invoice_id} has no checkout link")
            progress({"step": "scan_qr", "qr": link})
            shown: tuple[str, str] = (NEW, "None")
            while True:
                state = _status(invoice)
                if state != shown:
                    shown = state
                    result = await self._async_decide(invoice, request, progress, link)
                    if result is not None:
                        return result
                invoice = await self._async_next(follow)
        except asyncio.CancelledError:
            await self._async_release_cancelled(follow, request)
            raise
        finally:
            if follow is not None and self._follows.get(follow.invoice_id) is follow:
                del self._follows[follow.invoice_id]

    async def _async_invoice_for(self, request: PaymentRequest) -> dict[str, Any]:
        """The session's invoice: the one made before (a repeated authorize), or a new one."""
        for invoice in await self.client.async_find_invoices(request.session_id):
            metadata = invoice.get("metadata")
            if (
                isinstance(metadata, dict)
                and metadata.get("orderId") == request.session_id
                and invoice.get("status") in (NEW, PROCESSING, SETTLED)
            ):
                return self._adopt(invoice, request)
        invoice = await self.client.async_create_invoice(
            {
                "amount": to_decimal_text(request.amount),
                "currency": request.amount.currency,
                "metadata": {
                    "orderId": request.session_id,
                    "itemCode": request.item,
                    "itemDesc": request.description,
                    "machineId": request.machine_id,
                },
                "checkout": {
                    "expirationMinutes": self.expiration_minutes,
                    "speedPolicy": self.speed_policy,
                },
            }
        )
        return self._adopt(invoice, request)

    def _adopt(self, invoice: dict[str, Any], request: PaymentRequest) -> dict[str, Any]:
        invoice_id = invoice.get("id")
        if not isinstance(invoice_id, str) or not invoice_id:
            raise PaymentError("BTCPay created an invoice without an id")
        self._invoices[invoice_id] = (request.session_id, request.amount)
        if self._check(invoice, invoice_id, "created invoice") is not None:
            raise PaymentError(
                f"BTCPay invoice {invoice_id} is not for {describe_money(request.amount)}"
            )
        self.statuses[invoice_id] = _state(invoice)
        return invoice

    async def _async_next(self, follow: _Follow) -> dict[str, Any]:
        """The invoice after the next webhook, or after the next poll without one."""
        await self._async_wait(follow)
        assert follow.invoice is not None
        return follow.invoice

    async def _async_wait(self, follow: _Follow) -> None:
        """Until the next webhook about the invoice, or the next poll without one."""
        follow.changed.clear()
        try:
            async with asyncio.timeout(self.poll_interval):
                await follow.changed.wait()
        except TimeoutError:
            await self._async_poll(follow)

    async def _async_poll(self, follow: _Follow) -> None:
        try:
            await self._async_refresh(follow.invoice_id, "poll")
        except PaymentError as error:
            _LOGGER.warning(
                "%s: cannot poll invoice %s (%s); trying again in %s s",
                self.machine_id,
                follow.invoice_id,
                error,
                self.poll_interval,
            )

    async def _async_decide(
        self,
        invoice: dict[str, Any],
        request: PaymentRequest,
        progress: ProgressCallback,
        link: str,
    ) -> Authorization | None:
        status, additional = _status(invoice)
        invoice_id = str(invoice["id"])
        if status == SETTLED:
            details: dict[str, Any] = {
                "session_id": request.session_id,
                "invoice_id": invoice_id,
                "store_id": self.store_id,
            }
            if additional == PAID_OVER:
                details["overpaid"] = True
                with contextlib.suppress(BTCPayError):  # recorded in refunds_due and logged
                    await self._async_request_refund(
                        invoice_id,
                        request.session_id,
                        "overpaid",
                        {"refundVariant": "OverpaidAmount"},
                    )
            return Authorization(
                provider=PLATFORM,
                method=request.method,
                reference=invoice_id,
                amount=request.amount,
                details=details,
            )
        if status == EXPIRED:
            if additional == PAID_PARTIAL:
                with contextlib.suppress(BTCPayError):  # recorded in refunds_due and logged
                    due = await self._async_request_refund(
                        invoice_id,
                        request.session_id,
                        "partial_payment",
                        {"refundVariant": "RateThen"},
                    )
                    if due.claim_link:
                        progress({"step": "refund_claim", "url": due.claim_link})
            raise PaymentDeclined("expired", f"BTCPay invoice {invoice_id} expired unpaid")
        if status == INVALID:
            raise PaymentDeclined("declined", f"BTCPay invoice {invoice_id} is invalid")
        if status == PROCESSING:
            progress({"step": "processing"})
        elif additional == PAID_PARTIAL:
            progress({"step": "scan_qr", "qr": link, "paid_partially": True})
        return None

    # ---- refunds ------------------------------------------------------------------------

    async def _async_request_refund(
        self, invoice_id: str, session_id: str, reason: str, variant: dict[str, Any]
    ) -> RefundDue:
        """Request a refund once (found again by its description), and record it as due."""
        description = f"vendhub:{session_id}:{reason}"
        due = RefundDue(session_id, invoice_id, reason)
        try:
            existing = next(
                (
                    pull
                    for pull in await self.client.async_pull_payments()
                    if pull.get("description") == description
                ),
                None,
            )
            pull = existing or await self.client.async_refund(
                invoice_id,
                {
                    "name": f"Refund of vend {session_id}",
                    "description": description,
                    # Greenfield 1.x calls it paymentMethod, 2.x payoutMethodId.
                    "paymentMethod": self.refund_payment_method,
                    "payoutMethodId": self.refund_payment_method,
                    **variant,
                },
            )
            due.pull_payment_id = str(pull.get("id"))
            link = pull.get("viewLink")
            due.claim_link = link if isinstance(link, str) else None
        except BTCPayError as error:
            due.problem = str(error)
            _LOGGER.error(
                "%s: a refund (%s) of invoice %s is due and could not be requested: %s; "
                "issue it from the invoice in BTCPay",
                self.machine_id,
                reason,
                invoice_id,
                error,
            )
            if not any(d.invoice_id == invoice_id and d.reason == reason for d in self.refunds_due):
                self.refunds_due.append(due)
            raise
        if not any(d.pull_payment_id == due.pull_payment_id for d in self.refunds_due):
            self.refunds_due.append(due)
        _LOGGER.warning(
            "%s: refund due (%s) on invoice %s: pull payment %s, claim link %s; approve the "
            "payout in BTCPay once the customer claims it",
            self.machine_id,
            reason,
            invoice_id,
            due.pull_payment_id,
            due.claim_link,
        )
        return due

    async def _async_refund_amount(
        self, authorization: Authorization, amount: Money, what: str
    ) -> RefundDue:
        return await self._async_request_refund(
            authorization.reference,
            session_of(authorization),
            what,
            {
                "refundVariant": "Custom",
                "customAmount": to_decimal_text(amount),
                "customCurrency": amount.currency,
            },
        )

    # ---- leaving nothing charged --------------------------------------------------------

    async def _async_release_cancelled(
        self, follow: _Follow | None, request: PaymentRequest
    ) -> None:
        if follow is None:
            return  # no invoice was shown: nobody can have paid it
        try:
            async with asyncio.timeout(2 * self.request_timeout):
                invoice = await self.client.async_get_invoice(follow.invoice_id)
                async with self._release_lock:
                    if await self._async_release(invoice, request.session_id):
                        return
        except (PaymentError, TimeoutError) as error:
            _LOGGER.warning(
                "%s: could not release invoice %s of cancelled session %s now (%s); following it",
                self.machine_id,
                follow.invoice_id,
                request.session_id,
                error,
            )
        await self._async_follow_release(follow.invoice_id, follow.session_id, request.amount)

    async def _async_release(self, invoice: dict[str, Any], session_id: str) -> bool:
        """Stop ``invoice`` from taking money, or give back what it took; False while a
        payment is still confirming (it can be refunded once settled). Hold
        ``_release_lock``: a refund is looked for before it is requested."""
        status, additional = _status(invoice)
        invoice_id = str(invoice["id"])
        if status == NEW and additional == "None":
            await self.client.async_mark_status(invoice_id, INVALID)
            self.statuses[invoice_id] = f"{INVALID}/None"
            _LOGGER.info("%s: marked invoice %s invalid", self.machine_id, invoice_id)
            return True
        if status == PROCESSING:
            return False
        if status == SETTLED or additional in (PAID_PARTIAL, PAID_OVER):
            if status == NEW:
                await self.client.async_mark_status(invoice_id, INVALID)
            await self._async_request_refund(
                invoice_id, session_id, "cancelled", {"refundVariant": "RateThen"}
            )
        return True

    # ---- release follows, kept across restarts ------------------------------------------

    async def _async_follow_release(self, invoice_id: str, session_id: str, amount: Money) -> bool:
        """Follow ``invoice_id`` for ``release_watch`` and release it once it can be; return
        whether the follow is on disk (it runs either way)."""
        watch = self._watch_store.get(invoice_id)
        if watch is None or invoice_id not in self._release_follows:
            watch = ReleaseWatch(
                invoice_id, session_id, amount, utcnow() + timedelta(seconds=self.release_watch)
            )
            self._start_release_watch(watch, look_first=False)
        try:
            await self._watch_store.async_add(watch)
        except ReleaseWatchNotStored as error:
            _LOGGER.error("%s: %s: it runs, but a restart would forget it", self.machine_id, error)
            return False
        return True

    def _start_release_watch(self, watch: ReleaseWatch, *, look_first: bool) -> None:
        follow = _Follow(watch.reference, watch.session_id)
        self._release_follows[watch.reference] = follow
        self._invoices[watch.reference] = (watch.session_id, watch.amount)  # webhooks find it
        task = self.hub.async_create_background_task(
            self._async_watch_release(watch, follow, look_first=look_first),
            name=f"crypto release {watch.reference}",
        )
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _async_watch_release(
        self, watch: ReleaseWatch, follow: _Follow, *, look_first: bool
    ) -> None:
        ended = False
        try:
            async with asyncio.timeout((watch.until - utcnow()).total_seconds()):
                if look_first:
                    await self._async_poll(follow)
                while True:
                    if follow.invoice is not None:
                        try:
                            async with self._release_lock:
                                ended = await self._async_release(follow.invoice, watch.session_id)
                        except PaymentError as error:
                            _LOGGER.warning(
                                "%s: releasing invoice %s failed (%s); trying again",
                                self.machine_id,
                                watch.reference,
                                error,
                            )
                        if ended:
                            return
                    await self._async_wait(follow)
        except TimeoutError:
            ended = True
            _LOGGER.error(
                "%s: invoice %s of cancelled session %s was not settled by %s (release_watch "
                "%s s); check it in BTCPay and refund it there if it was paid",
                self.machine_id,
                watch.reference,
                watch.session_id,
                watch.until.isoformat(timespec="seconds"),
                self.release_watch,
            )
        finally:
            if self._release_follows.get(watch.reference) is follow:
                del self._release_follows[watch.reference]
            if ended:
                self._watch_store.remove(watch)

    async def _async_resume_release_watches(self) -> None:
        stored = await self._watch_store.async_load()
        for watch in stored.ran_out:
            # As when one runs out while the hub is up: a paid invoice may be left unrefunded.
            _LOGGER.error(
                "%s: the follow of invoice %s (session %s) ran out at %s while the hub was "
                "down; it is not resumed: check it in BTCPay and refund it there if it was "
                "paid",
                self.machine_id,
                watch.reference,
                watch.session_id,
                watch.until.isoformat(timespec="seconds"),
            )
        for watch in stored.resume:
            if watch.reference in self._release_follows:
                continue
            _LOGGER.info(
                "%s: following invoice %s of session %s again, until %s",
                self.machine_id,
                watch.reference,
                watch.session_id,
                watch.until.isoformat(timespec="seconds"),
            )
            self._start_release_watch(watch, look_first=True)

    # ---- release after a restart --------------------------------------------------------

    async def async_release_session(self, session_id: str, amount: Money) -> None:
        """Stop the invoices of an authorize cut off by a restart from taking money: an unpaid
        ``New`` one is marked ``Invalid``, a paid one refunded, one still confirming followed
        for ``release_watch`` and refunded once settled. Raises ``PaymentError`` when a follow
        could not be saved, so that the engine tries again at its next start."""
        unsaved: list[str] = []
        for invoice in await self.client.async_find_invoices(session_id):
            metadata = invoice.get("metadata")
            invoice_id = invoice.get("id")
            if (
                not isinstance(metadata, dict)
                or metadata.get("orderId") != session_id
                or not isinstance(invoice_id, str)
            ):
                continue
            invoice_amount = _money(invoice.get("amount"), invoice.get("currency")) or amount
            self._invoices[invoice_id] = (session_id, invoice_amount)
            _LOGGER.warning(
                "%s: session %s was cut off by a restart while its invoice %s was %s; releasing it",
                self.machine_id,
                session_id,
                invoice_id,
                _state(invoice),
            )
            status, additional = _status(invoice)
            paid = status == SETTLED or additional in (PAID_PARTIAL, PAID_OVER)
            async with self._release_lock:
                if paid and await self._async_refund_requested(session_id):
                    continue  # all of it was requested back before the restart
                if await self._async_release(invoice, session_id):
                    continue
            if not await self._async_follow_release(invoice_id, session_id, invoice_amount):
                unsaved.append(invoice_id)
        if unsaved:
            raise PaymentError(
                f"the follow of invoice {', '.join(unsaved)} could not be saved; it runs until "
                "the hub stops, and the release is tried again at the next start"
            )

    async def _async_refund_requested(self, session_id: str) -> bool:
        """Whether a refund of everything the session's invoice took was requested."""
        whole = {
            f"vendhub:{session_id}:{what}" for what in ("cancelled", "full", "partial_payment")
        }
        return any(
            pull.get("description") in whole for pull in await self.client.async_pull_payments()
        )

    # ---- capture, void, refund, status --------------------------------------------------

    async def async_capture(self, authorization: Authorization, amount: Money) -> None:
        """Settled crypto is taken already; a capture of less gives the rest back."""
        check_within(amount, authorization.amount, "capture")
        if amount.amount < authorization.amount.amount:
            await self._async_refund_amount(
                authorization, authorization.amount - amount, "capture_rest"
            )

    async def async_void(self, authorization: Authorization) -> None:
        """A settled invoice holds nothing to release: the coins were taken when it settled.

        Raises ``PaymentError``, so the engine asks ``async_status`` (captured) and refunds,
        and the customer is told the truth: refunded, not released.
        """
        raise PaymentError(
            f"invoice {authorization.reference} is settled: crypto cannot be voided, only refunded"
        )

    async def async_refund(self, authorization: Authorization, amount: Money) -> None:
        check_within(amount, authorization.amount, "refund")
        if amount == authorization.amount:  # all of it: the coins paid, at that day's rate
            await self._async_request_refund(
                authorization.reference,
                session_of(authorization),
                "full",
                {"refundVariant": "RateThen"},
            )
            return
        await self._async_refund_amount(authorization, amount, f"refund_{amount.amount}")

    async def async_status(self, authorization: Authorization) -> PaymentStatus:
        try:
            invoice = await self.client.async_get_invoice(authorization.reference)
        except BTCPayError as error:
            if error.status == 404:
                return PaymentStatus.unknown
            raise
        status, _ = _status(invoice)
        self.statuses[authorization.reference] = _state(invoice)
        if status in (NEW, PROCESSING):
            return PaymentStatus.pending
        if status == EXPIRED:
            return PaymentStatus.declined
        if status == INVALID:
            return PaymentStatus.failed
        prefix = f"vendhub:{session_of(authorization)}:"
        refunds = [
            pull
            for pull in await self.client.async_pull_payments()
            if str(pull.get("description", "")).startswith(prefix)
        ]
        if any(pull["description"] in (prefix + "full", prefix + "cancelled") for pull in refunds):
            return PaymentStatus.refunded
        refunded = sum(
            money.amount
            for pull in refunds
            if (money := _money(pull.get("amount"), pull.get("currency"))) is not None
            and money.currency == authorization.amount.currency
        )
        if refunded >= authorization.amount.amount:
            return PaymentStatus.refunded
        return PaymentStatus.captured


def _status(invoice: dict[str, Any]) -> tuple[str, str]:
    return str(invoice.get("status")), str(invoice.get("additionalStatus") or "None")


def _state(invoice: dict[str, Any]) -> str:
    status, additional = _status(invoice)
    return f"{status}/{additional}"


def _money(value: Any, currency: Any) -> Money | None:
    try:
        return from_decimal_text(value, currency)
    except AmountError:
        return None
