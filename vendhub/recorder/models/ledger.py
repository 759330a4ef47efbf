"""The money ledger: vends, payments and cash collections. Never purged.

Every row that a machine or a payment provider caused carries the id they gave it
(``source_event_id``) under a unique constraint, so a replayed event is recorded once.
Card numbers are never stored: only the provider's reference.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vendhub.recorder.models.base import (
    Base,
    BigIntegerKey,
    ContextId,
    Currency,
    ExternalId,
    Timestamp,
)


class VendTransaction(Base):
    """One vend attempt and its outcome."""

    __tablename__ = "vend_transactions"
    __table_args__ = (UniqueConstraint("machine_id", "source_event_id"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    machine_id: Mapped[str] = mapped_column(ExternalId, index=True)
    source_event_id: Mapped[str] = mapped_column(ExternalId)
    vend_id: Mapped[str | None] = mapped_column(ExternalId)
    slot_code: Mapped[str] = mapped_column(String(16))
    product: Mapped[str | None] = mapped_column(String(128), index=True)
    price: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(Currency)
    outcome: Mapped[str] = mapped_column(String(16))  # completed | failed
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    payment_method: Mapped[str | None] = mapped_column(String(16), index=True)
    ts: Mapped[float] = mapped_column(Timestamp, index=True)
    recorded_ts: Mapped[float] = mapped_column(Timestamp)
    context_id: Mapped[bytes | None] = mapped_column(ContextId)


class Payment(Base):
    """A payment and where it is in its life: authorized, captured, voided, refunded, failed."""

    __tablename__ = "payments"
    # Event ids are unique per machine (a vend's payment takes the machine's event id).
    __table_args__ = (UniqueConstraint("machine_id", "provider", "source_event_id"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("vend_transactions.id"), index=True
    )
    machine_id: Mapped[str] = mapped_column(ExternalId, index=True)
    provider: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(16), index=True)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(Currency)
    status: Mapped[str] = mapped_column(String(16))
    provider_reference: Mapped[str | None] = mapped_column(String(128))
    source_event_id: Mapped[str] = mapped_column(ExternalId)
    created_ts: Mapped[float] = mapped_column(Timestamp, index=True)
    updated_ts: Mapped[float] = mapped_column(Timestamp)
    context_id: Mapped[bytes | None] = mapped_column(ContextId)


class PaymentStatusChange(Base):
    """Each step of a payment's lifecycle, in order (the audit of its status)."""

    __tablename__ = "payment_status_changes"

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    ts: Mapped[float] = mapped_column(Timestamp)
    detail: Mapped[str | None] = mapped_column(Text)


class CashCollection(Base):
    """Cash taken out of a machine's cash box by a route driver."""

    __tablename__ = "cash_collections"
    __table_args__ = (UniqueConstraint("machine_id", "source_event_id"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    machine_id: Mapped[str] = mapped_column(ExternalId, index=True)
    source_event_id: Mapped[str] = mapped_column(ExternalId)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(Currency)
    collected_by: Mapped[str | None] = mapped_column(ExternalId)
    ts: Mapped[float] = mapped_column(Timestamp, index=True)
    context_id: Mapped[bytes | None] = mapped_column(ContextId)


class RejectedMoneyEvent(Base):
    """A money event the ledger could not take (the database refused it, or a field was
    missing), kept as it came with the reason, so that nothing a machine sent is lost: the
    event is acknowledged, and an operator can read it here and put it right."""

    __tablename__ = "rejected_money_events"

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    event_type: Mapped[str] = mapped_column(String(64))
    machine_id: Mapped[str | None] = mapped_column(String(255), index=True)
    source_event_id: Mapped[str | None] = mapped_column(String(255))
    event_data: Mapped[str] = mapped_column(Text)
    """The event's data as JSON, as it came."""
    error: Mapped[str] = mapped_column(Text)
    ts: Mapped[float] = mapped_column(Timestamp, index=True)
    """When the recorder rejected it."""
