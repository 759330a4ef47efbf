"""Wallet accounts in the recorder's database: every balance change with its transaction row.

Each operation is one database transaction that changes ``loyalty_customers`` and inserts
its ``loyalty_transactions`` row together, so a crash never leaves them apart. Every row
carries an idempotence key in ``source_event_id`` (unique per customer), so an operation
repeated after a restart finds its row and changes nothing.

The balance is what the customer can spend now: a hold takes the amount out at once, so
two machines authorizing on one account at the same time cannot spend it twice. For every
customer, ``balance`` equals the sum of ``amount`` over its rows:

========== ============================= ========== ======================================
kind       source_event_id               amount     what it is
========== ============================= ========== ======================================
topup      ``topup:<source id>``         +amount    money paid in (``wallet.top_up``)
hold       ``hold:<session id>``         -amount    authorized, not yet taken
free_vend  ``hold:<session id>``         0          the hold of a free n-th vend
release    ``release:<session id>``      +held      the hold ends (by capture or by void)
spend      ``spend:<session id>``        -captured  taken; ``points_delta`` = points earned
refund     ``refund:<session id>``       +refunded  given back; ``points_delta`` takes back
                                                    the points the refunded part earned
points     ``points:<source id>``        0          ``wallet.adjust_points``
========== ============================= ========== ======================================

Capture and void both write the one ``release:<session id>`` row, so whichever comes first
wins and the other one finds it: a hold is settled exactly once.

Concurrency: every writing operation starts by updating the customer's row (``last_seen_ts``
or a no-op ``balance = balance``). That first write takes the row lock on PostgreSQL and
MariaDB and the write lock on SQLite, so operations on one customer run one after another,
and everything read after it is current. Money leaves the balance only through
``UPDATE ... SET balance = balance - x WHERE balance >= x``.

These functions run in a worker thread with a session of the recorder's engine
(``Recorder.async_query``), never in the event loop.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, case, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from vendhub.core.errors import VendHubError
from vendhub.recorder.convert import context_id_to_bytes
from vendhub.recorder.models import LoyaltyCustomer, LoyaltyTransaction

from .rules import BonusRules
from .tokens import TokenHasher, new_token

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.hub import Hub
    from vendhub.recorder.recorder import Recorder

_T = TypeVar("_T")

KIND_TOPUP = "topup"
KIND_HOLD = "hold"
KIND_FREE_VEND = "free_vend"
KIND_RELEASE = "release"
KIND_SPEND = "spend"
KIND_REFUND = "refund"
KIND_POINTS = "points"
HOLD_KINDS = (KIND_HOLD, KIND_FREE_VEND)
KEY_CHARS = 64  # loyalty_transactions.source_event_id
MAX_SOURCE_ID_CHARS = 48
MAX_DISPLAY_NAME_CHARS = 128

Customer = LoyaltyCustomer.__table__.c
Row = LoyaltyTransaction.__table__.c


class WalletError(VendHubError, ValueError):
    """A wallet operation cannot be done as asked; the message says why."""


class UnknownAccount(WalletError, LookupError):
    """No account has the token or id that was given."""


class TokenInUse(WalletError):
    """Another account already has this token."""


class CurrencyMismatch(WalletError):
    """An amount is in another currency than the account."""


class InsufficientFunds(WalletError):
    """The balance (or the points) is less than what was asked for."""


class SettlementConflict(WalletError):
    """A capture of a voided hold, a void of a captured one, a refund larger than the spend."""


class WalletUnavailable(VendHubError):
    """The database cannot be reached."""


@dataclass(frozen=True, slots=True)
class Hold:
    """What ``authorize_hold`` did (or had done before, for a repeated session id)."""

    account_id: int
    held: int
    currency: str
    free_vend: bool
    vend_number: int
    repeated: bool


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a capture, void or refund did; ``repeated`` when it had been done before."""

    account_id: int
    amount: int
    points: int
    repeated: bool


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as the services show it."""

    account_id: int
    display_name: str | None
    currency: str
    balance: int
    held: int
    points: int
    vends: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def idempotence_key(prefix: str, ident: str) -> str:
    """``<prefix>:<ident>``; an ident too long for the column is replaced by its SHA-256."""
    key = f"{prefix}:{ident}"
    if len(key) <= KEY_CHARS:
        return key
    return f"{prefix}:#{hashlib.sha256(ident.encode('utf-8')).hexdigest()[:40]}"


AccountWhere = ColumnElement[bool]


# ---- the work in the worker thread ----------------------------------------------------------


def _lock(session: Session, where: AccountWhere, *, seen_at: float | None = None) -> Any:
    """Lock the account's row (see the module's docstring) and return it, or None."""
    values: dict[str, Any] = (
        {"last_seen_ts": seen_at} if seen_at is not None else {"balance": Customer.balance}
    )
    changed = session.execute(update(LoyaltyCustomer.__table__).where(where).values(values))
    if changed.rowcount == 0:
        return None
    return session.execute(select(LoyaltyCustomer.__table__).where(where)).one()


def _row(session: Session, account_id: int, key: str) -> Any:
    return session.execute(
        select(LoyaltyTransaction.__table__).where(
            Row.customer_id == account_id, Row.source_event_id == key
        )
    ).first()


def _insert_row(
    session: Session,
    account_id: int,
    kind: str,
    amount: int,
    key: str,
    now: float,
    context_id: bytes | None,
    points: int = 0,
) -> None:
    session.execute(
        insert(LoyaltyTransaction.__table__).values(
            customer_id=account_id,
            kind=kind,
            amount=amount,
            points_delta=points,
            source_event_id=key,
            ts=now,
            context_id=context_id,
        )
    )


def _change(session: Session, account_id: int, balance: int = 0, points: int = 0) -> None:
    session.execute(
        update(LoyaltyCustomer.__table__)
        .where(Customer.id == account_id)
        .values(balance=Customer.balance + balance, points=Customer.points + points)
    )


def _vends(session: Session, account_id: int) -> int:
    """Vends of the customer so far: captured ones plus holds not yet settled."""
    counts = session.execute(
        select(
            func.coalesce(func.sum(case((Row.kind == KIND_SPEND, 1), else_=0)), 0),
            func.coalesce(func.sum(case((Row.kind.in_(HOLD_KINDS), 1), else_=0)), 0),
            func.coalesce(func.sum(case((Row.kind == KIND_RELEASE, 1), else_=0)), 0),
        ).where(Row.customer_id == account_id)
    ).one()
    spent, holds, releases = (int(value) for value in counts)
    return spent + holds - releases


def _held(session: Session, account_id: int) -> int:
    total = session.execute(
        select(func.coalesce(func.sum(Row.amount), 0)).where(
            Row.customer_id == account_id, Row.kind.in_((*HOLD_KINDS, KIND_RELEASE))
        )
    ).scalar_one()
    return -int(total)


def _view(session: Session, customer: Any) -> AccountView:
    return AccountView(
        account_id=customer.id,
        display_name=customer.display_name,
        currency=customer.currency,
        balance=customer.balance,
        held=_held(session, customer.id),
        points=customer.points,
        vends=_vends(session, customer.id),
    )


def create_account(
    session: Session,
    token_hash: str,
    currency: str,
    display_name: str | None,
    now: float,
) -> AccountView:
    try:
        account_id = session.execute(
            insert(LoyaltyCustomer.__table__).values(
                token_hash=token_hash,
                display_name=display_name,
                balance=0,
                currency=currency,
                points=0,
                created_ts=now,
                last_seen_ts=None,
            )
        ).inserted_primary_key[0]
        session.commit()
    except IntegrityError:
        session.rollback()
        raise TokenInUse("another wallet account already uses this token") from None
    return AccountView(int(account_id), display_name, currency, 0, 0, 0, 0)


def top_up(
    session: Session,
    where: AccountWhere,
    amount: int,
    currency: str | None,
    source_id: str,
    now: float,
    context_id: bytes | None,
) -> tuple[AccountView, bool]:
    """Add ``amount``; returns the account and whether this source id was used before."""
    customer = _locked_or_unknown(session, where)
    if currency is not None and currency != customer.currency:
        session.rollback()
        raise CurrencyMismatch(f"the account is in {customer.currency}, the top-up in {currency}")
    key = idempotence_key(KIND_TOPUP, source_id)
    existing = _row(session, customer.id, key)
    if existing is not None:
        session.rollback()
        if existing.kind != KIND_TOPUP or existing.amount != amount:
            raise WalletError(
                f"source id {source_id!r} was already used on this account for another "
                f"operation ({existing.kind} of {existing.amount})"
            )
        return _view(session, customer), True
    _insert_row(session, customer.id, KIND_TOPUP, amount, key, now, context_id)
    _change(session, customer.id, balance=amount)
    session.commit()
    return _view_of(session, customer.id), False


def adjust_points(
    session: Session,
    where: AccountWhere,
    points: int,
    source_id: str,
    now: float,
    context_id: bytes | None,
) -> tuple[AccountView, bool]:
    """Add (or with a negative ``points`` take away) points; never below zero."""
    customer = _locked_or_unknown(session, where)
    key = idempotence_key(KIND_POINTS, source_id)
    existing = _row(session, customer.id, key)
    if existing is not None:
        session.rollback()
        if existing.kind != KIND_POINTS or existing.points_delta != points:
            raise WalletError(
                f"source id {source_id!r} was already used on this account for another "
                f"operation ({existing.kind}, {existing.points_delta} points)"
            )
        return _view(session, customer), True
    if customer.points + points < 0:
        session.rollback()
        raise InsufficientFunds(
            f"the account has {customer.points} points; it cannot lose {-points}"
        )
    _insert_row(session, customer.id, KIND_POINTS, 0, key, now, context_id, points=points)
    _change(session, customer.id, points=points)
    session.commit()
    return _view_of(session, customer.id), False


def account(session: Session, where: AccountWhere) -> AccountView:
    customer = session.execute(select(LoyaltyCustomer.__table__).where(where)).first()
    if customer is None:
        raise UnknownAccount("no wallet account has this token or id")
    return _view(session, customer)


def transactions(session: Session, where: AccountWhere, limit: int) -> list[dict[str, Any]]:
    customer = session.execute(select(Customer.id).where(where)).first()
    if customer is None:
        raise UnknownAccount("no wallet account has this token or id")
    rows = session.execute(
        select(Row.kind, Row.amount, Row.points_delta, Row.source_event_id, Row.ts)
        .where(Row.customer_id == customer.id)
        .order_by(Row.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "kind": row.kind,
            "amount": row.amount,
            "points": row.points_delta,
            "key": row.source_event_id,
            "ts": row.ts,
        }
        for row in rows
    ]


def authorize_hold(
    session: Session,
    token_hash: str,
    session_id: str,
    amount: int,
    currency: str,
    rules: BonusRules,
    now: float,
    context_id: bytes | None,
) -> Hold:
    """Hold ``amount`` for vend session ``session_id``; the same session gets the same hold.

    Raises UnknownAccount, CurrencyMismatch or InsufficientFunds (nothing is changed then).
    """
    customer = _lock(session, Customer.token_hash == token_hash, seen_at=now)
    if customer is None:
        session.rollback()
        raise UnknownAccount("no wallet account has this token")
    key = idempotence_key(KIND_HOLD, session_id)
    existing = _row(session, customer.id, key)
    if existing is not None:
        session.commit()
        return Hold(
            customer.id,
            -existing.amount,
            customer.currency,
            existing.kind == KIND_FREE_VEND,
            _vends(session, customer.id),
            repeated=True,
        )
    if currency != customer.currency:
        session.rollback()
        raise CurrencyMismatch(f"the account is in {customer.currency}, the price in {currency}")
    vend_number = _vends(session, customer.id) + 1
    free = amount > 0 and rules.is_free(vend_number)
    held = 0 if free else amount
    if held > 0:
        taken = session.execute(
            update(LoyaltyCustomer.__table__)
            .where(Customer.id == customer.id, Customer.balance >= held)
            .values(balance=Customer.balance - held)
        )
        if taken.rowcount == 0:
            session.rollback()
            raise InsufficientFunds(
                f"the balance is {customer.balance} {customer.currency}, the price {held}"
            )
    kind = KIND_FREE_VEND if free else KIND_HOLD
    _insert_row(session, customer.id, kind, -held, key, now, context_id)
    session.commit()
    return Hold(customer.id, held, customer.currency, free, vend_number, repeated=False)


def capture(
    session: Session,
    account_id: int,
    session_id: str,
    amount: int,
    currency: str,
    rules: BonusRules,
    now: float,
    context_id: bytes | None,
) -> Settlement:
    """Take ``amount`` (at most what was held; nothing for a free vend) and award points."""
    customer = _locked_or_unknown(session, Customer.id == account_id)
    hold = _row(session, account_id, idempotence_key(KIND_HOLD, session_id))
    if hold is None:
        session.rollback()
        raise SettlementConflict(f"nothing is held on account {account_id} for {session_id}")
    spend_key = idempotence_key(KIND_SPEND, session_id)
    if _row(session, account_id, idempotence_key(KIND_RELEASE, session_id)) is not None:
        spend = _row(session, account_id, spend_key)
        session.rollback()
        if spend is None:
            raise SettlementConflict(f"the hold for {session_id} was voided; it cannot be taken")
        return Settlement(account_id, -spend.amount, spend.points_delta, repeated=True)
    if currency != customer.currency:
        session.rollback()
        raise CurrencyMismatch(f"the account is in {customer.currency}, the capture in {currency}")
    held = -hold.amount
    free = hold.kind == KIND_FREE_VEND
    if not free and amount > held:
        session.rollback()
        raise SettlementConflict(f"cannot take {amount}: {held} was authorized")
    if amount < 0:
        session.rollback()
        raise WalletError(f"cannot take a negative amount ({amount})")
    spent = 0 if free else amount
    points = rules.points_for(spent)
    _insert_row(
        session,
        account_id,
        KIND_RELEASE,
        held,
        idempotence_key(KIND_RELEASE, session_id),
        now,
        context_id,
    )
    _insert_row(session, account_id, KIND_SPEND, -spent, spend_key, now, context_id, points)
    _change(session, account_id, balance=held - spent, points=points)
    session.commit()
    return Settlement(account_id, spent, points, repeated=False)


def void(
    session: Session, account_id: int, session_id: str, now: float, context_id: bytes | None
) -> Settlement:
    """Give the held amount back; a session never held (or voided already) changes nothing."""
    _locked_or_unknown(session, Customer.id == account_id)
    hold = _row(session, account_id, idempotence_key(KIND_HOLD, session_id))
    if hold is None:
        session.rollback()
        return Settlement(account_id, 0, 0, repeated=True)
    release_key = idempotence_key(KIND_RELEASE, session_id)
    if _row(session, account_id, release_key) is not None:
        captured = _row(session, account_id, idempotence_key(KIND_SPEND, session_id))
        session.rollback()
        if captured is not None:
            raise SettlementConflict(
                f"the payment of {session_id} was captured; refund it instead of voiding it"
            )
        return Settlement(account_id, -hold.amount, 0, repeated=True)
    held = -hold.amount
    _insert_row(session, account_id, KIND_RELEASE, held, release_key, now, context_id)
    _change(session, account_id, balance=held)
    session.commit()
    return Settlement(account_id, held, 0, repeated=False)


def refund(
    session: Session,
    account_id: int,
    session_id: str,
    amount: int,
    currency: str,
    now: float,
    context_id: bytes | None,
) -> Settlement:
    """Give back ``amount`` of what was captured, once per session, with the points it earned."""
    customer = _locked_or_unknown(session, Customer.id == account_id)
    spend = _row(session, account_id, idempotence_key(KIND_SPEND, session_id))
    if spend is None:
        session.rollback()
        raise SettlementConflict(f"nothing was captured for {session_id}; nothing to refund")
    key = idempotence_key(KIND_REFUND, session_id)
    existing = _row(session, account_id, key)
    if existing is not None:
        session.rollback()
        if existing.amount != amount:
            raise SettlementConflict(
                f"{session_id} was already refunded {existing.amount}, not {amount}"
            )
        return Settlement(account_id, existing.amount, existing.points_delta, repeated=True)
    if currency != customer.currency:
        session.rollback()
        raise CurrencyMismatch(f"the account is in {customer.currency}, the refund in {currency}")
    spent = -spend.amount
    if not 0 <= amount <= spent:
        session.rollback()
        raise SettlementConflict(f"cannot refund {amount}: {spent} was captured")
    earned = spend.points_delta
    taken_back = min(customer.points, earned * amount // spent) if spent else 0
    _insert_row(session, account_id, KIND_REFUND, amount, key, now, context_id, -taken_back)
    _change(session, account_id, balance=amount, points=-taken_back)
    session.commit()
    return Settlement(account_id, amount, -taken_back, repeated=False)


def release_session(session: Session, session_id: str, now: float) -> list[Settlement]:
    """Release what vend session ``session_id`` left on any account when its authorize's
    answer was lost (the hub died): void a hold still open, give back a capture not yet
    refunded. Returns what was done (``repeated`` when it had been done before).

    The hold is found by its key alone (the caller does not know the account), which reads
    every row of ``loyalty_transactions``: the unique index starts with the customer. It runs
    only at a start after such a crash.
    """
    key = idempotence_key(KIND_HOLD, session_id)
    accounts = list(
        session.execute(
            select(Row.customer_id).where(Row.source_event_id == key, Row.kind.in_(HOLD_KINDS))
        ).scalars()
    )
    session.rollback()
    settled: list[Settlement] = []
    for account_id in accounts:
        try:
            settled.append(void(session, account_id, session_id, now, None))
            continue
        except SettlementConflict:
            pass  # captured: give back what was taken
        spend = _row(session, account_id, idempotence_key(KIND_SPEND, session_id))
        already = _row(session, account_id, idempotence_key(KIND_REFUND, session_id))
        currency = session.execute(
            select(Customer.currency).where(Customer.id == account_id)
        ).scalar_one()
        session.rollback()
        spent = -spend.amount if spend is not None else 0
        if already is not None or spent <= 0:
            settled.append(Settlement(account_id, 0, 0, repeated=True))
            continue
        settled.append(refund(session, account_id, session_id, spent, currency, now, None))
    return settled


def payment_state(session: Session, account_id: int, session_id: str) -> str:
    """``unknown``, ``authorized``, ``captured``, ``voided`` or ``refunded``, from the rows."""
    keys = {
        idempotence_key(prefix, session_id): prefix
        for prefix in (KIND_HOLD, KIND_RELEASE, KIND_SPEND, KIND_REFUND)
    }
    found = {
        keys[key]
        for key in session.execute(
            select(Row.source_event_id).where(
                Row.customer_id == account_id, Row.source_event_id.in_(keys)
            )
        ).scalars()
    }
    if KIND_HOLD not in found:
        return "unknown"
    if KIND_REFUND in found:
        return "refunded"
    if KIND_SPEND in found:
        return "captured"
    if KIND_RELEASE in found:
        return "voided"
    return "authorized"


def _locked_or_unknown(session: Session, where: AccountWhere) -> Any:
    customer = _lock(session, where)
    if customer is None:
        session.rollback()
        raise UnknownAccount("no wallet account has this token or id")
    return customer


def _view_of(session: Session, account_id: int) -> AccountView:
    return _view(
        session,
        session.execute(select(LoyaltyCustomer.__table__).where(Customer.id == account_id)).one(),
    )


# ---- the event loop's side ------------------------------------------------------------------


class Wallet:
    """The wallet's operations, run on the recorder's engine; kept in ``hub.data["wallet"]``."""

    def __init__(
        self,
        hub: Hub,
        recorder: Recorder,
        hasher: TokenHasher,
        rules: BonusRules,
        default_currency: str,
    ) -> None:
        self.hub = hub
        self.recorder = recorder
        self.hasher = hasher
        self.rules = rules
        self.default_currency = default_currency

    async def _run(self, work: Callable[..., _T], *args: Any) -> _T:
        try:
            return await self.recorder.async_query(work, *args)
        except DBAPIError as error:
            # The driver's message names the database, never a token: tokens are hashed.
            raise WalletUnavailable(
                f"the wallet's database cannot be used: {type(error.orig).__name__}"
            ) from error

    def where(self, *, token: str | None = None, account_id: int | None = None) -> AccountWhere:
        """The account a service call names by its token or its id."""
        if token is not None:
            return Customer.token_hash == self.hasher.hash(token)
        if account_id is not None:
            return Customer.id == account_id
        raise WalletError("name the account: token or account_id")

    async def async_create_account(
        self,
        token: str | None = None,
        currency: str | None = None,
        display_name: str | None = None,
    ) -> tuple[AccountView, str | None]:
        """A new account; returns it and the token when one was generated (shown only once)."""
        presented = token if token is not None else new_token()
        generated = presented if token is None else None
        token_hash = self.hasher.hash(presented)
        view = await self._run(
            create_account,
            token_hash,
            currency or self.default_currency,
            display_name,
            time.time(),
        )
        return view, generated

    async def async_top_up(
        self,
        where: AccountWhere,
        amount: int,
        source_id: str,
        currency: str | None = None,
        context: Context | None = None,
    ) -> tuple[AccountView, bool]:
        if amount <= 0:
            raise WalletError(f"a top-up must be more than 0 minor units, got {amount}")
        return await self._run(
            top_up, where, amount, currency, source_id, time.time(), _context_id(context)
        )

    async def async_adjust_points(
        self, where: AccountWhere, points: int, source_id: str, context: Context | None = None
    ) -> tuple[AccountView, bool]:
        if points == 0:
            raise WalletError("points must not be 0: give the number to add or take away")
        return await self._run(
            adjust_points, where, points, source_id, time.time(), _context_id(context)
        )

    async def async_account(self, where: AccountWhere) -> AccountView:
        return await self._run(account, where)

    async def async_transactions(self, where: AccountWhere, limit: int) -> list[dict[str, Any]]:
        return await self._run(transactions, where, limit)

    async def async_hold(
        self,
        token: str,
        session_id: str,
        amount: int,
        currency: str,
        context: Context | None = None,
    ) -> Hold:
        if amount < 0:
            raise WalletError(f"cannot hold a negative amount ({amount})")
        return await self._run(
            authorize_hold,
            self.hasher.hash(token),
            session_id,
            amount,
            currency,
            self.rules,
            time.time(),
            _context_id(context),
        )

    async def async_capture(
        self, account_id: int, session_id: str, amount: int, currency: str
    ) -> Settlement:
        return await self._run(
            capture, account_id, session_id, amount, currency, self.rules, time.time(), None
        )

    async def async_void(self, account_id: int, session_id: str) -> Settlement:
        return await self._run(void, account_id, session_id, time.time(), None)

    async def async_refund(
        self, account_id: int, session_id: str, amount: int, currency: str
    ) -> Settlement:
        return await self._run(refund, account_id, session_id, amount, currency, time.time(), None)

    async def async_release_session(self, session_id: str) -> list[Settlement]:
        return await self._run(release_session, session_id, time.time())

    async def async_payment_state(self, account_id: int, session_id: str) -> str:
        return await self._run(payment_state, account_id, session_id)


def _context_id(context: Context | None) -> bytes | None:
    return context_id_to_bytes(context.id) if context is not None else None
