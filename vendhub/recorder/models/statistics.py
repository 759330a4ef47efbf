"""Long-term statistics: compiled per hour and per day, kept after raw history is purged."""

from __future__ import annotations

from sqlalchemy import Double, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vendhub.recorder.models.base import Base, Currency, ExternalId, Timestamp

PERIODS = ("hour", "day")


class SalesStatistic(Base):
    """Vends and revenue of one product in one machine over one hour or day."""

    __tablename__ = "statistics_sales"
    __table_args__ = (UniqueConstraint("period", "start_ts", "machine_id", "product", "currency"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(8))
    start_ts: Mapped[float] = mapped_column(Timestamp, index=True)
    machine_id: Mapped[str] = mapped_column(ExternalId, index=True)
    product: Mapped[str] = mapped_column(String(128))
    currency: Mapped[str] = mapped_column(Currency)
    vends: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[int] = mapped_column(Integer)  # minor units, completed vends only


class SensorStatistic(Base):
    """Minimum, mean and maximum of one numeric entity over one hour or day."""

    __tablename__ = "statistics_sensors"
    __table_args__ = (UniqueConstraint("period", "start_ts", "metadata_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(8))
    start_ts: Mapped[float] = mapped_column(Timestamp, index=True)
    metadata_id: Mapped[int] = mapped_column(ForeignKey("states_meta.metadata_id"))
    min: Mapped[float] = mapped_column(Double)
    mean: Mapped[float] = mapped_column(Double)
    max: Mapped[float] = mapped_column(Double)
    samples: Mapped[int] = mapped_column(Integer)


class StatisticsRun(Base):
    """Which periods have been compiled, so none is compiled twice or skipped."""

    __tablename__ = "statistics_runs"
    __table_args__ = (UniqueConstraint("period", "start_ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(8))
    start_ts: Mapped[float] = mapped_column(Timestamp)
    compiled_ts: Mapped[float] = mapped_column(Timestamp)
