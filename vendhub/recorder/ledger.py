"""The money ledger's rows: vends, payments, stock movements and levels, cash collections.

Each money event from a machine carries the id the machine gave it; a row keyed by (machine,
that id) already there means the event was recorded before, and nothing is written again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.orm import Session

from vendhub.const import (
    EVENT_CASH_COLLECTED,
    EVENT_STOCK_REFILLED,
    EVENT_VEND_COMPLETED,
    EVENT_VEND_FAILED,
)
from vendhub.core.context import Context
from vendhub.core.events import Event
from vendhub.recorder.convert import context_id_to_bytes, fit_to_column, timestamp_of, to_json
from vendhub.recorder.engine import is_connection_error
from vendhub.recorder.models import (
    CashCollection,
    Payment,
    PaymentStatusChange,
    RejectedMoneyEvent,
    StockLevel,
    StockMovement,
    VendTransaction,
)

MONEY_EVENTS = frozenset(
    {EVENT_VEND_COMPLETED, EVENT_VEND_FAILED, EVENT_CASH_COLLECTED, EVENT_STOCK_REFILLED}
)
DEFAULT_PAYMENT_PROVIDER = "machine"


@dataclass
class MoneyRecord:
    """What the writer tells the loop about one money event after its commit."""

    event_type: str
    machine_id: str
    event_id: str
    duplicate: bool
    rejected: bool = False
    """The ledger could not take it; it is kept in ``rejected_money_events`` instead."""
    reason: str | None = None
    """Why it was rejected."""


def write_rejected_money_event(
    connection: Connection, event: Event, error: BaseException
) -> MoneyRecord:
    """Keep ``event``, which the ledger could not take, with ``error`` as the reason."""
    data = event.data
    machine_id, event_id = data.get("machine_id"), data.get("event_id")
    reason = f"{type(error).__name__}: {error}"
    connection.execute(
        insert(RejectedMoneyEvent).values(
            event_type=fit_to_column(event.event_type, RejectedMoneyEvent.event_type),
            machine_id=None
            if machine_id is None
            else fit_to_column(str(machine_id), RejectedMoneyEvent.machine_id),
            source_event_id=None
            if event_id is None
            else fit_to_column(str(event_id), RejectedMoneyEvent.source_event_id),
            event_data=to_json(dict(data)),
            error=reason,
            ts=time.time(),
        )
    )
    return MoneyRecord(
        event.event_type,
        "" if machine_id is None else str(machine_id),
        "" if event_id is None else str(event_id),
        duplicate=False,
        rejected=True,
        reason=reason,
    )


class ResubmitRefused(ValueError):
    """A rejected money event could not be put into the ledger; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Resubmitted:
    """A rejected money event put into the ledger (``resubmit_rejected_money_event``)."""

    id: int
    event_type: str
    machine_id: str
    event_id: str
    duplicate: bool
    """The ledger had the event already (a copy came through meanwhile): nothing was added."""
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "id": self.id,
            "event_type": self.event_type,
            "machine_id": self.machine_id,
            "event_id": self.event_id,
            "duplicate": self.duplicate,
            "data": self.data,
        }


def resubmit_rejected_money_event(
    session: Session,
    rejected_id: int,
    corrections: Mapping[str, Any],
    context: Context,
) -> Resubmitted:
    """Write the rejected money event ``rejected_id``, with ``corrections`` laid over its data,
    to the ledger and remove it from ``rejected_money_events``, in one transaction.

    Raises ``ResubmitRefused`` naming the problem (no such event, or the ledger refuses it
    still), with nothing changed. The rows get ``context`` (the operator's call); their time
    is the event's own ``ts``, else when it was rejected. A database out of reach raises its
    error as it is (try again later).
    """
    with session.begin():
        connection = session.connection()
        row = connection.execute(
            select(RejectedMoneyEvent).where(RejectedMoneyEvent.id == rejected_id)
        ).first()
        if row is None:
            raise ResubmitRefused(f"there is no rejected money event with id {rejected_id}")
        data = {**json.loads(row.event_data), **corrections}
        event = Event(
            row.event_type,
            data,
            time_fired=datetime.fromtimestamp(row.ts, UTC),
            context=context,
        )
        try:
            if row.event_type not in MONEY_EVENTS:
                raise ValueError(f"{row.event_type} is not a money event")
            record = write_money_event(connection, event)
        except Exception as error:
            if is_connection_error(error):
                raise
            raise ResubmitRefused(
                f"the ledger still refuses {row.event_type} event {row.source_event_id!r} of "
                f"machine {row.machine_id}: {type(error).__name__}: {_first_line(error)}; "
                "nothing was changed: correct the fields with 'data'"
            ) from error
        connection.execute(delete(RejectedMoneyEvent).where(RejectedMoneyEvent.id == rejected_id))
    return Resubmitted(
        id=rejected_id,
        event_type=row.event_type,
        machine_id=record.machine_id,
        event_id=record.event_id,
        duplicate=record.duplicate,
        data=data,
    )


def _whole(data: Mapping[str, Any], key: str) -> int:
    """``data[key]`` as a whole number of minor units; a fraction or text is refused by name
    (``int()`` would cut 1.5 to 1, and say only "invalid literal" of a text)."""
    value = data[key]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"{key} must be a whole number of minor units, not {value!r}")


def _first_line(error: BaseException) -> str:
    """The first line of an error's text (a database error adds its statement below)."""
    text = str(error)
    return text.splitlines()[0] if text else ""


def has_money_event(
    connection: Connection | Session, event_type: str, machine_id: str, event_id: str
) -> bool:
    """True when the ledger holds the money event ``event_type`` (one of ``MONEY_EVENTS``)
    that ``machine_id`` sent as ``event_id``."""
    table = (
        CashCollection
        if event_type == EVENT_CASH_COLLECTED
        else (StockMovement if event_type == EVENT_STOCK_REFILLED else VendTransaction)
    )
    exists = connection.execute(
        select(table.id)
        .where(table.machine_id == machine_id, table.source_event_id == event_id)
        .limit(1)
    ).first()
    return exists is not None


def write_money_event(connection: Connection, event: Event) -> MoneyRecord:
    """Write one money event's rows; a duplicate (same machine and event id) writes nothing."""
    data = event.data
    machine_id = str(data["machine_id"])
    event_id = str(data["event_id"])
    record = MoneyRecord(event.event_type, machine_id, event_id, duplicate=True)
    if has_money_event(connection, event.event_type, machine_id, event_id):
        return record
    record.duplicate = False
    ts = timestamp_of(data.get("ts"), event.time_fired)
    context_id = context_id_to_bytes(event.context.id)
    if event.event_type == EVENT_CASH_COLLECTED:
        connection.execute(
            insert(CashCollection).values(
                machine_id=machine_id,
                source_event_id=event_id,
                amount=_whole(data, "amount"),
                currency=str(data["currency"]),
                collected_by=fit_to_column(event.context.user_id, CashCollection.collected_by),
                ts=ts,
                context_id=context_id,
            )
        )
    elif event.event_type == EVENT_STOCK_REFILLED:
        for slot_code, refill in data["slots"].items():
            added = _whole(refill, "added")
            _stock_movement(
                connection,
                machine_id,
                slot_code,
                refill.get("product"),
                # A count below what the slot was thought to hold (or a cut to a smaller
                # capacity) takes items away: a correction, not a refill.
                "refill" if added >= 0 else "correction",
                added,
                refill.get("stock"),
                event_id,
                event,
                ts,
            )
    else:
        _vend(connection, event, machine_id, event_id, ts, context_id)
    return record


def _vend(
    connection: Connection,
    event: Event,
    machine_id: str,
    event_id: str,
    ts: float,
    context_id: bytes | None,
) -> None:
    data = event.data
    completed = event.event_type == EVENT_VEND_COMPLETED
    now = time.time()
    transaction_id = connection.execute(
        insert(VendTransaction).values(
            machine_id=machine_id,
            source_event_id=event_id,
            vend_id=data.get("vend_id"),
            slot_code=str(data["slot"]),
            product=data.get("product"),
            price=_whole(data, "price"),
            currency=str(data["currency"]),
            outcome="completed" if completed else "failed",
            failure_reason=data.get("reason"),
            payment_method=data.get("payment_method"),
            ts=ts,
            recorded_ts=now,
            context_id=context_id,
        )
    ).inserted_primary_key[0]
    if not completed:
        return
    payment_id = connection.execute(
        insert(Payment).values(
            transaction_id=transaction_id,
            machine_id=machine_id,
            provider=str(data.get("payment_provider") or DEFAULT_PAYMENT_PROVIDER),
            method=str(data.get("payment_method") or "unknown"),
            amount=_whole(data, "price"),
            currency=str(data["currency"]),
            status="captured",
            provider_reference=data.get("payment_reference"),
            source_event_id=event_id,
            created_ts=ts,
            updated_ts=ts,
            context_id=context_id,
        )
    ).inserted_primary_key[0]
    connection.execute(
        insert(PaymentStatusChange).values(payment_id=payment_id, status="captured", ts=ts)
    )
    _stock_movement(
        connection,
        machine_id,
        str(data["slot"]),
        data.get("product"),
        "vend",
        -1,
        data.get("stock"),
        event_id,
        event,
        ts,
    )


def _stock_movement(
    connection: Connection,
    machine_id: str,
    slot_code: str,
    product: str | None,
    kind: str,
    quantity: int,
    stock_after: int | None,
    event_id: str,
    event: Event,
    ts: float,
) -> None:
    connection.execute(
        insert(StockMovement).values(
            machine_id=machine_id,
            slot_code=slot_code,
            product=product,
            kind=kind,
            quantity=quantity,
            stock_after=stock_after,
            source_event_id=event_id,
            user_id=fit_to_column(event.context.user_id, StockMovement.user_id),
            ts=ts,
            context_id=context_id_to_bytes(event.context.id),
        )
    )
    if stock_after is None:
        return
    of_slot = (StockLevel.machine_id == machine_id, StockLevel.slot_code == slot_code)
    # An event that arrives late (sent again from an outbox, put right by an operator) does
    # not take the level back to what it was then.
    updated = connection.execute(
        update(StockLevel)
        .where(*of_slot, StockLevel.updated_ts <= ts)
        .values(quantity=stock_after, product=product, updated_ts=ts)
    ).rowcount
    if (
        not updated
        and connection.execute(select(StockLevel.quantity).where(*of_slot)).first() is None
    ):
        connection.execute(
            insert(StockLevel).values(
                machine_id=machine_id,
                slot_code=slot_code,
                product=product,
                quantity=stock_after,
                updated_ts=ts,
            )
        )
