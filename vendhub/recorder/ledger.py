"""The money ledger's rows: vends, payments, stock movements and levels, cash collections.

Each money event from a machine carries the id the machine gave it; a row keyed by (machine,
that id) already there means the event was recorded before, and nothing is written again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from vendhub.const import (
    EVENT_CASH_COLLECTED,
    EVENT_STOCK_REFILLED,
    EVENT_VEND_COMPLETED,
    EVENT_VEND_FAILED,
)
from vendhub.core.events import Event
from vendhub.recorder.convert import context_id_to_bytes, fit_to_column, timestamp_of, to_json
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


def write_money_event(connection: Connection, event: Event) -> MoneyRecord:
    """Write one money event's rows; a duplicate (same machine and event id) writes nothing."""
    data = event.data
    machine_id = str(data["machine_id"])
    event_id = str(data["event_id"])
    record = MoneyRecord(event.event_type, machine_id, event_id, duplicate=True)
    table = (
        CashCollection
        if event.event_type == EVENT_CASH_COLLECTED
        else (StockMovement if event.event_type == EVENT_STOCK_REFILLED else VendTransaction)
    )
    exists = connection.execute(
        select(table.id)
        .where(table.machine_id == machine_id, table.source_event_id == event_id)
        .limit(1)
    ).first()
    if exists is not None:
        return record
    record.duplicate = False
    ts = timestamp_of(data.get("ts"), event.time_fired)
    context_id = context_id_to_bytes(event.context.id)
    if event.event_type == EVENT_CASH_COLLECTED:
        connection.execute(
            insert(CashCollection).values(
                machine_id=machine_id,
                source_event_id=event_id,
                amount=int(data["amount"]),
                currency=str(data["currency"]),
                collected_by=fit_to_column(event.context.user_id, CashCollection.collected_by),
                ts=ts,
                context_id=context_id,
            )
        )
    elif event.event_type == EVENT_STOCK_REFILLED:
        for slot_code, refill in data["slots"].items():
            _stock_movement(
                connection,
                machine_id,
                slot_code,
                refill.get("product"),
                "refill",
                int(refill["added"]),
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
            price=int(data["price"]),
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
            amount=int(data["price"]),
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
