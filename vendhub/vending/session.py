"""One vend session as the engine and its callers see it: states, outcome codes, snapshots.

A session goes ``selected → authorizing → authorized → dispensing → dispensed → capturing →
captured → completed``; any failure after authorization passes through ``voiding`` (or ``refunding``
when money was already taken) to ``failed``. ``VendSession`` is an immutable snapshot: the
engine hands out a new one on every change, so a caller can keep it without locking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from vendhub.core.context import Context
from vendhub.core.errors import VendHubError
from vendhub.vending.dispenser import DispenseResult
from vendhub.vending.money import Money
from vendhub.vending.payment import Authorization, PaymentMethod


class SessionState(StrEnum):
    """Where a session is; ``completed`` and ``failed`` are final."""

    selected = "selected"  # slot, stock and mode checked; nothing asked of anyone yet
    authorizing = "authorizing"  # waiting for the provider (the customer pays)
    authorized = "authorized"  # money held, not taken
    dispensing = "dispensing"  # the board was told to drop the product
    dispensed = "dispensed"  # the drop was confirmed; stock went down
    capturing = "capturing"  # taking the money that was held
    captured = "captured"  # the money was taken; the sale is being recorded
    voiding = "voiding"  # releasing the held money after a failure
    refunding = "refunding"  # giving back money that was already taken
    completed = "completed"  # sold: dispensed and paid (or a free vend)
    failed = "failed"  # not sold; whatever was held was released or given back

    @property
    def finished(self) -> bool:
        return self in (SessionState.completed, SessionState.failed)


class VendOutcome(StrEnum):
    """What the customer is told at the end (the kiosk's message keys); docs/vending.md."""

    completed = "completed"  # the product dropped and was paid (or free vend)
    declined = "declined"  # the payment was refused; nothing charged
    cancelled = "cancelled"  # cancelled before the dispense; nothing charged
    payment_timeout = "payment_timeout"  # no payment in time; nothing charged
    payment_error = "payment_error"  # the provider failed while authorizing; nothing charged
    dispense_failed = "dispense_failed"  # jam, no drop or board timeout; hold released
    refunded_dispense_failed = "refunded_dispense_failed"  # dispense failed; money given back
    voided_error = "voided_error"  # an internal error after authorization; hold released
    capture_failed = "capture_failed"  # product given, payment not yet taken; retried later
    # Refusals at selection (VendRefused.code); no session is created for them.
    unknown_slot = "unknown_slot"
    sold_out = "sold_out"
    out_of_order = "out_of_order"
    service_mode = "service_mode"
    method_not_accepted = "method_not_accepted"
    busy = "busy"  # another session of this machine is still running


class VendRefused(VendHubError, ValueError):
    """``async_select`` refused the selection before any session began; ``code`` says why.

    A ValueError too, so the API answers it as the caller's request that cannot be served
    (400 with the message), not as a failure of the hub."""

    def __init__(self, code: VendOutcome, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = {"outcome": code.value}
        """What an API answer carries besides the message."""


@dataclass(frozen=True)
class VendSession:
    """An immutable snapshot of one session."""

    id: str
    machine_id: str
    slot: str
    product: str
    price: Money
    method: PaymentMethod
    context: Context
    started_at: float
    """Wall-clock seconds (time.time()) when the session was selected."""
    state: SessionState = SessionState.selected
    outcome: VendOutcome | None = None
    reason: str | None = None
    """Detail of a failure: the decline reason, the dispense outcome, the error."""
    free_vend: bool = False
    provider: str | None = None
    """The platform of the provider that serves ``method`` (None for a free vend)."""
    authorization: Authorization | None = None
    dispense: DispenseResult | None = None
    stock_after: int | None = None
    change: Money | None = None
    """Cash paid out when the payment was closed."""
    refunded: Money | None = None
    credit_left: Money | None = None
    """Multi-vend: credit left for the next selection before the payment is closed."""
    progress: Mapping[str, Any] = field(default_factory=dict)
    """The provider's latest customer-facing step (``present_card``, ``scan_qr``, ...)."""
    payment_deadline: float | None = None
    """Wall-clock seconds by which the customer must have paid (the machine's payment
    timeout from the selection); None when nothing is paid now (free vend, credit)."""
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state.finished

    def evolve(self, **changes: Any) -> VendSession:
        """A copy with ``changes``: ``dataclasses.replace`` without its per-call cost (the
        engine makes a snapshot at every step of every session)."""
        if not _FIELDS.issuperset(changes):
            unknown = ", ".join(sorted(changes.keys() - _FIELDS))
            raise TypeError(f"VendSession has no field {unknown}")
        copy = object.__new__(VendSession)
        _set(copy, "__dict__", {**self.__dict__, **changes})
        return copy

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for service results, the kiosk and events."""
        # ``_value_`` rather than ``value``: the same string, without the enum property's
        # Python-level descriptor (a dozen per vend session snapshot add up).
        return {
            "session_id": self.id,
            "machine_id": self.machine_id,
            "slot": self.slot,
            "product": self.product,
            "price": self.price.amount,
            "currency": self.price.currency,
            "payment_method": self.method._value_,
            "payment_provider": self.provider,
            "state": self.state._value_,
            "outcome": self.outcome._value_ if self.outcome else None,
            "reason": self.reason,
            "free_vend": self.free_vend,
            "authorization": self.authorization.as_dict() if self.authorization else None,
            "dispense": self.dispense.outcome._value_ if self.dispense else None,
            "stock_after": self.stock_after,
            "change": self.change.amount if self.change else None,
            "refunded": self.refunded.amount if self.refunded else None,
            "credit_left": self.credit_left.amount if self.credit_left else None,
            "progress": dict(self.progress),
            "payment_deadline": self.payment_deadline,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "context_id": self.context.id,
        }


_FIELDS = frozenset(VendSession.__dataclass_fields__)
_set = object.__setattr__
