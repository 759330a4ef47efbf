"""Make a payment's source event id unique per machine and provider, not per provider alone.

A vend's payment row takes the machine's event id. Event ids are unique per machine only (the
machine protocol lets a machine's firmware number its events as it likes), so two machines
whose events shared an id and a provider broke the old constraint, and the recorder's writer
stopped on it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot change a table's constraints in place (the table is copied);
    # PostgreSQL and MariaDB get the two ALTER statements.
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint("uq_payments_provider_source_event_id", type_="unique")
        batch.create_unique_constraint(
            "uq_payments_machine_id_provider_source_event_id",
            ["machine_id", "provider", "source_event_id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint("uq_payments_machine_id_provider_source_event_id", type_="unique")
        batch.create_unique_constraint(
            "uq_payments_provider_source_event_id", ["provider", "source_event_id"]
        )
