"""Keep the money events the ledger could not take, with the reason (``rejected_money_events``).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Every table on MariaDB: utf8mb4, compared byte by byte like SQLite and PostgreSQL do.
MYSQL_TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def upgrade() -> None:
    op.create_table(
        "rejected_money_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("machine_id", sa.String(length=255), nullable=True),
        sa.Column("source_event_id", sa.String(length=255), nullable=True),
        sa.Column("event_data", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_money_events")),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        op.f("ix_rejected_money_events_machine_id"),
        "rejected_money_events",
        ["machine_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_rejected_money_events_ts"), "rejected_money_events", ["ts"], unique=False
    )


def downgrade() -> None:
    op.drop_table("rejected_money_events")
