"""Coins and bills as a PaymentProvider: the MDB coin changer and bill validator together.

While a payment is authorized the changer and validator accept money and are polled; each
coin (to a tube or the cash box) and each bill adds to the credit, shown to the customer as
``{"step": "insert_cash", "credit": …}``. A bill waits in escrow: it is stacked as soon as its
value is needed to reach the price; the bill that completes the price stays in escrow until
capture, so a failed vend hands the very bill back. Capture keeps the money; close pays the
change out of the tubes (largest coins first) and reports what the tubes actually paid; void
returns the credit (the escrowed bill back, the rest in coins). One authorization may pay
several vends (``multi_vend``): captures add up until close, each counted once per vend
session (``details.session_id`` of a multi-vend authorization, else the reference).

Every session's amounts are committed to ``<config>/.storage/mdb_cash.db`` (``cash_store.py``)
before the engine hears of them: a coin's credit before it is shown, the authorization and a
capture before they return, a payout's intent (the tube levels before it) before the first
coin is dispensed. A hub killed with credit in the machine therefore finds it again at start:
void, close and ``async_release_session`` pay it back (or the change) and capture works, each
exactly once. A payout cut off half way is settled from the tube levels: what the tubes lost
since the intent was paid. A bill left in escrow is handed back; when the validator no longer
holds it, the last command it was given decides where it went (a validator stacks only when
told to; on its own it only returns a bill).

Tube levels and cash-box totals are kept for cash accounting (``cash_totals``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import voluptuous as vol

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
    session_of,
)

from . import bill_validator as bv
from . import coin_changer as cc
from .adapter import (
    DEFAULT_BAUDRATE,
    AdapterError,
    MdbAdapter,
    async_acquire_adapter,
    async_release_adapter,
)
from .cash_store import CashStore, CashStoreError
from .scaling import currency_matches

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

_positive = vol.All(vol.Coerce(float), vol.Range(min=0.01))

CASH_OPTIONS: dict[Any, Any] = {
    vol.Required("port"): vol.All(str, vol.Length(min=1)),
    vol.Optional("baudrate", default=DEFAULT_BAUDRATE): vol.All(int, vol.Range(min=1200)),
    vol.Optional("coin_changer", default=True): bool,
    vol.Optional("bill_validator", default=True): bool,
    vol.Optional("reply_timeout", default=2.0): _positive,
    vol.Optional("poll_interval", default=0.1): _positive,
    vol.Optional("insert_timeout", default=300.0): _positive,
    vol.Optional("payout_timeout", default=30.0): _positive,
}


class _State(StrEnum):
    pending = "pending"
    authorized = "authorized"
    captured = "captured"
    voided = "voided"
    declined = "declined"
    failed = "failed"


_STATUS = {
    _State.pending: PaymentStatus.pending,
    _State.authorized: PaymentStatus.authorized,
    _State.captured: PaymentStatus.captured,
    _State.voided: PaymentStatus.voided,
    _State.declined: PaymentStatus.declined,
    _State.failed: PaymentStatus.failed,
}


@dataclass(slots=True)
class _CashSession:
    reference: str
    price: Money
    state: _State = _State.pending
    coins: int = 0
    """Minor units from coins (tubes and cash box)."""
    stacked: int = 0
    """Minor units from bills in the stacker."""
    escrow_type: int | None = None
    escrow_value: int = 0
    stacking: bool = False
    """ESCROW stack was (about to be) sent; the stacked report has not come yet."""
    returning: bool = False
    """ESCROW return was (about to be) sent; the returned report has not come yet."""
    captured: int = 0
    captures: dict[str, int] = field(default_factory=dict)
    """Vend session → what its capture took (a repeated capture takes nothing)."""
    refunded: int = 0
    """Captured money paid back by ``async_refund``."""
    paid_out: int = 0
    """Coins paid out of the tubes for this session (change or returned credit)."""
    bill_returned: int = 0
    shortfall: int = 0
    """What was owed to the customer but the tubes could not pay."""
    bill_change: int = 0
    """The escrowed bill handed back as change at close."""
    payout: dict[str, Any] | None = None
    """A payout under way: ``{"due": minor units, "before": tube counts}``."""
    closed: bool = False
    change: Money | None = None

    def as_data(self) -> dict[str, Any]:
        """What the cash store keeps (JSON)."""
        return {
            "price": self.price.amount,
            "currency": self.price.currency,
            "state": self.state.value,
            "coins": self.coins,
            "stacked": self.stacked,
            "escrow_type": self.escrow_type,
            "escrow_value": self.escrow_value,
            "stacking": self.stacking,
            "returning": self.returning,
            "captured": self.captured,
            "captures": dict(self.captures),
            "refunded": self.refunded,
            "paid_out": self.paid_out,
            "bill_returned": self.bill_returned,
            "shortfall": self.shortfall,
            "bill_change": self.bill_change,
            "payout": self.payout,
            "closed": self.closed,
            "change": self.change.amount if self.change is not None else None,
        }

    @classmethod
    def from_data(cls, reference: str, data: Mapping[str, Any]) -> _CashSession:
        currency = str(data["currency"])
        change = data.get("change")
        return cls(
            reference=reference,
            price=Money(int(data["price"]), currency),
            state=_State(data["state"]),
            coins=int(data["coins"]),
            stacked=int(data["stacked"]),
            escrow_type=data.get("escrow_type"),
            escrow_value=int(data.get("escrow_value") or 0),
            stacking=bool(data.get("stacking")),
            returning=bool(data.get("returning")),
            captured=int(data.get("captured") or 0),
            captures={str(k): int(v) for k, v in (data.get("captures") or {}).items()},
            refunded=int(data.get("refunded") or 0),
            paid_out=int(data.get("paid_out") or 0),
            bill_returned=int(data.get("bill_returned") or 0),
            shortfall=int(data.get("shortfall") or 0),
            bill_change=int(data.get("bill_change") or 0),
            payout=data.get("payout"),
            closed=bool(data.get("closed")),
            change=Money(int(change), currency) if change is not None else None,
        )

    @property
    def credit(self) -> int:
        return self.coins + self.stacked + self.escrow_value

    @property
    def kept(self) -> int:
        """Credit already in the machine (not counting a bill still in escrow)."""
        return self.coins + self.stacked


@dataclass(slots=True)
class CashTotals:
    """What the machine holds, for cash accounting (values in minor units)."""

    currency: str
    tubes: dict[int, int] = field(default_factory=dict)
    """Coin value → coins in its tube (as the changer last reported)."""
    cash_box_coins: Counter[int] = field(default_factory=Counter)
    """Coin value → coins routed to the cash box since start."""
    bills_stacked: Counter[int] = field(default_factory=Counter)
    """Bill value → bills stacked since start."""
    coins_paid_out: Counter[int] = field(default_factory=Counter)
    """Coin value → coins paid out of the tubes since start."""

    @property
    def tubes_value(self) -> int:
        return sum(value * count for value, count in self.tubes.items())

    @property
    def cash_box_value(self) -> int:
        coins = sum(value * count for value, count in self.cash_box_coins.items())
        return coins + sum(value * count for value, count in self.bills_stacked.items())

    def as_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "tubes": dict(self.tubes),
            "tubes_value": self.tubes_value,
            "cash_box_coins": dict(self.cash_box_coins),
            "bills_stacked": dict(self.bills_stacked),
            "cash_box_value": self.cash_box_value,
            "coins_paid_out": dict(self.coins_paid_out),
        }


class MdbCashProvider(PaymentProvider):
    """Coin changer and bill validator on the MDB bus."""

    platform: ClassVar[str] = "mdb_cash"
    methods: ClassVar[frozenset[PaymentMethod]] = frozenset({PaymentMethod.cash})
    multi_vend: ClassVar[bool] = True
    OPTIONS: ClassVar[Mapping[Any, Any]] = CASH_OPTIONS

    def __init__(self, hub: Hub, machine_id: str, options: Mapping[str, Any]) -> None:
        config = vol.Schema(CASH_OPTIONS, extra=vol.REMOVE_EXTRA)(dict(options))
        if not config["coin_changer"] and not config["bill_validator"]:
            raise vol.Invalid("an mdb_cash provider needs a coin changer, a bill validator or both")
        super().__init__(hub, machine_id, config)
        self._config = config
        self.currency = hub.config.currency
        self._adapter: MdbAdapter | None = None
        self.changer: cc.CoinChanger | None = None
        self.validator: bv.BillValidator | None = None
        self._ready = False
        self._sessions: dict[str, _CashSession] = {}
        self._store = CashStore.for_hub(hub, machine_id)
        self._store_loaded = False
        self._lock = asyncio.Lock()
        self._totals = CashTotals(self.currency)
        self._poll_task: asyncio.Future[bool] | None = None

    # --- cash accounting ---------------------------------------------------------------

    def cash_totals(self) -> CashTotals:
        """Tube levels and cash-box totals as last known (see ``async_read_tubes``)."""
        if self.changer is not None and self.changer.setup is not None:
            self._totals.tubes = {
                self._coin_value(n): count
                for n, count in enumerate(self.changer.tubes.counts)
                if self.changer.setup.coin_credits[n] and self.changer.setup.routable(n)
            }
        return self._totals

    async def async_read_tubes(self) -> dict[int, int]:
        """Ask the changer for its tube status now; coin value → coins in the tube."""
        async with self._lock:
            await self._async_ensure_ready()
            if self.changer is not None:
                await self.changer.async_read_tubes()
        return self.cash_totals().tubes

    # --- the provider ------------------------------------------------------------------

    async def async_start(self) -> None:
        async with self._lock:
            await self._async_ensure_ready()

    async def async_stop(self) -> None:
        adapter, self._adapter = self._adapter, None
        self._ready = False
        if adapter is not None:
            await async_release_adapter(self.hub, adapter)
        await self._store.async_close()
        self._store_loaded = False

    async def async_authorize(
        self, request: PaymentRequest, progress: ProgressCallback
    ) -> Authorization:
        reference = f"mdb-cash-{request.session_id}"
        known = self._sessions.get(reference)
        if known is not None and known.state is _State.authorized:
            return self._authorization(reference, request.method, known)
        if request.amount.currency != self.currency:
            raise PaymentError(f"the cash devices take {self.currency}, not {request.amount}")
        async with self._lock:
            await self._async_ensure_ready()
            session = self._sessions.get(reference)
            if session is None or session.state is not _State.pending:
                session = _CashSession(reference, price=request.amount)
                self._sessions[reference] = session
                await self._async_save(session)  # before any coin can come
            try:
                await self._async_collect(session, progress)
            except asyncio.CancelledError:
                await asyncio.shield(self._async_end_unpaid(session, _State.voided))
                raise
            except TimeoutError:
                await asyncio.shield(self._async_end_unpaid(session, _State.declined))
                raise PaymentDeclined(
                    "expired",
                    f"not enough cash within {self._config['insert_timeout']:g} s; "
                    "the credit was returned",
                ) from None
            except BaseException:
                await asyncio.shield(self._async_end_unpaid(session, _State.failed))
                raise
            session.state = _State.authorized
            await self._async_save(session)
        return self._authorization(reference, request.method, session)

    async def async_capture(self, authorization: Authorization, amount: Money) -> None:
        session = self._known(authorization)
        key = session_of(authorization)
        if key in session.captures:
            return  # captured before (a repeat after a restart)
        if session.state not in (_State.authorized, _State.captured) or session.closed:
            raise PaymentError(f"cannot capture {authorization.reference}: it is {session.state}")
        if amount.currency != self.currency or amount.amount < 0:
            raise PaymentError(f"cannot capture {amount} from a {self.currency} credit")
        if session.captured + amount.amount > session.credit:
            raise PaymentError(
                f"cannot capture {amount}: the credit is {session.credit} and "
                f"{session.captured} of it was captured already"
            )
        async with self._lock:
            if session.escrow_value and session.kept < session.captured + amount.amount:
                await self._async_stack_escrow(session)
            session.captured += amount.amount
            session.captures[key] = amount.amount
            session.state = _State.captured
            await self._async_save(session)

    async def async_void(self, authorization: Authorization) -> None:
        session = self._known(authorization)
        owed = session.escrow_value or session.kept - session.captured - session.paid_out > 0
        if session.state in (_State.voided, _State.declined) and not owed:
            return
        if session.state is _State.captured:
            raise PaymentError(
                f"{authorization.reference} was captured; close it to pay the change, "
                "or refund the captured amount"
            )
        async with self._lock:
            await self._async_give_back(session)
            session.state = _State.voided
            await self._async_save(session)

    async def async_refund(self, authorization: Authorization, amount: Money) -> None:
        session = self._known(authorization)
        refundable = session.captured - session.refunded
        if session.state is not _State.captured or amount.amount > refundable:
            raise PaymentError(
                f"cannot refund {amount} of {authorization.reference}: "
                f"{refundable} minor units captured and not refunded"
            )
        async with self._lock:
            paid = await self._async_pay_out(session, amount.amount, refund=True)
        if paid < amount.amount:
            raise PaymentError(
                f"the coin tubes paid back only {paid} of {amount.amount} minor units "
                f"{self.currency}; the rest is owed to the customer"
            )

    async def async_status(self, authorization: Authorization) -> PaymentStatus:
        session = self._sessions.get(authorization.reference)
        return PaymentStatus.unknown if session is None else _STATUS[session.state]

    async def async_close(self, authorization: Authorization) -> Money | None:
        """Pay the change (credit - captured) from the tubes; the change actually paid.

        After a void, the coins its return of the credit paid out.
        """
        session = self._known(authorization)
        if session.closed:
            return session.change
        async with self._lock:
            if session.state is _State.captured:
                # What change was paid before (a close cut off by a restart) counts.
                due = session.credit - session.captured - (session.paid_out - session.refunded)
                if session.escrow_value and due >= session.escrow_value:
                    value = session.escrow_value
                    await self._async_return_escrow(session)  # the bill itself as change
                    session.bill_change += value
                    due -= value
                elif session.escrow_value:
                    await self._async_stack_escrow(session)
                if due > 0:
                    await self._async_pay_out(session, due)
                coins = session.paid_out - session.refunded
                session.change = Money(session.bill_change + coins, self.currency)
            else:
                if session.state is _State.authorized:
                    await self._async_give_back(session)
                    session.state = _State.voided
                session.change = Money(session.paid_out, self.currency)
            session.closed = True
            await self._async_save(session)
        if session.shortfall:
            _LOGGER.error(
                "Payment %s: the tubes could not pay %d minor units %s owed to the customer",
                authorization.reference,
                session.shortfall,
                self.currency,
            )
        return session.change

    async def async_release_session(self, session_id: str, amount: Money) -> None:
        """Give back the credit of an authorize cut off by a restart (the coins and bills the
        customer inserted before the hub died, known from the cash store)."""
        reference = f"mdb-cash-{session_id}"
        session = self._sessions.get(reference)
        if session is None or session.closed:
            return  # nothing was inserted, or it was given back already
        if session.captures:
            raise PaymentError(
                f"{reference} was captured; an authorize its caller never saw cannot have been"
            )
        async with self._lock:
            await self._async_ensure_ready()
            await self._async_end_unpaid(session, _State.voided)
        _LOGGER.warning(
            "Payment %s, cut off by a restart: %d minor units %s given back to the customer",
            reference,
            session.paid_out + session.bill_returned,
            self.currency,
        )
        if session.shortfall:
            _LOGGER.error(
                "Payment %s: the tubes could not pay %d minor units %s owed to the customer",
                reference,
                session.shortfall,
                self.currency,
            )

    # --- internals ---------------------------------------------------------------------

    def _known(self, authorization: Authorization) -> _CashSession:
        session = self._sessions.get(authorization.reference)
        if session is None:
            raise PaymentError(f"the cash provider does not know {authorization.reference}")
        return session

    def _authorization(
        self, reference: str, method: PaymentMethod, session: _CashSession
    ) -> Authorization:
        return Authorization(
            provider=self.platform,
            method=method,
            reference=reference,
            amount=session.price,
            credit=Money(session.credit, self.currency),
            details={
                "coins": session.coins,
                "bills_stacked": session.stacked,
                "bill_in_escrow": session.escrow_value,
            },
        )

    def _coin_value(self, coin_type: int) -> int:
        assert self.changer is not None and self.changer.setup is not None
        setup = self.changer.setup
        return setup.scaling.from_units(setup.coin_credits[coin_type], self.currency).amount

    def _bill_value(self, bill_type: int) -> int:
        assert self.validator is not None and self.validator.setup is not None
        setup = self.validator.setup
        return setup.scaling.from_units(setup.bill_credits[bill_type], self.currency).amount

    async def _async_save(self, session: _CashSession) -> None:
        try:
            await self._store.async_save(
                session.reference, session.as_data(), closed=session.closed
            )
        except CashStoreError as error:
            raise PaymentError(str(error)) from error

    async def _async_load_store(self) -> None:
        """The sessions a previous run left (once per start)."""
        if self._store_loaded:
            return
        try:
            stored = await self._store.async_open()
        except CashStoreError as error:
            raise PaymentError(str(error)) from error
        for reference, data in stored.items():
            if reference not in self._sessions:
                self._sessions[reference] = _CashSession.from_data(reference, data)
        self._store_loaded = True
        for session in self._sessions.values():
            if not session.closed and session.kept + session.escrow_value > 0:
                _LOGGER.warning(
                    "Payment %s (%s) from before the restart holds %d minor units %s of the "
                    "customer's cash; the vend engine settles it",
                    session.reference,
                    session.state,
                    session.credit - session.captured - (session.paid_out - session.refunded),
                    self.currency,
                )

    async def _async_ensure_ready(self) -> None:
        await self._async_load_store()
        if self._ready:
            return
        if self._adapter is None:
            self._adapter = await async_acquire_adapter(
                self.hub, self._config["port"], self._config["baudrate"]
            )
        timeout = self._config["reply_timeout"]
        await self._adapter.async_ensure_master_mode(timeout)
        if self._config["coin_changer"]:
            self.changer = cc.CoinChanger(self._adapter, timeout)
            setup = await self.changer.async_initialise()
            self._check_currency("coin changer", setup.currency_code)
        if self._config["bill_validator"]:
            self.validator = bv.BillValidator(self._adapter, timeout)
            bill_setup = await self.validator.async_initialise()
            self._check_currency("bill validator", bill_setup.currency_code)
        self._ready = True
        for session in self._sessions.values():
            if session.payout is not None and self.changer is not None:
                await self._async_settle_payout(session, finished=False)

    def _check_currency(self, device: str, code: int) -> None:
        if currency_matches(code, self.currency) is False:
            raise PaymentError(f"the {device} works in MDB currency {code}, not {self.currency}")

    async def _async_accept(self, accept: bool) -> None:
        if self.changer is not None:
            await self.changer.async_enable(accept)
        if self.validator is not None:
            await self.validator.async_enable(accept)

    async def _async_collect(self, session: _CashSession, progress: ProgressCallback) -> None:
        price = session.price.amount
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config["insert_timeout"]
        await self._async_accept(True)
        progress({"step": "insert_cash", "credit": 0})
        while session.credit < price:
            if loop.time() > deadline:
                raise TimeoutError
            if await self._async_poll_shielded(session):
                progress({"step": "insert_cash", "credit": session.credit})
            if session.credit < price:
                await asyncio.sleep(self._config["poll_interval"])
        await self._async_accept(False)
        # A coin already in the acceptor when it was disabled still arrives.
        if await self._async_poll_shielded(session):
            progress({"step": "insert_cash", "credit": session.credit})

    async def _async_poll_shielded(self, session: _CashSession) -> bool:
        """Poll once; a cancellation does not lose the reply (``_async_give_back`` waits)."""
        task = asyncio.ensure_future(self._async_poll_once(session))
        self._poll_task = task
        return await asyncio.shield(task)

    async def _async_poll_once(self, session: _CashSession) -> bool:
        """Poll both devices once; True when the credit changed (committed by then)."""
        before = session.credit
        saved = session.as_data()
        if self.changer is not None:
            for event in await self.changer.async_poll():
                self._on_changer_event(session, event)
            if session.as_data() != saved:
                await self._async_save(session)
                saved = session.as_data()
        if self.validator is not None:
            for event in await self.validator.async_poll():
                await self._async_on_validator_event(session, event)
        if session.as_data() != saved:
            await self._async_save(session)
        return session.credit != before

    def _on_changer_event(self, session: _CashSession, event: cc.ChangerEvent) -> None:
        if isinstance(event, cc.CoinDeposited):
            value = self._coin_value(event.coin_type)
            if event.routing == cc.ROUTE_TUBES:
                session.coins += value
            elif event.routing == cc.ROUTE_CASH_BOX:
                session.coins += value
                self._totals.cash_box_coins[value] += 1
            else:
                _LOGGER.info("Coin of %d minor units rejected by the changer", value)
        elif isinstance(event, cc.CoinsDispensedManually):
            self._totals.coins_paid_out[self._coin_value(event.coin_type)] += event.count
        elif isinstance(event, cc.ChangerStatus):
            if event.code not in (cc.STATUS_PAYOUT_BUSY, cc.STATUS_CHANGER_BUSY):
                _LOGGER.warning("Coin changer: %s", event.name)
        elif isinstance(event, cc.Slug):
            _LOGGER.info("Coin changer: %d slug(s) rejected", event.count)

    async def _async_on_validator_event(
        self, session: _CashSession, event: bv.ValidatorEvent
    ) -> None:
        assert self.validator is not None
        if isinstance(event, bv.BillRouted):
            value = self._bill_value(event.bill_type)
            if event.routing == bv.ROUTE_ESCROW:
                if session.escrow_value:
                    _LOGGER.warning("A second bill reported in escrow; returning it")
                    await self.validator.async_escrow(stack=False)
                elif session.credit >= session.price.amount:
                    await self.validator.async_escrow(stack=False)  # not needed any more
                else:
                    session.escrow_type, session.escrow_value = event.bill_type, value
                    await self._async_save(session)
                    if session.credit < session.price.amount:
                        await self._async_stack_escrow(session)  # needed, and more to come
            elif event.routing == bv.ROUTE_STACKED:
                self._on_bill_stacked(session, event.bill_type, value)
            elif event.routing == bv.ROUTE_RETURNED:
                if session.escrow_type == event.bill_type and session.escrow_value:
                    self._on_bill_returned(session)
            else:
                _LOGGER.info("Bill of %d minor units: routing %d", value, event.routing)
        elif isinstance(event, bv.ValidatorStatus):
            _LOGGER.warning("Bill validator: %s", event.name)

    def _on_bill_stacked(self, session: _CashSession, bill_type: int, value: int) -> None:
        self._totals.bills_stacked[value] += 1
        if session.escrow_value and session.escrow_type == bill_type:
            session.escrow_type, session.escrow_value = None, 0
            session.stacking = session.returning = False
        session.stacked += value

    def _on_bill_returned(self, session: _CashSession) -> None:
        session.bill_returned += session.escrow_value
        session.escrow_type, session.escrow_value = None, 0
        session.stacking = session.returning = False

    def _on_escrow_empty(self, session: _CashSession) -> None:
        """The validator holds no bill in escrow (``invalid escrow request``) though this
        session had one: a restart came between the command and its report. A validator
        stacks only when told to, so the bill was stacked if a stack was asked for, and
        otherwise returned to the customer."""
        _LOGGER.warning(
            "Payment %s: the bill of %d minor units is no longer in escrow; counted as %s",
            session.reference,
            session.escrow_value,
            "stacked" if session.stacking else "returned",
        )
        if session.stacking:
            assert session.escrow_type is not None
            self._on_bill_stacked(session, session.escrow_type, session.escrow_value)
        else:
            self._on_bill_returned(session)

    async def _async_stack_escrow(self, session: _CashSession) -> None:
        """ESCROW stack, then poll until the validator reports the bill stacked."""
        assert self.validator is not None
        bill_type = session.escrow_type
        if not session.stacking or session.returning:
            session.stacking, session.returning = True, False
            await self._async_save(session)  # the intent first: it says where the bill went
        await self.validator.async_escrow(stack=True)
        try:
            async with asyncio.timeout(self._config["reply_timeout"] * 5):
                while session.escrow_value and session.escrow_type == bill_type:
                    for event in await self.validator.async_poll():
                        if isinstance(event, bv.BillRouted) and event.bill_type == bill_type:
                            if event.routing == bv.ROUTE_STACKED:
                                self._on_bill_stacked(
                                    session, bill_type, self._bill_value(bill_type)
                                )
                            elif event.routing == bv.ROUTE_RETURNED:
                                self._on_bill_returned(session)
                                await self._async_save(session)
                                raise AdapterError("the bill validator returned the bill")
                        elif _escrow_empty(event) and session.escrow_value:
                            self._on_escrow_empty(session)
                    if session.escrow_value:
                        await asyncio.sleep(self._config["poll_interval"])
        except TimeoutError:
            raise AdapterError("the bill validator did not report the bill stacked") from None
        await self._async_save(session)

    async def _async_give_back(self, session: _CashSession) -> None:
        """Return the escrowed bill and pay the rest of the credit out in coins."""
        task, self._poll_task = self._poll_task, None
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await task  # its coins count, so they are given back too
        with contextlib.suppress(PaymentError):
            await self._async_accept(False)
        if session.escrow_value:
            if session.stacking:
                await self._async_stack_escrow(session)  # too late to hand it back
            else:
                await self._async_return_escrow(session)
        due = session.kept - session.captured - session.paid_out
        if due > 0:
            await self._async_pay_out(session, due)

    async def _async_end_unpaid(self, session: _CashSession, state: _State) -> None:
        """An authorize that did not end in an authorization: give the credit back, close."""
        session.state = state
        await self._async_give_back(session)
        session.change = Money(session.paid_out, self.currency)
        session.closed = True
        await self._async_save(session)

    async def _async_return_escrow(self, session: _CashSession) -> None:
        """ESCROW return, then poll until the validator reports the bill returned."""
        assert self.validator is not None
        if not session.returning:
            session.returning = True
            await self._async_save(session)  # the intent first: it says where the bill went
        await self.validator.async_escrow(stack=False)
        try:
            async with asyncio.timeout(self._config["reply_timeout"] * 5):
                while session.escrow_value:
                    for event in await self.validator.async_poll():
                        if _escrow_empty(event) and session.escrow_value:
                            self._on_escrow_empty(session)
                        else:
                            await self._async_on_validator_event(session, event)
                    if session.escrow_value:
                        await asyncio.sleep(self._config["poll_interval"])
        except TimeoutError:
            raise AdapterError("the bill validator did not report the bill returned") from None
        await self._async_save(session)

    async def _async_pay_out(
        self, session: _CashSession, amount: int, *, refund: bool = False
    ) -> int:
        """Pay ``amount`` minor units of ``session`` from the tubes, largest coins first; what
        was paid, added to the session's ``paid_out`` (and ``refunded``) and committed.

        What was paid is measured: the tube status before and after the payout. The levels
        before are committed first, so a payout cut off by a restart is settled from them.
        """
        if amount <= 0:
            return 0
        if self.changer is None or self.changer.setup is None:
            session.shortfall += amount
            await self._async_save(session)
            return 0
        before = list((await self.changer.async_read_tubes()).counts)
        session.payout = {"due": amount, "before": before, "refund": refund}
        await self._async_save(session)
        remaining = amount
        for coin_type in self._payout_types():
            value = self._coin_value(coin_type)
            count = min(remaining // value, before[coin_type])
            while count > 0:
                batch = min(count, cc.MAX_COINS_PER_DISPENSE)
                await self.changer.async_dispense(coin_type, batch, self._config["payout_timeout"])
                count -= batch
                remaining -= batch * value
        return await self._async_settle_payout(session)

    def _payout_types(self) -> list[int]:
        """Coin types the changer pays from, largest value first."""
        assert self.changer is not None and self.changer.setup is not None
        setup = self.changer.setup
        return sorted(
            (n for n, credit in enumerate(setup.coin_credits) if credit and setup.routable(n)),
            key=self._coin_value,
            reverse=True,
        )

    async def _async_settle_payout(self, session: _CashSession, *, finished: bool = True) -> int:
        """End the payout under way: what the tubes lost since its intent was paid; counted
        and committed. ``finished`` False: a restart cut it off, and what it did not pay is
        still owed (not a shortfall): whoever pays the session out next pays it."""
        payout = session.payout
        assert payout is not None and self.changer is not None
        before: list[int] = list(payout["before"])
        after = (await self.changer.async_read_tubes()).counts
        paid = 0
        for coin_type in self._payout_types():
            coins = max(0, before[coin_type] - after[coin_type])
            if coins:
                value = self._coin_value(coin_type)
                self._totals.coins_paid_out[value] += coins
                paid += coins * value
        due = int(payout["due"])
        session.paid_out += paid
        if payout.get("refund"):
            session.refunded += paid
        if finished:
            session.shortfall += max(0, due - paid)
        session.payout = None
        await self._async_save(session)
        return paid


def _escrow_empty(event: bv.ValidatorEvent) -> bool:
    """The validator's answer to an ESCROW command while it holds no bill."""
    return isinstance(event, bv.ValidatorStatus) and event.code == bv.STATUS_INVALID_ESCROW
