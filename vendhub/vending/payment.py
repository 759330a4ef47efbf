"""The PaymentProvider interface: what the vend engine asks of every way to pay.

A provider is one configured payment device or service of one machine (an MDB card reader, a
coin changer, a QR gateway account, the loyalty wallet, a BTCPay store). Integrations provide
provider classes through the ``vendhub_payment_provider`` hook; the vending integration makes
one instance per ``payments:`` entry of a machine.

The engine drives a payment through its life::

    async_authorize ──▶ async_capture ──▶ async_close
          │                  (after a confirmed dispense)
          └──────────▶ async_void ──▶ async_close        (anything after authorization fails)
                       async_refund                       (money already captured goes back)

Rules every provider keeps:

- **Idempotent.** The engine may repeat a capture, void or refund after a restart (it
  journals each step before and after). Doing it twice must not take or return money twice:
  use ``request.session_id`` as the idempotence key where the provider has one, and remember
  what was done under ``Authorization.reference``.
- **Cancellation leaves nothing charged.** ``async_authorize`` is cancelled when the customer
  cancels or a timeout strikes: the provider must then release whatever it holds (cancel the
  gateway payment, return inserted cash, end the reader's session) before re-raising.
- **A lost authorize is released by session id.** A hub killed while ``async_authorize`` ran
  never journalled its ``Authorization``: at the next start the engine calls
  ``async_release_session(session_id, amount)``, and the provider finds by the session id
  whatever that authorize left (a hold, a gateway payment, an invoice, inserted cash) and
  releases it.
- **No card data.** Only the provider's reference and non-secret details (a masked PAN at most)
  go into ``Authorization.details``; they are journalled and recorded.
- **Errors.** ``PaymentDeclined`` is the customer's answer (declined card, expired QR, not
  enough balance); ``PaymentError`` is the provider failing (unreachable, protocol error).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from vendhub.core.errors import VendHubError
from vendhub.vending.money import Money

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.hub import Hub


class PaymentMethod(StrEnum):
    """How a customer pays; a provider declares the ones it serves."""

    card = "card"
    nfc = "nfc"
    qr = "qr"
    mobile_wallet = "mobile_wallet"
    e_wallet = "e_wallet"
    crypto = "crypto"
    cash = "cash"


class PaymentStatus(StrEnum):
    """Where a payment is at its provider (``async_status``)."""

    pending = "pending"  # waiting for the customer (card not yet presented, QR not paid)
    authorized = "authorized"  # approved, money held, not taken
    captured = "captured"  # taken
    voided = "voided"  # released without taking anything
    refunded = "refunded"  # taken, then given back
    declined = "declined"
    failed = "failed"
    unknown = "unknown"  # the provider does not know the reference (yet)


class PaymentDeclined(VendHubError):
    """The customer's payment was refused; ``reason`` is a short code for the kiosk.

    Reasons in use: ``declined``, ``insufficient_funds``, ``expired``, ``unknown_token``,
    ``cancelled``, ``amount_mismatch``.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class PaymentError(VendHubError):
    """The provider failed: unreachable, a protocol error, an answer it cannot make sense of."""


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """What the engine asks a provider to authorize."""

    session_id: str
    """The vend session's id: unique, stable across restarts; the idempotence key."""
    machine_id: str
    amount: Money
    method: PaymentMethod
    item: str
    """The slot code being sold (``A1``); an MDB reader gets its item number from it."""
    description: str
    """The product's name, for gateways that show one."""
    token: str | None = None
    """A wallet customer's QR or NFC token as presented (never stored as is)."""
    context: Context | None = None


@dataclass(frozen=True, slots=True)
class Authorization:
    """An approved payment, journalled by the engine (so it must be JSON-safe)."""

    provider: str
    """The provider's platform name (``mdb``, ``qr_gateway``, ...)."""
    method: PaymentMethod
    reference: str
    """The provider's id of this payment: gateway payment id, invoice id, reader session."""
    amount: Money
    credit: Money | None = None
    """Cash: what the customer inserted (at least ``amount``); the change is the difference."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Non-secret, JSON-safe details (a masked PAN at most); recorded with the payment."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "method": self.method._value_,
            "reference": self.reference,
            "amount": self.amount.as_dict(),
            "credit": self.credit.as_dict() if self.credit is not None else None,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Authorization:
        credit = data.get("credit")
        return cls(
            provider=str(data["provider"]),
            method=PaymentMethod(data["method"]),
            reference=str(data["reference"]),
            amount=Money(**data["amount"]),
            credit=Money(**credit) if credit else None,
            details=dict(data.get("details") or {}),
        )


ProgressCallback = Callable[[Mapping[str, Any]], None]
"""What a provider tells the customer while it authorizes. Steps in use:
``{"step": "present_card"}``, ``{"step": "scan_qr", "qr": url}``, ``{"step": "insert_cash",
"credit": minor units}``, ``{"step": "processing"}``."""


class PaymentProvider(ABC):
    """One payment device or service of one machine.

    Subclasses set ``platform`` (the name used in ``platform:``), ``methods`` (what it
    serves), ``multi_vend`` (whether one authorization may pay several vends, as inserted cash
    can), ``OPTIONS`` (voluptuous keys of its configuration besides ``platform``) and
    ``SECRET_OPTIONS`` (never logged nor shown).
    """

    platform: ClassVar[str] = ""
    methods: ClassVar[frozenset[PaymentMethod]] = frozenset()
    multi_vend: ClassVar[bool] = False
    OPTIONS: ClassVar[Mapping[Any, Any]] = {}
    SECRET_OPTIONS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, hub: Hub, machine_id: str, options: Mapping[str, Any]) -> None:
        self.hub = hub
        self.machine_id = machine_id
        self.options = options

    async def async_start(self) -> None:  # noqa: B027 - optional for providers
        """Open ports, register webhook routes; raise ``PaymentError`` if it cannot."""

    async def async_stop(self) -> None:  # noqa: B027 - optional for providers
        """Close what ``async_start`` opened."""

    @abstractmethod
    async def async_authorize(
        self, request: PaymentRequest, progress: ProgressCallback
    ) -> Authorization:
        """Wait until the payment is approved and return it; raise ``PaymentDeclined``.

        :param request: what to authorize, keyed by ``request.session_id``.
        :param progress: called with what the customer should see while it waits.
        Cancellation must leave nothing charged (see the module's rules).
        """

    @abstractmethod
    async def async_capture(self, authorization: Authorization, amount: Money) -> None:
        """Take ``amount`` (at most what was authorized) after a confirmed dispense."""

    @abstractmethod
    async def async_void(self, authorization: Authorization) -> None:
        """Release what was authorized and not captured; cash: return the inserted credit."""

    @abstractmethod
    async def async_refund(self, authorization: Authorization, amount: Money) -> None:
        """Give back ``amount`` that was captured."""

    @abstractmethod
    async def async_status(self, authorization: Authorization) -> PaymentStatus:
        """Where this payment is at the provider, to resolve a session after a restart."""

    async def async_release_session(self, session_id: str, amount: Money) -> None:
        """Release whatever an authorize for ``session_id`` may have left, when the caller
        never got its ``Authorization`` (the hub died while it waited).

        Called by the engine at start for each session the journal left at ``authorizing``,
        before any new session of the machine. Find the payment by the session id (the
        idempotence key every authorize uses) and leave nothing charged after it: release a
        hold, cancel a gateway payment (refund it if it was taken), give inserted cash back,
        end the reader's session. Nothing found is not an error: the authorize may never have
        reached the provider. Idempotent: a repeat after another restart changes nothing.
        ``amount`` is the price the session asked for.

        Raise ``PaymentError`` when it cannot be done now (unreachable, an answer it cannot
        trust): the engine alarms and tries again at its next start.

        The default does nothing. That is right for a provider whose authorize holds nothing
        once its call is gone (a test double, a device that ends its session by itself when
        the hub goes); a provider that makes anything outside the hub must override it.
        """
        return None

    async def async_close(self, authorization: Authorization) -> Money | None:
        """The session is over: end the reader's session, pay out the change.

        Returns the change paid out (cash), or None. Called once after capture or void.
        """
        return None


def session_of(authorization: Authorization) -> str:
    """The vend session an authorization belongs to (its idempotence key)."""
    return str(authorization.details.get("session_id") or authorization.reference)


def check_within(amount: Money, authorized: Money, what: str) -> None:
    """Raise ``PaymentError`` unless ``amount`` is above 0, at most ``authorized`` and in its
    currency; ``what`` names the operation (capture, refund) in the message."""
    if amount.currency != authorized.currency:
        raise PaymentError(f"cannot {what} {amount} of a payment in {authorized.currency}")
    if not 0 < amount.amount <= authorized.amount:
        raise PaymentError(f"cannot {what} {amount}: the payment is for {authorized}")
