"""Counted cash collections against what the machine reported, in the recorder's database.

A route driver empties a machine's cash box and the cash is counted; ``record_collection``
writes the count and compares it with what the machine reported as having gone into its box
since the last counted collection (the *expected* amount), taken from the first of:

1. ``machine_reported``: the machine's own ``cash_collected`` events recorded since the last
   counted collection (rows of ``cash_collections`` that the recorder wrote from them): the
   sum of what the machine says was taken out.
2. ``cash_box``: the machine's cash box level (``sensor.<id>_cash_box``) now, less the level
   left at the last counted collection (a box lower than that means the machine reset its
   counter without reporting a collection: all of it counts).
3. ``cash_sales``: completed cash vends in the ledger since the last counted collection.

One transaction writes the collection (``cash_collections``, ``source_event_id``
``counted:<collection id>``, the counted amount, who, when) and the comparison
(``event_log``, kind ``cash``, code ``cash_collection_counted`` or ``cash_discrepancy``,
the figures in ``data``), so the two never exist apart, and a repeated collection id
returns what was recorded the first time.

Functions here run in a worker thread with a session of the recorder's engine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vendhub.recorder.models import CashCollection, EventLogEntry, VendTransaction

COUNTED_PREFIX = "counted:"
CODE_COUNTED = "cash_collection_counted"
CODE_DISCREPANCY = "cash_discrepancy"
EVENT_LOG_KIND = "cash"
SOURCE_MACHINE = "machine_reported"
SOURCE_CASH_BOX = "cash_box"
SOURCE_CASH_SALES = "cash_sales"
MAX_COLLECTION_ID_CHARS = 64 - len(COUNTED_PREFIX)


class CashAccountingError(ValueError):
    """A collection cannot be recorded as given; the message says why."""


@dataclass(frozen=True, slots=True)
class CollectionInput:
    """What the driver reports, and the machine's cash box level as the hub sees it now."""

    machine_id: str
    collection_id: str
    counted: int
    currency: str
    collected_by: str
    collected_ts: float
    tolerance: int
    box_level: int | None
    context_id: bytes | None


@dataclass(slots=True)
class CollectionResult:
    """A recorded collection and its comparison (``data`` of its event log entry)."""

    machine_id: str
    collection_id: str
    counted: int
    expected: int
    difference: int
    currency: str
    collected_by: str
    collected_ts: float
    expected_source: str
    tolerance: int
    status: str  # matched | discrepancy
    machine_event_ids: list[str] = field(default_factory=list)
    box_level: int | None = None
    duplicate: bool = False

    @property
    def discrepancy(self) -> bool:
        return self.status == "discrepancy"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_collection(session: Session, given: CollectionInput) -> CollectionResult:
    """Record one counted collection and compare it (see the module's docstring)."""
    key = COUNTED_PREFIX + given.collection_id
    earlier = _recorded(session, given.machine_id, key)
    if earlier is not None:
        earlier.duplicate = True
        return earlier
    last = session.execute(
        select(CashCollection.id, CashCollection.ts, CashCollection.source_event_id)
        .where(
            CashCollection.machine_id == given.machine_id,
            CashCollection.source_event_id.startswith(COUNTED_PREFIX, autoescape=True),
        )
        .order_by(CashCollection.id.desc())
        .limit(1)
    ).first()
    if last is not None and given.collected_ts < last.ts:
        raise CashAccountingError(
            f"collected_at: {_shown(given.collected_ts)} is before {given.machine_id}'s last "
            f"counted collection {last.source_event_id.removeprefix(COUNTED_PREFIX)!r} "
            f"({_shown(last.ts)}); a count is compared with what went in since the one before "
            "it, so record collections in the order they were made"
        )
    last_id = last.id if last is not None else 0
    reported = session.execute(
        select(CashCollection.source_event_id, CashCollection.amount, CashCollection.currency)
        .where(
            CashCollection.machine_id == given.machine_id,
            CashCollection.id > last_id,
            ~CashCollection.source_event_id.startswith(COUNTED_PREFIX, autoescape=True),
        )
        .order_by(CashCollection.id)
    ).all()
    for row in reported:
        if row.currency != given.currency:
            raise CashAccountingError(
                f"{given.machine_id} reported its collection {row.source_event_id} in "
                f"{row.currency}, the count is in {given.currency}"
            )
    box_level: int | None = given.box_level
    if reported:
        source = SOURCE_MACHINE
        expected = sum(row.amount for row in reported)
        box_level = None  # the machine reset its own counter when it reported the collection
    elif given.box_level is not None:
        source = SOURCE_CASH_BOX
        left = _box_level_left(session, given.machine_id, last)
        expected = given.box_level - left if given.box_level >= left else given.box_level
    else:
        source = SOURCE_CASH_SALES
        expected = _cash_sales(session, given, last.ts if last is not None else None)
    difference = given.counted - expected
    result = CollectionResult(
        machine_id=given.machine_id,
        collection_id=given.collection_id,
        counted=given.counted,
        expected=expected,
        difference=difference,
        currency=given.currency,
        collected_by=given.collected_by,
        collected_ts=given.collected_ts,
        expected_source=source,
        tolerance=given.tolerance,
        status="discrepancy" if abs(difference) > given.tolerance else "matched",
        machine_event_ids=[row.source_event_id for row in reported],
        box_level=box_level,
    )
    try:
        session.execute(
            insert(CashCollection).values(
                machine_id=given.machine_id,
                source_event_id=key,
                amount=given.counted,
                currency=given.currency,
                collected_by=given.collected_by,
                ts=given.collected_ts,
                context_id=given.context_id,
            )
        )
        session.execute(
            insert(EventLogEntry).values(
                machine_id=given.machine_id,
                kind=EVENT_LOG_KIND,
                code=CODE_DISCREPANCY if result.discrepancy else CODE_COUNTED,
                severity=None,
                message=describe(result),
                data=json.dumps(result.as_dict(), separators=(",", ":")),
                source_event_id=key,
                ts=given.collected_ts,
                context_id=given.context_id,
            )
        )
        session.commit()
    except IntegrityError:  # the same collection id, recorded a moment ago by another call
        session.rollback()
        earlier = _recorded(session, given.machine_id, key)
        if earlier is None:
            raise
        earlier.duplicate = True
        return earlier
    return result


def describe(result: CollectionResult) -> str:
    """One sentence for the event log and the alarm."""
    counted = _money(result.counted, result.currency)
    expected = _money(result.expected, result.currency)
    where = {
        SOURCE_MACHINE: "the machine reported collecting",
        SOURCE_CASH_BOX: "the machine's cash box took in",
        SOURCE_CASH_SALES: "the machine's cash sales came to",
    }[result.expected_source]
    text = f"{result.machine_id}: {counted} counted by {result.collected_by}; {where} {expected}"
    if result.difference == 0:
        return f"{text}."
    side = "short" if result.difference < 0 else "over"
    return f"{text} ({_money(abs(result.difference), result.currency)} {side})."


def _money(amount: int, currency: str) -> str:
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole}.{cents:02d} {currency}"


def _recorded(session: Session, machine_id: str, key: str) -> CollectionResult | None:
    data = session.execute(
        select(EventLogEntry.data).where(
            EventLogEntry.machine_id == machine_id, EventLogEntry.source_event_id == key
        )
    ).scalar()
    if data is None:
        return None
    return CollectionResult(**json.loads(data))


def _box_level_left(session: Session, machine_id: str, last: Any) -> int:
    if last is None:
        return 0
    data = session.execute(
        select(EventLogEntry.data).where(
            EventLogEntry.machine_id == machine_id,
            EventLogEntry.source_event_id == last.source_event_id,
        )
    ).scalar()
    level = json.loads(data).get("box_level") if data else None
    return int(level) if isinstance(level, int) else 0


def _shown(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _cash_sales(session: Session, given: CollectionInput, since: float | None) -> int:
    statement = select(func.coalesce(func.sum(VendTransaction.price), 0)).where(
        VendTransaction.machine_id == given.machine_id,
        VendTransaction.outcome == "completed",
        VendTransaction.payment_method == "cash",
        VendTransaction.currency == given.currency,
        VendTransaction.ts <= given.collected_ts,
    )
    if since is not None:
        statement = statement.where(VendTransaction.ts > since)
    return int(session.execute(statement).scalar_one())


def collections(
    session: Session,
    machine_id: str | None,
    since: float | None,
    until: float | None,
    limit: int,
) -> dict[str, Any]:
    """Counted collections (newest first), totals per machine and currency, and the
    machine-reported collections not counted yet."""
    statement = select(EventLogEntry.data).where(
        EventLogEntry.kind == EVENT_LOG_KIND,
        EventLogEntry.code.in_((CODE_COUNTED, CODE_DISCREPANCY)),
    )
    if machine_id is not None:
        statement = statement.where(EventLogEntry.machine_id == machine_id)
    if since is not None:
        statement = statement.where(EventLogEntry.ts >= since)
    if until is not None:
        statement = statement.where(EventLogEntry.ts < until)
    items = [
        json.loads(data)
        for data in session.execute(
            statement.order_by(EventLogEntry.ts.desc(), EventLogEntry.id.desc()).limit(limit)
        ).scalars()
    ]
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        total = totals.setdefault(
            (item["machine_id"], item["currency"]),
            {
                "machine_id": item["machine_id"],
                "currency": item["currency"],
                "collections": 0,
                "counted": 0,
                "expected": 0,
                "difference": 0,
                "discrepancies": 0,
            },
        )
        total["collections"] += 1
        total["counted"] += item["counted"]
        total["expected"] += item["expected"]
        total["difference"] += item["difference"]
        total["discrepancies"] += item["status"] == "discrepancy"
    return {
        "items": items,
        "totals": sorted(totals.values(), key=lambda t: (t["machine_id"], t["currency"])),
        "not_counted": _not_counted(session, machine_id),
    }


def _not_counted(session: Session, machine_id: str | None) -> list[dict[str, Any]]:
    last_counted = (
        select(
            CashCollection.machine_id.label("machine_id"),
            func.max(CashCollection.id).label("last_id"),
        )
        .where(CashCollection.source_event_id.startswith(COUNTED_PREFIX, autoescape=True))
        .group_by(CashCollection.machine_id)
        .subquery()
    )
    statement = (
        select(
            CashCollection.machine_id,
            CashCollection.source_event_id,
            CashCollection.amount,
            CashCollection.currency,
            CashCollection.ts,
        )
        .outerjoin(last_counted, last_counted.c.machine_id == CashCollection.machine_id)
        .where(
            ~CashCollection.source_event_id.startswith(COUNTED_PREFIX, autoescape=True),
            CashCollection.id > func.coalesce(last_counted.c.last_id, 0),
        )
        .order_by(CashCollection.id)
    )
    if machine_id is not None:
        statement = statement.where(CashCollection.machine_id == machine_id)
    return [
        {
            "machine_id": row.machine_id,
            "event_id": row.source_event_id,
            "amount": row.amount,
            "currency": row.currency,
            "ts": row.ts,
        }
        for row in session.execute(statement).all()
    ]
