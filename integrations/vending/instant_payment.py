"""The ``instant`` and ``instant_cash`` payment providers: NOT REAL MONEY.

Test doubles for the demo, the tests and the benchmark. ``instant`` approves every payment at
once (after ``approval_delay``) unless the customer's token is in ``decline_tokens`` or
``decline`` is set; ``instant_cash`` plays a coin changer: the customer "inserts" ``insert``
minor units (the price when 0), may buy several products with it (``multi_vend``) and gets
the rest back as change when the payment closes.

Neither moves money anywhere. With ``ledger_file`` each provider appends what it did (one JSON
object a line: op, reference, session, amount, effect) and reads the file back when it starts,
so its idempotence holds across hub restarts and another process can watch what it did.

``async_release_session`` (a hub restarted while the customer paid) holds nothing to give
back, but it voids an authorization the ledger has for that session (the pretend coins go
back) and writes a ``release`` record either way: effect ``done``, ``repeat`` (released
before) or ``nothing`` (no authorize reached the provider).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.vending.money import Money
from vendhub.vending.payment import (
    Authorization,
    PaymentDeclined,
    PaymentError,
    PaymentMethod,
    PaymentProvider,
    PaymentRequest,
    PaymentStatus,
    ProgressCallback,
)

from .validators import seconds_or_zero

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

EFFECT_DONE = "done"
EFFECT_REPEAT = "repeat"  # asked again (after a restart): nothing happened twice
EFFECT_NOTHING = "nothing"  # a release of a session no authorize reached
KEEP_PAYMENTS = 32
"""Payments remembered (capture, void, refund and close of older ones fail as unknown)."""


def _method(value: Any) -> PaymentMethod:
    try:
        return PaymentMethod(cv.string(value))
    except ValueError:
        raise vol.Invalid(
            f"expected a payment method ({', '.join(item.value for item in PaymentMethod)}), "
            f"got {cv.describe_value(value)}"
        ) from None


@dataclass(slots=True)
class _Payment:
    """What the provider remembers of one reference."""

    amount: int
    currency: str
    credit: int
    status: PaymentStatus = PaymentStatus.authorized
    captured: int = 0
    captured_keys: set[str] = field(default_factory=set)
    refunded: int = 0
    closed: bool = False


class InstantPaymentProvider(PaymentProvider):
    """Approves at once; not real money (see the module docstring)."""

    platform: ClassVar[str] = "instant"
    methods: ClassVar[frozenset[PaymentMethod]] = frozenset(
        {PaymentMethod.card, PaymentMethod.nfc, PaymentMethod.qr, PaymentMethod.mobile_wallet}
    )
    OPTIONS: ClassVar[Mapping[Any, Any]] = {
        vol.Optional("methods"): vol.All(cv.ensure_list, [_method]),
        vol.Optional("approval_delay", default=0): seconds_or_zero,
        vol.Optional("decline", default=False): cv.boolean,
        vol.Optional("decline_tokens", default=list): vol.All(cv.ensure_list, [cv.string]),
        vol.Optional("ledger_file"): cv.string,
    }

    def __init__(self, hub: Hub, machine_id: str, options: Mapping[str, Any]) -> None:
        super().__init__(hub, machine_id, options)
        if options.get("methods"):
            # Per instance: one machine's instant provider may serve other methods.
            self.methods = frozenset(options["methods"])  # type: ignore[misc]
        self.approval_delay = float(options.get("approval_delay", 0))
        self.decline = bool(options.get("decline", False))
        self.decline_tokens = frozenset(options.get("decline_tokens", ()))
        ledger = options.get("ledger_file")
        self.ledger_file = Path(ledger) if ledger else None
        if self.ledger_file is not None and not self.ledger_file.is_absolute():
            self.ledger_file = hub.path(str(self.ledger_file))
        self.payments: dict[str, _Payment] = {}
        self.fail_next: dict[str, int] = {}
        """Tests: make the next N calls of an operation (capture, void, ...) fail."""

    # ---- the provider's own bookkeeping -------------------------------------------------

    async def async_start(self) -> None:
        if self.ledger_file is None or not self.ledger_file.exists():
            return
        for line in self.ledger_file.read_text().splitlines():
            if line.strip():
                self._apply(json.loads(line))

    def _apply(self, record: Mapping[str, Any]) -> None:
        reference = record["reference"]
        op = record["op"]
        if op == "authorize":
            self.payments[reference] = _Payment(
                record["amount"], record["currency"], record.get("credit") or record["amount"]
            )
            if len(self.payments) > KEEP_PAYMENTS:
                # A demo that sells for months forgets the oldest (dicts keep insertion order).
                del self.payments[next(iter(self.payments))]
            return
        payment = self.payments.get(reference)
        if payment is None or record.get("effect") != EFFECT_DONE:
            return
        if op == "capture":
            payment.captured += record["amount"]
            payment.captured_keys.add(record["key"])
            payment.status = PaymentStatus.captured
        elif op in ("void", "release"):
            payment.status = PaymentStatus.voided
        elif op == "refund":
            payment.refunded += record["amount"]
            payment.status = PaymentStatus.refunded
        elif op == "close":
            payment.closed = True

    def _log(self, record: dict[str, Any]) -> None:
        record["machine_id"] = self.machine_id
        record["provider"] = self.platform
        self._apply(record)
        if self.ledger_file is None:
            return
        self.ledger_file.parent.mkdir(parents=True, exist_ok=True)
        with self.ledger_file.open("a") as file:
            file.write(json.dumps(record, sort_keys=True) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def _maybe_fail(self, op: str) -> None:
        left = self.fail_next.get(op, 0)
        if left > 0:
            self.fail_next[op] = left - 1
            raise PaymentError(f"simulated {op} failure")

    def calls(self, op: str, effect: str | None = EFFECT_DONE) -> int:
        """How many ``op`` calls had ``effect`` (from the ledger file when there is one)."""
        if self.ledger_file is None or not self.ledger_file.exists():
            raise RuntimeError("calls() needs a ledger_file")
        records = read_ledger(self.ledger_file)
        return sum(
            1
            for item in records
            if item["op"] == op and (effect is None or item["effect"] == effect)
        )

    def _credit_for(self, request: PaymentRequest) -> int:
        return request.amount.amount

    # ---- PaymentProvider ----------------------------------------------------------------

    async def async_authorize(
        self, request: PaymentRequest, progress: ProgressCallback
    ) -> Authorization:
        reference = f"{self.platform}-{request.session_id}"
        progress({"step": "processing"})
        if self.approval_delay:
            await asyncio.sleep(self.approval_delay)
        if self.decline or (request.token is not None and request.token in self.decline_tokens):
            raise PaymentDeclined("declined", "the instant test provider declined")
        self._maybe_fail("authorize")
        payment = self.payments.get(reference)
        credit = self._credit_for(request)
        if payment is None:
            self._log(
                {
                    "op": "authorize",
                    "reference": reference,
                    "session_id": request.session_id,
                    "amount": request.amount.amount,
                    "currency": request.amount.currency,
                    "credit": credit,
                    "effect": EFFECT_DONE,
                }
            )
        return Authorization(
            provider=self.platform,
            method=request.method,
            reference=reference,
            amount=request.amount,
            credit=Money(credit, request.amount.currency) if self.multi_vend else None,
            details={"test_double": True},
        )

    async def async_capture(self, authorization: Authorization, amount: Money) -> None:
        self._maybe_fail("capture")
        payment = self._payment(authorization)
        key = str(authorization.details.get("session_id") or authorization.reference)
        repeat = key in payment.captured_keys
        if not repeat and payment.captured + amount.amount > payment.credit:
            raise PaymentError(f"capture of {amount} exceeds what {authorization.reference} holds")
        self._log(
            {
                "op": "capture",
                "reference": authorization.reference,
                "key": key,
                "amount": amount.amount,
                "effect": EFFECT_REPEAT if repeat else EFFECT_DONE,
            }
        )

    async def async_void(self, authorization: Authorization) -> None:
        self._maybe_fail("void")
        payment = self._payment(authorization)
        if payment.status is PaymentStatus.captured and not self.multi_vend:
            raise PaymentError(f"{authorization.reference} was captured; refund it instead")
        repeat = payment.status is PaymentStatus.voided
        self._log(
            {
                "op": "void",
                "reference": authorization.reference,
                "amount": authorization.amount.amount,
                "effect": EFFECT_REPEAT if repeat else EFFECT_DONE,
            }
        )

    async def async_refund(self, authorization: Authorization, amount: Money) -> None:
        self._maybe_fail("refund")
        payment = self._payment(authorization)
        repeat = payment.status is PaymentStatus.refunded
        self._log(
            {
                "op": "refund",
                "reference": authorization.reference,
                "amount": amount.amount,
                "effect": EFFECT_REPEAT if repeat else EFFECT_DONE,
            }
        )

    async def async_release_session(self, session_id: str, amount: Money) -> None:
        self._maybe_fail("release")
        reference = f"{self.platform}-{session_id}"
        payment = self.payments.get(reference)
        if payment is None:
            effect = EFFECT_NOTHING
        elif payment.status is PaymentStatus.authorized:
            effect = EFFECT_DONE
        else:
            effect = EFFECT_REPEAT
        self._log(
            {
                "op": "release",
                "reference": reference,
                "session_id": session_id,
                "amount": amount.amount,
                "effect": effect,
            }
        )

    async def async_status(self, authorization: Authorization) -> PaymentStatus:
        payment = self.payments.get(authorization.reference)
        return PaymentStatus.unknown if payment is None else payment.status

    async def async_close(self, authorization: Authorization) -> Money | None:
        payment = self._payment(authorization)
        repeat = payment.closed
        change = payment.credit - payment.captured if self.multi_vend else 0
        self._log(
            {
                "op": "close",
                "reference": authorization.reference,
                "amount": change,
                "effect": EFFECT_REPEAT if repeat else EFFECT_DONE,
            }
        )
        if not self.multi_vend or repeat:
            return None
        return Money(change, authorization.amount.currency)

    def _payment(self, authorization: Authorization) -> _Payment:
        payment = self.payments.get(authorization.reference)
        if payment is None:
            raise PaymentError(f"unknown payment reference {authorization.reference!r}")
        return payment


class InstantCashProvider(InstantPaymentProvider):
    """A pretend coin changer: inserted credit pays one or more vends; NOT REAL MONEY."""

    platform: ClassVar[str] = "instant_cash"
    methods: ClassVar[frozenset[PaymentMethod]] = frozenset({PaymentMethod.cash})
    multi_vend: ClassVar[bool] = True
    OPTIONS: ClassVar[Mapping[Any, Any]] = {
        **InstantPaymentProvider.OPTIONS,
        vol.Optional("insert", default=0): cv.money_minor_units,
    }

    def __init__(self, hub: Hub, machine_id: str, options: Mapping[str, Any]) -> None:
        super().__init__(hub, machine_id, options)
        self.insert = int(options.get("insert", 0))

    def _credit_for(self, request: PaymentRequest) -> int:
        return max(self.insert, request.amount.amount)


def read_ledger(path: Path | str) -> list[dict[str, Any]]:
    """The records an instant provider wrote to its ``ledger_file``."""
    file = Path(path)
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
