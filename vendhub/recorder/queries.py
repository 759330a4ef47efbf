"""Reading the recorder: state history, statistics, transactions, payments, the audit log.

Every function is synchronous and takes a SQLAlchemy ``Session`` or ``Connection``: run it in
the recorder's thread or an executor (``Recorder.async_query``), never in the event loop.
Results are plain dataclasses whose ``as_dict()`` is JSON-ready; timestamps are aware UTC
datetimes (ISO 8601 strings in ``as_dict()``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Connection, Row, case, func, null, select
from sqlalchemy.orm import Session, aliased

from vendhub.recorder.models.auth import AuditLogEntry
from vendhub.recorder.models.history import StateAttributes, States, StatesMeta
from vendhub.recorder.models.ledger import Payment, RejectedMoneyEvent, VendTransaction
from vendhub.recorder.models.statistics import SalesStatistic, SensorStatistic

SessionOrConnection = Session | Connection
StatisticsPeriod = Literal["hour", "day"]
STATISTICS_PERIODS: tuple[StatisticsPeriod, ...] = ("hour", "day")

MAX_PAGE_SIZE = 1000
# ``statistics_sales.product`` cannot be NULL: a vend of an unknown product is counted under "".
UNKNOWN_PRODUCT = ""

_ItemT = TypeVar("_ItemT")

# Whole-row selects go through the tables, so a Connection and a Session return the same rows.
_SALES_TABLE = SalesStatistic.__table__
_SENSORS_TABLE = SensorStatistic.__table__
_TRANSACTIONS_TABLE = VendTransaction.__table__
_PAYMENTS_TABLE = Payment.__table__
_AUDIT_TABLE = AuditLogEntry.__table__


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryState:
    """One recorded state of an entity.

    ``attributes`` is shared between the states that had the same attribute set: do not mutate.
    """

    entity_id: str
    state: str | None  # None: the entity was removed
    attributes: dict[str, Any]
    last_changed: datetime
    last_updated: datetime
    context_id: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "entity_id": self.entity_id,
            "state": self.state,
            "attributes": self.attributes,
            "last_changed": self.last_changed.isoformat(),
            "last_updated": self.last_updated.isoformat(),
            "context_id": self.context_id,
        }


@dataclass(frozen=True, slots=True)
class SalesRow:
    """Compiled sales of one product in one machine over one hour or local day."""

    period: StatisticsPeriod
    start: datetime
    machine_id: str
    product: str | None
    currency: str
    vends: int
    failed: int
    revenue: int  # minor units, completed vends only

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "period": self.period,
            "start": self.start.isoformat(),
            "machine_id": self.machine_id,
            "product": self.product,
            "currency": self.currency,
            "vends": self.vends,
            "failed": self.failed,
            "revenue": self.revenue,
        }


@dataclass(frozen=True, slots=True)
class SalesTotal:
    """Vends, failed vends and revenue in one currency, counted from the ledger."""

    currency: str
    vends: int
    failed: int
    revenue: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "currency": self.currency,
            "vends": self.vends,
            "failed": self.failed,
            "revenue": self.revenue,
        }


@dataclass(frozen=True, slots=True)
class CompletedVend:
    """One completed vend from the ledger: what a machine's day's sales are counted from."""

    machine_id: str
    source_event_id: str
    price: int
    currency: str
    time: datetime

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "machine_id": self.machine_id,
            "source_event_id": self.source_event_id,
            "price": self.price,
            "currency": self.currency,
            "time": self.time.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class SensorRow:
    """Minimum, time-weighted mean and maximum of one entity over one hour or local day."""

    start: datetime
    min: float
    mean: float
    max: float
    samples: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "start": self.start.isoformat(),
            "min": self.min,
            "mean": self.mean,
            "max": self.max,
            "samples": self.samples,
        }


@dataclass(frozen=True, slots=True)
class TransactionRow:
    """One vend attempt from the ledger."""

    id: int
    machine_id: str
    source_event_id: str
    vend_id: str | None
    slot_code: str
    product: str | None
    price: int
    currency: str
    outcome: str
    failure_reason: str | None
    payment_method: str | None
    time: datetime
    recorded: datetime
    context_id: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "id": self.id,
            "machine_id": self.machine_id,
            "source_event_id": self.source_event_id,
            "vend_id": self.vend_id,
            "slot_code": self.slot_code,
            "product": self.product,
            "price": self.price,
            "currency": self.currency,
            "outcome": self.outcome,
            "failure_reason": self.failure_reason,
            "payment_method": self.payment_method,
            "time": self.time.isoformat(),
            "recorded": self.recorded.isoformat(),
            "context_id": self.context_id,
        }


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """One payment from the ledger, with its current status."""

    id: int
    transaction_id: int | None
    machine_id: str
    provider: str
    method: str
    amount: int
    currency: str
    status: str
    provider_reference: str | None
    source_event_id: str
    created: datetime
    updated: datetime
    context_id: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "id": self.id,
            "transaction_id": self.transaction_id,
            "machine_id": self.machine_id,
            "provider": self.provider,
            "method": self.method,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "provider_reference": self.provider_reference,
            "source_event_id": self.source_event_id,
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
            "context_id": self.context_id,
        }


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One entry of the audit log: who did what to which target, before and after.

    ``before`` and ``after`` are the stored JSON, parsed (secrets were redacted on the way in).
    """

    id: int
    time: datetime
    actor_type: str
    actor_id: str | None
    action: str
    target_type: str | None
    target_id: str | None
    before: Any
    after: Any
    context_id: str | None
    remote_address: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "actor_type": self.actor_type,
            "actor_id": self.actor_id,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "before": self.before,
            "after": self.after,
            "context_id": self.context_id,
            "remote_address": self.remote_address,
        }


@dataclass(frozen=True, slots=True)
class RejectedMoneyRow:
    """A money event the ledger could not take, as it came, and why (``rejected_money_events``)."""

    id: int
    time: datetime
    event_type: str
    machine_id: str | None
    event_id: str | None
    data: Any
    error: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "event_type": self.event_type,
            "machine_id": self.machine_id,
            "event_id": self.event_id,
            "data": self.data,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Page(Generic[_ItemT]):
    """One page of a list, newest first; pass ``next_before_id`` as ``before_id`` for the next."""

    items: list[_ItemT] = field(default_factory=list)
    next_before_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (items that have ``as_dict`` are converted)."""
        return {
            "items": [item.as_dict() if hasattr(item, "as_dict") else item for item in self.items],
            "next_before_id": self.next_before_id,
        }


# ---- conversions -------------------------------------------------------------------------------


def timestamp_of(moment: datetime, name: str = "time") -> float:
    """Epoch seconds of an aware datetime; a naive one is refused (it would be read as local)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone), got {moment!r}")
    return moment.timestamp()


def utc_datetime(timestamp: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(timestamp, UTC)


def _context_hex(context_id: bytes | None) -> str | None:
    return context_id.hex() if context_id else None


def _check_period(period: str) -> StatisticsPeriod:
    if period not in STATISTICS_PERIODS:
        raise ValueError(f"period must be one of {', '.join(STATISTICS_PERIODS)}, got {period!r}")
    return period  # type: ignore[return-value]


# ---- state history -----------------------------------------------------------------------------


def metadata_ids_of(session: SessionOrConnection, entity_ids: Iterable[str]) -> dict[str, int]:
    """The ``states_meta`` id of each entity id that was ever recorded."""
    wanted = list(dict.fromkeys(entity_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(StatesMeta.entity_id, StatesMeta.metadata_id).where(StatesMeta.entity_id.in_(wanted))
    )
    return {entity_id: metadata_id for entity_id, metadata_id in rows}


def states_in_force(
    session: SessionOrConnection, before_ts: float, metadata_ids: Sequence[int] | None = None
) -> list[Row[Any]]:
    """The last state of each entity recorded before ``before_ts`` (its state at that moment).

    Per entity, a correlated ``ORDER BY last_updated_ts DESC LIMIT 1`` subquery on the
    (metadata_id, last_updated_ts) index; SQLite, PostgreSQL and MariaDB all accept it (MariaDB
    refuses LIMIT only in IN/ANY subqueries). SQLite and PostgreSQL answer each with one seek;
    MariaDB walks the entity's index entries from its newest back to ``before_ts``, which is
    cheap for the recent moments history and statistics ask about (a correlated MAX() is no
    better there: it reads all of the entity's entries). ``metadata_ids=None`` means every
    entity ever recorded. Columns: metadata_id, state, last_updated_ts, last_changed_ts,
    context_id, attributes_id, shared_attrs.
    """
    earlier = aliased(States)
    latest_state_id = (
        select(earlier.state_id)
        .where(
            earlier.metadata_id == StatesMeta.metadata_id,
            earlier.last_updated_ts < before_ts,
        )
        .order_by(earlier.last_updated_ts.desc(), earlier.state_id.desc())
        .limit(1)
        .scalar_subquery()
    )
    statement = (
        select(
            States.metadata_id,
            States.state,
            States.last_updated_ts,
            States.last_changed_ts,
            States.context_id,
            States.attributes_id,
            StateAttributes.shared_attrs,
        )
        .select_from(StatesMeta)
        .join(States, States.state_id == latest_state_id)
        .outerjoin(StateAttributes, StateAttributes.attributes_id == States.attributes_id)
    )
    if metadata_ids is not None:
        statement = statement.where(StatesMeta.metadata_id.in_(list(metadata_ids)))
    return list(session.execute(statement))


def state_history(
    session: SessionOrConnection,
    entity_ids: list[str],
    start: datetime,
    end: datetime | None = None,
    *,
    include_attributes: bool = True,
    include_start_state: bool = True,
) -> dict[str, list[HistoryState]]:
    """The states of ``entity_ids`` from ``start`` up to (not including) ``end``, oldest first.

    With ``include_start_state`` each list begins with the state in force at ``start`` (the
    last one recorded before it, with its own, earlier, timestamps), so a graph starts with
    a value. Every requested entity id is a key; one never recorded maps to an empty list.
    Attribute sets are parsed once per ``attributes_id`` and shared between states.
    Without ``include_attributes`` every ``attributes`` is empty and the attribute table is
    not read.
    """
    start_ts = timestamp_of(start, "start")
    end_ts = None if end is None else timestamp_of(end, "end")
    history: dict[str, list[HistoryState]] = {entity_id: [] for entity_id in entity_ids}
    metadata_ids = metadata_ids_of(session, entity_ids)
    if not metadata_ids:
        return history
    entity_id_of = {metadata_id: entity_id for entity_id, metadata_id in metadata_ids.items()}
    parsed_attributes: dict[int, dict[str, Any]] = {}

    def attributes_of(attributes_id: int | None, shared_attrs: str | None) -> dict[str, Any]:
        if not include_attributes or attributes_id is None or shared_attrs is None:
            return {}
        attributes = parsed_attributes.get(attributes_id)
        if attributes is None:
            attributes = parsed_attributes[attributes_id] = json.loads(shared_attrs)
        return attributes

    def to_state(row: Any) -> HistoryState:
        last_updated = utc_datetime(row.last_updated_ts)
        return HistoryState(
            entity_id=entity_id_of[row.metadata_id],
            state=row.state,
            attributes=attributes_of(row.attributes_id, row.shared_attrs),
            last_changed=(
                last_updated if row.last_changed_ts is None else utc_datetime(row.last_changed_ts)
            ),
            last_updated=last_updated,
            context_id=_context_hex(row.context_id),
        )

    if include_start_state:
        for row in states_in_force(session, start_ts, list(entity_id_of)):
            history[entity_id_of[row.metadata_id]].append(to_state(row))

    attribute_columns = (
        (States.attributes_id, StateAttributes.shared_attrs)
        if include_attributes
        else (States.attributes_id, null().label("shared_attrs"))
    )
    statement = select(
        States.metadata_id,
        States.state,
        States.last_updated_ts,
        States.last_changed_ts,
        States.context_id,
        *attribute_columns,
    ).where(
        States.metadata_id.in_(list(entity_id_of)),
        States.last_updated_ts >= start_ts,
    )
    if include_attributes:
        statement = statement.outerjoin(
            StateAttributes, StateAttributes.attributes_id == States.attributes_id
        )
    if end_ts is not None:
        statement = statement.where(States.last_updated_ts < end_ts)
    statement = statement.order_by(States.metadata_id, States.last_updated_ts, States.state_id)
    for row in session.execute(statement):
        history[entity_id_of[row.metadata_id]].append(to_state(row))
    return history


# ---- statistics --------------------------------------------------------------------------------


def sales_statistics(
    session: SessionOrConnection,
    *,
    period: StatisticsPeriod,
    start: datetime,
    end: datetime,
    machine_id: str | None = None,
    product: str | None = None,
) -> list[SalesRow]:
    """Compiled sales rows of ``period`` that start in [start, end), oldest first.

    Day rows start at local midnight of the time zone they were compiled in. These rows stay
    after raw history is purged; the ledger itself (``sales_totals``) is exact and never purged.
    """
    checked_period = _check_period(period)
    statement = select(_SALES_TABLE).where(
        SalesStatistic.period == checked_period,
        SalesStatistic.start_ts >= timestamp_of(start, "start"),
        SalesStatistic.start_ts < timestamp_of(end, "end"),
    )
    if machine_id is not None:
        statement = statement.where(SalesStatistic.machine_id == machine_id)
    if product is not None:
        statement = statement.where(SalesStatistic.product == product)
    statement = statement.order_by(
        SalesStatistic.start_ts,
        SalesStatistic.machine_id,
        SalesStatistic.product,
        SalesStatistic.currency,
    )
    return [
        SalesRow(
            period=checked_period,
            start=utc_datetime(row.start_ts),
            machine_id=row.machine_id,
            product=None if row.product == UNKNOWN_PRODUCT else row.product,
            currency=row.currency,
            vends=row.vends,
            failed=row.failed,
            revenue=row.revenue,
        )
        for row in session.execute(statement)
    ]


def sales_totals(
    session: SessionOrConnection,
    *,
    start: datetime,
    end: datetime,
    machine_id: str | None = None,
    product: str | None = None,
    method: str | None = None,
) -> list[SalesTotal]:
    """Vends, failed vends and revenue per currency in [start, end), counted from the ledger.

    Exact at any moment (not a compiled statistic), so it is the reference the statistics are
    checked against. ``method`` filters on the transaction's payment method.
    """
    completed = VendTransaction.outcome == "completed"
    statement = select(
        VendTransaction.currency,
        func.sum(case((completed, 1), else_=0)).label("vends"),
        func.sum(case((VendTransaction.outcome == "failed", 1), else_=0)).label("failed"),
        func.sum(case((completed, VendTransaction.price), else_=0)).label("revenue"),
    ).where(
        VendTransaction.ts >= timestamp_of(start, "start"),
        VendTransaction.ts < timestamp_of(end, "end"),
        VendTransaction.outcome.in_(("completed", "failed")),
    )
    if machine_id is not None:
        statement = statement.where(VendTransaction.machine_id == machine_id)
    if product is not None:
        statement = statement.where(VendTransaction.product == product)
    if method is not None:
        statement = statement.where(VendTransaction.payment_method == method)
    statement = statement.group_by(VendTransaction.currency).order_by(VendTransaction.currency)
    # SUM() is a DECIMAL on MariaDB and a NUMERIC/BIGINT on PostgreSQL: make them ints.
    return [
        SalesTotal(
            currency=row.currency,
            vends=int(row.vends),
            failed=int(row.failed),
            revenue=int(row.revenue),
        )
        for row in session.execute(statement)
    ]


def sensor_statistics(
    session: SessionOrConnection,
    entity_ids: list[str],
    *,
    period: StatisticsPeriod,
    start: datetime,
    end: datetime,
) -> dict[str, list[SensorRow]]:
    """Compiled min/mean/max rows of ``period`` starting in [start, end), per entity id.

    Every requested entity id is a key; one without statistics maps to an empty list.
    """
    checked_period = _check_period(period)
    result: dict[str, list[SensorRow]] = {entity_id: [] for entity_id in entity_ids}
    metadata_ids = metadata_ids_of(session, entity_ids)
    if not metadata_ids:
        return result
    entity_id_of = {metadata_id: entity_id for entity_id, metadata_id in metadata_ids.items()}
    statement = (
        select(_SENSORS_TABLE)
        .where(
            SensorStatistic.period == checked_period,
            SensorStatistic.metadata_id.in_(list(entity_id_of)),
            SensorStatistic.start_ts >= timestamp_of(start, "start"),
            SensorStatistic.start_ts < timestamp_of(end, "end"),
        )
        .order_by(SensorStatistic.metadata_id, SensorStatistic.start_ts)
    )
    for row in session.execute(statement):
        result[entity_id_of[row.metadata_id]].append(
            SensorRow(
                start=utc_datetime(row.start_ts),
                min=row.min,
                mean=row.mean,
                max=row.max,
                samples=row.samples,
            )
        )
    return result


# ---- ledger lists ------------------------------------------------------------------------------


# Machine ids in one statement of ``completed_vends``: well within every database's bound
# parameters (SQLite allowed 999 before 3.32).
_MACHINES_PER_STATEMENT = 500


def completed_vends(
    session: SessionOrConnection,
    *,
    start: datetime,
    end: datetime,
    machine_ids: Iterable[str],
) -> list[CompletedVend]:
    """The completed vends of ``machine_ids`` in [start, end), each with its event id.

    Unpaged: meant for one day of a fleet (a machine's day's sales are counted from it at
    start, keyed by the event id, so that a sale sent again is not counted twice).
    """
    begin, stop = timestamp_of(start, "start"), timestamp_of(end, "end")
    ids = sorted(set(machine_ids))
    vends: list[CompletedVend] = []
    for first in range(0, len(ids), _MACHINES_PER_STATEMENT):
        statement = (
            select(
                VendTransaction.machine_id,
                VendTransaction.source_event_id,
                VendTransaction.price,
                VendTransaction.currency,
                VendTransaction.ts,
            )
            .where(
                VendTransaction.machine_id.in_(ids[first : first + _MACHINES_PER_STATEMENT]),
                VendTransaction.outcome == "completed",
                VendTransaction.ts >= begin,
                VendTransaction.ts < stop,
            )
            .order_by(VendTransaction.id)
        )
        vends.extend(
            CompletedVend(
                machine_id=row.machine_id,
                source_event_id=row.source_event_id,
                price=int(row.price),
                currency=row.currency,
                time=utc_datetime(row.ts),
            )
            for row in session.execute(statement)
        )
    return vends


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}, got {limit!r}")


def _newest_first(
    session: SessionOrConnection,
    table: Any,
    id_column: Any,
    conditions: list[Any],
    limit: int,
    before_id: int | None,
    make_item: Callable[[Row[Any]], _ItemT],
) -> Page[_ItemT]:
    """One page of ``table``'s rows that meet ``conditions``, newest (highest id) first:
    keyset pagination, ``next_before_id`` None on the last page."""
    if before_id is not None:
        conditions = [*conditions, id_column < before_id]
    statement = select(table).where(*conditions).order_by(id_column.desc()).limit(limit + 1)
    rows = list(session.execute(statement))
    more = len(rows) > limit
    return Page(
        [make_item(row) for row in rows[:limit]],
        getattr(rows[limit - 1], id_column.key) if more else None,
    )


def transactions(
    session: SessionOrConnection,
    *,
    machine_id: str | None = None,
    product: str | None = None,
    method: str | None = None,
    outcome: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Page[TransactionRow]:
    """Vend transactions, newest (highest id) first, ``limit`` (1 to 1000) per page.

    Keyset pagination: pass the page's ``next_before_id`` as ``before_id`` to get the next
    page; it is None on the last page. ``start``/``end`` bound the vend's time as [start, end).
    """
    _check_limit(limit)
    conditions = []
    if machine_id is not None:
        conditions.append(VendTransaction.machine_id == machine_id)
    if product is not None:
        conditions.append(VendTransaction.product == product)
    if method is not None:
        conditions.append(VendTransaction.payment_method == method)
    if outcome is not None:
        conditions.append(VendTransaction.outcome == outcome)
    if start is not None:
        conditions.append(VendTransaction.ts >= timestamp_of(start, "start"))
    if end is not None:
        conditions.append(VendTransaction.ts < timestamp_of(end, "end"))
    return _newest_first(
        session,
        _TRANSACTIONS_TABLE,
        VendTransaction.id,
        conditions,
        limit,
        before_id,
        lambda row: TransactionRow(
            id=row.id,
            machine_id=row.machine_id,
            source_event_id=row.source_event_id,
            vend_id=row.vend_id,
            slot_code=row.slot_code,
            product=row.product,
            price=row.price,
            currency=row.currency,
            outcome=row.outcome,
            failure_reason=row.failure_reason,
            payment_method=row.payment_method,
            time=utc_datetime(row.ts),
            recorded=utc_datetime(row.recorded_ts),
            context_id=_context_hex(row.context_id),
        ),
    )


def payments(
    session: SessionOrConnection,
    *,
    machine_id: str | None = None,
    method: str | None = None,
    status: str | None = None,
    provider: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Page[PaymentRow]:
    """Payments, newest (highest id) first, ``limit`` (1 to 1000) per page.

    Pagination as in ``transactions``; ``start``/``end`` bound the payment's creation time.
    """
    _check_limit(limit)
    conditions = []
    if machine_id is not None:
        conditions.append(Payment.machine_id == machine_id)
    if method is not None:
        conditions.append(Payment.method == method)
    if status is not None:
        conditions.append(Payment.status == status)
    if provider is not None:
        conditions.append(Payment.provider == provider)
    if start is not None:
        conditions.append(Payment.created_ts >= timestamp_of(start, "start"))
    if end is not None:
        conditions.append(Payment.created_ts < timestamp_of(end, "end"))
    return _newest_first(
        session,
        _PAYMENTS_TABLE,
        Payment.id,
        conditions,
        limit,
        before_id,
        lambda row: PaymentRow(
            id=row.id,
            transaction_id=row.transaction_id,
            machine_id=row.machine_id,
            provider=row.provider,
            method=row.method,
            amount=row.amount,
            currency=row.currency,
            status=row.status,
            provider_reference=row.provider_reference,
            source_event_id=row.source_event_id,
            created=utc_datetime(row.created_ts),
            updated=utc_datetime(row.updated_ts),
            context_id=_context_hex(row.context_id),
        ),
    )


# ---- the audit log -----------------------------------------------------------------------------


def audit_log(
    session: SessionOrConnection,
    *,
    actor_type: str | None = None,
    actor_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Page[AuditRow]:
    """Audit log entries, newest (highest id) first, ``limit`` (1 to 1000) per page.

    Every filter given must match exactly; ``since``/``until`` bound the entry's time as
    [since, until). Pagination as in ``transactions``. The (actor_type, actor_id, ts),
    (target_type, target_id, ts) and ts indexes serve the usual questions: what did this
    user do, what happened to this machine, what happened yesterday.
    """
    _check_limit(limit)
    conditions = []
    for column, value in (
        (AuditLogEntry.actor_type, actor_type),
        (AuditLogEntry.actor_id, actor_id),
        (AuditLogEntry.target_type, target_type),
        (AuditLogEntry.target_id, target_id),
        (AuditLogEntry.action, action),
    ):
        if value is not None:
            conditions.append(column == value)
    if since is not None:
        conditions.append(AuditLogEntry.ts >= timestamp_of(since, "since"))
    if until is not None:
        conditions.append(AuditLogEntry.ts < timestamp_of(until, "until"))
    return _newest_first(
        session,
        _AUDIT_TABLE,
        AuditLogEntry.id,
        conditions,
        limit,
        before_id,
        lambda row: AuditRow(
            id=row.id,
            time=utc_datetime(row.ts),
            actor_type=row.actor_type,
            actor_id=row.actor_id,
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            before=None if row.before is None else json.loads(row.before),
            after=None if row.after is None else json.loads(row.after),
            context_id=_context_hex(row.context_id),
            remote_address=row.remote_address,
        ),
    )


def rejected_money_events(
    session: SessionOrConnection,
    *,
    machine_id: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Page[RejectedMoneyRow]:
    """Money events the ledger could not take, newest first, ``limit`` (1 to 1000) per page;
    pagination as in ``transactions``."""
    _check_limit(limit)
    conditions = []
    if machine_id is not None:
        conditions.append(RejectedMoneyEvent.machine_id == machine_id)
    return _newest_first(
        session,
        RejectedMoneyEvent.__table__,
        RejectedMoneyEvent.id,
        conditions,
        limit,
        before_id,
        lambda row: RejectedMoneyRow(
            id=row.id,
            time=utc_datetime(row.ts),
            event_type=row.event_type,
            machine_id=row.machine_id,
            event_id=row.source_event_id,
            data=json.loads(row.event_data),
            error=row.error,
        ),
    )
