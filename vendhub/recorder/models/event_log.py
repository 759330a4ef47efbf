"""The domain event log: faults, maintenance, alarms, commands, door and cash events."""

from __future__ import annotations

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vendhub.recorder.models.base import (
    Base,
    BigIntegerKey,
    ContextId,
    ExternalId,
    Timestamp,
)

EVENT_LOG_KINDS = ("fault", "maintenance", "alarm", "command", "door", "cash")


class EventLogEntry(Base):
    """One entry of the log; a machine's entry is recorded once per ``source_event_id``."""

    __tablename__ = "event_log"
    __table_args__ = (
        UniqueConstraint("machine_id", "source_event_id"),
        Index("ix_event_log_machine_id_ts", "machine_id", "ts"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    machine_id: Mapped[str | None] = mapped_column(ExternalId)  # NULL: the hub itself
    kind: Mapped[str] = mapped_column(String(16))  # one of EVENT_LOG_KINDS
    code: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text)  # JSON object
    source_event_id: Mapped[str | None] = mapped_column(ExternalId)
    ts: Mapped[float] = mapped_column(Timestamp, index=True)
    context_id: Mapped[bytes | None] = mapped_column(ContextId)
