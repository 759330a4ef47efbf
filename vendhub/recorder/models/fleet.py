"""The fleet: locations, machines and the planograms that say what each slot sells."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from vendhub.recorder.models.base import Base, Currency, ExternalId, Timestamp

# pending: announced itself, not yet adopted by an operator; active: adopted; retired: taken out.
MACHINE_STATUSES = ("pending", "active", "retired")


class Location(Base):
    """A place where machines stand."""

    __tablename__ = "locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    address: Mapped[str | None] = mapped_column(String(255))
    latitude: Mapped[float | None] = mapped_column(Double)
    longitude: Mapped[float | None] = mapped_column(Double)
    notes: Mapped[str | None] = mapped_column(Text)


class Machine(Base):
    """A vending machine; ``machine_id`` is the id in its entity ``machine.<machine_id>``."""

    __tablename__ = "machines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[str] = mapped_column(ExternalId, unique=True)
    name: Mapped[str] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(64))
    firmware: Mapped[str | None] = mapped_column(String(64))
    location_id: Mapped[int | None] = mapped_column(
        ForeignKey("locations.id", ondelete="SET NULL"), index=True
    )
    created_ts: Mapped[float] = mapped_column(Timestamp)
    adopted_ts: Mapped[float | None] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(String(16))  # one of MACHINE_STATUSES


class Planogram(Base):
    """One version of a machine's layout; at most one version per machine is active."""

    __tablename__ = "planograms"
    __table_args__ = (
        UniqueConstraint("machine_id", "version"),
        Index("ix_planograms_machine_id_active", "machine_id", "active"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[str] = mapped_column(ExternalId)
    version: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    created_ts: Mapped[float] = mapped_column(Timestamp)
    created_by: Mapped[str | None] = mapped_column(ExternalId)


class PlanogramSlot(Base):
    """What one slot of a planogram sells, at what price, and how many it holds."""

    __tablename__ = "planogram_slots"
    __table_args__ = (UniqueConstraint("planogram_id", "slot_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    planogram_id: Mapped[int] = mapped_column(ForeignKey("planograms.id", ondelete="CASCADE"))
    slot_code: Mapped[str] = mapped_column(String(16))
    product_sku: Mapped[str | None] = mapped_column(ForeignKey("products.sku"), index=True)
    price: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(Currency)
    capacity: Mapped[int] = mapped_column(Integer)
    par_level: Mapped[int] = mapped_column(Integer)
