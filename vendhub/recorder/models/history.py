"""State history and recorded bus events, stored compactly.

Entity ids, event types and attribute sets repeat endlessly, so each is stored once and rows
refer to it by a small integer. ``last_changed_ts`` is NULL when it equals ``last_updated_ts``.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vendhub.recorder.models.base import Base, BigIntegerKey, ContextId, ExternalId, Timestamp


class StatesMeta(Base):
    """One row per entity id ever recorded."""

    __tablename__ = "states_meta"

    metadata_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(255), unique=True)


class StateAttributes(Base):
    """One row per distinct attribute set (as JSON), found again through its hash."""

    __tablename__ = "state_attributes"

    attributes_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[int] = mapped_column(BigIntegerKey, index=True)
    shared_attrs: Mapped[str] = mapped_column(Text)


class States(Base):
    """One row per recorded state change."""

    __tablename__ = "states"
    __table_args__ = (
        Index("ix_states_metadata_id_last_updated_ts", "metadata_id", "last_updated_ts"),
    )

    state_id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    metadata_id: Mapped[int] = mapped_column(ForeignKey("states_meta.metadata_id"))
    state: Mapped[str | None] = mapped_column(String(255))
    attributes_id: Mapped[int | None] = mapped_column(
        ForeignKey("state_attributes.attributes_id"), index=True
    )
    last_updated_ts: Mapped[float] = mapped_column(Timestamp, index=True)
    last_changed_ts: Mapped[float | None] = mapped_column(Timestamp)
    context_id: Mapped[bytes | None] = mapped_column(ContextId)


class EventTypes(Base):
    """One row per event type ever recorded."""

    __tablename__ = "event_types"

    event_type_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64), unique=True)


class Events(Base):
    """One row per recorded bus event (other than ``state_changed``)."""

    __tablename__ = "events"

    event_id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    event_type_id: Mapped[int] = mapped_column(ForeignKey("event_types.event_type_id"), index=True)
    event_data: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[int] = mapped_column(SmallInteger)
    time_fired_ts: Mapped[float] = mapped_column(Timestamp, index=True)
    context_id: Mapped[bytes | None] = mapped_column(ContextId)
    context_user_id: Mapped[str | None] = mapped_column(ExternalId)
    context_parent_id: Mapped[bytes | None] = mapped_column(ContextId)
