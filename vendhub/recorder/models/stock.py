"""Stock per slot and every movement that changed it, with who and when."""

from __future__ import annotations

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vendhub.recorder.models.base import Base, BigIntegerKey, ContextId, ExternalId, Timestamp

MOVEMENT_KINDS = ("vend", "refill", "correction", "spoilage")


class StockLevel(Base):
    """The current stock of one slot of one machine."""

    __tablename__ = "stock_levels"
    __table_args__ = (UniqueConstraint("machine_id", "slot_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[str] = mapped_column(ExternalId)
    slot_code: Mapped[str] = mapped_column(String(16))
    product: Mapped[str | None] = mapped_column(String(128))
    quantity: Mapped[int] = mapped_column(Integer)
    updated_ts: Mapped[float] = mapped_column(Timestamp)


class StockMovement(Base):
    """A change of stock: a vend (-1), a refill, a correction or spoilage."""

    __tablename__ = "stock_movements"
    __table_args__ = (UniqueConstraint("machine_id", "source_event_id", "kind", "slot_code"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    machine_id: Mapped[str] = mapped_column(ExternalId, index=True)
    slot_code: Mapped[str] = mapped_column(String(16))
    product: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer)  # signed: -1 for a vend
    stock_after: Mapped[int | None] = mapped_column(Integer)
    source_event_id: Mapped[str | None] = mapped_column(ExternalId)
    user_id: Mapped[str | None] = mapped_column(ExternalId)
    ts: Mapped[float] = mapped_column(Timestamp, index=True)
    context_id: Mapped[bytes | None] = mapped_column(ContextId)
