"""A customer's purchase on a simulated machine: the flow behind the kiosk, with SIMULATED
payment.

This is not the vend engine (payment providers, the drop sensor, capture and the ledger's
payment rows are a later issue); it is an honest stand-in for simulated machines, so the kiosk
can be built and tested end to end. One session per purchase, a small state machine::

    selecting ──▶ awaiting_payment ──▶ authorized ──▶ dispensing ──▶ completed
        │               │   ▲  (cash: credit grows)                    │
        │               │   └─ insert_cash                             └─▶ failed (refunded)
        │               ├─▶ failed (declined: nothing was taken)
        └───────────────┴─▶ cancelled (cancel or timeout; refunded when cash was inserted)

- ``selecting``: the customer picked a slot and a method; checked at once (the slot exists,
  sells and has stock, the machine accepts the method), then ``awaiting_payment``.
- ``awaiting_payment``: card and QR approve by themselves after ``approval_delay`` (unless
  ``auto_approve`` is off), or on ``simulator.purchase_pay`` (``decline: true`` declines);
  cash takes ``simulator.purchase_insert_cash`` amounts until the credit covers the price
  (``change`` = credit - price). ``payment_timeout`` without payment cancels the purchase
  (each inserted coin starts the wait again), returning any inserted cash.
- ``authorized`` → ``dispensing``: after ``dispense_time``, the simulator's own vend
  (``simulator.vend``) for the slot, called with the session's context, so the vend's context
  is a child of the session's. Stock changes only through that vend. The virtual machine may
  jam or fail (its ``jam_rate`` and ``failure_rate``): the purchase then ``failed`` with
  ``refunded: true`` (card and QR: the authorization is voided; cash: every inserted coin is
  returned), as is any error after payment.
- ``completed``: the product dropped; ``change`` is what a cash customer gets back.

Every transition fires ``purchase_updated`` with the session (``as_dict``) as data, and every
one of a session's events carries the session's one context (a child of the context of the
``purchase_start`` call). Sessions live in memory: a hub restart forgets them (no money is
real here). A finished session stays readable for ``keep`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from vendhub.core.context import Context
from vendhub.util.dt import utcnow

from .const import (
    DEFAULT_APPROVAL_DELAY,
    DEFAULT_DISPENSE_TIME,
    DEFAULT_PAYMENT_TIMEOUT,
    DEFAULT_PURCHASE_KEEP,
    DOMAIN,
    EVENT_PURCHASE_UPDATED,
    SERVICE_VEND,
)

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

    from .runtime import SimulatorRuntime

_LOGGER = logging.getLogger(__name__)

VEND_METHODS: dict[str, str] = {"card": "card", "qr": "mobile", "cash": "cash"}
"""The virtual machine's payment method of each purchase method (a QR payment is mobile)."""
PAYMENT_URL = "vendhub-sim://pay/{machine_id}/{purchase_id}?amount={amount}&currency={currency}"
"""What the QR code of a simulated QR payment carries: nothing real pays it."""


class PurchaseState(StrEnum):
    selecting = "selecting"
    awaiting_payment = "awaiting_payment"
    authorized = "authorized"
    dispensing = "dispensing"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


STATES: tuple[str, ...] = tuple(state.value for state in PurchaseState)
WAITING = frozenset({PurchaseState.selecting, PurchaseState.awaiting_payment})
FINAL = frozenset({PurchaseState.completed, PurchaseState.failed, PurchaseState.cancelled})
REASONS: tuple[str, ...] = (
    "cancelled",
    "timeout",
    "replaced",
    "declined",
    "jam",
    "motor",
    "locked",
    "sold_out",
    "error",
    "stopped",
)
"""Why a purchase failed or was cancelled (the vend's reasons: jam, motor, locked, sold_out)."""


class PurchaseError(Exception):
    """A purchase call that cannot be done: ``code`` is ``not_found``, ``conflict`` or
    ``invalid``; the message says why (the services turn it into InvalidServiceData)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class PurchaseSettings:
    payment_timeout: float = DEFAULT_PAYMENT_TIMEOUT
    approval_delay: float = DEFAULT_APPROVAL_DELAY
    auto_approve: bool = True
    dispense_time: float = DEFAULT_DISPENSE_TIME
    keep: float = DEFAULT_PURCHASE_KEEP

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PurchaseSettings:
        known = {key: config[key] for key in cls.__dataclass_fields__ if key in config}
        return cls(**known)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass
class PurchaseSession:
    """One customer's purchase."""

    id: str
    machine_id: str
    slot: str
    product: str
    price: int
    currency: str
    method: str
    context: Context
    state: PurchaseState = PurchaseState.selecting
    credit: int = 0
    """Cash inserted so far (minor units)."""
    change: int = 0
    """Cash given back on success (credit - price)."""
    refunded: bool = False
    refund_amount: int = 0
    reason: str | None = None
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)
    expires: datetime | None = None
    """When the current waiting step times out (None when nothing waits for the customer)."""
    payment_url: str | None = None
    vend: dict[str, Any] | None = None
    seq: int = 0
    """Counts this session's updates (a client keeps the newest)."""

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def due(self) -> int:
        """What the customer still has to pay (cash)."""
        return max(0, self.price - self.credit)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "machine_id": self.machine_id,
            "slot": self.slot,
            "product": self.product,
            "price": self.price,
            "currency": self.currency,
            "method": self.method,
            "state": self.state.value,
            "credit": self.credit,
            "due": self.due if self.method == "cash" else 0,
            "change": self.change,
            "refunded": self.refunded,
            "refund_amount": self.refund_amount,
            "reason": self.reason,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "expires": _iso(self.expires),
            "payment_url": self.payment_url,
            "vend": dict(self.vend) if self.vend is not None else None,
            "seq": self.seq,
            "simulated": True,
            "context_id": self.context.id,
        }


class PurchaseManager:
    """Every purchase session of one simulator: at most one open session per machine."""

    def __init__(self, hub: Hub, runtime: SimulatorRuntime, config: dict[str, Any]) -> None:
        self.hub = hub
        self.runtime = runtime
        self.settings = PurchaseSettings.from_config(config)
        self.sessions: dict[str, PurchaseSession] = {}
        self.open: dict[str, str] = {}
        """Machine id → the id of its session that is not finished."""
        self._timers: dict[str, list[asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._forgetting: dict[str, asyncio.TimerHandle] = {}
        self._stopped = False

    # ---- lookups ---------------------------------------------------------------------------

    def options(self, machine_id: str) -> dict[str, Any]:
        """What a kiosk needs to know before a purchase (raises UnknownMachine)."""
        self.runtime.machine(machine_id)
        open_id = self.open.get(machine_id)
        return {
            "machine_id": machine_id,
            "payment_methods": list(self.runtime.payment_methods.get(machine_id, ())),
            "simulated": True,
            "payment_timeout": self.settings.payment_timeout,
            "auto_approve": self.settings.auto_approve,
            "approval_delay": self.settings.approval_delay,
            "purchase": self.sessions[open_id].as_dict() if open_id in self.sessions else None,
        }

    def get(self, machine_id: str, purchase_id: str) -> PurchaseSession:
        session = self.sessions.get(purchase_id)
        if session is None or session.machine_id != machine_id:
            raise PurchaseError(
                "not_found", f"machine {machine_id} has no purchase {purchase_id!r}"
            )
        return session

    # ---- the customer's steps --------------------------------------------------------------

    def start(
        self, machine_id: str, slot_code: str, method: str, context: Context
    ) -> PurchaseSession:
        """A customer chose ``slot_code`` and ``method``: a new session, awaiting payment."""
        if self._stopped:
            raise PurchaseError("conflict", "the simulator is stopping")
        machine = self.runtime.machine(machine_id)
        code = self.runtime.slot_code(machine, slot_code)
        slot = machine.slots[code]
        accepted = self.runtime.payment_methods.get(machine_id, ())
        if method not in accepted:
            raise PurchaseError(
                "invalid",
                f"machine {machine_id} does not accept {method}; it accepts "
                f"{', '.join(accepted) or 'nothing'}",
            )
        if slot.locked:
            raise PurchaseError(
                "conflict", f"slot {code} of machine {machine_id} does not sell now"
            )
        if slot.stock <= 0:
            raise PurchaseError("conflict", f"slot {code} of machine {machine_id} is sold out")
        previous = self.sessions.get(self.open.get(machine_id, ""))
        if previous is not None and not previous.final:
            if previous.state not in WAITING:
                raise PurchaseError(
                    "conflict",
                    f"machine {machine_id} is dispensing purchase {previous.id}; try again "
                    "when it is done",
                )
            # The customer walked away (or the kiosk reloaded): give back what they inserted.
            self._cancel(previous, "replaced")
        session = PurchaseSession(
            id=uuid.uuid4().hex,
            machine_id=machine_id,
            slot=code,
            product=slot.product,
            price=slot.price,
            currency=self.hub.config.currency,
            method=method,
            context=context.child(),
        )
        self.sessions[session.id] = session
        self.open[machine_id] = session.id
        self._fire(session)
        if slot.price == 0:  # nothing to pay
            self._authorize(session)
            return session
        if method == "qr":
            session.payment_url = PAYMENT_URL.format(
                machine_id=machine_id,
                purchase_id=session.id,
                amount=session.price,
                currency=session.currency,
            )
        self._await_payment(session)
        return session

    def pay(self, machine_id: str, purchase_id: str, *, decline: bool = False) -> PurchaseSession:
        """The simulated card or QR payment answers: approved, or declined."""
        session = self.get(machine_id, purchase_id)
        self._expect_payment(session)
        if session.method == "cash":
            raise PurchaseError(
                "conflict", "a cash purchase is paid by inserting cash (purchase_insert_cash)"
            )
        if decline:
            self._finish(session, PurchaseState.failed, "declined")
        else:
            self._authorize(session)
        return session

    def insert_cash(self, machine_id: str, purchase_id: str, amount: int) -> PurchaseSession:
        """A coin or note went into the simulated acceptor: the credit grows; once it covers
        the price the purchase is paid and the change is set aside."""
        session = self.get(machine_id, purchase_id)
        self._expect_payment(session)
        if session.method != "cash":
            raise PurchaseError("conflict", f"this purchase is paid by {session.method}, not cash")
        if amount <= 0:
            raise PurchaseError("invalid", f"expected an amount above 0, got {amount}")
        session.credit += amount
        if session.credit >= session.price:
            session.change = session.credit - session.price
            self._authorize(session)
        else:
            self._await_payment(session)  # fires the new credit, and the wait starts again
        return session

    def cancel(self, machine_id: str, purchase_id: str) -> PurchaseSession:
        """The customer gave up: cancelled, and any inserted cash returned."""
        session = self.get(machine_id, purchase_id)
        if session.final:
            return session  # cancelling twice is harmless
        if session.state not in WAITING:
            raise PurchaseError(
                "conflict",
                f"purchase {purchase_id} is {session.state.value} and can no longer be cancelled",
            )
        self._cancel(session, "cancelled")
        return session

    def stop(self) -> None:
        """The simulator unloads: every open purchase is cancelled (cash returned)."""
        self._stopped = True
        for session in list(self.sessions.values()):
            if session.state in WAITING:
                self._cancel(session, "stopped")
        for handles in self._timers.values():
            for handle in handles:
                handle.cancel()
        self._timers.clear()
        for handle in self._forgetting.values():
            handle.cancel()
        self._forgetting.clear()
        for task in self._tasks:
            task.cancel()

    # ---- transitions -----------------------------------------------------------------------

    def _expect_payment(self, session: PurchaseSession) -> None:
        if session.state is not PurchaseState.awaiting_payment:
            raise PurchaseError(
                "conflict",
                f"purchase {session.id} is {session.state.value}; it takes no payment now",
            )

    def _fire(self, session: PurchaseSession) -> None:
        session.updated = utcnow()
        session.seq += 1
        self.hub.bus.async_fire(EVENT_PURCHASE_UPDATED, session.as_dict(), context=session.context)

    def _later(self, session: PurchaseSession, delay: float, action: Any) -> None:
        handle = self.hub.loop.call_later(delay, action)
        self._timers.setdefault(session.id, []).append(handle)

    def _clear_timers(self, session: PurchaseSession) -> None:
        for handle in self._timers.pop(session.id, []):
            handle.cancel()

    def _await_payment(self, session: PurchaseSession) -> None:
        self._clear_timers(session)
        session.state = PurchaseState.awaiting_payment
        timeout = self.settings.payment_timeout
        session.expires = utcnow() + timedelta(seconds=timeout)
        self._fire(session)
        self._later(session, timeout, lambda: self._timed_out(session))
        if session.method in ("card", "qr") and self.settings.auto_approve:
            self._later(session, self.settings.approval_delay, lambda: self._auto_approve(session))

    def _auto_approve(self, session: PurchaseSession) -> None:
        if session.state is PurchaseState.awaiting_payment:
            self._authorize(session)

    def _timed_out(self, session: PurchaseSession) -> None:
        if session.state in WAITING:
            self._cancel(session, "timeout")

    def _cancel(self, session: PurchaseSession, reason: str) -> None:
        if session.credit > 0:
            session.refunded = True
            session.refund_amount = session.credit
        self._finish(session, PurchaseState.cancelled, reason)

    def _authorize(self, session: PurchaseSession) -> None:
        self._clear_timers(session)
        session.state = PurchaseState.authorized
        session.expires = None
        self._fire(session)
        task = self.hub.async_create_task(self._dispense(session), name=f"purchase {session.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispense(self, session: PurchaseSession) -> None:
        session.state = PurchaseState.dispensing
        self._fire(session)
        try:
            if self.settings.dispense_time > 0:
                await asyncio.sleep(self.settings.dispense_time)
            result = await self.hub.services.async_call(
                DOMAIN,
                SERVICE_VEND,
                {
                    "machine_id": session.machine_id,
                    "slot": session.slot,
                    "payment_method": VEND_METHODS[session.method],
                },
                blocking=True,
                context=session.context,
            )
        except asyncio.CancelledError:
            self._refund(session, "stopped")
            raise
        except Exception:
            _LOGGER.exception("The simulated vend of purchase %s failed", session.id)
            self._refund(session, "error")
            return
        session.vend = {
            "outcome": result.get("outcome"),
            "reason": result.get("reason"),
            "event_id": result.get("event_id"),
            "vend_id": result.get("vend_id"),
            "stock": result.get("stock"),
        }
        if result.get("outcome") == "completed":
            self._finish(session, PurchaseState.completed, None)
        else:
            self._refund(session, str(result.get("reason") or "error"))

    def _refund(self, session: PurchaseSession, reason: str) -> None:
        """Anything that goes wrong after payment gives the money back."""
        session.refunded = True
        session.refund_amount = session.credit if session.method == "cash" else session.price
        session.change = 0
        self._finish(session, PurchaseState.failed, reason)

    def _finish(self, session: PurchaseSession, state: PurchaseState, reason: str | None) -> None:
        self._clear_timers(session)
        session.state = state
        session.reason = reason
        session.expires = None
        if self.open.get(session.machine_id) == session.id:
            del self.open[session.machine_id]
        self._fire(session)
        if not self._stopped:
            self._forgetting[session.id] = self.hub.loop.call_later(
                self.settings.keep, self._forget, session.id
            )

    def _forget(self, purchase_id: str) -> None:
        self._forgetting.pop(purchase_id, None)
        session = self.sessions.get(purchase_id)
        if session is not None and session.final:
            del self.sessions[purchase_id]
