"""The recorder's first schema: fleet, catalog, ledger, stock, loyalty, logs, history, statistics.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
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
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=255), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("context_id", sa.LargeBinary(length=16), nullable=True),
        sa.Column("remote_address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        "ix_audit_log_actor_type_actor_id_ts",
        "audit_log",
        ["actor_type", "actor_id", "ts"],
        unique=False,
    )
    op.create_index(
        "ix_audit_log_target_type_target_id_ts",
        "audit_log",
        ["target_type", "target_id", "ts"],
        unique=False,
    )
    op.create_index(op.f("ix_audit_log_ts"), "audit_log", ["ts"], unique=False)

    op.create_table(
        "cash_collections",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("machine_id", sa.String(length=64), nullable=False),
        sa.Column("source_event_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("collected_by", sa.String(length=64), nullable=True),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("context_id", sa.LargeBinary(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cash_collections")),
        sa.UniqueConstraint(
            "machine_id",
            "source_event_id",
            name=op.f("uq_cash_collections_machine_id_source_event_id"),
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        op.f("ix_cash_collections_machine_id"), "cash_collections", ["machine_id"], unique=False
    )
    op.create_index(op.f("ix_cash_collections_ts"), "cash_collections", ["ts"], unique=False)

    op.create_table(
        "event_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("machine_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("source_event_id", sa.String(length=64), nullable=True),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("context_id", sa.LargeBinary(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_log")),
        sa.UniqueConstraint(
            "machine_id", "source_event_id", name=op.f("uq_event_log_machine_id_source_event_id")
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_event_log_machine_id_ts", "event_log", ["machine_id", "ts"], unique=False)
    op.create_index(op.f("ix_event_log_ts"), "event_log", ["ts"], unique=False)

    op.create_table(
        "event_types",
        sa.Column("event_type_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("event_type_id", name=op.f("pk_event_types")),
        sa.UniqueConstraint("event_type", name=op.f("uq_event_types_event_type")),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=True),
        sa.Column("latitude", sa.Double(), nullable=True),
        sa.Column("longitude", sa.Double(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_locations")),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "loyalty_customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("display_name", sa.String(length=128), nullable=True),
        sa.Column("balance", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("created_ts", sa.Double(), nullable=False),
        sa.Column("last_seen_ts", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_customers")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_loyalty_customers_token_hash")),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "planograms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_ts", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planograms")),
        sa.UniqueConstraint("machine_id", "version", name=op.f("uq_planograms_machine_id_version")),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        "ix_planograms_machine_id_active", "planograms", ["machine_id", "active"], unique=False
    )

    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("default_name", sa.String(length=128), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column("allergens", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_ts", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("sku", name=op.f("uq_products_sku")),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(op.f("ix_products_category"), "products", ["category"], unique=False)

    op.create_table(
        "state_attributes",
        sa.Column("attributes_id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shared_attrs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("attributes_id", name=op.f("pk_state_attributes")),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(op.f("ix_state_attributes_hash"), "state_attributes", ["hash"], unique=False)

    op.create_table(
        "states_meta",
        sa.Column("metadata_id", sa.Integer(), nullable=False),
        sa.Column("entity_id", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("metadata_id", name=op.f("pk_states_meta")),
        sa.UniqueConstraint("entity_id", name=op.f("uq_states_meta_entity_id")),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "statistics_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("start_ts", sa.Double(), nullable=False),
        sa.Column("compiled_ts", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statistics_runs")),
        sa.UniqueConstraint("period", "start_ts", name=op.f("uq_statistics_runs_period_start_ts")),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "statistics_sales",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("start_ts", sa.Double(), nullable=False),
        sa.Column("machine_id", sa.String(length=64), nullable=False),
        sa.Column("product", sa.String(length=128), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("vends", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("revenue", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statistics_sales")),
        sa.UniqueConstraint(
            "period",
            "start_ts",
            "machine_id",
            "product",
            "currency",
            name=op.f("uq_statistics_sales_period_start_ts_machine_id_product_currency"),
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        op.f("ix_statistics_sales_machine_id"), "statistics_sales", ["machine_id"], unique=False
    )
    op.create_index(
        op.f("ix_statistics_sales_start_ts"), "statistics_sales", ["start_ts"], unique=False
    )

    op.create_table(
        "stock_levels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.String(length=64), nullable=False),
        sa.Column("slot_code", sa.String(length=16), nullable=False),
        sa.Column("product", sa.String(length=128), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("updated_ts", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_levels")),
        sa.UniqueConstraint(
            "machine_id", "slot_code", name=op.f("uq_stock_levels_machine_id_slot_code")
        ),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "stock_movements",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("machine_id", sa.String(length=64), nullable=False),
        sa.Column("slot_code", sa.String(length=16), nullable=False),
        sa.Column("product", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("stock_after", sa.Integer(), nullable=True),
        sa.Column("source_event_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("context_id", sa.LargeBinary(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_movements")),
        sa.UniqueConstraint(
            "machine_id",
            "source_event_id",
            "kind",
            "slot_code",
            name=op.f("uq_stock_movements_machine_id_source_event_id_kind_slot_code"),
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        op.f("ix_stock_movements_machine_id"), "stock_movements", ["machine_id"], unique=False
    )
    op.create_index(op.f("ix_stock_movements_ts"), "stock_movements", ["ts"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=128), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_ts", sa.Double(), nullable=False),
        sa.Column("last_login_ts", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "vend_transactions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("machine_id", sa.String(length=64), nullable=False),
        sa.Column("source_event_id", sa.String(length=64), nullable=False),
        sa.Column("vend_id", sa.String(length=64), nullable=True),
        sa.Column("slot_code", sa.String(length=16), nullable=False),
        sa.Column("product", sa.String(length=128), nullable=True),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("payment_method", sa.String(length=16), nullable=True),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("recorded_ts", sa.Double(), nullable=False),
        sa.Column("context_id", sa.LargeBinary(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vend_transactions")),
        sa.UniqueConstraint(
            "machine_id",
            "source_event_id",
            name=op.f("uq_vend_transactions_machine_id_source_event_id"),
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        op.f("ix_vend_transactions_machine_id"), "vend_transactions", ["machine_id"], unique=False
    )
    op.create_index(
        op.f("ix_vend_transactions_payment_method"),
        "vend_transactions",
        ["payment_method"],
        unique=False,
    )
    op.create_index(
        op.f("ix_vend_transactions_product"), "vend_transactions", ["product"], unique=False
    )
    op.create_index(op.f("ix_vend_transactions_ts"), "vend_transactions", ["ts"], unique=False)

    op.create_table(
        "events",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_type_id", sa.Integer(), nullable=False),
        sa.Column("event_data", sa.Text(), nullable=True),
        sa.Column("origin", sa.SmallInteger(), nullable=False),
        sa.Column("time_fired_ts", sa.Double(), nullable=False),
        sa.Column("context_id", sa.LargeBinary(length=16), nullable=True),
        sa.Column("context_user_id", sa.String(length=64), nullable=True),
        sa.Column("context_parent_id", sa.LargeBinary(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_type_id"],
            ["event_types.event_type_id"],
            name=op.f("fk_events_event_type_id_event_types"),
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_events")),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(op.f("ix_events_time_fired_ts"), "events", ["time_fired_ts"], unique=False)

    op.create_table(
        "loyalty_transactions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("points_delta", sa.Integer(), nullable=False),
        sa.Column("source_event_id", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("context_id", sa.LargeBinary(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["loyalty_customers.id"],
            name=op.f("fk_loyalty_transactions_customer_id_loyalty_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_transactions")),
        sa.UniqueConstraint(
            "customer_id",
            "source_event_id",
            name=op.f("uq_loyalty_transactions_customer_id_source_event_id"),
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        op.f("ix_loyalty_transactions_ts"), "loyalty_transactions", ["ts"], unique=False
    )

    op.create_table(
        "machines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("firmware", sa.String(length=64), nullable=True),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("created_ts", sa.Double(), nullable=False),
        sa.Column("adopted_ts", sa.Double(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_machines_location_id_locations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_machines")),
        sa.UniqueConstraint("machine_id", name=op.f("uq_machines_machine_id")),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(op.f("ix_machines_location_id"), "machines", ["location_id"], unique=False)

    op.create_table(
        "payments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("machine_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_reference", sa.String(length=128), nullable=True),
        sa.Column("source_event_id", sa.String(length=64), nullable=False),
        sa.Column("created_ts", sa.Double(), nullable=False),
        sa.Column("updated_ts", sa.Double(), nullable=False),
        sa.Column("context_id", sa.LargeBinary(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["vend_transactions.id"],
            name=op.f("fk_payments_transaction_id_vend_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint(
            "provider", "source_event_id", name=op.f("uq_payments_provider_source_event_id")
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(op.f("ix_payments_created_ts"), "payments", ["created_ts"], unique=False)
    op.create_index(op.f("ix_payments_machine_id"), "payments", ["machine_id"], unique=False)
    op.create_index(op.f("ix_payments_method"), "payments", ["method"], unique=False)
    op.create_index(
        op.f("ix_payments_transaction_id"), "payments", ["transaction_id"], unique=False
    )

    op.create_table(
        "planogram_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("planogram_id", sa.Integer(), nullable=False),
        sa.Column("slot_code", sa.String(length=16), nullable=False),
        sa.Column("product_sku", sa.String(length=64), nullable=True),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("par_level", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["planogram_id"],
            ["planograms.id"],
            name=op.f("fk_planogram_slots_planogram_id_planograms"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_sku"], ["products.sku"], name=op.f("fk_planogram_slots_product_sku_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planogram_slots")),
        sa.UniqueConstraint(
            "planogram_id", "slot_code", name=op.f("uq_planogram_slots_planogram_id_slot_code")
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        op.f("ix_planogram_slots_product_sku"), "planogram_slots", ["product_sku"], unique=False
    )

    op.create_table(
        "product_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("mime_type", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_images_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_images")),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        op.f("ix_product_images_product_id"), "product_images", ["product_id"], unique=False
    )

    op.create_table(
        "product_translations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_translations_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_translations")),
        sa.UniqueConstraint(
            "product_id", "language", name=op.f("uq_product_translations_product_id_language")
        ),
        **MYSQL_TABLE_OPTIONS,
    )

    op.create_table(
        "states",
        sa.Column(
            "state_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("metadata_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=255), nullable=True),
        sa.Column("attributes_id", sa.Integer(), nullable=True),
        sa.Column("last_updated_ts", sa.Double(), nullable=False),
        sa.Column("last_changed_ts", sa.Double(), nullable=True),
        sa.Column("context_id", sa.LargeBinary(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["attributes_id"],
            ["state_attributes.attributes_id"],
            name=op.f("fk_states_attributes_id_state_attributes"),
        ),
        sa.ForeignKeyConstraint(
            ["metadata_id"],
            ["states_meta.metadata_id"],
            name=op.f("fk_states_metadata_id_states_meta"),
        ),
        sa.PrimaryKeyConstraint("state_id", name=op.f("pk_states")),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(op.f("ix_states_last_updated_ts"), "states", ["last_updated_ts"], unique=False)
    op.create_index(
        "ix_states_metadata_id_last_updated_ts",
        "states",
        ["metadata_id", "last_updated_ts"],
        unique=False,
    )

    op.create_table(
        "statistics_sensors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("start_ts", sa.Double(), nullable=False),
        sa.Column("metadata_id", sa.Integer(), nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("mean", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["metadata_id"],
            ["states_meta.metadata_id"],
            name=op.f("fk_statistics_sensors_metadata_id_states_meta"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statistics_sensors")),
        sa.UniqueConstraint(
            "period",
            "start_ts",
            "metadata_id",
            name=op.f("uq_statistics_sensors_period_start_ts_metadata_id"),
        ),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        op.f("ix_statistics_sensors_start_ts"), "statistics_sensors", ["start_ts"], unique=False
    )


def downgrade() -> None:
    op.drop_table("statistics_sensors")
    op.drop_table("states")
    op.drop_table("product_translations")
    op.drop_table("product_images")
    op.drop_table("planogram_slots")
    op.drop_table("payments")
    op.drop_table("machines")
    op.drop_table("loyalty_transactions")
    op.drop_table("events")
    op.drop_table("vend_transactions")
    op.drop_table("users")
    op.drop_table("stock_movements")
    op.drop_table("stock_levels")
    op.drop_table("statistics_sales")
    op.drop_table("statistics_runs")
    op.drop_table("states_meta")
    op.drop_table("state_attributes")
    op.drop_table("products")
    op.drop_table("planograms")
    op.drop_table("loyalty_customers")
    op.drop_table("locations")
    op.drop_table("event_types")
    op.drop_table("event_log")
    op.drop_table("cash_collections")
    op.drop_table("audit_log")
