"""Index the references from history rows to shared attributes and event types.

Purging finds attribute sets and event types that no row refers to any more; without these
indexes that reads the whole ``states`` or ``events`` table (seconds on a Pi with millions of
rows). MariaDB indexes foreign keys by itself, but an explicit index keeps every backend alike.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_states_attributes_id"), "states", ["attributes_id"], unique=False)
    op.create_index(op.f("ix_events_event_type_id"), "events", ["event_type_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_events_event_type_id"), table_name="events")
    op.drop_index(op.f("ix_states_attributes_id"), table_name="states")
