"""Users of the console and API, and the audit log of what every actor changed."""

from __future__ import annotations

from sqlalchemy import Boolean, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vendhub.recorder.models.base import (
    Base,
    BigIntegerKey,
    ContextId,
    ExternalId,
    Timestamp,
)

ACTOR_TYPES = ("user", "token", "machine", "automation", "system")


class User(Base):
    """A person (or service account) who signs in to the console or the API."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(ExternalId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean)
    created_ts: Mapped[float] = mapped_column(Timestamp)
    last_login_ts: Mapped[float | None] = mapped_column(Timestamp)


class AuditLogEntry(Base):
    """Who did what to which target, with the target's value before and after (as JSON)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_target_type_target_id_ts", "target_type", "target_id", "ts"),
        Index("ix_audit_log_actor_type_actor_id_ts", "actor_type", "actor_id", "ts"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Timestamp, index=True)
    actor_type: Mapped[str] = mapped_column(String(16))  # one of ACTOR_TYPES
    actor_id: Mapped[str | None] = mapped_column(ExternalId)
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(255))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    context_id: Mapped[bytes | None] = mapped_column(ContextId)
    remote_address: Mapped[str | None] = mapped_column(String(64))
