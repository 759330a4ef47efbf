"""Loyalty customers and every change to their balance or points.

A customer's token (card UID, app token) is never stored: only a hash of it, found again
by hashing the token that is presented.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vendhub.recorder.models.base import (
    Base,
    BigIntegerKey,
    ContextId,
    Currency,
    ExternalId,
    Timestamp,
)

LOYALTY_TRANSACTION_KINDS = ("topup", "spend", "refund", "points", "hold", "free_vend", "release")


class LoyaltyCustomer(Base):
    """A loyalty account: a prepaid balance in minor units and a points total."""

    __tablename__ = "loyalty_customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    balance: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(Currency)
    points: Mapped[int] = mapped_column(Integer)
    created_ts: Mapped[float] = mapped_column(Timestamp)
    last_seen_ts: Mapped[float | None] = mapped_column(Timestamp)


class LoyaltyTransaction(Base):
    """One change of a customer's balance and points, recorded once per source event."""

    __tablename__ = "loyalty_transactions"
    __table_args__ = (UniqueConstraint("customer_id", "source_event_id"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("loyalty_customers.id"))
    kind: Mapped[str] = mapped_column(String(16))  # one of LOYALTY_TRANSACTION_KINDS
    amount: Mapped[int] = mapped_column(Integer)  # signed minor units: negative for a spend
    points_delta: Mapped[int] = mapped_column(Integer)
    source_event_id: Mapped[str] = mapped_column(ExternalId)
    ts: Mapped[float] = mapped_column(Timestamp, index=True)
    context_id: Mapped[bytes | None] = mapped_column(ContextId)
