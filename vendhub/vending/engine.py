"""The vend engine of one local machine: runs vend sessions against its board and providers.

    engine = VendEngine(hub, machine, journal)
    await engine.async_start()          # resolves what the journal left unfinished
    session = await engine.async_select(slot="A1", method="card", token=None, context=None)
    final = await engine.async_wait(session.id, timeout=30)
    await engine.async_cancel(session.id)

One session runs at a time per machine (a vending machine serves one customer): select →
stock and mode check → authorize → dispense → drop confirmed → capture → record. Any failure
after authorization voids (or refunds what was captured) and raises an alarm. Every step is
journalled before and after (``vendhub.vending.journal``) and is an event on the bus with the
session's one context. States, outcome codes and the restart rules: docs/vending.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vendhub.const import (
    EVENT_MONEY_RECORDED,
    EVENT_PAYMENT_DECLINED,
    EVENT_PAYMENT_REFUNDED,
    EVENT_STOCK_REFILLED,
    EVENT_VEND_COMPLETED,
    EVENT_VEND_FAILED,
    EVENT_VEND_STARTED,
)
from vendhub.core.context import Context
from vendhub.helpers.alarms import async_raise_alarm
from vendhub.util.dt import utcnow
from vendhub.util.timeouts import SharedTimeout
from vendhub.vending.dispenser import (
    DispenseOutcome,
    Dispenser,
    DispenserError,
    DispenseResult,
)
from vendhub.vending.journal import JournalEntry, VendJournal
from vendhub.vending.money import Money
from vendhub.vending.outcomes import (
    EVENT_PAYMENT_AUTHORIZED,
    EVENT_PAYMENT_CAPTURED,
    EVENT_PAYMENT_VOIDED,
    EVENT_VEND_SESSION_UPDATED,
    EVENT_VENDING_MODE_CHANGED,
    ledger_data,
    ledger_event,
    payment_data,
)
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
from vendhub.vending.planogram import MachineMode, SlotPlan, check_planogram
from vendhub.vending.session import SessionState, VendOutcome, VendRefused, VendSession

if TYPE_CHECKING:
    from vendhub.core.events import Event
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

# Where the recorder keeps itself in hub.data (vendhub.recorder.recorder.DATA_RECORDER); read
# by name so that the engine does not import the recorder and its database drivers.
_DATA_RECORDER = "recorder"
SESSIONS_IN_MEMORY = 16
"""Finished sessions kept in memory per machine (``session()`` reads older ones from the
journal). Few: a running hub whose memory stops growing never runs the garbage collector's
full collections, which stall the event loop for milliseconds (docs/vending.md, "Performance")."""
_CAPTURE_ATTEMPTS = 3
_RELEASE_STARTS = 3
"""Starts at which a release of a payment cut off while authorizing is tried before giving up."""

_BEFORE_THE_DROP = frozenset(
    {
        SessionState.selected,
        SessionState.authorizing,
        SessionState.authorized,
        SessionState.dispensing,
    }
)
"""States of a running session whose item has not left its slot for sure (the stock goes down
at ``dispensed``): a count of its slot is refused meanwhile (``async_restock``)."""

Pricing = Callable[[str, str, int, datetime], int]
"""``pricing(slot, product, planned_price, moment)``: the price in force then."""
StockListener = Callable[[str, int, Context | None], None]
ModeListener = Callable[[MachineMode, Context | None], None]
PlanListener = Callable[[str, SlotPlan, Context | None], None]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds each waiting step may take."""

    payment: float = 60.0
    """The customer pays (card presented, QR scanned, cash inserted)."""
    dispense: float = 30.0
    """The board drops the product and the drop sensor confirms."""
    capture: float = 20.0
    """One attempt to take the held money (three attempts are made)."""
    void: float = 20.0
    """One attempt to release held money or refund taken money."""
    multi_vend: float = 30.0
    """Credit left by a multi-vend provider (inserted cash) waits this long for the next
    selection before it is paid out."""

    def __post_init__(self) -> None:
        for name in ("payment", "dispense", "capture", "void", "multi_vend"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"timeout {name} must be a number of seconds > 0, got {value!r}")


@dataclass(slots=True)
class MachineSetup:
    """A local vending machine: its plan, stock, mode, board and ways to pay."""

    machine_id: str
    currency: str
    planogram: Mapping[str, SlotPlan]
    stock: dict[str, int]
    """Items per slot at start; the journal's figures win after the first vend."""
    dispenser: Dispenser
    providers: Sequence[PaymentProvider] = ()
    mode: MachineMode = MachineMode.normal
    timeouts: Timeouts = field(default_factory=Timeouts)
    name: str | None = None
    pricing: Pricing | None = None
    """The price in force of a slot at a moment (time-of-day price lists), from its planned
    price; None: the planogram's prices."""

    def __post_init__(self) -> None:
        check_planogram(self.planogram, self.stock)
        Money(0, self.currency)  # validates the currency code


@dataclass(slots=True)
class _OpenCredit:
    """Multi-vend: an authorization with credit left, waiting for the next selection."""

    session_id: str
    provider: PaymentProvider
    authorization: Authorization
    remaining: Money
    timer: asyncio.TimerHandle | None = None


class VendEngine:
    """Runs the vend sessions of one local machine."""

    def __init__(self, hub: Hub, machine: MachineSetup, journal: VendJournal) -> None:
        self.hub = hub
        self.machine = machine
        self.journal = journal
        self.machine_id = machine.machine_id
        self.mode = machine.mode
        self.stock: dict[str, int] = {code: 0 for code in machine.planogram}
        self.stock.update(machine.stock)
        self._providers: dict[PaymentMethod, PaymentProvider] = {}
        for provider in machine.providers:
            for method in provider.methods:
                self._providers.setdefault(method, provider)
        self._sessions: dict[str, VendSession] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._paying: dict[str, asyncio.Task[Any]] = {}
        """Sessions whose task waits for the provider's authorize now (``async_cancel``
        cancels that wait)."""
        self._cancel_requested: set[str] = set()
        self._active: str | None = None
        self._open_credit: _OpenCredit | None = None
        self._stock_listeners: list[StockListener] = []
        self._mode_listeners: list[ModeListener] = []
        self._plan_listeners: list[PlanListener] = []
        self._awaiting_record: set[str] = set()
        # Result steps journalled with the next step's "begin" (nothing external between).
        self._unjournalled: dict[str, list[tuple[str, str, str | None]]] = {}
        self._unjournalled_stock: dict[str, tuple[str, int]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._started = False
        # The waits of every session, each with one timer for all sessions (not one a wait).
        self._payment_timeout = SharedTimeout(machine.timeouts.payment)
        self._dispense_timeout = SharedTimeout(machine.timeouts.dispense)
        self._capture_timeout = SharedTimeout(machine.timeouts.capture)
        self._close_timeout = SharedTimeout(machine.timeouts.void)
        self.resolved_after_restart: list[VendSession] = []
        """Sessions that ``async_start`` found unfinished and resolved (for tests, logs)."""
        self.plan_owner: str | None = None
        """Who else owns the slots' plan (``"uplink"``: the fleet hub, set while the uplink
        links the machine); ``vending.set_slots`` refuses then, so the two cannot disagree."""

    # ---- lifecycle ----------------------------------------------------------------------

    async def async_start(self) -> None:
        """Open the board and providers, then resolve what the journal left unfinished."""
        if not self.journal.is_open:
            await self.journal.async_open()
        self.stock.update(self.journal.stock(self.machine_id))
        saved = self.journal.mode(self.machine_id)
        if saved is not None and saved[1] == self.machine.mode.value:
            # Set while the hub ran (a service, the fleet); an edited configuration wins.
            self.mode = MachineMode(saved[0])
        self._unsubscribe = self.hub.bus.async_listen(EVENT_MONEY_RECORDED, self._on_money_recorded)
        await self.machine.dispenser.async_start()
        for provider in self.machine.providers:
            await provider.async_start()
        self._started = True
        for entry in self.journal.unresolved(self.machine_id):
            try:
                await self._async_resolve(entry)
            except Exception:
                _LOGGER.exception(
                    "Could not resolve vend session %s of %s after a restart; it stays in "
                    "the journal and is tried again at the next start",
                    entry.session.id,
                    self.machine_id,
                )

    async def async_stop(self) -> None:
        """Let running sessions end where they can; close the board and providers.

        A session still waiting for the customer is cancelled (nothing charged); one past
        authorization is left to finish for up to its timeouts; the journal resolves whatever
        is cut short at the next start.
        """
        for session_id in list(self._paying):
            await self.async_cancel(session_id)
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=5)
        if self._open_credit is not None:
            await self._async_close_credit()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for provider in self.machine.providers:
            try:
                await provider.async_stop()
            except Exception:
                _LOGGER.exception("Payment provider %s did not stop cleanly", provider.platform)
        try:
            await self.machine.dispenser.async_stop()
        except Exception:
            _LOGGER.exception("Dispenser of %s did not stop cleanly", self.machine_id)
        for timeout in (
            self._payment_timeout,
            self._dispense_timeout,
            self._capture_timeout,
            self._close_timeout,
        ):
            timeout.close()
        self._started = False

    # ---- what callers use ---------------------------------------------------------------

    def session(self, session_id: str) -> VendSession | None:
        """The latest snapshot of a session of this machine, or None: from memory for the
        latest sessions, else as the journal last saw it (older ones, and those of before a
        restart)."""
        snapshot = self._sessions.get(session_id)
        if snapshot is None:
            snapshot = self._journal_session(session_id)
            if snapshot is not None and snapshot.machine_id != self.machine_id:
                return None
        return snapshot

    def price_of(self, slot: str, moment: datetime | None = None) -> int:
        """What ``slot`` costs at ``moment`` (now): its planned price with the price list in
        force applied (``MachineSetup.pricing``)."""
        plan = self.machine.planogram[slot]
        pricing = self.machine.pricing
        if pricing is None:
            return plan.price
        return pricing(slot, plan.product, plan.price, moment or utcnow())

    @property
    def active_session(self) -> VendSession | None:
        return self._sessions.get(self._active) if self._active else None

    def provider_for(self, method: PaymentMethod) -> PaymentProvider | None:
        return self._providers.get(method)

    @property
    def methods(self) -> list[PaymentMethod]:
        return list(self._providers)

    async def async_select(
        self,
        slot: str,
        method: PaymentMethod | str,
        token: str | None = None,
        context: Context | None = None,
    ) -> VendSession:
        """Begin a vend of ``slot`` paid with ``method``; returns the first snapshot.

        Raises ``VendRefused`` (with a ``VendOutcome`` code) for an unknown slot, a sold-out
        slot, a machine that does not sell now, a method no provider serves, or a machine
        busy with another session. The session then runs on its own: follow it with
        ``async_wait`` or the ``vend_session_updated`` events.
        """
        if not self._started:
            raise VendRefused(VendOutcome.out_of_order, f"machine {self.machine_id} is not started")
        plan = self.machine.planogram.get(slot)
        if plan is None:
            raise VendRefused(
                VendOutcome.unknown_slot, f"machine {self.machine_id} has no slot {slot!r}"
            )
        if self.mode is MachineMode.out_of_order:
            raise VendRefused(
                VendOutcome.out_of_order, f"machine {self.machine_id} is out of order"
            )
        if self.mode is MachineMode.service:
            raise VendRefused(
                VendOutcome.service_mode, f"machine {self.machine_id} is in service mode"
            )
        if self.stock.get(slot, 0) <= 0:
            raise VendRefused(VendOutcome.sold_out, f"slot {slot} ({plan.product}) is sold out")
        payment_method = (
            method if isinstance(method, PaymentMethod) else _PAYMENT_METHODS.get(method)
        )
        if payment_method is None:
            raise VendRefused(
                VendOutcome.method_not_accepted,
                f"unknown payment method {method!r}; one of "
                f"{', '.join(item.value for item in PaymentMethod)}",
            )
        free_vend = self.mode is MachineMode.free_vend
        provider = None if free_vend else self._providers.get(payment_method)
        if provider is None and not free_vend:
            accepted = ", ".join(item.value for item in self._providers) or "none"
            raise VendRefused(
                VendOutcome.method_not_accepted,
                f"machine {self.machine_id} does not accept {payment_method.value} "
                f"(accepted: {accepted})",
            )
        if self._active is not None:
            raise VendRefused(
                VendOutcome.busy,
                f"machine {self.machine_id} is busy with session {self._active}",
            )
        price = Money(self.price_of(slot), self.machine.currency)
        credit = self._take_open_credit(payment_method, price)
        if credit is not None:
            provider = credit.provider
        if self._open_credit is not None:
            # A different method, or not enough credit left: pay the credit out first.
            self._active = "closing"
            try:
                await self._async_close_credit()
            finally:
                self._active = None
        paying_now = credit is None and not free_vend
        started_at = time.time()
        session = VendSession(
            id=_new_session_id(),
            machine_id=self.machine_id,
            slot=slot,
            product=plan.product,
            price=price,
            method=payment_method,
            context=context.child() if context is not None else Context(),
            started_at=started_at,
            payment_deadline=started_at + self.machine.timeouts.payment if paying_now else None,
            free_vend=free_vend,
            provider=provider.platform if provider is not None else None,
            stock_after=self.stock[slot],
            state=SessionState.authorizing if paying_now else SessionState.selected,
        )
        self._active = session.id
        self._finished[session.id] = asyncio.Event()
        try:
            if credit is not None:
                authorization = dataclasses.replace(
                    credit.authorization,
                    amount=price,
                    credit=credit.remaining,
                    details={
                        **credit.authorization.details,
                        "session_id": session.id,
                        "multi_vend_of": credit.session_id,
                    },
                )
                # The credit moves to this session: it closes the payment from now on.
                await self.journal.async_set_flags(credit.session_id, close_pending=False)
                session = await self._async_save(
                    session,
                    "authorize",
                    "done",
                    f"multi-vend credit of {credit.session_id}",
                    state=SessionState.authorized,
                    authorization=authorization,
                )
            elif free_vend:
                session = await self._async_save(session, "select", "done", "free vend")
            else:
                session = await self._async_save(session, "authorize", "begin")
        except Exception:
            self._active = None
            self._finished.pop(session.id, None)
            raise
        self._fire(EVENT_VEND_STARTED, _started_data, session)
        self._tasks[session.id] = self.hub.async_create_task(
            self._async_run(session, provider, token, credit is not None),
            name=f"vend {self.machine_id} {session.id}",
        )
        return session

    async def async_wait(self, session_id: str, timeout: float | None = None) -> VendSession:
        """Wait until the session is finished and return its last snapshot."""
        finished = self._finished.get(session_id)
        if finished is not None:
            if timeout is None:
                await finished.wait()
            else:
                async with asyncio.timeout(timeout):
                    await finished.wait()
        snapshot = self.session(session_id)
        if snapshot is None:
            raise KeyError(f"no vend session {session_id!r} on machine {self.machine_id}")
        return snapshot

    async def async_cancel(self, session_id: str) -> VendSession:
        """Cancel a session that has not reached the dispense; nothing is charged.

        Past that point the product is on its way and the session finishes as it will; the
        snapshot returned then shows where it is. A finished session, or one only the journal
        has (of before a restart, or older than the ``SESSIONS_IN_MEMORY`` kept), is answered
        as it is, as ``session()`` gives it; KeyError for a session this machine never had.
        """
        session = self.session(session_id)
        if session is None:
            raise KeyError(f"no vend session {session_id!r} on machine {self.machine_id}")
        if session_id not in self._sessions:
            # Known only to the journal (of before a restart, or older than the sessions kept
            # in memory): no task of this run drives it, so it is answered as it is.
            return session
        if session.finished or session.state not in (
            SessionState.selected,
            SessionState.authorizing,
            SessionState.authorized,
        ):
            return session
        self._cancel_requested.add(session_id)
        paying = self._paying.get(session_id)
        if paying is not None:
            paying.cancel()
        task = self._tasks.get(session_id)
        if task is not None:
            await asyncio.wait([task], timeout=self.machine.timeouts.void * 2)
        return self._sessions[session_id]

    async def async_set_mode(self, mode: MachineMode | str, context: Context | None = None) -> None:
        """Change whether and how the machine sells; a running session finishes as it is.

        The mode is journalled first and kept across restarts, until the configuration's
        ``mode`` is edited (then that one applies at the next start)."""
        new = MachineMode(mode)
        if new is self.mode:
            return
        await self.journal.async_set_mode(self.machine_id, new.value, self.machine.mode.value)
        previous, self.mode = self.mode, new
        for listener in list(self._mode_listeners):
            listener(new, context)
        self.hub.bus.async_fire(
            EVENT_VENDING_MODE_CHANGED,
            {"machine_id": self.machine_id, "mode": new.value, "previous": previous.value},
            context=context,
        )

    async def async_restock(
        self,
        slots: Mapping[str, int] | None = None,
        context: Context | None = None,
        *,
        fill: Iterable[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Set the stock of ``slots`` (code → items counted in it now) and fill the slots of
        ``fill`` to their fill level (par level, or capacity), never lowering one; with neither,
        every slot is filled so. Fires ``stock_refilled`` with the ledger's fields and returns
        its slots.

        A count of the slot of the session running now is refused (``ValueError``) until its
        dispense is over: the item on its way may or may not be in the count, and the vend
        would then take it off a count that no longer has it (a slot counted empty would
        still sell one)."""
        planogram = self.machine.planogram
        counts = {} if slots is None else dict(slots)
        to_fill = list(planogram) if slots is None and fill is None else list(fill or ())
        for code in [*counts, *to_fill]:
            if code not in planogram:
                raise ValueError(f"machine {self.machine_id} has no slot {code!r}")
        for code in to_fill:
            if code in counts:
                raise ValueError(f"slot {code} is both counted and filled to par; give one")
        for code, count in counts.items():
            plan = planogram[code]
            if type(count) is not int or not 0 <= count <= plan.capacity:
                raise ValueError(
                    f"stock of slot {code} must be between 0 and its capacity "
                    f"{plan.capacity}, got {count!r}"
                )
        active = self.active_session
        if active is not None and active.slot in counts and active.state in _BEFORE_THE_DROP:
            raise ValueError(
                f"slot {active.slot} of machine {self.machine_id} is selling now (vend session "
                f"{active.id}, {active.state.value}); count it again once that session has "
                "ended"
            )
        targets = {
            **counts,
            **{code: max(self.stock.get(code, 0), planogram[code].fill_level) for code in to_fill},
        }
        changes = self._stock_changes(targets, planogram)
        await self.journal.async_set_stock(self.machine_id, targets)
        context = context or Context()
        for code, count in targets.items():
            self.stock[code] = count
            self._notify_stock(code, context)
        self._fire_stock_refilled(changes, context)
        return changes

    def _stock_changes(
        self, targets: Mapping[str, int], plans: Mapping[str, SlotPlan]
    ) -> dict[str, dict[str, Any]]:
        """``stock_refilled``'s slots for setting each slot of ``targets`` to its count."""
        return {
            code: {
                "product": plans[code].product,
                "added": count - self.stock.get(code, 0),
                "stock": count,
            }
            for code, count in targets.items()
        }

    def _fire_stock_refilled(self, changes: Mapping[str, Any], context: Context) -> None:
        """``stock_refilled`` (the ledger's stock movements: refills, and corrections of a
        count below the stock or a cut to a smaller capacity)."""
        self.hub.bus.async_fire(
            EVENT_STOCK_REFILLED,
            {
                "machine_id": self.machine_id,
                "event_id": f"restock-{uuid.uuid4().hex}",
                "slots": dict(changes),
            },
            context=context,
        )

    async def async_apply_plan(
        self,
        slots: Mapping[str, SlotPlan] | None = None,
        mode: MachineMode | str | None = None,
        context: Context | None = None,
    ) -> dict[str, str]:
        """Take a plan from outside (the fleet hub): new product, price, capacity and par of
        existing slots, and the mode. Returns what was refused, ``{"slots.<code>": why}``
        (a slot this machine does not have; slots cannot be added here).

        A session already selected keeps the price it was selected at (its snapshot holds
        it); the next selection pays the new one. Stock above a smaller new capacity is cut
        to it (journalled, like any stock change).
        """
        rejected: dict[str, str] = {}
        accepted: dict[str, SlotPlan] = {}
        for code, plan in (slots or {}).items():
            if code not in self.machine.planogram:
                known = ", ".join(self.machine.planogram)
                rejected[f"slots.{code}"] = (
                    f"machine {self.machine_id} has no slot {code!r}; known: {known}"
                )
            elif plan != self.machine.planogram[code]:
                accepted[code] = plan
        context = context or Context()
        if accepted:
            cut = {
                code: plan.capacity
                for code, plan in accepted.items()
                if self.stock.get(code, 0) > plan.capacity
            }
            if cut:
                await self.journal.async_set_stock(self.machine_id, cut)
            self.machine.planogram = {**self.machine.planogram, **accepted}
            for code, plan in accepted.items():
                for listener in list(self._plan_listeners):
                    listener(code, plan, context)
            changes = self._stock_changes(cut, accepted)
            for code, count in cut.items():
                self.stock[code] = count
                self._notify_stock(code, context)
            if changes:
                # The items taken out are a stock movement as a count is (the ledger's
                # stock_levels and movements follow the slot).
                self._fire_stock_refilled(changes, context)
        if mode is not None:
            await self.async_set_mode(mode, context=context)
        return rejected

    def async_listen_plan(self, listener: PlanListener) -> Callable[[], None]:
        """Call ``listener(slot, plan, context)`` after ``async_apply_plan`` changed a slot."""
        self._plan_listeners.append(listener)
        return lambda: self._plan_listeners.remove(listener)

    def async_listen_stock(self, listener: StockListener) -> Callable[[], None]:
        """Call ``listener(slot, stock, context)`` after each stock change."""
        self._stock_listeners.append(listener)
        return lambda: self._stock_listeners.remove(listener)

    def async_listen_mode(self, listener: ModeListener) -> Callable[[], None]:
        self._mode_listeners.append(listener)
        return lambda: self._mode_listeners.remove(listener)

    # ---- one session ----------------------------------------------------------------------

    async def _async_run(
        self,
        session: VendSession,
        provider: PaymentProvider | None,
        token: str | None,
        prepaid: bool,
    ) -> None:
        try:
            if provider is not None and not prepaid:
                session = await self._async_authorize(session, provider, token)
                if session.finished:
                    return
            if session.id in self._cancel_requested:
                await self._async_fail_after_authorization(
                    session, provider, VendOutcome.cancelled, "cancelled", alarm=False
                )
                return
            session = await self._async_dispense(session)
            if session.dispense is None or not session.dispense.ok:
                await self._async_fail_after_authorization(
                    session,
                    provider,
                    VendOutcome.dispense_failed,
                    session.reason or "dispense_failed",
                    alarm=True,
                    vend_attempted=True,
                )
                return
            await self._async_complete(session, provider)
        except Exception as error:
            _LOGGER.exception("Vend session %s of %s failed", session.id, self.machine_id)
            current = self._sessions.get(session.id, session)
            if not current.finished:
                await self._async_fail_safely(current, provider, error)
        finally:
            self._tasks.pop(session.id, None)
            self._cancel_requested.discard(session.id)
            self._unjournalled.pop(session.id, None)
            self._unjournalled_stock.pop(session.id, None)
            if self._active == session.id:
                self._active = None
            self._trim()

    async def _async_authorize(
        self, session: VendSession, provider: PaymentProvider, token: str | None
    ) -> VendSession:
        request = PaymentRequest(
            session_id=session.id,
            machine_id=self.machine_id,
            amount=session.price,
            method=session.method,
            item=session.slot,
            description=session.product,
            token=token,
            context=session.context,
        )

        def progress(step: Mapping[str, Any]) -> None:
            current = self._sessions.get(session.id)
            if current is None or current.finished:
                return
            self._publish(current.evolve(progress=dict(step)))

        if session.id in self._cancel_requested:
            return await self._async_finish(
                session, VendOutcome.cancelled, "cancelled", step="authorize"
            )
        try:
            authorization = await self._async_provider_authorize(
                session.id, provider, request, progress
            )
        except (TimeoutError, asyncio.CancelledError, PaymentDeclined, PaymentError) as error:
            # The latest snapshot: what the provider last told the customer (a refund claim,
            # say) stays in the session's final one.
            return await self._async_authorize_failed(
                self._sessions.get(session.id, session), provider, token, error
            )
        if authorization.amount != session.price:
            # Never dispense for less than the price; release what was approved.
            session = await self._async_save(
                session,
                "authorize",
                "done",
                "amount mismatch",
                state=SessionState.authorized,
                authorization=authorization,
            )
            await self._async_fail_after_authorization(
                session, provider, VendOutcome.voided_error, "amount_mismatch", alarm=True
            )
            return self._sessions[session.id]
        # The payment step is over: what the provider showed (a QR to scan) goes.
        session = session.evolve(
            state=SessionState.authorized, authorization=authorization, progress={}
        )
        if session.id in self._cancel_requested:
            session = await self._async_save(session, "authorize", "done", authorization.reference)
        else:
            # Journalled with the dispense's "begin" in one commit: nothing happens between.
            self._unjournalled[session.id] = [("authorize", "done", authorization.reference)]
            self._publish(session)
        self._fire(EVENT_PAYMENT_AUTHORIZED, payment_data, session)
        return session

    async def _async_authorize_failed(
        self,
        session: VendSession,
        provider: PaymentProvider,
        token: str | None,
        error: BaseException,
    ) -> VendSession:
        """End a session whose authorize did not approve (nothing was authorized)."""
        if isinstance(error, TimeoutError):
            return await self._async_finish(
                session, VendOutcome.payment_timeout, "payment_timeout", step="authorize"
            )
        if isinstance(error, asyncio.CancelledError):
            current = asyncio.current_task()
            # async_cancel's cancellation ends the session; any other one (the hub stopping)
            # goes on up.
            if (
                session.id not in self._cancel_requested
                or current is None
                or current.uncancel() > 0
            ):
                raise error
            return await self._async_finish(
                session, VendOutcome.cancelled, "cancelled", step="authorize"
            )
        if isinstance(error, PaymentDeclined):
            if error.reason == "cancelled":
                return await self._async_finish(
                    session, VendOutcome.cancelled, "cancelled", step="authorize"
                )
            self.hub.bus.async_fire(
                EVENT_PAYMENT_DECLINED,
                {
                    "machine_id": self.machine_id,
                    "session_id": session.id,
                    "token": _token_digest(token),
                    "reason": error.reason,
                    "amount": session.price.amount,
                    "currency": session.price.currency,
                    "method": session.method.value,
                    "provider": provider.platform,
                },
                context=session.context,
            )
            return await self._async_finish(
                session, VendOutcome.declined, error.reason, step="authorize"
            )
        return await self._async_finish(
            session, VendOutcome.payment_error, f"payment_error: {error}", step="authorize"
        )

    async def _async_provider_authorize(
        self,
        session_id: str,
        provider: PaymentProvider,
        request: PaymentRequest,
        progress: ProgressCallback,
    ) -> Authorization:
        """The provider's authorize, awaited in the session's own task (a task of its own
        would cost every vend a loop turn). The payment timeout, or ``async_cancel``, cancels
        the call; the provider must then release whatever it holds (PaymentProvider's rules)."""
        task = asyncio.current_task()
        assert task is not None
        self._paying[session_id] = task
        try:
            with self._payment_timeout.limit():
                return await provider.async_authorize(request, progress)
        finally:
            del self._paying[session_id]

    async def _async_dispense(self, session: VendSession) -> VendSession:
        session = await self._async_save(
            session, "dispense", "begin", state=SessionState.dispensing
        )
        try:
            with self._dispense_timeout.limit():
                result = await self.machine.dispenser.async_dispense(session.slot, session.id)
        except TimeoutError:
            result = DispenseResult(DispenseOutcome.timeout, session.slot, detail="no answer")
        except DispenserError as error:
            result = DispenseResult(DispenseOutcome.error, session.slot, detail=str(error))
        if result.ok:
            stock = max(0, self.stock.get(session.slot, 0) - 1)
            self.stock[session.slot] = stock
            session = session.evolve(
                state=SessionState.dispensed, dispense=result, stock_after=stock
            )
            if session.authorization is not None and not session.free_vend:
                # Journalled with the capture's "begin" in one commit (stock included).
                self._unjournalled[session.id] = [("dispense", "done", result.outcome.value)]
                self._unjournalled_stock[session.id] = (session.slot, stock)
                self._publish(session)
            else:
                session = await self._async_save(
                    session,
                    "dispense",
                    "done",
                    result.outcome.value,
                    stock_change=(session.slot, stock),
                )
            if self._stock_listeners:
                self._notify_stock(session.slot, session.context.child())
            return session
        return await self._async_save(
            session,
            "dispense",
            "error",
            f"{result.outcome.value}: {result.detail or ''}".strip(": "),
            dispense=result,
            reason=result.outcome.value,
        )

    async def _async_complete(self, session: VendSession, provider: PaymentProvider | None) -> None:
        authorization = session.authorization
        if provider is not None and authorization is not None:
            if session.state is not SessionState.captured:
                session = await self._async_capture(session, provider, authorization)
                if session.finished:
                    return
            remaining = _remaining_credit(authorization, session.price)
            if provider.multi_vend and remaining is not None and remaining.amount > 0:
                session = await self._async_hold_credit(session, provider, remaining)
            else:
                change = await self._async_close(session, provider)
                if change is not None:
                    session = session.evolve(change=change)
        await self._async_finish(session, VendOutcome.completed, None, step="record")

    async def _async_capture(
        self, session: VendSession, provider: PaymentProvider, authorization: Authorization
    ) -> VendSession:
        session = await self._async_save(session, "capture", "begin", state=SessionState.capturing)
        last_error: BaseException | None = None
        for attempt in range(_CAPTURE_ATTEMPTS):
            try:
                with self._capture_timeout.limit():
                    await provider.async_capture(authorization, session.price)
            except (PaymentError, TimeoutError, PaymentDeclined) as error:
                last_error = error
                _LOGGER.warning(
                    "Capture of session %s (%s) failed, attempt %d of %d: %s",
                    session.id,
                    provider.platform,
                    attempt + 1,
                    _CAPTURE_ATTEMPTS,
                    error or type(error).__name__,
                )
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            session = await self._async_save(
                session, "capture", "done", authorization.reference, state=SessionState.captured
            )
            self._fire(EVENT_PAYMENT_CAPTURED, payment_data, session)
            return session
        # The product is out and the money is still held: the journal keeps the session at
        # 'dispensed' so the next start captures it again; the customer got the product.
        await self._async_alarm(
            session,
            "vend_capture_failed",
            "critical",
            f"Vend {session.id} on {self.machine_id}: the product was dispensed but the "
            f"payment ({provider.platform}) could not be captured: {last_error}",
        )
        snapshot = dataclasses.replace(
            session,
            outcome=VendOutcome.capture_failed,
            reason=f"capture_failed: {last_error}",
            finished_at=time.time(),
        )
        await self.journal.async_save(snapshot, "capture", "error", str(last_error))
        # Over for the customer (the product is out), open in the journal for the capture.
        finished = snapshot.evolve(state=SessionState.completed)
        self._publish(finished)
        self._wake_waiters(session.id)
        return finished

    async def _async_hold_credit(
        self, session: VendSession, provider: PaymentProvider, remaining: Money
    ) -> VendSession:
        assert session.authorization is not None
        session = session.evolve(credit_left=remaining)
        credit = _OpenCredit(
            session.id, provider, _base_authorization(session.authorization), remaining
        )
        credit.timer = self.hub.loop.call_later(
            self.machine.timeouts.multi_vend, self._on_credit_expired
        )
        self._open_credit = credit
        return session

    def _take_open_credit(self, method: PaymentMethod, price: Money) -> _OpenCredit | None:
        credit = self._open_credit
        if credit is None or method not in credit.provider.methods:
            return None
        if credit.remaining.currency != price.currency or credit.remaining.amount < price.amount:
            return None
        if credit.timer is not None:
            credit.timer.cancel()
        self._open_credit = None
        return credit

    def _on_credit_expired(self) -> None:
        credit = self._open_credit
        if credit is None:
            return
        if self._active is not None:
            # A selection is being made right now (it may take the credit): look again soon.
            credit.timer = self.hub.loop.call_later(1.0, self._on_credit_expired)
            return
        self.hub.async_create_task(
            self._async_close_credit(), name=f"vend {self.machine_id} close credit"
        )

    async def _async_close_credit(self) -> None:
        credit, self._open_credit = self._open_credit, None
        if credit is None:
            return
        if credit.timer is not None:
            credit.timer.cancel()
        session = self._sessions.get(credit.session_id) or self._journal_session(credit.session_id)
        change = await self._async_provider_close(
            credit.session_id, credit.provider, credit.authorization, session
        )
        if session is not None:
            updated = session.evolve(change=change, credit_left=None)
            await self.journal.async_save(updated, "close", "done", close_pending=False)
            self._publish(updated)

    async def _async_close(self, session: VendSession, provider: PaymentProvider) -> Money | None:
        """Close the payment of a session that ends now; its end is journalled right after
        (a restart before that closes it again, which providers take as a repeat)."""
        assert session.authorization is not None
        return await self._async_provider_close(
            session.id,
            provider,
            _base_authorization(session.authorization),
            session,
            journal_steps=False,
        )

    async def _async_provider_close(
        self,
        session_id: str,
        provider: PaymentProvider,
        authorization: Authorization,
        session: VendSession | None,
        *,
        journal_steps: bool = True,
    ) -> Money | None:
        if journal_steps:
            await self.journal.async_step(session_id, "close", "begin")
        try:
            with self._close_timeout.limit():
                change = await provider.async_close(authorization)
        except Exception as error:
            _LOGGER.warning(
                "Closing the payment of session %s (%s) failed: %s",
                session_id,
                provider.platform,
                error,
            )
            if journal_steps:
                await self.journal.async_step(session_id, "close", "error", str(error))
            if session is not None:
                await self._async_alarm(
                    session,
                    "vend_close_failed",
                    "warning",
                    f"Vend {session_id} on {self.machine_id}: closing the payment "
                    f"({provider.platform}) failed: {error}",
                )
            return None
        if journal_steps:
            await self.journal.async_step(
                session_id, "close", "done", str(change.amount) if change else None
            )
        return change

    async def _async_fail_after_authorization(
        self,
        session: VendSession,
        provider: PaymentProvider | None,
        outcome: VendOutcome,
        reason: str,
        *,
        alarm: bool,
        vend_attempted: bool = False,
    ) -> None:
        """Release or give back whatever the session holds, then finish it as failed."""
        session = session.evolve(reason=reason)
        authorization = session.authorization
        released = True  # nothing held, nothing to release
        if provider is not None and authorization is not None:
            session, released, refunded = await self._async_release(
                session, provider, authorization
            )
            if refunded:
                if outcome is VendOutcome.dispense_failed:
                    outcome = VendOutcome.refunded_dispense_failed
                session = session.evolve(refunded=session.price)
            if not released:
                await self._async_alarm(
                    session,
                    "vend_void_failed",
                    "critical",
                    f"Vend {session.id} on {self.machine_id}: the payment "
                    f"({provider.platform}, reference {authorization.reference}) could not "
                    f"be released; the customer may have been charged",
                )
            if released:
                change = await self._async_close(session, provider)
                if change is not None:
                    session = session.evolve(change=change)
        if alarm:
            detail = session.dispense.detail if session.dispense else None
            await self._async_alarm(
                session,
                "vend_dispense_failed" if vend_attempted else "vend_failed",
                "warning",
                f"Vend of slot {session.slot} ({session.product}) on {self.machine_id} "
                f"failed: {reason}{f' ({detail})' if detail else ''}; "
                + (
                    "the payment could NOT be released (see the vend_void_failed alarm)"
                    if not released
                    else f"the payment was {'refunded' if session.refunded else 'released'}"
                ),
            )
        await self._async_finish(session, outcome, reason, step="record", ledger=vend_attempted)

    async def _async_release(
        self, session: VendSession, provider: PaymentProvider, authorization: Authorization
    ) -> tuple[VendSession, bool, bool]:
        """Void the authorization; refund if the provider already took the money.

        Returns (session, released, refunded).
        """
        session = await self._async_save(session, "void", "begin", state=SessionState.voiding)
        try:
            async with asyncio.timeout(self.machine.timeouts.void):
                await provider.async_void(authorization)
        except Exception as error:
            await self.journal.async_step(session.id, "void", "error", str(error))
            status = await self._async_payment_status(provider, authorization)
            if status is PaymentStatus.voided:
                return session, True, False
            if status is not PaymentStatus.captured:
                _LOGGER.error(
                    "Void of session %s (%s) failed: %s", session.id, provider.platform, error
                )
                return session, False, False
            return await self._async_refund(session, provider, authorization)
        session = await self._async_save(session, "void", "done", authorization.reference)
        self._fire(EVENT_PAYMENT_VOIDED, payment_data, session)
        return session, True, False

    async def _async_refund(
        self, session: VendSession, provider: PaymentProvider, authorization: Authorization
    ) -> tuple[VendSession, bool, bool]:
        session = await self._async_save(session, "refund", "begin", state=SessionState.refunding)
        try:
            async with asyncio.timeout(self.machine.timeouts.void):
                await provider.async_refund(authorization, session.price)
        except Exception as error:
            await self.journal.async_step(session.id, "refund", "error", str(error))
            _LOGGER.error(
                "Refund of session %s (%s) failed: %s", session.id, provider.platform, error
            )
            return session, False, False
        session = await self._async_save(session, "refund", "done", authorization.reference)
        self.hub.bus.async_fire(
            EVENT_PAYMENT_REFUNDED,
            {
                "machine_id": self.machine_id,
                "vend_id": session.id,
                "session_id": session.id,
                "amount": session.price.amount,
                "currency": session.price.currency,
                "provider": provider.platform,
                "reference": authorization.reference,
            },
            context=session.context,
        )
        return session, True, True

    async def _async_payment_status(
        self, provider: PaymentProvider, authorization: Authorization
    ) -> PaymentStatus:
        try:
            async with asyncio.timeout(self.machine.timeouts.void):
                return await provider.async_status(authorization)
        except Exception as error:
            _LOGGER.warning("Payment status from %s failed: %s", provider.platform, error)
            return PaymentStatus.unknown

    async def _async_fail_safely(
        self, session: VendSession, provider: PaymentProvider | None, error: BaseException
    ) -> None:
        """An unexpected error: release what is held (never after a confirmed dispense)."""
        try:
            if session.state in (
                SessionState.dispensed,
                SessionState.capturing,
                SessionState.captured,
            ):
                # The product is out: the journal captures it at the next start.
                self._wake_waiters(session.id)
                return
            await self._async_fail_after_authorization(
                session,
                provider,
                VendOutcome.voided_error,
                f"error: {type(error).__name__}: {error}",
                alarm=True,
                vend_attempted=session.state is SessionState.dispensing,
            )
        except Exception:
            _LOGGER.exception(
                "Vend session %s could not be released after an error; the journal resolves "
                "it at the next start",
                session.id,
            )
            self._wake_waiters(session.id)

    async def _async_finish(
        self,
        session: VendSession,
        outcome: VendOutcome,
        reason: str | None,
        *,
        step: str,
        ledger: bool | None = None,
    ) -> VendSession:
        """Journal the end of ``session``, fire its events, and wake whoever waits."""
        completed = outcome is VendOutcome.completed
        if ledger is None:
            ledger = completed
        session = session.evolve(
            state=SessionState.completed if completed else SessionState.failed,
            outcome=outcome,
            reason=reason,
            finished_at=time.time(),
        )
        # Nothing to wait for when there is no ledger event or no recorder to write it.
        recorded = not ledger or self.hub.data.get(_DATA_RECORDER) is None
        data = session.as_dict()
        await self.journal.async_save(
            session,
            step,
            "done",
            outcome.value,
            close_pending=self._open_credit is not None
            and self._open_credit.session_id == session.id,
            recorded=recorded,
            data=data,
        )
        if not recorded:
            self._awaiting_record.add(session.id)
        self._publish(session, data)
        if ledger:
            self._fire(
                EVENT_VEND_COMPLETED if completed else EVENT_VEND_FAILED, ledger_data, session
            )
        self._wake_waiters(session.id)
        return session

    # ---- after a restart ------------------------------------------------------------------

    async def _async_resolve(self, entry: JournalEntry) -> None:
        """Finish one session the journal left open, exactly once (docs/vending.md)."""
        session = entry.session
        provider = self._provider_named(session.provider)
        self._sessions[session.id] = session
        self._finished.setdefault(session.id, asyncio.Event())
        _LOGGER.warning(
            "Resolving vend session %s of %s left at %s (last step %s) by a restart",
            session.id,
            self.machine_id,
            session.state.value,
            entry.last_step,
        )
        if session.provider is not None and provider is None and session.authorization:
            raise RuntimeError(
                f"payment provider {session.provider!r} is not configured any more; "
                "cannot release or capture the payment of this session"
            )
        state = session.state
        if state.finished:
            if entry.close_pending and provider is not None and session.authorization:
                change = await self._async_close(session, provider)
                session = session.evolve(change=change, credit_left=None)
                await self.journal.async_save(session, "close", "done", close_pending=False)
            if not entry.recorded:
                await self._async_refire(session)
        elif state in (SessionState.selected, SessionState.authorizing):
            if session.free_vend:
                await self._async_finish(
                    session, VendOutcome.voided_error, "hub_restarted", step="resolve"
                )
            else:
                reason = await self._async_release_lost_authorize(session, provider)
                if reason is None:
                    return  # left open: the next start tries the release again
                await self._async_finish(session, VendOutcome.payment_error, reason, step="resolve")
        elif state is SessionState.authorized:
            await self._async_fail_after_authorization(
                session, provider, VendOutcome.voided_error, "hub_restarted", alarm=False
            )
        elif state is SessionState.dispensing:
            await self._async_fail_after_authorization(
                session,
                provider,
                VendOutcome.dispense_failed,
                "dispense_unknown_after_restart",
                alarm=True,
                vend_attempted=True,
            )
        elif state in (SessionState.dispensed, SessionState.capturing, SessionState.captured):
            await self._async_complete(session, provider)
        elif state in (SessionState.voiding, SessionState.refunding):
            vend_attempted = any(step.step == "dispense" for step in self.journal.steps(session.id))
            outcome = VendOutcome.dispense_failed if vend_attempted else VendOutcome.voided_error
            await self._async_fail_after_authorization(
                session,
                provider,
                outcome,
                session.reason or "hub_restarted",
                alarm=False,
                vend_attempted=vend_attempted,
            )
        await self.journal.async_set_flags(session.id, resolved_after_restart=True)
        self.resolved_after_restart.append(self._sessions[session.id])

    async def _async_release_lost_authorize(
        self, session: VendSession, provider: PaymentProvider | None
    ) -> str | None:
        """Release what an authorize cut off by a restart may have left; the reason to close
        the session with, or None to leave it open for the next start.

        The approval never reached the journal, so there is no reference to void: the
        provider finds by the session id whatever its authorize left (a hold, a gateway
        payment, inserted cash) and releases it. A release that fails keeps the session open,
        so the next start tries again; after ``_RELEASE_STARTS`` failed starts the session is
        closed as ``release_failed``, with a critical alarm naming it.
        """
        await self.journal.async_step(session.id, "release", "begin")
        problem: str | None = None
        if provider is None and session.provider is not None:
            problem = f"payment provider {session.provider!r} is not configured any more"
        elif provider is not None:
            try:
                async with asyncio.timeout(self.machine.timeouts.void):
                    await provider.async_release_session(session.id, session.price)
            except Exception as error:
                problem = str(error) or type(error).__name__
        if problem is None:
            await self.journal.async_step(session.id, "release", "done")
            return "interrupted_while_authorizing"
        await self.journal.async_step(session.id, "release", "error", problem)
        failed_starts = sum(
            1
            for step in self.journal.steps(session.id)
            if (step.step, step.phase) == ("release", "error")
        )
        gave_up = failed_starts >= _RELEASE_STARTS
        _LOGGER.error(
            "Could not release the payment of vend session %s (%s), cut off while authorizing: %s",
            session.id,
            session.provider,
            problem,
        )
        await self._async_alarm(
            session,
            "vend_release_failed",
            "critical",
            f"Vend {session.id} on {self.machine_id}: the hub stopped while the "
            f"customer was paying ({session.provider}), and what that payment "
            f"may hold could not be released: {problem}. "
            + (
                f"Tried at {failed_starts} starts; the session is closed: "
                "release it at the provider by hand"
                if gave_up
                else "It is tried again at the next start"
            ),
        )
        return "release_failed" if gave_up else None

    async def _async_refire(self, session: VendSession) -> None:
        """Fire the ledger event again; the recorder writes it once (keyed by session id)."""
        if self.hub.data.get(_DATA_RECORDER) is not None:
            self._awaiting_record.add(session.id)
        self._fire(ledger_event(session), ledger_data, session)
        if session.id not in self._awaiting_record:
            await self.journal.async_set_flags(session.id, recorded=True)
        self._wake_waiters(session.id)

    def _provider_named(self, platform: str | None) -> PaymentProvider | None:
        for provider in self.machine.providers:
            if provider.platform == platform:
                return provider
        return None

    def _journal_session(self, session_id: str) -> VendSession | None:
        entry = self.journal.entry(session_id)
        return entry.session if entry else None

    # ---- plumbing -------------------------------------------------------------------------

    async def _async_save(
        self,
        session: VendSession,
        step: str,
        phase: str,
        detail: str | None = None,
        *,
        stock_change: tuple[str, int] | None = None,
        **changes: Any,
    ) -> VendSession:
        """Journal ``session`` with ``changes`` and a step row (committed), then publish it."""
        if changes:
            session = session.evolve(**changes)
        data = session.as_dict()
        await self.journal.async_save(
            session,
            step,
            phase,
            detail,
            stock=stock_change or self._unjournalled_stock.pop(session.id, None),
            data=data,
            earlier=self._unjournalled.pop(session.id, ()),
        )
        self._publish(session, data)
        return session

    def _publish(self, session: VendSession, data: Mapping[str, Any] | None = None) -> None:
        """Make ``session`` the latest snapshot and fire ``vend_session_updated`` with its
        ``as_dict()`` (``data`` when the caller has made it already)."""
        self._sessions[session.id] = session
        if self._listened(EVENT_VEND_SESSION_UPDATED):
            self.hub.bus.async_fire(
                EVENT_VEND_SESSION_UPDATED,
                data if data is not None else session.as_dict(),
                context=session.context,
            )

    def _fire(
        self,
        event_type: str,
        make_data: Callable[[VendSession], Mapping[str, Any]],
        session: VendSession,
    ) -> None:
        """Fire ``event_type`` with ``make_data(session)`` in the session's context."""
        if self._listened(event_type):
            self.hub.bus.async_fire(event_type, make_data(session), context=session.context)

    def _listened(self, event_type: str) -> bool:
        """Whether any listener would receive ``event_type``; when none would, the engine
        neither makes the event's data nor fires it (a dozen events a vend, each with a
        snapshot's data, add up when fifty machines vend at once)."""
        return self.hub.bus.async_has_listeners(event_type)

    def _notify_stock(self, slot: str, context: Context | None) -> None:
        for listener in list(self._stock_listeners):
            try:
                listener(slot, self.stock[slot], context)
            except Exception:
                _LOGGER.exception("Stock listener failed for %s %s", self.machine_id, slot)

    async def _async_alarm(
        self, session: VendSession, code: str, severity: str, message: str
    ) -> None:
        _LOGGER.warning("%s", message)
        await async_raise_alarm(
            self.hub,
            code,
            message,
            machine_id=self.machine_id,
            severity=severity,
            data={
                "session_id": session.id,
                "slot": session.slot,
                "product": session.product,
                "reason": session.reason,
            },
            context=session.context,
        )

    def _on_money_recorded(self, event: Event) -> None:
        if event.data.get("machine_id") != self.machine_id:
            return
        session_id = str(event.data.get("event_id"))
        if session_id in self._awaiting_record:
            self._awaiting_record.discard(session_id)
            self.hub.async_create_task(
                self.journal.async_set_flags(session_id, recorded=True),
                name=f"vend {self.machine_id} recorded {session_id}",
            )

    def _wake_waiters(self, session_id: str) -> None:
        """Wake whoever waits in ``async_wait``; later calls return the snapshot at once."""
        finished = self._finished.pop(session_id, None)
        if finished is not None:
            finished.set()

    def _trim(self) -> None:
        """Forget the oldest finished sessions beyond ``SESSIONS_IN_MEMORY`` (the dict keeps the
        order of selection, so only the few oldest are looked at)."""
        excess = len(self._sessions) - SESSIONS_IN_MEMORY
        if excess <= 0:
            return
        for session_id in list(itertools.islice(self._sessions, excess)):
            if self._sessions[session_id].finished:
                del self._sessions[session_id]


def _started_data(session: VendSession) -> dict[str, Any]:
    """The data of ``vend_started``: the ledger's fields and the first state."""
    return {**ledger_data(session), "state": session.state.value}


class _SessionIds:
    """Session ids: UUIDs laid out as version 7 (RFC 9562), as 32 hex digits.

    The time in milliseconds comes first, so sessions started close together have ids that
    sort together: the journal's indexes (sessions by id, steps by session id) then take one
    transaction's new rows on a few pages instead of a random page per session, which makes
    each commit several times less to write and fsync. The 74 random bits come from
    ``os.urandom`` in blocks, not a system call per id: it gives up the GIL, and the
    journal's writer thread can then keep the event loop waiting.
    """

    _BLOCK = 10 * 256  # random bytes for 256 ids

    def __init__(self) -> None:
        self._random = b""
        self._next = 0

    def __call__(self) -> str:
        if self._next >= len(self._random):
            self._random = os.urandom(self._BLOCK)
            self._next = 0
        bits = int.from_bytes(self._random[self._next : self._next + 10])  # 80 bits
        self._next += 10
        value = (
            (time.time_ns() // 1_000_000) << 80  # unix_ts_ms, 48 bits
            | 0x7 << 76  # version
            | ((bits >> 62) & 0xFFF) << 64  # rand_a, 12 bits
            | 0b10 << 62  # variant
            | bits & ((1 << 62) - 1)  # rand_b, 62 bits
        )
        return f"{value:032x}"


_new_session_id = _SessionIds()
_PAYMENT_METHODS: dict[str, PaymentMethod] = {method.value: method for method in PaymentMethod}
"""Methods by value: a dict lookup, not the enum's ``PaymentMethod(value)`` call (a vend each)."""


def _remaining_credit(authorization: Authorization, price: Money) -> Money | None:
    if authorization.credit is None:
        return None
    return authorization.credit - price


def _base_authorization(authorization: Authorization) -> Authorization:
    """The provider's own authorization, without what a multi-vend follow-on added."""
    if "multi_vend_of" not in authorization.details:
        return authorization
    details = {
        key: value
        for key, value in authorization.details.items()
        if key not in ("session_id", "multi_vend_of")
    }
    return dataclasses.replace(authorization, details=details)


def _token_digest(token: str | None) -> str | None:
    """A stable stand-in for a customer's token: the anomaly rules count declines per token
    without the token itself being fired, recorded or logged."""
    if not token:
        return None
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


__all__ = [
    "MachineSetup",
    "Timeouts",
    "VendEngine",
    "VendOutcome",
    "VendRefused",
    "VendSession",
]
